"""Go's ``fmt`` printer for one operand: a verb's flags, width, precision and padding.

``Printer.print_arg`` formats one operand made by ``sprintf_operand`` for one
verb as Go's ``fmt`` does (integers and ``*big.Int`` in every base, runes,
``%U``, floats, strings and byte strings, ``%T``, the ``%!verb(type=value)``
form for a verb the operand does not take). ``gofmt.go_sprintf`` parses the
format and drives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.policy.engines.wasm.gofmt_operands import BigInt
from evaluator_sidecar.policy.engines.wasm.gostrconv import (
    can_backquote,
    format_float,
    go_quote,
    is_print,
)

__all__ = ["Flags", "Printer", "type_name"]


_MAX_RUNE = 0x10FFFF


_LOWER = "0123456789abcdefx"


_UPPER = "0123456789ABCDEFX"


@dataclass
class Flags:
    sharp: bool = False
    zero: bool = False
    plus: bool = False
    minus: bool = False
    space: bool = False
    sharp_v: bool = False
    plus_v: bool = False
    wid: int = 0
    wid_present: bool = False
    prec: int = 0
    prec_present: bool = False


def type_name(arg: Any) -> str:
    if isinstance(arg, BigInt):
        return "*big.Int"
    if isinstance(arg, bool):
        return "bool"
    if isinstance(arg, int):
        return "int64"
    if isinstance(arg, float):
        return "float64"
    return "string"


class Printer:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.f = Flags()

    # padding -------------------------------------------------------------------------
    def padding(self, n: int) -> None:
        if n > 0:
            self.out.append(("0" if self.f.zero and not self.f.minus else " ") * n)

    def pad(self, text: str) -> None:
        f = self.f
        if not f.wid_present or f.wid == 0:
            self.out.append(text)
            return
        width = f.wid - len(text)
        if not f.minus:
            self.padding(width)
            self.out.append(text)
        else:
            self.out.append(text)
            self.padding(width)

    def pad_no_zero(self, text: str) -> None:
        old = self.f.zero
        self.f.zero = False
        self.pad(text)
        self.f.zero = old

    # dispatch ------------------------------------------------------------------------
    def bad_verb(self, verb: str, arg: Any) -> None:
        self.out.append(f"%!{verb}(")
        self.out.append(type_name(arg))
        self.out.append("=")
        self.print_arg(arg, "v")
        self.out.append(")")

    def print_arg(self, arg: Any, verb: str) -> None:
        if verb == "T":
            self.fmt_s(type_name(arg))
            return
        if verb == "p":
            self.bad_verb(verb, arg)
            return
        if isinstance(arg, BigInt):
            self.fmt_big(int(arg), verb)
        elif isinstance(arg, bool):
            if verb in "tv":
                self.pad("true" if arg else "false")
            else:
                self.bad_verb(verb, arg)
        elif isinstance(arg, int):
            self.fmt_int_verb(arg, verb)
        elif isinstance(arg, float):
            self.fmt_float_verb(arg, verb)
        else:
            self.fmt_string_verb(str(arg), verb)

    # integers ------------------------------------------------------------------------
    def fmt_int_verb(self, v: int, verb: str) -> None:
        if verb in "vd":
            self.fmt_integer(v, 10, verb, _LOWER)
        elif verb == "b":
            self.fmt_integer(v, 2, verb, _LOWER)
        elif verb in "oO":
            self.fmt_integer(v, 8, verb, _LOWER)
        elif verb == "x":
            self.fmt_integer(v, 16, verb, _LOWER)
        elif verb == "X":
            self.fmt_integer(v, 16, verb, _UPPER)
        elif verb == "c":
            self.pad(_rune(v))
        elif verb == "q":
            self.pad(go_quote(_rune(v), ascii_only=self.f.plus, quote="'"))
        elif verb == "U":
            self.fmt_unicode(v)
        else:
            self.bad_verb(verb, v)

    def fmt_integer(self, v: int, base: int, verb: str, digits: str) -> None:
        f = self.f
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if f.prec_present:
            prec = f.prec
            if prec == 0 and u == 0:
                old = f.zero
                f.zero = False
                self.padding(f.wid)
                f.zero = old
                return
        elif f.zero and not f.minus and f.wid_present:
            prec = f.wid
            if negative or f.plus or f.space:
                prec -= 1
        text = _to_base(u, base, digits)
        if len(text) < prec:
            text = "0" * (prec - len(text)) + text
        if f.sharp:
            if base == 2:
                text = "0b" + text
            elif base == 8 and text[0] != "0":
                text = "0" + text
            elif base == 16:
                text = "0" + digits[16] + text
        if verb == "O":
            text = "0o" + text
        if negative:
            text = "-" + text
        elif f.plus:
            text = "+" + text
        elif f.space:
            text = " " + text
        self.pad_no_zero(text)

    def fmt_unicode(self, v: int) -> None:
        u = v & 0xFFFFFFFFFFFFFFFF
        prec = self.f.prec if self.f.prec_present and self.f.prec > 4 else 4
        text = "U+" + format(u, "X").rjust(prec, "0")
        if self.f.sharp and u <= _MAX_RUNE and is_print(chr(u)) and not 0xD800 <= u <= 0xDFFF:
            text += f" '{chr(u)}'"
        self.pad_no_zero(text)

    def fmt_big(self, v: int, verb: str) -> None:
        f = self.f
        bases = {"b": 2, "o": 8, "O": 8, "d": 10, "s": 10, "v": 10, "x": 16, "X": 16}
        if verb not in bases:
            self.out.append(f"%!{verb}(big.Int={v})")
            return
        sign = "-" if v < 0 else "+" if f.plus else " " if f.space else ""
        prefix = ""
        if f.sharp:
            prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb, "")
        if verb == "O":
            prefix = "0o"
        digits = _to_base(abs(v), bases[verb], _UPPER if verb == "X" else _LOWER)
        zeros = 0
        if f.prec_present:
            if len(digits) < f.prec:
                zeros = f.prec - len(digits)
            elif digits == "0" and f.prec == 0:
                return
        left = right = 0
        length = len(sign) + len(prefix) + zeros + len(digits)
        if f.wid_present and length < f.wid:
            d = f.wid - length
            if f.minus:
                right = d
            elif f.zero and not f.prec_present:
                zeros = d
            else:
                left = d
        self.out.append(" " * left + sign + prefix + "0" * zeros + digits + " " * right)

    # floats --------------------------------------------------------------------------
    def fmt_float_verb(self, v: float, verb: str) -> None:
        if verb == "v":
            self.fmt_float(v, "g", -1)
        elif verb in "bgGxX":
            self.fmt_float(v, verb, -1)
        elif verb in "feE":
            self.fmt_float(v, verb, 6)
        elif verb == "F":
            self.fmt_float(v, "f", 6)
        else:
            self.bad_verb(verb, v)

    def fmt_float(self, v: float, verb: str, prec: int) -> None:
        f = self.f
        if f.prec_present:
            prec = f.prec
        num = format_float(v, verb, prec)
        num = num if num[0] in "+-" else "+" + num
        if f.space and num[0] == "+" and not f.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            if num[1] == "N" and not f.space and not f.plus:
                num = num[1:]
            self.pad_no_zero(num)
            return
        if f.sharp and verb != "b":
            num = _sharp_float(num, verb, prec)
        if f.plus or num[0] != "+":
            if f.zero and not f.minus and f.wid_present and f.wid > len(num):
                self.out.append(num[0])
                self.padding(f.wid - len(num))
                self.out.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    # strings -------------------------------------------------------------------------
    def fmt_string_verb(self, v: str, verb: str) -> None:
        if verb == "v":
            if self.f.sharp_v:
                self.fmt_q(v)
            else:
                self.fmt_s(v)
        elif verb == "s":
            self.fmt_s(v)
        elif verb in "xX":
            self.fmt_sx(v, _LOWER if verb == "x" else _UPPER)
        elif verb == "q":
            self.fmt_q(v)
        else:
            self.bad_verb(verb, v)

    def truncate(self, v: str) -> str:
        return v[: self.f.prec] if self.f.prec_present else v

    def fmt_s(self, v: str) -> None:
        self.pad(self.truncate(v))

    def fmt_q(self, v: str) -> None:
        v = self.truncate(v)
        if self.f.sharp and can_backquote(v):
            self.pad("`" + v + "`")
            return
        self.pad(go_quote(v, ascii_only=self.f.plus))

    def fmt_sx(self, v: str, digits: str) -> None:
        f = self.f
        data = v.encode("utf-8", "surrogatepass")
        length = len(data)
        if f.prec_present and f.prec < length:
            length = f.prec
        width = 2 * length
        if width > 0:
            if f.space:
                if f.sharp:
                    width *= 2
                width += length - 1
            elif f.sharp:
                width += 2
        else:
            if f.wid_present:
                self.padding(f.wid)
            return
        if f.wid_present and f.wid > width and not f.minus:
            self.padding(f.wid - width)
        parts: list[str] = []
        if f.sharp:
            parts.append("0" + digits[16])
        for i in range(length):
            if f.space and i > 0:
                parts.append(" ")
                if f.sharp:
                    parts.append("0" + digits[16])
            c = data[i]
            parts.append(digits[c >> 4] + digits[c & 0xF])
        self.out.append("".join(parts))
        if f.wid_present and f.wid > width and f.minus:
            self.padding(f.wid - width)


def _rune(v: int) -> str:
    if v < 0 or v > _MAX_RUNE or 0xD800 <= v <= 0xDFFF:
        return "\ufffd"
    return chr(v)


def _to_base(u: int, base: int, digits: str) -> str:
    if u == 0:
        return "0"
    out: list[str] = []
    while u:
        u, r = divmod(u, base)
        out.append(digits[r])
    return "".join(reversed(out))


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """The ``#`` flag: always a decimal point, and trailing zeros kept for %g/%v."""
    digits = 0
    if verb in ("v", "g", "G", "x"):
        digits = prec if prec != -1 else 6
    tail = ""
    body = num
    for i in range(1, len(num)):
        c = num[i]
        if c in "pP" or (c in "eE" and verb not in "xX"):
            tail = num[i:]
            body = num[:i]
            break
    has_point = False
    saw_nonzero = False
    for c in body[1:]:
        if c == ".":
            has_point = True
        elif c.isdigit() or c in "abcdefABCDEFxX":
            if c != "0":
                saw_nonzero = True
            if saw_nonzero:
                digits -= 1
    if not has_point:
        if len(body) == 2 and body[1] == "0":
            digits -= 1
        body += "."
    if digits > 0:
        body += "0" * digits
    return body + tail
