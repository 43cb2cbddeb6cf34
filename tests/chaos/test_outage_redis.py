"""Redis goes down for 30 s in the middle of a canary, and comes back with or without its data.

A Redis server of the scenario's own (so a restart hurts no other test) serves the
operator and four sidecars; the canary is at 50 % when Redis is killed (SIGKILL). It
comes back after 30 s on the same port, either from its append-only file (persistence)
or empty (the levels, heartbeats and epoch floor gone). Throughout, every sidecar keeps
answering with its active snapshot; afterwards the rollout must finish on its own:
every device on v2, the deployment Succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import Fault, FaultWorld, record_outcome, run_mid_rollout
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.chaos

OUTAGE_S = 30.0


@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "restarted-empty"])
def test_a_canary_finishes_after_redis_is_down_30s_mid_rollout(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
    persistence: bool,
) -> None:
    extra = ["--appendonly", "yes", "--appendfsync", "always"] if persistence else []
    redis = RedisServer(tmp_path / "redis", extra_args=extra)
    redis.start()
    world = FaultWorld(
        cluster, namespace, start_operator, tmp_path / "world", redis_url=redis.url()
    )
    try:
        world.start_operator()
        world.snapshots()
        world.start_fleet(4)
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        outcome = run_mid_rollout(world, Fault(inject=redis.kill, heal=redis.start, hold=OUTAGE_S))
    finally:
        world.close()
        redis.stop()
    how = "from its append-only file" if persistence else "empty"
    record_outcome(
        f"outage/redis-down-30s/{'persistent' if persistence else 'restarted-empty'}",
        group="outage",
        outcome=outcome,
        notes=f"Redis killed (SIGKILL) with the canary at 50 %, back after {OUTAGE_S:g} s {how}",
    )
