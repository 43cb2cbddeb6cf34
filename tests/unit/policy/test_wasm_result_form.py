"""Results in OPA's canonical form: what the engine makes of ``opa_eval``'s value-format text.

The module writes sets in its own (hash) order and numbers as OPA keeps them
(as text, at any size). Every result the engine hands out has sets as lists
sorted in OPA's order (as OPA's SDKs return them), integers exact at any size
and numbers beyond a double's range exact as ``Decimal``.
"""

from __future__ import annotations

import decimal

import pytest

from evaluator_sidecar.policy.engines.wasm.result import (
    decode_result_set,
    load_result_set,
    result_from_value,
)
from evaluator_sidecar.policy.errors import EvaluationError


def result_text(inner: str) -> bytes:
    """A value-format result set with one result, as ``opa_eval(..., format=1)`` writes it."""
    return b'{{"result": ' + inner.encode() + b"}}"


class TestEngineResults:
    def test_sets_come_back_sorted_in_opas_order(self) -> None:
        raw = result_text(
            '{"subtasks": [{"name": "x", "tags": {"c", "b", "a"}, '
            '"mixed": {"s", 2, null, true, [1], {"k": 1}}}], "dag": [], "rules": []}'
        )
        (subtask,) = result_from_value(raw, "pkg/result")["subtasks"]
        assert subtask["tags"] == ["a", "b", "c"]
        # OPA's order across types: null < booleans < numbers < strings < arrays < objects.
        assert subtask["mixed"] == [None, True, 2, "s", [1], {"k": 1}]

    def test_nested_sets_are_sorted_at_every_level(self) -> None:
        raw = result_text('{"subtasks": [{"n": {{3, 1}, {2}}}]}')
        assert result_from_value(raw, "e")["subtasks"] == [{"n": [[1, 3], [2]]}]

    def test_the_empty_set_is_an_empty_list(self) -> None:
        raw = result_text('{"subtasks": [{"n": set()}]}')
        assert result_from_value(raw, "e")["subtasks"] == [{"n": []}]

    def test_integers_beyond_64_bits_stay_exact(self) -> None:
        raw = result_text(
            '{"subtasks": [{"big": 12345678901234567890123, "neg": -9223372036854775809, '
            '"ns": 1767225600000000000}]}'
        )
        (subtask,) = result_from_value(raw, "e")["subtasks"]
        assert subtask == {
            "big": 12345678901234567890123,
            "neg": -9223372036854775809,
            "ns": 1767225600000000000,
        }
        assert all(type(v) is int for v in subtask.values())

    def test_a_number_beyond_a_double_stays_exact_other_fractions_are_floats(self) -> None:
        raw = result_text('{"subtasks": [{"huge": 2e308, "f": 1.50, "tags": {"b", "a"}}]}')
        (subtask,) = result_from_value(raw, "e")["subtasks"]
        assert subtask["huge"] == decimal.Decimal("2e308")
        assert subtask["f"] == 1.5
        assert type(subtask["f"]) is float

    def test_a_number_beyond_a_double_stays_exact_without_sets_too(self) -> None:
        raw = result_text('{"subtasks": [{"huge": 2e308}]}')
        assert result_from_value(raw, "e")["subtasks"] == [{"huge": decimal.Decimal("2e308")}]

    def test_a_plain_json_result_is_read_as_is(self) -> None:
        raw = result_text('{"subtasks": [{"name": "x", "n": 1.5, "s": "{a}"}], "rules": []}')
        assert result_from_value(raw, "e") == {
            "subtasks": [{"name": "x", "n": 1.5, "s": "{a}"}],
            "dag": [],
            "rules": [],
        }

    def test_an_undefined_decision_is_the_empty_result(self) -> None:
        assert result_from_value(b"set()", "e") == {"subtasks": [], "dag": [], "rules": []}

    def test_text_that_is_no_result_set_names_the_entrypoint(self) -> None:
        with pytest.raises(EvaluationError, match=r"'pkg/result'.*not a result set"):
            result_from_value(b"[1, 2", "pkg/result")
        with pytest.raises(EvaluationError, match=r"'pkg/result'.*not a result set"):
            result_from_value(b"{{", "pkg/result")
        with pytest.raises(EvaluationError, match=r"'pkg/result'.*not a result set"):
            result_from_value(b'{"result": 1}', "pkg/result")

    def test_a_json_result_set_is_read_too(self) -> None:
        # A module may answer in JSON whatever format it was asked for; JSON has no sets.
        assert load_result_set(b'[{"result": [1, 99999999999999999999999]}]', "e") == [
            {"result": [1, 99999999999999999999999]}
        ]
        assert load_result_set(b"[]", "e") == []

    def test_several_results_are_all_read(self) -> None:
        assert load_result_set(b'{{"result": 2}, {"result": 1}}', "e") == [
            {"result": 1},
            {"result": 2},
        ]


class TestQueryResults:
    def test_composite_object_keys_become_their_json_text_as_opa_writes_them(self) -> None:
        raw = b'{{"result": {[1, "a"]: 1, {"z", "y"}: {"b", "a"}, {"k": 1}: 2, 3: "n"}}}'
        assert decode_result_set(raw) == [
            {"result": {"3": "n", '[1,"a"]': 1, '["y","z"]': ["a", "b"], '{"k":1}': 2}}
        ]

    def test_fractions_are_exact_decimals_in_query_results(self) -> None:
        assert decode_result_set(b'{{"result": [1.50, 2e308]}}') == [
            {"result": [decimal.Decimal("1.50"), decimal.Decimal("2e308")]}
        ]
