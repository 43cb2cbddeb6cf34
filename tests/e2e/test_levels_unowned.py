"""A rollout level no PolicyDeployment owns is removed, and its fleet goes back to the
environment's level (issue 14, item 1).

A level ``pkg:desired:{env}:{target}:{region}`` written by hand (or left behind by a
deleted PolicyDeployment) steered its target's sidecars for ever. The level
reconciler withdraws and deletes it within one pass, with an audit row and an
event; the figure is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from test_levels import (
    DEVICES,
    SIDECAR_RESYNC,
    WITHIN,
    LevelFleet,
    converge,
    fleet_factory,
    operator,
    query,
    report,
    start_env,
    wait_status,
)
from test_rollout import EU, deployment_doc, status_is

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_testbed.cluster import Cluster, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.e2e

__all__ = ["fleet_factory"]  # the fixture, shared with test_levels


def _warnings(cluster: Cluster, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name},type=Warning,reason={reason}"
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-ojson")
    )["items"]
    return items


async def test_a_rollout_level_nobody_owns_is_removed_and_the_fleet_follows_its_environment(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    operator(start_operator)
    env = "staging"
    fleet, ids, v1 = start_env(cluster, namespace, fleet_factory, env, "orphan")
    v2 = f"rules@2.0.0-orphan-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")
    (row,) = await query(cluster, "SELECT id, checksum FROM pkg_snapshots WHERE version = $1", v2)

    key = f"pkg:desired:{env}:{fleet.target}:eu-west"
    client = aioredis.from_url(cluster.redis_url)
    try:
        forged = {
            "epoch": 10**9,
            "env": env,
            "target": fleet.target,
            "region": "eu-west",
            "deployment": "written-by-hand",
            "stable": {"version": v2, "snapshot_id": row["id"], "checksum": row["checksum"]},
            "canary": None,
            "canary_percent": 0,
            "updated_at": time.time(),
            "reason": "written by hand",
        }
        await client.set(key, json.dumps(forged))
        await client.publish(
            "pkg_updates", json.dumps({"kind": "desired", "key": key, "state": forged})
        )
        started = time.monotonic()
        # No PolicyDeployment owns it: the fleet moves at once (the edge), then is taken back.
        moved = wait_for(
            lambda: [d for d, v in fleet.versions(ids).items() if v == v2] or None,
            timeout=WITHIN,
            what=f"the hand-written rollout level to move a sidecar to {v2}",
        )
        while time.monotonic() - started < WITHIN:
            if not await client.exists(key):
                break
            await asyncio.sleep(0.05)
        removed = time.monotonic() - started
        assert not await client.exists(key), f"{key} is still in Redis after {removed:.1f}s"
        converge(fleet, ids, v1, timeout=WITHIN, what=f"every sidecar back on {v1}")
        seconds = time.monotonic() - started
        report(f"unowned rollout level: {len(moved)} moved to it; key removed", removed)
        report(f"unowned rollout level: {DEVICES}/{DEVICES} back on the environment's", seconds)
        assert seconds <= WITHIN
        # The environment's level was never touched: the fleet follows it again.
        env_level = json.loads(await client.get(f"pkg:desired:{env}"))
        assert env_level["stable"]["version"] == v1
    finally:
        await client.aclose()

    audits = await query(
        cluster,
        "SELECT actor, details FROM pkg_audit_log WHERE action = 'desired.removed' "
        "AND entity_id = $1",
        key,
    )
    assert len(audits) == 1, audits
    details = audits[0]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["reason"] == "unowned"
    assert details["found"]["stable"]["version"] == v2
    assert details["found"]["epoch"] == forged["epoch"]
    assert details["withdrawal_epoch"] > forged["epoch"]
    events = await asyncio.to_thread(
        wait_for,
        lambda: _warnings(cluster, namespace, "two", "DesiredStateRemoved") or None,
        what="the DesiredStateRemoved event on the PolicySnapshot the level named",
    )
    assert key in events[0]["message"]


async def test_a_sidecar_whose_rollout_level_disappears_follows_its_environments_level(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    """The sidecars alone: no operator runs while the rollout level comes and goes."""
    proc = operator(start_operator)
    env = "staging"
    fleet, ids, v1 = start_env(cluster, namespace, fleet_factory, env, "vanish")
    v2 = f"rules@2.0.0-vanish-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")
    (row,) = await query(cluster, "SELECT id, checksum FROM pkg_snapshots WHERE version = $1", v2)
    proc.stop()

    key = f"pkg:desired:{env}:{fleet.target}:eu-west"
    client = aioredis.from_url(cluster.redis_url)
    try:
        level = {
            "epoch": 10**9 + 7,
            "env": env,
            "target": fleet.target,
            "region": "eu-west",
            "deployment": "gone-soon",
            "stable": {"version": v2, "snapshot_id": row["id"], "checksum": row["checksum"]},
            "canary": None,
            "canary_percent": 0,
            "updated_at": time.time(),
            "reason": "written by hand",
        }
        await client.set(key, json.dumps(level))  # silently: the sidecars read it on resync
        converge(fleet, ids, v2, timeout=WITHIN, what=f"the fleet to follow the level to {v2}")
        await client.delete(key)
        started = time.monotonic()
        seconds = converge(fleet, ids, v1, timeout=WITHIN, what=f"every sidecar back on {v1}")
        report(f"rollout level deleted: {DEVICES}/{DEVICES} back on the environment's", seconds)
        assert time.monotonic() - started <= SIDECAR_RESYNC + 4.0
    finally:
        await client.aclose()


async def test_the_level_a_deleted_deployment_left_behind_is_removed(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    operator(start_operator)
    env = "staging"
    fleet, ids, v1 = start_env(cluster, namespace, fleet_factory, env, "left")
    v2 = f"rules@2.0.0-left-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")
    cluster.apply(
        namespace,
        deployment_doc(
            "half", "two", env=env, target=fleet.target, region=EU, min_devices=DEVICES,
            steps=[{"setWeight": 50}, {"pause": {}}],
        ),
    )  # fmt: skip
    uid = status_is(cluster, namespace, "half", summary="Paused")["metadata"]["uid"]
    converge(
        fleet,
        [d for d in ids if in_canary(d, uid, 50)],
        v2,
        timeout=WITHIN,
        what="the canary half on v2",
    )
    key = f"pkg:desired:{env}:{fleet.target}:{EU}"
    cluster.kubectl("delete", "pdep", "half", "-n", namespace, "--timeout=60s")
    started = time.monotonic()
    seconds = converge(fleet, ids, v1, timeout=WITHIN, what=f"every sidecar back on {v1}")
    report(f"deleted deployment's level: {DEVICES}/{DEVICES} back on the environment's", seconds)
    client = aioredis.from_url(cluster.redis_url)
    try:
        assert not await client.exists(key)
    finally:
        await client.aclose()
    assert time.monotonic() - started <= WITHIN
    audits = await query(
        cluster,
        "SELECT details FROM pkg_audit_log WHERE action = 'desired.removed' AND entity_id = $1",
        key,
    )
    assert len(audits) == 1, audits
