"""Half the pub/sub messages to the sidecars lost, through a whole rollout and its rollback.

Four sidecars reach Redis through one fault proxy that drops each pub/sub message
(``message`` frames: desired-state and activate messages) with probability 0.5; their
commands and replies pass untouched. A canary of v2 goes through 25 %, 50 %, a gate a
person promotes, 75 % and 100 %, and is then rolled back to v1. At every published
state the fleet must end up on what its cohorts say: what a lost message did not bring,
the sidecars' periodic re-read of the levels (every 2 s here) must. The time from the
status naming each state to every sidecar running it is measured per step; every
evaluate request meanwhile must be answered, and rightly. The end state is checked by
the oracle after the success, and the rollback by the fleet and the promotion rows.
The same run without drops is the control the figures are compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pkg_testbed.chaos.faultworld import REGION, AnswerLoad, FaultWorld
from pkg_testbed.chaos.oracle import Place, check_rollout
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.chaos.stepwatch import StepWatch, ask, summary_is
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.procs import TestbedError
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 75},
    {"setWeight": 100},
]


async def _promotions(database_url: str, deployment: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT p.action, s.version FROM pkg_promotions p "
            "JOIN pkg_snapshots s ON s.id = p.snapshot_id "
            "WHERE p.metrics->>'deployment' = $1 ORDER BY p.id",
            deployment,
        )
    finally:
        await conn.close()
    return [(r["action"], r["version"]) for r in rows]


async def _steps(world: FaultWorld, watch: StepWatch) -> list[str]:
    watch.follow(summary_is("Paused"), timeout=120, what="the gate at 50 %")
    ask(world, "promote", reason="chaos: pub/sub messages dropped")
    watch.follow(summary_is("Succeeded"), timeout=120, what="the rollout's success")
    findings = await check_rollout(
        world.cluster,
        namespace=world.namespace,
        deployment="rollout",
        sidecars=list(world.sidecars.values()),
        database_url=world.cluster.database_url,
        redis_url=world.redis_url,
        place=Place(world.env, world.target, REGION),
    )
    ask(world, "rollback", reason="chaos: roll back with pub/sub messages dropped")
    obj = watch.follow(summary_is("RolledBack"), timeout=120, what="the rollback")
    stable = ((obj.get("status") or {}).get("stable") or {}).get("version")
    if stable != world.v1:
        findings.append(f"after the rollback status.stable is {stable!r}, want {world.v1}")
    if not world.on(world.v1):
        findings.append(f"after the rollback the fleet runs {world.versions()}, want {world.v1}")
    rows = await _promotions(world.cluster.database_url, f"{world.namespace}/rollout")
    if rows != [("promote", world.v2), ("rollback", world.v1)]:
        findings.append(f"promotion rows {rows}, want a promote of v2 then a rollback to v1")
    return findings


@pytest.mark.parametrize("fraction", [0.5, 0.0], ids=["drop-50pct", "control"])
async def test_the_fleet_follows_every_step_with_half_the_pubsub_messages_lost(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
    fraction: float,
) -> None:
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    findings: list[str] = []
    watch: StepWatch | None = None
    try:
        world.start_operator()
        world.snapshots()
        world.start_fleet(4)
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        proxy = world.proxies["sidecar-redis"]
        if fraction:
            proxy.drop_pubsub(fraction)
        with AnswerLoad([p.url for p in world.sidecars.values()], world.expected) as load:
            watch = StepWatch(world)
            world.rollout(STEPS)
            try:
                findings = await _steps(world, watch)
            except (AssertionError, TestbedError) as exc:
                findings = [f"{type(exc).__name__}: {exc}"]
            finally:
                watch.close()
        counters = proxy.counters
    finally:
        world.close()
    answers = load.answers
    lost = answers.lost + answers.wrong
    scenario = f"partition/pubsub-drop-{fraction:.0%}/rollout-and-rollback"
    worst = watch.worst() if watch is not None else None
    record(
        ScenarioRecord(
            scenario=scenario.replace("%", "pct"),
            group="partition",
            faults=counters.messages_dropped or 1,
            passes=(counters.messages_dropped or 1) if not findings and lost == 0 else 0,
            converge_s=None if worst is None else round(worst, 2),
            answers_total=answers.total,
            answers_lost=lost,
            failures=findings + answers.failures,
            notes=(
                f"{fraction:.0%} of pub/sub messages to the sidecars dropped through 25/50/gate/"
                "75/100 % and a rollback; converge_s is the slowest step"
            ),
            extra={
                "steps": watch.times() if watch is not None else [],
                "kubectl_failures": watch.hiccups if watch is not None else [],
                "messages_seen": counters.messages_seen,
                "messages_dropped": counters.messages_dropped,
                "answers_by_version": dict(answers.by_version),
            },
        )
    )
    assert not findings, f"{scenario}: {findings}"
    assert lost == 0, f"{scenario}: {lost} of {answers.total} answers lost: {answers.failures}"
    if fraction:
        assert counters.messages_dropped > 0, "the proxy dropped no message: nothing was tested"
