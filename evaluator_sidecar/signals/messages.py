"""The protocol's values and their wire form: desired states, facts levels, pub/sub messages.

Pure functions and value types, encoded and decoded with clear errors
(:class:`MessageError` says what is wrong); see :mod:`evaluator_sidecar.signals`.
Heartbeats are in :mod:`evaluator_sidecar.signals.heartbeat`, the field readers both use
in :mod:`evaluator_sidecar.signals.wire`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from evaluator_sidecar.signals.keys import desired_key, facts_key
from evaluator_sidecar.signals.wire import (
    MessageError,
    as_text,
    num,
    opt_int,
    opt_str,
    parse_object,
    req_int,
    req_str,
)

__all__ = [
    "ActivateMessage",
    "Cohort",
    "DesiredMessage",
    "DesiredState",
    "FactsLevel",
    "FactsMessage",
    "MessageError",
    "PrepareSpec",
    "ShadowSpec",
    "SnapshotRef",
    "decode_message",
    "encode_activate",
    "encode_desired_message",
    "encode_facts_message",
]

_ACTIVATE_PREFIX = "activate:"

Cohort = Literal["canary", "stable", "manual", "none"]


class _RefSource(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def version(self) -> str: ...
    @property
    def checksum(self) -> str | None: ...
    @property
    def snapshot_id(self) -> int | None: ...


@dataclass(frozen=True)
class SnapshotRef:
    """Which snapshot to run: its version, and optionally its id and content checksum.

    The one reference to a snapshot both sides use. ``name`` is the PolicySnapshot
    resource's name, which the operator keeps in a deployment's status; it never
    travels to the sidecars (``to_dict`` leaves it out).
    """

    version: str
    snapshot_id: int | None = None
    checksum: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, source: _RefSource) -> SnapshotRef:
        """The reference to what ``source`` (anything with these four attributes) names."""
        return cls(source.version, source.snapshot_id, source.checksum, source.name)

    def same_content(self, other: _RefSource) -> bool:
        """Same version and checksum: the devices would run the same thing."""
        return self.version == other.version and self.checksum == other.checksum

    def matches(self, other: SnapshotRef) -> bool:
        """Same version; ids and checksums are compared only where both sides have one
        (a level written by hand may name a version alone)."""
        if self.version != other.version:
            return False
        if None not in (self.snapshot_id, other.snapshot_id) and (
            self.snapshot_id != other.snapshot_id
        ):
            return False
        return not (self.checksum and other.checksum and self.checksum != other.checksum)

    def describe(self) -> str:
        return self.version if self.snapshot_id is None else f"{self.version} (#{self.snapshot_id})"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "snapshot_id": self.snapshot_id, "checksum": self.checksum}

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> SnapshotRef:
        if not isinstance(obj, Mapping):
            raise MessageError(f"{where} must be an object with 'version', got {obj!r}")
        return cls(
            version=req_str(obj, "version", where),
            snapshot_id=opt_int(obj, "snapshot_id", where),
            checksum=opt_str(obj, "checksum", where),
        )


@dataclass(frozen=True)
class ShadowSpec:
    """A rollout's shadow step: evaluate ``snapshot`` beside the active one, off the
    response path, for a ``sample_rate`` share of live requests, and report the diffs.

    ``step`` names the step (the deployment's ``stepStartedAt``) so that the example
    diffs a sidecar reports are filed under it; ``deployment_name`` is for people.
    """

    snapshot: SnapshotRef
    sample_rate: float
    step: str
    deployment_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_dict(),
            "sample_rate": self.sample_rate,
            "step": self.step,
            "deployment_name": self.deployment_name,
        }

    @classmethod
    def from_dict(cls, obj: object, where: str) -> ShadowSpec:
        if not isinstance(obj, Mapping):
            raise MessageError(f"{where}: must be an object, got {obj!r}")
        rate = num(obj, "sample_rate", where)
        if not 0.0 <= rate <= 1.0:
            raise MessageError(f"{where}: 'sample_rate' must be within 0..1, got {rate}")
        return cls(
            snapshot=SnapshotRef.from_dict(obj.get("snapshot"), f"{where}.snapshot"),
            sample_rate=rate,
            step=req_str(obj, "step", where),
            deployment_name=str(obj.get("deployment_name") or ""),
        )


@dataclass(frozen=True)
class PrepareSpec:
    """Phase one of a two-phase activation: the devices that will run ``snapshot`` once
    the canary reaches ``canary_percent`` load, verify, compile and self-test it now,
    hold it ready without activating it, and report it in their heartbeats (``prepared``);
    phase two is the ordinary publication of the canary, which they then switch to at
    once, together."""

    snapshot: SnapshotRef
    canary_percent: float

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot.to_dict(), "canary_percent": self.canary_percent}

    @classmethod
    def from_dict(cls, obj: object, where: str) -> PrepareSpec:
        if not isinstance(obj, Mapping):
            raise MessageError(f"{where}: must be an object, got {obj!r}")
        percent = num(obj, "canary_percent", where)
        if not 0.0 <= percent <= 100.0:
            raise MessageError(f"{where}: 'canary_percent' must be within 0..100, got {percent}")
        return cls(SnapshotRef.from_dict(obj.get("snapshot"), f"{where}.snapshot"), percent)


@dataclass(frozen=True)
class DesiredState:
    """A desired state (the level) for an environment, or for one rollout when ``target`` is set.

    Environment-wide states have ``target``, ``region`` and ``deployment`` unset
    and no canary. A rollout's ``stable`` may be ``None``: devices outside the
    canary then follow the environment-wide state.
    """

    epoch: int
    env: str
    stable: SnapshotRef | None
    updated_at: float = field(default_factory=time.time)
    reason: str = ""
    target: str | None = None
    region: str | None = None
    deployment: str | None = None
    canary: SnapshotRef | None = None
    canary_percent: float = 0.0
    #: A shadow step in progress (rollout states only); None otherwise.
    shadow: ShadowSpec | None = None
    #: Phase one of a two-phase activation (rollout states only); None otherwise.
    prepare: PrepareSpec | None = None

    def __post_init__(self) -> None:
        if (self.target is None) != (self.region is None):
            raise ValueError("a rollout state needs both target and region")
        if self.target is None and (self.canary is not None or self.deployment is not None):
            raise ValueError("an environment-wide state has no canary and no deployment")
        if self.target is not None and not self.deployment:
            raise ValueError("a rollout state needs its deployment uid (salts the cohorts)")
        if not 0.0 <= self.canary_percent <= 100.0:
            raise ValueError(f"canary_percent must be within 0..100, got {self.canary_percent}")

    @property
    def is_rollout(self) -> bool:
        return self.target is not None

    @property
    def key(self) -> str:
        return desired_key(self.env, self.target, self.region)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "env": self.env,
            "stable": self.stable.to_dict() if self.stable else None,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }
        if self.is_rollout:
            out.update(
                target=self.target,
                region=self.region,
                deployment=self.deployment,
                canary=self.canary.to_dict() if self.canary else None,
                canary_percent=self.canary_percent,
            )
            if self.shadow is not None:
                out["shadow"] = self.shadow.to_dict()
            if self.prepare is not None:
                out["prepare"] = self.prepare.to_dict()
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "desired state") -> DesiredState:
        epoch = req_int(obj, "epoch", where)
        env = req_str(obj, "env", where)
        stable_raw = obj.get("stable")
        stable = (
            None if stable_raw is None else SnapshotRef.from_dict(stable_raw, f"{where}.stable")
        )
        updated_at = num(obj, "updated_at", where, default=0.0)
        reason = obj.get("reason") or ""
        if not isinstance(reason, str):
            raise MessageError(f"{where}: 'reason' must be a string, got {reason!r}")
        target = opt_str(obj, "target", where)
        region = opt_str(obj, "region", where)
        if (target is None) != (region is None):
            raise MessageError(f"{where}: give both 'target' and 'region' (a rollout) or neither")
        if target is None:
            return cls(epoch, env, stable, updated_at, reason)
        canary_raw = obj.get("canary")
        canary = (
            None if canary_raw is None else SnapshotRef.from_dict(canary_raw, f"{where}.canary")
        )
        percent = num(obj, "canary_percent", where, default=0.0)
        if not 0.0 <= percent <= 100.0:
            raise MessageError(f"{where}: 'canary_percent' must be within 0..100, got {percent}")
        return cls(
            epoch,
            env,
            stable,
            updated_at,
            reason,
            target=target,
            region=region,
            deployment=req_str(obj, "deployment", where),
            canary=canary,
            canary_percent=percent,
            shadow=None
            if obj.get("shadow") is None
            else ShadowSpec.from_dict(obj["shadow"], f"{where}.shadow"),
            prepare=None
            if obj.get("prepare") is None
            else PrepareSpec.from_dict(obj["prepare"], f"{where}.prepare"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "desired state") -> DesiredState:
        return cls.from_dict(parse_object(raw, where), where)


@dataclass(frozen=True)
class FactsLevel:
    """An environment's facts level: the version of its fact set in PostgreSQL.

    ``version`` comes from PostgreSQL (``pkg_facts_versions``) and is what sidecars
    load and report; ``epoch`` orders writes of the level like a desired state's.
    """

    env: str
    version: int
    epoch: int
    updated_at: float = 0.0
    reason: str | None = None

    @property
    def key(self) -> str:
        return facts_key(self.env)

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "version": self.version,
            "epoch": self.epoch,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str = "facts level") -> FactsLevel:
        return cls(
            env=req_str(obj, "env", where),
            version=req_int(obj, "version", where),
            epoch=req_int(obj, "epoch", where, minimum=1),
            updated_at=num(obj, "updated_at", where, 0.0),
            reason=opt_str(obj, "reason", where),
        )

    @classmethod
    def from_json(cls, raw: bytes | str, where: str = "facts level") -> FactsLevel:
        return cls.from_dict(parse_object(raw, where), where)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ActivateMessage:
    """The plain ``activate:<version>``: swap to that version now (no epoch)."""

    version: str


@dataclass(frozen=True)
class DesiredMessage:
    """The structured edge: a desired state was written under ``key``."""

    key: str
    state: DesiredState


@dataclass(frozen=True)
class FactsMessage:
    """The edge for facts: an environment's fact set has a new version (its level)."""

    key: str
    level: FactsLevel


def encode_facts_message(level: FactsLevel) -> bytes:
    """The structured message announcing a facts level."""
    return orjson.dumps({"kind": "facts", "key": level.key, "level": level.to_dict()})


def _decode_facts(obj: Mapping[str, Any]) -> FactsMessage:
    key = req_str(obj, "key", "facts message")
    level_raw = obj.get("level")
    if not isinstance(level_raw, dict):
        raise MessageError("facts message: 'level' must be an object")
    level = FactsLevel.from_dict(level_raw, "facts message level")
    if level.key != key:
        raise MessageError(f"facts message: key {key!r} does not match its level's {level.key!r}")
    return FactsMessage(key, level)


def encode_activate(version: str) -> str:
    """``activate:<version>``, the plain hot-swap command (no epoch)."""
    if not version or version != version.strip():
        raise ValueError(f"version {version!r} must be non-empty without surrounding spaces")
    return f"{_ACTIVATE_PREFIX}{version}"


def encode_desired_message(state: DesiredState) -> bytes:
    """The structured message announcing ``state`` under its key."""
    return orjson.dumps({"kind": "desired", "key": state.key, "state": state.to_dict()})


def decode_message(raw: bytes | str) -> ActivateMessage | DesiredMessage | FactsMessage:
    """Decode one message from ``pkg_updates``; raise :class:`MessageError` saying what is wrong."""
    text = as_text(raw)
    stripped = text.strip()
    if stripped.startswith(_ACTIVATE_PREFIX):
        version = stripped[len(_ACTIVATE_PREFIX) :].strip()
        if not version:
            raise MessageError("'activate:' names no version: send 'activate:<version>'")
        return ActivateMessage(version)
    if not stripped.startswith("{"):
        raise MessageError(
            f"unknown message {text[:80]!r}: expected 'activate:<version>' or a JSON object "
            '{"kind": "desired", "key": ..., "state": {...}}'
        )
    obj = parse_object(stripped, "structured message")
    if obj.get("kind") == "facts":
        return _decode_facts(obj)
    if obj.get("kind") != "desired":
        raise MessageError(
            f"structured message has kind {obj.get('kind')!r}; expected 'desired' or 'facts'"
        )
    key = req_str(obj, "key", "structured message")
    state_raw = obj.get("state")
    if not isinstance(state_raw, dict):
        raise MessageError("structured message: 'state' must be an object")
    state = DesiredState.from_dict(state_raw, "structured message state")
    if state.key != key:
        raise MessageError(
            f"structured message: key {key!r} does not match its state's key {state.key!r}"
        )
    return DesiredMessage(key, state)
