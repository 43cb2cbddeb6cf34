"""The native engine and the WASM engine agree exactly on the reference rule set.

The WASM engine runs policies/reference/policy.wasm (the rule language in
Rego) with the reference snapshot's rules as ``data``; the native engine runs
the same snapshot. 10,000 seeded task-fact sets (tests/unit/policy/wasm_factgen.py)
go through both; ``subtasks``, ``dag`` and ``rules`` must be equal, in order,
for every one. The snapshot's own fixtures must pass on the WASM engine too.
(tests/integration/test_opa_reference.py checks a sample against OPA's own
evaluator as well.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wasm_factgen import fact_sets

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits
from evaluator_sidecar.policy.engines.wasm.interpreter import (
    REFERENCE_POLICY,
    rules_as_data,
    wasm_twin,
)
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.facts import validate_task_facts
from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)

REFERENCE = Path(__file__).resolve().parents[3] / "tests" / "data" / "reference-snapshot.yaml"
SEED = 20260101
COUNT = 10_000


@pytest.fixture(scope="module")
def reference() -> PKGSnapshotData:
    return snapshot_from_resource(select_policy_snapshot(load_documents(REFERENCE.read_text())))


@pytest.fixture(scope="module")
def native(reference: PKGSnapshotData) -> NativeRuleEngine:
    return NativeRuleEngine.from_snapshot(reference)


@pytest.fixture(scope="module")
def wasm(reference: PKGSnapshotData) -> OpaWasm:
    # This test is about equal answers, not speed: on a loaded CI machine one of 10,000 calls
    # can be descheduled past the production 50 ms deadline, which would fail it for nothing.
    # The deadline itself is tested in test_wasm_limits.
    twin = wasm_twin(reference, REFERENCE_POLICY.read_bytes())
    return OpaWasm.from_snapshot(twin, limits=WasmLimits(deadline_ms=5_000))


def describe(facts: dict[str, Any], native: Any, wasm: Any) -> str:
    return (
        f"task facts: {json.dumps(facts, default=str)}\n"
        f"native: {json.dumps(native, sort_keys=True)}\n"
        f"wasm:   {json.dumps(wasm, sort_keys=True)}"
    )


@pytest.mark.timeout(300)
def test_ten_thousand_fact_sets_give_identical_results(
    native: NativeRuleEngine, wasm: OpaWasm
) -> None:
    mismatches: list[str] = []
    matched_rules: set[str] = set()
    for facts in fact_sets(SEED, COUNT):
        validate_task_facts(facts)
        expected = native.evaluate(facts)
        got = wasm.evaluate(facts)
        matched_rules.update(r["rule_id"] for r in expected["rules"])
        if got != expected:
            mismatches.append(describe(facts, expected, got))
    assert not mismatches, f"{len(mismatches)} of {COUNT} differ; first:\n{mismatches[0]}"
    # The generator reaches every enabled rule, so the agreement covers all of them.
    assert matched_rules == {f"rule-{n:03d}" for n in range(1, 14)} - {"rule-011"}


def test_the_generator_is_deterministic() -> None:
    assert list(fact_sets(SEED, 50)) == list(fact_sets(SEED, 50))


def test_the_snapshot_s_fixtures_pass_on_the_wasm_engine(reference: PKGSnapshotData) -> None:
    twin = wasm_twin(reference, REFERENCE_POLICY.read_bytes())
    evaluator = PKGEvaluator(twin)
    report = run_fixtures(evaluator.evaluate, reference.fixtures)
    assert report.success, report.format()
    assert report.passed == len(reference.fixtures) > 0


def test_the_policy_reads_the_rules_from_data_unchanged(reference: PKGSnapshotData) -> None:
    data = rules_as_data(reference)
    assert data["rules"] == reference.rules
    assert data["subtask_types"] == reference.subtask_types
    assert data["facts"] == reference.facts
