"""Sidecar injection on the real kube-apiserver, by the operator's own webhook.

The operator process serves the webhook on loopback; the API server calls it through
the chart's MutatingWebhookConfiguration, rendered with ``webhook.url`` (an operator
outside the cluster) and named for this module. The operator creates its CA and
serving certificate in a Secret and fills in the configuration's ``caBundle``. Pods
are created with kubectl and read back as stored; there is no kubelet, so the stored
sidecar's environment is resolved here (downward API, Secret) and a real
``pkg-sidecar`` process is started with it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.procs import ServerProcess, free_port, wait_until
from pkg_testbed.product import ROOT, OperatorProcess, venv_command

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
SECRET_NS, SECRET_NAME = "default", f"pkg-webhook-tls-{RUN}"
CONFIGURATION = f"pkg-inject-{RUN}"
LABELLED, PLAIN = f"inject-on-{RUN}", f"inject-off-{RUN}"
TARGET = f"shop-{RUN}"


class Webhook:
    def __init__(self, cluster: Cluster, operator: OperatorProcess, port: int) -> None:
        self.cluster, self.operator, self.port = cluster, operator, port

    def secret(self) -> dict[str, bytes]:
        data = json.loads(
            self.cluster.kubectl("get", "secret", SECRET_NAME, "-n", SECRET_NS, "-o", "json")
        )["data"]
        return {k: base64.b64decode(v) for k, v in data.items()}

    def ca_bundles(self) -> list[str]:
        config = json.loads(
            self.cluster.kubectl("get", "mutatingwebhookconfiguration", CONFIGURATION, "-o", "json")
        )
        return [w["clientConfig"].get("caBundle", "") for w in config["webhooks"]]

    def served_certificate(self) -> x509.Certificate:
        context = ssl.create_default_context(cadata=self.secret()["ca.crt"].decode())
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def render_configuration(helm_bin: Path, port: int) -> str:
    """The chart's MutatingWebhookConfiguration for an operator at https://127.0.0.1:PORT."""
    rendered = subprocess.run(
        [
            str(helm_bin),
            "template",
            "pkg-operator",
            str(ROOT / "helm" / "pkg-operator"),
            "--namespace",
            "pkg-system",
            "--show-only",
            "templates/webhook.yaml",
            "--set",
            f"webhook.url=https://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (config,) = [
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "MutatingWebhookConfiguration"
    ]
    config["metadata"]["name"] = CONFIGURATION
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def webhook(cluster: Cluster, helm_bin: Path) -> Iterator[Webhook]:
    port = free_port()
    operator = OperatorProcess(
        cluster.workdir / "injection",
        cluster.operator_env(
            PKG_WEBHOOK_PORT=str(port),
            PKG_WEBHOOK_HOST="127.0.0.1",
            PKG_WEBHOOK_SECRET=f"{SECRET_NS}/{SECRET_NAME}",
            PKG_WEBHOOK_DNS_NAMES="127.0.0.1,localhost",
            PKG_WEBHOOK_CONFIGURATION=CONFIGURATION,
            # Short lives so that a renewal happens while the tests run: a new serving
            # certificate every ~30 s, checked every second.
            PKG_WEBHOOK_CERT_VALIDITY_SECONDS="150",
            PKG_WEBHOOK_CERT_RENEW_BEFORE_SECONDS="120",
            PKG_WEBHOOK_CERT_CHECK_SECONDS="1",
            PKG_INJECT_IMAGE="pkg-operator:0.1.0",
            PKG_INJECT_TARGET=TARGET,
        ),
        name="operator-webhook",
    )
    cluster.kubectl("apply", "-f", "-", stdin=render_configuration(helm_bin, port))
    cluster.kubectl("create", "namespace", LABELLED)
    cluster.kubectl("label", "namespace", LABELLED, "pkg.seedcore.io/inject=enabled")
    cluster.kubectl("create", "namespace", PLAIN)
    operator.start()
    handle = Webhook(cluster, operator, port)
    try:
        wait_for(lambda: all(handle.ca_bundles()), what="the operator to fill in the caBundle")
        yield handle
    except BaseException:
        print(f"\n===== operator log =====\n{operator.log()}")
        raise
    finally:
        operator.stop()
        # The configuration must not outlive the module: with failurePolicy Fail it
        # would refuse pods in the labelled namespace of this run.
        cluster.kubectl("delete", "mutatingwebhookconfiguration", CONFIGURATION, check=False)


def create_pod(
    cluster: Cluster,
    namespace: str,
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> Any:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": spec or {"containers": [{"name": "app", "image": "registry.example/shop:1.0"}]},
    }
    return cluster.kubectl_result("create", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


def stored(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get("pod", name, namespace)


def sidecars(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [
        c
        for c in (spec.get("initContainers") or []) + spec["containers"]
        if c["name"] == "pkg-sidecar"
    ]


def test_the_operator_keeps_its_ca_in_the_secret_and_the_configuration(webhook: Webhook) -> None:
    data = webhook.secret()
    bundle = base64.b64encode(data["ca-bundle.crt"]).decode()
    assert webhook.ca_bundles() == [bundle, bundle]
    served = webhook.served_certificate()
    served.verify_directly_issued_by(x509.load_pem_x509_certificate(data["ca.crt"]))


def test_a_pod_in_a_labelled_namespace_is_stored_with_the_sidecar(webhook: Webhook) -> None:
    cluster = webhook.cluster
    result = create_pod(
        cluster,
        LABELLED,
        "shop-1",
        annotations={"pkg.seedcore.io/region": "eu-west"},
    )
    assert result.returncode == 0, result.stderr
    pod = stored(cluster, LABELLED, "shop-1")
    (sidecar,) = sidecars(pod)
    assert pod["spec"]["initContainers"][0] is not None
    assert pod["spec"]["initContainers"][0]["name"] == "pkg-sidecar"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["runAsUser"] == 10001
    assert {"name": "pkg-sidecar-cache", "emptyDir": {}} in pod["spec"]["volumes"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["PKG_TARGET"]["value"] == TARGET
    assert env["PKG_REGION"]["value"] == "eu-west"
    assert env["PKG_DEVICE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    # Shown in the README ("What a pod looks like after injection").
    print("\n--- injected pod spec ---\n" + yaml.safe_dump({"spec": pod["spec"]}, sort_keys=False))


def test_pods_elsewhere_are_untouched_unless_annotated(webhook: Webhook) -> None:
    cluster = webhook.cluster
    assert create_pod(cluster, PLAIN, "plain").returncode == 0
    assert sidecars(stored(cluster, PLAIN, "plain")) == []
    assert "initContainers" not in stored(cluster, PLAIN, "plain")["spec"]
    annotated = create_pod(
        cluster, PLAIN, "annotated", annotations={"pkg.seedcore.io/inject": "enabled"}
    )
    assert annotated.returncode == 0, annotated.stderr
    assert len(sidecars(stored(cluster, PLAIN, "annotated"))) == 1
    opted_out = create_pod(
        cluster, LABELLED, "opted-out", annotations={"pkg.seedcore.io/inject": "disabled"}
    )
    assert opted_out.returncode == 0, opted_out.stderr
    assert sidecars(stored(cluster, LABELLED, "opted-out")) == []


def test_a_pod_that_already_has_the_sidecar_is_not_injected_twice(webhook: Webhook) -> None:
    cluster = webhook.cluster
    first = stored(cluster, LABELLED, "shop-1")
    spec = {k: first["spec"][k] for k in ("initContainers", "containers", "volumes")}
    result = create_pod(cluster, LABELLED, "shop-copy", spec=spec)
    assert result.returncode == 0, result.stderr
    copy = stored(cluster, LABELLED, "shop-copy")
    assert len(sidecars(copy)) == 1
    assert [v["name"] for v in copy["spec"]["volumes"]].count("pkg-sidecar-cache") == 1


def test_a_pod_that_cannot_get_its_sidecar_is_refused_with_the_reason(webhook: Webhook) -> None:
    cluster = webhook.cluster
    result = create_pod(
        cluster,
        LABELLED,
        "bad",
        spec={
            "containers": [{"name": "app", "image": "shop:1", "ports": [{"containerPort": 8080}]}]
        },
    )
    assert result.returncode != 0
    assert "container 'app' declares port 8080" in result.stderr
    assert "pkg.seedcore.io/port" in result.stderr
    assert cluster.kubectl_result("get", "pod", "bad", "-n", LABELLED).returncode != 0


def resolve_env(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> dict[str, str]:
    """The sidecar's environment as the kubelet would give it (envFrom, then env)."""
    (sidecar,) = sidecars(pod)
    env: dict[str, str] = {}
    for source in sidecar.get("envFrom") or []:
        name = source["secretRef"]["name"]
        secret = json.loads(cluster.kubectl("get", "secret", name, "-n", namespace, "-o", "json"))
        env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for item in sidecar["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert path == "metadata.name", path
            env[item["name"]] = pod["metadata"]["name"]
    return env


def test_the_injected_environment_runs_a_sidecar_that_joins_a_rollout(
    webhook: Webhook, tmp_path: Path
) -> None:
    cluster = webhook.cluster
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "pkg-sidecar",
        "-n",
        LABELLED,
        f"--from-literal=PKG_DATABASE_URL={cluster.database_url}",
        f"--from-literal=PKG_REDIS_URL={cluster.redis_url}",
    )
    result = create_pod(
        cluster,
        LABELLED,
        "shop-2",
        annotations={"pkg.seedcore.io/env": "dev", "pkg.seedcore.io/region": "eu-west"},
    )
    assert result.returncode == 0, result.stderr
    env = resolve_env(cluster, LABELLED, stored(cluster, LABELLED, "shop-2"))
    assert env["PKG_DEVICE_ID"] == "shop-2"
    assert (env["PKG_ENV"], env["PKG_TARGET"], env["PKG_REGION"]) == ("dev", TARGET, "eu-west")
    # What a pod gives it that a process here must get elsewhere: a free port instead of
    # the pod's own loopback, a folder instead of the emptyDir.
    port = free_port()
    env.update(
        PKG_HTTP_PORT=str(port),
        PKG_CACHE_DIR=str(tmp_path / "snapshots"),
        PKG_WASM_CACHE_DIR=str(tmp_path / "wasm"),
        PKG_HEARTBEAT_INTERVAL_SECONDS="1",
        PKG_RESYNC_INTERVAL_SECONDS="2",
    )
    namespace = LABELLED
    v1, v2 = f"rules@1.0.0-{RUN}", f"rules@2.0.0-{RUN}"
    cluster.apply(namespace, snapshot_doc("v1", v1, env="dev", auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted in dev",
    )
    sidecar = ServerProcess(
        "pkg-sidecar shop-2",
        [venv_command("pkg-sidecar")],
        tmp_path / "sidecar.log",
        env={**os.environ, **env},
    )
    sidecar.start()
    try:
        url = f"http://127.0.0.1:{port}/v1/metadata"

        def version() -> Any:
            import urllib.request

            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read()).get("version")

        wait_until(lambda: version() == v1, timeout=60, what="the sidecar on v1", proc=sidecar)
        cluster.apply(namespace, snapshot_doc("v2", v2, env="dev"))
        wait_for(
            lambda: (
                condition(cluster.get("psnap", "v2", namespace), "Ready").get("status") == "True"
            ),
            what="v2 Ready",
        )
        cluster.apply(
            namespace,
            yaml.safe_dump(
                {
                    "apiVersion": "pkg.seedcore.io/v1alpha1",
                    "kind": "PolicyDeployment",
                    "metadata": {"name": "shop"},
                    "spec": {
                        "snapshotRef": {"name": "v2"},
                        "env": "dev",
                        "target": TARGET,
                        "region": "eu-west",
                        "strategy": {"canary": {"steps": [{"setWeight": 100}]}},
                        "progressDeadlineSeconds": 90,
                        "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 5, "minDevices": 1},
                    },
                }
            ),
        )
        wait_until(lambda: version() == v2, timeout=90, what="the sidecar on v2", proc=sidecar)
        done = wait_for(
            lambda: (
                (cluster.get("pdep", "shop", namespace).get("status") or {}).get("summary")
                == "Succeeded"
                and cluster.get("pdep", "shop", namespace)
            ),
            timeout=90,
            what="the rollout Succeeded",
        )
        assert done["status"]["coverage"]["targeted"] == 1
    except BaseException:
        print(f"\n===== sidecar log =====\n{sidecar.log_tail(80)}")
        raise
    finally:
        sidecar.stop()


def test_the_serving_certificate_is_renewed_and_served_without_a_restart(
    webhook: Webhook,
) -> None:
    before = webhook.served_certificate()
    renewed = wait_for(
        lambda: webhook.served_certificate().serial_number != before.serial_number,
        timeout=90,
        what="a renewed serving certificate",
    )
    assert renewed
    after = webhook.served_certificate()
    assert after.not_valid_after_utc > before.not_valid_after_utc
    assert webhook.operator.proc.running()
    result = create_pod(webhook.cluster, LABELLED, "after-renewal")
    assert result.returncode == 0, result.stderr
    assert len(sidecars(stored(webhook.cluster, LABELLED, "after-renewal"))) == 1


def test_with_the_webhook_down_labelled_namespaces_refuse_pods_and_others_admit_them(
    webhook: Webhook,
) -> None:
    cluster = webhook.cluster
    webhook.operator.stop()
    refused = create_pod(cluster, LABELLED, "while-down")
    assert refused.returncode != 0
    assert "namespaces.inject.pkg.seedcore.io" in refused.stderr
    assert "failed calling webhook" in refused.stderr
    # The annotated-pods webhook ignores failures: the pod is created, without a sidecar.
    admitted = create_pod(
        cluster, PLAIN, "while-down", annotations={"pkg.seedcore.io/inject": "enabled"}
    )
    assert admitted.returncode == 0, admitted.stderr
    assert sidecars(stored(cluster, PLAIN, "while-down")) == []
