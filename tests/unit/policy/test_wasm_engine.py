"""OpaWasm: loading (checksum first), evaluation, result shapes, failures that leave it usable."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from wasm_modules import opa_like_wasm

from evaluator_sidecar.policy.engines.base import ENGINE_REGISTRY
from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.wasm import DEFAULT_ENTRYPOINT, OpaWasm
from evaluator_sidecar.policy.engines.wasm.instance import OpaInstance
from evaluator_sidecar.policy.errors import EvaluationError, SnapshotLoadError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData, sha256_hex
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)

POLICIES = Path(__file__).resolve().parents[3] / "policies"
SLA = POLICIES / "sla" / "policy.wasm"
RESULT = {
    "subtasks": [
        {"name": "a", "type": "t", "params": {"k": 1}, "rule_id": "r1", "rule_name": "one"}
    ],
    "dag": [{"from": "a", "to": "b", "type": "sequential", "rule": "r1"}],
    "rules": [
        {
            "rule_id": "r1",
            "rule_name": "one",
            "rule_priority": 1,
            "matched_conditions": 0,
            "emissions_count": 1,
        }
    ],
}


def load(wasm: bytes, **kwargs: object) -> OpaWasm:
    return OpaWasm.load_from_bytes(wasm, cache_dir=None, **kwargs)  # type: ignore[arg-type]


def snapshot(wasm: bytes, **changes: object) -> PKGSnapshotData:
    base = PKGSnapshotData(
        id=1,
        version="sla@1.0.0",
        engine="wasm",
        wasm_artifact=wasm,
        checksum=f"sha256-{sha256_hex(wasm)}",
        rules=[],
        entrypoint="pkg/sla/result",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


SLA_FACTS = {
    "tags": ["vip"],
    "context": {"ticket_opened": "2026-01-03T08:00:00Z", "guest": "Ben", "room": 512},
    "now": "2026-01-03T11:30:00Z",
}


class TestRegistration:
    def test_importing_the_package_registers_engine_wasm(self) -> None:
        assert ENGINE_REGISTRY["wasm"] is OpaWasm

    def test_the_default_entrypoint_is_documented(self) -> None:
        assert DEFAULT_ENTRYPOINT == "pkg/result"
        assert OpaWasm.DEFAULT_ENTRYPOINT == DEFAULT_ENTRYPOINT


class TestChecksum:
    @pytest.mark.parametrize("form", ["sha256-{}", "sha256:{}", "{}", "SHA256-{}"])
    def test_every_documented_form_is_accepted(self, form: str) -> None:
        wasm = opa_like_wasm(result=RESULT)
        engine = load(wasm, checksum=form.format(sha256_hex(wasm)))
        assert engine.sha256 == sha256_hex(wasm)

    def test_a_mismatch_names_both_values(self) -> None:
        wasm = opa_like_wasm(result=RESULT)
        wrong = "0" * 64
        with pytest.raises(SnapshotLoadError) as caught:
            load(wasm, checksum=f"sha256-{wrong}", version="v9")
        (problem,) = caught.value.problems
        assert problem.where == "checksum"
        assert sha256_hex(wasm) in problem.message
        assert wrong in problem.message
        assert caught.value.version == "v9"

    def test_the_checksum_is_verified_before_the_bytes_are_looked_at(self) -> None:
        with pytest.raises(SnapshotLoadError) as caught:
            load(b"not webassembly at all", checksum="sha256-" + "1" * 64)
        assert [p.where for p in caught.value.problems] == ["checksum"]

    def test_a_malformed_checksum_says_which_forms_are_accepted(self) -> None:
        with pytest.raises(SnapshotLoadError) as caught:
            load(opa_like_wasm(), checksum="md5-abc")
        assert "sha256-" in caught.value.problems[0].message

    def test_no_checksum_means_nothing_to_verify(self) -> None:
        assert load(opa_like_wasm(result=RESULT)).evaluate({}) == RESULT


class TestResults:
    def test_the_entrypoint_s_object_is_the_result(self) -> None:
        assert load(opa_like_wasm(result=RESULT)).evaluate({"tags": ["x"]}) == RESULT

    def test_an_undefined_decision_is_the_empty_result(self) -> None:
        empty: dict[str, list[object]] = {"subtasks": [], "dag": [], "rules": []}
        assert load(opa_like_wasm(result=None)).evaluate({}) == empty

    def test_missing_keys_are_empty_lists(self) -> None:
        result = load(opa_like_wasm(result={"subtasks": [{"name": "x"}]})).evaluate({})
        assert result == {"subtasks": [{"name": "x"}], "dag": [], "rules": []}

    def test_results_are_independent_objects(self) -> None:
        engine = load(opa_like_wasm(result={}))
        first = engine.evaluate({})
        first["dag"].append({"from": "x"})
        assert engine.evaluate({}) == {"subtasks": [], "dag": [], "rules": []}

    @pytest.mark.parametrize(
        ("result", "says"),
        [(5, "not an object"), ({"subtasks": {}}, "not a list"), ({"rules": [1]}, "not an object")],
    )
    def test_a_result_of_the_wrong_shape_is_an_evaluation_error(
        self, result: object, says: str
    ) -> None:
        with pytest.raises(EvaluationError, match=says):
            load(opa_like_wasm(result=result)).evaluate({})

    def test_task_facts_that_are_not_json_are_an_evaluation_error(self) -> None:
        with pytest.raises(EvaluationError, match="JSON"):
            load(opa_like_wasm(result=RESULT)).evaluate({"context": {"when": object()}})


class TestRealPolicy:
    def test_a_policy_built_by_opa_evaluates_with_host_builtins(self) -> None:
        engine = OpaWasm.from_snapshot(snapshot(SLA.read_bytes()))
        assert "time.parse_rfc3339_ns" in engine.required_builtins
        result = engine.evaluate(SLA_FACTS)
        escalate = result["subtasks"][0]
        assert escalate["name"] == "escalate_overdue"
        assert escalate["params"]["message"] == "ticket for room 512 open 210 min (SLA 2h)"
        assert escalate["params"]["level"] == "high"

    def test_pkg_evaluator_runs_a_wasm_snapshot_and_adds_the_version(self) -> None:
        result = PKGEvaluator(snapshot(SLA.read_bytes())).evaluate(SLA_FACTS)
        assert result["snapshot"] == "sla@1.0.0"
        assert [s["name"] for s in result["subtasks"]] == ["escalate_overdue", "weekend_staffing"]

    def test_a_snapshot_without_an_artifact_is_a_load_error(self) -> None:
        with pytest.raises(SnapshotLoadError) as caught:
            OpaWasm.from_snapshot(snapshot(b"", wasm_artifact=None))
        assert caught.value.problems[0].where == "spec.wasm"

    def test_static_data_is_loaded_once_per_instance(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loads: list[int] = []
        original = OpaInstance._load_data

        def counting(self: OpaInstance, data_json: bytes) -> int:
            loads.append(len(data_json))
            return original(self, data_json)

        monkeypatch.setattr(OpaInstance, "_load_data", counting)
        engine = OpaWasm.from_snapshot(snapshot(SLA.read_bytes(), data={"big": list(range(1000))}))
        for _ in range(5):
            engine.evaluate(SLA_FACTS)
        assert len(loads) == 1

    def test_concurrent_callers_each_get_their_own_answer(self) -> None:
        engine = OpaWasm.from_snapshot(snapshot(SLA.read_bytes()))
        rooms = list(range(100, 140))
        answers: dict[int, str] = {}

        def ask(room: int) -> None:
            facts = {**SLA_FACTS, "context": {**SLA_FACTS["context"], "room": room}}  # type: ignore[dict-item]
            answers[room] = engine.evaluate(facts)["subtasks"][0]["params"]["message"]

        threads = [threading.Thread(target=ask, args=(room,)) for room in rooms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(f"room {room} " in answers[room] for room in rooms)

    def test_closing_releases_the_instance_and_the_next_call_rebuilds_it(self) -> None:
        engine = OpaWasm.from_snapshot(snapshot(SLA.read_bytes()))
        before = engine.evaluate(SLA_FACTS)
        engine.close()
        assert engine.evaluate(SLA_FACTS) == before
        assert engine.rebuilds == 1


class TestFailuresLeaveTheEngineUsable:
    def test_an_abort_is_an_evaluation_error_with_opa_s_message(self) -> None:
        engine = load(opa_like_wasm(eval_body="abort"))
        with pytest.raises(EvaluationError, match="aborted: var assignment conflict"):
            engine.evaluate({})
        assert engine.failures == 1
        assert engine.rebuilds == 1

    def test_a_trap_is_an_evaluation_error_saying_so(self) -> None:
        with pytest.raises(EvaluationError, match=r"trapped: .*unreachable"):
            load(opa_like_wasm(eval_body="trap")).evaluate({})

    def test_a_result_address_outside_memory_is_caught_not_read(self) -> None:
        with pytest.raises(EvaluationError, match="outside its memory"):
            load(opa_like_wasm(eval_body="wild")).evaluate({})

    def test_an_undefined_decision_is_no_failure(self) -> None:
        engine = OpaWasm.from_snapshot(snapshot(SLA.read_bytes()))
        # Undefined builtin calls (a bad duration, a number for a time) make the rules undefined.
        facts = {**SLA_FACTS, "context": {"sla": "forever", "ticket_opened": 5}}
        assert engine.evaluate(facts) == {"subtasks": [], "dag": [], "rules": []}
        assert engine.failures == 0

    def test_a_host_builtin_runs_inside_an_evaluation(self) -> None:
        engine = load(
            opa_like_wasm(eval_body="builtin0", builtins={"time.now_ns": 0}, result=RESULT)
        )
        assert engine.evaluate({}) == RESULT
        assert engine.required_builtins == ["time.now_ns"]

    def test_the_engine_is_not_degraded(self) -> None:
        assert load(opa_like_wasm(result=RESULT)).degraded is False


class TestHandWrittenRego:
    """policies/seed states two reference rules by hand; it must agree with the native engine."""

    @pytest.mark.parametrize(
        "facts",
        [
            {"tags": ["vip", "allergen"], "context": {"domain": "hotel_ops"}},
            {"tags": ["allergen"], "context": {"domain": "resort_ops"}},
            {"tags": ["vip"]},
            {"tags": ["allergen"], "context": {"domain": "hotel_ops"}},
            {},
        ],
    )
    def test_the_seed_rules_match_the_native_engine(self, facts: dict[str, object]) -> None:
        text = (POLICIES.parent / "tests" / "data" / "reference-snapshot.yaml").read_text()
        reference = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
        native = NativeRuleEngine.from_snapshot(reference).evaluate(
            {**facts, "now": "2025-01-01T00:00:00Z"}
        )
        seed_rules = {"rule-001", "rule-002"}
        expected = {
            "subtasks": [s for s in native["subtasks"] if s["rule_id"] in seed_rules],
            "dag": [e for e in native["dag"] if e["rule"] in seed_rules],
            "rules": [r for r in native["rules"] if r["rule_id"] in seed_rules],
        }
        engine = load((POLICIES / "seed" / "policy.wasm").read_bytes())
        assert engine.evaluate(facts) == expected
