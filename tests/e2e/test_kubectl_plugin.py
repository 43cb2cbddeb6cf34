"""``kubectl pkg``, run by the real kubectl as a plugin, against a real operator and sidecars.

kubectl finds ``kubectl-pkg`` on ``PATH`` (the project's virtualenv) and hands it the
arguments; the plugin writes the action annotation and waits for the operator's
outcome. Each step checks the plugin's output and exit code, and the object's status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from e2e_helpers import Cluster, condition, snapshot_doc, wait_for

from pkg_testbed.product import OperatorProcess, SidecarProcess

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent


class Plugin:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.namespace = namespace
        path = os.pathsep.join(
            [str(Path(cluster.kube.kubectl_bin).parent), str(VENV_BIN), os.environ["PATH"]]
        )
        self.env = {**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kube.kubeconfig)}
        self.kubectl = str(cluster.kube.kubectl_bin)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl, "pkg", *args, "-n", self.namespace],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.kubectl, "pkg", *args, "-n", self.namespace],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def devices(cluster: Cluster, namespace: str) -> Iterator[str]:
    target = f"plug-{namespace}"
    procs = []
    for i in range(2):
        proc = SidecarProcess(
            cluster.workdir / f"plugin-{namespace}",
            {
                "PKG_DATABASE_URL": cluster.database_url,
                "PKG_REDIS_URL": cluster.redis_url,
                "PKG_ENV": "dev",
                "PKG_TARGET": target,
                "PKG_REGION": "eu-west",
                "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                "PKG_RESYNC_INTERVAL_SECONDS": "2",
                "PKG_LOG_LEVEL": "WARNING",
            },
            device_id=f"{target}:{i}",
        )
        proc.proc.start()
        procs.append(proc)
    for proc in procs:
        proc.start_wait()
    yield target
    for proc in procs:
        proc.stop()


def summary(cluster: Cluster, namespace: str, name: str) -> str:
    return str((cluster.get("pdep", name, namespace).get("status") or {}).get("summary"))


def canary_doc(target: str) -> str:
    """Deployment "canary" of v2: 50 %, then a pause until promoted."""
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": "canary"},
            "spec": {
                "snapshotRef": {"name": "v2"},
                "env": "dev",
                "target": target,
                "region": "eu-west",
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
                "progressDeadlineSeconds": 90,
                "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 5, "minDevices": 2},
            },
        }
    )


def promote_and_refuse_on_snapshots(pkg: Plugin, cluster: Cluster, namespace: str, me: str) -> None:
    """A snapshot: promote is accepted and waited for; rolling back an inactive one is refused."""
    promoted = pkg.run("promote", "psnap", "v1", "--reason", "fixtures pass")
    assert promoted.returncode == 0, promoted.stderr + promoted.stdout
    assert "promote accepted" in promoted.stdout
    assert "active in dev" in promoted.stdout
    assert condition(cluster.get("psnap", "v1", namespace), "Active")["status"] == "True"
    last = cluster.get("psnap", "v1", namespace)["status"]["lastAction"]
    assert last["actor"] == me
    assert last["token"].startswith("kubectl-pkg-")
    refused = pkg.run("rollback", "psnap", "v2", "-o", "json")
    assert refused.returncode == 1, refused.stderr + refused.stdout
    outcome = json.loads(refused.stdout)
    assert outcome["accepted"] is False
    assert outcome["outcome"].startswith("refused")
    assert pkg.run("abort", "psnap", "v1").returncode == 2  # snapshots take promote, rollback


def check_status_and_listings(pkg: Plugin, namespace: str) -> None:
    """A deployment paused at 50 %: the tree marks the pause as current; listings show it."""
    shown = pkg.run("status", "canary")
    assert shown.returncode == 0, shown.stderr
    assert f"PolicyDeployment {namespace}/canary" in shown.stdout
    assert "✔ 1. setWeight 50%" in shown.stdout
    assert "► 2. pause (until promoted)  ◀ current" in shown.stdout
    assert "Weight:   50%" in shown.stdout
    assert "Coverage: 2/2" in shown.stdout
    listed = pkg.run("get")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:3] == ["NAMESPACE", "NAME", "STATUS"]
    assert listed.stdout.splitlines()[1].split()[:5] == [
        namespace,
        "canary",
        "Paused",
        "2/2",
        "50%",
    ]
    snapshots = pkg.run("get", "psnap", "-A", "-o", "json")
    names = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in json.loads(snapshots.stdout)["items"]
    }
    assert {(namespace, "v1"), (namespace, "v2")} <= names
    as_json = json.loads(pkg.run("get", "pdep", "canary", "-o", "json").stdout)
    assert as_json["status"]["summary"] == "Paused"


def test_kubectl_pkg_promotes_aborts_retries_and_watches_a_rollout_to_its_end(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    devices: str,
) -> None:
    start_operator()
    pkg = Plugin(cluster, namespace)
    me = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    v1, v2 = f"plug@1.0.0-{namespace}", f"plug@2.0.0-{namespace}"
    for name, version in (("v1", v1), ("v2", v2)):
        cluster.kubectl(
            "apply", "--server-side", "-n", namespace, "-f", "-",
            stdin=snapshot_doc(name, version, env="dev"),
        )  # fmt: skip
    for name in ("v1", "v2"):
        wait_for(
            lambda n=name: (
                condition(cluster.get("psnap", n, namespace), "Ready").get("status") == "True"
            ),
            what=f"{name} Ready",
        )

    promote_and_refuse_on_snapshots(pkg, cluster, namespace, me)

    # A deployment paused at 50 %: the status tree marks the pause as current.
    cluster.apply(namespace, canary_doc(devices))
    wait_for(lambda: summary(cluster, namespace, "canary") == "Paused", timeout=90, what="Paused")
    check_status_and_listings(pkg, namespace)

    early = pkg.run("retry", "pdep", "canary")
    assert early.returncode == 1, early.stdout + early.stderr
    assert "retry REFUSED" in early.stdout
    assert "still running" in early.stdout

    aborted = pkg.run("abort", "canary", "--reason", "looks wrong")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert "abort accepted" in aborted.stdout
    watched = pkg.run("watch", "canary", timeout=60)
    assert watched.returncode == 4, watched.stdout + watched.stderr  # ended, not Succeeded
    assert watched.stdout.strip().splitlines()[-1].startswith("Aborted ")

    retried = pkg.run("retry", "canary")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_for(lambda: summary(cluster, namespace, "canary") == "Paused", timeout=90, what="Paused")

    # watch follows the rollout from the pause to the end that promote brings.
    watcher = pkg.start("watch", "pdep", "canary")
    try:
        promoted_pdep = pkg.run("promote", "pdep", "canary")
        assert promoted_pdep.returncode == 0, promoted_pdep.stdout + promoted_pdep.stderr
        assert "promote accepted" in promoted_pdep.stdout
        out, err = watcher.communicate(timeout=90)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, out + err
    progress = out.strip().splitlines()
    assert progress[0].startswith("Paused step=2/2 weight=50%"), progress
    assert progress[-1].startswith("Succeeded "), progress
    assert f"stable={v2}" in progress[-1]
    entries = cluster.get("pdep", "canary", namespace)["status"]["processedActions"]
    assert [e["action"] for e in entries] == ["retry", "abort", "retry", "promote"]
    assert {e["actor"] for e in entries} == {me}
