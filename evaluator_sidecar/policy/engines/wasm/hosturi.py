"""``uri.parse`` and ``uri.is_valid``: Go's ``net/url.Parse``, as OPA's ``uri.go`` calls it.

Ported from Go 1.26's ``net/url`` (the Go OPA v1.22.2 is built with): the
scheme, authority (userinfo, host with IP literals and zones, port), path with
its raw form, query and fragment, and Go's errors for control characters,
malformed escapes, hosts and ports (``http``/``https`` hosts may hold one colon
only, Go's default). Bytes work as in Go; text that is not UTF-8 after
unescaping shows each bad byte as U+FFFD, as OPA's JSON output does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from evaluator_sidecar.policy.engines.wasm import hostlib
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError

__all__ = ["uri_is_valid", "uri_parse"]

_HOST, _ZONE, _PATH, _USER, _FRAGMENT = "host", "zone", "path", "user", "fragment"
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _should_escape(c: int, mode: str) -> bool:  # noqa: PLR0911 - Go's shouldEscape
    if c in _ALNUM:
        return False
    ch = chr(c)
    if mode in (_HOST, _ZONE) and ch in "!$&'()*+,;=:[]<>\"":
        return False
    if ch in "-_.~":
        return False
    if ch in "$&+,/:;=?@":
        if mode == _PATH:
            return ch == "?"
        if mode == _USER:
            return ch in "@/?:"
        if mode == _FRAGMENT:
            return False
    return not (mode == _FRAGMENT and ch in "!()*")


def _unescape(s: bytes, mode: str) -> bytes:
    """Go's ``unescape`` (no query mode: ``+`` stays ``+``)."""
    i = 0
    while i < len(s):
        c = s[i]
        if c == 0x25:  # %
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise HostBuiltinError(f"invalid URL escape {s[i : i + 3]!r}")
            if mode == _HOST and int(chr(s[i + 1]), 16) < 8 and s[i : i + 3] != b"%25":
                raise HostBuiltinError(f"invalid URL escape {s[i : i + 3]!r}")
            if mode == _ZONE:
                v = int(s[i + 1 : i + 3], 16)
                if s[i : i + 3] != b"%25" and v != 0x20 and _should_escape(v, _HOST):
                    raise HostBuiltinError(f"invalid URL escape {s[i : i + 3]!r}")
            i += 3
            continue
        if mode in (_HOST, _ZONE) and c < 0x80 and _should_escape(c, mode):
            raise HostBuiltinError(f"invalid character {chr(c)!r} in host name")
        i += 1
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == 0x25:
            out.append(int(s[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(s[i])
            i += 1
    return bytes(out)


def _escape(s: bytes, mode: str) -> bytes:
    return b"".join(b"%%%02X" % c if _should_escape(c, mode) else bytes([c]) for c in s)


def _scheme(raw: bytes) -> tuple[bytes, bytes]:
    for i, c in enumerate(raw):
        if c in _ALNUM and not 0x30 <= c <= 0x39:
            continue
        if 0x30 <= c <= 0x39 or c in b"+-.":
            if i == 0:
                return b"", raw
            continue
        if c == 0x3A:  # :
            if i == 0:
                raise HostBuiltinError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return b"", raw
    return b"", raw


def _valid_port(port: bytes) -> bool:
    return not port or (port[:1] == b":" and all(0x30 <= c <= 0x39 for c in port[1:]))


def _parse_host(scheme: bytes, host: bytes) -> bytes:
    open_bracket = host.rfind(b"[")
    if open_bracket > 0:
        raise HostBuiltinError("invalid IP-literal")
    if open_bracket == 0:
        close = host.rfind(b"]")
        if close < 0:
            raise HostBuiltinError("missing ']' in host")
        colon_port = host[close + 1 :]
        if not _valid_port(colon_port):
            raise HostBuiltinError(f"invalid port {colon_port!r} after host")
        colon_port = _unescape(colon_port, _HOST)
        name = host[1:close]
        zone = name.find(b"%25")
        if zone >= 0:
            unescaped = _unescape(name[:zone], _HOST) + _unescape(name[zone:], _ZONE)
        else:
            unescaped = _unescape(name, _HOST)
        _ip_literal(unescaped)
        return b"[" + unescaped + b"]" + colon_port
    first = host.find(b":")
    if first != -1:
        last = host.rfind(b":")
        i = first if last != first and scheme in (b"http", b"https") else last
        if not _valid_port(host[i:]):
            raise HostBuiltinError(f"invalid port {host[i:]!r} after host")
    return _unescape(host, _HOST)


def _ip_literal(text: bytes) -> None:
    """Go's ``netip.ParseAddr`` of a bracketed host: IPv6 (zones allowed), not IPv4."""
    address = text.decode("latin-1")
    addr, percent, zone = address.partition("%")
    if percent and not zone:
        raise HostBuiltinError("invalid host: empty zone")
    try:
        ipaddress.IPv6Address(addr)
    except ValueError as exc:
        raise HostBuiltinError("invalid host") from exc


_USERINFO_OK = frozenset(b"-._:~!$&'()*+,;=%@") | _ALNUM


def _parse_authority(scheme: bytes, authority: bytes) -> bytes:
    at = authority.rfind(b"@")
    host = _parse_host(scheme, authority[at + 1 :] if at >= 0 else authority)
    if at >= 0:
        userinfo = authority[:at]
        if not set(userinfo) <= _USERINFO_OK:
            raise HostBuiltinError("net/url: invalid userinfo")
        for part in userinfo.split(b":", 1):
            _unescape(part, _USER)
    return host


def _split_host_port(host: bytes) -> tuple[bytes, bytes]:
    port = b""
    colon = host.rfind(b":")
    if colon != -1 and _valid_port(host[colon:]):
        host, port = host[:colon], host[colon + 1 :]
    if host.startswith(b"[") and host.endswith(b"]"):
        host = host[1:-1]
    return host, port


def _parse(text: str) -> dict[str, str]:
    raw = text.encode("utf-8", "surrogatepass")
    raw, hash_sign, frag = raw.partition(b"#")
    if any(c < 0x20 or c == 0x7F for c in raw):
        raise HostBuiltinError("net/url: invalid control character in URL")
    fields: dict[str, bytes] = {}
    if raw == b"*":
        fields["path"] = b"*"
    else:
        scheme, rest = _scheme(raw)
        scheme = scheme.lower()
        fields["scheme"] = scheme
        if rest.endswith(b"?") and rest.count(b"?") == 1:
            rest = rest[:-1]
        else:
            rest, _, fields["raw_query"] = rest.partition(b"?")
        opaque = False
        if not rest.startswith(b"/"):
            if scheme:
                opaque = True
            elif b":" in rest.split(b"/", 1)[0]:
                raise HostBuiltinError("first path segment in URL cannot contain colon")
        if not opaque:
            if rest.startswith(b"//") and (scheme or not rest.startswith(b"///")):
                authority, slash, tail = rest[2:].partition(b"/")
                rest = slash + tail
                fields["host"] = _parse_authority(scheme, authority)
            path = _unescape(rest, _PATH)
            fields["path"] = path
            fields["raw_path_set"] = b"" if _escape(path, _PATH) == rest else rest
    if hash_sign and frag:
        fields["fragment"] = _unescape(frag, _FRAGMENT)
    return _result(fields)


def _result(fields: dict[str, bytes]) -> dict[str, str]:
    hostname, port = _split_host_port(fields.get("host", b""))
    out: dict[str, str] = {}
    path = fields.get("path", b"")
    for key, value in (
        ("scheme", fields.get("scheme", b"")),
        ("hostname", hostname),
        ("port", port),
        ("path", path),
        ("raw_path", (fields.get("raw_path_set") or path) if path else b""),
        ("raw_query", fields.get("raw_query", b"")),
        ("fragment", fields.get("fragment", b"")),
    ):
        if value:
            out[key] = hostlib._utf8(value)
    return out


def uri_parse(value: Any) -> dict[str, str]:
    """``uri.parse``: the URL's parts that are present (``raw_path`` whenever ``path`` is)."""
    if not isinstance(value, str):
        raise HostBuiltinError("operand 1 must be a string")
    return _parse(value)


def uri_is_valid(value: Any) -> bool:
    """``uri.is_valid``: a non-empty string Go's ``url.Parse`` accepts."""
    if not isinstance(value, str) or not value:
        return False
    try:
        _parse(value)
    except HostBuiltinError:
        return False
    return True
