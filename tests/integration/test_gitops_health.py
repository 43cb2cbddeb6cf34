"""Argo CD's and Flux's reading of the recorded PolicySnapshots and PolicyDeployments.

The objects in tests/data/health/ were recorded from the operator in
tests/e2e/test_health_records.py (``PKG_RECORD_HEALTH=1``). Each goes through the
repository's Argo CD health Lua under a real Lua 5.1 interpreter and through cli-utils'
kstatus built from its Go module; the argocd-cm snippet must carry the same Lua.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pkg_testbed.gitops import argo_health, kstatus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARGO = ROOT / "deploy" / "gitops" / "argocd"
RECORDS = ROOT / "tests" / "data" / "health"

#: recorded object -> (Argo CD health, kstatus status)
EXPECTED = {
    "policysnapshot-new": ("Progressing", "Current"),
    "policysnapshot-active": ("Healthy", "Current"),
    "policysnapshot-fixtures-failed": ("Degraded", "Failed"),
    "policydeployment-progressing": ("Progressing", "InProgress"),
    "policydeployment-paused": ("Suspended", "InProgress"),
    "policydeployment-succeeded": ("Healthy", "Current"),
    "policydeployment-rolled-back": ("Degraded", "Failed"),
}


def test_every_recorded_object_has_an_expectation() -> None:
    assert sorted(p.stem for p in RECORDS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_argo_cd_health(name: str) -> None:
    obj = json.loads((RECORDS / f"{name}.json").read_text())
    status, message = argo_health(ARGO / f"{obj['kind'].lower()}-health.lua", obj)
    assert status == EXPECTED[name][0], message
    assert message


def test_flux_kstatus() -> None:
    names = sorted(EXPECTED)
    objs = [json.loads((RECORDS / f"{name}.json").read_text()) for name in names]
    got = {name: result[0] for name, result in zip(names, kstatus(objs), strict=True)}
    assert got == {name: EXPECTED[name][1] for name in names}


def test_an_outdated_generation_reads_as_in_progress_for_both() -> None:
    obj = json.loads((RECORDS / "policydeployment-succeeded.json").read_text())
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert argo_health(ARGO / "policydeployment-health.lua", obj)[0] == "Progressing"
    assert kstatus([obj])[0][0] == "InProgress"


def test_the_argocd_cm_snippet_carries_the_lua_files() -> None:
    config = yaml.safe_load((ARGO / "argocd-cm.yaml").read_text())
    for kind in ("PolicySnapshot", "PolicyDeployment"):
        key = f"resource.customizations.health.pkg.seedcore.io_{kind}"
        assert config["data"][key] == (ARGO / f"{kind.lower()}-health.lua").read_text()
