"""What a policy's imports do on the host side: bounded reads of its memory, abort, print, builtins.

``Host`` is what the host functions (``opa_abort``, ``opa_println``,
``opa_builtin0..4``) need: the linear memory's base address and size, and the
module's value (de)serialisers to hand builtins their operands and results.
Every read of a string in linear memory is bounded by the memory's current
size, so a corrupt or hostile module cannot make the host read outside it.
It deliberately holds no reference to the store (see the class).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import struct
from types import ModuleType
from typing import Any

from evaluator_sidecar.policy.engines.wasm.builtins import (
    Builtin,
    BuiltinLimitError,
    BuiltinUndefined,
    CallContext,
    call_builtin,
)
from evaluator_sidecar.policy.engines.wasm.values import (
    RegoBigNumber,
    RegoFloat,
    RegoValueError,
    dump_rego,
    float_text,
    parse_rego,
)

__all__ = ["DIRECT_VALUES", "Host", "HostAbort"]

#: Read scalar operands, and write scalar results, as OPA's C structs in linear memory,
#: instead of a round trip through opa_value_dump / opa_value_parse (two module calls
#: and a text parse each). Off only to measure the difference (benchmarks/).
DIRECT_VALUES = True

# OPA's value tags and layouts (wasm/src/value.h, wasm32, little-endian): every value
# starts with a one-byte type; opa_string_t {type, free: u8, len: u32 @4, v: ptr @8} (12
# bytes); opa_boolean_t {type, v: u8 @1}; opa_number_t {type, repr: u8 @1, union @8:
# i: i64 | ref {s: ptr @8, len: u32 @12, free: u8 @16}} (24 bytes).
# opa_array_t {type, elems: ptr @4, len: u32 @8, cap @12}; opa_array_elem_t {i: ptr, v: ptr}.
_NULL, _BOOLEAN, _NUMBER, _STRING, _ARRAY, _STRING_INTERNED, _BOOLEAN_INTERNED = 1, 2, 3, 4, 5, 8, 9
_ARRAY_AT = struct.Struct("<II")  # at +4: elems, len
#: Arrays nested deeper than this (or objects and sets anywhere) take the module's dump.
_DIRECT_DEPTH = 4
_REPR_INT, _REPR_REF = 1, 2
_STRING_T = struct.Struct("<BBxxII")  # type, free, len, v
_NUMBER_INT = struct.Struct("<BBxxxxxxq")  # type, repr, i
_NUMBER_REF = struct.Struct("<BBxxxxxxIIBxxxxxxx")  # type, repr, s, len, free
_REF_AT = struct.Struct("<II")  # at +8: s, len
_I64_AT = struct.Struct("<q")  # at +8
_NUMBER_SIZE = 24
# The module turns an integer-repr number into a decimal for arithmetic with
# snprintf("%d", i) on an i64 (mpd.c, opa_number_to_bf): beyond 32 bits that
# truncates. Numbers it parses itself are refs (their text), which it reads
# exactly; so only integers within 32 bits are written as integers.
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


class _NotScalar(Exception):
    """The value is not one the direct path reads (composite, or not UTF-8): take the slow one."""


#: The instance module's logger, as before this class moved here: log filters name it.
log = logging.getLogger("evaluator_sidecar.policy.engines.wasm.instance")


def _libc_memchr() -> Any:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    memchr = libc.memchr
    memchr.restype = ctypes.c_void_p
    memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return memchr


_memchr = _libc_memchr()


class HostAbort(Exception):
    """The policy called ``opa_abort``: OPA's own fatal error (conflict, out of memory, …)."""


class Host:
    """What the host functions need; deliberately holds no reference to the store.

    wasmtime-py keeps host callables in a process-wide table until their store
    is deleted; if they referenced the store, it would never be deleted.
    """

    def __init__(
        self, wt: ModuleType, fast: bool, builtins: dict[int, Builtin], ctx: CallContext
    ) -> None:
        self.wt = wt
        self.fast = fast
        self.builtins = builtins
        self.ctx = ctx
        self.base = 0
        self.memory_ref: Any = None
        self.memory: Any = None
        self.size_of: Any = None
        self.value_dump: Any = None
        self.value_parse: Any = None
        self.malloc: Any = None
        self.println_count = 0
        #: A size the memory is known to have (it never shrinks): bounds checks within it
        #: need no call to ask for the current size; ``mem`` views that much of it.
        self.known_size = 0
        self.mem = memoryview(b"")

    def memory_size(self, ctx: Any) -> int:
        if self.fast:
            return int(self.size_of(ctx, self.memory_ref))
        return int(self.memory.data_len(ctx))

    def read_cstring(self, ctx: Any, addr: int, known_size: int = 0) -> bytes:
        """The NUL-terminated bytes at ``addr``, never reading past the memory's end.

        ``known_size`` is a size the memory is known to have (it only grows):
        strings that end within it need no call to ask for the current size.
        """
        if 0 < addr < known_size:
            end = _memchr(self.base + addr, 0, known_size - addr)
            if end:
                return ctypes.string_at(self.base + addr, end - self.base - addr)
        size = self.memory_size(ctx)
        if not 0 < addr < size:
            raise HostAbort(f"the policy returned an address outside its memory ({addr})")
        end = _memchr(self.base + addr, 0, size - addr)
        if not end:
            raise HostAbort(
                "the policy returned a string with no terminating NUL inside its memory"
            )
        return ctypes.string_at(self.base + addr, end - self.base - addr)

    def write_value(self, ctx: Any, value: Any) -> int:
        text = dump_rego(value).encode("utf-8", "surrogatepass")
        addr = self.malloc(ctx, len(text))
        if addr + len(text) > self.memory_size(ctx):
            raise HostAbort("opa_malloc returned a block outside the policy's memory")
        ctypes.memmove(self.base + addr, text, len(text))
        result = self.value_parse(ctx, addr, len(text))
        if not result:
            raise HostAbort(f"the policy could not parse a builtin's result {text[:80]!r}")
        return int(result)

    # -- imports ---------------------------------------------------------------------
    def opa_abort(self, ctx: Any, addr: int) -> None:
        try:
            message = self.read_cstring(ctx, addr).decode("utf-8", "replace")
        except HostAbort as exc:
            message = f"(unreadable abort message: {exc})"
        raise HostAbort(message)

    def opa_println(self, ctx: Any, addr: int) -> None:
        try:
            text = self.read_cstring(ctx, addr).decode("utf-8", "replace")
        except HostAbort as exc:
            text = f"(unreadable: {exc})"
        self.println_count += 1
        log.info("policy print: %s", text)

    # -- scalars straight from and to linear memory ------------------------------------
    def _view(self, ctx: Any, end: int) -> memoryview | None:
        """A view of linear memory covering [0, end), or None when the memory is smaller.

        The memory never moves (``memory_may_move = False``) and never shrinks, so
        a view of a size it had stays valid; it is renewed only when it grows.
        """
        if end <= self.known_size:
            return self.mem
        size = self.memory_size(ctx)
        if size != self.known_size:
            self.known_size = size
            self.mem = memoryview((ctypes.c_char * size).from_address(self.base)).cast("B")
        return self.mem if end <= size else None

    def _read_direct(self, ctx: Any, addr: int, depth: int = 0) -> Any:
        """A scalar, or an array of them (nested a little), read from OPA's structs."""
        mem = self._view(ctx, addr + _NUMBER_SIZE) if addr > 0 else None
        if mem is not None and mem[addr] == _ARRAY and depth < _DIRECT_DEPTH:
            elems, n = _ARRAY_AT.unpack_from(mem, addr + 4)
            mem = self._view(ctx, elems + 8 * n) if elems > 0 or n == 0 else None
            if mem is None:
                raise _NotScalar
            values = _ARRAY_AT.unpack_from  # (i, v) pairs: the values are every second word
            return [
                self._read_direct(ctx, values(mem, elems + 8 * k)[1], depth + 1) for k in range(n)
            ]
        return self._read_scalar(ctx, addr)

    def _read_scalar(self, ctx: Any, addr: int) -> Any:
        mem = self._view(ctx, addr + _NUMBER_SIZE) if addr > 0 else None
        if mem is None:
            raise _NotScalar
        kind = mem[addr]
        if kind in (_STRING, _STRING_INTERNED):
            _kind, _free, n, ptr = _STRING_T.unpack_from(mem, addr)
            if self._view(ctx, ptr + n) is None:
                raise _NotScalar
            try:
                return str(mem[ptr : ptr + n], "utf-8")
            except UnicodeDecodeError:
                raise _NotScalar from None
        if kind == _NUMBER:
            repr_ = mem[addr + 1]
            if repr_ == _REPR_INT:
                return _I64_AT.unpack_from(mem, addr + 8)[0]
            if repr_ == _REPR_REF:
                ptr, n = _REF_AT.unpack_from(mem, addr + 8)
                if self._view(ctx, ptr + n) is None:
                    raise _NotScalar
                return _number(str(mem[ptr : ptr + n], "ascii", "replace"))
            raise _NotScalar
        if kind in (_BOOLEAN, _BOOLEAN_INTERNED):
            return bool(mem[addr + 1])
        if kind == _NULL:
            return None
        raise _NotScalar

    def read_operand(self, ctx: Any, addr: int) -> Any:
        if DIRECT_VALUES:
            try:
                return self._read_direct(ctx, addr)
            except _NotScalar:
                pass  # an object or set (or odd bytes): the module's own dump below
        dumped = self.read_cstring(ctx, self.value_dump(ctx, addr))
        return parse_rego(dumped.decode("utf-8"))

    def _alloc(self, ctx: Any, n: int) -> tuple[int, memoryview]:
        addr = int(self.malloc(ctx, n))
        mem = self._view(ctx, addr + n) if addr > 0 else None
        if mem is None:
            raise HostAbort("opa_malloc returned a block outside the policy's memory")
        return addr, mem

    def _write_number_text(self, ctx: Any, text: str) -> int:
        data = text.encode("ascii")
        n = len(data)
        addr, mem = self._alloc(ctx, _NUMBER_SIZE + n)
        _NUMBER_REF.pack_into(mem, addr, _NUMBER, _REPR_REF, addr + _NUMBER_SIZE, n, 0)
        mem[addr + _NUMBER_SIZE : addr + _NUMBER_SIZE + n] = data
        return addr

    def write_result(self, ctx: Any, value: Any) -> int:  # noqa: PLR0911 - one return per type
        """Write a builtin's result into the policy's memory; its address.

        Scalars are written as OPA's own structs (one ``opa_malloc``); composite
        values go through the module's ``opa_value_parse``.
        """
        if not DIRECT_VALUES:
            return self.write_value(ctx, value)
        cls = value.__class__
        if cls is str:
            data = value.encode("utf-8", "surrogatepass")
            n = len(data)
            addr, mem = self._alloc(ctx, 12 + n)
            _STRING_T.pack_into(mem, addr, _STRING, 0, n, addr + 12)
            mem[addr + 12 : addr + 12 + n] = data
            return addr
        if cls is bool:
            addr, mem = self._alloc(ctx, 2)
            mem[addr] = _BOOLEAN
            mem[addr + 1] = value
            return addr
        if cls is int:
            if _I32_MIN <= value <= _I32_MAX:
                addr, mem = self._alloc(ctx, _NUMBER_SIZE)
                _NUMBER_INT.pack_into(mem, addr, _NUMBER, _REPR_INT, value)
                return addr
            return self._write_number_text(ctx, str(value))
        if cls is RegoFloat or cls is RegoBigNumber:
            return self._write_number_text(ctx, value.text)
        if cls is float:
            return self._write_number_text(ctx, float_text(value))
        if value is None:
            addr, mem = self._alloc(ctx, 1)
            mem[addr] = _NULL
            return addr
        return self.write_value(ctx, value)

    def opa_builtin(self, ctx: Any, ident: int, _reserved: int, *args: int) -> int:
        builtin = self.builtins.get(ident)
        if builtin is None:
            raise HostAbort(
                f"the policy called builtin id {ident}, which its builtins() map does not list"
            )
        try:
            values = [self.read_operand(ctx, addr) for addr in args]
            result = call_builtin(builtin, values, self.ctx)
            return self.write_result(ctx, result)
        except BuiltinUndefined as exc:
            log.debug("builtin %s is undefined for these operands: %s", builtin.name, exc)
            return 0
        except (RegoValueError, UnicodeDecodeError) as exc:
            log.debug("builtin %s: operands or result not representable: %s", builtin.name, exc)
            return 0
        except BuiltinLimitError as exc:
            raise HostAbort(str(exc)) from exc


def _number(text: str) -> Any:
    """A number's text as :func:`parse_rego` reads it."""
    if any(c in text for c in ".eE"):
        try:
            return RegoFloat(text)
        except RegoValueError:
            return RegoBigNumber(text)
    return int(text)
