"""The API server restarts in the middle of a canary (etcd, the cluster's state, is kept).

kopf's watches break and its status patches fail while kube-apiserver is stopped
(20 s); sidecars do not talk to it at all and keep answering. Once it is back the
operator must pick the deployment up where it was and finish it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import Fault, FaultWorld, record_outcome, run_mid_rollout
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

OUTAGE_S = 20.0


def test_a_canary_finishes_after_the_api_server_restarts_mid_rollout(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    kube = cluster.kube
    try:
        world.start_operator()
        world.snapshots()
        world.start_fleet(4)
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        outcome = run_mid_rollout(
            world, Fault(inject=kube.stop_apiserver, heal=kube.start_apiserver, hold=OUTAGE_S)
        )
    finally:
        world.close()
    record_outcome(
        "outage/apiserver-restart/mid-rollout",
        group="outage",
        outcome=outcome,
        notes=f"kube-apiserver stopped for {OUTAGE_S:g} s at 50 % and started again, etcd kept",
    )
