"""More host builtins, ported from OPA's Go (``v1/topdown``): units, object.subset, CIDRs, strings.

Each function mirrors the Go builtin of the same name, file named in its
docstring; an operand Go rejects raises :class:`HostBuiltinError` (the call is
undefined, as in OPA outside strict mode). Values are those of
:mod:`values` (``RegoSet`` for sets, ``RegoFloat`` for numbers written with a
fraction or exponent); equality is OPA's (``1 == 1.0``, ``true != 1``).
"""

from __future__ import annotations

import ipaddress
from fractions import Fraction
from typing import Any

from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet

__all__ = [
    "any_suffix_match",
    "cidr_contains_matches",
    "cidr_is_valid",
    "cidr_merge",
    "indexof_n",
    "object_subset",
    "split_n",
    "units_parse",
    "units_parse_bytes",
    "uuid_parse",
]


def _string(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise HostBuiltinError(f"operand {position} must be a string")
    return value


def _equal(a: Any, b: Any) -> bool:
    from evaluator_sidecar.policy.engines.wasm.result import opa_compare  # noqa: PLC0415 - cycle

    return opa_compare(a, b) == 0


def _contains(items: Any, x: Any) -> bool:
    return any(_equal(i, x) for i in items)


# -- units (parse_units.go, parse_bytes.go) ---------------------------------------------------
_SI = {"k": 10**3, "M": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18}
_BIN = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50, "ei": 2**60}
_UNITS: dict[str, Fraction] = {"m": Fraction(1, 1000), "": Fraction(1)}
for _k, _v in _SI.items():
    _UNITS[_k] = _UNITS[_k.upper()] = Fraction(_v)
for _k, _v in _BIN.items():
    _UNITS[_k] = _UNITS[_k[0].upper() + _k[1:]] = Fraction(_v)
del _UNITS["m".upper()]
_UNITS["M"] = Fraction(10**6)
_BYTES: dict[str, int] = {"": 1}
for _k, _v in _SI.items():
    _BYTES[_k.lower()] = _BYTES[_k.lower() + "b"] = _v
for _k, _v in _BIN.items():
    _BYTES[_k] = _BYTES[_k + "b"] = _v


def _num_and_unit(s: str) -> tuple[str, str]:
    """Go's ``extractNumAndUnit``: the leading number (digits, '.', exponent) and the rest."""
    data = s.encode("utf-8", "surrogatepass")
    n = len(data)
    idx = 0
    first = -1
    while idx < n:
        c = data[idx]
        isnum = 48 <= c <= 57 or c == 46
        if not isnum and c not in b"eE+-":
            first = idx
            break
        if c in b"eE":
            nxt = data[idx + 1] if idx + 1 < n else None
            if nxt is None or not (48 <= nxt <= 57 or nxt in b"+-"):
                first = idx
                break
            if nxt in b"+-":
                idx += 1
            start = end = idx + 1
            while end < n and 48 <= data[end] <= 57:
                end += 1
            if end - start > 6:
                raise HostBuiltinError("exponent too large")
        idx += 1
    if first == -1:
        return s, ""
    head, tail = data[:first], data[first:]
    return head.decode("utf-8", "surrogatepass"), tail.decode("utf-8", "surrogatepass")


def _go_rat(num: str) -> Fraction:
    """``big.Rat.SetString`` for what can reach it (digits, '.', exponent, signs)."""
    try:
        return Fraction(num)
    except (ValueError, ZeroDivisionError):
        raise HostBuiltinError("could not parse amount to a number") from None


def units_parse(value: Any) -> Any:
    """``units.parse`` (parse_units.go): SI and binary suffixes, ``m`` is milli."""
    s = _string(value, 1).replace('"', "")
    if " " in s:
        raise HostBuiltinError("spaces not allowed in resource strings")
    num, unit = _num_and_unit(s)
    if not num:
        raise HostBuiltinError("no amount provided")
    if len(unit) > 1:
        unit = unit[:1] + unit[1:].lower()
    factor = _UNITS.get(unit)
    if factor is None:
        raise HostBuiltinError(f"unit {unit} not recognized")
    x = _go_rat(num) * factor
    if x.denominator == 1:
        return x.numerator
    return RegoFloat(_float_string(x, 10))


def _float_string(x: Fraction, prec: int) -> str:
    """``big.Rat.FloatString(prec)``: rounded half away from zero."""
    scaled = abs(x) * 10**prec
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r >= scaled.denominator:
        q += 1
    digits = str(q).rjust(prec + 1, "0")
    text = f"{digits[:-prec]}.{digits[-prec:]}"
    return ("-" if x < 0 else "") + text


def _round_bits(x: Fraction, bits: int = 64) -> Fraction:
    """``x`` rounded to a ``bits``-bit mantissa, ties to even (a ``big.Float`` of precision 64)."""
    if x == 0:
        return x
    sign = -1 if x < 0 else 1
    ax = abs(x)
    e = ax.numerator.bit_length() - ax.denominator.bit_length() - bits
    while ax / Fraction(2) ** e >= 2**bits:
        e += 1
    while ax / Fraction(2) ** e < 2 ** (bits - 1):
        e -= 1
    m = ax / Fraction(2) ** e
    q, r = divmod(m.numerator, m.denominator)
    if 2 * r > m.denominator or (2 * r == m.denominator and q % 2):
        q += 1
    return sign * q * Fraction(2) ** e


def units_parse_bytes(value: Any) -> int:
    """``units.parse_bytes`` (parse_bytes.go): case-insensitive, ``k`` is 1000, ``ki`` 1024."""
    s = _string(value, 1).lower().replace('"', "")
    if " " in s:
        raise HostBuiltinError("spaces not allowed in resource strings")
    num, unit = _num_and_unit(s)
    if not num:
        raise HostBuiltinError("no byte amount provided")
    factor = _BYTES.get(unit)
    if factor is None:
        raise HostBuiltinError(f"byte unit {unit} not recognized")
    x = _round_bits(_round_bits(_go_rat(num)) * factor)
    return int(x)  # truncation toward zero, as big.Float.Int


# -- object.subset (subset.go) -----------------------------------------------------------------
def object_subset(sup: Any, sub: Any) -> bool:
    if isinstance(sup, dict) and isinstance(sub, dict):
        return _object_subset(sup, sub)
    if isinstance(sup, RegoSet) and isinstance(sub, RegoSet):
        return all(_contains(sup, e) for e in sub)
    if isinstance(sup, list) and isinstance(sub, list):
        return _array_subset(sup, sub)
    if isinstance(sup, list) and isinstance(sub, RegoSet):
        unmatched = len(sub)
        for t in sup:
            if _contains(sub, t):
                unmatched -= 1
            if unmatched == 0:
                return True
        return False
    raise HostBuiltinError("both arguments object.subset must be of the same type or array and set")


def _get(obj: dict[Any, Any], key: Any) -> tuple[bool, Any]:
    if key in obj:
        return True, obj[key]
    for k, v in obj.items():
        if _equal(k, key):
            return True, v
    return False, None


def _object_subset(sup: dict[Any, Any], sub: dict[Any, Any]) -> bool:
    for key, sub_v in sub.items():
        found, sup_v = _get(sup, key)
        if not found:
            return False
        if _equal(sub_v, sup_v):
            continue
        if isinstance(sup_v, dict) and isinstance(sub_v, dict):
            ok = _object_subset(sup_v, sub_v)
        elif isinstance(sup_v, RegoSet) and isinstance(sub_v, RegoSet):
            ok = all(_contains(sup_v, e) for e in sub_v)
        elif isinstance(sup_v, list) and isinstance(sub_v, list):
            ok = _array_subset(sup_v, sub_v)
        else:
            ok = False
        if not ok:
            return False
    return True


def _array_subset(sup: list[Any], sub: list[Any]) -> bool:
    if len(sub) > len(sup):
        return False
    if len(sub) == len(sup) and all(_equal(a, b) for a, b in zip(sub, sup, strict=True)):
        return True
    sup_c = sub_c = 0
    while True:
        if sub_c == len(sub):
            return True
        if sup_c + sub_c == len(sup):
            return False
        if _equal(sup[sup_c + sub_c], sub[sub_c]):
            sub_c += 1
        else:
            sup_c += 1
            sub_c = 0


# -- strings ------------------------------------------------------------------------------------
def _string_items(value: Any, position: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, RegoSet)):
        items = list(value)
        if all(isinstance(i, str) for i in items):
            return items
    raise HostBuiltinError(f"operand {position} must be a string, an array or a set of strings")


def any_suffix_match(search: Any, base: Any) -> bool:
    """``strings.any_suffix_match``: whether any search string ends with any base string."""
    searches = _string_items(search, 1)
    suffixes = tuple(_string_items(base, 2))
    return any(s.endswith(suffixes) for s in searches) if suffixes else False


def _go_split(text: str, sep: str, limit: int) -> list[str]:
    """Go's ``strings.SplitN`` (``limit`` < 0: no limit); an empty separator splits runes."""
    if limit == 0:
        return []
    if sep == "":
        runes = list(text)
        if 0 < limit < len(runes):
            return [*runes[: limit - 1], "".join(runes[limit - 1 :])]
        return runes
    return text.split(sep, limit - 1) if limit > 0 else text.split(sep)


def split_n(text: Any, delimiter: Any, n: Any) -> list[str]:
    """``strings.split_n``: the first ``n`` parts, or the last ``-n`` when ``n`` is negative."""
    s, d = _string(text, 1), _string(delimiter, 2)
    if isinstance(n, bool) or not isinstance(n, int) or isinstance(n, float):
        raise HostBuiltinError("operand 3 must be an integer")
    if n >= 0:
        return _go_split(s, d, n + 1)[:n]
    parts = _go_split(s, d, -1)
    return parts[max(len(parts) + n, 0) :]


def indexof_n(base: Any, search: Any) -> list[int]:
    """``indexof_n``: every (overlapping) index of ``search`` in ``base``, in code points."""
    text, needle = _string(base, 1), _string(search, 2)
    if not needle:
        raise HostBuiltinError("empty search character")
    out: list[int] = []
    i = text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


# -- net (cidr.go) ------------------------------------------------------------------------------
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_cidr(text: str) -> Net:
    """Go's ``net.ParseCIDR``: an address and a prefix length; host bits are masked off."""
    if "/" not in text or "%" in text:
        raise HostBuiltinError(f"invalid CIDR address: {text}")
    addr, _, bits = text.partition("/")
    if not bits.isdigit() or not bits.isascii() or len(bits) > 3:
        raise HostBuiltinError(f"invalid CIDR address: {text}")
    try:
        ip = ipaddress.ip_address(addr)
        return ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
    except ValueError:
        raise HostBuiltinError(f"invalid CIDR address: {text}") from None


def cidr_is_valid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _parse_cidr(value)
    except HostBuiltinError:
        return False
    return True


def _ip_net(value: Any) -> Net:
    if not isinstance(value, str):
        raise HostBuiltinError("element must be string")
    return _parse_cidr(value)


def _merge_item(item: Any) -> tuple[str, int, int, int]:
    """Go's ``generateIPNet``: (its String(), version, first, last address as ints).

    A plain IPv4 address gets its classful default mask but keeps its host bits
    (``10.1.2.3`` is ``10.1.2.3/8``), as Go's ``IP.DefaultMask`` does; a plain IPv6
    address is an error.
    """
    if not isinstance(item, str):
        raise HostBuiltinError("element must be string")
    try:
        ip = ipaddress.ip_address(item)
    except ValueError:
        net = _parse_cidr(item)
        return str(net), net.version, int(net.network_address), int(net.broadcast_address)
    if ip.version == 6:
        raise HostBuiltinError("IPv6 invalid: needs prefix length")
    first_octet = int(ip) >> 24
    bits = 8 if first_octet < 128 else 16 if first_octet < 192 else 24 if first_octet < 224 else 0
    if not bits:
        raise HostBuiltinError("no default mask for this address")
    host = (1 << (32 - bits)) - 1
    return f"{ip}/{bits}", 4, int(ip) & ~host, int(ip) | host


def cidr_merge(value: Any) -> RegoSet:
    """``net.cidr_merge`` (cidr.go): ranges sorted by (last, first), adjacent ones merged."""
    if not isinstance(value, (list, RegoSet)):
        raise HostBuiltinError("operand must be an array")
    items = [_merge_item(i) for i in value]
    out: list[str] = []
    for version in (4, 6):
        ranges: list[tuple[int, int, str | None]] = sorted(
            ((first, last, text) for text, v, first, last in items if v == version),
            key=lambda r: (r[1], r[0]),
        )
        i = len(ranges) - 1
        while i > 0:
            previous = max(ranges[i][0] - 1, 0)
            if previous <= ranges[i - 1][1]:
                first = min(ranges[i - 1][0], ranges[i][0])
                ranges[i - 1] = (first, ranges[i][1], None)
                del ranges[i]
            i -= 1
        cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        for first, last, text in ranges:
            if text is not None:
                out.append(text)
            else:
                out.extend(str(n) for n in ipaddress.summarize_address_range(cls(first), cls(last)))
    return RegoSet(out)


def _contains_cidr_or_ip(a: str, b: str) -> bool:
    net = _parse_cidr(a)
    try:
        ip = ipaddress.ip_address(b)
    except ValueError:
        other = _parse_cidr(b)
        if other.version != net.version:
            return False
        return net.supernet_of(other)  # type: ignore[arg-type]
    if ip.version != net.version:
        return False
    return ip in net


def _match_term(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[0], str):
        return x[0]
    raise HostBuiltinError("cidr must be string or array with string as first element")


def _cidr_items(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, str):
        return [(value, value)]
    if isinstance(value, list):
        return [(_match_term(x), i) for i, x in enumerate(value)]
    if isinstance(value, RegoSet):
        return [(_match_term(x), x) for x in value]
    if isinstance(value, dict):
        return [(_match_term(v), k) for k, v in value.items()]
    return []


def cidr_contains_matches(cidrs: Any, addrs: Any) -> RegoSet:
    """``net.cidr_contains_matches``: ``[i, j]`` for every CIDR ``i`` containing ``j``."""
    out = []
    for c1, i1 in _cidr_items(cidrs):
        for c2, i2 in _cidr_items(addrs):
            if _contains_cidr_or_ip(c1, c2):
                out.append([i1, i2])
    return RegoSet(out)


# -- uuid.parse (internal/uuid, github.com/google/uuid) -------------------------------------------
_UUID_OFFSETS = (0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34)
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def _uuid_bytes(text: str) -> bytes | None:
    """google/uuid's ``Parse``: 36 chars, ``urn:uuid:`` + 36, 38 (first char dropped) or 32 hex."""
    s = text.encode("utf-8", "surrogatepass")
    if len(s) == 32:
        pairs = [s[i : i + 2] for i in range(0, 32, 2)]
    else:
        if len(s) == 45:
            if s[:9].lower() != b"urn:uuid:":
                return None
            s = s[9:]
        elif len(s) == 38:
            s = s[1:]
        elif len(s) != 36:
            return None
        if s[8:9] != b"-" or s[13:14] != b"-" or s[18:19] != b"-" or s[23:24] != b"-":
            return None
        pairs = [s[x : x + 2] for x in _UUID_OFFSETS]
    if not all(len(p) == 2 and p[0] in _HEXDIGITS and p[1] in _HEXDIGITS for p in pairs):
        return None
    return bytes(int(p, 16) for p in pairs)


def _go_div(a: int, b: int) -> tuple[int, int]:
    q = abs(a) // b * (1 if a >= 0 else -1)
    return q, a - q * b


def uuid_parse(value: Any) -> dict[str, Any]:
    """``uuid.parse``: version and variant; time, node and clock fields for versions 1 and 2."""
    u = _uuid_bytes(_string(value, 1))
    if u is None:
        raise HostBuiltinError("invalid UUID")
    version = u[6] >> 4
    b = u[8]
    variant = (
        "RFC4122"
        if b & 0xC0 == 0x80
        else "Microsoft"
        if b & 0xE0 == 0xC0
        else "Future"
        if b & 0xE0 == 0xE0
        else "Reserved"
    )
    out: dict[str, Any] = {"version": version, "variant": variant}
    if version in (1, 2):
        t = (
            int.from_bytes(u[0:4], "big")
            | int.from_bytes(u[4:6], "big") << 32
            | (int.from_bytes(u[6:8], "big") & 0xFFF) << 48
        )
        sec, nsec = _go_div(t - 122192928000000000, 10_000_000)
        # Go's int64 arithmetic wraps around; OPA returns the wrapped value.
        out["time"] = ((sec * 1_000_000_000 + nsec * 100 + 2**63) % 2**64) - 2**63
        out["nodeid"] = "-".join(f"{x:02x}" for x in u[10:16])
        first = u[10]
        out["macvariables"] = (
            "local:multicast"
            if first & 3 == 3
            else "global:multicast"
            if first & 1
            else "local:unicast"
            if first & 2
            else "global:unicast"
        )
        out["clocksequence"] = int.from_bytes(u[8:10], "big") & 0x3FFF
        if version == 2:
            out["id"] = int.from_bytes(u[0:4], "big")
            out["domain"] = {0: "Person", 1: "Group", 2: "Org"}.get(u[9], f"Domain{u[9]}")
    return out
