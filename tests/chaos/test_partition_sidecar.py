"""One sidecar cut off from Redis (PostgreSQL still reachable) while the rollout moves its cohort.

Each of four sidecars reaches Redis through a proxy of its own. A canary of v2 stops at
a gate at 0 % (published, no device in it); one device is then partitioned from Redis (its
proxy holds every byte both ways: no message, no level read, no heartbeat gets
through), and the gate is promoted, so the rollout asks that device to move to v2.
For 25 s:

- the device keeps answering every evaluate request with v1, rightly (no answer lost);
- no status may claim what the fleet does not report: the rollout does not succeed nor
  say Available, ``status.coverage.onIntended`` never counts more devices than really run their
  cohort's version, and the device's row in ``pkg_device_versions`` never names a
  version other than the one it runs.

Twice: with every device needed (minDevices 4: the rollout must wait for the device, and
neither succeed nor say Available meanwhile) and with one to spare (minDevices 3: it may
finish without the device, but only counting it as stale, never as moved).

Then the partition heals; the device must catch up on its own (the held reads and
messages flow, its resync follows), the rollout finish, and the oracle accept the end
state. The time from healing to the device on v2 and to the end state is measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_testbed.chaos.faultworld import REGION, AnswerLoad, FaultWorld
from pkg_testbed.chaos.oracle import Place, check_rollout
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.chaos.stepwatch import StepWatch, ask, summary_is, wanted_versions
from pkg_testbed.cluster import Cluster, condition, wait_for
from pkg_testbed.procs import TestbedError
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.chaos

HOLD_S = 25.0
#: The gate's weight: 0, the canary published to no device yet, so that whichever device
#: is cut off, the promotion to 100 % moves its cohort (at 25 % all four devices of a
#: run once fell in the canary).
FIRST_WEIGHT = 0
STEPS: list[dict[str, Any]] = [{"setWeight": FIRST_WEIGHT}, {"pause": {}}, {"setWeight": 100}]


async def _row_version(database_url: str, device: str) -> tuple[bool, str | None]:
    """(whether ``pkg_device_versions`` has a row for ``device``, the version it names)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT version FROM pkg_device_versions WHERE device_id = $1", device
        )
    finally:
        await conn.close()
    return row is not None, None if row is None else row["version"]


async def _false_claims(
    world: FaultWorld, uid: str, device: str, *, spare: int
) -> tuple[list[str], dict[str, Any]]:
    """What the status or PostgreSQL says about the fleet that the fleet does not report."""
    obj = world.pdep()
    status = obj.get("status") or {}
    running = world.versions()
    claims = []
    succeeded = status.get("summary") == "Succeeded"
    if succeeded and not spare:
        claims.append(f"the rollout Succeeded while {device} runs {running[device]}")
    available = condition(obj, "Available")
    if available.get("status") == "True" and not spare:
        claims.append(f"Available=True ({available.get('reason')}) while {device} lags")
    stale = int((status.get("coverage") or {}).get("stale") or 0)
    if succeeded and stale < 1:
        claims.append(f"the rollout Succeeded without counting {device} as stale")
    wanted = wanted_versions(world, uid, status)
    really = sum(1 for d, v in running.items() if v == wanted[d])
    said = int((status.get("coverage") or {}).get("onIntended") or 0)
    if said > really:
        claims.append(f"coverage.onIntended {said}, but {really} sidecars run their cohort's")
    has_row, row = await _row_version(world.cluster.database_url, device)
    if has_row and row != running[device]:
        claims.append(f"pkg_device_versions says {device} runs {row}, it runs {running[device]}")
    return claims, status


async def _partition(world: FaultWorld, device: str, uid: str, *, spare: int) -> dict[str, Any]:
    """Partition ``device`` from Redis, promote the gate, watch the claims, heal."""
    proxy = world.proxies[f"sidecar-redis-{device.rsplit(':', 1)[1]}"]
    proxy.blackhole()
    ask(world, "promote", reason="chaos: one sidecar partitioned from Redis")
    claims: list[str] = []
    status: dict[str, Any] = {}
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:
        try:
            found, status = await _false_claims(world, uid, device, spare=spare)
        except TestbedError as exc:  # one kubectl call failing: sample again
            print(f"sample skipped: {exc}")
            found = []
        claims += [c for c in found if c not in claims]
        await asyncio.sleep(1.0)
    stuck_on = world.versions()[device]
    proxy.passthrough()
    healed = time.monotonic()
    wait_for(lambda: world.versions()[device] == world.v2, timeout=120, what=f"{device} on v2")
    caught_up = time.monotonic() - healed
    took, wrong = world.converge(timeout=120)
    return {
        "claims": claims + wrong,
        "stuck_on": stuck_on,
        "catch_up_s": caught_up,
        "converge_s": caught_up + took,
        "status_during": {
            "summary": status.get("summary"),
            "message": status.get("message"),
            "coverage": status.get("coverage"),
            "conditions": {
                c.get("type"): f"{c.get('status')} {c.get('reason')}"
                for c in status.get("conditions") or []
            },
        },
    }


@pytest.mark.parametrize("spare", [0, 1], ids=["all-needed", "one-spare"])
async def test_a_sidecar_cut_off_from_redis_keeps_answering_and_is_never_counted_as_moved(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
    spare: int,
) -> None:
    world = FaultWorld(cluster, namespace, start_operator, tmp_path / "world")
    findings: list[str] = []
    result: dict[str, Any] = {}
    try:
        world.start_operator()
        world.snapshots()
        devices = world.start_fleet(4, own_links=tuple(f"sidecar-redis-{i}" for i in range(4)))
        wait_for(lambda: world.on(world.v1), timeout=90, what="the fleet on v1")
        with AnswerLoad([p.url for p in world.sidecars.values()], world.expected) as load:
            watch = StepWatch(world)
            try:
                uid = world.rollout(STEPS, min_devices=4 - spare)
                watch.follow(
                    summary_is("Paused"), timeout=120, what=f"the gate at {FIRST_WEIGHT} %"
                )
            finally:
                watch.close()
            outside = [d for d in devices if not in_canary(d, uid, FIRST_WEIGHT)]
            device = outside[0]
            try:
                result = await _partition(world, device, uid, spare=spare)
            except (AssertionError, TestbedError) as exc:
                result = {"claims": [f"{type(exc).__name__}: {exc}"]}
        findings = result["claims"]
        if result.get("stuck_on", world.v1) != world.v1:
            findings.append(f"{device} ran {result['stuck_on']} cut off from Redis, want v1")
        findings += await check_rollout(
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
            scenario=f"partition/sidecar-redis-only/{'one-spare' if spare else 'all-needed'}",
            group="partition",
            faults=1,
            passes=1 if not findings and lost == 0 else 0,
            converge_s=round(result["converge_s"], 2) if "converge_s" in result else None,
            answers_total=answers.total,
            answers_lost=lost,
            failures=findings + answers.failures,
            notes=(
                f"one sidecar's Redis link blackholed for {HOLD_S:g} s while the gate at "
                f"{FIRST_WEIGHT} % was promoted to 100 % (its PostgreSQL link fine); "
                f"minDevices {4 - spare} of 4"
            ),
            extra={
                "catch_up_s": round(result.get("catch_up_s", 0.0), 2),
                "status_during": result.get("status_during"),
                "answers_by_version": dict(answers.by_version),
            },
        )
    )
    assert not findings, findings
    assert lost == 0, f"{lost} of {answers.total} answers lost: {answers.failures}"
