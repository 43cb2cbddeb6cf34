"""The sidecars cut off from PostgreSQL (Redis fine) when a rollout asks them for a new snapshot.

Four sidecars with the product's default resync interval (30 s) reach PostgreSQL through
one proxy, which refuses them; the operator's own link stays up. A one-step canary of
v2 to 100 % is applied: every sidecar learns of it at once through Redis but cannot
load v2 (never seen, so not in its cache) and keeps answering with v1. After 10 s
PostgreSQL is reachable again; every sidecar must run v2 within a few seconds of that,
not at its next periodic resync, and the rollout succeed. No answer may be lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import REGION, AnswerLoad, FaultWorld
from pkg_testbed.chaos.oracle import Place, check_rollout
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

HOLD_S = 10.0
#: How soon after PostgreSQL's return every sidecar must run v2 (its resync is 30 s).
WITHIN_S = 8.0


async def test_sidecars_load_the_new_snapshot_within_seconds_of_postgres_coming_back(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    failures: list[str] = []
    converge_s: float | None = None
    try:
        world.start_operator()
        world.snapshots()
        world.start_fleet(4, env={"PKG_RESYNC_INTERVAL_SECONDS": "30"})
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        proxy = world.proxies["sidecar-postgres"]
        with AnswerLoad([p.url for p in world.sidecars.values()], world.expected) as load:
            proxy.down()
            world.rollout([{"setWeight": 100}])
            await asyncio.sleep(HOLD_S)
            during = world.versions()
            proxy.passthrough()
            healed = time.monotonic()
            try:
                wait_for(lambda: world.on(world.v2), timeout=60, what="the fleet on v2")
                converge_s = time.monotonic() - healed
            except AssertionError as exc:
                failures.append(str(exc))
        if any(v != world.v1 for v in during.values()):
            failures.append(f"without PostgreSQL the fleet ran {during}, want v1 everywhere")
        if converge_s is not None and converge_s > WITHIN_S:
            failures.append(
                f"the fleet ran v2 {converge_s:.1f} s after PostgreSQL came back, "
                f"want within {WITHIN_S:g} s"
            )
        wait_for(lambda: world.outcome() == "Succeeded", timeout=60, what="the rollout's success")
        failures += await check_rollout(
            cluster,
            namespace=namespace,
            deployment="rollout",
            sidecars=list(world.sidecars.values()),
            database_url=cluster.database_url,
            redis_url=world.redis_url,
            place=Place(world.env, world.target, REGION),
        )
    finally:
        world.close()
    answers = load.answers
    lost = answers.lost + answers.wrong
    record(
        ScenarioRecord(
            scenario="partition/sidecar-postgres-only/new-snapshot",
            group="partition",
            faults=1,
            passes=1 if not failures and lost == 0 else 0,
            converge_s=None if converge_s is None else round(converge_s, 2),
            answers_total=answers.total,
            answers_lost=lost,
            failures=failures + answers.failures,
            notes=f"the sidecars' PostgreSQL link down for {HOLD_S:g} s from the moment a "
            "canary to 100 % of a snapshot they never loaded is applied (resync interval 30 s)",
            extra={"answers_by_version": dict(answers.by_version)},
        )
    )
    assert not failures, failures
    assert lost == 0, f"{lost} of {answers.total} answers lost: {answers.failures}"
