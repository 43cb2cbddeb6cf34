"""PostgreSQL goes away mid-rollout, during a promotion, and while a snapshot is applied.

The operator and the sidecars reach PostgreSQL through fault proxies; "down" closes
every open connection and refuses new ones, as a stopped server would (the shared
test-bed server itself keeps running for the other tests). Sidecars keep answering
from the snapshots they hold; the operator must finish the rollout once PostgreSQL
is back, with nothing lost and the promotion done once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from pkg_testbed.chaos.faultworld import (
    AnswerLoad,
    Fault,
    FaultWorld,
    half_way,
    record_outcome,
    run_mid_rollout,
    versioned_snapshot_doc,
)
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, condition, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

OUTAGE_S = 30.0
#: From applying a snapshot during an outage to its end, and how soon after the end the
#: fleet must run it (the operator retries a failed snapshot reconciliation every few s).
APPLY_TO_HEAL_S = 11.5
SNAPSHOT_WITHIN_S = 6.0


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


def test_a_snapshot_applied_while_postgres_is_down_reaches_the_fleet_once_it_is_back(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    """v2 (autoPromote) applied 2 s into an outage that ends 11.5 s later: stored, validated,
    promoted and run by every sidecar within seconds of PostgreSQL's return.

    The operator first tries to store v2 at once and fails; the outage ends just after a
    second attempt would have come with the old fixed 10 s retry delay, so that delay
    (the next attempt 8-9 s after PostgreSQL is back) fails the scenario."""
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    failures: list[str] = []
    converge_s: float | None = None
    try:
        world.start_operator()
        _apply(world, "v1", world.v1)
        wait_for(partial(_active, world, "v1"), timeout=90, what="v1 Active")
        world.start_fleet(4)
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        with AnswerLoad([p.url for p in world.sidecars.values()], world.expected) as load:
            _postgres(world, "down")
            time.sleep(2)
            _apply(world, "v2", world.v2)
            time.sleep(APPLY_TO_HEAL_S)
            _postgres(world, "passthrough")
            healed = time.monotonic()
            try:
                wait_for(lambda: world.on(world.v2), timeout=120, what="the fleet on v2")
                converge_s = time.monotonic() - healed
                wait_for(partial(_active, world, "v2"), timeout=30, what="v2 Active")
                if converge_s > SNAPSHOT_WITHIN_S:
                    failures.append(
                        f"the fleet ran v2 {converge_s:.1f} s after PostgreSQL came back, "
                        f"want within {SNAPSHOT_WITHIN_S:g} s"
                    )
            except AssertionError as exc:
                failures.append(str(exc))
    finally:
        world.close()
    answers = load.answers
    lost = answers.lost + answers.wrong
    record(
        ScenarioRecord(
            scenario="outage/postgres-down-13s/snapshot-applied",
            group="outage",
            faults=1,
            passes=1 if not failures and lost == 0 else 0,
            converge_s=None if converge_s is None else round(converge_s, 2),
            answers_total=answers.total,
            answers_lost=lost,
            failures=failures + answers.failures,
            notes=f"an autoPromote PolicySnapshot applied 2 s into a PostgreSQL outage that "
            f"ends {APPLY_TO_HEAL_S:g} s later; converge_s: from PostgreSQL's return to every "
            "sidecar on it",
            extra={"answers_by_version": dict(answers.by_version)},
        )
    )
    assert not failures, failures
    assert lost == 0, f"{lost} of {answers.total} answers lost: {answers.failures}"


def _apply(world: FaultWorld, name: str, version: str) -> None:
    world.cluster.kubectl(
        "apply",
        "--server-side",
        "-n",
        world.namespace,
        "-f",
        "-",
        stdin=versioned_snapshot_doc(name, version, env=world.env, auto=True),
    )


def _active(world: FaultWorld, name: str) -> bool:
    return condition(world.psnap(name), "Active").get("status") == "True"
