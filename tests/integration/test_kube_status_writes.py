"""Status writes from outside kopf's handlers are conditional on the version they read.

A merge patch replaces ``status.conditions`` whole. The chaos suite's crash matrix found
a restarted operator's level repair reading a PolicySnapshot just before its handler
wrote Ready and Active, then writing its stale list back: the snapshot stayed without
Ready for good. A writer that passes the resourceVersion it read gets ``Conflict``
instead, against the real API server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.config import kube_config

from pkg_operator import kube as pkg_kube
from pkg_testbed.kube import KubeControlPlane
from pkg_testbed.product import ROOT, kubectl

pytestmark = pytest.mark.integration

READY = {"type": "Ready", "status": "True", "reason": "Ready", "message": "validated"}
ACTIVE_FALSE = {"type": "Active", "status": "False", "reason": "Superseded", "message": "old"}


@pytest.fixture
def snapshot(kube: KubeControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kube.kubeconfig))
    pkg_kube._api_client.cache_clear()

    def run(*args: str, stdin: str | None = None) -> None:
        kubectl(kube.kubectl_bin, kube.kubeconfig, *args, stdin=stdin)

    run("apply", "--server-side", "-f", str(ROOT / "manifests" / "crds.yaml"))
    run("wait", "--for=condition=Established", "crd/policysnapshots.pkg.seedcore.io")
    namespace = f"status-{uuid.uuid4().hex[:8]}"
    run("create", "namespace", namespace)
    document: dict[str, Any] = {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicySnapshot",
        "metadata": {"name": "snap", "namespace": namespace},
        "spec": {
            "version": f"rules@1.0.0-{namespace}",
            "env": "dev",
            "engine": "native",
            "rules": [],
        },
    }
    run("apply", "-f", "-", stdin=yaml.safe_dump(document))
    yield namespace, "snap"
    pkg_kube._api_client.cache_clear()


async def test_a_write_based_on_an_old_read_is_refused_and_the_newer_one_kept(
    snapshot: tuple[str, str],
) -> None:
    namespace, name = snapshot
    seen = await pkg_kube.get_object("policysnapshots", namespace, name)
    assert seen is not None
    stale_version = seen["metadata"]["resourceVersion"]
    # The handler writes Ready meanwhile (blindly, as kopf does).
    await pkg_kube.patch_status("policysnapshots", namespace, name, {"conditions": [READY]})

    with pytest.raises(pkg_kube.Conflict, match="changed since version"):
        await pkg_kube.patch_status(
            "policysnapshots",
            namespace,
            name,
            {"conditions": [ACTIVE_FALSE]},
            resource_version=stale_version,
        )

    now = await pkg_kube.get_object("policysnapshots", namespace, name)
    assert now is not None
    assert now["status"]["conditions"] == [READY]


async def test_a_write_based_on_the_current_read_goes_through(snapshot: tuple[str, str]) -> None:
    namespace, name = snapshot
    await pkg_kube.patch_status("policysnapshots", namespace, name, {"conditions": [READY]})
    seen = await pkg_kube.get_object("policysnapshots", namespace, name)
    assert seen is not None
    written = await pkg_kube.patch_status(
        "policysnapshots",
        namespace,
        name,
        {"conditions": [READY, ACTIVE_FALSE]},
        resource_version=seen["metadata"]["resourceVersion"],
    )
    assert written is not None
    assert written["status"]["conditions"] == [READY, ACTIVE_FALSE]
