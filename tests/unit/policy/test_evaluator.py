"""PKGEvaluator: the public contract, engine selection, and errors that never crash a caller."""

# ruff: noqa: E501 - tables of cases read best one case per line

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import REPO, cond, rule, snapshot

from evaluator_sidecar import (
    ENGINE_REGISTRY,
    EvaluationError,
    NativeRuleEngine,
    PKGEvaluator,
    PKGSnapshotData,
    register_engine,
)
from evaluator_sidecar.policy.errors import EngineUnavailableError, SnapshotLoadError
from evaluator_sidecar.policy.evaluator import resolve_engine


def _native(version: str = "rules@1.4.0") -> PKGSnapshotData:
    return snapshot([rule("rule-001", [cond("TAG", "vip", "EXISTS")])], version=version)


def test_result_has_exactly_the_four_keys_in_order() -> None:
    result = PKGEvaluator(_native()).evaluate({"tags": ["vip"]})
    assert list(result) == ["subtasks", "dag", "rules", "snapshot"]
    assert result["snapshot"] == "rules@1.4.0"
    assert [r["rule_id"] for r in result["rules"]] == ["rule-001"]
    assert list(result["subtasks"][0]) == ["name", "type", "params", "rule_id", "rule_name"]
    assert list(result["rules"][0]) == [
        "rule_id",
        "rule_name",
        "rule_priority",
        "matched_conditions",
        "emissions_count",
    ]


def test_properties_describe_the_loaded_snapshot() -> None:
    before = time.time()
    data = PKGSnapshotData(
        id=42,
        version="rules@2.0.0",
        engine="native",
        wasm_artifact=None,
        checksum="ab" * 32,
        rules=[rule("r1")],
    )
    evaluator = PKGEvaluator(data)
    assert evaluator.version == "rules@2.0.0"
    assert evaluator.engine_type == "native"
    assert before <= evaluator.loaded_at <= time.time()
    assert evaluator.degraded is False
    assert evaluator.checksum == "ab" * 32
    assert evaluator.snapshot_id == 42
    assert evaluator.snapshot is data
    assert isinstance(evaluator.engine, NativeRuleEngine)
    assert evaluator.load_seconds >= 0
    assert "rules@2.0.0" in repr(evaluator)


def test_native_engine_is_registered_by_name() -> None:
    assert resolve_engine("native") is NativeRuleEngine
    assert ENGINE_REGISTRY["native"] is NativeRuleEngine


def test_invalid_snapshot_raises_load_error() -> None:
    with pytest.raises(SnapshotLoadError, match="unknown operator"):
        PKGEvaluator(snapshot([rule("r1", [cond("TAG", "x", "LIKE", "a")])]))


def test_unknown_engine_names_the_registered_ones() -> None:
    data = PKGSnapshotData(
        id=0, version="v@1", engine="llm", wasm_artifact=None, checksum=None, rules=[]
    )
    with pytest.raises(EngineUnavailableError) as info:
        PKGEvaluator(data)
    message = str(info.value)
    assert "no policy engine 'llm' is available" in message
    assert "evaluator_sidecar.policy.engines.llm" in message
    assert "registered engines:" in message
    assert "native" in message


def test_engine_names_that_are_not_identifiers_are_never_imported() -> None:
    with pytest.raises(EngineUnavailableError, match=re.escape("no policy engine '../x'")):
        resolve_engine("../x")


class _Exploding:
    """A real (if useless) engine: it loads, then fails on every evaluation."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    @classmethod
    def from_snapshot(cls, snapshot: PKGSnapshotData) -> _Exploding:
        return cls(RuntimeError("boom"))

    def evaluate(self, task_facts: Mapping[str, Any]) -> dict[str, Any]:
        raise self._error

    @property
    def degraded(self) -> bool:
        return True


@pytest.fixture
def exploding_engine() -> Iterator[str]:
    register_engine("exploding", _Exploding)
    try:
        yield "exploding"
    finally:
        ENGINE_REGISTRY.pop("exploding", None)


def test_engine_failure_becomes_evaluation_error_and_evaluator_survives(
    exploding_engine: str,
) -> None:
    data = PKGSnapshotData(
        id=0, version="v@1", engine=exploding_engine, wasm_artifact=None, checksum=None, rules=[]
    )
    evaluator = PKGEvaluator(data)
    assert evaluator.degraded is True
    for _ in range(2):
        with pytest.raises(
            EvaluationError,
            match="the exploding engine failed evaluating snapshot 'v@1': RuntimeError: boom",
        ):
            evaluator.evaluate({})


def test_bad_task_facts_raise_evaluation_error_before_the_engine() -> None:
    evaluator = PKGEvaluator(_native())
    with pytest.raises(EvaluationError, match=r"signals\['x2'\] must be a number"):
        evaluator.evaluate({"signals": {"x2": "0.9"}})
    assert evaluator.evaluate({"tags": ["vip"]})["rules"]


def test_engine_called_directly_reports_unvalidated_garbage_as_evaluation_error() -> None:
    engine = NativeRuleEngine.from_snapshot(snapshot([rule("r1", [cond("SIGNAL", "x", ">", 1)])]))
    with pytest.raises(
        EvaluationError, match=re.escape("check them with evaluator_sidecar.policy.facts")
    ):
        engine.evaluate({"signals": {"x": "high"}})


def test_native_use_never_imports_the_wasm_engine() -> None:
    program = (
        "import sys\n"
        "from evaluator_sidecar import PKGEvaluator, PKGSnapshotData\n"
        "data = PKGSnapshotData(id=0, version='v@1', engine='native', wasm_artifact=None, checksum=None,\n"
        "    rules=[{'rule_id': 'r', 'rule_name': 'r', 'conditions': [], 'emissions': [{'subtask_type': 't'}]}])\n"
        "assert PKGEvaluator(data).evaluate({})['rules']\n"
        "assert not any(m.startswith('evaluator_sidecar.policy.engines.wasm') for m in sys.modules), 'wasm imported'\n"
        "assert 'wasmtime' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_evaluators_of_different_snapshots_are_independent() -> None:
    old = PKGEvaluator(_native("rules@1.4.0"))
    new = PKGEvaluator(
        snapshot(
            [rule("rule-002", [cond("TAG", "vip", "EXISTS")], priority=1)], version="rules@1.5.0"
        )
    )
    facts = {"tags": ["vip"]}
    assert old.evaluate(facts)["snapshot"] == "rules@1.4.0"
    assert [r["rule_id"] for r in new.evaluate(facts)["rules"]] == ["rule-002"]
    assert [r["rule_id"] for r in old.evaluate(facts)["rules"]] == ["rule-001"]
