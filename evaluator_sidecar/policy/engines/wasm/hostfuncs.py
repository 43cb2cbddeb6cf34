"""The policy's imports as host functions, defined through wasmtime's C API or its public API.

A host function here is ``handler(ctx, *args) -> int | None``: ``ctx`` is what
the engine's callers need to call back into the module (the raw store context
on the fast path, wasmtime-py's ``Caller`` otherwise), ``args`` are the i32
arguments as unsigned ints, and the result is the i32 to return.

wasmtime-py's ``Func`` wraps every host call in a generic trampoline that
builds a ``Caller`` and converts each value through ``Val`` objects (~25 µs a
call here). :func:`define_raw` registers a ctypes callback with
``wasmtime_func_new_unchecked`` instead, which reads and writes the raw value
array directly (a few µs). A handler that raises makes the call return a trap;
the exception is parked per thread for the caller to report
(``fastcall.take_host_exception``).

:func:`define_public` is the same through the public API, used when the fast
path is unavailable.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from evaluator_sidecar.policy.engines.wasm.fastcall import park_host_exception

if TYPE_CHECKING:
    import wasmtime

__all__ = ["HostHandler", "RawHostFuncs", "define_public"]

HostHandler = Callable[..., "int | None"]

_TRAP_MESSAGE = b"host function failed"
_I32_SPAN = 1 << 32
_I32_MAX = (1 << 31) - 1


def _signed(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - _I32_SPAN if value > _I32_MAX else value


class RawHostFuncs:
    """Defines host functions as C callbacks; keeps the callbacks alive as long as itself."""

    def __init__(self, wt: ModuleType, store: Any) -> None:
        self._wt = wt
        self._store = store
        self._b = importlib.import_module("wasmtime._bindings")
        self._callbacks: list[Any] = []
        dll = self._b.dll
        # Own function objects (dll[...] makes a new one), so the restypes set here
        # do not change wasmtime-py's.
        self._caller_context = dll["wasmtime_caller_context"]
        self._caller_context.restype = ctypes.POINTER(self._b.wasmtime_context_t)
        self._caller_context.argtypes = [ctypes.c_void_p]
        self._trap_new = dll["wasmtime_trap_new"]
        self._trap_new.restype = ctypes.c_void_p
        self._trap_new.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self._no_finalizer = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))

    def define(self, nparams: int, nresults: int, handler: HostHandler) -> wasmtime.Func:
        wt = self._wt
        caller_context = self._caller_context
        trap_new = self._trap_new

        def callback(_env: Any, caller: Any, raw: Any, _n: int) -> int:
            try:
                ctx = caller_context(ctypes.cast(caller, ctypes.c_void_p))
                result = handler(ctx, *[raw[i].i32 & 0xFFFFFFFF for i in range(nparams)])
                if nresults:
                    raw[0].i32 = _signed(result or 0)
                return 0
            except BaseException as exc:  # noqa: BLE001 - must not unwind through C; it becomes a trap
                park_host_exception(exc)
                return int(trap_new(_TRAP_MESSAGE, len(_TRAP_MESSAGE)) or 0)

        c_callback = self._b.wasmtime_func_unchecked_callback_t(callback)
        self._callbacks.append(c_callback)
        i32 = wt.ValType.i32()
        functype = wt.FuncType([i32] * nparams, [i32] * nresults)
        out = self._b.wasmtime_func_t()
        self._b._wasmtime_func_new_unchecked(
            self._store._context(),
            functype.ptr(),
            c_callback,
            None,
            self._no_finalizer,
            ctypes.byref(out),
        )
        func: wasmtime.Func = wt.Func._from_raw(out)
        return func


def define_public(
    wt: ModuleType, store: Any, nparams: int, nresults: int, handler: HostHandler
) -> wasmtime.Func:
    """The same host function through wasmtime-py's ``Func`` (its ``Caller`` is the ctx)."""
    i32 = wt.ValType.i32()

    def call(caller: Any, *args: int) -> int | None:
        result = handler(caller, *[a & 0xFFFFFFFF for a in args])
        return _signed(result or 0) if nresults else None

    func: wasmtime.Func = wt.Func(
        store, wt.FuncType([i32] * nparams, [i32] * nresults), call, access_caller=True
    )
    return func
