"""The documented builtin set: what is provided, what is refused, and how a call can fail."""

from __future__ import annotations

import pytest

from evaluator_sidecar.policy.engines.wasm import builtins as builtins_module
from evaluator_sidecar.policy.engines.wasm.builtins import (
    PROVIDED,
    BuiltinLimitError,
    BuiltinUndefined,
    CallContext,
    call_builtin,
    missing_builtins,
)


def ctx(**limits: int) -> CallContext:
    return CallContext(
        max_items=limits.get("max_items", 1000), max_string_bytes=limits.get("max_bytes", 10**6)
    )


class TestTheProvidedSet:
    def test_it_is_the_documented_set(self) -> None:
        doc = builtins_module.__doc__ or ""
        for name in PROVIDED:
            assert f"``{name}``" in doc, f"{name} is provided but not documented"

    def test_each_builtin_knows_its_arity(self) -> None:
        assert PROVIDED["time.now_ns"].arity == 0
        assert PROVIDED["sprintf"].arity == 2
        assert PROVIDED["time.add_date"].arity == 4

    def test_missing_builtins_are_named_sorted(self) -> None:
        required = {"http.send": 3, "time.now_ns": 0, "rego.parse_module": 1}
        assert missing_builtins(required) == ["http.send", "rego.parse_module"]
        assert missing_builtins({"sprintf": 0}) == []


class TestCalls:
    def test_time_now_ns_is_one_value_per_evaluation(self) -> None:
        context = ctx()
        now = PROVIDED["time.now_ns"]
        first = call_builtin(now, [], context)
        assert call_builtin(now, [], context) == first
        context.reset()
        assert call_builtin(now, [], context) >= first

    def test_bad_operands_make_the_call_undefined(self) -> None:
        with pytest.raises(BuiltinUndefined, match=r"time\.parse_rfc3339_ns"):
            call_builtin(PROVIDED["time.parse_rfc3339_ns"], ["yesterday"], ctx())
        with pytest.raises(BuiltinUndefined):
            call_builtin(PROVIDED["sprintf"], [5, []], ctx())

    def test_the_wrong_number_of_operands_is_undefined(self) -> None:
        with pytest.raises(BuiltinUndefined, match="takes 1"):
            call_builtin(PROVIDED["crypto.sha256"], ["a", "b"], ctx())

    def test_a_result_too_large_for_the_memory_cap_fails_the_evaluation(self) -> None:
        with pytest.raises(BuiltinLimitError):
            call_builtin(PROVIDED["numbers.range_step"], [1, 10**9, 1], ctx(max_items=100))
        with pytest.raises(BuiltinLimitError):
            call_builtin(
                PROVIDED["sprintf"],
                ["%s%s%s", ["x" * 400, "y" * 400, "z" * 400]],
                ctx(max_bytes=1000),
            )

    def test_trace_is_true_and_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level("DEBUG", logger="evaluator_sidecar.policy.engines.wasm.builtins")
        assert call_builtin(PROVIDED["trace"], ["checkpoint"], ctx()) is True
        assert "checkpoint" in caplog.text
