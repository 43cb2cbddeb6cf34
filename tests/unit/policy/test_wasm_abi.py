"""The WASM engine accepts the modules that speak OPA's ABI 1.2+, and says why it refuses others."""

from __future__ import annotations

import pytest
import wasmtime
from wasm_modules import opa_like, opa_like_wasm

from evaluator_sidecar.policy.engines.wasm import OpaWasm
from evaluator_sidecar.policy.engines.wasm.abi import (
    DEFAULT_ENTRYPOINT,
    ModuleShape,
    check_abi_version,
    check_shape,
    choose_entrypoint,
)
from evaluator_sidecar.policy.engines.wasm.instance import describe_module
from evaluator_sidecar.policy.errors import Problem, SnapshotLoadError


def shape_of(wat: str) -> ModuleShape:
    engine = wasmtime.Engine()
    return describe_module(wasmtime, wasmtime.Module(engine, bytes(wasmtime.wat2wasm(wat))))


def load_problems(wasm: bytes, **kwargs: object) -> list[Problem]:
    with pytest.raises(SnapshotLoadError) as caught:
        OpaWasm.load_from_bytes(wasm, cache_dir=None, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


class TestModuleShape:
    def test_an_opa_shaped_module_has_no_problems(self) -> None:
        assert check_shape(shape_of(opa_like())) == []

    def test_a_missing_opa_eval_is_named_as_the_abi_1_2_call(self) -> None:
        problems = check_shape(shape_of(opa_like(drop_exports=("opa_eval",))))
        assert [p.where for p in problems] == ["export opa_eval"]
        assert "ABI 1.2" in problems[0].message
        assert "opa build -t wasm" in problems[0].message

    def test_every_missing_export_is_listed(self) -> None:
        problems = check_shape(shape_of(opa_like(drop_exports=("opa_malloc", "entrypoints"))))
        assert {p.where for p in problems} == {"export opa_malloc", "export entrypoints"}

    def test_opa_eval_with_the_wrong_signature_is_refused(self) -> None:
        wat = opa_like(eval_signature="(param i32) (result i32)", eval_body="trap")
        problems = check_shape(shape_of(wat))
        assert [p.where for p in problems] == ["export opa_eval"]
        assert "(i32) -> (i32)" in problems[0].message

    def test_missing_version_globals_are_refused(self) -> None:
        problems = check_shape(shape_of(opa_like(drop_exports=("opa_wasm_abi_minor_version",))))
        assert [p.where for p in problems] == ["export opa_wasm_abi_minor_version"]

    def test_an_import_the_engine_does_not_provide_is_named(self) -> None:
        wat = opa_like(extra_imports='(import "env" "fd_write" (func (param i32) (result i32)))')
        problems = check_shape(shape_of(wat))
        assert [p.where for p in problems] == ["import env.fd_write"]
        assert "fd_write" in problems[0].message

    def test_an_import_from_another_module_is_refused(self) -> None:
        wat = opa_like(extra_imports='(import "wasi" "clock" (func (result i32)))')
        assert [p.where for p in check_shape(shape_of(wat))] == ["import wasi.clock"]

    def test_an_opa_import_with_the_wrong_type_is_refused(self) -> None:
        wat = opa_like(extra_imports='(import "env" "opa_println" (func (param i64)))')
        problems = check_shape(shape_of(wat))
        assert [p.where for p in problems] == ["import env.opa_println"]
        assert "(i64)" in problems[0].message

    def test_a_module_without_an_imported_memory_is_refused(self) -> None:
        wat = opa_like(memory_import="(memory 2)")
        assert "import env.memory" in [p.where for p in check_shape(shape_of(wat))]


class TestAbiVersion:
    @pytest.mark.parametrize(("major", "minor"), [(1, 2), (1, 3), (1, 9)])
    def test_abi_1_2_and_later_1_x_are_accepted(self, major: int, minor: int) -> None:
        assert check_abi_version(major, minor) == []

    @pytest.mark.parametrize(("major", "minor"), [(1, 0), (1, 1), (2, 0), (0, 9)])
    def test_older_or_other_major_versions_are_refused(self, major: int, minor: int) -> None:
        (problem,) = check_abi_version(major, minor)
        assert f"{major}.{minor}" in problem.message

    def test_an_abi_1_1_module_is_refused_at_load(self) -> None:
        problems = load_problems(opa_like_wasm(abi=(1, 1)))
        assert [p.where for p in problems] == ["opa_wasm_abi_version"]


class TestEntrypoint:
    def test_the_named_entrypoint_is_chosen(self) -> None:
        assert choose_entrypoint({"a/b": 0, "c/d": 1}, "c/d") == ("c/d", 1)

    @pytest.mark.parametrize("name", ["c/d", "data.c.d", "c.d"])
    def test_the_entrypoint_may_be_named_as_a_rule_reference(self, name: str) -> None:
        assert choose_entrypoint({"a/b": 0, "c/d": 1}, name) == ("c/d", 1)

    def test_the_default_is_used_when_none_is_named(self) -> None:
        assert choose_entrypoint({"x/y": 0, DEFAULT_ENTRYPOINT: 1}, None) == (DEFAULT_ENTRYPOINT, 1)

    def test_a_sole_entrypoint_needs_no_name(self) -> None:
        assert choose_entrypoint({"only/one": 3}, None) == ("only/one", 3)

    def test_several_without_the_default_must_be_named(self) -> None:
        problem = choose_entrypoint({"a": 0, "b": 1}, None)
        assert isinstance(problem, Problem)
        assert problem.where == "spec.wasm.entrypoint"
        assert "a, b" in problem.message

    def test_an_unknown_name_lists_the_module_s_entrypoints(self) -> None:
        problem = choose_entrypoint({"a": 0}, "nope")
        assert isinstance(problem, Problem)
        assert "'nope'" in problem.message
        assert "it has: a" in problem.message
        assert "opa build -t wasm -e nope" in problem.message

    def test_an_unknown_entrypoint_is_refused_at_load(self) -> None:
        problems = load_problems(opa_like_wasm(), entrypoint="pkg/other")
        assert [p.where for p in problems] == ["spec.wasm.entrypoint"]


class TestBuiltinsAtLoad:
    def test_a_module_needing_an_unprovided_builtin_is_refused_naming_it(self) -> None:
        wasm = opa_like_wasm(builtins={"http.send": 0, "time.now_ns": 1, "rego.parse_module": 2})
        (problem,) = load_problems(wasm)
        assert problem.where == "builtins"
        assert "http.send" in problem.message
        assert "rego.parse_module" in problem.message
        assert "time.now_ns" not in problem.message
        assert "http.send (it reaches the network" in problem.message

    def test_a_module_needing_only_provided_builtins_loads(self) -> None:
        engine = OpaWasm.load_from_bytes(
            opa_like_wasm(builtins={"time.now_ns": 0, "sprintf": 1}), cache_dir=None
        )
        assert engine.required_builtins == ["sprintf", "time.now_ns"]

    def test_every_problem_is_reported_together(self) -> None:
        wasm = opa_like_wasm(abi=(1, 1), builtins={"http.send": 0}, entrypoints={"a": 0, "b": 1})
        wheres = {p.where for p in load_problems(wasm)}
        assert wheres == {"opa_wasm_abi_version", "builtins", "spec.wasm.entrypoint"}


class TestNotAModule:
    def test_bytes_that_are_not_webassembly_are_a_load_error(self) -> None:
        (problem,) = load_problems(b"\x00asm\x01\x00\x00\x00garbage")
        assert problem.where == "wasm"
        assert "not a valid WebAssembly module" in problem.message

    def test_a_shape_problem_is_a_load_error_listing_it(self) -> None:
        problems = load_problems(opa_like_wasm(drop_exports=("opa_eval",)))
        assert [p.where for p in problems] == ["export opa_eval"]
