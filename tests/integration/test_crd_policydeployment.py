"""The PolicyDeployment CRD on a real kube-apiserver, driven with the real kubectl.

What the API server itself must enforce and show: defaults, the one-kind-per-
step rule, immutable env/target/region, `kubectl explain` text, printer
columns; that every status the rollout machine writes survives a merge patch
of the status subresource unchanged (no field pruned, nulls delete); and that
`kubectl wait --for=condition=Available` does not take a previous
generation's Available=True for an answer.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pkg_operator.rollout.machine import reconcile
from pkg_operator.rollout.model import (
    CoverageObs,
    Decision,
    HealthObs,
    Observations,
    SnapshotInfo,
)
from pkg_testbed.kube import KubeControlPlane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "policydeployments.yaml"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
OLD = SnapshotInfo("rules-1-4-0", "rules@1.4.0", "sha256:" + "a" * 64, 4, ready=True)
NEW = SnapshotInfo("rules-1-5-0", "rules@1.5.0", "sha256:" + "b" * 64, 5, ready=True)


def kubectl(
    kube: KubeControlPlane, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(kube.kubectl_bin), "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result


def deployment(name: str, steps: list[Any], **spec: Any) -> str:
    body = {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicyDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "snapshotRef": {"name": NEW.name},
            "target": "router",
            "env": "prod",
            "strategy": {"canary": {"steps": steps}},
            **spec,
        },
    }
    return yaml.safe_dump(body)


def get(kube: KubeControlPlane, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl(kube, "get", "pdep", name, "-o", "json").stdout)
    return obj


def patch_status(kube: KubeControlPlane, name: str, status: dict[str, Any]) -> None:
    kubectl(
        kube,
        "patch",
        "pdep",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def same_json(left: Any, right: Any) -> bool:
    """Equal as JSON numbers compare (10 == 10.0)."""
    return bool(json.loads(json.dumps(left)) == json.loads(json.dumps(right)))


class Operator:
    """Plays the operator's part by hand: decide with the machine, patch with kubectl."""

    def __init__(self, kube: KubeControlPlane, name: str) -> None:
        self.kube, self.name, self.now = kube, name, T0

    def tick(self, coverage: CoverageObs | None = None, **obs: Any) -> Decision:
        obj = get(self.kube, self.name)
        self.now += timedelta(seconds=1)
        decision = reconcile(
            obj["spec"],
            obj.get("status", {}),
            Observations(
                uid=obj["metadata"]["uid"],
                generation=obj["metadata"]["generation"],
                snapshot=obs.pop("snapshot", NEW),
                baseline=OLD,
                coverage=coverage or CoverageObs(targeted=3, on_intended=3),
                **obs,
            ),
            self.now,
        )
        patch_status(self.kube, self.name, decision.status)
        stored = get(self.kube, self.name)["status"]
        assert same_json(stored, prune(decision.status)), "the API server changed the status"
        return decision


@pytest.fixture(scope="module")
def crd(kube: KubeControlPlane) -> KubeControlPlane:
    kubectl(kube, "apply", "-f", str(CRD))
    # Right after creation the CRD has no status yet, and kubectl wait fails at once
    # ("accessor error") instead of waiting: ask again until the API server fills it.
    deadline = time.monotonic() + 60
    while True:
        result = kubectl(
            kube,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/policydeployments.pkg.seedcore.io",
            check=False,
        )
        if result.returncode == 0:
            return kube
        assert "accessor error" in result.stderr, result.stderr
        assert time.monotonic() < deadline, f"the CRD never became Established: {result.stderr}"
        time.sleep(0.2)


class TestTheSchema:
    def test_a_valid_deployment_is_stored_with_the_defaults(self, crd: KubeControlPlane) -> None:
        kubectl(crd, "apply", "-f", "-", stdin=deployment("defaults", [{"setWeight": 10}]))
        spec = get(crd, "defaults")["spec"]
        assert spec["region"] == "global"
        assert spec["progressDeadlineSeconds"] == 600
        assert spec["coverage"] == {"minPercent": 100, "heartbeatTTLSeconds": 30, "minDevices": 1}

    @pytest.mark.parametrize(
        ("name", "step"),
        [("two-kinds", {"setWeight": 10, "pause": {}}), ("no-kind", {})],
    )
    def test_a_step_with_two_kinds_or_none_is_refused(
        self, crd: KubeControlPlane, name: str, step: dict[str, Any]
    ) -> None:
        result = kubectl(
            crd, "apply", "-f", "-", stdin=deployment(name, [{"setWeight": 5}, step]), check=False
        )
        assert result.returncode != 0
        assert "spec.strategy.canary.steps[1]" in result.stderr
        assert "exactly one of setWeight, pause, analysis or shadow" in result.stderr

    def test_out_of_range_values_are_refused(self, crd: KubeControlPlane) -> None:
        result = kubectl(
            crd,
            "apply",
            "-f",
            "-",
            stdin=deployment("too-much", [{"setWeight": 150}, {"analysis": {"maxErrorRate": 2}}]),
            check=False,
        )
        assert result.returncode != 0
        assert "setWeight" in result.stderr
        assert "maxErrorRate" in result.stderr

    @pytest.mark.parametrize(
        ("field", "value"), [("env", "dev"), ("target", "edge:door"), ("region", "us-west")]
    )
    def test_the_fields_that_name_the_rollout_are_immutable(
        self, crd: KubeControlPlane, field: str, value: str
    ) -> None:
        name = f"immutable-{field}"
        kubectl(crd, "apply", "-f", "-", stdin=deployment(name, [{"setWeight": 10}]))
        result = kubectl(
            crd,
            "patch",
            "pdep",
            name,
            "--type=merge",
            "-p",
            json.dumps({"spec": {field: value}}),
            check=False,
        )
        assert result.returncode != 0
        assert f"{field} is immutable" in result.stderr

    def test_the_snapshot_may_change_and_bumps_the_generation(self, crd: KubeControlPlane) -> None:
        kubectl(crd, "apply", "-f", "-", stdin=deployment("movable", [{"setWeight": 10}]))
        kubectl(
            crd,
            "patch",
            "pdep",
            "movable",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"snapshotRef": {"name": "rules-1-6-0"}}}),
        )
        assert get(crd, "movable")["metadata"]["generation"] == 2

    def test_kubectl_explain_teaches_the_steps(self, crd: KubeControlPlane) -> None:
        text = kubectl(crd, "explain", "pdep.spec.strategy.canary.steps").stdout
        assert "Each has exactly one of setWeight, pause, analysis or shadow" in " ".join(
            text.split()
        )
        assert "setWeight\t<number>" in text
        assert "until a person promotes" in text
        assert "A gate: hold for durationSeconds" in text
        short = kubectl(crd, "explain", "pdep.spec.progressDeadlineSeconds").stdout
        assert "ProgressDeadlineExceeded" in short


class TestTheMachinesStatus:
    def test_every_status_of_a_rollout_and_rollback_is_stored_unchanged(
        self, crd: KubeControlPlane
    ) -> None:
        steps = [{"setWeight": 10}, {"analysis": {"maxErrorRate": 0.01, "durationSeconds": 5}}]
        kubectl(crd, "apply", "-f", "-", stdin=deployment("machine", steps))
        operator = Operator(crd, "machine")
        operator.tick()  # 10 %
        operator.tick()  # the gate starts
        operator.tick(health=HealthObs(evaluations=200, errors=20))  # breach: rolled back
        stored = get(crd, "machine")["status"]
        assert stored["summary"] == "RolledBack"
        assert "canary" not in stored  # null in the merge patch deleted it
        assert stored["lastRollback"]["reason"] == "ErrorRateExceeded"

    def test_the_printer_columns(self, crd: KubeControlPlane) -> None:
        kubectl(crd, "apply", "-f", "-", stdin=deployment("columns", [{"setWeight": 25}]))
        Operator(crd, "columns").tick(coverage=CoverageObs(targeted=12, on_intended=9))
        header, row = kubectl(crd, "get", "pdep", "columns").stdout.splitlines()
        assert header.split() == [
            "NAME",
            "STATUS",
            "STEP",
            "WEIGHT",
            "COVERAGE",
            "STABLE",
            "CANARY",
            "DIFF",
            "AGE",
        ]
        assert row.split()[:7] == [
            "columns",
            "Progressing",
            "1/1",
            "25",
            "9/12",
            "rules@1.4.0",
            "rules@1.5.0",
        ]


class TestKubectlWait:
    def wait_proc(self, kube: KubeControlPlane, name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                str(kube.kubectl_bin),
                "--kubeconfig",
                str(kube.kubeconfig),
                "wait",
                "--for=condition=Available",
                "--timeout=60s",
                f"pdep/{name}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def still_waiting(self, proc: subprocess.Popen[str], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            time.sleep(0.1)
        return True

    def finished(self, proc: subprocess.Popen[str]) -> tuple[int, str]:
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return proc.returncode, out + err

    def test_a_hand_written_condition_of_an_older_generation_does_not_satisfy_wait(
        self, crd: KubeControlPlane
    ) -> None:
        kubectl(crd, "apply", "-f", "-", stdin=deployment("by-hand", [{"setWeight": 100}]))
        stamp = "2030-01-01T12:00:00Z"

        def available(generation: int) -> dict[str, Any]:
            condition = {
                "type": "Available",
                "status": "True",
                "reason": "RolloutComplete",
                "message": "done",
                "lastTransitionTime": stamp,
                "observedGeneration": generation,
            }
            return {"observedGeneration": generation, "conditions": [condition]}

        patch_status(crd, "by-hand", available(1))
        rc, output = self.finished(self.wait_proc(crd, "by-hand"))
        assert rc == 0, output
        kubectl(
            crd,
            "patch",
            "pdep",
            "by-hand",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"progressDeadlineSeconds": 900}}),
        )
        proc = self.wait_proc(crd, "by-hand")
        try:
            assert self.still_waiting(proc, 3.0), "kubectl wait accepted a generation-1 condition"
            patch_status(crd, "by-hand", available(2))
            rc, output = self.finished(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rc == 0, output
        assert "condition met" in output

    def test_waiting_on_a_spec_change_returns_only_once_the_machine_has_rolled_it_out(
        self, crd: KubeControlPlane
    ) -> None:
        kubectl(crd, "apply", "-f", "-", stdin=deployment("gitops", [{"setWeight": 100}]))
        operator = Operator(crd, "gitops")
        for _ in range(3):
            operator.tick()
        assert get(crd, "gitops")["status"]["summary"] == "Succeeded"
        kubectl(
            crd,
            "patch",
            "pdep",
            "gitops",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"progressDeadlineSeconds": 900}}),
        )
        proc = self.wait_proc(crd, "gitops")
        try:
            assert self.still_waiting(proc, 2.0)  # Available=True, but of generation 1
            operator.tick()  # the machine sees generation 2: Available=False for it
            assert self.still_waiting(proc, 2.0)
            operator.tick()  # coverage holds: Available=True for generation 2
            rc, output = self.finished(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert rc == 0, output
        available = [
            c for c in get(crd, "gitops")["status"]["conditions"] if c["type"] == "Available"
        ]
        assert available[0]["observedGeneration"] == 2
