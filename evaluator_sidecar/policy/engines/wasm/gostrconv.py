"""Go's ``strconv`` as ``fmt`` uses it: ``Quote``/``QuoteToASCII`` and ``FormatFloat``.

Part of the ``sprintf`` builtin (see ``gofmt``): string literals for ``%q`` and
Rego text, and the float formats ``e E f g G b x X`` with Go's shortest
round-tripping digits. ``GoFormatError`` marks the one format not reproduced
(``%x`` of a float with a precision); differences from OPA: docs/wasm-engine.md.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

__all__ = ["GoFormatError", "can_backquote", "format_float", "go_quote", "is_print"]


class GoFormatError(ValueError):
    """A format the sprintf builtin (gofmt and its helpers) does not reproduce exactly."""


def is_print(ch: str) -> bool:
    return ch == " " or (ch.isprintable() and not ch.isspace())


def _escape_rune(ch: str, quote: str, ascii_only: bool) -> str:
    if ch in (quote, "\\"):
        return "\\" + ch
    code = ord(ch)
    if ascii_only:
        if code < 0x80 and is_print(ch):
            return ch
    elif is_print(ch):
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


def can_backquote(text: str) -> bool:
    for ch in text:
        if ch in ("\ufeff", "`", "\x7f"):
            return False
        if ord(ch) < 0x20 and ch != "\t":
            return False
    return True


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


def format_float(v: float, verb: str, prec: int) -> str:
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
