"""One running OPA policy: a wasmtime store, its capped memory, the host imports, the hot call.

An :class:`OpaInstance` is built from a compiled module: it creates the linear
memory (``env.memory``, capped at the limits' page count), provides
``opa_abort``, ``opa_println`` and ``opa_builtin0..4``, instantiates, checks the
ABI version, reads ``entrypoints()`` and ``builtins()``, loads ``data`` once
and remembers the heap pointer after it. Each evaluation then writes the input
JSON at that heap pointer and makes the single ABI 1.2 call
``opa_eval(0, entrypoint, data, input, input_len, heap_after_input, 0)``,
which resets OPA's heap to that point, so nothing is ever freed and nothing
leaks. The result (a NUL-terminated JSON result set) is read straight out of
linear memory.

Memories never move (the engine sets ``memory_may_move = False``), so the
memory's base address is read once. Every read of a string in linear memory
is bounded by the memory's current size, so a corrupt or hostile module cannot
make the host read outside it.

A failed call (trap, abort, deadline, out of memory) leaves the instance in an
unknown state: the engine discards it and builds a new one.

What the imports do on the host side (memory reads, abort, print, builtin
calls) is ``host``'s; ``HostAbort`` is re-exported here.
"""

from __future__ import annotations

import ctypes
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson

from evaluator_sidecar.policy.engines.wasm.abi import ExternShape, ModuleShape
from evaluator_sidecar.policy.engines.wasm.builtins import (
    PROVIDED,
    CallContext,
)
from evaluator_sidecar.policy.engines.wasm.fastcall import CallFailure, FastCaller, PublicCaller
from evaluator_sidecar.policy.engines.wasm.host import Host, HostAbort
from evaluator_sidecar.policy.engines.wasm.hostfuncs import RawHostFuncs, define_public
from evaluator_sidecar.policy.engines.wasm.limits import PAGE_SIZE, WasmLimits

if TYPE_CHECKING:
    import wasmtime

    from evaluator_sidecar.policy.engines.wasm.runtime import Runtime

__all__ = ["HostAbort", "InstanceError", "OpaInstance", "describe_module"]


class InstanceError(Exception):
    """The module could not be instantiated or prepared; ``problems`` say why."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{w}: {m}" for w, m in problems))
        self.problems = problems


def _valtype_name(vt: Any) -> str:
    return str(vt)


def describe_module(wt: ModuleType, module: wasmtime.Module) -> ModuleShape:
    """The module's imports and exports as a plain :class:`ModuleShape` for the ABI checks."""

    def shape(module_name: str, name: str, ty: Any) -> ExternShape:
        if isinstance(ty, wt.FuncType):
            return ExternShape(
                module_name,
                name,
                "func",
                tuple(_valtype_name(p) for p in ty.params),
                tuple(_valtype_name(r) for r in ty.results),
            )
        if isinstance(ty, wt.MemoryType):
            limits = ty.limits
            return ExternShape(
                module_name, name, "memory", min_pages=limits.min, max_pages=limits.max
            )
        if isinstance(ty, wt.GlobalType):
            return ExternShape(module_name, name, "global", value_type=_valtype_name(ty.content))
        if isinstance(ty, wt.TableType):
            return ExternShape(module_name, name, "table")
        return ExternShape(module_name, name, type(ty).__name__)

    imports = tuple(shape(i.module, i.name or "", i.type) for i in module.imports)
    exports = tuple(shape("", e.name, e.type) for e in module.exports)
    return ModuleShape(imports=imports, exports=exports)


class OpaInstance:
    """One instantiated policy with its data loaded; not thread-safe (the engine serialises)."""

    def __init__(
        self,
        rt: Runtime,
        module: wasmtime.Module,
        shape: ModuleShape,
        *,
        limits: WasmLimits,
        data_json: bytes,
        fast: bool,
    ) -> None:
        wt = rt.wasmtime
        self._rt = rt
        self._wt = wt
        self.limits = limits
        self.fast = fast
        ticks = limits.deadline_ticks(rt.ticker.tick_ms)
        rt.ticker.require_ticks(ticks)
        self._deadline_ticks = ticks
        ctx = CallContext(
            max_items=limits.max_memory_bytes // 16,
            max_string_bytes=limits.max_memory_bytes // 2,
        )
        self._host = host = Host(wt, fast, {}, ctx)

        store = wt.Store(rt.engine)
        self._store = store
        store.set_epoch_deadline(limits.load_ticks(rt.ticker.tick_ms))
        rt.ticker.touch()
        memory_import = shape.memory_import
        min_pages = memory_import.min_pages if memory_import else 2
        max_pages = limits.max_memory_pages
        if memory_import and memory_import.max_pages is not None:
            max_pages = min(max_pages, memory_import.max_pages)
        if min_pages > max_pages:
            raise InstanceError(
                [
                    (
                        "memory",
                        f"the module needs at least {min_pages} pages of memory; "
                        f"the cap is {max_pages} "
                        "(raise PKG_WASM_MAX_MEMORY_PAGES)",
                    )
                ]
            )
        self.max_pages = max_pages
        memory = wt.Memory(store, wt.MemoryType(wt.Limits(min_pages, max_pages)))
        self._memory = memory
        linker = wt.Linker(rt.engine)
        linker.define(store, "env", "memory", memory)
        if fast:
            raw = RawHostFuncs(wt, store)
            self._host_funcs: Any = raw  # keeps the C callbacks alive as long as the store

            def define(nparams: int, nresults: int, handler: Any) -> Any:
                return raw.define(nparams, nresults, handler)
        else:
            self._host_funcs = None

            def define(nparams: int, nresults: int, handler: Any) -> Any:
                return define_public(wt, store, nparams, nresults, handler)

        linker.define(store, "env", "opa_abort", define(1, 0, host.opa_abort))
        linker.define(store, "env", "opa_println", define(1, 0, host.opa_println))
        for n in range(5):
            linker.define(store, "env", f"opa_builtin{n}", define(n + 2, 1, host.opa_builtin))
        try:
            instance = linker.instantiate(store, module)
        except (wt.Trap, wt.WasmtimeError, HostAbort) as exc:
            raise InstanceError([("instantiate", str(exc).strip().splitlines()[0])]) from exc
        exports = instance.exports(store)
        self._exports = exports  # keeps the Func objects the callers point into alive

        def caller(name: str, nparams: int) -> Any:
            func = exports[name]
            if fast:
                return FastCaller(wt, store, func, nparams, 1)
            return PublicCaller(wt, store, func, nparams, 1)

        # The fast path passes the raw store context; the public API takes the store itself.
        self._ctx: Any = store._context() if fast else store
        host.memory = memory
        if fast:
            bindings = importlib.import_module("wasmtime._bindings")
            host.memory_ref = ctypes.byref(memory._memory)
            host.size_of = bindings._wasmtime_memory_data_size
            self._set_deadline = bindings._wasmtime_context_set_epoch_deadline
        host.base = ctypes.addressof(memory.data_ptr(store).contents)
        host.value_dump = caller("opa_value_dump", 1)
        host.value_parse = caller("opa_value_parse", 2)
        host.malloc = caller("opa_malloc", 1)
        self._json_dump = caller("opa_json_dump", 1)
        self._json_parse = caller("opa_json_parse", 2)
        self._heap_ptr_get = caller("opa_heap_ptr_get", 0)
        self._eval = caller("opa_eval", 7)

        self.abi_version = (
            int(exports["opa_wasm_abi_version"].value(store)),
            int(exports["opa_wasm_abi_minor_version"].value(store)),
        )
        self.entrypoints = self._read_json_export(caller("entrypoints", 0))
        self.required_builtins = self._read_json_export(caller("builtins", 0))
        host.builtins = {
            int(ident): PROVIDED[name]
            for name, ident in self.required_builtins.items()
            if name in PROVIDED
        }
        self._data_addr = self._load_data(data_json)
        self._heap = self._heap_ptr_get(self._ctx)
        #: A size the memory is known to have reached (it never shrinks).
        self._known_size = host.memory_size(self._ctx)
        self._entrypoint_id = -1

    # -- preparation -----------------------------------------------------------------
    def _read_json_export(self, export: Any) -> dict[str, int]:
        value_addr = export(self._ctx)
        text = self._host.read_cstring(self._ctx, self._json_dump(self._ctx, value_addr))
        value = orjson.loads(text)
        if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
            raise InstanceError([("exports", f"expected a JSON object of ids, got {text[:80]!r}")])
        return value

    def _load_data(self, data_json: bytes) -> int:
        try:
            addr = self._host.malloc(self._ctx, len(data_json))
            self._write(addr, data_json)
            value = self._json_parse(self._ctx, addr, len(data_json))
        except CallFailure as exc:
            raise InstanceError(
                [("data", f"loading the snapshot's data failed: {exc.message}")]
            ) from exc
        if not value:
            raise InstanceError(
                [("data", "the policy could not parse the snapshot's data as JSON")]
            )
        return int(value)

    def _write(self, addr: int, payload: bytes) -> None:
        end = addr + len(payload)
        if end > self._host.memory_size(self._ctx):
            raise InstanceError([("data", "write outside the policy's memory")])
        ctypes.memmove(self._host.base + addr, payload, len(payload))

    def select_entrypoint(self, ident: int) -> None:
        self._entrypoint_id = ident
        if self.fast:
            buf = self._eval.buf
            buf[1].i32 = ident
            buf[2].i32 = self._data_addr
            buf[3].i32 = self._heap
            buf[6].i32 = 0  # JSON output

    # -- evaluation ------------------------------------------------------------------
    def _ensure_memory(self, end: int) -> None:
        """Grow the memory so that [0, end) is addressable, or raise CallFailure("memory")."""
        size = self._host.memory_size(self._ctx)
        if end <= size:
            return
        pages = -(-(end - size) // PAGE_SIZE)
        try:
            self._memory.grow(self._store, pages)
        except self._wt.WasmtimeError:
            raise CallFailure(
                "memory",
                f"the input ({end - self._heap} bytes) does not fit the memory cap of "
                f"{self.max_pages} pages",
            ) from None

    def evaluate(self, input_json: bytes, value_format: bool = False) -> bytes:
        """Evaluate the selected entrypoint on ``input_json``; the raw result set.

        JSON by default; ``value_format`` asks for Rego text (sets stay sets).
        """
        n = len(input_json)
        heap = self._heap
        end = heap + n
        host = self._host
        host.ctx.now = None  # time.now_ns is fixed per evaluation
        if self.fast:
            ctx = self._ctx
            # Memory only grows, so a size seen before is a safe bound without asking again.
            if end > self._known_size:
                self._ensure_memory(end)
                self._known_size = host.memory_size(ctx)
            ctypes.memmove(host.base + heap, input_json, n)
            caller = self._eval
            buf = caller.buf
            buf[0].i32 = 0
            buf[4].i32 = n
            buf[6].i32 = 1 if value_format else 0
            buf[5].i32 = end
            self._set_deadline(ctx, self._deadline_ticks)
            self._rt.ticker.touch()
            addr = caller.call_prepared(ctx)
            try:
                return host.read_cstring(ctx, addr, self._known_size)
            except HostAbort as exc:
                raise CallFailure("host", str(exc), exc) from None
        return self.evaluate_public(input_json, value_format)

    def evaluate_public(self, input_json: bytes, value_format: bool = False) -> bytes:
        """The same evaluation through wasmtime-py's public API only (the baseline)."""
        self._host.ctx.now = None
        n = len(input_json)
        end = self._heap + n
        self._ensure_memory(end)
        self._memory.write(self._store, input_json, self._heap)
        self._store.set_epoch_deadline(self._deadline_ticks)
        self._rt.ticker.touch()
        eval_func = self._exports["opa_eval"]
        public = PublicCaller(self._wt, self._store, eval_func, 7, 1)
        addr = public(
            None, 0, self._entrypoint_id, self._data_addr, self._heap, n, end, int(value_format)
        )
        size = self._memory.data_len(self._store)
        if not 0 < addr < size:
            message = f"the policy returned an address outside its memory ({addr})"
            raise CallFailure("host", message, HostAbort(message))
        data = self._memory.read(self._store, addr, size)
        nul = data.find(0)
        if nul < 0:
            message = "the policy returned a string with no terminating NUL inside its memory"
            raise CallFailure("host", message, HostAbort(message))
        return bytes(data[:nul])

    @property
    def memory_pages(self) -> int:
        return int(self._memory.size(self._store))

    def close(self) -> None:
        """Free the store now (not at garbage collection); the instance is unusable after."""
        self._exports = None
        self._store.close()
        self._host_funcs = None
