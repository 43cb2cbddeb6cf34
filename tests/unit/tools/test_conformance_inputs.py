"""The conformance runner runs a case whose ``input_term`` is JSON, and one only Rego reads as text;
a case the wrapper rule cannot build is compiled as OPA's harness compiles it, with its test
builtin, and one neither way compiles is skipped naming OPA's error."""

from __future__ import annotations

import decimal
import importlib
import sys
import time
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


def test_a_rego_only_term_goes_to_the_module_as_opas_value_text() -> None:
    tool = _tool()
    for term in ('{"x": {1, 2}}', '{"a": ["b"], }'):
        assert tool.input_of(_case({"input_term": term})) is None
    # OPA's Go harness hands the module ast.Term.String(): no trailing commas, sets kept.
    term = '{ "g": { "a": {"b", "c"}, "d": set(), "s": ", }", "q": "\\", ]", }, "i": ["a",] }'
    assert tool.rego_term_text(term) == (
        b'{ "g": { "a": {"b", "c"}, "d": set(), "s": ", }", "q": "\\", ]" }, "i": ["a"] }'
    )


def test_plain_input_and_no_input_are_told_apart() -> None:
    assert _tool().input_of(_case({"input": {"k": 1}})) == (True, {"k": 1})
    assert _tool().input_of(_case({})) == (False, None)


def _build_tool() -> ModuleType:
    _tool()  # puts tools/ on sys.path
    return importlib.import_module("opa_conformance_build")


def test_a_case_neither_way_compiles_is_skipped_naming_opas_error() -> None:
    build = _build_tool()
    error = (
        "opa-wasm-query (OPA's rego.Compile): 1 error occurred: "
        "module-1.rego:5: rego_type_error: undefined function x\n\tx(1)\n\t^"
    )
    reason = build.build_skip_reason(error)
    assert reason.startswith("does not compile to wasm (OPA's harness fails it too)")
    assert reason.endswith("rego_type_error: undefined function x")


def test_the_harness_test_builtin_is_provided_only_while_cases_run() -> None:
    from evaluator_sidecar.policy.engines.wasm.builtins import PROVIDED, CallContext

    tool = _tool()
    assert "test.sleep" not in PROVIDED
    with tool.harness_builtins():
        sleep = PROVIDED["test.sleep"]
        started = time.monotonic()
        result = sleep.fn(["20ms"], CallContext(max_items=10, max_string_bytes=10))
        assert result is None  # OPA's: null
        assert time.monotonic() - started >= 0.02
        sleep.fn(["not a duration"], CallContext(max_items=10, max_string_bytes=10))
    assert "test.sleep" not in PROVIDED


def test_a_query_compiled_as_a_query_answers_with_its_bindings_as_the_result_set() -> None:
    build = _build_tool()
    as_query = build.Built(b"", as_query=True)
    wrapped = build.Built(b"")
    assert (as_query.entrypoint, wrapped.entrypoint) == ("eval", build.ENTRYPOINT)
    assert as_query.bindings([{"x": 1}, {"x": 2}]) == [{"x": 1}, {"x": 2}]
    assert wrapped.bindings([{"result": [{"x": 1}]}]) == [{"x": 1}]
    assert wrapped.bindings([]) == [] == as_query.bindings([])
