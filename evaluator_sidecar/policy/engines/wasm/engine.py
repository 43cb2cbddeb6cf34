"""``OpaWasm``: the ``wasm`` engine, OPA policies built with ``opa build -t wasm`` run in wasmtime.

It owns loading (``load_from_bytes`` / ``from_snapshot``: checksum, compile or
cache, ABI and builtin checks, instantiation, entrypoint, ``data``, with every
problem reported in one ``SnapshotLoadError``), evaluation (one ``opa_eval``
call per evaluation, the result set read in OPA's canonical form, checked and
turned into an engine result)
and rebuilding the instance after a failed call. Without wasmtime it loads as
a no-op (``degraded = True``). Behaviour: docs/wasm-engine.md.

The live instance and its rebuild are ``backend``'s; the input and result JSON
are ``result``'s (``result_from_json`` is re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from evaluator_sidecar.policy.engines.base import EngineResult
from evaluator_sidecar.policy.engines.wasm import abi
from evaluator_sidecar.policy.engines.wasm.backend import WasmBackend
from evaluator_sidecar.policy.engines.wasm.builtins import excluded_reasons, missing_builtins
from evaluator_sidecar.policy.engines.wasm.cache import compiled_module
from evaluator_sidecar.policy.engines.wasm.fallback import (
    NoopBackend,
    warn_fallback_once,
)
from evaluator_sidecar.policy.engines.wasm.instance import (
    InstanceError,
    describe_module,
)
from evaluator_sidecar.policy.engines.wasm.limits import PAGE_SIZE, WasmLimits
from evaluator_sidecar.policy.engines.wasm.result import (
    ResultFormatError,
    decode_result_set,
    json_result_set,
    json_slow,
    result_from_json,
    result_from_value,
)
from evaluator_sidecar.policy.engines.wasm.runtime import get_runtime, import_problem
from evaluator_sidecar.policy.errors import Problem, SnapshotLoadError
from evaluator_sidecar.policy.model import PKGSnapshotData, normalize_checksum, sha256_hex

__all__ = ["OpaWasm", "result_from_json"]

log = logging.getLogger(__name__)


def _refused_builtins(missing: list[str]) -> Problem:
    excluded = excluded_reasons(missing)
    why = f" (left out on purpose: {'; '.join(excluded)})" if excluded else ""
    return Problem(
        "builtins",
        "the policy needs builtin(s) this engine does not provide: "
        f"{', '.join(missing)}; rewrite the policy without them (see "
        "docs/wasm-engine.md, Builtins, for the provided set) or use the "
        f"native engine{why}",
    )


class OpaWasm:
    """An OPA WebAssembly policy (engine ``wasm``); behaviour: docs/wasm-engine.md."""

    DEFAULT_ENTRYPOINT = abi.DEFAULT_ENTRYPOINT

    def __init__(self, backend: WasmBackend | NoopBackend, *, version: str, sha256: str) -> None:
        self._backend = backend
        self.version = version
        self.sha256 = sha256
        #: Where the compiled module came from: memory, disk or compiled (None in fallback).
        self.compile_source: str | None = None

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_snapshot(
        cls, snapshot: PKGSnapshotData, *, limits: WasmLimits | None = None
    ) -> OpaWasm:
        """Load ``snapshot.wasm_artifact`` with its checksum, data and entrypoint."""
        if snapshot.wasm_artifact is None:
            raise SnapshotLoadError(
                snapshot.version,
                [
                    Problem(
                        "spec.wasm",
                        "the snapshot has no WebAssembly artifact; "
                        "set spec.wasm.inline or configMapRef",
                    )
                ],
            )
        return cls.load_from_bytes(
            snapshot.wasm_artifact,
            checksum=snapshot.checksum,
            data=snapshot.data,
            entrypoint=snapshot.entrypoint,
            version=snapshot.version,
            limits=limits,
        )

    @classmethod
    def load_from_bytes(
        cls,
        wasm_bytes: bytes,
        checksum: str | None = None,
        *,
        data: Mapping[str, Any] | None = None,
        entrypoint: str | None = None,
        version: str = "(inline)",
        limits: WasmLimits | None = None,
        cache_dir: Path | str | None = "default",
        fast_path: bool | None = None,
    ) -> OpaWasm:
        """Load a module built by ``opa build -t wasm``; ``SnapshotLoadError`` lists every problem.

        ``checksum`` (``sha256-<hex>``, ``sha256:<hex>`` or bare hex) is verified first.
        ``fast_path=False`` forces wasmtime's public call API (the benchmark's baseline).
        """
        wasm_bytes = bytes(wasm_bytes)
        actual = sha256_hex(wasm_bytes)
        if checksum is not None:
            try:
                expected = normalize_checksum(checksum)
            except ValueError as exc:
                raise SnapshotLoadError(version, [Problem("checksum", str(exc))]) from None
            if expected != actual:
                raise SnapshotLoadError(
                    version,
                    [
                        Problem(
                            "checksum",
                            f"the artifact's sha256 is {actual} but the snapshot says {expected}; "
                            "the artifact was changed or the checksum is stale: "
                            "rebuild one from the other",
                        )
                    ],
                )
        try:
            data_json = orjson.dumps(dict(data or {}))
        except TypeError as exc:
            raise SnapshotLoadError(
                version, [Problem("spec.data", f"is not JSON: {exc}")]
            ) from None

        rt = get_runtime()
        if rt is None:
            reason = import_problem() or "wasmtime could not be imported"
            warn_fallback_once(reason)
            return cls(NoopBackend(reason), version=version, sha256=actual)

        try:
            module, source = compiled_module(rt, wasm_bytes, actual, cache_dir=cache_dir)
        except rt.wasmtime.WasmtimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
            raise SnapshotLoadError(
                version,
                [
                    Problem(
                        "wasm",
                        f"not a valid WebAssembly module ({first}); "
                        "upload the .wasm that opa build wrote",
                    )
                ],
            ) from None
        shape = describe_module(rt.wasmtime, module)
        problems = abi.check_shape(shape)
        if problems:
            raise SnapshotLoadError(version, problems)

        use_fast = rt.fast_path if fast_path is None else (fast_path and rt.fast_path)
        try:
            backend = WasmBackend(
                rt,
                module,
                shape,
                version=version,
                limits=limits or WasmLimits.from_env(),
                data_json=data_json,
                fast=use_fast,
            )
        except InstanceError as exc:
            raise SnapshotLoadError(version, [Problem(w, m) for w, m in exc.problems]) from None
        instance = backend.instance
        assert instance is not None
        problems = abi.check_abi_version(*instance.abi_version)
        missing = missing_builtins(instance.required_builtins)
        if missing:
            problems.append(_refused_builtins(missing))
        chosen = abi.choose_entrypoint(instance.entrypoints, entrypoint)
        if isinstance(chosen, Problem):
            problems.append(chosen)
        if problems:
            backend.close()
            raise SnapshotLoadError(version, problems)
        assert not isinstance(chosen, Problem)
        backend.select(*chosen)
        engine = cls(backend, version=version, sha256=actual)
        engine.compile_source = source
        log.info(
            "wasm policy %s loaded (%s, entrypoint %s, %s call path, module from %s)",
            version,
            actual[:12],
            chosen[0],
            "fast" if use_fast else "public",
            source,
        )
        return engine

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, task_facts: Mapping[str, Any]) -> EngineResult:
        """Evaluate the entrypoint with ``task_facts`` as ``input``."""
        backend = self._backend
        if isinstance(backend, NoopBackend):
            return backend.evaluate(task_facts)
        try:
            payload = orjson.dumps(task_facts)
        except TypeError:
            payload = json_slow(task_facts)
        return result_from_value(backend.run(payload, value_format=True), backend.entrypoint)

    def evaluate_public(self, task_facts: Mapping[str, Any]) -> EngineResult:
        """The same evaluation through wasmtime-py's public API (the fast path's reference)."""
        backend = self._backend
        if isinstance(backend, NoopBackend):
            return backend.evaluate(task_facts)
        try:
            payload = orjson.dumps(task_facts)
        except TypeError:
            payload = json_slow(task_facts)
        return result_from_value(
            backend.run(payload, public=True, value_format=True), backend.entrypoint
        )

    def query(
        self, input_value: Any = None, *, has_input: bool = True, input_text: bytes | None = None
    ) -> list[Any]:
        """OPA's result set for the entrypoint (``[{"result": value}]``, or ``[]`` if undefined).

        ``has_input=False`` leaves ``input`` undefined. ``input_text``, if given, is the
        input as OPA's value text, a Rego term (sets allowed), handed to the module's own
        parser as is, as OPA's Go SDK hands it an ``ast.Term``. Used by tools that compare
        with OPA (the conformance runner), not by the sidecar's task evaluation.
        """
        backend = self._backend
        if isinstance(backend, NoopBackend):
            return []
        if input_text is not None:
            payload = input_text
        else:
            payload = orjson.dumps(input_value) if has_input else b""
        try:
            return decode_result_set(backend.run(payload, value_format=True))
        except ResultFormatError:
            # Object keys that are themselves objects or sets have no JSON form; OPA's
            # JSON output writes them as JSON text, so this result is read that way.
            return json_result_set(backend.run(payload))

    # -- introspection ---------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        return self._backend.degraded

    @property
    def entrypoint(self) -> str | None:
        return None if isinstance(self._backend, NoopBackend) else self._backend.entrypoint

    @property
    def fast_path(self) -> bool:
        return not isinstance(self._backend, NoopBackend) and self._backend.fast

    @property
    def limits(self) -> WasmLimits | None:
        return None if isinstance(self._backend, NoopBackend) else self._backend.limits

    @property
    def failures(self) -> int:
        return 0 if isinstance(self._backend, NoopBackend) else self._backend.failures

    @property
    def rebuilds(self) -> int:
        return 0 if isinstance(self._backend, NoopBackend) else self._backend.rebuilds

    @property
    def entrypoints(self) -> dict[str, int]:
        backend = self._backend
        if isinstance(backend, NoopBackend) or backend.instance is None:
            return {}
        return dict(backend.instance.entrypoints)

    @property
    def required_builtins(self) -> list[str]:
        backend = self._backend
        if isinstance(backend, NoopBackend) or backend.instance is None:
            return []
        return sorted(backend.instance.required_builtins)

    @property
    def memory_pages(self) -> int:
        backend = self._backend
        if isinstance(backend, NoopBackend) or backend.instance is None:
            return 0
        return backend.instance.memory_pages

    @property
    def memory_cap_bytes(self) -> int:
        limits = self.limits
        return 0 if limits is None else limits.max_memory_pages * PAGE_SIZE

    def close(self) -> None:
        """Release the instance now; evaluating afterwards rebuilds it."""
        if not isinstance(self._backend, NoopBackend):
            self._backend.close()
