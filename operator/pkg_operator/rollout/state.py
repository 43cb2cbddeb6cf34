"""The persisted part of a PolicyDeployment's status, read and written by the machine.

Everything the rollout needs to continue after an operator restart lives in
status (there is no memory between ticks): the attempt, the step and when it
started, what was last published, the tokens of handled requests. This module
turns the stored JSON into a mutable :class:`State` and back. Reading is
tolerant (a missing or malformed field reads as absent, so a hand-edited
status cannot crash the operator); writing renders every field, with ``None``
for cleared ones, because the operator applies the status as a JSON merge
patch in which ``null`` deletes.
See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pkg_operator.conditions import format_time, parse_time
from pkg_operator.rollout.model import PrepareSpec, ShadowSpec, SnapshotRef

__all__ = [
    "MAX_BLOCKED_SNAPSHOTS",
    "MAX_HISTORY",
    "MAX_PROCESSED_ACTIONS",
    "Attempt",
    "State",
    "load_state",
    "prepare_to_dict",
    "ref_to_dict",
    "shadow_to_dict",
    "time_or_none",
]

MAX_HISTORY = 10
MAX_PROCESSED_ACTIONS = 20
MAX_BLOCKED_SNAPSHOTS = 10


@dataclass
class Attempt:
    """One run of the steps for one generation; ``outcome`` None while it runs."""

    id: int
    generation: int
    started_at: datetime
    snapshot: SnapshotRef | None = None
    outcome: str | None = None
    reason: str | None = None
    message: str | None = None
    finished_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.outcome is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "generation": self.generation,
            "snapshot": ref_to_dict(self.snapshot),
            "startedAt": format_time(self.started_at),
            "outcome": self.outcome,
            "reason": self.reason,
            "message": self.message,
            "finishedAt": time_or_none(self.finished_at),
        }

    def history_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "generation": self.generation,
            "version": self.snapshot.version if self.snapshot else None,
            "outcome": self.outcome or "Unknown",
            "reason": self.reason or "Unknown",
            "startedAt": format_time(self.started_at),
            "finishedAt": format_time(self.finished_at or self.started_at),
        }


@dataclass
class State:
    """The machine's working copy of the status."""

    observed_generation: int | None = None
    seq: int = 0
    stable: SnapshotRef | None = None
    canary: SnapshotRef | None = None
    previous_stable: SnapshotRef | None = None
    weight: float = 0.0
    step_index: int = 0
    step_started_at: datetime | None = None
    attempt: Attempt | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_rollback: dict[str, Any] | None = None
    last_publish: dict[str, Any] | None = None
    processed_actions: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    #: The shadow published with the desired state (a shadow step runs), else None.
    shadow: ShadowSpec | None = None
    #: Phase one of a two-phase activation, published and not yet flipped.
    prepare: PrepareSpec | None = None
    #: Health checks of the current step that found a breached limit, in a row.
    bad_checks: int = 0
    #: Snapshots (version, checksum, reason, attempt, at) whose rollout was aborted or
    #: rolled back for health: never started again without a person's retry.
    blocked: list[dict[str, Any]] = field(default_factory=list)

    def blocked_entry(self, checksum: str) -> dict[str, Any] | None:
        for entry in self.blocked:
            if entry.get("checksum") == checksum:
                return entry
        return None

    def handled_tokens(self) -> set[str]:
        return {str(entry.get("token")) for entry in self.processed_actions}


def time_or_none(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def ref_to_dict(ref: SnapshotRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {
        "name": ref.name,
        "version": ref.version,
        "checksum": ref.checksum,
        "snapshotId": ref.snapshot_id,
    }


def _ref(value: object) -> SnapshotRef | None:
    if not isinstance(value, Mapping):
        return None
    name, version, checksum = value.get("name"), value.get("version"), value.get("checksum")
    if not (isinstance(name, str) and isinstance(version, str) and isinstance(checksum, str)):
        return None
    snapshot_id = value.get("snapshotId")
    return SnapshotRef(
        version,
        snapshot_id if isinstance(snapshot_id, int) else None,
        checksum,
        name,
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _float(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _attempt(value: object) -> Attempt | None:
    if not isinstance(value, Mapping):
        return None
    number, generation = _int(value.get("id")), _int(value.get("generation"))
    started = _time(value.get("startedAt"))
    if number is None or generation is None or started is None:
        return None
    return Attempt(
        id=number,
        generation=generation,
        started_at=started,
        snapshot=_ref(value.get("snapshot")),
        outcome=_str(value.get("outcome")),
        reason=_str(value.get("reason")),
        message=_str(value.get("message")),
        finished_at=_time(value.get("finishedAt")),
    )


def _dicts(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [dict(item) for item in value if isinstance(item, Mapping)]


def shadow_to_dict(spec: ShadowSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {
        **(ref_to_dict(spec.snapshot) or {}),
        "sampleRate": spec.sample_rate,
        "step": spec.step,
        "deploymentName": spec.deployment_name,
    }


def _shadow(value: object) -> ShadowSpec | None:
    if not isinstance(value, Mapping):
        return None
    ref, rate, step = _ref(value), value.get("sampleRate"), _str(value.get("step"))
    if ref is None or step is None or isinstance(rate, bool) or not isinstance(rate, int | float):
        return None
    return ShadowSpec(ref, float(rate), step, str(value.get("deploymentName") or ""))


def prepare_to_dict(spec: PrepareSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {**(ref_to_dict(spec.snapshot) or {}), "weight": spec.canary_percent}


def _prepare(value: object) -> PrepareSpec | None:
    if not isinstance(value, Mapping):
        return None
    ref, weight = _ref(value), value.get("weight")
    if ref is None or isinstance(weight, bool) or not isinstance(weight, int | float):
        return None
    return PrepareSpec(ref, float(weight))


def load_state(status: Mapping[str, Any]) -> State:
    """Read a stored status (``{}`` for a new object) into a :class:`State`."""
    last_rollback = status.get("lastRollback")
    last_publish = status.get("lastPublish")
    return State(
        observed_generation=_int(status.get("observedGeneration")),
        seq=_int(status.get("seq")) or 0,
        stable=_ref(status.get("stable")),
        canary=_ref(status.get("canary")),
        previous_stable=_ref(status.get("previousStable")),
        weight=min(100.0, max(0.0, _float(status.get("weight"), 0.0))),
        step_index=max(0, _int(status.get("currentStepIndex")) or 0),
        step_started_at=_time(status.get("stepStartedAt")),
        attempt=_attempt(status.get("attempt")),
        history=_dicts(status.get("history"))[-MAX_HISTORY:],
        last_rollback=dict(last_rollback) if isinstance(last_rollback, Mapping) else None,
        last_publish=dict(last_publish) if isinstance(last_publish, Mapping) else None,
        processed_actions=_dicts(status.get("processedActions"))[-MAX_PROCESSED_ACTIONS:],
        conditions=_dicts(status.get("conditions")),
        bad_checks=max(0, _int(status.get("consecutiveBadChecks")) or 0),
        shadow=_shadow(status.get("shadow")),
        prepare=_prepare(status.get("prepare")),
        blocked=_dicts(status.get("blockedSnapshots"))[-MAX_BLOCKED_SNAPSHOTS:],
    )
