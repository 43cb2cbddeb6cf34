"""Two operator replicas, one of them waking on a stale view: nothing is applied twice.

Both replicas share a peering object; the one with the higher priority works. A
replica's view is frozen by stopping its process (SIGSTOP: its watch streams, its cache
of the objects and its memory of its own last status stay as they were) while the other
goes on, then it is woken (SIGCONT):

1. the active replica is frozen mid-rollout; once its peering record expires the standby
   takes over and finishes the rollout; then the frozen one wakes, with the higher
   priority and a cache still at the step where it stopped, and works again;
2. the standby is frozen; the active replica finishes a rollout and is killed (kill -9);
   the standby wakes on its stale cache and, once the dead one's record expires, works.

After each wake-up the deployment's status must never go back (``status.seq``), Redis's
level must not return to an older canary, and the oracle must find no double promotion,
no step applied twice, no missing row, and every sidecar where its cohort says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
import redis

from evaluator_sidecar.signals import keys
from pkg_testbed.chaos.crash import CrashBed, CrashRun
from pkg_testbed.chaos.oracle import Place, check_rollout
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess

LIFETIME = 15


class Watcher:
    """Polls the deployment's status.seq and the rollout's Redis level; notes any regress."""

    def __init__(self, bed: CrashBed, namespace: str) -> None:
        self.bed, self.namespace = bed, namespace
        self.regressions: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        client = redis.Redis.from_url(self.bed.cluster.redis_url)
        key = keys.rollout_key(self.bed.env, self.bed.target, self.bed.region)
        last_seq, last_epoch = -1, -1
        try:
            while not self._stop.wait(0.3):
                status = self.bed.deployment(self.namespace, "roll").get("status") or {}
                seq = int(status.get("seq") or 0)
                raw = client.get(key)
                epoch = int(json.loads(raw).get("epoch") or 0) if raw else 0
                if seq < last_seq:
                    self.regressions.append(f"status.seq went back from {last_seq} to {seq}")
                if epoch < last_epoch:
                    self.regressions.append(f"level epoch went back from {last_epoch} to {epoch}")
                last_seq, last_epoch = max(seq, last_seq), max(epoch, last_epoch)
                self.samples += 1
        finally:
            client.close()


@pytest.fixture
def stale_bed(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[CrashBed]:
    tag = f"{zlib.crc32(request.node.name.encode()):08x}-{os.getpid()}"
    result = CrashBed(cluster, cluster.workdir / request.node.name, env="staging", tag=tag)
    yield result
    for operator in result.operators:  # never leave a stopped process behind
        if operator.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it is gone already
                os.kill(operator.proc.pid, signal.SIGCONT)
    failed = getattr(request.node, "rep_call", None)
    result.stop(show_logs=failed is not None and failed.failed)


def _replica(bed: CrashBed, peering: str, priority: int) -> OperatorProcess:
    return bed.operator(
        standalone=False,
        PKG_PEERING_NAME=peering,
        PKG_PEERING_PRIORITY=str(priority),
        PKG_PEERING_LIFETIME_SECONDS=str(LIFETIME),
    )


def _past_first_step(bed: CrashBed, namespace: str) -> bool:
    status = bed.deployment(namespace, "roll").get("status") or {}
    return int(status.get("currentStepIndex") or 0) >= 1


async def _judge(bed: CrashBed, namespace: str, watcher: Watcher) -> list[str]:
    findings = await check_rollout(
        bed.cluster,
        namespace=namespace,
        deployment="roll",
        sidecars=bed.sidecars,
        database_url=bed.cluster.database_url,
        redis_url=bed.cluster.redis_url,
        place=Place(bed.env, bed.target, bed.region),
    )
    return findings + watcher.regressions


@pytest.mark.chaos
@pytest.mark.timeout(900)
async def test_a_replica_waking_on_a_stale_view_applies_no_step_and_no_promotion_twice(
    stale_bed: CrashBed,
) -> None:
    bed, began = stale_bed, time.monotonic()
    peering = f"chaos-stale-{bed.tag}"
    bed.cluster.apply(
        "default",
        f"apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {{name: {peering}}}\n",
    )
    high, low = _replica(bed, peering, 200), _replica(bed, peering, 100)
    namespace = bed.new_namespace()
    bed.snapshot(namespace, "v1", f"rules@1.0.0-{bed.tag}", auto=True)
    wait_for(lambda: bed.snapshot_settled(namespace, "v1", auto=True), what="v1 promoted")
    bed.start_fleet()
    findings: dict[str, list[str]] = {}
    converge: list[float] = []

    # 1. The active replica frozen mid-rollout, the standby finishes, the frozen one wakes.
    namespace = bed.new_namespace()
    bed.snapshot(namespace, "v2", f"rules@2.0.0-{bed.tag}", auto=False)
    wait_for(lambda: bed.snapshot_settled(namespace, "v2", auto=False), what="v2 Ready")
    bed.apply_rollout(namespace, "v2")
    wait_for(lambda: _past_first_step(bed, namespace), what="the rollout past its first step")
    assert high.proc.pid is not None
    os.kill(high.proc.pid, signal.SIGSTOP)
    with Watcher(bed, namespace) as watcher:
        run = CrashRun(point="freeze-active")
        bed.drive_rollout(run, namespace, low, timeout=LIFETIME * 4 + 120)
        woke = time.monotonic()
        os.kill(high.proc.pid, signal.SIGCONT)
        await asyncio.sleep(LIFETIME)  # the woken replica works again (higher priority): let it
        findings["freeze-active"] = await _judge(bed, namespace, watcher)
        converge.append(time.monotonic() - woke)

    # 2. The standby frozen, the active replica finishes and dies, the standby wakes.
    namespace = bed.new_namespace()
    bed.snapshot(namespace, "v3", f"rules@3.0.0-{bed.tag}", auto=False)
    wait_for(lambda: bed.snapshot_settled(namespace, "v3", auto=False), what="v3 Ready")
    bed.apply_rollout(namespace, "v3")
    wait_for(lambda: _past_first_step(bed, namespace), what="the rollout past its first step")
    assert low.proc.pid is not None
    os.kill(low.proc.pid, signal.SIGSTOP)  # its cache holds the rollout at its first steps
    with Watcher(bed, namespace) as watcher:
        run = CrashRun(point="freeze-standby")
        bed.drive_rollout(run, namespace, high)
        high.kill()
        woke = time.monotonic()
        os.kill(low.proc.pid, signal.SIGCONT)
        await asyncio.sleep(LIFETIME + 10)  # the dead replica's record expires: the standby works
        findings["freeze-standby"] = await _judge(bed, namespace, watcher)
        converge.append(time.monotonic() - woke)
        assert low.proc.running(), "the woken standby died"

    failures = [f"{name}: {f}" for name, found in findings.items() for f in found]
    record(
        ScenarioRecord(
            scenario="stale-view/two-replicas",
            group="stale-view",
            faults=len(findings),
            passes=sum(1 for found in findings.values() if not found),
            failures=failures,
            notes=(
                "SIGSTOP of the active replica mid-rollout (the standby finishes it, the frozen "
                "one wakes with the higher priority), then of the standby (the active one "
                "finishes and is killed, the standby wakes); peering lifetime "
                f"{LIFETIME} s; checked: status.seq and the level's epoch never go back, "
                "one promotion per rollout, no step row twice"
            ),
            extra={
                "observed_after_wake_s": round(max(converge), 1),
                "wall_s": round(time.monotonic() - began, 1),
            },
        )
    )
    assert not failures, "\n".join(failures)
