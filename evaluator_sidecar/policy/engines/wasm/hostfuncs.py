"""The policy's imports as host functions, defined through wasmtime's C API or its public API.

A host function here is ``handler(ctx, *args) -> int | None``: ``ctx`` is what
the engine's callers need to call back into the module (the raw store context
on the fast path, wasmtime-py's ``Caller`` otherwise), ``args`` are the i32
arguments as unsigned ints, and the result is the i32 to return.

wasmtime-py's ``Func`` wraps every host call in a generic trampoline that
builds a ``Caller`` and converts each value through ``Val`` objects (~25 µs a
call here). :class:`RawHostFuncs` registers a ctypes callback with
``wasmtime_func_new_unchecked`` instead, which takes the caller and the raw
value array as plain addresses and unpacks all arguments in one step (a few
µs). A handler that raises makes the call return a trap; the exception is
parked per thread for the caller to report
(``fastcall.take_host_exception``).

:func:`define_public` is the same through the public API, used when the fast
path is unavailable.
"""

from __future__ import annotations

import ctypes
import importlib
import struct
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


#: The callback's C type with plain addresses for the caller and the value array: ctypes
#: then hands them over as ints, instead of building a pointer object for each.
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)
#: wasmtime_val_raw_t is 16 bytes; an i32 argument is its first 4 (little-endian).
_RAW_SIZE = 16
_ARGS = {n: struct.Struct("<" + "I12x" * n) for n in range(8)}


class RawHostFuncs:
    """Defines host functions as C callbacks; keeps the callbacks alive as long as itself."""

    def __init__(self, wt: ModuleType, store: Any) -> None:
        self._wt = wt
        self._store = store
        self._b = importlib.import_module("wasmtime._bindings")
        self._callbacks: list[Any] = []
        dll = self._b.dll
        # Own function objects (dll[...] makes a new one), so the types set here
        # do not change wasmtime-py's.
        self._caller_context = dll["wasmtime_caller_context"]
        self._caller_context.restype = ctypes.POINTER(self._b.wasmtime_context_t)
        self._caller_context.argtypes = [ctypes.c_void_p]
        self._trap_new = dll["wasmtime_trap_new"]
        self._trap_new.restype = ctypes.c_void_p
        self._trap_new.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
        self._no_finalizer = ctypes.cast(0, finalizer)
        self._new_unchecked = dll["wasmtime_func_new_unchecked"]
        self._new_unchecked.restype = None
        self._new_unchecked.argtypes = [
            ctypes.POINTER(self._b.wasmtime_context_t),
            ctypes.POINTER(self._b.wasm_functype_t),
            _CALLBACK,
            ctypes.c_void_p,
            finalizer,
            ctypes.POINTER(self._b.wasmtime_func_t),
        ]

    def define(self, nparams: int, nresults: int, handler: HostHandler) -> wasmtime.Func:
        wt = self._wt
        caller_context = self._caller_context
        trap_new = self._trap_new
        unpack = _ARGS[nparams].unpack
        string_at = ctypes.string_at
        size = _RAW_SIZE * nparams
        result_at = ctypes.c_int32.from_address

        def callback(_env: Any, caller: int, raw: int, _n: int) -> int:
            try:
                result = handler(caller_context(caller), *unpack(string_at(raw, size)))
                if nresults:
                    result_at(raw).value = _signed(result or 0)
                return 0
            except BaseException as exc:  # noqa: BLE001 - must not unwind through C; it becomes a trap
                park_host_exception(exc)
                return int(trap_new(_TRAP_MESSAGE, len(_TRAP_MESSAGE)) or 0)

        c_callback = _CALLBACK(callback)
        self._callbacks.append(c_callback)
        i32 = wt.ValType.i32()
        functype = wt.FuncType([i32] * nparams, [i32] * nresults)
        out = self._b.wasmtime_func_t()
        self._new_unchecked(
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
