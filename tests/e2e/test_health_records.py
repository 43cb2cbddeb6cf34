"""What Argo CD and Flux read as the health of real PolicySnapshots and PolicyDeployments.

The operator drives real objects through their states (new, ready and active,
fixtures failed; rolling out, paused at a gate, succeeded, rolled back). At each, the
live object goes through the repository's Argo CD Lua (real Lua 5.1) and through
cli-utils' kstatus (Flux's reader). With ``PKG_RECORD_HEALTH=1`` the objects are
written to tests/data/health/, where tests/integration/test_gitops_health.py reads
them without a cluster.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.gitops import argo_health, kstatus, recordable
from pkg_testbed.product import ROOT, OperatorProcess

pytestmark = pytest.mark.e2e

ARGO = ROOT / "deploy" / "gitops" / "argocd"
RECORDS = ROOT / "tests" / "data" / "health"
RUN = uuid.uuid4().hex[:6]


def check(obj: dict[str, Any], record: str, argo: str, flux: str) -> None:
    kind = obj["kind"].lower()
    script = ARGO / f"{kind}-health.lua"
    data = recordable(obj)
    if os.environ.get("PKG_RECORD_HEALTH") == "1":
        RECORDS.mkdir(parents=True, exist_ok=True)
        (RECORDS / f"{record}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    got_argo = argo_health(script, data)
    ((got_flux, flux_message),) = kstatus([data])
    assert (got_argo[0], got_flux) == (argo, flux), (record, got_argo, flux_message)


def deployment(name: str, snapshot: str, target: str, steps: list[Any], **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": snapshot},
                "env": "staging",
                "target": target,
                "region": "eu-west",
                "strategy": {"canary": {"steps": steps}},
                **spec,
            },
        }
    )


def test_health_as_argo_cd_and_flux_read_it(
    cluster: Cluster, namespace: str, start_operator: Callable[..., OperatorProcess]
) -> None:
    v1, v2 = f"rules@1.0.0-health-{RUN}", f"rules@2.0.0-health-{RUN}"
    # Created before any operator runs: an object nobody has observed yet.
    cluster.apply(namespace, snapshot_doc("v1", v1, env="staging", auto=True))
    check(cluster.get("psnap", "v1", namespace), "policysnapshot-new", "Progressing", "Current")
    start_operator()

    def psnap_when(name: str, kind: str, status: str) -> dict[str, Any]:
        def ready() -> Any:
            obj = cluster.get("psnap", name, namespace)
            return obj if condition(obj, kind).get("status") == status else None

        result: dict[str, Any] = wait_for(ready, what=f"psnap/{name} {kind}={status}")
        return result

    check(psnap_when("v1", "Active", "True"), "policysnapshot-active", "Healthy", "Current")
    cluster.apply(namespace, snapshot_doc("bad", f"rules@9.9.9-{RUN}", env="staging", expect="x"))
    check(
        psnap_when("bad", "Validated", "False"),
        "policysnapshot-fixtures-failed",
        "Degraded",
        "Failed",
    )
    cluster.apply(namespace, snapshot_doc("v2", v2, env="staging"))
    psnap_when("v2", "Ready", "True")

    def pdep_when(name: str, summary: str) -> dict[str, Any]:
        def reached() -> Any:
            obj = cluster.get("pdep", name, namespace)
            return obj if (obj.get("status") or {}).get("summary") == summary else None

        result: dict[str, Any] = wait_for(reached, timeout=90, what=f"pdep/{name} {summary}")
        return result

    # No device of this target exists: the first step waits for coverage.
    cluster.apply(
        namespace,
        deployment(
            "waiting", "v2", f"nobody-{RUN}", [{"setWeight": 10}], coverage={"minDevices": 1}
        ),
    )
    check(
        pdep_when("waiting", "Progressing"),
        "policydeployment-progressing",
        "Progressing",
        "InProgress",
    )
    # With no devices required, it reaches the manual gate, then succeeds when promoted.
    cluster.apply(
        namespace,
        deployment(
            "gated",
            "v2",
            f"gated-{RUN}",
            [{"setWeight": 50}, {"pause": {}}],
            coverage={"minDevices": 0},
        ),
    )
    check(pdep_when("gated", "Paused"), "policydeployment-paused", "Suspended", "InProgress")
    action = {"action": "promote", "token": uuid.uuid4().hex[:12], "actor": "e2e-health"}
    cluster.kubectl(
        "annotate",
        "pdep",
        "gated",
        "-n",
        namespace,
        "--overwrite",
        f"pkg.seedcore.io/action={json.dumps(action)}",
    )
    check(pdep_when("gated", "Succeeded"), "policydeployment-succeeded", "Healthy", "Current")
    # The deadline passes with no device covered: rolled back.
    cluster.apply(
        namespace,
        deployment(
            "late",
            "v2",
            f"late-{RUN}",
            [{"setWeight": 10}],
            coverage={"minDevices": 1},
            progressDeadlineSeconds=2,
        ),
    )
    late = wait_for(
        lambda: (
            ((obj := cluster.get("pdep", "late", namespace)).get("status") or {}).get("summary")
            in ("RolledBack", "Failed")
            and obj
        ),
        timeout=90,
        what="pdep/late rolled back",
    )
    check(late, "policydeployment-rolled-back", "Degraded", "Failed")
