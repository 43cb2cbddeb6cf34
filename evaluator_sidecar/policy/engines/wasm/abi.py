"""What an OPA WebAssembly module must look like for this engine to run it (ABI 1.2+).

Pure checks over a plain description of a module (:class:`ModuleShape`), so
that every rule is testable without wasmtime:

* imports: only ``env.memory``, ``env.opa_abort``, ``env.opa_println`` and
  ``env.opa_builtin0`` … ``opa_builtin4``, with OPA's signatures;
* exports: the functions the engine calls (``opa_eval`` for the single-call
  fast path of ABI 1.2, ``opa_malloc``, ``opa_json_parse``, ``opa_value_parse``,
  ``opa_json_dump``, ``opa_value_dump``, ``opa_heap_ptr_get``, ``builtins``,
  ``entrypoints``) with OPA's signatures, and the version globals;
* ``opa_wasm_abi_version`` must be 1 and ``opa_wasm_abi_minor_version`` at least 2;
* the entrypoint: the one a snapshot names (``pkg/result``, or as a reference:
  ``data.pkg.result``), else :data:`DEFAULT_ENTRYPOINT` when the module has it,
  else the module's only entrypoint.

Each check returns a list of :class:`~evaluator_sidecar.policy.errors.Problem` that
says what is wrong and what to do, so a load error lists them all at once.
For policy authors: docs/wasm-engine.md ("The module").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evaluator_sidecar.policy.errors import Problem

__all__ = [
    "DEFAULT_ENTRYPOINT",
    "REQUIRED_EXPORTS",
    "ExternShape",
    "ModuleShape",
    "check_abi_version",
    "check_shape",
    "choose_entrypoint",
]

#: The entrypoint used when a snapshot names none: ``package pkg`` with a rule
#: ``result``, built with ``opa build -t wasm -e pkg/result``. A module with a
#: single entrypoint needs no name at all.
DEFAULT_ENTRYPOINT = "pkg/result"

I32 = "i32"


def _sig(nparams: int, nresults: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (I32,) * nparams, (I32,) * nresults


#: export name -> (params, results) the engine relies on.
REQUIRED_EXPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "opa_eval": _sig(7, 1),
    "opa_malloc": _sig(1, 1),
    "opa_json_parse": _sig(2, 1),
    "opa_value_parse": _sig(2, 1),
    "opa_json_dump": _sig(1, 1),
    "opa_value_dump": _sig(1, 1),
    "opa_heap_ptr_get": _sig(0, 1),
    "builtins": _sig(0, 1),
    "entrypoints": _sig(0, 1),
}
_VERSION_GLOBALS = ("opa_wasm_abi_version", "opa_wasm_abi_minor_version")

#: import name (module "env") -> (params, results); memory is checked separately.
_ALLOWED_FUNC_IMPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "opa_abort": _sig(1, 0),
    "opa_println": _sig(1, 0),
    **{f"opa_builtin{n}": _sig(n + 2, 1) for n in range(5)},
}


@dataclass(frozen=True)
class ExternShape:
    """One import or export: its kind (``func``, ``memory``, ``global``, ``table``) and type."""

    module: str
    name: str
    kind: str
    params: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    #: memories: minimum and maximum pages (None: no maximum)
    min_pages: int = 0
    max_pages: int | None = None
    #: globals: value type
    value_type: str = ""

    @property
    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


@dataclass(frozen=True)
class ModuleShape:
    imports: tuple[ExternShape, ...]
    exports: tuple[ExternShape, ...]

    def export(self, name: str) -> ExternShape | None:
        return next((e for e in self.exports if e.name == name), None)

    @property
    def memory_import(self) -> ExternShape | None:
        return next((i for i in self.imports if i.kind == "memory"), None)


_BUILD_HINT = "build the policy with `opa build -t wasm -e <entrypoint>` from OPA v0.37 or later"


def check_shape(shape: ModuleShape) -> list[Problem]:
    """Every problem with the module's imports and exports (empty when it can run here)."""
    problems: list[Problem] = []
    memory_imports = 0
    for imp in shape.imports:
        where = f"import {imp.module}.{imp.name}"
        if imp.module != "env":
            problems.append(
                Problem(
                    where,
                    f"unknown import module {imp.module!r}; an OPA policy imports only from 'env'",
                )
            )
            continue
        if imp.kind == "memory":
            memory_imports += 1
            if imp.name != "memory":
                problems.append(Problem(where, "the linear memory must be imported as env.memory"))
            continue
        expected = _ALLOWED_FUNC_IMPORTS.get(imp.name)
        if imp.kind != "func" or expected is None:
            problems.append(
                Problem(
                    where,
                    f"this engine does not provide {imp.kind} {imp.name!r}; OPA modules import "
                    "only env.memory, "
                    "opa_abort, opa_println and opa_builtin0..4 (is this an OPA policy?)",
                )
            )
            continue
        if (imp.params, imp.results) != expected:
            problems.append(
                Problem(
                    where,
                    f"has type {imp.signature}; OPA's ABI expects ({', '.join(expected[0])}) -> "
                    f"({', '.join(expected[1])})",
                )
            )
    if memory_imports != 1:
        problems.append(
            Problem(
                "import env.memory",
                "an OPA module imports exactly one linear memory as env.memory; " + _BUILD_HINT,
            )
        )
    for name, (params, results) in REQUIRED_EXPORTS.items():
        exp = shape.export(name)
        if exp is None:
            hint = " (opa_eval is ABI 1.2's single-call evaluation)" if name == "opa_eval" else ""
            problems.append(Problem(f"export {name}", f"missing{hint}; {_BUILD_HINT}"))
        elif exp.kind != "func" or (exp.params, exp.results) != (params, results):
            problems.append(
                Problem(
                    f"export {name}",
                    f"is {exp.kind} {exp.signature}; OPA's ABI has func "
                    f"({', '.join(params)}) -> ({', '.join(results)})",
                )
            )
    for name in _VERSION_GLOBALS:
        exp = shape.export(name)
        if exp is None or exp.kind != "global" or exp.value_type != I32:
            problems.append(Problem(f"export {name}", f"missing i32 global; {_BUILD_HINT}"))
    return problems


def check_abi_version(major: int, minor: int) -> list[Problem]:
    """ABI 1.x with x >= 2: the versions that have the single-call ``opa_eval``."""
    if major != 1 or minor < 2:
        return [
            Problem(
                "opa_wasm_abi_version",
                f"module has OPA WebAssembly ABI {major}.{minor}; "
                "this engine runs ABI 1.2 or a later 1.x; " + _BUILD_HINT,
            )
        ]
    return []


def choose_entrypoint(
    entrypoints: Mapping[str, int], requested: str | None
) -> tuple[str, int] | Problem:
    """The entrypoint to evaluate, by name and id, or the problem explaining why there is none."""
    available = ", ".join(sorted(entrypoints)) or "(none)"
    if requested:
        # Also accept the rule's reference form: data.pkg.result or pkg.result for pkg/result.
        for name in (requested, requested.removeprefix("data.").replace(".", "/")):
            if name in entrypoints:
                return name, entrypoints[name]
        return Problem(
            "spec.wasm.entrypoint",
            f"entrypoint {requested!r} is not in the module (it has: {available}); "
            f"name one of those, or rebuild with `opa build -t wasm -e {requested}`",
        )
    if DEFAULT_ENTRYPOINT in entrypoints:
        return DEFAULT_ENTRYPOINT, entrypoints[DEFAULT_ENTRYPOINT]
    if len(entrypoints) == 1:
        name, ident = next(iter(entrypoints.items()))
        return name, ident
    return Problem(
        "spec.wasm.entrypoint",
        f"the module has {len(entrypoints)} entrypoints ({available}) and none is the default "
        f"{DEFAULT_ENTRYPOINT!r}; set spec.wasm.entrypoint to the one to evaluate",
    )
