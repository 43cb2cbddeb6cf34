"""OPA's string, encoding, hash, semver and range builtins that its WebAssembly leaves to the host.

Pure functions, each following the Go implementation OPA's own evaluator
runs (``url.QueryEscape``, ``hex.DecodeString``, OPA's semver package, …).
They raise ``HostBuiltinError`` for inputs OPA rejects; the dispatcher turns
that into an undefined result, as OPA does outside strict mode.

Strings are Python ``str``; where Go would produce bytes that are not UTF-8
(``hex.decode("ff")``, ``urlquery.decode("%ff")``) each invalid byte becomes
U+FFFD here, which is what OPA's JSON output shows for Go's string (listed
with the other differences from OPA in docs/wasm-engine.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from evaluator_sidecar.policy.engines.wasm.values import RegoSet

__all__ = [
    "HostBuiltinError",
    "any_prefix_match",
    "base64url_encode_no_pad",
    "digest",
    "hex_decode",
    "hex_encode",
    "hmac_digest",
    "hmac_equal",
    "range_step",
    "semver_compare",
    "semver_is_valid",
    "strings_count",
    "urlquery_decode",
    "urlquery_encode",
    "urlquery_encode_object",
]


class HostBuiltinError(ValueError):
    """An operand OPA's implementation rejects; the builtin call is undefined."""


def _string(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise HostBuiltinError(f"operand {position} must be a string")
    return value


def _utf8(data: bytes) -> str:
    """Bytes as text the way OPA's output shows Go's: each invalid byte becomes U+FFFD."""
    out: list[str] = []
    start = 0
    while True:
        try:
            out.append(data[start:].decode("utf-8"))
            return "".join(out)
        except UnicodeDecodeError as exc:
            out.append(data[start : start + exc.start].decode("utf-8"))
            out.append("\ufffd")
            start += exc.start + 1


def _bytes(value: Any, position: int) -> bytes:
    return _string(value, position).encode("utf-8", "surrogatepass")


# -- strings -----------------------------------------------------------------------------
def strings_count(search: Any, substring: Any) -> int:
    """``strings.count``: non-overlapping occurrences (an empty substring counts runes + 1)."""
    return _string(search, 1).count(_string(substring, 2))


def _string_items(value: Any, position: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, RegoSet)):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return items
        raise HostBuiltinError(f"operand {position} must contain only strings")
    raise HostBuiltinError(f"operand {position} must be a string, an array or a set of strings")


def any_prefix_match(search: Any, base: Any) -> bool:
    """``strings.any_prefix_match``: whether any search string starts with any base string."""
    searches = _string_items(search, 1)
    prefixes = tuple(_string_items(base, 2))
    return any(s.startswith(prefixes) for s in searches) if prefixes else False


# -- encodings ---------------------------------------------------------------------------
def hex_encode(value: Any) -> str:
    return _bytes(value, 1).hex()


def hex_decode(value: Any) -> str:
    text = _string(value, 1)
    try:
        return _utf8(binascii.unhexlify(text.encode("ascii")))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise HostBuiltinError(f"invalid hex: {exc}") from None


def base64url_encode_no_pad(value: Any) -> str:
    return base64.urlsafe_b64encode(_bytes(value, 1)).rstrip(b"=").decode("ascii")


def urlquery_encode(value: Any) -> str:
    """Go's ``url.QueryEscape``: space as ``+``, everything but ``A-Za-z0-9-_.~`` escaped."""
    return urllib.parse.quote_plus(_bytes(value, 1), safe="")


_HEX = frozenset("0123456789abcdefABCDEF")


def urlquery_decode(value: Any) -> str:
    """Go's ``url.QueryUnescape``: strict about ``%`` escapes, ``+`` is a space."""
    text = _string(value, 1)
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogatepass")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # %
            pair = raw[i + 1 : i + 3].decode("latin-1")
            if len(pair) < 2 or not set(pair) <= _HEX:
                raise HostBuiltinError(f"invalid URL escape {raw[i : i + 3].decode('latin-1')!r}")
            out.append(int(pair, 16))
            i += 3
        elif c == 0x2B:  # +
            out.append(0x20)
            i += 1
        else:
            out.append(c)
            i += 1
    return _utf8(bytes(out))


def urlquery_encode_object(value: Any) -> str:
    """Go's ``url.Values.Encode``: keys sorted, each value ``key=value``, joined by ``&``."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise HostBuiltinError("operand 1 must be an object with string keys")
    pairs: list[str] = []
    for key in sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass")):
        item = value[key]
        if isinstance(item, str):
            items = [item]
        elif isinstance(item, (list, RegoSet)) and all(isinstance(x, str) for x in item):
            items = (
                sorted(item, key=lambda k: k.encode("utf-8"))
                if isinstance(item, RegoSet)
                else list(item)
            )
        else:
            raise HostBuiltinError(
                "operand 1: values must be string, array[string], or set[string]"
            )
        escaped = urlquery_encode(key)
        pairs.extend(f"{escaped}={urlquery_encode(x)}" for x in items)
    return "&".join(pairs)


# -- hashes ------------------------------------------------------------------------------
def digest(algorithm: str) -> Callable[[Any], str]:
    """``crypto.md5`` / ``sha1`` / ``sha256``: the hex digest of the string's UTF-8 bytes."""

    def run(value: Any) -> str:
        return hashlib.new(algorithm, _bytes(value, 1)).hexdigest()

    return run


def hmac_digest(algorithm: str) -> Callable[[Any, Any], str]:
    """``crypto.hmac.<alg>(message, key)``: the hex HMAC."""

    def run(message: Any, key: Any) -> str:
        return hmac.new(_bytes(key, 2), _bytes(message, 1), algorithm).hexdigest()

    return run


def hmac_equal(mac1: Any, mac2: Any) -> bool:
    """``crypto.hmac.equal``: constant-time comparison."""
    return hmac.compare_digest(_bytes(mac1, 1), _bytes(mac2, 2))


# -- semver ------------------------------------------------------------------------------
_META = re.compile(r"[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*")
_INT64_MAX = (1 << 63) - 1


def _numeric(part: str) -> int:
    """Go's strconv.ParseInt(part, 10, 64) after SemVer's rules: digits only, no leading zero."""
    if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0"):
        raise HostBuiltinError(f"{part!r} is not a valid numeric identifier")
    value = int(part)
    if value > _INT64_MAX:
        raise HostBuiltinError(f"{part!r} is out of range")
    return value


def _parse_semver(text: str) -> tuple[int, int, int, str]:
    """OPA's semver.Parse: optional leading ``v``, strict SemVer 2.0.0 otherwise."""
    version = text.removeprefix("v")
    version, plus, meta = version.partition("+")
    if plus and not _META.fullmatch(meta):
        raise HostBuiltinError(f"invalid metadata identifier: {meta}")
    version, dash, pre = version.partition("-")
    if dash:
        if not _META.fullmatch(pre):
            raise HostBuiltinError(f"invalid pre-release identifier: {pre}")
        for ident in pre.split("."):
            if len(ident) > 1 and ident[0] == "0" and ident.isdigit():
                raise HostBuiltinError(f"invalid pre-release identifier: {pre}")
    if version.count(".") != 2:
        raise HostBuiltinError(f"{version} should contain major, minor, and patch versions")
    major, minor, patch = version.split(".")
    return _numeric(major), _numeric(minor), _numeric(patch), pre


def semver_is_valid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _parse_semver(value)
    except HostBuiltinError:
        return False
    return True


def _pre_compare(a: str, b: str) -> int:
    left, right = a.split("."), b.split(".")
    for x, y in zip(left, right, strict=False):
        x_num, y_num = x.isdigit() and x.isascii(), y.isdigit() and y.isascii()
        if x_num and not y_num:
            return -1
        if y_num and not x_num:
            return 1
        if x_num and y_num:
            # Go's strconv.Atoi saturates at int64: identifiers beyond it compare equal.
            xi, yi = min(int(x), _INT64_MAX), min(int(y), _INT64_MAX)
            if xi != yi:
                return 1 if xi > yi else -1
        elif x != y:
            xb, yb = x.encode(), y.encode()
            return 1 if xb > yb else -1
    return (len(left) > len(right)) - (len(left) < len(right))


def semver_compare(a: Any, b: Any) -> int:
    va = _parse_semver(_string(a, 1))
    vb = _parse_semver(_string(b, 2))
    for x, y in zip(va[:3], vb[:3], strict=True):
        if x != y:
            return 1 if x > y else -1
    pa, pb = va[3], vb[3]
    if pa == pb:
        return 0
    if not pa:
        return 1
    if not pb:
        return -1
    return _pre_compare(pa, pb)


# -- numbers -----------------------------------------------------------------------------
def _integer(value: Any, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HostBuiltinError(f"operand {position} must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise HostBuiltinError(f"operand {position} must be an integer")
        return int(value)
    return value


def range_step(start: Any, stop: Any, step: Any, *, max_items: int) -> list[int]:
    """``numbers.range_step``: ``start`` to ``stop`` inclusive, counting down when start > stop.

    Raises ``OverflowError`` when the range would hold more than ``max_items``
    numbers: that evaluation cannot fit the policy's memory cap.
    """
    a, b, s = _integer(start, 1), _integer(stop, 2), _integer(step, 3)
    if s <= 0:
        raise HostBuiltinError("numbers.range_step: step must be a positive integer")
    count = abs(b - a) // s + 1
    if count > max_items:
        raise OverflowError(
            f"numbers.range_step would make {count} numbers, more than the memory cap allows"
        )
    return list(range(a, b + 1, s)) if a <= b else list(range(a, b - 1, -s))
