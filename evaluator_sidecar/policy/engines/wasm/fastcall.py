"""Calling exported wasm functions: the preallocated C-API call, and the public-API baseline.

wasmtime-py's ``Func.__call__`` looks up the function's type, converts every
argument into a fresh ``wasmtime_val_t`` array, and boxes the results on each
call: about 100 µs per OPA evaluation here. :class:`FastCaller` instead calls
``wasmtime_func_call_unchecked`` on a ``wasmtime_val_raw_t`` array allocated
once, with the ``byref`` handles built once, and reads the result out of the
same array: a few µs. "Unchecked" means wasmtime trusts the argument types; the
caller checks the function's signature once, at construction.

:class:`PublicCaller` does the same through the public API. The engine uses it
when the fast path is unavailable (see ``runtime``), and a test checks that both
give the same results on the same inputs.

Both raise :class:`CallFailure` when the call does not return normally, with a
``kind`` of ``timeout`` (the epoch deadline passed), ``trap`` (a wasm trap),
``host`` (a host function raised; ``cause`` holds the exception) or ``error``.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import wasmtime

__all__ = [
    "CallFailure",
    "Caller",
    "FastCaller",
    "PublicCaller",
    "park_host_exception",
    "take_host_exception",
]


class CallFailure(Exception):
    """A call into wasm that did not return a result."""

    def __init__(self, kind: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.cause = cause


class Caller(Protocol):
    """Calls one exported i32 function with i32 arguments and returns its i32 result (or 0)."""

    def __call__(self, ctx: Any, *args: int) -> int: ...


_pending = threading.local()


def park_host_exception(exc: BaseException) -> None:
    """Remember why a host function is about to return a trap (per thread: calls run in many)."""
    _pending.exc = exc


def take_host_exception(func_module: ModuleType) -> BaseException | None:
    """Take the exception a host function raised: ours (per thread) or wasmtime-py's (global)."""
    exc: BaseException | None = getattr(_pending, "exc", None)
    if exc is not None:
        _pending.exc = None
    theirs: BaseException | None = getattr(func_module, "LAST_EXCEPTION", None)
    if theirs is not None:
        setattr(func_module, "LAST_EXCEPTION", None)  # noqa: B010 - a module's attribute
    return exc if exc is not None else theirs


def _classify(
    wt: ModuleType, trap: wasmtime.Trap | None, message: str, host: BaseException | None
) -> CallFailure:
    if isinstance(host, CallFailure):
        return host  # a nested call (from a host function) already failed: keep its reason
    if host is not None:
        return CallFailure("host", str(host) or type(host).__name__, host)
    if trap is not None and trap.trap_code == wt.TrapCode.INTERRUPT:
        return CallFailure("timeout", message)
    if trap is not None:
        return CallFailure("trap", message)
    return CallFailure("error", message)


def _first_line(text: str) -> str:
    """A one-line summary of wasmtime's message: the causes, and the innermost wasm frame.

    wasmtime writes ``error while executing at wasm backtrace:`` then frames
    (``0: 0x2aff - opa.wasm!opa_json_writer_emit_string``) then ``Caused by:``
    and numbered causes; the causes say what happened, the top frame where.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return text
    frame = next((line.split("!", 1)[1] for line in lines if " - " in line and "!" in line), "")
    if "Caused by:" in lines:
        causes = lines[lines.index("Caused by:") + 1 :]
        summary = "; ".join(
            c.split(": ", 1)[1] if c[:1].isdigit() and ": " in c else c for c in causes
        )
    else:
        summary = lines[0]
    return f"{summary} (in {frame})" if frame else summary


def check_signature(
    wt: ModuleType, store: Any, func: wasmtime.Func, nparams: int, nresults: int
) -> None:
    """Raise TypeError unless ``func`` takes ``nparams`` i32 and returns ``nresults`` i32."""
    ty = func.type(store)
    i32 = wt.ValType.i32()
    if (
        len(ty.params) != nparams
        or len(ty.results) != nresults
        or not all(p == i32 for p in [*ty.params, *ty.results])
    ):
        raise TypeError(
            f"expected an i32 function with {nparams} parameter(s) and {nresults} result(s)"
        )


class FastCaller:
    """One exported function, called by ``wasmtime_func_call_unchecked`` with a reused buffer."""

    __slots__ = (
        "_b",
        "_call",
        "_func_module",
        "_n",
        "_trap",
        "_wt",
        "buf",
        "func_ref",
        "nparams",
        "trap_ref",
    )

    def __init__(
        self, wt: ModuleType, store: Any, func: wasmtime.Func, nparams: int, nresults: int
    ) -> None:
        check_signature(wt, store, func, nparams, nresults)
        self._wt = wt
        self._b = importlib.import_module("wasmtime._bindings")
        self._func_module = importlib.import_module("wasmtime._func")
        self._n = max(nparams, nresults, 1)
        self.nparams = nparams
        #: Arguments in, results out (results overwrite the first slots).
        self.buf = (self._b.wasmtime_val_raw_t * self._n)()
        # The Func object must outlive these handles: the engine keeps it in its exports.
        self.func_ref = ctypes.byref(func._func)
        self._trap = ctypes.POINTER(self._b.wasm_trap_t)()
        self.trap_ref = ctypes.byref(self._trap)
        self._call = self._b._wasmtime_func_call_unchecked

    def __call__(self, ctx: Any, *args: int) -> int:
        buf = self.buf
        for i, value in enumerate(args):
            buf[i].i32 = value
        err = self._call(ctx, self.func_ref, buf, self._n, self.trap_ref)
        if err or self._trap:
            raise self.failure(err)
        return int(buf[0].i32) & 0xFFFFFFFF

    def call_prepared(self, ctx: Any) -> int:
        """Call with the arguments already in :attr:`buf` (the hot path sets only what changes)."""
        err = self._call(ctx, self.func_ref, self.buf, self._n, self.trap_ref)
        if err or self._trap:
            raise self.failure(err)
        return int(self.buf[0].i32) & 0xFFFFFFFF

    def failure(self, err: Any) -> CallFailure:
        """Turn a returned error or trap into a CallFailure, releasing wasmtime's objects."""
        wt = self._wt
        host = take_host_exception(self._func_module)
        if err:
            error = wt.WasmtimeError._from_ptr(err)
            return _classify(wt, None, _first_line(str(error)), host)
        # Hand the trap to a Trap object (which frees it) and clear our slot for the next call.
        owned = ctypes.cast(self._trap, ctypes.POINTER(self._b.wasm_trap_t))
        ctypes.memset(ctypes.addressof(self._trap), 0, ctypes.sizeof(self._trap))
        trap = wt.Trap._from_ptr(owned)
        return _classify(wt, trap, _first_line(trap.message), host)


class PublicCaller:
    """The same call through wasmtime-py's public API (``Func.__call__``)."""

    __slots__ = ("_func", "_func_module", "_store", "_wt")

    def __init__(
        self, wt: ModuleType, store: Any, func: wasmtime.Func, nparams: int, nresults: int
    ) -> None:
        check_signature(wt, store, func, nparams, nresults)
        self._wt = wt
        self._func = func
        self._store = store
        self._func_module = importlib.import_module("wasmtime._func")

    def __call__(self, ctx: Any, *args: int) -> int:
        wt = self._wt
        # Inside a host function the caller's context must be used, not the store.
        target = self._store if ctx is None else ctx
        try:
            result = self._func(target, *args)
        except wt.Trap as trap:
            raise _classify(
                wt, trap, _first_line(trap.message), take_host_exception(self._func_module)
            ) from None
        except wt.WasmtimeError as error:
            raise _classify(
                wt, None, _first_line(str(error)), take_host_exception(self._func_module)
            ) from None
        except CallFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - wasmtime-py re-raises whatever a host function raised
            raise _classify(wt, None, "", exc) from None
        return int(result or 0) & 0xFFFFFFFF
