"""The reference policy means the same to OPA's own evaluator, the WASM engine and the native one.

50 of the differential test's seeded fact sets go through ``opa eval`` (OPA's
Go evaluator) on policies/reference/reference.rego with the reference rules as
``data``, in one batch; the WASM engine (on the committed .wasm) and the
native engine must give the same ``subtasks``, ``dag`` and ``rules`` for each.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.wasm import OpaWasm
from evaluator_sidecar.policy.engines.wasm.interpreter import (
    REFERENCE_POLICY,
    rules_as_data,
    wasm_twin,
)
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)


def _load_factgen() -> ModuleType:
    """The unit tests' seeded generator (tests/unit/policy/wasm_factgen.py), shared, not copied."""
    path = Path(__file__).resolve().parents[1] / "unit" / "policy" / "wasm_factgen.py"
    spec = importlib.util.spec_from_file_location("wasm_factgen", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fact_sets = _load_factgen().fact_sets

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
REGO = ROOT / "policies" / "reference" / "reference.rego"
SAMPLE = 50


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    # Every facts set pins `now`: OPA's evaluator and the engines must not read different clocks.
    pinned = (f for f in fact_sets(99, 200) if f.get("now") is not None)
    return [next(pinned) for _ in range(SAMPLE)]


@pytest.fixture(scope="module")
def opa_results(
    opa_bin: Path, cases: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> list[Any]:
    text = (ROOT / "tests" / "data" / "reference-snapshot.yaml").read_text()
    snapshot = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
    work = tmp_path_factory.mktemp("opa-reference")
    (work / "data.json").write_text(json.dumps(rules_as_data(snapshot)))
    (work / "input.json").write_text(json.dumps({"cases": cases}))
    done = subprocess.run(
        [
            str(opa_bin), "eval", "--format", "json",
            "--data", str(REGO), "--data", str(work / "data.json"),
            "--input", str(work / "input.json"),
            "[r | some c in input.cases; r := data.pkg.result with input as c]",
        ],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    results: list[Any] = json.loads(done.stdout)["result"][0]["expressions"][0]["value"]
    return results


def test_opa_s_evaluator_and_the_wasm_engine_agree(
    cases: list[dict[str, Any]], opa_results: list[Any]
) -> None:
    text = (ROOT / "tests" / "data" / "reference-snapshot.yaml").read_text()
    snapshot = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
    wasm = OpaWasm.from_snapshot(wasm_twin(snapshot, REFERENCE_POLICY.read_bytes()))
    native = NativeRuleEngine.from_snapshot(snapshot)
    assert len(opa_results) == len(cases) == SAMPLE
    for facts, by_opa in zip(cases, opa_results, strict=True):
        assert wasm.evaluate(facts) == by_opa, facts
        assert native.evaluate(facts) == by_opa, facts
    assert any(r["rules"][:-1] for r in opa_results)  # not only the always-matching rule
