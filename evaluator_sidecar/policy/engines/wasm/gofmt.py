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

This module parses the format (Go's ``doPrintf``); the pieces it drives live
beside it: ``gofmt_operands`` (operands and Rego text), ``gofmt_printer`` (one
verb's formatting) and ``gostrconv`` (quoting and float digits). The names
tests and builtins import stay importable from here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from evaluator_sidecar.policy.engines.wasm.gofmt_operands import (
    BigInt,
    rego_text,
    sprintf_operand,
)
from evaluator_sidecar.policy.engines.wasm.gofmt_printer import Flags, Printer, type_name
from evaluator_sidecar.policy.engines.wasm.gostrconv import GoFormatError, go_quote

__all__ = [
    "GoFormatError",
    "go_quote",
    "go_sprintf",
    "printer_sprintf",
    "rego_text",
    "sprintf_operand",
]

_TOO_LARGE = 1_000_000  # Go's fmt refuses widths and precisions beyond this


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


@functools.lru_cache(maxsize=512)
def _plain_format(fmt: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A format of text, ``%%`` and bare ``%s``/``%v``/``%d`` only: its texts and verbs.

    None for anything else (flags, widths, other verbs, a trailing ``%``).
    """
    parts = _DIRECTIVE.split(fmt)
    texts, verbs = [parts[0]], []
    for verb, text in zip(parts[1::2], parts[2::2], strict=True):
        if verb == "%":
            texts[-1] += "%" + text
        elif verb in "svd":
            verbs.append(verb)
            texts.append(text)
        else:
            return None
    if any("%" in t.replace("%%", "") for t in parts[0::2]):
        return None
    return tuple(texts), tuple(verbs)


_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)


def _plain_sprintf(fmt: str, args: list[Any]) -> str | None:
    """The common case, formatted without Go's printer: None when it is not that case.

    Bare ``%s``/``%v`` of a string and ``%d``/``%v`` of an int64 print the
    string and the decimal digits in Go; every other operand, verb or shape
    (argument count included, which Go reports inline) takes the printer.
    """
    plain = _plain_format(fmt) if len(fmt) <= 4096 else None
    if plain is None or len(plain[1]) != len(args):
        return None
    texts, verbs = plain
    out = [texts[0]]
    for verb, arg, text in zip(verbs, args, texts[1:], strict=True):
        kind = arg.__class__
        if kind is str and verb != "d":
            out.append(arg)
        elif kind is int and verb != "s":
            out.append(str(arg))
        else:
            return None
        out.append(text)
    return "".join(out)


def go_sprintf(fmt: str, args: list[Any], *, max_width: int = _TOO_LARGE) -> str:
    """``fmt.Sprintf(fmt, args...)`` for operands made by :func:`sprintf_operand`."""
    plain = _plain_sprintf(fmt, args)
    if plain is not None:
        return plain
    return printer_sprintf(fmt, args, max_width=max_width)


def printer_sprintf(fmt: str, args: list[Any], *, max_width: int = _TOO_LARGE) -> str:
    """:func:`go_sprintf` through Go's printer, whatever the format (the reference)."""
    p = Printer()
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
        p.f = f = Flags()
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
        p.f = Flags()
        out.append("%!(EXTRA ")
        for k, arg in enumerate(args[arg_num:]):
            if k:
                out.append(", ")
            out.append(type_name(arg) + "=")
            p.print_arg(arg, "v")
        out.append(")")
    return "".join(out)
