"""``time.parse_ns`` and ``time.format``: Go's layout-based ``time.Parse`` and ``Time.Format``.

Ported from Go's ``time/format.go`` (``nextStdChunk``, ``parse``, ``appendFormat``)
as OPA's ``v1/topdown/time.go`` calls them: a layout is Go's reference time
``Mon Jan 2 15:04:05 MST 2006`` written the way the value is, or one of the
names OPA accepts (``RFC3339``, ``RFC822Z``, ``ANSIC``, …).

Where Go consults the host's local zone (a value naming a zone abbreviation
such as ``MST``, or an offset that equals the local one), this module takes the
local zone to be UTC, as it is in the sidecar's container: an abbreviation
other than ``UTC`` then means offset zero, which is what Go does for an
abbreviation the local zone does not know (``GMT+3`` included: Go labels the
time with that offset but keeps the instant read as UTC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from evaluator_sidecar.policy.engines.wasm import gotime
from evaluator_sidecar.policy.engines.wasm.gotime import GoTimeError

__all__ = ["time_format", "time_parse_ns"]

NAMED_LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
}
_LONG_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_LONG_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)
_NS = 1_000_000_000
_NS_MIN, _NS_MAX = -(1 << 63), (1 << 63) - 1

# The std chunks (names as in Go's format.go); fractions are ("frac0"|"frac9", digits, sep).
_ZERO_X = ("ZeroMonth", "ZeroDay", "ZeroHour12", "ZeroMinute", "ZeroSecond", "Year")
_TZ_CHUNKS = (
    ("070000", "SecondsTZ"),
    ("07:00:00", "ColonSecondsTZ"),
    ("0700", "TZ"),
    ("07:00", "ColonTZ"),
    ("07", "ShortTZ"),
)

Std = str | tuple[str, int, str]


def _lower_start(s: str) -> bool:
    return bool(s) and "a" <= s[0] <= "z"


def _digit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


def _std_at(layout: str, i: int) -> tuple[Std, int] | None:  # noqa: C901, PLR0911, PLR0912 - Go's switch
    """The std chunk starting at ``layout[i]`` and its length, as Go's ``nextStdChunk``."""
    c, rest = layout[i], layout[i:]
    if c == "J" and rest.startswith("Jan"):
        if rest.startswith("January"):
            return "LongMonth", 7
        if not _lower_start(rest[3:]):
            return "Month", 3
    elif c == "M" and rest.startswith("Mon"):
        if rest.startswith("Monday"):
            return "LongWeekDay", 6
        if not _lower_start(rest[3:]):
            return "WeekDay", 3
    elif c == "M" and rest.startswith("MST"):
        return "TZ", 3
    elif c == "0":
        if len(rest) >= 2 and "1" <= rest[1] <= "6":
            return _ZERO_X[ord(rest[1]) - ord("1")], 2
        if rest.startswith("002"):
            return "ZeroYearDay", 3
    elif c == "1":
        return ("Hour", 2) if rest.startswith("15") else ("NumMonth", 1)
    elif c == "2":
        return ("LongYear", 4) if rest.startswith("2006") else ("Day", 1)
    elif c == "_":
        if rest.startswith("_2"):
            return ("UnderDay", 2) if not rest.startswith("_2006") else None
        if rest.startswith("__2"):
            return "UnderYearDay", 3
    elif c in "345":
        return {"3": "Hour12", "4": "Minute", "5": "Second"}[c], 1
    elif c == "P" and rest.startswith("PM"):
        return "PM", 2
    elif c == "p" and rest.startswith("pm"):
        return "pm", 2
    elif c in "-Z":
        for text, name in _TZ_CHUNKS:
            if rest[1:].startswith(text):
                return ("Num" if c == "-" else "ISO8601") + name, 1 + len(text)
    elif c in ".," and len(rest) > 1 and rest[1] in "09":
        j = 1
        while j < len(rest) and rest[j] == rest[1]:
            j += 1
        if not _digit(rest, j):
            return ("frac0" if rest[1] == "0" else "frac9", j - 1, c), j
    return None


def _next_chunk(layout: str) -> tuple[str, Std | None, str]:
    """(prefix, std or None, suffix): Go's ``nextStdChunk``."""
    for i in range(len(layout)):
        if layout[i] == "_" and layout.startswith("_2006", i):
            return layout[: i + 1], "LongYear", layout[i + 5 :]
        found = _std_at(layout, i)
        if found is not None:
            return layout[:i], found[0], layout[i + found[1] :]
    return layout, None, ""


# -- parsing ----------------------------------------------------------------------------------
class _Bad(Exception):
    """Go's errBad: the value does not fit the layout."""


def _skip(value: str, prefix: str) -> str:
    while prefix:
        if prefix[0] == " ":
            if value and value[0] != " ":
                raise _Bad
            prefix, value = prefix.lstrip(" "), value.lstrip(" ")
            continue
        if not value or value[0] != prefix[0]:
            raise _Bad
        prefix, value = prefix[1:], value[1:]
    return value


def _getnum(s: str, *, fixed: bool) -> tuple[int, str]:
    if not _digit(s, 0):
        raise _Bad
    if not _digit(s, 1):
        if fixed:
            raise _Bad
        return int(s[0]), s[1:]
    return int(s[:2]), s[2:]


def _getnum3(s: str, *, fixed: bool) -> tuple[int, str]:
    i = 0
    while i < 3 and _digit(s, i):
        i += 1
    if i == 0 or (fixed and i != 3):
        raise _Bad
    return int(s[:i]), s[i:]


def _leading_int(s: str) -> tuple[int, str]:
    i = 0
    while _digit(s, i):
        i += 1
    return (int(s[:i]) if i else 0), s[i:]


def _atoi(s: str) -> int:
    neg = s[:1] == "-"
    if s[:1] in "+-" and s:
        s = s[1:]
    x, rest = _leading_int(s)
    if rest:
        raise _Bad
    return -x if neg else x


def _lookup(names: tuple[str, ...], value: str) -> tuple[int, str]:
    for i, name in enumerate(names):
        if len(value) >= len(name) and value[: len(name)].lower() == name.lower():
            return i, value[len(name) :]
    raise _Bad


def _nanoseconds(value: str, nbytes: int) -> int:
    if value[0] not in ".,":
        raise _Bad
    nbytes = min(nbytes, 10)
    return _atoi(value[1:nbytes]) * int(10 ** (10 - nbytes))


def _signed_offset(value: str) -> int:
    if value[:1] not in ("-", "+"):
        return 0
    x, rest = _leading_int(value[1:])
    if value[1:] == rest or x > 12:
        return 0
    return len(value) - len(rest)


def _zone_length(value: str) -> int:  # noqa: PLR0911 - Go's cases
    """Go's ``parseTimeZone``: how much of ``value`` is a zone abbreviation (0: none)."""
    if len(value) < 3:
        return 0
    if value[:4] in ("ChST", "MeST"):
        return 4
    if value.startswith("GMT"):
        return 3 + (_signed_offset(value[3:]) if len(value) > 3 else 0)
    if value[0] in "+-":
        return _signed_offset(value)
    upper = 0
    while upper < 6 and upper < len(value) and "A" <= value[upper] <= "Z":
        upper += 1
    if upper == 3 or (upper == 5 and value[4] == "T"):
        return upper
    if upper == 4 and (value[3] == "T" or value[:4] == "WITA"):
        return 4
    return 0


class _Fields:
    __slots__ = (
        "am", "day", "hour", "minute", "month", "nsec", "offset", "pm", "sec", "utc", "yday",
        "year", "zone",
    )  # fmt: skip

    def __init__(self) -> None:
        self.year = self.hour = self.minute = self.sec = self.nsec = 0
        self.month = self.day = self.yday = self.offset = -1
        self.zone = ""
        self.am = self.pm = self.utc = False


def _parse_tz_offset(std: str, value: str, f: _Fields) -> str:
    if std.startswith("ISO8601") and value[:1] == "Z":
        f.utc = True
        return value[1:]
    kind = std.removeprefix("ISO8601").removeprefix("Num")
    if kind == "ColonTZ":
        if len(value) < 6 or value[3] != ":":
            raise _Bad
        parts, value = (value[1:3], value[4:6], "00"), value[6:]
    elif kind == "ShortTZ":
        if len(value) < 3:
            raise _Bad
        parts, value = (value[1:3], "00", "00"), value[3:]
    elif kind == "ColonSecondsTZ":
        if len(value) < 9 or value[3] != ":" or value[6] != ":":
            raise _Bad
        parts, value = (value[1:3], value[4:6], value[7:9]), value[9:]
    elif kind == "SecondsTZ":
        if len(value) < 7:
            raise _Bad
        parts, value = (value[1:3], value[3:5], value[5:7]), value[7:]
    else:
        if len(value) < 5:
            raise _Bad
        parts, value = (value[1:3], value[3:5], "00"), value[5:]
    hr, mm, ss = (_getnum(p, fixed=True)[0] for p in parts)
    if hr > 24 or mm > 60 or ss > 60:
        raise GoTimeError("time zone offset out of range")
    f.offset = (hr * 60 + mm) * 60 + ss
    return value


def _parse_chunk(std: Std, value: str, layout_rest: str, f: _Fields) -> str:  # noqa: C901, PLR0912
    """Consume ``std`` from ``value`` into ``f``; returns what is left of the value."""
    if isinstance(std, tuple):
        kind, digits, _sep = std
        if kind == "frac0":
            if len(value) < 1 + digits:
                raise _Bad
            f.nsec, value = _nanoseconds(value, 1 + digits), value[1 + digits :]
        elif len(value) >= 2 and value[0] in ".," and _digit(value, 1):
            i = 1
            while _digit(value, i):
                i += 1
            f.nsec, value = _nanoseconds(value, i), value[i:]
        return value
    if std == "Year":
        if len(value) < 2:
            raise _Bad
        year = _atoi(value[:2])
        f.year, value = year + (1900 if year >= 69 else 2000), value[2:]
    elif std == "LongYear":
        if len(value) < 4 or not _digit(value, 0):
            raise _Bad
        f.year, value = _atoi(value[:4]), value[4:]
    elif std in ("Month", "LongMonth"):
        names: tuple[str, ...] = _LONG_MONTHS
        if std == "Month":
            names = tuple(m[:3] for m in _LONG_MONTHS)
        month, value = _lookup(names, value)
        f.month = month + 1
    elif std in ("NumMonth", "ZeroMonth"):
        f.month, value = _getnum(value, fixed=std == "ZeroMonth")
        _range(1 <= f.month <= 12, "month")
    elif std in ("WeekDay", "LongWeekDay"):
        names = _LONG_DAYS if std == "LongWeekDay" else tuple(d[:3] for d in _LONG_DAYS)
        value = _lookup(names, value)[1]
    elif std in ("Day", "UnderDay", "ZeroDay"):
        if std == "UnderDay" and value[:1] == " ":
            value = value[1:]
        f.day, value = _getnum(value, fixed=std == "ZeroDay")
    elif std in ("UnderYearDay", "ZeroYearDay"):
        for _ in range(2):
            if std == "UnderYearDay" and value[:1] == " ":
                value = value[1:]
        f.yday, value = _getnum3(value, fixed=std == "ZeroYearDay")
    else:
        value = _parse_clock_chunk(std, value, layout_rest, f)
    return value


def _parse_clock_chunk(std: str, value: str, layout_rest: str, f: _Fields) -> str:  # noqa: C901, PLR0912
    """:func:`_parse_chunk` for hours to zones."""
    if std == "Hour":
        f.hour, value = _getnum(value, fixed=False)
        _range(f.hour < 24, "hour")
    elif std in ("Hour12", "ZeroHour12"):
        f.hour, value = _getnum(value, fixed=std == "ZeroHour12")
        _range(f.hour <= 12, "hour")
    elif std in ("Minute", "ZeroMinute"):
        f.minute, value = _getnum(value, fixed=std == "ZeroMinute")
        _range(f.minute < 60, "minute")
    elif std in ("Second", "ZeroSecond"):
        f.sec, value = _getnum(value, fixed=std == "ZeroSecond")
        _range(f.sec < 60, "second")
        if len(value) >= 2 and value[0] in ".," and _digit(value, 1):
            nxt = _next_chunk(layout_rest)[1]
            if not (isinstance(nxt, tuple) and nxt[0] in ("frac0", "frac9")):
                n = 2
                while _digit(value, n):
                    n += 1
                f.nsec, value = _nanoseconds(value, n), value[n:]
    elif std in ("PM", "pm"):
        word = value[:2]
        if word not in (("AM", "PM") if std == "PM" else ("am", "pm")):
            raise _Bad
        f.pm, f.am, value = word in ("PM", "pm"), word in ("AM", "am"), value[2:]
    elif std == "TZ":
        if value.startswith("UTC"):
            f.utc, value = True, value[3:]
        else:
            n = _zone_length(value)
            if n == 0:
                raise _Bad
            f.zone, value = value[:n], value[n:]
    else:
        if not value:
            raise _Bad
        sign = value[0]
        value = _parse_tz_offset(std, value, f)
        if not f.utc:
            if sign not in "+-":
                raise _Bad
            f.offset = -f.offset if sign == "-" else f.offset
    return value


def _range(ok: bool, what: str) -> None:
    if not ok:
        raise GoTimeError(f"{what} out of range")


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if _leap(year) else 28
    return _DAYS_BEFORE[month] - _DAYS_BEFORE[month - 1]


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _resolve_date(f: _Fields) -> tuple[int, int]:
    """(month, day) after Go's year-day and default handling."""
    month, day = f.month, f.day
    if f.yday >= 0:
        yday, m, d = f.yday, 0, 0
        if _leap(f.year):
            if yday == 31 + 29:
                m, d = 2, 29
            elif yday > 31 + 29:
                yday -= 1
        if yday < 1 or yday > 365:
            raise GoTimeError("day-of-year out of range")
        if m == 0:
            m = (yday - 1) // 31 + 1
            if _DAYS_BEFORE[m] < yday:
                m += 1
            d = yday - _DAYS_BEFORE[m - 1]
        if (month >= 0 and month != m) or (day >= 0 and day != d):
            raise GoTimeError("day-of-year does not match the month or day")
        return m, d
    return (month if month >= 0 else 1), (day if day >= 0 else 1)


def time_parse_ns(layout: Any, value: Any) -> int:
    """``time.parse_ns``: Go's ``time.Parse(layout, value)`` as nanoseconds since the epoch."""
    if not isinstance(layout, str) or not isinstance(value, str):
        raise GoTimeError("time.parse_ns takes a layout string and a value string")
    layout = NAMED_LAYOUTS.get(layout, layout)
    f = _Fields()
    while True:
        prefix, std, suffix = _next_chunk(layout)
        try:
            value = _skip(value, prefix)
            if std is None:
                if value:
                    raise GoTimeError(f"extra text: {value!r}")
                break
            value = _parse_chunk(std, value, suffix, f)
        except _Bad:
            raise GoTimeError(f"cannot parse {value!r} as {layout!r}") from None
        layout = suffix
    if f.pm and f.hour < 12:
        f.hour += 12
    elif f.am and f.hour == 12:
        f.hour = 0
    month, day = _resolve_date(f)
    if day < 1 or day > _days_in(month, f.year):
        raise GoTimeError("day out of range")
    seconds = _days_from_civil(f.year, month, day) * 86400 + f.hour * 3600 + f.minute * 60 + f.sec
    # A zone abbreviation (even GMT+3) only labels the time: Go keeps the UTC wall-clock instant.
    if not f.utc and f.offset != -1:
        seconds -= f.offset
    ns = seconds * _NS + f.nsec
    if not _NS_MIN <= ns <= _NS_MAX:
        raise GoTimeError("time outside of valid range")
    return ns


# -- formatting -------------------------------------------------------------------------------
def _pad(x: int, width: int) -> str:
    return ("-" if x < 0 else "") + str(abs(x)).rjust(width, "0")


def _format_tz(std: str, offset: int) -> str:
    if offset == 0 and std.startswith("ISO8601"):
        return "Z"
    kind = std.removeprefix("ISO8601").removeprefix("Num")
    zone, absolute = offset // 60 if offset >= 0 else -(-offset // 60), abs(offset)
    out = ("-" if zone < 0 else "+") + _pad(abs(zone) // 60, 2)
    if "Colon" in kind:
        out += ":"
    if kind != "ShortTZ":
        out += _pad(abs(zone) % 60, 2)
    if "Seconds" in kind:
        out += (":" if "Colon" in kind else "") + _pad(absolute % 60, 2)
    return out


_SIMPLE: dict[str, Callable[[dt.datetime], str]] = {
    "Year": lambda t: _pad(t.year % 100, 2),
    "LongYear": lambda t: _pad(t.year, 4),
    "Month": lambda t: _LONG_MONTHS[t.month - 1][:3],
    "LongMonth": lambda t: _LONG_MONTHS[t.month - 1],
    "NumMonth": lambda t: str(t.month),
    "ZeroMonth": lambda t: _pad(t.month, 2),
    "WeekDay": lambda t: _LONG_DAYS[(t.weekday() + 1) % 7][:3],
    "LongWeekDay": lambda t: _LONG_DAYS[(t.weekday() + 1) % 7],
    "Day": lambda t: str(t.day),
    "UnderDay": lambda t: str(t.day).rjust(2, " "),
    "ZeroDay": lambda t: _pad(t.day, 2),
    "UnderYearDay": lambda t: str(t.timetuple().tm_yday).rjust(3, " "),
    "ZeroYearDay": lambda t: _pad(t.timetuple().tm_yday, 3),
    "Hour": lambda t: _pad(t.hour, 2),
    "Hour12": lambda t: str(t.hour % 12 or 12),
    "ZeroHour12": lambda t: _pad(t.hour % 12 or 12, 2),
    "Minute": lambda t: str(t.minute),
    "ZeroMinute": lambda t: _pad(t.minute, 2),
    "Second": lambda t: str(t.second),
    "ZeroSecond": lambda t: _pad(t.second, 2),
    "PM": lambda t: "PM" if t.hour >= 12 else "AM",
    "pm": lambda t: "pm" if t.hour >= 12 else "am",
}


def _format_chunk(std: Std, t: dt.datetime, nsec: int) -> str:
    if isinstance(std, tuple):
        kind, digits, sep = std
        if kind == "frac9" and (digits == 0 or nsec == 0):
            return ""
        text = sep + str(nsec).rjust(9, "0")[:digits]
        return text.rstrip("0").rstrip(sep) if kind == "frac9" else text
    simple = _SIMPLE.get(std)
    if simple is not None:
        return simple(t)
    delta = t.utcoffset()
    offset = int(delta.total_seconds()) if delta is not None else 0
    if std == "TZ":
        name = t.tzname() or ""
        if name:
            return name
        zone = offset // 60 if offset >= 0 else -(-offset // 60)
        return ("-" if zone < 0 else "+") + _pad(abs(zone) // 60, 2) + _pad(abs(zone) % 60, 2)
    return _format_tz(std, offset)


def time_format(arg: Any) -> str:
    """``time.format``: ``ns`` or ``[ns, zone, layout?]`` as Go's ``Time.Format``."""
    layout = ""
    if isinstance(arg, list) and len(arg) > 2:
        if not isinstance(arg[2], str):
            raise GoTimeError("operand 1: the layout must be a string")
        layout = arg[2]
    zone_name = arg[1] if isinstance(arg, list) and len(arg) > 1 else ""
    if not isinstance(zone_name, str):
        raise GoTimeError("operand 1: the zone must be a string")
    if isinstance(arg, list) and not arg:
        raise GoTimeError("operand 1 must be a number of nanoseconds or [ns, zone]")
    ns = gotime.ns_operand(arg[0] if isinstance(arg, list) else arg)
    layout = NAMED_LAYOUTS.get(layout or "RFC3339Nano", layout)
    seconds, nsec = divmod(ns, _NS)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    t = (epoch + dt.timedelta(seconds=seconds)).astimezone(gotime.zone(zone_name))
    out: list[str] = []
    while layout:
        prefix, std, layout = _next_chunk(layout)
        out.append(prefix)
        if std is not None:
            out.append(_format_chunk(std, t, nsec))
    return "".join(out)
