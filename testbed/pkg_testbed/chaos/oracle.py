"""The end-state oracle of the chaos suite: what must hold once a scenario has settled.

Given the cluster, a namespace, the names of a PolicyDeployment and/or a PolicySnapshot,
the sidecars and the database and Redis URLs, it checks, independently of the operator's
own code paths:

- the rollout's outcome and status: the expected summary, its conditions (Available,
  Degraded, Progressing) agreeing with it and observing the current generation, and
  ``status.stable`` naming the snapshot when it succeeded;
- every sidecar's version against its cohort (the deterministic hash of its id and the
  deployment), read from the sidecar itself;
- PostgreSQL: no duplicate audit row (an idempotency key twice, or one step of one
  attempt recorded twice), no missing one (every step of a succeeded rollout, every
  promotion), the audit chain intact (recomputed in Python, store/audit_chain.py),
  promotions consistent with the status (exactly one promote of the snapshot when it
  succeeded or is Active, none otherwise), the deployment row at the end state, no
  validation run left unfinished;
- Redis levels against PostgreSQL: the rollout's desired state names what the status and
  the deployment row say, the environment's level names PostgreSQL's active snapshot, and
  no epoch is above ``pkg:epoch``.

Each function returns findings (human-readable strings); an empty list is a pass.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from evaluator_sidecar.signals import keys
from evaluator_sidecar.signals.cohorts import in_canary
from evaluator_sidecar.store.audit_chain import AuditRow, ChainWalker
from pkg_testbed.cluster import Cluster, condition
from pkg_testbed.product import SidecarProcess

__all__ = ["Place", "audit_chain_findings", "check_rollout", "check_snapshot"]


@dataclass(frozen=True)
class Place:
    """Where a rollout goes: the environment, target and region of its sidecars."""

    env: str
    target: str
    region: str


async def _rows(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def audit_chain_findings(database_url: str) -> list[str]:
    """The whole audit chain recomputed up to its head (as PKGAuditDAO.verify_audit_chain)."""
    conn = await asyncpg.connect(database_url)
    try:
        head = await conn.fetchrow("SELECT last_id, last_hash FROM pkg_audit_head WHERE singleton")
        if head is None:
            return ["audit chain: no pkg_audit_head row"]
        rows = await conn.fetch(
            "SELECT id, created_at, action, actor, entity_type, entity_id, snapshot_id, "
            "details::text AS details_text, idempotency_key, prev_hash, hash FROM pkg_audit_log "
            "WHERE id <= $1 ORDER BY id",
            head["last_id"],
        )
    finally:
        await conn.close()
    walker = ChainWalker()
    walker.feed(AuditRow(**dict(r)) for r in rows)
    report = walker.finish(head["last_id"], head["last_hash"])
    return [] if report.ok else [f"audit chain broken: {report}"]


def _condition_findings(obj: dict[str, Any], want: dict[str, str]) -> list[str]:
    findings = []
    generation = obj["metadata"].get("generation")
    for kind, status in want.items():
        found = condition(obj, kind)
        if found.get("status") != status:
            findings.append(f"condition {kind} is {found.get('status')!r}, want {status!r}")
        elif found.get("observedGeneration") not in (None, generation):
            findings.append(
                f"condition {kind} observed generation {found.get('observedGeneration')}, "
                f"the object is at {generation}"
            )
    return findings


#: What the conditions say for each end (summary) of a rollout.
_END_CONDITIONS = {
    "Succeeded": {"Available": "True", "Degraded": "False", "Progressing": "False"},
    "RolledBack": {"Degraded": "True", "Progressing": "False"},
}


def _expected_versions(
    sidecars: Sequence[SidecarProcess], uid: str, status: dict[str, Any]
) -> dict[str, str | None]:
    stable = (status.get("stable") or {}).get("version")
    canary = (status.get("canary") or {}).get("version")
    weight = float(status.get("weight") or 0)
    return {
        s.device_id: canary if canary and in_canary(s.device_id, uid, weight) else stable
        for s in sidecars
    }


def _sidecar_findings(
    sidecars: Sequence[SidecarProcess], want: dict[str, str | None], settle_s: float
) -> list[str]:
    deadline = time.monotonic() + settle_s
    while True:
        seen: dict[str, Any] = {}
        for proc in sidecars:
            try:
                seen[proc.device_id] = proc.metadata().get("version")
            except OSError as exc:
                seen[proc.device_id] = f"<no answer: {exc}>"
        if seen == want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return [
        f"sidecar {device} runs {seen[device]!r}, its cohort says {version!r}"
        for device, version in want.items()
        if seen[device] != version
    ]


async def _audit_findings(database_url: str, uid: str, *, steps: int, succeeded: bool) -> list[str]:
    rows = await _rows(
        database_url,
        "SELECT id, action, idempotency_key, details FROM pkg_audit_log "
        "WHERE idempotency_key LIKE $1 || '/%' ORDER BY id",
        uid,
    )
    findings = []
    by_key = Counter(r["idempotency_key"] for r in rows)
    findings += [
        f"audit rows with one idempotency key twice: {k}" for k, n in by_key.items() if n > 1
    ]
    step_rows: Counter[tuple[Any, ...]] = Counter()
    step_indices = set()
    for r in rows:
        details = json.loads(r["details"]) if isinstance(r["details"], str) else r["details"]
        if r["action"].startswith("deployment.") and "kind" in details and "step" in details:
            step_rows[(details.get("attempt"), details["step"], details["kind"])] += 1
            step_indices.add(details["step"])
    findings += [
        f"step applied twice (attempt, step, kind) = {k}" for k, n in step_rows.items() if n > 1
    ]
    if succeeded:
        missing = sorted(set(range(steps)) - step_indices)
        if missing:
            findings.append(f"no audit row for steps {missing} of a succeeded rollout")
    return findings


async def _promotion_findings(
    database_url: str, deployment: str, version: str | None, *, succeeded: bool
) -> list[str]:
    rows = await _rows(
        database_url,
        "SELECT p.id, p.action, p.idempotency_key, s.version FROM pkg_promotions p "
        "JOIN pkg_snapshots s ON s.id = p.snapshot_id WHERE p.metrics->>'deployment' = $1 "
        "ORDER BY p.id",
        deployment,
    )
    promotes = [r for r in rows if r["action"] == "promote"]
    findings = []
    want = 1 if succeeded else 0
    if len(promotes) != want:
        listed = [(r["action"], r["version"]) for r in rows]
        findings.append(
            f"{len(promotes)} promotions recorded for {deployment}, want {want}: {listed}"
        )
    findings += [
        f"promotion of {r['version']}, want {version}" for r in promotes if r["version"] != version
    ]
    for r in rows:
        audited = await _rows(
            database_url,
            "SELECT 1 FROM pkg_audit_log WHERE entity_type = 'promotion' AND entity_id = $1 "
            "OR (idempotency_key IS NOT NULL AND idempotency_key = $2)",
            str(r["id"]),
            r["idempotency_key"],
        )
        if not audited:
            findings.append(f"promotion {r['id']} ({r['action']} {r['version']}) has no audit row")
    return findings


async def _level(redis_url: str, key: str) -> tuple[dict[str, Any] | None, int]:
    client = aioredis.from_url(redis_url)
    try:
        raw, epoch = await client.mget([key, keys.EPOCH_KEY])
    finally:
        await client.aclose()
    level = json.loads(raw) if raw else None
    return level, int(epoch or 0)


def _ref_version(ref: Any) -> str | None:
    if isinstance(ref, dict):
        version = ref.get("version")
        return str(version) if version else None
    return None


async def _rollout_level_findings(
    redis_url: str, place: Place, status: dict[str, Any]
) -> list[str]:
    level, epoch = await _level(redis_url, keys.rollout_key(place.env, place.target, place.region))
    if level is None:
        return [f"no desired state in Redis for {place}"]
    findings = []
    if int(level.get("epoch") or 0) > epoch:
        findings.append(f"level epoch {level.get('epoch')} above pkg:epoch {epoch}")
    stable = (status.get("stable") or {}).get("version")
    canary = (status.get("canary") or {}).get("version")
    if _ref_version(level.get("stable")) != stable:
        findings.append(f"Redis stable {_ref_version(level.get('stable'))!r}, status {stable!r}")
    if _ref_version(level.get("canary")) != canary:
        findings.append(f"Redis canary {_ref_version(level.get('canary'))!r}, status {canary!r}")
    return findings


async def _deployment_row_findings(
    database_url: str, uid: str, version: str | None, *, succeeded: bool
) -> list[str]:
    rows = await _rows(
        database_url,
        "SELECT d.percent, d.is_active, s.version FROM pkg_deployments d "
        "JOIN pkg_snapshots s ON s.id = d.snapshot_id WHERE d.deployment_uid = $1",
        uid,
    )
    if not succeeded:
        return []
    # The last step ("complete") records the snapshot as the place's stable: active, with
    # the canary weight back at 0.
    done = [r for r in rows if r["version"] == version]
    if len(done) != 1 or not done[0]["is_active"]:
        return [f"pkg_deployments for a succeeded rollout: {[dict(r) for r in rows]}"]
    return []


async def check_rollout(
    cluster: Cluster,
    *,
    namespace: str,
    deployment: str,
    sidecars: Sequence[SidecarProcess],
    database_url: str,
    redis_url: str,
    place: Place,
    expect_summary: str = "Succeeded",
    settle_s: float = 20.0,
) -> list[str]:
    """Findings about a PolicyDeployment that has reached its end (empty: all hold)."""
    obj = cluster.get("pdep", deployment, namespace)
    status = obj.get("status") or {}
    uid = obj["metadata"]["uid"]
    findings = []
    summary = status.get("summary")
    if summary != expect_summary:
        findings.append(f"summary {summary!r}, want {expect_summary!r}: {status.get('message')}")
    findings += _condition_findings(obj, _END_CONDITIONS.get(expect_summary, {}))
    succeeded = summary == "Succeeded"
    snapshot = cluster.get("psnap", obj["spec"]["snapshotRef"]["name"], namespace)
    version = snapshot["spec"]["version"]
    if succeeded and (status.get("stable") or {}).get("version") != version:
        findings.append(f"status.stable {status.get('stable')}, want {version}")
    findings += _sidecar_findings(sidecars, _expected_versions(sidecars, uid, status), settle_s)
    steps = len(((obj["spec"].get("strategy") or {}).get("canary") or {}).get("steps") or [])
    findings += await _audit_findings(database_url, uid, steps=steps, succeeded=succeeded)
    findings += await _promotion_findings(
        database_url, f"{namespace}/{deployment}", version, succeeded=succeeded
    )
    findings += await _deployment_row_findings(database_url, uid, version, succeeded=succeeded)
    findings += await _rollout_level_findings(redis_url, place, status)
    findings += await audit_chain_findings(database_url)
    return findings


async def check_snapshot(
    cluster: Cluster,
    *,
    namespace: str,
    snapshot: str,
    database_url: str,
    redis_url: str,
    sidecars: Sequence[SidecarProcess] = (),
    expect_active: bool = True,
    settle_s: float = 20.0,
) -> list[str]:
    """Findings about a PolicySnapshot after store -> validate (-> promote)."""
    obj = cluster.get("psnap", snapshot, namespace)
    version, env = obj["spec"]["version"], obj["spec"]["env"]
    want = {"Ready": "True"}
    if expect_active:
        want["Active"] = "True"
    findings = _condition_findings(obj, want)
    rows = await _rows(
        database_url, "SELECT id, is_active FROM pkg_snapshots WHERE version = $1", version
    )
    if len(rows) != 1:
        return [*findings, f"{len(rows)} rows in pkg_snapshots for {version}"]
    snapshot_id = rows[0]["id"]
    runs = await _rows(
        database_url,
        "SELECT id, success, finished_at FROM pkg_validation_runs WHERE snapshot_id = $1",
        snapshot_id,
    )
    if not any(r["success"] for r in runs):
        findings.append(f"no successful validation run for {version}: {[dict(r) for r in runs]}")
    findings += [
        f"validation run {r['id']} never finished" for r in runs if r["finished_at"] is None
    ]
    promotions = await _rows(
        database_url,
        "SELECT id, action, idempotency_key FROM pkg_promotions WHERE snapshot_id = $1",
        snapshot_id,
    )
    promotes = [r for r in promotions if r["action"] == "promote"]
    if len(promotes) != (1 if expect_active else 0):
        findings.append(f"{len(promotes)} promotions of {version}")
    if expect_active and not rows[0]["is_active"]:
        findings.append(f"{version} is not active in PostgreSQL, its status says Active")
    active = await _rows(
        database_url, "SELECT version FROM pkg_snapshots WHERE env = $1::pkg_env AND is_active", env
    )
    level, epoch = await _level(redis_url, keys.env_key(env))
    active_version = active[0]["version"] if active else None
    if level is None or _ref_version(level.get("stable")) != active_version:
        stable = None if level is None else _ref_version(level.get("stable"))
        findings.append(f"Redis level of {env} names {stable!r}, PostgreSQL {active_version!r}")
    elif int(level.get("epoch") or 0) > epoch:
        findings.append(f"level epoch {level.get('epoch')} above pkg:epoch {epoch}")
    if sidecars:
        findings += _sidecar_findings(
            sidecars, {s.device_id: active_version for s in sidecars}, settle_s
        )
    findings += await audit_chain_findings(database_url)
    return findings
