"""How the conformance runner turns one OPA test case into a WebAssembly module (cached).

Split from ``opa_conformance`` (which loads, runs and reports the cases) so that each
stays small. A case is built the way a policy for the sidecar is: its query wrapped in
a partial-set rule (``results contains {"x": x, ...} if { <query> }``, one binding
object per solution) and ``opa build -t wasm -e conformance_wrapper_q/results``.
A case that does not build so is compiled as OPA's own wasm harness compiles every case
(``rego.New(rego.Query(q), rego.Module(...)).Compile``, via the test bed's
``opa-wasm-query``, testbed/opa-wasm-query/main.go): the query is planned as the
module's entrypoint ``eval``, no rule, and its result set is the binding objects. That
runs what the wrapper cannot: a query reading all of ``data`` (``data = x``), which as
a rule reads itself (``rego_recursion_error``), and a query calling the harness's own
test builtin ``test.sleep``. A case neither way compiles fails OPA's harness too.

Modules and build errors are cached under ``<cache>/<opa version>/`` keyed by a hash of
what went into the build, so a second run builds nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "ENTRYPOINT",
    "QUERY_ENTRYPOINT",
    "WRAPPER_PACKAGE",
    "Built",
    "build_case",
    "build_key",
    "build_skip_reason",
    "query_build_key",
    "wrapper_module",
]

ROOT = Path(__file__).resolve().parents[1]
WRAPPER_PACKAGE = "conformance_wrapper_q"
ENTRYPOINT = f"{WRAPPER_PACKAGE}/results"
#: The entrypoint OPA's ``rego.Compile`` gives a planned query (its planQuery's name).
QUERY_ENTRYPOINT = "eval"


@dataclasses.dataclass(frozen=True)
class Built:
    """A case's module (or why there is none) and how to read its result set."""

    wasm: bytes | None
    error: str = ""
    #: The query compiled as a query (entrypoint ``eval``): the result set *is* the
    #: bindings, rather than ``[{"result": <set of bindings>}]`` from the wrapper rule.
    as_query: bool = False

    @property
    def entrypoint(self) -> str:
        return QUERY_ENTRYPOINT if self.as_query else ENTRYPOINT

    def bindings(self, result: list[Any]) -> list[Any]:
        """The binding objects of the query's solutions, from the entrypoint's result set."""
        if self.as_query:
            return result
        return result[0]["result"] if result else []


def _binding_vars(body: dict[str, Any]) -> list[str]:
    names: set[str] = set()
    for binding in body.get("want_result") or []:
        names.update(binding)
    return sorted(names)


def wrapper_module(case: Any) -> str:
    """The query as a partial set of binding objects (one per solution)."""
    names = _binding_vars(case.body)
    obj = "{" + ", ".join(f'"{n}": {n}' for n in names) + "}"
    query = case.body["query"]
    head = f"results contains {obj} if" if case.rego_version == "v1" else f"results[{obj}]"
    return f"package {WRAPPER_PACKAGE}\n\n{head} {{\n{query}\n}}\n"


def build_key(case: Any, version: str) -> str:
    h = hashlib.sha256()
    for part in [version, case.rego_version, wrapper_module(case), *case.body.get("modules", [])]:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _query_request(case: Any) -> bytes:
    return json.dumps(
        {
            "query": case.body["query"],
            "modules": case.body.get("modules") or [],
            "rego_version": case.rego_version,
            "experimental_keywords": bool(case.body.get("experimental_keywords")),
        },
        sort_keys=True,
    ).encode()


def query_build_key(case: Any, version: str) -> str:
    return "q-" + hashlib.sha256(version.encode() + b"\0" + _query_request(case)).hexdigest()[:32]


def build_skip_reason(build_error: str) -> str:
    """Why a case whose module did not build (either way) is skipped."""
    lines = build_error.splitlines()
    first = next((line for line in lines if "rego_" in line), lines[0] if lines else "")
    return f"does not compile to wasm (OPA's harness fails it too): {first.strip()[:200]}"


def build_case(opa: Path, version: str, case: Any, cache_root: Path) -> Built:
    """The case's module, built with the wrapper rule, else compiled as a query as OPA's
    harness compiles it; cached in ``cache_root/version``."""
    cache = cache_root / version
    cache.mkdir(parents=True, exist_ok=True)
    wasm, error = _cached(cache, build_key(case, version), lambda: _opa_build(opa, case))
    if wasm is not None:
        return Built(wasm)
    wasm, error = _cached(cache, query_build_key(case, version), lambda: _compile_query(case))
    return Built(wasm, error, as_query=True)


def _cached(cache: Path, key: str, build: Any) -> tuple[bytes | None, str]:
    wasm_path, err_path = cache / f"{key}.wasm", cache / f"{key}.err"
    if wasm_path.exists():
        return wasm_path.read_bytes(), ""
    if err_path.exists():
        return None, err_path.read_text()
    wasm, error = build()
    if wasm is None:
        _write_atomic(err_path, error.encode())
    else:
        _write_atomic(wasm_path, wasm)
    return wasm, error


def _opa_build(opa: Path, case: Any) -> tuple[bytes | None, str]:
    with tempfile.TemporaryDirectory(prefix="opa-case-") as tmp:
        files = []
        for i, text in enumerate([wrapper_module(case), *case.body.get("modules", [])]):
            path = Path(tmp) / f"module-{i}.rego"
            path.write_text(text)
            files.append(str(path))
        bundle = Path(tmp) / "bundle.tar.gz"
        cmd = [str(opa), "build", "-t", "wasm", "-e", ENTRYPOINT, "-o", str(bundle)]
        if case.rego_version == "v0":
            cmd.append("--v0-compatible")
        done = subprocess.run([*cmd, *files], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, (done.stderr or done.stdout).strip()
        with tarfile.open(bundle) as tar:
            member = tar.extractfile("/policy.wasm")
            assert member is not None
            return member.read(), ""


@functools.cache
def _query_compiler() -> Path:
    """The test bed's opa-wasm-query (found or built from OPA's Go module and cached)."""
    sys.path.insert(0, str(ROOT / "testbed"))
    from pkg_testbed.binaries import ensure  # noqa: PLC0415 - importable only after the insert

    return Path(ensure("opa-wasm-query"))


def _compile_query(case: Any) -> tuple[bytes | None, str]:
    done = subprocess.run(
        [str(_query_compiler())], input=_query_request(case), capture_output=True, check=False
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).decode(errors="replace").strip()
        return None, f"opa-wasm-query (OPA's rego.Compile): {message}"
    return done.stdout, ""


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
