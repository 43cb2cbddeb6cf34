"""JSON Schema ``format`` checks as OPA's gojsonschema (``format_checkers.go``) makes them.

Only strings are checked (anything else passes), and an unknown format passes.
Dates and times follow Go's ``time.Parse`` layouts, IP addresses ``net.ParseIP``,
URIs ``url.Parse``, regexes RE2; ``email`` approximates Go's ``net/mail``
address parser (an addr-spec, optionally as ``Name <addr-spec>``).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from typing import Any

import re2  # type: ignore[import-untyped]

from evaluator_sidecar.policy.engines.wasm import gotime
from evaluator_sidecar.policy.engines.wasm.hostaws import parse_url
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError

__all__ = ["is_format"]

_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])"
    r"(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]{0,61}[a-zA-Z0-9]))*\Z"
)
_URI_TEMPLATE = re.compile(r"^([^{]*({[^}]*})?)*\Z")
_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}\Z", re.I)
_JSON_POINTER = re.compile(r"^(?:/(?:[^~/]|~0|~1)*)*\Z", re.S)
_REL_JSON_POINTER = re.compile(r"^(?:0|[1-9][0-9]*)(?:#|(?:/(?:[^~/]|~0|~1)*)*)\Z", re.S)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\Z")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?(Z|[+-]\d{2}:\d{2})?\Z")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR = rf"(?:{_ATOM}(?:\.{_ATOM})*|\"(?:[^\"\\]|\\.)*\")@(?:{_ATOM}(?:\.{_ATOM})*|\[[^\[\]\\]*\])"
_EMAIL = re.compile(rf"^\s*(?:{_ADDR}|(?:[^<>@\"]*|\"[^\"]*\")\s*<{_ADDR}>)\s*\Z")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _date(s: str) -> bool:
    match = _DATE.match(s)
    if not match:
        return False
    try:
        datetime.date(*(int(g) for g in match.groups()))
    except ValueError:
        return False
    return True


def _time(s: str) -> bool:
    match = _TIME.match(s)
    if not match:
        return False
    hour, minute, second = (int(g) for g in match.groups()[:3])
    zone = match.group(4)
    if zone and zone != "Z" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        return False
    return hour < 24 and minute < 60 and second < 60


def _date_time(s: str) -> bool:
    try:
        gotime.parse_rfc3339_ns(s)
    except (gotime.GoTimeError, ValueError, OverflowError):
        return False
    return True


def _ip(s: str, marker: str) -> bool:
    if "%" in s or marker not in s:
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _uri(s: str, *, absolute: bool) -> bool:
    if "\\" in s or (absolute and not _SCHEME.match(s)):
        return False
    try:
        parse_url(s)
    except HostBuiltinError:
        return False
    return True


def _uri_template(s: str) -> bool:
    if "\\" in s:
        return False
    try:
        _host, path, _query = parse_url(s)
    except HostBuiltinError:
        return False
    return bool(_URI_TEMPLATE.match(path))


def _regex(s: str) -> bool:
    if s == "":
        return True
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(s, options)
    except re2.error:
        return False
    return True


_CHECKS = {
    "date": _date,
    "time": _time,
    "date-time": _date_time,
    "hostname": lambda s: bool(_HOSTNAME.match(s)) and len(s) < 256,
    "email": lambda s: bool(_EMAIL.match(s)),
    "idn-email": lambda s: bool(_EMAIL.match(s)),
    "ipv4": lambda s: _ip(s, "."),
    "ipv6": lambda s: _ip(s, ":"),
    "uri": lambda s: _uri(s, absolute=True),
    "uri-reference": lambda s: _uri(s, absolute=False),
    "iri": lambda s: _uri(s, absolute=True),
    "iri-reference": lambda s: _uri(s, absolute=False),
    "uri-template": _uri_template,
    "uuid": lambda s: bool(_UUID.match(s)),
    "regex": _regex,
    "json-pointer": lambda s: bool(_JSON_POINTER.match(s)),
    "relative-json-pointer": lambda s: bool(_REL_JSON_POINTER.match(s)),
}


def is_format(name: str, value: Any) -> bool:
    """Whether ``value`` is of format ``name`` (non-strings and unknown formats pass)."""
    check = _CHECKS.get(name)
    if check is None or not isinstance(value, str):
        return True
    return bool(check(value))  # type: ignore[no-untyped-call]
