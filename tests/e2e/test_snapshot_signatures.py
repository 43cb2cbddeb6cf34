"""Signed snapshots with the operator as a real process: required, verified, refused, rotated.

The operator runs with ``PKG_REQUIRE_SIGNATURES=staging`` and ``PKG_TRUSTED_KEYS``
naming a ConfigMap of public keys in the test's namespace. Each scenario is what a
user does with ``kubectl``: apply an unsigned, a signed, a tampered snapshot, and add
a second key to the ConfigMap while the operator runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import yaml

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.resource import content_checksum
from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess

pytestmark = pytest.mark.e2e

KEYS = "pkg-trusted-keys"


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def signed_doc(
    name: str, version: str, key: signing.Ed25519PrivateKey | None, *, env: str = "staging"
) -> str:
    document = yaml.safe_load(snapshot_doc(name, version, env=env))
    spec = document["spec"]
    if key is not None:
        spec["signature"] = signing.sign(
            key, version=version, env=env, checksum=content_checksum(spec)
        )
    return yaml.safe_dump(document)


def put_keys(cluster: Cluster, namespace: str, *keys: signing.Ed25519PrivateKey) -> None:
    """Create or replace the trusted-keys ConfigMap: key id -> PEM public key."""
    data = {
        signing.key_id_of(k.public_key()): signing.public_key_pem(k.public_key()).decode()
        for k in keys
    }
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": KEYS, "namespace": namespace},
        "data": data,
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))


def settled(cluster: Cluster, namespace: str, name: str, kind: str = "Ready") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get("psnap", name, namespace)
        return obj if condition(obj, kind).get("status") in ("True", "False") else None

    result: dict[str, Any] = wait_for(check, what=f"psnap/{name} to be reconciled")
    return result


def warning_reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    selector = f"involvedObject.name={name},type=Warning"
    events = json.loads(
        cluster.kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-ojson")
    )
    return {item["reason"] for item in events["items"]}


def refused_with(cluster: Cluster, namespace: str, name: str, reason: str) -> str:
    obj = settled(cluster, namespace, name, kind="Stored")
    for kind in ("Stored", "Ready"):
        cond = condition(obj, kind)
        assert (cond["status"], cond["reason"]) == ("False", reason), (kind, cond)
    wait_for(
        lambda: reason in warning_reasons(cluster, namespace, name),
        what=f"a Warning event {reason} on psnap/{name}",
    )
    message: str = condition(obj, "Ready")["message"]
    return message


@pytest.fixture
def operator_with_keys(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> Callable[..., OperatorProcess]:
    def start(*keys: signing.Ed25519PrivateKey) -> OperatorProcess:
        put_keys(cluster, namespace, *keys)
        return start_operator(
            PKG_REQUIRE_SIGNATURES="staging", PKG_TRUSTED_KEYS=f"{namespace}/{KEYS}"
        )

    return start


async def test_where_signatures_are_required_an_unsigned_snapshot_is_refused_and_a_signed_one_is_ready(  # noqa: E501
    cluster: Cluster, namespace: str, operator_with_keys: Callable[..., OperatorProcess]
) -> None:
    key = signing.generate_private_key()
    key_id = signing.key_id_of(key.public_key())
    operator_with_keys(key)

    unsigned = f"unsigned@1.0.0-{namespace}"
    cluster.apply(namespace, signed_doc("unsigned", unsigned, None))
    message = refused_with(cluster, namespace, "unsigned", "SignatureRequired")
    assert "pkg sign" in message
    assert not await fetch(cluster, "SELECT 1 FROM pkg_snapshots WHERE version = $1", unsigned)

    # prod is not listed: an unsigned snapshot is fine there.
    cluster.apply(namespace, signed_doc("prod-unsigned", f"pu@1.0.0-{namespace}", None, env="prod"))
    assert condition(settled(cluster, namespace, "prod-unsigned"), "Ready")["status"] == "True"

    version = f"signed@1.0.0-{namespace}"
    cluster.apply(namespace, signed_doc("signed", version, key))
    assert condition(settled(cluster, namespace, "signed"), "Ready")["status"] == "True"
    rows = await fetch(
        cluster,
        "SELECT a.details, s.metadata FROM pkg_audit_log a JOIN pkg_snapshots s "
        "ON s.id = a.snapshot_id WHERE a.action = 'snapshot.stored' AND s.version = $1",
        version,
    )
    assert len(rows) == 1
    details = rows[0]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["signature"]["keyId"] == key_id
    assert details["signature"]["algorithm"] == "ed25519"
    assert details["signature_verification"]["outcome"] == "verified"
    assert details["signature_verification"]["keyId"] == key_id
    metadata = rows[0]["metadata"]
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["signature"]["keyId"] == key_id


async def test_a_tampered_signature_is_refused_in_every_environment(
    cluster: Cluster, namespace: str, operator_with_keys: Callable[..., OperatorProcess]
) -> None:
    key = signing.generate_private_key()
    operator_with_keys(key)
    for env in ("staging", "prod"):
        name = f"tampered-{env}"
        version = f"{name}@1.0.0-{namespace}"
        document = yaml.safe_load(signed_doc(name, version, key, env=env))
        raw = bytearray(base64.b64decode(document["spec"]["signature"]["value"]))
        raw[10] ^= 0x40
        document["spec"]["signature"]["value"] = base64.b64encode(bytes(raw)).decode()
        cluster.apply(namespace, yaml.safe_dump(document))
        message = refused_with(cluster, namespace, name, "SignatureInvalid")
        assert "re-sign" in message
        assert not await fetch(cluster, "SELECT 1 FROM pkg_snapshots WHERE version = $1", version)

    # A valid signature replayed onto another version does not verify either.
    version = f"replayed@2.0.0-{namespace}"
    document = yaml.safe_load(signed_doc("replayed", f"replayed@1.0.0-{namespace}", key))
    document["spec"]["version"] = version
    cluster.apply(namespace, yaml.safe_dump(document))
    refused_with(cluster, namespace, "replayed", "SignatureInvalid")


async def test_a_key_added_to_the_configmap_is_trusted_without_restarting_the_operator(
    cluster: Cluster, namespace: str, operator_with_keys: Callable[..., OperatorProcess]
) -> None:
    old, new = signing.generate_private_key(), signing.generate_private_key()
    operator = operator_with_keys(old)
    pid = operator.proc.pid

    early = f"early@1.0.0-{namespace}"
    cluster.apply(namespace, signed_doc("early", early, new))
    message = refused_with(cluster, namespace, "early", "UnknownSigningKey")
    assert signing.key_id_of(old.public_key()) in message

    put_keys(cluster, namespace, old, new)  # rotation: both trusted for a while
    cluster.apply(namespace, signed_doc("rotated", f"rotated@1.0.0-{namespace}", new))
    wait_for(
        lambda: (
            condition(cluster.get("psnap", "rotated", namespace), "Ready").get("status") == "True"
        ),
        timeout=60,
        what="the snapshot signed with the added key to be Ready",
    )
    # The one refused before is retried and stored once the key is trusted.
    wait_for(
        lambda: (
            condition(cluster.get("psnap", "early", namespace), "Ready").get("status") == "True"
        ),
        timeout=90,
        what="the snapshot refused for its unknown key to be retried and Ready",
    )
    cluster.apply(namespace, signed_doc("still-old", f"still-old@1.0.0-{namespace}", old))
    assert condition(settled(cluster, namespace, "still-old"), "Ready")["status"] == "True"
    assert operator.proc.running
    assert operator.proc.pid == pid
