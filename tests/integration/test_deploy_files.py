"""The deploy files come from one source and the real tools accept them.

crds/ is the one source of each CRD; the Helm chart's crds/ and manifests/ are
generated from it and from the chart's templates (tools/gen_manifests.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkg_testbed.kube import KubeControlPlane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_generated_deploy_files_match_their_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_manifests.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_helm_lints_the_chart_strictly(helm_bin: Path) -> None:
    result = subprocess.run(
        [str(helm_bin), "lint", "--strict", str(ROOT / "helm" / "pkg-operator")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_server_accepts_the_crds_and_the_rendered_chart(kube: KubeControlPlane) -> None:
    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kube.kubectl_bin), "--kubeconfig", str(kube.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    crds = kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "crds.yaml"))
    assert crds.returncode == 0, crds.stderr
    established = '{.status.conditions[?(@.type=="Established")].status}'
    for name in ("policysnapshots.pkg.seedcore.io", "clusterkopfpeerings.kopf.dev"):
        # Not `kubectl wait`: it errors out on a CRD too new to have any conditions yet.
        deadline = time.monotonic() + 60
        while kubectl("get", f"crd/{name}", "-o", f"jsonpath={established}").stdout != "True":
            assert time.monotonic() < deadline, f"crd/{name} not Established after 60 s"
            time.sleep(0.2)
    chart = kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "pkg-operator.yaml"))
    assert chart.returncode == 0, chart.stderr
    assert "deployment.apps/pkg-operator serverside-applied" in chart.stdout
    assert "clusterrole.rbac.authorization.k8s.io/pkg-operator serverside-applied" in chart.stdout
    assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/pkg-operator" in chart.stdout
    # No operator serves it here: left behind, its Fail policy would refuse the pods of
    # any namespace labelled for injection that later tests create.
    removed = kubectl("delete", "mutatingwebhookconfiguration", "pkg-operator")
    assert removed.returncode == 0, removed.stderr
