"""A fixed, seeded sample of OPA's own topdown test cases passes in the WASM engine.

Two cases of every family of ``v1/test/cases/testdata`` (seed 20), built with the
test bed's ``opa build -t wasm`` (cached in ~/.cache/pkg-operator/opa-conformance)
and compared as OPA's own wasm harness does (tools/opa_conformance.py; ``make
conformance`` runs all of them). Every case passes or is skipped with a reason.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOOL = Path(__file__).resolve().parents[2] / "tools" / "opa_conformance.py"


def _tool() -> ModuleType:
    # Importable by name, so that the runner's worker processes can unpickle its cases.
    if str(TOOL.parent) not in sys.path:
        sys.path.insert(0, str(TOOL.parent))
    return importlib.import_module("opa_conformance")


def test_a_seeded_sample_of_every_family_passes_or_is_skipped_with_a_reason(
    opa_bin: Path,
) -> None:
    tool = _tool()
    version = tool.opa_version(opa_bin)
    source = tool.opa_source(version)
    cases = tool.load_cases(source)
    assert len(cases) == 4427, "the pinned OPA's suite changed size: update this test's count"
    chosen = tool.sample(cases, per_family=2, seed=20)
    assert {c.family for c in chosen} == {c.family for c in cases}
    outcomes = tool.run_cases(chosen, opa=opa_bin, version=version, source=source, jobs=2)
    print(tool.table(outcomes))
    failures = [f"{o.ident}: {o.reason}" for o in outcomes if o.status == "fail"]
    assert not failures, "\n".join(failures)
    assert all(o.reason for o in outcomes if o.status == "skip")
    assert sum(o.status == "pass" for o in outcomes) > len(outcomes) // 2


def test_a_second_run_loads_compiled_modules_from_the_cache_and_answers_alike(
    opa_bin: Path, tmp_path: Path
) -> None:
    from evaluator_sidecar.policy.engines.wasm.cache import clear_memory_cache

    tool = _tool()
    version = tool.opa_version(opa_bin)
    source = tool.opa_source(version)
    chosen = tool.sample(tool.load_cases(source), per_family=1, seed=20)[:6]

    def run() -> list[tuple[str, str]]:
        clear_memory_cache()  # as a new run's processes start with none
        outcomes = tool.run_cases(
            chosen, opa=opa_bin, version=version, source=source, jobs=1, compiled_cache=tmp_path
        )
        return [(o.ident, o.status) for o in outcomes]

    def entries() -> list[tuple[str, int]]:
        return sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.glob("*.cwasm"))

    first = run()
    written = entries()
    assert written, "the first run compiled modules but cached none"
    assert run() == first
    assert entries() == written  # loaded, not compiled and written again


def test_the_compiled_cache_can_be_turned_off(opa_bin: Path, tmp_path: Path) -> None:
    tool = _tool()
    version = tool.opa_version(opa_bin)
    source = tool.opa_source(version)
    chosen = tool.sample(tool.load_cases(source), per_family=1, seed=20)[:2]
    tool.run_cases(
        chosen, opa=opa_bin, version=version, source=source, jobs=1,
        compiled_cache=tmp_path, compiled_cache_mb=0,
    )  # fmt: skip
    assert not list(tmp_path.glob("*.cwasm"))


def test_cases_the_wrapper_rule_cannot_build_run_compiled_as_opas_harness_compiles_them(
    opa_bin: Path, tmp_path: Path
) -> None:
    # As a rule, `data = x` would read itself (rego_recursion_error), and `opa build` knows
    # no `test.sleep`: these are compiled as a query (testbed/opa-wasm-query), whose result
    # set is the bindings, with the harness's test builtin, and must pass as in OPA's harness.
    tool = _tool()
    version = tool.opa_version(opa_bin)
    source = tool.opa_source(version)
    chosen = [
        c
        for c in tool.load_cases(source)
        if (c.family in ("fix1863", "topdowndynamicdispatch") and c.body["query"] == "data = x")
        or c.note == "time/time caching"
    ]
    assert len(chosen) == 6, [c.ident for c in chosen]
    outcomes = tool.run_cases(
        chosen, opa=opa_bin, version=version, source=source, jobs=1, compiled_cache=tmp_path
    )
    assert [(o.ident, o.status, o.reason) for o in outcomes] == [
        (c.ident, "pass", "") for c in chosen
    ]


def test_cases_whose_input_is_a_rego_term_run_with_it_as_opas_value_text(
    opa_bin: Path, tmp_path: Path
) -> None:
    # Sets (and trailing commas) have no JSON form: OPA's Go harness hands the module the
    # term's text, which the module's own value parser reads; so does the runner.
    tool = _tool()
    version = tool.opa_version(opa_bin)
    source = tool.opa_source(version)
    chosen = [
        c for c in tool.load_cases(source) if "input_term" in c.body and tool.input_of(c) is None
    ]
    assert len(chosen) == 22, [c.ident for c in chosen]
    outcomes = tool.run_cases(
        chosen, opa=opa_bin, version=version, source=source, jobs=2, compiled_cache=tmp_path
    )
    assert [(o.ident, o.status, o.reason) for o in outcomes] == [
        (c.ident, "pass", "") for c in chosen
    ]
