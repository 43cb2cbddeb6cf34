"""Every link, one at a time, slowed by 500 ms or its connections reset, through a canary.

The five links (operator to Redis, PostgreSQL and the API server; sidecars to Redis and
PostgreSQL) each go through a fault proxy. From the rollout's start the scenario's link
adds 500 ms to every round trip, or resets every connection within 2 s of its opening,
for 20 s; then it heals. The rollout must finish, every answer meanwhile right.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import (
    LINKS,
    Fault,
    FaultWorld,
    record_outcome,
    run_mid_rollout,
)
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

HOLD_S = 20.0


@pytest.mark.parametrize(
    "case",
    [(f, link) for f in ("latency-500ms", "resets") for link in LINKS],
    ids="/".join,
)
def test_a_canary_finishes_through_a_slow_or_resetting_link(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
    case: tuple[str, str],
) -> None:
    fault, link = case
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    try:
        world.start_operator()
        world.snapshots()
        world.start_fleet(4)
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        proxy = world.proxies[link]

        def inject() -> None:
            if fault == "resets":
                proxy.resets(2.0)
            else:
                proxy.latency(500)

        outcome = run_mid_rollout(
            world, Fault(inject=inject, heal=proxy.passthrough, hold=HOLD_S, when=lambda w: True)
        )
        counters = proxy.counters
    finally:
        world.close()
    record_outcome(
        f"partition/{fault}/{link}",
        group="partition",
        outcome=outcome,
        faults=max(1, counters.resets) if fault == "resets" else 1,
        notes=f"{fault} on {link} for {HOLD_S:g} s from the rollout's start",
        extra={"connections": counters.connections, "resets": counters.resets},
    )
