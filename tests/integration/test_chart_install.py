"""The Helm chart installs onto the real API server, and refuses bad values with a message.

``helm install`` (the test bed's helm) runs against the test bed's kube-apiserver with a
release of its own name (``fullnameOverride``: the chart's cluster-wide objects must not
meet those of other tests); every object of the release must then exist on the server,
which validated each one. The objects a plain install leaves out (the migration hook Job,
which would wait for a kubelet that the test bed lacks, and the metrics Service) go
through ``kubectl apply --dry-run=server``. The ServiceMonitor's CRD is not on the test
bed: it is checked as rendered.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pkg_testbed.kube import KubeControlPlane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "pkg-operator"
RUN = uuid.uuid4().hex[:6]
RELEASE, NAMESPACE = f"pkg-chart-{RUN}", f"pkg-chart-{RUN}"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def release(kube: KubeControlPlane, helm_bin: Path) -> Iterator[str]:
    """The chart installed as RELEASE; uninstalled afterwards."""
    crds = run(
        str(kube.kubectl_bin),
        "--kubeconfig",
        str(kube.kubeconfig),
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "manifests" / "crds.yaml"),
    )
    assert crds.returncode == 0, crds.stderr
    installed = run(
        str(helm_bin),
        "install",
        RELEASE,
        str(CHART),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        f"fullnameOverride={RELEASE}",
        "--set",
        "migrations.hookJob=false",
        "--set",
        "metrics.enabled=true",
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield RELEASE
    removed = run(
        str(helm_bin), "uninstall", RELEASE, "--kubeconfig", str(kube.kubeconfig), "-n", NAMESPACE
    )
    assert removed.returncode == 0, removed.stderr


def kubectl(kube: KubeControlPlane, *args: str, stdin: str | None = None) -> Any:
    return run(str(kube.kubectl_bin), "--kubeconfig", str(kube.kubeconfig), *args, stdin=stdin)


def test_every_object_of_the_release_is_on_the_server(
    release: str, kube: KubeControlPlane, helm_bin: Path
) -> None:
    manifest = run(
        str(helm_bin),
        "get",
        "manifest",
        release,
        "--kubeconfig",
        str(kube.kubeconfig),
        "-n",
        NAMESPACE,
    ).stdout
    objects = [d for d in yaml.safe_load_all(manifest) if d]
    kinds = {d["kind"] for d in objects}
    assert {
        "Deployment",
        "Service",
        "Secret",
        "MutatingWebhookConfiguration",
        "PodDisruptionBudget",
        "Role",
        "ClusterRole",
        "ClusterKopfPeering",
    } <= kinds
    found = kubectl(kube, "get", "-f", "-", "-o", "name", stdin=manifest)
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.split()) == len(objects)
    # The Service the configuration calls, with the operator's webhook port behind it.
    config = next(d for d in objects if d["kind"] == "MutatingWebhookConfiguration")
    service = config["webhooks"][0]["clientConfig"]["service"]
    assert (service["name"], service["namespace"]) == (f"{release}-webhook", NAMESPACE)
    assert config["webhooks"][0]["failurePolicy"] == "Fail"
    assert config["webhooks"][1]["failurePolicy"] == "Ignore"


def test_what_a_plain_install_leaves_out_passes_server_side_validation(
    release: str, kube: KubeControlPlane, helm_bin: Path
) -> None:
    rendered = run(
        str(helm_bin),
        "template",
        release,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--set",
        f"fullnameOverride={release}",
        "--set",
        "metrics.enabled=true",
    )
    assert rendered.returncode == 0, rendered.stderr
    checked = kubectl(
        kube,
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=rendered.stdout,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"job.batch/{release}-migrate serverside-applied (server dry run)" in checked.stdout


def test_the_service_monitor_selects_the_metrics_service(helm_bin: Path) -> None:
    rendered = run(
        str(helm_bin),
        "template",
        "pkg-operator",
        str(CHART),
        "--set",
        "metrics.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    assert rendered.returncode == 0, rendered.stderr
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    monitor = next(d for d in objects if d["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    metrics = next(d for d in objects if d["metadata"]["name"] == "pkg-operator-metrics")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    # The job label the PKGOperatorDown alert selects (deploy/monitoring/pkg-alerts.rules.yaml).
    assert metrics["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "pkg-operator"
    deployment = next(d for d in objects if d["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["PKG_METRICS_PORT"] == "9090"


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("webhook.failurePolicy=Maybe", "value must be one of 'Fail', 'Ignore'"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("injection.env=qa", "/injection/env"),
        ("replicas=0", "/replicas"),
        ("webhok.port=9443", "additional properties 'webhok' not allowed"),
    ],
)
def test_bad_values_are_refused_with_a_message(
    setting: str, words: str, kube: KubeControlPlane, helm_bin: Path
) -> None:
    lint = run(str(helm_bin), "lint", "--strict", str(CHART), "--set", setting)
    assert lint.returncode != 0
    assert words in lint.stdout + lint.stderr
    install = run(
        str(helm_bin),
        "install",
        f"bad-{RUN}",
        str(CHART),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--namespace",
        NAMESPACE,
        "--dry-run=server",
        "--set",
        setting,
    )
    assert install.returncode != 0
    assert words in install.stderr


def test_an_upgrade_keeps_the_certificate_and_ca_bundle_the_operator_wrote(
    release: str, kube: KubeControlPlane, helm_bin: Path
) -> None:
    # What the operator writes after install: the Secret's data and the caBundle.
    secret = f"{release}-webhook-tls"
    wrote = kubectl(
        kube,
        "-n",
        NAMESPACE,
        "patch",
        "secret",
        secret,
        "--type=merge",
        "-p",
        '{"data": {"ca.crt": "Y2E=", "tls.crt": "Y2VydA=="}}',
    )
    assert wrote.returncode == 0, wrote.stderr
    bundle = kubectl(
        kube,
        "patch",
        "mutatingwebhookconfiguration",
        release,
        "--type=json",
        "-p",
        '[{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Y2E="}]',
    )
    assert bundle.returncode == 0, bundle.stderr
    upgraded = run(
        str(helm_bin),
        "upgrade",
        release,
        str(CHART),
        "--kubeconfig",
        str(kube.kubeconfig),
        "--namespace",
        NAMESPACE,
        "--reuse-values",
        "--set",
        "webhook.timeoutSeconds=7",
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    data = kubectl(kube, "-n", NAMESPACE, "get", "secret", secret, "-o", "jsonpath={.data}")
    assert '"tls.crt":"Y2VydA=="' in data.stdout
    config = kubectl(
        kube,
        "get",
        "mutatingwebhookconfiguration",
        release,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle} {.webhooks[0].timeoutSeconds}",
    )
    assert config.stdout == "Y2E= 7"
