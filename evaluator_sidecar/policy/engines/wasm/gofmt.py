"""Go's ``fmt.Sprintf`` as OPA's ``sprintf`` builtin uses it, in Python, without I/O.

OPA compiles ``sprintf`` to a host call, so the host must format exactly as
OPA's Go evaluator does. OPA hands Go's ``fmt.Sprintf`` these operands: an
``int64`` for integer numbers that fit, a ``*big.Int`` for larger ones, a
``float64`` for numbers written with a fraction or exponent, the string itself
for strings, and the Rego text of any other value (``[1, "a"]``, ``{"k": 1}``,
``set()``) as a string. This module reproduces Go's verbs (``v d s q x X o O b
c U e E f F g G t T %``), flags (``+ - # 0 space``), width and precision
(including ``*``), explicit argument indexes (``%[2]d``) and Go's error forms
(``%!d(string=x)``, ``%!d(MISSING)``, ``%!(EXTRA int64=1)``, ``%!(NOVERB)``,
``%!(BADWIDTH)``, ``%!(BADPREC)``, ``%!d(BADINDEX)``).

The one format not reproduced (``%x``/``%X`` of a float with a precision)
raises ``GoFormatError``, which the builtin turns into an undefined result; see
docs/wasm-engine.md ("Differences from OPA").
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from evaluator_sidecar.policy.engines.wasm.values import RegoSet

__all__ = ["GoFormatError", "go_quote", "go_sprintf", "rego_text", "sprintf_operand"]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_RUNE = 0x10FFFF
_TOO_LARGE = 1_000_000  # Go's fmt refuses widths and precisions beyond this
_LOWER = "0123456789abcdefx"
_UPPER = "0123456789ABCDEFX"


class GoFormatError(ValueError):
    """A format this module does not reproduce exactly."""


class BigInt(int):
    """An integer outside int64: Go formats it as ``*big.Int``."""


# -- operands: what OPA passes to fmt.Sprintf -----------------------------------------
def sprintf_operand(value: Any) -> Any:
    """The Go operand OPA makes of one Rego value: int, BigInt, float or str."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, RegoSet)):
        return rego_text(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else BigInt(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return value
    raise GoFormatError(f"no sprintf operand for {type(value).__name__}")


def rego_text(value: Any) -> str:
    """A Rego value as OPA's ``Value.String()`` writes it (keys and set elements sorted)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = getattr(value, "text", None)
        return text if isinstance(text, str) else _shortest_json_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, RegoSet):
        if not len(value):
            return "set()"
        return "{" + ", ".join(rego_text(v) for v in sorted(value, key=_RegoKey)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(rego_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_RegoKey)
        return "{" + ", ".join(f"{rego_text(k)}: {rego_text(value[k])}" for k in keys) + "}"
    raise GoFormatError(f"no Rego text for {type(value).__name__}")


def _shortest_json_float(value: float) -> str:
    text = repr(value)
    return text if any(c in text for c in ".eE") else text + ".0"


class _RegoKey:
    """Sort key in OPA's order of values: null, bool, number, string, array, object, set."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _RegoKey) -> bool:
        return _rego_compare(self.value, other.value) < 0


def _rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, list):
        return 4
    if isinstance(value, dict):
        return 5
    return 6


def _rego_compare(a: Any, b: Any) -> int:
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra in (1, 2):
        return int(a > b) - int(a < b)
    if ra == 3:
        ab, bb = a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
        return int(ab > bb) - int(ab < bb)
    if ra == 4:
        for x, y in zip(a, b, strict=False):
            c = _rego_compare(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 5:
        ka, kb = sorted(a, key=_RegoKey), sorted(b, key=_RegoKey)
        for x, y in zip(ka, kb, strict=False):
            c = _rego_compare(x, y) or _rego_compare(a[x], b[y])
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    if ra == 6:
        sa, sb = sorted(a, key=_RegoKey), sorted(b, key=_RegoKey)
        return _rego_compare(sa, sb)
    return 0


# -- strconv.Quote ---------------------------------------------------------------------
def _is_print(ch: str) -> bool:
    return ch == " " or (ch.isprintable() and not ch.isspace())


def _escape_rune(ch: str, quote: str, ascii_only: bool) -> str:
    if ch in (quote, "\\"):
        return "\\" + ch
    code = ord(ch)
    if ascii_only:
        if code < 0x80 and _is_print(ch):
            return ch
    elif _is_print(ch):
        return ch
    special = {
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
    if ch in special:
        return special[ch]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str, *, ascii_only: bool = False, quote: str = '"') -> str:
    """``strconv.Quote`` (or ``QuoteToASCII``): a Go string literal."""
    return quote + "".join(_escape_rune(ch, quote, ascii_only) for ch in text) + quote


def _can_backquote(text: str) -> bool:
    for ch in text:
        if ch in ("\ufeff", "`", "\x7f"):
            return False
        if ord(ch) < 0x20 and ch != "\t":
            return False
    return True


# -- the formatter state -----------------------------------------------------------------
@dataclass
class _Flags:
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


def _type_name(arg: Any) -> str:
    if isinstance(arg, BigInt):
        return "*big.Int"
    if isinstance(arg, bool):
        return "bool"
    if isinstance(arg, int):
        return "int64"
    if isinstance(arg, float):
        return "float64"
    return "string"


class _Printer:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.f = _Flags()

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
        self.out.append(_type_name(arg))
        self.out.append("=")
        self.print_arg(arg, "v")
        self.out.append(")")

    def print_arg(self, arg: Any, verb: str) -> None:
        if verb == "T":
            self.fmt_s(_type_name(arg))
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
        if self.f.sharp and u <= _MAX_RUNE and _is_print(chr(u)) and not 0xD800 <= u <= 0xDFFF:
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
        num = _format_float(v, verb, prec)
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
        if self.f.sharp and _can_backquote(v):
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


# -- strconv.FormatFloat -----------------------------------------------------------------
def _shortest_digits(v: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of |v| and the decimal point position (Go's dp)."""
    if v == 0:
        return "0", 1
    _sign, digit_tuple, exponent = Decimal(repr(abs(v))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # value = 0.d1d2... * 10^dp
    dp = len(digit_tuple) + exponent
    return digits, dp


def _exp_text(exp: int) -> str:
    sign = "-" if exp < 0 else "+"
    exp = abs(exp)
    return f"{sign}{exp:02d}"


def _format_float(v: float, verb: str, prec: int) -> str:
    """Go's ``strconv.FormatFloat(v, verb, prec, 64)`` for verbs e E f g G b x X."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    neg = math.copysign(1.0, v) < 0
    sign = "-" if neg else ""
    a = abs(v)
    if verb == "b":
        return sign + _format_b(a)
    if verb in "xX":
        return sign + _format_x(a, prec, verb)
    upper = verb in "EG"
    if prec < 0:
        digits, dp = _shortest_digits(a)
        if verb in "eE":
            text = _e_form(digits, dp, len(digits) - 1)
        elif verb == "f":
            text = _f_form(digits, dp, max(len(digits) - dp, 0))
        else:  # g, G shortest: Go decides e-form with a precision of 6
            exp = dp - 1
            if exp < -4 or exp >= 6:
                text = _e_form(digits, dp, len(digits) - 1)
            else:
                text = _f_form(digits, dp, max(len(digits) - dp, 0))
        text = text.upper() if upper else text
        return sign + text
    if verb in "eE":
        text = f"{a:.{prec}e}"
        mant, _, exp_digits = text.partition("e")
        text = mant + "e" + _exp_text(int(exp_digits))
    elif verb == "f":
        text = f"{a:.{prec}f}"
    else:  # g, G with precision: significant digits, trailing zeros dropped
        p = prec if prec > 0 else 1
        rounded = f"{a:.{p - 1}e}"
        mant, _, exp_s = rounded.partition("e")
        digits = mant.replace(".", "").rstrip("0") or "0"
        exp = int(exp_s)
        eprec = p
        dp = exp + 1
        if eprec > len(digits) and len(digits) >= dp:
            eprec = len(digits)
        if exp < -4 or exp >= eprec:
            text = _e_form(digits, dp, len(digits) - 1)
        else:
            text = _f_form(digits, dp, max(len(digits) - dp, 0))
    text = text.upper() if upper else text
    return sign + text


def _e_form(digits: str, dp: int, frac: int) -> str:
    head = digits[0]
    tail = digits[1:].ljust(frac, "0")[:frac]
    exp = dp - 1 if digits != "0" else 0
    return head + ("." + tail if frac > 0 else "") + "e" + _exp_text(exp)


def _f_form(digits: str, dp: int, frac: int) -> str:
    if dp > 0:
        whole = digits[:dp].ljust(dp, "0")
        rest = digits[dp:]
    else:
        whole = "0"
        rest = "0" * (-dp) + digits
    rest = rest.ljust(frac, "0")[:frac]
    return whole + ("." + rest if frac > 0 else "")


def _float_bits(a: float) -> tuple[int, int]:
    """(mantissa with implicit bit, unbiased exponent) as Go's FormatFloat derives them."""
    bits = struct.unpack(">Q", struct.pack(">d", a))[0]
    exp = (bits >> 52) & 0x7FF
    mant = bits & ((1 << 52) - 1)
    if exp == 0:
        exp += 1
    else:
        mant |= 1 << 52
    return mant, exp - 1023


def _format_b(a: float) -> str:
    mant, exp = _float_bits(a)
    exp -= 52
    return f"{mant}p{'+' if exp >= 0 else '-'}{abs(exp)}"


def _format_x(a: float, prec: int, verb: str) -> str:
    if prec >= 0:
        raise GoFormatError("%x of a float with a precision is not supported")
    mant, exp = _float_bits(a)
    if mant == 0:
        exp = 0
    mask = (1 << 64) - 1
    mant = (mant << (60 - 52)) & mask
    while mant != 0 and mant & (1 << 60) == 0:
        mant = (mant << 1) & mask
        exp -= 1
    hexd = "0123456789abcdef" if verb == "x" else "0123456789ABCDEF"
    out = "0" + verb + str((mant >> 60) & 1)
    mant = (mant << 4) & mask
    if mant != 0:
        out += "."
        while mant != 0:
            out += hexd[(mant >> 60) & 15]
            mant = (mant << 4) & mask
    out += "p" if verb == "x" else "P"
    out += "-" if exp < 0 else "+"
    exp = abs(exp)
    out += f"{exp:02d}" if exp < 100 else str(exp)
    return out


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


# -- doPrintf ----------------------------------------------------------------------------
def _parsenum(s: str, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num = 0
    isnum = False
    i = start
    while i < end and "0" <= s[i] <= "9":
        if num > _TOO_LARGE or num < -_TOO_LARGE:
            return 0, False, end
        num = num * 10 + ord(s[i]) - 48
        isnum = True
        i += 1
    return num, isnum, i


def _int_from_arg(args: list[Any], arg_num: int) -> tuple[int, bool, int]:
    num, is_int, new = 0, False, arg_num
    if arg_num < len(args):
        a = args[arg_num]
        if isinstance(a, int) and not isinstance(a, (bool, BigInt)):
            num, is_int = a, True
        new = arg_num + 1
        if num > _TOO_LARGE or num < -_TOO_LARGE:
            num, is_int = 0, False
    return num, is_int, new


def go_sprintf(fmt: str, args: list[Any], *, max_width: int = _TOO_LARGE) -> str:
    """``fmt.Sprintf(fmt, args...)`` for operands made by :func:`sprintf_operand`."""
    p = _Printer()
    out = p.out
    end = len(fmt)
    arg_num = 0
    reordered = False
    i = 0
    while i < end:
        good_arg_num = True
        last = i
        while i < end and fmt[i] != "%":
            i += 1
        if i > last:
            out.append(fmt[last:i])
        if i >= end:
            break
        i += 1
        p.f = f = _Flags()
        simple_done = False
        while i < end:
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = True
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus = True
            elif c == " ":
                f.space = True
            else:
                if "a" <= c <= "z" and arg_num < len(args):
                    if c == "v":
                        f.sharp_v, f.sharp = f.sharp, False
                        f.plus_v, f.plus = f.plus, False
                    p.print_arg(args[arg_num], c)
                    arg_num += 1
                    i += 1
                    simple_done = True
                break
            i += 1
        if simple_done:
            continue

        def arg_number(arg_num: int, i: int) -> tuple[int, int, bool]:
            nonlocal reordered, good_arg_num
            if i >= end or fmt[i] != "[":
                return arg_num, i, False
            reordered = True
            rest = fmt[i:]
            index, wid, ok = 0, 1, False
            if len(rest) >= 3:
                for j in range(1, len(rest)):
                    if rest[j] == "]":
                        n, isnum, newi = _parsenum(rest, 1, j)
                        if not isnum or newi != j:
                            index, wid, ok = 0, j + 1, False
                        else:
                            index, wid, ok = n - 1, j + 1, True
                        break
            if ok and 0 <= index < len(args):
                return index, i + wid, True
            good_arg_num = False
            return arg_num, i + wid, ok

        arg_num, i, after_index = arg_number(arg_num, i)
        if i < end and fmt[i] == "*":
            i += 1
            f.wid, f.wid_present, arg_num = _int_from_arg(args, arg_num)
            if not f.wid_present:
                out.append("%!(BADWIDTH)")
            if f.wid < 0:
                f.wid = -f.wid
                f.minus = True
                f.zero = False
            after_index = False
        else:
            f.wid, f.wid_present, i = _parsenum(fmt, i, end)
            if after_index and f.wid_present:
                good_arg_num = False
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:
                good_arg_num = False
            arg_num, i, after_index = arg_number(arg_num, i)
            if i < end and fmt[i] == "*":
                i += 1
                f.prec, f.prec_present, arg_num = _int_from_arg(args, arg_num)
                if f.prec < 0:
                    f.prec, f.prec_present = 0, False
                if not f.prec_present:
                    out.append("%!(BADPREC)")
                after_index = False
            else:
                f.prec, f.prec_present, i = _parsenum(fmt, i, end)
                if not f.prec_present:
                    f.prec, f.prec_present = 0, True
        if not after_index:
            arg_num, i, after_index = arg_number(arg_num, i)
        if i >= end:
            out.append("%!(NOVERB)")
            break
        if f.wid > max_width or f.prec > max_width:
            raise GoFormatError(f"width or precision above {max_width}")
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
        elif not good_arg_num:
            out.append(f"%!{verb}(BADINDEX)")
        elif arg_num >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                f.sharp_v, f.sharp = f.sharp, False
                f.plus_v, f.plus = f.plus, False
            p.print_arg(args[arg_num], verb)
            arg_num += 1
    if not reordered and arg_num < len(args):
        p.f = _Flags()
        out.append("%!(EXTRA ")
        for k, arg in enumerate(args[arg_num:]):
            if k:
                out.append(", ")
            out.append(_type_name(arg) + "=")
            p.print_arg(arg, "v")
        out.append(")")
    return "".join(out)
