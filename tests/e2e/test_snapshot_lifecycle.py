"""A PolicySnapshot from `kubectl apply` to stored, tested, promoted, signalled and archived.

The operator runs as a real process (``pkg-operator``) against the test bed's
kube-apiserver, PostgreSQL and Redis; every assertion reads the real thing:
the resource's status, rows in PostgreSQL, messages on Redis.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.e2e


def annotate(cluster: Cluster, namespace: str, name: str, action: str, **extra: str) -> str:
    token = uuid.uuid4().hex[:12]
    value = json.dumps(
        {
            "action": action,
            "token": token,
            "actor": "e2e-tester",
            "reason": f"e2e {action}",
            **extra,
        }
    )
    cluster.kubectl(
        "annotate", "psnap", name, "-n", namespace, "--overwrite", f"pkg.seedcore.io/action={value}"
    )
    return token


def ready(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get("psnap", name, namespace)
        return obj if condition(obj, "Ready").get("status") in ("True", "False") else None

    result: dict[str, Any] = wait_for(check, what=f"psnap/{name} to be reconciled")
    return result


def action_done(cluster: Cluster, namespace: str, name: str, token: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get("psnap", name, namespace)
        last = (obj.get("status") or {}).get("lastAction") or {}
        return obj if last.get("token") == token else None

    result: dict[str, Any] = wait_for(check, what=f"the action {token} on psnap/{name}")
    return result


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def unique(namespace: str, base: str) -> str:
    return f"{base}-{namespace}"


async def test_a_valid_snapshot_becomes_ready_with_its_rows_in_postgresql(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    version = f"rules@1.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("v1", version))
    obj = ready(cluster, namespace, "v1")
    status = obj["status"]
    assert condition(obj, "Ready")["status"] == "True", status
    assert condition(obj, "Stored")["status"] == "True"
    assert condition(obj, "Validated")["reason"] == "FixturesPassed"
    assert condition(obj, "Active") == {
        **condition(obj, "Active"),
        "status": "False",
        "reason": "NotPromoted",
    }
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["ruleCount"] == 1
    assert status["validation"]["passed"] == 1
    rows = await fetch(
        cluster, "SELECT id, checksum FROM pkg_snapshots WHERE version = $1", version
    )
    assert [row["id"] for row in rows] == [status["snapshotId"]]
    assert rows[0]["checksum"] == status["checksum"]
    runs = await fetch(
        cluster,
        "SELECT success, finished_at FROM pkg_validation_runs WHERE snapshot_id = $1",
        status["snapshotId"],
    )
    assert [(r["success"], r["finished_at"] is not None) for r in runs] == [(True, True)]
    # kopf's bookkeeping is under the project's own names.
    annotations = obj["metadata"].get("annotations") or {}
    assert not [key for key in annotations if key.startswith("kopf.zalando.org")]
    assert "pkg.seedcore.io/finalizer" in obj["metadata"]["finalizers"]
    # The printer columns read the status.
    table = cluster.kubectl("get", "psnap", "v1", "-n", namespace)
    assert "True" in table.splitlines()[1]
    assert version in table


async def test_a_failing_fixture_leaves_it_not_ready_and_it_can_never_be_promoted(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    cluster.apply(
        namespace, snapshot_doc("bad", f"rules@1.0.1-{namespace}", expect="something_else")
    )
    obj = ready(cluster, namespace, "bad")
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Validated")["reason"] == "FixturesFailed"
    assert "something_else" in condition(obj, "Validated")["message"]
    token = annotate(cluster, namespace, "bad", "promote")
    obj = action_done(cluster, namespace, "bad", token)
    assert obj["status"]["lastAction"]["outcome"].startswith("refused")
    assert condition(obj, "Active")["status"] == "False"
    promotions = await fetch(
        cluster,
        "SELECT 1 FROM pkg_promotions p JOIN pkg_snapshots s "
        "ON s.id = p.snapshot_id WHERE s.version = $1",
        f"rules@1.0.1-{namespace}",
    )
    assert promotions == []


async def test_a_checksum_mismatch_is_rejected_with_a_clear_condition(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    version = f"rules@1.0.2-{namespace}"
    cluster.apply(namespace, snapshot_doc("tampered", version, checksum="0" * 64))
    obj = ready(cluster, namespace, "tampered")
    stored = condition(obj, "Stored")
    assert (stored["status"], stored["reason"]) == ("False", "ChecksumMismatch")
    assert "0" * 64 in stored["message"]
    assert await fetch(cluster, "SELECT 1 FROM pkg_snapshots WHERE version = $1", version) == []


async def test_the_api_server_refuses_an_edit_of_the_spec(
    cluster: Cluster,
    namespace: str,
) -> None:
    version = f"rules@1.0.3-{namespace}"
    cluster.apply(namespace, snapshot_doc("frozen", version))
    edited = cluster.kubectl_result(
        "apply", "-n", namespace, "-f", "-", stdin=snapshot_doc("frozen", version, expect="other")
    )
    assert edited.returncode != 0
    assert "spec is immutable" in edited.stderr


async def test_promote_and_rollback_write_rows_and_signal_the_sidecars(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    env = "staging"
    v1, v2 = f"rules@2.0.0-{namespace}", f"rules@2.1.0-{namespace}"
    for name, version in (("one", v1), ("two", v2)):
        cluster.apply(namespace, snapshot_doc(name, version, env=env))
        assert condition(ready(cluster, namespace, name), "Ready")["status"] == "True"

    client = aioredis.from_url(cluster.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("pkg_updates")
    try:
        obj = action_done(cluster, namespace, "one", annotate(cluster, namespace, "one", "promote"))
        assert condition(obj, "Active")["status"] == "True", obj["status"]
        obj = action_done(cluster, namespace, "two", annotate(cluster, namespace, "two", "promote"))
        assert condition(obj, "Active")["status"] == "True"
        old = wait_for(
            lambda: (
                (o := cluster.get("psnap", "one", namespace))
                and condition(o, "Active").get("reason") == "Superseded"
                and o
            ),
            what="the replaced snapshot to say Superseded",
        )
        assert v2 in condition(old, "Active")["message"]

        messages = []
        for _ in range(100):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                messages.append(json.loads(message["data"]))
        # The channel is shared: this operator may also rewrite other environments'
        # levels (a pass at start repairs what earlier tests left in Redis).
        key = f"pkg:desired:{env}"
        states = [m["state"] for m in messages if m.get("kind") == "desired" and m["key"] == key]
        assert [s["stable"]["version"] for s in states][-2:] == [v1, v2]
        assert states[-1]["epoch"] > states[-2]["epoch"]
        level = json.loads(await client.get(f"pkg:desired:{env}"))
        assert level["stable"]["version"] == v2

        obj = action_done(
            cluster, namespace, "two", annotate(cluster, namespace, "two", "rollback")
        )
        assert "rolled staging back to" in obj["status"]["lastAction"]["outcome"]
        level = json.loads(await client.get(f"pkg:desired:{env}"))
        assert level["stable"]["version"] == v1
        wait_for(
            lambda: (
                condition(cluster.get("psnap", "one", namespace), "Active").get("status") == "True"
            ),
            what="the rolled-back-to snapshot to be Active again",
        )
    finally:
        await pubsub.aclose()
        await client.aclose()

    rows = await fetch(
        cluster,
        "SELECT p.action, s.version, p.actor FROM pkg_promotions p "
        "JOIN pkg_snapshots s ON s.id = p.snapshot_id "
        "WHERE s.version = ANY($1) ORDER BY p.id",
        [v1, v2],
    )
    assert [(r["action"], r["version"]) for r in rows] == [
        ("promote", v1),
        ("promote", v2),
        ("rollback", v1),
    ]
    assert {r["actor"] for r in rows} == {"e2e-tester"}
    audit = await fetch(
        cluster,
        "SELECT action FROM pkg_audit_log WHERE action IN "
        "('snapshot.promoted', 'snapshot.rolled_back')",
    )
    assert len(audit) >= 3


async def test_an_active_snapshot_is_held_and_an_inactive_one_archived_on_delete(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    env = "dev"
    v1, v2 = f"rules@3.0.0-{namespace}", f"rules@3.1.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("a", v1, env=env))
    cluster.apply(namespace, snapshot_doc("b", v2, env=env, auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "b", namespace), "Active").get("status") == "True",
        what="autoPromote to activate b",
    )
    assert condition(ready(cluster, namespace, "a"), "Ready")["status"] == "True"

    cluster.kubectl("delete", "psnap", "b", "-n", namespace, "--wait=false")
    held = wait_for(
        lambda: (
            (o := cluster.get("psnap", "b", namespace))
            and condition(o, "DeletionHeld").get("status") == "True"
            and o
        ),
        what="the finalizer to hold the active snapshot",
    )
    assert "active snapshot" in condition(held, "DeletionHeld")["message"]
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=b", "-o", "json"
    )
    assert "DeletionHeld" in events

    cluster.kubectl("delete", "psnap", "a", "-n", namespace, "--timeout=60s")
    rows = await fetch(cluster, "SELECT archived_at FROM pkg_snapshots WHERE version = $1", v1)
    assert len(rows) == 1
    assert rows[0]["archived_at"] is not None
    assert await fetch(
        cluster,
        "SELECT 1 FROM pkg_validation_runs r JOIN pkg_snapshots s "
        "ON s.id = r.snapshot_id WHERE s.version = $1",
        v1,
    )


async def test_a_restarted_operator_duplicates_no_rows(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    first = start_operator(name="first")
    versions = [f"rules@4.{i}.0-{namespace}" for i in range(5)]
    for i, version in enumerate(versions):
        cluster.apply(namespace, snapshot_doc(f"s{i}", version))
    await asyncio.sleep(0.5)
    first.kill()  # mid-way: some stored, some validated, some untouched
    start_operator(name="second")
    for i in range(5):
        assert condition(ready(cluster, namespace, f"s{i}"), "Ready")["status"] == "True"
    snapshots = await fetch(
        cluster,
        "SELECT version, count(*) AS n FROM pkg_snapshots WHERE version = ANY($1) GROUP BY version",
        versions,
    )
    assert sorted((r["version"], r["n"]) for r in snapshots) == [(v, 1) for v in sorted(versions)]
    runs = await fetch(
        cluster,
        "SELECT s.version, count(*) AS n FROM pkg_validation_runs r JOIN "
        "pkg_snapshots s ON s.id = r.snapshot_id WHERE s.version = ANY($1)"
        " GROUP BY s.version",
        versions,
    )
    assert sorted((r["version"], r["n"]) for r in runs) == [(v, 1) for v in sorted(versions)]


async def test_two_operator_replicas_promote_once(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator(name="replica-a", PKG_PEERING_PRIORITY="10")
    high = start_operator(name="replica-b", PKG_PEERING_PRIORITY="20")
    # kopf starts every replica paused and logs only when one resumes. A replica that an
    # earlier test killed keeps its peering record (random priority) for its lifetime,
    # so replica-b may wait up to PKG_PEERING_LIFETIME_SECONDS (30 s) before it works.
    wait_for(
        lambda: "Resuming operations" in high.proc.log_path.read_text(errors="replace"),
        timeout=60,
        what="replica-b to resume",
    )
    version = f"rules@5.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("p", version, env="staging"))
    assert condition(ready(cluster, namespace, "p"), "Ready")["status"] == "True"
    token = annotate(cluster, namespace, "p", "promote")
    action_done(cluster, namespace, "p", token)
    await asyncio.sleep(2)  # a window for the other replica to (wrongly) promote again
    rows = await fetch(
        cluster,
        "SELECT count(*) AS n FROM pkg_promotions p JOIN pkg_snapshots s "
        "ON s.id = p.snapshot_id WHERE s.version = $1",
        version,
    )
    assert rows[0]["n"] == 1


async def test_what_a_redis_restart_loses_is_rebuilt_from_postgresql(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    env, version = "dev", f"rules@6.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("r", version, env=env, auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "r", namespace), "Active").get("status") == "True",
        what="autoPromote",
    )
    client = aioredis.from_url(cluster.redis_url)
    try:
        # A Redis restart without persistence: the levels and the heartbeat group are gone.
        await client.delete(f"pkg:desired:{env}", "pkg:heartbeats")
        for _ in range(120):
            raw = await client.get(f"pkg:desired:{env}")
            if raw is not None:
                break
            await asyncio.sleep(0.25)
        assert raw is not None, "the operator did not rewrite the lost desired state"
        assert json.loads(raw)["stable"]["version"] == version
        groups = await client.xinfo_groups("pkg:heartbeats")
        assert [g["name"] for g in groups] == [b"pkg-operator"]
    finally:
        await client.aclose()
