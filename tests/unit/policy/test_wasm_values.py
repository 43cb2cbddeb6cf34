"""Rego values as text: what builtins receive from the policy and hand back to it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm.values import (
    RegoBigNumber,
    RegoFloat,
    RegoSet,
    RegoValueError,
    dump_rego,
    parse_rego,
)


class TestParse:
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("null", None),
            ("true", True),
            ('"h\\u00e9"', "hé"),
            ("[1, 2]", [1, 2]),
            ('{"a": [true, null]}', {"a": [True, None]}),
            ('{1: "one"}', {1: "one"}),
            ("-12345678901234567890", -12345678901234567890),
        ],
    )
    def test_json_and_rego_values(self, text: str, value: Any) -> None:
        assert parse_rego(text) == value

    def test_sets_are_rego_sets(self) -> None:
        assert parse_rego('{1, "a", [2]}') == RegoSet([1, "a", [2]])
        assert parse_rego("set()") == RegoSet()
        assert parse_rego("{set()}") == RegoSet([RegoSet()])

    def test_numbers_keep_int_or_float_and_their_text(self) -> None:
        one = parse_rego("1")
        assert type(one) is int
        value = parse_rego("1.50")
        assert isinstance(value, RegoFloat)
        assert value == 1.5
        assert value.text == "1.50"
        assert parse_rego("1e3") == 1000.0

    def test_numbers_beyond_a_double_keep_their_text_as_opa_does(self) -> None:
        assert parse_rego("[2e308]") == [RegoBigNumber("2e308")]
        assert dump_rego(parse_rego("-1e999")) == "-1e999"

    @pytest.mark.parametrize("bad", ["", "[1,", "{1: }", "nul", "[1] 2", '"open', "1e"])
    def test_malformed_text_is_an_error(self, bad: str) -> None:
        with pytest.raises(RegoValueError):
            parse_rego(bad)


class TestDump:
    @pytest.mark.parametrize(
        "value",
        [
            None,
            True,
            0,
            -7,
            2**70,
            'tab\tquote"',
            [1, [2]],
            {"k": {"n": None}},
            RegoSet([1, 2]),
            RegoSet(),
        ],
    )
    def test_round_trips_through_parse(self, value: Any) -> None:
        assert parse_rego(dump_rego(value)) == value

    def test_floats_stay_floats(self) -> None:
        assert dump_rego(2.0) == "2.0"
        assert dump_rego(RegoFloat("1.50")) == "1.50"

    @pytest.mark.parametrize("bad", [math.inf, math.nan, object(), b"bytes"])
    def test_values_with_no_rego_form_are_errors(self, bad: Any) -> None:
        with pytest.raises(RegoValueError):
            dump_rego(bad)
