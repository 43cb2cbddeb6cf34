"""Crash points of a snapshot's path, store -> validate -> promote: kill -9 before each write.

A recording run lists the points the operator passes while it stores, validates and
(autoPromote) promotes a snapshot in an environment whose sidecars follow it; then, for
each point, a newer snapshot goes the same way with the operator set to die there, a
fresh operator takes over, and the oracle checks the end: Ready and Active, one stored
row, a finished successful validation run, exactly one promotion with its audit row, the
chain intact, Redis's level naming PostgreSQL's active snapshot, the sidecars on it.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkg_testbed.chaos.crash import PERIODIC, CrashBed, CrashRun, crash_points
from pkg_testbed.chaos.oracle import check_snapshot
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster
from pkg_testbed.product import OperatorProcess


@pytest.fixture
def snap_bed(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[CrashBed]:
    tag = f"{zlib.crc32(request.node.name.encode()):08x}-{os.getpid()}"
    result = CrashBed(cluster, cluster.workdir / request.node.name, env="dev", tag=tag, devices=2)
    yield result
    failed = getattr(request.node, "rep_call", None)
    result.stop(show_logs=failed is not None and failed.failed)


async def _promote_one(
    bed: CrashBed, operator: OperatorProcess, run: CrashRun, major: int
) -> tuple[OperatorProcess, list[str], float]:
    namespace = bed.new_namespace()
    bed.snapshot(namespace, "snap", f"rules@{major}.0.0-{bed.tag}", auto=True)
    began = time.monotonic()
    operator = bed.drive(
        run, operator, lambda: bed.snapshot_settled(namespace, "snap", auto=True) is not None
    )
    took = time.monotonic() - began
    findings = await check_snapshot(
        bed.cluster,
        namespace=namespace,
        snapshot="snap",
        database_url=bed.cluster.database_url,
        redis_url=bed.cluster.redis_url,
        sidecars=bed.sidecars,
    )
    return operator, findings, took


@pytest.mark.chaos
@pytest.mark.chaos_quick
@pytest.mark.timeout(300)
async def test_an_operator_killed_just_before_it_promotes_a_snapshot_promotes_it_once_on_restart(
    snap_bed: CrashBed,
) -> None:
    """The quick subset's crash: one point, the promotion itself, no recording run."""
    bed, began = snap_bed, time.monotonic()
    point = "pg:promote_snapshot:1"
    operator = bed.operator(PKG_TEST_CRASH_AT=point)
    run = CrashRun(point=point)
    _, findings, _ = await _promote_one(bed, operator, run, 1)
    assert run.crashed, f"the operator never reached {point}: {run.notes}"
    record(
        ScenarioRecord(
            scenario="crash/snapshot/before-promotion",
            group="crash",
            faults=1,
            passes=0 if findings else 1,
            converge_s=run.converge_s,
            failures=findings,
            notes=f"kill -9 (os._exit 137) at {point}, autoPromote; the quick subset's crash",
            extra={"wall_s": round(time.monotonic() - began, 1)},
        )
    )
    assert findings == []


@pytest.mark.chaos
@pytest.mark.timeout(900)
async def test_a_snapshot_is_stored_validated_and_promoted_once_across_a_kill_9_at_every_write(
    snap_bed: CrashBed, tmp_path: Path
) -> None:
    bed, began = snap_bed, time.monotonic()
    recording = tmp_path / "points"
    operator = bed.operator(PKG_TEST_CRASH_RECORD=str(recording))
    operator, findings, _ = await _promote_one(bed, operator, CrashRun(point=None), 1)
    assert findings == [], f"the first snapshot: {findings}"
    bed.start_fleet()
    recording.write_text("")
    operator, findings, took = await _promote_one(bed, operator, CrashRun(point=None), 2)
    assert findings == [], f"the recording run itself: {findings}"
    points = [
        p
        for p in crash_points(recording.read_text().splitlines(), periodic=PERIODIC)
        if p[0] not in PERIODIC  # the rollout matrix covers those
    ]
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
            operator, findings, seconds = await _promote_one(bed, operator, run, major)
        except AssertionError as exc:  # one stuck run is a finding; the matrix goes on
            findings, seconds = [str(exc).splitlines()[0]], time.monotonic() - started
            print(f"\n{name}: {exc}")
        bed.stop_operators()
        results[name] = {"crashed": run.crashed, "pass": not findings, "seconds": round(seconds, 1)}
        if run.converge_s is not None:
            converge.append(run.converge_s)
        failures += [f"{name}: {f}" for f in findings]
    crashed = [n for n, r in results.items() if r["crashed"]]
    passed = [n for n, r in results.items() if r["crashed"] and r["pass"]]
    record(
        ScenarioRecord(
            scenario="crash/snapshot/store-validate-promote",
            group="crash",
            faults=len(crashed),
            passes=len(passed),
            converge_s=max(converge) if converge else None,
            failures=failures,
            notes=(
                f"{len(points)} distinct crash points recorded on a snapshot's path "
                f"({took:.1f} s uncrashed), autoPromote in an environment with 2 sidecars; "
                f"points not reached: {sorted(set(results) - set(crashed)) or 'none'}"
            ),
            extra={
                "points": len(points),
                "runs": results,
                "wall_s": round(time.monotonic() - began, 1),
            },
        )
    )
    print(f"\n{len(points)} crash points {points}, {len(crashed)} crashed, {len(passed)} passed")
    assert not failures, "\n".join(failures)
    assert crashed == [f"{p}:{n}" for p, n in points], f"points not reached: {results}"
