"""What the operator does with PolicySnapshots it must refuse, and how it stays up.

Each scenario is what a user can do with ``kubectl``: an object nested deeper than
any recursive code can walk, a version reused with other content or by a second
resource, a version that is not NAME@SEMVER, deleting a snapshot that is still
deployed, and a replica killed without a clean exit. The operator must report each
in the object's status and events, keep serving every other object, and never let
one resource touch another's row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import yaml

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.e2e


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def with_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """``{"status": ...}`` of a PolicySnapshot: only its status, as some of these objects
    are too deep for this process's JSON decoder."""
    text = cluster.kubectl("get", "psnap", name, "-n", namespace, "-o", "jsonpath={.status}")
    return {"status": json.loads(text) if text else {}}


def reconciled(cluster: Cluster, namespace: str, name: str, kind: str = "Ready") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = with_status(cluster, name=name, namespace=namespace)
        return obj if condition(obj, kind).get("status") in ("True", "False") else None

    result: dict[str, Any] = wait_for(check, what=f"psnap/{name} to be reconciled")
    return result


def warnings_for(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.name={name},type=Warning"
    events = json.loads(
        cluster.kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-ojson")
    )
    items: list[dict[str, Any]] = events["items"]
    return items


def deeply_nested_doc(name: str, version: str, depth: int) -> str:
    """A snapshot whose free-form spec.data nests ``depth`` levels, as JSON (kubectl reads it).

    Written as text: no Python encoder would produce it at this depth.
    """
    document = yaml.safe_load(snapshot_doc(name, version))
    document["spec"]["data"] = "DEEP"
    return json.dumps(document).replace('"DEEP"', '{"a":' * depth + "1" + "}" * depth)


async def test_an_object_nested_thousands_of_levels_deep_is_refused_in_its_status_and_the_operator_stays_up(  # noqa: E501
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator()
    # Python's JSON decoder gives up at about 1,000 levels with the default recursion
    # limit; the API server stores this one.
    deep = deeply_nested_doc("deep", f"deep@1.0.0-{namespace}", 5_000)
    cluster.kubectl("create", "-n", namespace, "-f", "-", stdin=deep)

    refused = reconciled(cluster, namespace, "deep")
    ready = condition(refused, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "InvalidSnapshot"
    assert "nests more than 64 levels deep (at spec.data.a.a.a" in ready["message"]
    assert condition(refused, "Stored")["status"] == "False"
    assert any(e["reason"] == "InvalidSnapshot" for e in warnings_for(cluster, namespace, "deep"))

    # Still alive, and still reconciling everything else, after a restart too.
    assert operator.proc.running
    cluster.apply(namespace, snapshot_doc("fine", f"fine@1.0.0-{namespace}"))
    assert condition(reconciled(cluster, namespace, "fine"), "Ready")["status"] == "True"
    operator.stop()
    again = start_operator(name="again")
    cluster.apply(namespace, snapshot_doc("after", f"after@1.0.0-{namespace}"))
    assert condition(reconciled(cluster, namespace, "after"), "Ready")["status"] == "True"
    assert again.proc.running
    assert "RecursionError" not in again.log()
    assert not await fetch(
        cluster, "SELECT 1 FROM pkg_snapshots WHERE version = $1", f"deep@1.0.0-{namespace}"
    )
    cluster.kubectl("delete", "psnap", "deep", "-n", namespace, "--timeout=60s")


async def test_a_version_reused_with_other_content_is_refused_once_with_a_reason_and_an_event(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator()
    version = f"reused@1.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("first", version))
    assert condition(reconciled(cluster, namespace, "first"), "Ready")["status"] == "True"

    cluster.apply(namespace, snapshot_doc("second", version, expect="something_else"))
    second = reconciled(cluster, namespace, "second", kind="Stored")
    stored = condition(second, "Stored")
    assert stored["status"] == "False"
    assert stored["reason"] == "VersionConflict"
    assert f"version {version!r} is already stored" in stored["message"]
    assert "give the changed snapshot a new version" in stored["message"]
    assert condition(second, "Ready")["reason"] == "VersionConflict"
    wait_for(
        lambda: any(
            e["reason"] == "VersionConflict" for e in warnings_for(cluster, namespace, "second")
        ),
        what="a VersionConflict event",
    )
    # Final: kopf keeps a progress record (with its retries) only for a handler it retries.
    annotations = json.loads(
        cluster.kubectl(
            "get", "psnap", "second", "-n", namespace, "-o", "jsonpath={.metadata.annotations}"
        )
    )
    assert [key for key in annotations if key.startswith("kopf.pkg.seedcore.io/snapshot")] == []
    assert "ConflictError" not in operator.log()
    rows = await fetch(
        cluster, "SELECT resource_name FROM pkg_snapshots WHERE version = $1", version
    )
    assert [r["resource_name"] for r in rows] == ["first"]


async def test_a_version_with_the_same_content_belongs_to_its_first_resource(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    other = f"{namespace}-other"
    cluster.kubectl("create", "namespace", other)
    version = f"owned@1.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("owner", version))
    assert condition(reconciled(cluster, namespace, "owner"), "Ready")["status"] == "True"

    cluster.apply(other, snapshot_doc("copy", version))
    copy = reconciled(cluster, other, "copy", kind="Stored")
    stored = condition(copy, "Stored")
    assert (stored["status"], stored["reason"]) == ("False", "VersionInUse")
    assert f"already belongs to PolicySnapshot {namespace}/owner" in stored["message"]
    assert condition(copy, "Ready")["status"] == "False"
    assert "snapshotId" not in copy["status"]

    rows = await fetch(
        cluster,
        "SELECT resource_namespace, resource_name, archived_at FROM pkg_snapshots "
        "WHERE version = $1",
        version,
    )
    assert [(r["resource_namespace"], r["resource_name"]) for r in rows] == [(namespace, "owner")]

    cluster.kubectl("delete", "psnap", "copy", "-n", other, "--timeout=60s")
    rows = await fetch(
        cluster, "SELECT resource_name, archived_at FROM pkg_snapshots WHERE version = $1", version
    )
    assert [(r["resource_name"], r["archived_at"]) for r in rows] == [("owner", None)]
    owner = with_status(cluster, namespace, "owner")
    assert condition(owner, "Ready")["status"] == "True"

    # Once the owner is gone (its row archived), the version may be applied again.
    cluster.kubectl("delete", "psnap", "owner", "-n", namespace, "--timeout=60s")
    cluster.apply(other, snapshot_doc("copy", version))
    assert condition(reconciled(cluster, other, "copy"), "Ready")["status"] == "True"
    rows = await fetch(
        cluster, "SELECT resource_name, archived_at FROM pkg_snapshots WHERE version = $1", version
    )
    assert [(r["resource_name"], r["archived_at"]) for r in rows] == [("copy", None)]


async def test_a_version_whose_owner_vanished_without_its_finalizer_is_taken_over(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator()
    version = f"orphan@1.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("gone", version))
    assert condition(reconciled(cluster, namespace, "gone"), "Ready")["status"] == "True"
    operator.kill()  # nobody archives the row: the finalizer is stripped by hand
    cluster.kubectl(
        "patch", "psnap", "gone", "-n", namespace, "--type=merge",
        "-p", '{"metadata":{"finalizers":null}}',
    )  # fmt: skip
    cluster.kubectl("delete", "psnap", "gone", "-n", namespace, "--timeout=30s")
    start_operator(name="again")
    cluster.apply(namespace, snapshot_doc("heir", version))
    assert condition(reconciled(cluster, namespace, "heir"), "Ready")["status"] == "True"
    rows = await fetch(
        cluster, "SELECT resource_name FROM pkg_snapshots WHERE version = $1", version
    )
    assert [r["resource_name"] for r in rows] == ["heir"]


@pytest.mark.parametrize("version", ["wh@banana", "wh@1.2", "wh@01.2.3", "wh@1.2.3-"])
def test_a_version_that_is_not_name_at_semver_is_refused_by_the_api_server(
    cluster: Cluster, namespace: str, version: str
) -> None:
    result = cluster.kubectl_result(
        "apply", "-n", namespace, "-f", "-", stdin=snapshot_doc("bad", version)
    )
    assert result.returncode != 0
    assert "spec.version" in result.stderr
    assert "should match" in result.stderr
    assert "bad" not in cluster.kubectl("get", "psnap", "-n", namespace, "-o", "name")


async def test_a_deletion_held_for_a_live_deployment_says_so(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator()
    version = f"held@1.0.0-{namespace}"
    cluster.apply(namespace, snapshot_doc("held", version, env="staging"))
    obj = reconciled(cluster, namespace, "held")
    snapshot_id = obj["status"]["snapshotId"]
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            "INSERT INTO pkg_deployments (snapshot_id, target, region, percent) "
            "VALUES ($1, $2, 'eu', 10)",
            snapshot_id,
            f"router-{namespace}",
        )
        cluster.kubectl("delete", "psnap", "held", "-n", namespace, "--wait=false")
        held = wait_for(
            lambda: (
                (o := with_status(cluster, namespace, "held"))
                and condition(o, "DeletionHeld").get("status") == "True"
                and o
            ),
            what="the finalizer to hold the deployed snapshot",
        )
        message = condition(held, "DeletionHeld")
        assert message["reason"] == "StillDeployed"
        assert f"is still deployed to router-{namespace}/eu" in message["message"]
        assert "active snapshot" not in message["message"]
        await conn.execute(
            "UPDATE pkg_deployments SET is_active = false WHERE snapshot_id = $1", snapshot_id
        )
    finally:
        await conn.close()
    wait_for(
        lambda: "held" not in cluster.kubectl("get", "psnap", "-n", namespace, "-o", "name"),
        timeout=90,
        what="the deletion to go through once the deployment ended",
    )


def test_a_replica_killed_without_a_clean_exit_is_replaced_within_the_peering_lifetime(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    lifetime = "15"
    first = start_operator(
        name="first", PKG_PEERING_PRIORITY="2000", PKG_PEERING_LIFETIME_SECONDS=lifetime
    )
    cluster.apply(namespace, snapshot_doc("before", f"peer@1.0.0-{namespace}"))
    reconciled(cluster, namespace, "before")
    first.kill()
    # A lower priority: it must wait for the dead replica's record to expire.
    start_operator(
        name="second", PKG_PEERING_PRIORITY="1000", PKG_PEERING_LIFETIME_SECONDS=lifetime
    )
    started = time.monotonic()
    cluster.apply(namespace, snapshot_doc("after", f"peer@1.1.0-{namespace}"))
    reconciled(cluster, namespace, "after")
    waited = time.monotonic() - started
    print(f"\nresumed {waited:.1f}s after a kill -9 (peering lifetime {lifetime}s)")
    assert waited < int(lifetime) + 5


def test_a_replica_restarted_under_its_own_identity_resumes_at_once(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # POD_ID is the pod's name in the chart: a container restarted in its pod keeps it.
    first = start_operator(name="first", PKG_PEERING_PRIORITY="2000", POD_ID=f"pod-{namespace}")
    cluster.apply(namespace, snapshot_doc("before", f"self@1.0.0-{namespace}"))
    reconciled(cluster, namespace, "before")
    first.kill()
    start_operator(name="second", PKG_PEERING_PRIORITY="1000", POD_ID=f"pod-{namespace}")
    started = time.monotonic()
    cluster.apply(namespace, snapshot_doc("after", f"self@1.1.0-{namespace}"))
    reconciled(cluster, namespace, "after")
    waited = time.monotonic() - started
    print(f"\nresumed {waited:.1f}s after a kill -9 under the same POD_ID")
    assert waited < 8
