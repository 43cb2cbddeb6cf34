"""The conformance runner runs a case whose ``input_term`` is JSON and skips one only Rego reads."""

from __future__ import annotations

import decimal
import importlib
import sys
from pathlib import Path
from types import ModuleType

TOOL = Path(__file__).resolve().parents[3] / "tools" / "opa_conformance.py"


def _tool() -> ModuleType:
    if str(TOOL.parent) not in sys.path:
        sys.path.insert(0, str(TOOL.parent))
    return importlib.import_module("opa_conformance")


def _case(body: dict[str, object]) -> object:
    return _tool().Case("v1", "family", "file.yaml", "note", {"note": "note", **body})


def test_a_json_input_term_is_the_input() -> None:
    given = _tool().input_of(_case({"input_term": '{"a": [1, 2.50]}'}))
    assert given == (True, {"a": [1, decimal.Decimal("2.50")]})


def test_a_rego_only_term_is_marked_for_skipping() -> None:
    for term in ('{"x": {1, 2}}', '{"a": ["b"], }'):
        assert _tool().input_of(_case({"input_term": term})) is None


def test_plain_input_and_no_input_are_told_apart() -> None:
    assert _tool().input_of(_case({"input": {"k": 1}})) == (True, {"k": 1})
    assert _tool().input_of(_case({})) == (False, None)


def test_a_recursion_through_the_wrapper_rule_is_not_blamed_on_wasm() -> None:
    tool = _tool()
    recursion = (
        "error: 1 error occurred: module-0.rego:3: rego_recursion_error: rule "
        f"data.{tool.WRAPPER_PACKAGE}.results is recursive"
    )
    assert "wrapper rule" in tool.build_skip_reason(recursion)
    other = "error: 1 error occurred:\nmodule-1.rego:5: rego_type_error: undefined function x"
    assert tool.build_skip_reason(other).startswith("does not compile to wasm")
