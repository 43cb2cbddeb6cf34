"""PostgreSQL goes away mid-rollout, and during a promotion.

The operator and the sidecars reach PostgreSQL through fault proxies; "down" closes
every open connection and refuses new ones, as a stopped server would (the shared
test-bed server itself keeps running for the other tests). Sidecars keep answering
from the snapshots they hold; the operator must finish the rollout once PostgreSQL
is back, with nothing lost and the promotion done once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import (
    Fault,
    FaultWorld,
    half_way,
    record_outcome,
    run_mid_rollout,
)
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

OUTAGE_S = 30.0


def _world(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp: Path
) -> FaultWorld:
    world = FaultWorld(cluster, namespace, start_operator, tmp / "world")
    world.start_operator()
    world.snapshots()
    world.start_fleet(4)
    wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
    return world


def _postgres(world: FaultWorld, mode: str) -> None:
    for link in ("operator-postgres", "sidecar-postgres"):
        getattr(world.proxies[link], mode)()


def test_a_canary_finishes_after_postgres_is_down_30s_mid_rollout(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    world = _world(cluster, namespace, start_operator, tmp_path)
    try:
        outcome = run_mid_rollout(
            world,
            Fault(
                inject=lambda: _postgres(world, "down"),
                heal=lambda: _postgres(world, "passthrough"),
                hold=OUTAGE_S,
            ),
        )
    finally:
        world.close()
    record_outcome(
        "outage/postgres-down-30s/mid-rollout",
        group="outage",
        outcome=outcome,
        notes=f"PostgreSQL refused to operator and sidecars for {OUTAGE_S:g} s at 50 %",
    )


def test_a_promotion_asked_for_while_postgres_is_down_happens_once_it_is_back(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    world = _world(cluster, namespace, start_operator, tmp_path)

    def down_then_promote() -> None:
        _postgres(world, "down")
        action = {
            "action": "promote",
            "token": uuid.uuid4().hex[:12],
            "actor": "chaos",
            "reason": "promotion during a PostgreSQL outage",
        }
        cluster.kubectl(
            "annotate",
            "pdep",
            "rollout",
            "-n",
            namespace,
            "--overwrite",
            f"pkg.seedcore.io/action={json.dumps(action)}",
        )

    def paused_half_way(w: FaultWorld) -> bool:
        return w.outcome() == "Paused" and half_way(w)

    try:
        outcome = run_mid_rollout(
            world,
            Fault(
                inject=down_then_promote,
                heal=lambda: _postgres(world, "passthrough"),
                hold=20,
                when=paused_half_way,
            ),
            steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}],
        )
        promotions = cluster.kubectl(
            "get", "pdep", "rollout", "-n", namespace, "-o", "jsonpath={.status.stable.version}"
        )
    finally:
        world.close()
    record_outcome(
        "outage/postgres-down-20s/during-promotion",
        group="outage",
        outcome=outcome,
        notes="PostgreSQL refused for 20 s from the moment a manual promote was asked at the gate",
        extra={"stable_after": promotions},
    )
