"""sprintf formats as OPA's Go evaluator does (expected values recorded from OPA v1.22.2).

The integration test tests/integration/test_opa_builtins.py checks the same
against the real opa binary on many more inputs; these pin the rules down
without it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from evaluator_sidecar.policy.engines.wasm import gofmt
from evaluator_sidecar.policy.engines.wasm.gofmt import (
    go_quote,
    go_sprintf,
    printer_sprintf,
    rego_text,
    sprintf_operand,
)
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet, parse_rego


def sprintf(fmt: str, args_text: str) -> str:
    """sprintf with operands written as Rego text, as the policy hands them over."""
    args: list[Any] = parse_rego(args_text)
    return go_sprintf(fmt, [sprintf_operand(v) for v in args])


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%d", "[5]", "5"),
        ("%+d", "[5]", "+5"),
        ("% d", "[3]", " 3"),
        ("%-8d|", "[42]", "42      |"),
        ("%-+5d|", "[3]", "+3   |"),
        ("%.3d", "[7]", "007"),
        ("%.0d", "[0]", ""),
        ("%#x", "[255]", "0xff"),
        ("%x", "[-255]", "-ff"),
        ("%b", "[5]", "101"),
        ("%#b", "[5]", "0b101"),
        ("%o", "[8]", "10"),
        ("%#o", "[8]", "010"),
        ("%O", "[8]", "0o10"),
        ("%c", "[65]", "A"),
        ("%q", "[65]", "'A'"),
        ("%U", "[128512]", "U+1F600"),
        ("%#U", "[65]", "U+0041 'A'"),
        ("%*d", "[5, 3]", "    3"),
    ],
)
def test_integers(fmt: str, args: str, expected: str) -> None:
    assert sprintf(fmt, args) == expected


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%v", "[1.5]", "1.5"),
        ("%v", "[1.0]", "1"),
        ("%v", "[1e6]", "1e+06"),
        ("%v", "[123456.0]", "123456"),
        ("%v", "[123456789.0]", "1.23456789e+08"),
        ("%v", "[0.0001]", "0.0001"),
        ("%v", "[0.00001]", "1e-05"),
        ("%v", "[1e21]", "1e+21"),
        ("%e", "[123456.789]", "1.234568e+05"),
        ("%E", "[0.000123]", "1.230000E-04"),
        ("%g", "[100000.0]", "100000"),
        ("%g", "[1000000.0]", "1e+06"),
        ("%.3g", "[1234.5678]", "1.23e+03"),
        ("%G", "[1e-7]", "1E-07"),
        ("%08.3f", "[-3.14159]", "-003.142"),
        ("%.0f", "[2.5]", "2"),
        ("%.1f", "[0.25]", "0.2"),
        ("%6.2f%%", "[99.5]", " 99.50%"),
        ("%.*f", "[2, 3.14159]", "3.14"),
        ("%10.4v|", "[3.14159265]", "     3.142|"),
        ("%#g", "[1.0]", "1.00000"),
        ("%#.3g", "[1.0]", "1.00"),
        ("%x", "[1.5]", "0x1.8p+00"),
        ("%b", "[1.5]", "6755399441055744p-52"),
    ],
)
def test_floats(fmt: str, args: str, expected: str) -> None:
    assert sprintf(fmt, args) == expected


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%s", '["x"]', "x"),
        ("%q", '["a\\"b\\n\\u00e9"]', '"a\\"b\\né"'),
        ("%+q", '["\\u00e9"]', '"\\u00e9"'),
        ("%#q", '["abc"]', "`abc`"),
        ("%#v", '["s"]', '"s"'),
        ("%x", '["hi"]', "6869"),
        ("% X", '["hi"]', "68 69"),
        ("%5.2s|", '["abcdef"]', "   ab|"),
        ("%05s", '["ab"]', "000ab"),
    ],
)
def test_strings(fmt: str, args: str, expected: str) -> None:
    assert sprintf(fmt, args) == expected


class TestOtherValuesArePassedAsTheirRegoText:
    def test_composites_are_printed_as_rego_sorted(self) -> None:
        assert sprintf("%v", '[[1, "a", {"k": [true, null]}]]') == '[1, "a", {"k": [true, null]}]'
        assert sprintf("%v", '[{"b": 1, "a": 2}]') == '{"a": 2, "b": 1}'
        assert sprintf("%s", "[[1, 2]]") == "[1, 2]"
        assert sprintf("%v", "[[]]") == "[]"
        assert sprintf("%s", "[{}]") == "{}"

    def test_booleans_and_null_are_strings_to_go(self) -> None:
        assert sprintf("%v", "[true]") == "true"
        assert sprintf("%t", "[true]") == "%!t(string=true)"
        assert sprintf("%v", "[null]") == "null"

    def test_sets_print_sorted_and_empty_as_set(self) -> None:
        assert rego_text(RegoSet(["b", "a"])) == '{"a", "b"}'
        assert rego_text(RegoSet()) == "set()"

    def test_numbers_inside_composites_keep_their_text(self) -> None:
        assert rego_text([RegoFloat("1.50")]) == "[1.50]"

    def test_integers_beyond_int64_are_big_ints(self) -> None:
        assert sprintf("%d", "[12345678901234567890]") == "12345678901234567890"
        assert sprintf("%x", "[12345678901234567890]") == "ab54a98ceb1f0ad2"

    def test_go_type_names(self) -> None:
        assert sprintf("%T %T %T", '[1, 1.5, "s"]') == "int64 float64 string"


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%d", '["x"]', "%!d(string=x)"),
        ("%s", "[5]", "%!s(int64=5)"),
        ("%z", "[1]", "%!z(int64=1)"),
        ("%d %d", "[1]", "1 %!d(MISSING)"),
        ("%d", "[1, 2]", "1%!(EXTRA int64=2)"),
        ("%", "[]", "%!(NOVERB)"),
        ("%!", "[]", "%!!(MISSING)"),
        ("%[2]d %[1]d", "[1, 2]", "2 1"),
        ("%[3]d", "[1, 2]", "%!d(BADINDEX)"),
    ],
)
def test_go_error_forms(fmt: str, args: str, expected: str) -> None:
    assert sprintf(fmt, args) == expected


def test_strconv_quote_escapes_like_go() -> None:
    assert go_quote("tab\there\x7f") == '"tab\\there\\x7f"'
    assert go_quote("\U0001f600", ascii_only=True) == '"\\U0001f600"'
    assert go_quote("\u200b") == '"\\u200b"'  # a format character is not printable


class TestPlainFormats:
    """Bare %s, %v and %d of strings and int64s skip Go's printer; the answer is the same."""

    CASES: ClassVar[list[tuple[str, list[Any]]]] = [
        ("%s-%d", ["x", 1]),
        ("ticket for room %v open %d min (SLA %s)", ["101", 42, "2h"]),
        ("%v%v", [-9223372036854775808, 9223372036854775807]),
        ("100%% %s", ["done"]),
        ("%%%d%%", [7]),
        ("no verbs", []),
        ("", []),
        ("ünï %s €", ["çödé"]),
        # Not plain: each must still print as Go does (through the printer).
        ("%d", ["x"]),
        ("%s", [5]),
        ("%s %s", ["only one"]),
        ("%s", ["a", "extra"]),
        ("%5s|%-3d", ["a", 1]),
        ("%v", [1.5]),
        ("%d", [1 << 70]),
        ("trailing %", []),
        ("%q", ["x"]),
    ]

    @pytest.mark.parametrize(("fmt", "args"), CASES)
    def test_the_plain_path_gives_what_the_printer_gives(self, fmt: str, args: list[Any]) -> None:
        operands = [sprintf_operand(v) for v in args]
        assert go_sprintf(fmt, operands) == printer_sprintf(fmt, operands)

    def test_the_common_shapes_take_the_plain_path(self) -> None:
        for fmt, args in self.CASES[:8]:
            assert gofmt._plain_sprintf(fmt, [sprintf_operand(v) for v in args]) is not None
