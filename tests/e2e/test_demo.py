"""`make demo`'s scenario, checked at every step; and its command stopped by Ctrl-C.

The first test runs the demo's own scenario function (``pkg_testbed.demo.run_scenario``)
on the session's test bed, then checks what it reports against independent
sources: the cohorts recomputed here, rows read straight from PostgreSQL, the
resources read with kubectl. The scenario itself raises at the first step whose
outcome is wrong, so the test fails there too. The others run the command as a
person does (``python -m pkg_testbed demo``) and interrupt it, and feed the
scenario a database that is not there.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_testbed.cluster import Cluster, condition
from pkg_testbed.demo import (
    CASES,
    FLEET_LAYOUT,
    DemoReport,
    Phases,
    fleet_devices,
    run_scenario,
)
from pkg_testbed.demo_view import Narrator
from pkg_testbed.demo_world import DemoError, DemoWorld, processes_using
from pkg_testbed.procs import free_port
from pkg_testbed.product import ROOT, venv_command

pytestmark = pytest.mark.e2e

#: The test bed's kubeconfig user: the person's actions go through ``kubectl pkg``, which
#: sends the caller's user name as the API server knows it.
ACTOR = "admin"
PHASES = [
    "cluster",
    "migrate",
    "operator",
    "fleet",
    "v1",
    "answers-v1",
    "v2",
    "canary",
    "cohorts",
    "promote",
    "answers-v2",
    "audit",
    "stop",
]


def world_for(cluster: Cluster, namespace: str, **change: Any) -> DemoWorld:
    fields: dict[str, Any] = {
        "kubectl_bin": cluster.kube.kubectl_bin,
        "kubeconfig": cluster.kube.kubeconfig,
        "database_url": cluster.database_url,
        "redis_url": cluster.redis_url,
        "workdir": cluster.workdir / namespace,
        "namespace": namespace,
        **change,
    }
    return DemoWorld(**fields)


class Played:
    """The scenario's report, its printed output and its phases."""

    def __init__(self, report: DemoReport, output: str, phases: Phases) -> None:
        self.report, self.output, self.phases = report, output, phases


@pytest.fixture(scope="module")
def played(cluster: Cluster) -> Played:
    namespace = f"demo-{os.getpid()}"
    stream = io.StringIO()
    out = Narrator(stream, tty=False)
    phases = Phases(out)
    try:
        report = run_scenario(world_for(cluster, namespace), out, phases)
    except DemoError as exc:
        logs = "\n".join(f"--- {name} ---\n{tail}" for name, tail in exc.logs)
        pytest.fail(
            f"the demo failed in phase {phases.current}: {exc}\n{logs}\n{stream.getvalue()}"
        )
    return Played(report, stream.getvalue(), phases)


def by_group() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for device in fleet_devices():
        groups.setdefault(device.group, []).append(device.device_id)
    return groups


def names(answer: dict[str, Any]) -> tuple[str, ...]:
    return tuple(item["name"] for item in answer["subtasks"])


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


# ------------------------------------------------------------------ the scenario


def test_every_phase_ran_in_order_and_was_timed(played: Played) -> None:
    assert [name for name, _, _ in played.phases.timings] == PHASES
    assert all(seconds >= 0 for _, _, seconds in played.phases.timings)
    assert played.phases.current is None


def test_a_dozen_sidecars_in_two_targets_and_two_regions(played: Played) -> None:
    devices = fleet_devices()
    assert len(devices) >= 12
    assert len({d.target for d in devices}) >= 2
    assert len({d.region for d in devices}) >= 2
    assert sum(count for *_, count in FLEET_LAYOUT) == len(devices)
    assert set(played.report.answers["v1"]) == {d.device_id for d in devices}


def test_both_snapshots_were_stored_validated_and_v1_promoted_by_the_actor(
    played: Played,
) -> None:
    v1, v2 = played.report.snapshots["v1"], played.report.snapshots["v2"]
    for obj, fixtures in ((v1, 5), (v2, 6)):
        assert condition(obj, "Stored")["status"] == "True"
        assert condition(obj, "Validated")["reason"] == "FixturesPassed"
        assert obj["status"]["validation"]["passed"] == fixtures
    assert condition(v1, "Active")["status"] == "True"
    assert v1["status"]["lastAction"]["actor"] == ACTOR
    assert v1["status"]["lastAction"]["action"] == "promote"
    assert condition(v2, "Active")["status"] == "False"  # v2 goes out by canary, not promotion


def test_under_v1_every_device_answers_every_case_as_v1_says(played: Played) -> None:
    report = played.report
    for answers in report.answers["v1"].values():
        for case in CASES:
            assert answers[case.label]["snapshot"] == report.v1
            assert names(answers[case.label]) == case.v1
    allergen = report.answers["v1"]["router:eu-west:0"]["food order, allergen tag"]
    assert {(e["from"], e["to"], e["type"]) for e in allergen["dag"]} == {
        ("check_allergens", "notify_kitchen", "gate"),
        ("check_allergens", "notify_kitchen", "sequential"),
    }


def test_at_the_gate_each_cohort_answers_with_its_own_version(played: Played) -> None:
    report, groups = played.report, by_group()
    uid = report.deployment_uid
    assert uid
    for device in groups["router/eu-west"]:
        want = report.v2 if in_canary(device, uid, 50) else report.v1
        assert report.gate_cohort[device] == want
    for device in groups["router/us-east"] + groups["edge:door/eu-west"]:
        assert report.gate_cohort[device] == report.v1, "outside the rollout nothing moves"
    for device, answers in report.answers["gate"].items():
        version = report.gate_cohort[device]
        for case in CASES:
            assert answers[case.label]["snapshot"] == version
            assert names(answers[case.label]) == (case.v2 if version == report.v2 else case.v1)
    vip = {names(a["VIP guest request"]) for a in report.answers["gate"].values()}
    if any(v == report.v2 for v in report.gate_cohort.values()):
        assert ("escalate_vip", "notify_concierge") in vip
    assert ("escalate_vip",) in vip  # us-east and edge:door always answer under v1


def test_the_rollout_went_10_50_gate_100_and_succeeded(played: Played) -> None:
    trace = played.report.trace
    weights = [entry["weight"] for entry in trace if entry["summary"] != "Succeeded"]
    assert weights == sorted(weights), trace
    assert {10, 50, 100} <= set(weights)
    paused = [i for i, e in enumerate(trace) if e["summary"] == "Paused"]
    assert paused
    assert all(trace[i]["weight"] == 50 for i in paused)
    assert trace[-1]["summary"] == "Succeeded"
    assert paused[-1] < len(trace) - 1
    final = played.report.final_status
    assert final["stable"]["version"] == played.report.v2
    assert final.get("canary") is None
    available = next(c for c in final["conditions"] if c["type"] == "Available")
    assert available["status"] == "True"
    gate = [a for a in final["processedActions"] if a["action"] == "promote"]
    assert [(a["actor"], a["accepted"]) for a in gate] == [(ACTOR, True)]


def test_the_shadow_step_sampled_live_traffic_showed_its_diff_rate_and_passed(
    played: Played,
) -> None:
    shadow = played.report.shadow
    spec = shadow["spec"]
    assert spec["sampleRate"] == 1.0
    assert shadow["sent"] > 0, "the demo sent live requests during the step"
    assert shadow["samples"] >= spec["minSamples"]
    # v2 changes 2 of the 4 cases the traffic cycles through: about half differ, and
    # the rate stayed within maxDiffRate, so the rollout went on.
    assert 0.3 <= shadow["diffRate"] <= spec["maxDiffRate"]
    assert shadow["diffRate"] == shadow["diffs"] / shadow["samples"]
    seen = shadow["seen"]
    assert len(seen) >= 2, "the diff rate was shown while the step ran, not only at its end"
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    live = [line for line in played.output.splitlines() if "step 1/6 shadow 100%" in line]
    assert live
    assert all("weight   0%" in line and "| diff " in line for line in live)
    samples, diffs = seen[-1]
    assert any(f"({diffs}/{samples} samples)" in line for line in live)
    assert (
        f"shadow step passed: v2 decided otherwise on {diffs} of {samples} sampled requests"
        in played.output
    )
    # The rollout passed the step before any device moved: weight 10 came after it.
    trace = played.report.trace
    first_weight = next(i for i, e in enumerate(trace) if (e["weight"] or 0) > 0)
    assert all(e["stepIndex"] in (None, 0) for e in trace[:first_weight])


def test_after_the_rollout_only_the_eu_west_routers_answer_under_v2(played: Played) -> None:
    report = played.report
    for device, answers in report.answers["v2"].items():
        on_v2 = device.startswith("router:eu-west:")
        for case in CASES:
            assert answers[case.label]["snapshot"] == (report.v2 if on_v2 else report.v1)
            assert names(answers[case.label]) == (case.v2 if on_v2 else case.v1)


def test_the_audit_trail_holds_every_step_and_its_chain_verifies(played: Played) -> None:
    report = played.report
    promotions = [(r["action"], r["version"], r["actor"]) for r in report.promotions]
    assert promotions == [
        ("promote", report.v1, ACTOR),
        ("promote", report.v2, "pkg-operator"),
    ]
    steps = [
        (r["details"]["kind"], r["details"]["percent"])
        for r in report.audit
        if r["action"] == "deployment.step"
    ]
    assert steps == [
        ("shadow", 0),  # v2 proven on live requests before any device ran it
        ("setWeight", 10),
        ("pause", 10),
        ("setWeight", 50),
        ("pause", 50),
        ("promote", 50),
        ("setWeight", 100),
        ("finish", 100),
        ("complete", 0),
    ]
    gate = next(r for r in report.audit if r["details"].get("kind") == "promote")
    assert ACTOR in gate["details"]["detail"]
    # The person who opened the gate is the audit row's actor; the operator moved the rest.
    assert gate["actor"] == ACTOR
    assert {
        r["actor"] for r in report.audit if r is not gate and r["action"] == "deployment.step"
    } == {"pkg-operator"}
    assert report.chain is not None
    assert report.chain.ok, str(report.chain)
    assert report.chain.rows_checked >= len(report.audit)


async def test_postgresql_agrees_device_by_device(played: Played, cluster: Cluster) -> None:
    report = played.report
    rows = await fetch(
        cluster,
        "SELECT d.device_id, s.version FROM pkg_device_versions d "
        "JOIN pkg_snapshots s ON s.id = d.snapshot_id WHERE d.device_id = ANY($1)",
        [d.device_id for d in fleet_devices()],
    )
    assert {r["device_id"]: r["version"] for r in rows} == {
        d.device_id: report.v2 if d.group == "router/eu-west" else report.v1
        for d in fleet_devices()
    }
    coverage = await fetch(
        cluster,
        # The demo's fleet has stopped by now: count its last reports, however old.
        "SELECT devices_on_snapshot, devices_total "
        "FROM pkg_deployment_coverage_within(interval '1 hour') "
        "WHERE deployment_uid = $1 AND snapshot_version = $2",
        report.deployment_uid,
        report.v2,
    )
    assert [(r["devices_on_snapshot"], r["devices_total"]) for r in coverage] == [(8, 8)]


def test_kubectl_shows_the_deployment_succeeded(played: Played, cluster: Cluster) -> None:
    table = cluster.kubectl("get", "pdep", "-n", played.report.namespace)
    assert "Succeeded" in table
    assert played.report.v2 in table


def test_its_output_is_plain_lines_with_the_live_rollout_and_the_answers(
    played: Played,
) -> None:
    output = played.output
    assert "\x1b[" not in output, "no ANSI escapes when the output is not a terminal"
    namespace = played.report.namespace
    # A person's actions run as a person types them, and print kubectl pkg's outcome.
    assert f"$ kubectl pkg -n {namespace} promote psnap hotel-rules-v1 --reason" in output
    assert "policysnapshots/hotel-rules-v1: promote accepted (by admin)" in output
    assert "pkg.seedcore.io/action" not in output
    live = [line for line in output.splitlines() if line.lstrip().startswith("[+")]
    assert any("Paused" in line and "weight  50%" in line for line in live)
    assert any("router/eu-west 22222222" in line for line in live)
    assert "page_duty_manager" in output
    assert "audit chain intact" in output
    assert f"$ kubectl pkg -n {namespace} promote pdep hotel-rules-eu-west --reason" in output
    assert "policydeployments/hotel-rules-eu-west: promote accepted (by admin)" in output


def test_nothing_the_scenario_started_outlives_it(played: Played, cluster: Cluster) -> None:
    assert processes_using(cluster.workdir / played.report.namespace) == []


# ------------------------------------------------------------------ failures and Ctrl-C


def test_a_step_that_fails_says_which_and_shows_the_log(cluster: Cluster, namespace: str) -> None:
    port = free_port()
    unused = f"postgresql://pkg@127.0.0.1:{port}/pkg"
    phases = Phases(Narrator(io.StringIO(), tty=False))
    with pytest.raises(DemoError, match="pkg-migrate exited") as failed:
        run_scenario(world_for(cluster, namespace, database_url=unused), phases.out, phases)
    assert phases.current == "migrate"
    [(name, tail)] = failed.value.logs
    assert name == "pkg-migrate"
    assert f"127.0.0.1:{port}" in tail  # it names the server it tried


@pytest.fixture
def demo_command() -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "testbed")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pkg_testbed", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell's foreground job
    )
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_ctrl_c_mid_rollout_stops_every_process_and_exits_130(
    demo_command: subprocess.Popen[str],
) -> None:
    assert demo_command.stdout is not None
    assert demo_command.stderr is not None
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert demo_command.stdout is not None
        for line in demo_command.stdout:
            lines.append(line)
            if "canary" in line and line.startswith("=="):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(180), "".join(lines) + demo_command.stderr.read()
    time.sleep(1.0)  # into the rollout: the deployment applied, sidecars swapping
    workdir = Path(lines[0].split("data and logs in ")[1].split()[0])
    assert processes_using(workdir), "the demo's servers run in its folder"
    os.killpg(demo_command.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    code = demo_command.wait(timeout=90)
    reader.join(timeout=10)
    err = demo_command.stderr.read()
    assert code == 130, err
    assert "interrupted during canary" in err
    assert processes_using(workdir) == []
    assert not workdir.exists()


def test_the_demo_snapshots_pass_their_own_fixtures_offline() -> None:
    for name in ("demo-policysnapshot-v1.yaml", "demo-policysnapshot-v2.yaml"):
        result = subprocess.run(
            [venv_command("pkg"), "test", str(ROOT / "manifests" / "samples" / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 0 failed" in result.stdout
