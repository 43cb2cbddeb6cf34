"""Crash points of the reference rollout: kill -9 the operator before each write it makes.

A recording run lists, in order, every crash point the operator passes while it rolls a
snapshot out with the reference steps (setWeight 25, a timed pause, setWeight 50, an
analysis step, a manual gate, setWeight 100). Then, for each distinct point, a rollout of
a newer snapshot to the same fleet runs with the operator set to die there; a fresh
operator takes over, the rollout is driven to its end, and the oracle judges it.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkg_testbed.chaos.crash import PERIODIC, CrashBed, CrashRun, crash_points
from pkg_testbed.chaos.oracle import Place, check_rollout
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, wait_for
from pkg_testbed.product import OperatorProcess


@pytest.fixture
def bed(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[CrashBed]:
    tag = f"{zlib.crc32(request.node.name.encode()):08x}-{os.getpid()}"
    result = CrashBed(cluster, cluster.workdir / request.node.name, env="staging", tag=tag)
    yield result
    failed = getattr(request.node, "rep_call", None)
    result.stop(show_logs=failed is not None and failed.failed)


def _base(bed: CrashBed, operator: OperatorProcess) -> str:
    """v1 promoted in the environment, the fleet started and running it."""
    namespace = bed.new_namespace()
    version = f"rules@1.0.0-{bed.tag}"
    bed.snapshot(namespace, "v1", version, auto=True)
    wait_for(lambda: bed.snapshot_settled(namespace, "v1", auto=True), what="v1 promoted")
    bed.start_fleet()
    want = {s.device_id: version for s in bed.sidecars}
    wait_for(lambda: bed.versions() == want, what="the fleet on v1")
    return version


async def _one_rollout(
    bed: CrashBed, operator: OperatorProcess, run: CrashRun, major: int
) -> tuple[OperatorProcess, list[str], float]:
    namespace = bed.new_namespace()
    bed.snapshot(namespace, "next", f"rules@{major}.0.0-{bed.tag}", auto=False)
    began = time.monotonic()
    operator = bed.drive(
        run, operator, lambda: bed.snapshot_settled(namespace, "next", auto=False) is not None
    )
    operator = bed.rollout(run, namespace, operator, "next")
    took = time.monotonic() - began
    findings = await check_rollout(
        bed.cluster,
        namespace=namespace,
        deployment="roll",
        sidecars=bed.sidecars,
        database_url=bed.cluster.database_url,
        redis_url=bed.cluster.redis_url,
        place=Place(bed.env, bed.target, bed.region),
    )
    return operator, findings, took


@pytest.mark.chaos
@pytest.mark.timeout(2400)
async def test_the_reference_rollout_survives_a_kill_9_before_every_write(
    bed: CrashBed, tmp_path: Path
) -> None:
    began = time.monotonic()
    recording = tmp_path / "points"
    operator = bed.operator(PKG_TEST_CRASH_RECORD=str(recording))
    _base(bed, operator)
    recording.write_text("")  # from here on: the rollout's own writes (and the snapshot's)
    operator, findings, took = await _one_rollout(bed, operator, CrashRun(point=None), 2)
    assert findings == [], f"the recording run itself: {findings}"
    points = crash_points(recording.read_text().splitlines(), periodic=PERIODIC)
    operator.stop()

    results: dict[str, dict[str, object]] = {}
    failures: list[str] = []
    converge: list[float] = []
    for major, (point, nth) in enumerate(points, start=3):
        name = f"{point}:{nth}"
        run = CrashRun(point=name)
        operator = bed.operator(PKG_TEST_CRASH_AT=name)
        started = time.monotonic()
        try:
            operator, findings, took = await _one_rollout(bed, operator, run, major)
        except AssertionError as exc:  # one stuck run is a finding; the matrix goes on
            findings, took = [str(exc).splitlines()[0]], time.monotonic() - started
            print(f"\n{name}: {exc}")
        bed.stop_operators()
        results[name] = {
            "crashed": run.crashed,
            "pass": not findings,
            "seconds": round(took, 1),
            "converge_s": run.converge_s,
        }
        if run.converge_s is not None:
            converge.append(run.converge_s)
        failures += [f"{name}: {f}" for f in findings]
        if run.crashed and not any(n.startswith("operator exited (137)") for n in run.notes):
            failures.append(f"{name}: the operator died otherwise: {run.notes}")
    crashed = [n for n, r in results.items() if r["crashed"]]
    passed = [n for n, r in results.items() if r["crashed"] and r["pass"]]
    record(
        ScenarioRecord(
            scenario="crash/rollout/every-write",
            group="crash",
            faults=len(crashed),
            passes=len(passed),
            converge_s=max(converge) if converge else None,
            failures=failures,
            notes=(
                f"{len(points)} distinct crash points recorded in the reference rollout "
                f"({took:.0f} s uncrashed); kill -9 (os._exit 137) before the write, "
                "a fresh operator, the oracle; points not reached in their run: "
                f"{sorted(set(results) - set(crashed)) or 'none'}"
            ),
            extra={
                "points": len(points),
                "median_converge_s": sorted(converge)[len(converge) // 2] if converge else None,
                "runs": results,
                "wall_s": round(time.monotonic() - began, 1),
            },
        )
    )
    print(f"\n{len(points)} crash points, {len(crashed)} crashed, {len(passed)} passed")
    assert not failures, "\n".join(failures)
    assert len(crashed) >= len(points) * 0.8, f"too few points reached: {results}"
