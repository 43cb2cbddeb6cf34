"""OPA's time builtins, as its Go evaluator computes them, in Python and without I/O.

OPA's WebAssembly leaves every ``time.*`` builtin to the host. These follow
Go's ``time`` package as OPA calls it:

* ``parse_rfc3339_ns`` accepts what Go's ``time.Parse(time.RFC3339, s)``
  accepts: ``YYYY-MM-DDTHH:MM:SS``, an optional fraction after ``.`` or ``,``
  (digits past the ninth are dropped), then ``Z`` or ``±hh:mm``; a one-digit
  hour is tolerated, as Go's general parser does;
* ``parse_duration_ns`` is Go's ``time.ParseDuration`` plus OPA's ``d``,
  ``w`` and ``y`` units (24, 168 and 8760 hours);
* ``date``, ``clock``, ``weekday``, ``add_date`` and ``diff`` take nanoseconds
  or ``[ns, "Zone/Name"]`` (``""``/``"UTC"`` is UTC, ``"Local"`` the host's zone);
* results outside the int64 nanosecond range (years 1677 to 2262) are errors.

Errors raise ``ValueError`` subclasses; the caller makes the call undefined,
as OPA does outside strict mode. For policy authors: docs/wasm-engine.md.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "GoTimeError",
    "add_date",
    "clock",
    "date",
    "diff",
    "parse_duration_ns",
    "parse_rfc3339_ns",
    "weekday",
]

_NS_MIN = -(1 << 63)
_NS_MAX = (1 << 63) - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class GoTimeError(ValueError):
    """An input Go's time package rejects, or a result outside the nanosecond range."""


# -- RFC 3339 --------------------------------------------------------------------------
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _days_in(month: int, year: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _checked_ns(ns: int) -> int:
    if not _NS_MIN <= ns <= _NS_MAX:
        raise GoTimeError("time outside of valid range")
    return ns


def parse_rfc3339_ns(value: str) -> int:
    """``time.parse_rfc3339_ns``: nanoseconds since the epoch."""
    match = _RFC3339.fullmatch(value)
    if not match:
        raise GoTimeError(f"cannot parse {value!r} as RFC3339")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if not 1 <= month <= 12:
        raise GoTimeError("month out of range")
    if hour >= 24 or minute >= 60 or second >= 60:
        raise GoTimeError("time out of range")
    if not 1 <= day <= _days_in(month, year):
        raise GoTimeError("day out of range")
    nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
    offset = 0
    if zone != "Z":
        offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60
        if zone[0] == "-":
            offset = -offset
    if year < 1:  # far outside the nanosecond range anyway; Python's date starts at year 1
        raise GoTimeError("time outside of valid range")
    days = (dt.date(year, month, day) - dt.date(1970, 1, 1)).days
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    return _checked_ns(seconds * 1_000_000_000 + nanos)


# -- durations -------------------------------------------------------------------------
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_EXTENDED_HOURS = {"d": 24, "w": 7 * 24, "y": 365 * 24}
_SEGMENT = re.compile(r"([0-9.]+)(ms|us|\u00b5s|ns|[a-z])")


def _go_parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, integer-exact like Go's."""
    orig = text
    s = text
    d = 0
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise GoTimeError(f"time: invalid duration {orig!r}")
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise GoTimeError(f"time: invalid duration {orig!r}")
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            if v > (1 << 63) // 10:
                raise GoTimeError(f"time: invalid duration {orig!r}")
            v = v * 10 + ord(s[i]) - 48
            if v > 1 << 63:
                raise GoTimeError(f"time: invalid duration {orig!r}")
            i += 1
        pre = i > 0
        s = s[i:]
        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + ord(s[i]) - 48
                        if y > 1 << 63:
                            overflow = True
                        else:
                            f = y
                            scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise GoTimeError(f"time: invalid duration {orig!r}")
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise GoTimeError(f"time: missing unit in duration {orig!r}")
        unit_name, s = s[:i], s[i:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise GoTimeError(f"time: unknown unit {unit_name!r} in duration {orig!r}")
        if v > (1 << 63) // unit:
            raise GoTimeError(f"time: invalid duration {orig!r}")
        v *= unit
        if f > 0:
            # Go converts through float64 here: keep its rounding exactly.
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise GoTimeError(f"time: invalid duration {orig!r}")
        d += v
        if d > 1 << 63:
            raise GoTimeError(f"time: invalid duration {orig!r}")
    if neg:
        return -d
    if d > (1 << 63) - 1:
        raise GoTimeError(f"time: invalid duration {orig!r}")
    return d


def _go_format_float_f(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_duration_ns(text: str) -> int:
    """``time.parse_duration_ns``: Go durations plus ``d``, ``w`` and ``y``."""
    if text == "":
        raise GoTimeError('time: invalid duration ""')
    if not any(c in text for c in "dwy"):
        return _go_parse_duration(text)
    sign = ""
    rest = text
    if rest[:1] in ("+", "-"):
        sign, rest = rest[0], rest[1:]
    pos = 0
    parts: list[str] = []
    while pos < len(rest):
        match = _SEGMENT.match(rest, pos)
        if not match:
            raise GoTimeError(f"time: invalid duration {text!r}")
        digits, unit = match.groups()
        if unit in _EXTENDED_HOURS:
            try:
                hours = float(digits) * _EXTENDED_HOURS[unit]
            except ValueError:
                raise GoTimeError(f"time: invalid duration {text!r}") from None
            parts.append(_go_format_float_f(hours) + "h")
        else:
            parts.append(digits + unit)
        pos = match.end()
    if not parts:
        raise GoTimeError(f"time: invalid duration {text!r}")
    return _go_parse_duration(sign + "".join(parts))


# -- nanoseconds in a zone ---------------------------------------------------------------
@lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo:
    if name in ("", "UTC"):
        return dt.UTC
    if name == "Local":
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GoTimeError(f"unknown time zone {name}") from exc


def _ns_operand(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GoTimeError("operand 1 must be a number of nanoseconds or [ns, zone]")
    if isinstance(value, float):
        if not value.is_integer():
            raise GoTimeError("timestamp too big")
        value = int(value)
    if not _NS_MIN <= value <= _NS_MAX:
        raise GoTimeError("timestamp too big")
    return int(value)


def _zoned(arg: Any) -> dt.datetime:
    """A ``ns`` or ``[ns, zone, layout?]`` operand as an aware datetime (microseconds kept)."""
    zone_name = ""
    if isinstance(arg, list):
        if not arg:
            raise GoTimeError("operand 1 must be a number of nanoseconds or [ns, zone]")
        ns = _ns_operand(arg[0])
        if len(arg) > 1:
            if not isinstance(arg[1], str):
                raise GoTimeError("operand 1: the zone must be a string")
            zone_name = arg[1]
        if len(arg) > 2 and not isinstance(arg[2], str):
            raise GoTimeError("operand 1: the layout must be a string")
    else:
        ns = _ns_operand(arg)
    seconds, nanos = divmod(ns, 1_000_000_000)
    moment = _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
    return moment.astimezone(_zone(zone_name))


def _nanos_of(arg: Any) -> int:
    ns = _ns_operand(arg[0] if isinstance(arg, list) and arg else arg)
    return ns % 1_000_000_000


def date(arg: Any) -> list[int]:
    """``time.date``: ``[year, month, day]``."""
    t = _zoned(arg)
    return [t.year, t.month, t.day]


def clock(arg: Any) -> list[int]:
    """``time.clock``: ``[hour, minute, second]``."""
    t = _zoned(arg)
    return [t.hour, t.minute, t.second]


def weekday(arg: Any) -> str:
    """``time.weekday``: ``"Monday"`` … ``"Sunday"``."""
    return _WEEKDAYS[_zoned(arg).weekday()]


def _int_operand(value: Any, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GoTimeError(f"operand {position} must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise GoTimeError(f"operand {position} must be an integer")
    return int(value)


def add_date(arg: Any, years: Any, months: Any, days: Any) -> int:
    """``time.add_date``: Go's ``Time.AddDate`` (month and day overflow normalised)."""
    t = _zoned(arg)
    nanos = _nanos_of(arg)
    y, m, d = _int_operand(years, 2), _int_operand(months, 3), _int_operand(days, 4)
    total_months = (t.year + y) * 12 + (t.month - 1) + m
    year, month0 = divmod(total_months, 12)
    try:
        first = dt.date(year, month0 + 1, 1)
        day = first + dt.timedelta(days=t.day - 1 + d)
    except (ValueError, OverflowError):
        raise GoTimeError("time outside of valid range") from None
    wall = dt.datetime(day.year, day.month, day.day, t.hour, t.minute, t.second, tzinfo=t.tzinfo)
    delta = wall - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return _checked_ns(seconds * 1_000_000_000 + nanos)


def diff(a: Any, b: Any) -> list[int]:
    """``time.diff``: ``[years, months, days, hours, minutes, seconds]`` between two times."""
    t1 = _zoned(a)
    t2 = _zoned(b)
    if t1.tzinfo is not t2.tzinfo:
        t2 = t2.astimezone(t1.tzinfo)
    if _ns_operand(a[0] if isinstance(a, list) else a) > _ns_operand(
        b[0] if isinstance(b, list) else b
    ):
        t1, t2 = t2, t1
    year = t2.year - t1.year
    month = t2.month - t1.month
    day = t2.day - t1.day
    hour = t2.hour - t1.hour
    minute = t2.minute - t1.minute
    sec = t2.second - t1.second
    if sec < 0:
        sec += 60
        minute -= 1
    if minute < 0:
        minute += 60
        hour -= 1
    if hour < 0:
        hour += 24
        day -= 1
    if day < 0:
        # Go normalises day 32 of t1's month: 32 - that day is the month's length.
        day += _days_in(t1.month, t1.year)
        month -= 1
    if month < 0:
        month += 12
        year -= 1
    return [year, month, day, hour, minute, sec]


def ns_operand(value: Any) -> int:
    """A nanoseconds operand as OPA's ``tzTime`` reads it (exact integers of int64 only)."""
    return _ns_operand(value)


def zone(name: str) -> dt.tzinfo:
    """The zone ``name`` names as OPA's ``tzTime`` loads it (``""``/``UTC``, ``Local``, IANA)."""
    return _zone(name)
