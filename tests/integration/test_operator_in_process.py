"""The operator's glue, run in this process by kopf's KopfRunner against the test bed.

The end-to-end suite runs ``pkg-operator`` as a process; these tests run the same
handler registry in a thread of the test process, so a failure shows the handler's
own traceback, and each test gets its own PostgreSQL database, Redis database and
namespace. They cover what only the glue does: turning the store's answers into
conditions and events, archiving on delete, and publishing a promotion to Redis.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import yaml
from kopf.testing import KopfRunner
from kubernetes.config import kube_config
from prometheus_client import REGISTRY

from pkg_operator import kube as pkg_kube
from pkg_operator.handlers import build_registry
from pkg_operator.settings import OperatorSettings
from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.product import ROOT, kubectl
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

#: The snapshot every test starts from: one rule, one passing fixture.
SPEC: dict[str, Any] = {
    "env": "dev",
    "engine": "native",
    "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low"}}],
    "rules": [
        {
            "rule_id": "r1",
            "rule_name": "vip",
            "priority": 10,
            "conditions": [{"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}],
            "emissions": [{"subtask_type": "escalate", "subtask_name": "escalate_vip"}],
        }
    ],
    "fixtures": [
        {"name": "vip", "input": {"tags": ["vip"]}, "expect": {"subtasks": ["escalate_vip"]}}
    ],
}


class Kube:
    def __init__(self, kube: KubeControlPlane, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(
            self.kube.kubectl_bin, self.kube.kubeconfig, *args, stdin=stdin, check=check
        ).stdout

    def apply_snapshot(self, name: str, version: str, **spec: Any) -> None:
        document = {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": {**SPEC, "version": version, **spec},
        }
        self.run("apply", "-n", self.namespace, "-f", "-", stdin=yaml.safe_dump(document))

    def snapshot(self, name: str) -> dict[str, Any]:
        text = self.run("get", "psnap", name, "-n", self.namespace, "-o", "json", check=False)
        return json.loads(text) if text else {}


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


async def until(check: Any, *, what: str, seconds: float = 30) -> Any:
    """Poll ``check()`` (run in a thread: it calls kubectl) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + seconds
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def crds(kube: KubeControlPlane) -> None:
    kubectl(
        kube.kubectl_bin,
        kube.kubeconfig,
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "manifests" / "crds.yaml"),
    )


@pytest.fixture
def cluster(kube: KubeControlPlane, crds: None) -> Kube:
    namespace = f"inproc-{uuid.uuid4().hex[:8]}"
    handle = Kube(kube, namespace)
    handle.run("create", "namespace", namespace)
    return handle


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    url = redis_server.url(5)  # a database of its own; flushed before and after
    client = aioredis.from_url(url)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def operator(
    kube: KubeControlPlane,
    cluster: Kube,
    migrated_dsn: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[KopfRunner]:
    """The operator's registry in KopfRunner: standalone, this test's namespace and servers.

    Only its own namespace: the objects other tests left in the API server would otherwise
    be reconciled into this test's fresh database, racing with its own.
    """
    # kopf logs in, and pkg_operator.kube connects, with the kubeconfig of the test bed: the
    # kubernetes client read $KUBECONFIG into its default when it was imported.
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    pkg_kube._api_client.cache_clear()
    settings = OperatorSettings(
        database_url=migrated_dsn,
        redis_url=redis_url,
        standalone=True,
        liveness_port=0,
        metrics_port=0,
        migrate_on_start=False,
        rollout_interval_seconds=0.5,
    )
    with KopfRunner(
        ["run", "--standalone", "--namespace", cluster.namespace],
        registry=build_registry(settings),
        timeout=60,
    ) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None, runner.exception


async def test_a_snapshot_is_stored_validated_and_its_row_names_its_resource(
    cluster: Kube, operator: KopfRunner, sql: asyncpg.Connection
) -> None:
    cluster.apply_snapshot("s", "inproc@1.0.0")
    obj = await until(
        lambda: (
            (o := cluster.snapshot("s")) and condition(o, "Ready").get("status") == "True" and o
        ),
        what="psnap/s Ready",
    )
    row = await sql.fetchrow(
        "SELECT id, uid, resource_namespace, resource_name FROM pkg_snapshots WHERE version = $1",
        "inproc@1.0.0",
    )
    assert row is not None
    assert obj["status"]["snapshotId"] == row["id"]
    assert (row["uid"], row["resource_namespace"], row["resource_name"]) == (
        obj["metadata"]["uid"], cluster.namespace, "s"
    )  # fmt: skip
    runs = await sql.fetch(
        "SELECT success FROM pkg_validation_runs WHERE snapshot_id = $1", row["id"]
    )
    assert [r["success"] for r in runs] == [True]


async def test_a_store_conflict_becomes_a_condition_and_an_event_not_a_retry(
    cluster: Kube, operator: KopfRunner
) -> None:
    cluster.apply_snapshot("a", "inproc@2.0.0")
    await until(
        lambda: condition(cluster.snapshot("a"), "Ready").get("status") == "True", what="a Ready"
    )
    cluster.apply_snapshot("b", "inproc@2.0.0", data={"other": "content"}, autoPromote=True)
    stored = await until(
        lambda: (
            (c := condition(cluster.snapshot("b"), "Stored")) and c.get("status") == "False" and c
        ),
        what="b refused",
    )
    assert stored["reason"] == "VersionConflict"
    events = cluster.run(
        "get",
        "events",
        "-n",
        cluster.namespace,
        "--field-selector",
        "involvedObject.name=b",
        "-o",
        "json",
    )
    assert "VersionConflict" in events
    # Handled: kopf keeps a progress record (with retries) only for a handler it will retry.
    obj = cluster.snapshot("b")
    progress = [
        key
        for key in obj["metadata"].get("annotations") or {}
        if key.startswith("kopf.pkg.seedcore.io/")
        and not key.endswith("last-handled-configuration")
    ]
    assert progress == []


async def test_a_promotion_publishes_the_environment_level_in_redis(
    cluster: Kube, operator: KopfRunner, redis_url: str
) -> None:
    cluster.apply_snapshot("p", "inproc@3.0.0", autoPromote=True)
    await until(
        lambda: condition(cluster.snapshot("p"), "Active").get("status") == "True", what="p Active"
    )
    redis = aioredis.from_url(redis_url)
    try:
        keys = [key.decode() for key in await redis.keys("*dev*")]
        levels = [
            json.loads(raw) for key in keys if (raw := await redis.get(key)) and raw[:1] == b"{"
        ]
    finally:
        await redis.aclose()
    assert any((level.get("stable") or {}).get("version") == "inproc@3.0.0" for level in levels), (
        keys,
        levels,
    )


async def test_deleting_an_inactive_snapshot_archives_its_row(
    cluster: Kube, operator: KopfRunner, sql: asyncpg.Connection
) -> None:
    cluster.apply_snapshot("d", "inproc@4.0.0")
    await until(
        lambda: condition(cluster.snapshot("d"), "Ready").get("status") == "True", what="d Ready"
    )
    await asyncio.to_thread(
        cluster.run, "delete", "psnap", "d", "-n", cluster.namespace, "--timeout=30s"
    )
    archived = await sql.fetchval(
        "SELECT archived_at FROM pkg_snapshots WHERE version = $1", "inproc@4.0.0"
    )
    assert archived is not None
    actions = await sql.fetch(
        "SELECT action FROM pkg_audit_log a JOIN pkg_snapshots s ON s.id = a.snapshot_id "
        "WHERE s.version = $1 ORDER BY a.id",
        "inproc@4.0.0",
    )
    assert [a["action"] for a in actions][-1] == "snapshot.archived"


async def test_kopf_keeps_its_bookkeeping_under_the_projects_names(
    cluster: Kube, operator: KopfRunner
) -> None:
    cluster.apply_snapshot("k", "inproc@5.0.0")
    obj = await until(
        lambda: (
            (o := cluster.snapshot("k")) and condition(o, "Ready").get("status") == "True" and o
        ),
        what="k Ready",
    )
    assert obj["metadata"]["finalizers"] == ["pkg.seedcore.io/finalizer"]
    annotations = obj["metadata"].get("annotations") or {}
    assert any(key.startswith("kopf.pkg.seedcore.io/") for key in annotations), annotations
    assert not any("zalando" in key for key in annotations), annotations


@pytest.fixture
def checking_operator(
    kube: KubeControlPlane, migrated_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KopfRunner]:
    """``operator`` with the integrity checks every half second."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    pkg_kube._api_client.cache_clear()
    settings = OperatorSettings(
        database_url=migrated_dsn,
        redis_url=redis_url,
        standalone=True,
        liveness_port=0,
        metrics_port=0,
        migrate_on_start=False,
        integrity_check_seconds=0.5,
    )
    with KopfRunner(
        ["run", "--standalone", "--all-namespaces"],
        registry=build_registry(settings),
        timeout=60,
    ) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None, runner.exception


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_the_integrity_timer_reports_a_tampered_audit_row_and_snapshot_rows(
    cluster: Kube, checking_operator: KopfRunner, sql: asyncpg.Connection
) -> None:
    cluster.apply_snapshot("t", "inproc@6.0.0")
    await until(
        lambda: condition(cluster.snapshot("t"), "Ready").get("status") == "True", what="t Ready"
    )
    clean_runs = _sample("pkg_integrity_checks_total", result="ok")
    await until(
        lambda: _sample("pkg_integrity_checks_total", result="ok") > clean_runs,
        what="a clean integrity run",
    )
    assert _sample("pkg_integrity_problems") == 0
    assert _sample("pkg_integrity_audit_chain_broken") == 0
    # Someone with write access to PostgreSQL rewrites history and a rule.
    await sql.execute("ALTER TABLE pkg_audit_log DISABLE TRIGGER USER")
    await sql.execute("UPDATE pkg_audit_log SET actor = 'mallory' WHERE id = 1")
    await sql.execute("ALTER TABLE pkg_audit_log ENABLE TRIGGER USER")
    await sql.execute(
        "UPDATE pkg_rule_conditions c SET condition_key = 'anyone' FROM pkg_policy_rules r, "
        "pkg_snapshots s WHERE c.rule_id = r.id AND r.snapshot_id = s.id AND s.version = $1",
        "inproc@6.0.0",
    )
    await until(lambda: _sample("pkg_integrity_problems") >= 2, what="the problems gauge")
    assert _sample("pkg_integrity_checks_total", result="problems") >= 1
    assert _sample("pkg_integrity_audit_chain_broken") == 1  # the actor rewritten above

    def warnings(namespace: str, name: str) -> list[dict[str, Any]]:
        text = cluster.run(
            "get", "events", "-n", namespace, "--field-selector",
            f"involvedObject.name={name},reason=IntegrityCheckFailed", "-o", "json",
        )  # fmt: skip
        return [e for e in json.loads(text)["items"] if e["type"] == "Warning"]

    on_snapshot = await until(lambda: warnings(cluster.namespace, "t"), what="the psnap's event")
    assert "changed in PostgreSQL after it was stored" in on_snapshot[0]["message"]
    # The CRD's events are shared with every earlier run in this database (other tests
    # tamper with snapshots too): wait for this run's, the one that names the chain.
    on_crd = await until(
        lambda: [
            e
            for e in warnings("default", "policysnapshots.pkg.seedcore.io")
            if "audit chain broken at row 1" in e["message"]
        ],
        what="the run's event",
    )
    assert on_crd
    message = " ".join(e["message"] for e in warnings("default", "policysnapshots.pkg.seedcore.io"))
    assert "snapshot_rows_changed" in message


async def test_a_tampered_active_snapshot_does_not_stop_the_others_of_its_environment(
    cluster: Kube, operator: KopfRunner, sql: asyncpg.Connection
) -> None:
    cluster.apply_snapshot("first", "inproc@6.0.0", autoPromote=True)
    await until(
        lambda: condition(cluster.snapshot("first"), "Active").get("status") == "True",
        what="first Active",
    )
    await sql.execute(
        "UPDATE pkg_rule_conditions c SET condition_key = 'anyone' FROM pkg_policy_rules r, "
        "pkg_snapshots s WHERE c.rule_id = r.id AND r.snapshot_id = s.id AND s.version = $1",
        "inproc@6.0.0",
    )
    # The operator reasons about the active snapshot by its id and version; the content is
    # the sidecars' to verify before they run it, and the integrity checks report it.
    cluster.apply_snapshot("second", "inproc@6.1.0")
    ready = await until(
        lambda: (c := condition(cluster.snapshot("second"), "Ready")) and c.get("status") and c,
        what="second reconciled",
    )
    assert ready["status"] == "True", ready
