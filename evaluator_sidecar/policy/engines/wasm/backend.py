"""The live instance behind one ``OpaWasm``: serialised calls, and a rebuild after any failure.

A failed call (trap, abort, deadline, out of memory) leaves an instance in an
unknown state, so ``WasmBackend.run`` discards it, builds a new one at once and
raises an ``EvaluationError`` that says what happened and what to change; the
next call works. Behaviour: docs/wasm-engine.md ("Evaluation").
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from evaluator_sidecar.policy.engines.wasm import abi
from evaluator_sidecar.policy.engines.wasm.fastcall import CallFailure
from evaluator_sidecar.policy.engines.wasm.host import HostAbort
from evaluator_sidecar.policy.engines.wasm.instance import OpaInstance
from evaluator_sidecar.policy.engines.wasm.limits import WasmLimits
from evaluator_sidecar.policy.engines.wasm.runtime import Runtime
from evaluator_sidecar.policy.errors import EvaluationError

__all__ = ["WasmBackend"]

#: The engine module's logger, as before this class moved here: log filters name it.
log = logging.getLogger("evaluator_sidecar.policy.engines.wasm.engine")


class WasmBackend:
    """The live instance of one module, rebuilt after any failed call."""

    degraded = False

    def __init__(
        self,
        rt: Runtime,
        module: Any,
        shape: abi.ModuleShape,
        *,
        version: str,
        limits: WasmLimits,
        data_json: bytes,
        fast: bool,
    ) -> None:
        self.rt = rt
        self.module = module
        self.shape = shape
        self.version = version
        self.limits = limits
        self.data_json = data_json
        self.fast = fast
        self.entrypoint = ""
        self.entrypoint_id = -1
        self.failures = 0
        self.rebuilds = 0
        self._lock = threading.Lock()
        self.instance: OpaInstance | None = self._new_instance()

    def _new_instance(self) -> OpaInstance:
        instance = OpaInstance(
            self.rt,
            self.module,
            self.shape,
            limits=self.limits,
            data_json=self.data_json,
            fast=self.fast,
        )
        if self.entrypoint_id >= 0:
            instance.select_entrypoint(self.entrypoint_id)
        return instance

    def select(self, name: str, ident: int) -> None:
        self.entrypoint, self.entrypoint_id = name, ident
        if self.instance is not None:
            self.instance.select_entrypoint(ident)

    def run(self, payload: bytes, *, public: bool = False, value_format: bool = False) -> bytes:
        with self._lock:
            instance = self.instance
            if instance is None:
                instance = self._rebuild_locked(None)
            try:
                if public:
                    return instance.evaluate_public(payload, value_format)
                return instance.evaluate(payload, value_format)
            except CallFailure as exc:
                self.failures += 1
                message = self._describe(exc)
                log.warning("wasm policy %s: %s", self.version, message)
                self._rebuild_locked(instance)
                raise EvaluationError(message) from None

    def _rebuild_locked(self, failed: OpaInstance | None) -> OpaInstance:
        if failed is not None:
            failed.close()
        self.instance = None
        try:
            self.instance = self._new_instance()
        except Exception as exc:
            log.exception(
                "wasm policy %s: rebuilding the instance failed; the next call retries",
                self.version,
            )
            raise EvaluationError(
                f"policy {self.version} could not be restarted after a failure: {exc}"
            ) from exc
        self.rebuilds += 1
        return self.instance

    def _describe(self, exc: CallFailure) -> str:
        where = f"policy {self.version} ({self.entrypoint})"
        cap = f"{self.limits.max_memory_pages} pages = {self.limits.max_memory_bytes / 2**20:g} MiB"
        if exc.kind == "timeout":
            return (
                f"{where} did not finish within its {self.limits.deadline_ms:g} ms deadline "
                "and was stopped; "
                "the engine was reset. Make the policy cheaper or raise PKG_WASM_DEADLINE_MS."
            )
        if exc.kind == "memory" or (
            isinstance(exc.cause, HostAbort) and "opa_malloc: failed" in exc.message
        ):
            return (
                f"{where} ran out of memory (cap {cap}) and was stopped; the engine was reset. "
                "Reduce the input or data, or raise PKG_WASM_MAX_MEMORY_PAGES."
            )
        if isinstance(exc.cause, HostAbort):
            return f"{where} aborted: {exc.message}; the engine was reset"
        if exc.kind == "host":
            return f"{where} failed in a host builtin: {exc.message}; the engine was reset"
        return f"{where} trapped: {exc.message}; the engine was reset"

    def close(self) -> None:
        with self._lock:
            if self.instance is not None:
                self.instance.close()
                self.instance = None
