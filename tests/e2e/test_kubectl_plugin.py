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

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
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


def diff_by_name_and_by_file(pkg: Plugin, cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """diff: two objects with the same rules differ in nothing; a file's edits are named."""
    same = pkg.run("diff", "v1", "v2")
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().splitlines()[-1] == "0 added, 0 removed, 0 changed, 1 unchanged"
    edited = cluster.get("psnap", "v2", namespace)
    rules = edited["spec"]["rules"]
    rules[0]["priority"] = 99
    rules.append({**rules[0], "rule_id": "rule-002", "rule_name": "added_one"})
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(edited))
    shown = pkg.run("diff", "v1", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "+ rule-002 (added_one)" in shown.stdout
    assert "~ rule-001 (high_priority_vip)" in shown.stdout
    assert "    priority: 10 -> 99" in shown.stdout
    as_json = json.loads(pkg.run("diff", str(path), "v1", "-o", "json").stdout)
    assert [r["rule_id"] for r in as_json["removed"]] == ["rule-002"]
    assert as_json["changed"][0]["fields"] == {"priority": {"a": 99, "b": 10}}
    missing = pkg.run("diff", "v1", "no-such-snapshot")
    assert missing.returncode == 2
    assert "not found" in missing.stderr


def reports_after_the_rollout(
    pkg: Plugin, cluster: Cluster, namespace: str, me: str, *, v2: str, tmp_path: Path
) -> None:
    """diff, coverage, history, audit verify and the status's events, after a rollout."""
    diff_by_name_and_by_file(pkg, cluster, namespace, tmp_path)
    db = ("--database-url", cluster.database_url)

    devices = json.loads(pkg.run("coverage", "canary", *db, "-o", "json").stdout)["devices"]
    assert sorted(d["device"] for d in devices) == [f"plug-{namespace}:0", f"plug-{namespace}:1"]
    assert {d["version"] for d in devices} == {v2}
    assert {d["region"] for d in devices} == {"eu-west"}
    assert all(d["lastHeartbeat"] and d["cohort"] in ("canary", "stable") for d in devices)
    table = pkg.run("coverage", "canary", *db)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["DEVICE", "REGION", "VERSION", "COHORT"]
    pkg.env.pop("PKG_DATABASE_URL", None)
    from_status = json.loads(pkg.run("coverage", "canary", "-o", "json").stdout)
    assert from_status["coverage"]["display"] == "2/2"
    assert "needs the database" in from_status["note"]

    history = json.loads(pkg.run("history", "canary", *db, "-o", "json").stdout)["entries"]
    actions = [(e["what"], e["actor"]) for e in history if e["source"] == "status"]
    assert [a for a, _ in actions if not a.startswith("attempt")] == [
        "retry", "abort", "retry", "promote",
    ]  # fmt: skip
    assert {actor for what, actor in actions if not what.startswith("attempt")} == {me}
    assert any(e["reason"] == "looks wrong" for e in history)
    attempts = [e for e in history if e["what"].startswith("attempt ")]
    assert [e["result"] for e in attempts] == ["Aborted", "Succeeded"], attempts
    assert any(e["source"] == "pkg_audit_log" for e in history)
    snap = json.loads(pkg.run("history", "psnap", "v1", *db, "-o", "json").stdout)["entries"]
    promoted = [e for e in snap if e["source"] == "pkg_promotions"]
    assert promoted, snap
    assert promoted[0]["reason"] == "fixtures pass"
    assert pkg.run("history", "psnap", "v1").returncode == 0  # the status's part only

    verified = pkg.run("audit", "verify", *db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("audit chain intact (")
    refused = pkg.run("audit", "verify")
    assert refused.returncode == 2
    assert "PKG_DATABASE_URL" in refused.stderr

    status = pkg.run("status", "canary").stdout
    assert "Events" in status, status


def test_kubectl_pkg_promotes_aborts_retries_and_watches_a_rollout_to_its_end(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    devices: str,
    tmp_path: Path,
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

    reports_after_the_rollout(pkg, cluster, namespace, me, v2=v2, tmp_path=tmp_path)
