"""What a rollout tick observes: everything the pure machine needs to know about the world.

The referenced PolicySnapshot (from kopf's in-memory index), a newer
PolicyDeployment for the same env/target/region (supersession), a person's
action from the annotation, the environment's active snapshot (PostgreSQL), and
coverage and health folded from the devices' latest heartbeats (as the heartbeat
folder keeps them in PostgreSQL: a tick reads no Redis key) and their
cumulative counters against the step's baseline (captured here if the tick that
started the step could not). Also which
status to reason about: kopf's body can lag behind the operator's own last
write, and ``status.seq`` tells. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from redis.exceptions import RedisError

from evaluator_sidecar.store.counters import StepCounters
from pkg_operator.actions import DEPLOYMENT_ACTIONS, ActionError, ActionRequest, parse_action
from pkg_operator.api import ACTION_ANNOTATION
from pkg_operator.conditions import is_true, parse_time
from pkg_operator.context import OperatorContext
from pkg_operator.rollout import coverage
from pkg_operator.rollout.model import CoverageObs, HealthObs, Observations, SnapshotInfo
from pkg_operator.rollout.spec import DEFAULT_HEARTBEAT_TTL_SECONDS

__all__ = ["Observed", "observe", "snapshot_info"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observed:
    """One tick's view: where the deployment rolls out, its status, and the observations."""

    env: str
    target: str
    region: str
    #: The status to reason about: the operator's own last write when kopf's copy lags.
    status: Mapping[str, Any]
    obs: Observations


async def observe(
    ctx: OperatorContext,
    body: kopf.Body,
    memo: Any,
    snapshots_index: kopf.Index[Any, Any],
    deployments_index: kopf.Index[Any, Any],
    *,
    now: dt.datetime,
) -> Observed:
    """Gather the observations of one tick of the deployment ``body`` at ``now``."""
    meta, spec = body["metadata"], body["spec"]
    status: Mapping[str, Any] = body.get("status") or {}
    remembered: Mapping[str, Any] | None = getattr(memo, "rollout_status", None)
    if remembered is not None and int(remembered.get("seq") or 0) > int(status.get("seq") or 0):
        status = remembered  # kopf has not seen our last write yet
    namespace, uid = meta["namespace"], str(meta["uid"])
    env, target = spec["env"], spec["target"]
    region = spec.get("region") or "global"

    ref_name = (spec.get("snapshotRef") or {}).get("name")
    found = list(snapshots_index.get((namespace, ref_name), []))
    snapshot = snapshot_info(found[0]) if found else None

    superseded_by = None
    mine = {"creationTimestamp": meta.get("creationTimestamp"), "name": meta["name"]}
    for other in deployments_index.get((env, target, region), []):
        if other["uid"] != uid and _newer(other, mine):
            superseded_by = f"{other['namespace']}/{other['name']}"

    action = _action(body, status)
    covered, health = await _devices(ctx, spec, status, uid=uid, region=region, now=now)
    obs = Observations(
        uid=uid,
        generation=int(meta.get("generation") or 1),
        snapshot=snapshot,
        baseline=await _baseline(ctx, env),
        coverage=covered,
        health=health,
        action=action,
        superseded_by=superseded_by,
        name=f"{namespace}/{meta['name']}",
    )
    return Observed(env=env, target=target, region=region, status=status, obs=obs)


def snapshot_info(body: Mapping[str, Any]) -> SnapshotInfo:
    """A PolicySnapshot as the state machine sees it: Ready means stored and validated."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = is_true(conditions, "Ready") and status.get("snapshotId") is not None
    reason, message = "Pending", "the operator has not reconciled it yet"
    for condition in conditions:
        if condition.get("type") == "Ready":
            reason = str(condition.get("reason") or reason)
            message = str(condition.get("message") or message)
    return SnapshotInfo(
        name=str(body["metadata"]["name"]),
        version=str(spec.get("version", "")),
        checksum=str(status.get("checksum") or ""),
        snapshot_id=status.get("snapshotId"),
        ready=ready,
        reason=reason,
        message=message,
    )


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether deployment ``a`` was created after ``b`` (name breaks ties)."""
    key_a = (str(a.get("creationTimestamp", "")), str(a.get("name", "")))
    key_b = (str(b.get("creationTimestamp", "")), str(b.get("name", "")))
    return key_a > key_b


def _action(body: kopf.Body, status: Mapping[str, Any]) -> ActionRequest | None:
    """The request in the action annotation; an invalid one is warned about once."""
    raw = (body["metadata"].get("annotations") or {}).get(ACTION_ANNOTATION)
    if not raw:
        return None
    try:
        return parse_action(raw, DEPLOYMENT_ACTIONS)
    except ActionError as exc:
        tokens = {str(a.get("token")) for a in status.get("processedActions") or []}
        if raw not in tokens:
            kopf.warn(body, reason="InvalidAction", message=str(exc))
        return None


async def _devices(
    ctx: OperatorContext,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    uid: str,
    region: str,
    now: dt.datetime,
) -> tuple[CoverageObs, HealthObs]:
    """Coverage and health of the published weight, from the devices' latest heartbeats."""
    target = spec["target"]
    stable = status.get("stable") or {}
    canary = status.get("canary") or {}
    weight = float(status.get("weight") or 0.0)
    cover_spec = spec.get("coverage") or {}
    ttl = float(cover_spec.get("heartbeatTTLSeconds") or DEFAULT_HEARTBEAT_TTL_SECONDS)
    step_started = status.get("stepStartedAt")
    # Devices of this environment only: another may use the same target, region and names.
    # Each row also holds the latest beat's activation error, staleness and prepared
    # version (the heartbeat folder writes them), so nothing here reads Redis: a scan
    # of every heartbeat key per tick cost most of the operator's CPU at 10,000 devices.
    rows = await ctx.db.get_device_versions(
        target=target, seen_within=dt.timedelta(seconds=ttl * 10), environment=spec["env"]
    )
    shadow_counts = await _shadow_reports(
        ctx, spec["env"], target, region, shadow=_shadow_key(uid, status)
    )
    prepare = status.get("prepare") or {}
    started = parse_time(step_started) if step_started else None
    counters = await _step_counters(
        ctx, uid, started, env=spec["env"], target=target, region=region
    )
    reports = [
        coverage.DeviceReport(
            device_id=row["device_id"],
            target=row["target"],
            region=row["region"],
            version=row["version"],
            last_seen=row["last_seen"],
            evaluations=row["evaluations"] or 0,
            errors=row["errors"] or 0,
            p99_ms=row["p99_latency_ms"],
            activation_failures=row["activation_failures"] or 0,
            last_error=row["last_error"],
            policy_stale=bool(row["policy_stale"]),
            prepared_version=row["prepared_version"],
            shadow_counts=shadow_counts.get(row["device_id"]),
            totals=counters[row["device_id"]].totals if row["device_id"] in counters else None,
            baseline=counters[row["device_id"]].baseline if row["device_id"] in counters else None,
        )
        for row in rows
    ]
    return coverage.fold(
        reports,
        target=target,
        region=region,
        deployment_uid=uid,
        stable_version=stable.get("version"),
        canary_version=canary.get("version"),
        weight=weight,
        ttl_seconds=ttl,
        step_started_at=started,
        now=now,
        prepare=(str(prepare["version"]), float(prepare.get("weight") or 0.0))
        if prepare.get("version")
        else None,
    )


async def _step_counters(
    ctx: OperatorContext,
    uid: str,
    started: dt.datetime | None,
    *,
    env: str,
    target: str,
    region: str,
) -> dict[str, StepCounters]:
    """device id -> its cumulative counters and baseline for the current step."""
    if started is None:
        return {}
    # Normally captured by the tick that started the step, before it published; this
    # covers an operator that stopped in between (a no-op once captured).
    await ctx.db.capture_step_baseline(uid, started, target, region, env)
    rows = await ctx.db.step_counters(uid, started, target, region, env)
    return {c.device_id: c for c in rows}


def _shadow_key(uid: str, status: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(deployment uid, candidate version, step) of the shadow step running now, if any."""
    shadow = status.get("shadow") or {}
    if not shadow.get("version") or not shadow.get("step"):
        return None
    return (uid, str(shadow["version"]), str(shadow["step"]))


def _shadow_counts(shadow: Mapping[str, Any] | None) -> tuple[int, int] | None:
    samples, diffs = (shadow or {}).get("samples"), (shadow or {}).get("diffs")
    if not isinstance(samples, int) or not isinstance(diffs, int) or isinstance(samples, bool):
        return None
    return samples, diffs


async def _shadow_reports(
    ctx: OperatorContext,
    env: str,
    target: str,
    region: str,
    *,
    shadow: tuple[str, str, str] | None,
) -> dict[str, tuple[int, int]]:
    """device id -> (samples, diffs) it counted for the shadow step running now.

    Read from the devices' live heartbeats in Redis, only while a shadow step runs
    (everything else the tick needs is folded into PostgreSQL). Only the candidate and
    step ``shadow`` names count: a device still sampling the previous candidate counts
    nothing. Without Redis the step gathers no samples this tick and waits.
    """
    if shadow is None:
        return {}
    try:
        beats = await ctx.signals.live_heartbeats(env)
    except (RedisError, OSError) as exc:
        log.warning("cannot read the shadow step's counts from the heartbeats: %s", exc)
        return {}
    counts: dict[str, tuple[int, int]] = {}
    for b in beats:
        mine = b.shadow or {}
        key = (mine.get("deployment"), mine.get("candidate"), mine.get("step"))
        if b.target != target or b.region != region or key != shadow:
            continue
        if (found := _shadow_counts(mine)) is not None:
            counts[b.device_id] = found
    return counts


async def _baseline(ctx: OperatorContext, env: str) -> SnapshotInfo | None:
    """The environment's active snapshot: what the target runs until the deployment publishes."""
    active = await ctx.db.get_active_snapshot_summary(env)
    if active is None:
        return None
    location = await ctx.db.snapshot_resource(active.version)
    return SnapshotInfo(
        name=location[1] if location else active.version,
        version=active.version,
        checksum=active.checksum or "",
        snapshot_id=active.id,
        ready=True,
        reason="Active",
        message=f"the active snapshot of {env}",
    )
