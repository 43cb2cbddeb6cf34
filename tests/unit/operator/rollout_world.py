"""A simulated world for the rollout state machine's tests.

``World`` plays the operator's part without I/O: it keeps the spec, the stored
status (as the API server would keep it after a JSON merge patch: a JSON round
trip with nulls dropped), a clock, and what the operator would observe; each
``tick()`` calls ``reconcile`` and stores the result. Tests set observations
(devices converged, health figures, a person's request) between ticks and read
the decisions back.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pkg_operator.actions import ActionRequest
from pkg_operator.conditions import find_condition
from pkg_operator.rollout.machine import reconcile
from pkg_operator.rollout.model import (
    Action,
    CoverageObs,
    Decision,
    EmitEvent,
    HealthObs,
    Observations,
    RecordPromotion,
    RecordStep,
    SetDesiredState,
    SnapshotInfo,
)

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
UID = "6f1c0d2e-0000-4000-8000-000000000001"


def snapshot(
    version: str, *, ready: bool = True, name: str | None = None, **extra: Any
) -> SnapshotInfo:
    """A PolicySnapshot as observed; the checksum derives from the version unless given."""
    checksum = extra.pop("checksum", "sha256:" + version.encode().hex().ljust(64, "0")[:64])
    return SnapshotInfo(
        name=name or version.replace("@", "-").replace(".", "-"),
        version=version,
        checksum=checksum,
        snapshot_id=extra.pop("snapshot_id", 7),
        ready=ready,
        reason=extra.pop("reason", "" if ready else "Validating"),
        message=extra.pop("message", "" if ready else "fixtures are running"),
    )


OLD = snapshot("rules@1.4.0", snapshot_id=4)
NEW = snapshot("rules@1.5.0", snapshot_id=5)
NEWER = snapshot("rules@1.6.0", snapshot_id=6)


def make_spec(steps: list[Any], **overrides: Any) -> dict[str, Any]:
    """A spec as the API server stores it, with the CRD's defaults applied."""
    spec: dict[str, Any] = {
        "snapshotRef": {"name": NEW.name},
        "target": "router",
        "region": "global",
        "env": "prod",
        "strategy": {"canary": {"steps": steps}},
        "progressDeadlineSeconds": 600,
        "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 30, "minDevices": 1},
    }
    spec.update(overrides)
    return spec


def _stored(status: dict[str, Any]) -> dict[str, Any]:
    """What a GET returns after a merge patch of ``status``: JSON, with nulls gone."""

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value

    result: dict[str, Any] = json.loads(json.dumps(prune(status)))
    return result


class World:
    """One PolicyDeployment, its observations and a clock."""

    def __init__(self, steps: list[Any], **spec_overrides: Any) -> None:
        self.spec = make_spec(steps, **spec_overrides)
        self.status: dict[str, Any] = {}
        self.generation = 1
        self.now = T0
        self.uid = UID
        self.snapshot: SnapshotInfo | None = NEW
        self.baseline: SnapshotInfo | None = OLD
        self.coverage = CoverageObs(targeted=10, on_stable=10, on_intended=10)
        self.health = HealthObs()
        self.action: ActionRequest | None = None
        self.superseded_by: str | None = None
        self.decisions: list[Decision] = []

    # ------------------------------------------------------------ observations

    def obs(self) -> Observations:
        return Observations(
            uid=self.uid,
            generation=self.generation,
            snapshot=self.snapshot,
            baseline=self.baseline,
            coverage=self.coverage,
            health=self.health,
            action=self.action,
            superseded_by=self.superseded_by,
        )

    def devices(self, targeted: int = 10, on_intended: int | None = None, **more: int) -> None:
        """Coverage figures; by default every live device runs its intended version."""
        self.coverage = CoverageObs(
            targeted=targeted,
            on_intended=targeted if on_intended is None else on_intended,
            **more,
        )

    def lagging(self, on_intended: int, targeted: int = 10) -> None:
        self.devices(targeted=targeted, on_intended=on_intended)

    def request(self, action: str, token: str, actor: str = "alice", reason: str = "") -> None:
        self.action = ActionRequest(action=action, token=token, actor=actor, reason=reason)

    def change_spec(self, **changes: Any) -> None:
        self.spec = {**self.spec, **changes}
        self.generation += 1

    def point_at(self, info: SnapshotInfo) -> None:
        """Edit spec.snapshotRef to another snapshot (a new generation)."""
        self.change_spec(snapshotRef={"name": info.name})
        self.snapshot = info

    # ------------------------------------------------------------------- ticks

    def tick(self, after: float = 1.0) -> Decision:
        """Advance the clock by ``after`` seconds, decide, and store the new status."""
        self.now += timedelta(seconds=after)
        decision = reconcile(self.spec, self.status, self.obs(), self.now)
        self.status = _stored(decision.status)
        self.decisions.append(decision)
        return decision

    def run_until(self, predicate: Any, limit: int = 50, after: float = 1.0) -> Decision:
        for _ in range(limit):
            decision = self.tick(after)
            if predicate(self):
                return decision
        raise AssertionError(f"not reached in {limit} ticks; status: {self.status}")

    # ------------------------------------------------------------------ reading

    @property
    def summary(self) -> str:
        return str(self.status.get("summary"))

    @property
    def step(self) -> int:
        return int(self.status["currentStepIndex"])

    @property
    def weight(self) -> float:
        return float(self.status["weight"])

    @property
    def outcome(self) -> str | None:
        attempt = self.status.get("attempt") or {}
        return attempt.get("outcome")

    def condition(self, type_: str) -> dict[str, Any]:
        found = find_condition(self.status.get("conditions", []), type_)
        assert found is not None, f"no {type_} condition in {self.status.get('conditions')}"
        return dict(found)

    def cond(self, type_: str) -> tuple[str, str]:
        found = self.condition(type_)
        return found["status"], found["reason"]


def publishes(decision: Decision) -> list[SetDesiredState]:
    return [a for a in decision.actions if isinstance(a, SetDesiredState)]


def the_publish(decision: Decision) -> SetDesiredState:
    found = publishes(decision)
    assert len(found) == 1, f"expected one SetDesiredState, got {decision.actions}"
    return found[0]


def steps_of(decision: Decision) -> list[RecordStep]:
    return [a for a in decision.actions if isinstance(a, RecordStep)]


def promotions(decision: Decision) -> list[RecordPromotion]:
    return [a for a in decision.actions if isinstance(a, RecordPromotion)]


def events(decision: Decision) -> list[EmitEvent]:
    return [a for a in decision.actions if isinstance(a, EmitEvent)]


def keys(actions: tuple[Action, ...] | list[Action]) -> list[str]:
    return [a.key for a in actions if not isinstance(a, EmitEvent)]


def replace_health(world: World, **changes: Any) -> None:
    world.health = replace(world.health, **changes)
