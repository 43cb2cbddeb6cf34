"""Heartbeats: what each sidecar reports about itself, and their wire form.

:class:`Heartbeat` is one sidecar's report (what it runs, how it fares since its
previous beat, its facts version and staleness); :class:`Totals` the cumulative
counters of its process. Pure value types; see :mod:`evaluator_sidecar.signals`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from evaluator_sidecar.signals.messages import Cohort
from evaluator_sidecar.signals.wire import (
    MessageError,
    num,
    opt_int,
    opt_str,
    parse_object,
    req_int,
    req_str,
)

__all__ = ["Heartbeat", "Totals"]


@dataclass(frozen=True)
class Totals:
    """A sidecar process's counters since it started: they only ever grow.

    Sent in every heartbeat with the process's id and start time, so the operator
    can tell a restart (counters back at zero) from a quiet window, and judge a
    rollout step on everything that happened since it began, not on the latest
    window alone. ``requests`` counts every evaluation attempted (errors included).
    """

    requests: int = 0
    errors: int = 0
    activation_failures: int = 0
    shadow_samples: int = 0
    shadow_diffs: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "activation_failures": self.activation_failures,
            "shadow_samples": self.shadow_samples,
            "shadow_diffs": self.shadow_diffs,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], where: str) -> Totals:
        return cls(
            **{name: int(opt_int(obj, name, where) or 0) for name in _TOTAL_FIELDS},
        )


_TOTAL_FIELDS = ("requests", "errors", "activation_failures", "shadow_samples", "shadow_diffs")


@dataclass(frozen=True)
class Heartbeat:
    """One sidecar's report: what it runs, how it fares since its previous beat."""

    device_id: str
    device_type: str
    env: str
    target: str
    region: str
    version: str | None
    snapshot_id: int | None
    checksum: str | None
    epoch: int
    cohort: Cohort
    evaluations: int = 0
    errors: int = 0
    p99_ms: float | None = None
    activation_failures: int = 0
    last_error: str | None = None
    healthy: bool = True
    degraded: bool = False
    ts: float = field(default_factory=time.time)
    #: The newest desired epoch the sidecar has seen (``epoch`` is the one it runs).
    desired_epoch: int = 0
    #: The version of the environment's fact set the sidecar evaluates with (0: none).
    facts_version: int = 0
    #: Which run of the sidecar sent it (a new id after every restart), when that run
    #: started (epoch seconds), and its cumulative counters. None from older sidecars.
    process_id: str | None = None
    process_started: float | None = None
    totals: Totals | None = None
    #: Past the sidecar's maximum staleness (its desired level unconfirmed for too
    #: long), and the seconds since it last confirmed it (None: no Redis, n/a).
    stale: bool = False
    staleness_seconds: float | None = None
    #: The shadow step this sidecar runs (candidate, step, deployment, new example
    #: diffs: see evaluator_sidecar.sidecar.shadow); None when it runs none.
    shadow: dict[str, Any] | None = None
    #: The version this device holds prepared (two-phase activation), and when it last
    #: activated a snapshot (epoch seconds; a fleet's flip skew).
    prepared: str | None = None
    last_activation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "device_type": self.device_type,
            "env": self.env,
            "target": self.target,
            "region": self.region,
            "version": self.version,
            "snapshot_id": self.snapshot_id,
            "checksum": self.checksum,
            "epoch": self.epoch,
            "desired_epoch": self.desired_epoch,
            "facts_version": self.facts_version,
            "cohort": self.cohort,
            "evaluations": self.evaluations,
            "errors": self.errors,
            "p99_ms": self.p99_ms,
            "activation_failures": self.activation_failures,
            "last_error": self.last_error,
            "healthy": self.healthy,
            "degraded": self.degraded,
            "ts": self.ts,
            "process_id": self.process_id,
            "process_started": self.process_started,
            "totals": None if self.totals is None else self.totals.to_dict(),
            "stale": self.stale,
            "staleness_seconds": self.staleness_seconds,
            "shadow": self.shadow,
            "prepared": self.prepared,
            "last_activation": self.last_activation,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Heartbeat:
        where = "heartbeat"
        obj = parse_object(raw, where)
        cohort = obj.get("cohort")
        if cohort not in ("canary", "stable", "manual", "none"):
            raise MessageError(
                f"{where}: 'cohort' must be canary|stable|manual|none, got {cohort!r}"
            )
        p99 = obj.get("p99_ms")
        for flag in ("healthy", "degraded"):
            if not isinstance(obj.get(flag), bool):
                raise MessageError(f"{where}: '{flag}' must be true or false")
        return cls(
            device_id=req_str(obj, "device_id", where),
            device_type=req_str(obj, "device_type", where),
            env=req_str(obj, "env", where),
            target=req_str(obj, "target", where),
            region=req_str(obj, "region", where),
            version=opt_str(obj, "version", where),
            snapshot_id=opt_int(obj, "snapshot_id", where),
            checksum=opt_str(obj, "checksum", where),
            epoch=req_int(obj, "epoch", where),
            cohort=cohort,
            evaluations=req_int(obj, "evaluations", where),
            errors=req_int(obj, "errors", where),
            p99_ms=None if p99 is None else num(obj, "p99_ms", where),
            activation_failures=req_int(obj, "activation_failures", where),
            last_error=opt_str(obj, "last_error", where),
            healthy=bool(obj["healthy"]),
            degraded=bool(obj["degraded"]),
            ts=num(obj, "ts", where),
            desired_epoch=int(obj.get("desired_epoch") or 0),
            facts_version=opt_int(obj, "facts_version", where) or 0,
            process_id=opt_str(obj, "process_id", where),
            process_started=None
            if obj.get("process_started") is None
            else num(obj, "process_started", where),
            totals=_totals(obj.get("totals"), where),
            stale=obj.get("stale") is True,
            staleness_seconds=None
            if obj.get("staleness_seconds") is None
            else num(obj, "staleness_seconds", where),
            shadow=obj["shadow"] if isinstance(obj.get("shadow"), dict) else None,
            prepared=opt_str(obj, "prepared", where),
            last_activation=None
            if obj.get("last_activation") is None
            else num(obj, "last_activation", where),
        )


def _totals(raw: object, where: str) -> Totals | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise MessageError(f"{where}: 'totals' must be an object or null, got {raw!r}")
    return Totals.from_dict(raw, f"{where} totals")
