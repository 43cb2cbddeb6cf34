"""Small host builtins ported from OPA's Go: ``net.cidr_expand``, ``glob.quote_meta``,
``urlquery.decode_object`` and the deprecated ``cast_*`` family (v0 policies).

Each mirrors the Go builtin named in its docstring; an operand Go rejects
raises :class:`HostBuiltinError` (the call is undefined, as in OPA outside
strict mode).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from evaluator_sidecar.policy.engines.wasm import hostlib, hostmore
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoSet

__all__ = [
    "cast_array",
    "cast_boolean",
    "cast_null",
    "cast_object",
    "cast_set",
    "cast_string",
    "cidr_expand",
    "glob_quote_meta",
    "reachable_paths",
    "urlquery_decode_object",
]


def _string(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise HostBuiltinError(f"operand {position} must be a string")
    return value


def _distinct_set(items: list[Any]) -> RegoSet:
    """A set of items already known to be distinct (RegoSet's own check is quadratic)."""
    out = RegoSet()
    object.__setattr__(out, "_items", tuple(items))
    return out


def _ip_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Go's ``IP.String``: an IPv4-mapped IPv6 address prints in dotted form."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def cidr_expand(value: Any, *, max_items: int) -> RegoSet:
    """``net.cidr_expand`` (cidr.go): every address of the CIDR, network and broadcast included."""
    net = hostmore._parse_cidr(_string(value, 1))
    if net.num_addresses > max_items:
        raise OverflowError(
            f"net.cidr_expand of {value} gives {net.num_addresses} addresses, more than the "
            f"{max_items} items an evaluation may build"
        )
    first = int(net.network_address)
    cls = type(net.network_address)
    return _distinct_set([_ip_text(cls(first + i)) for i in range(net.num_addresses)])


_GLOB_SPECIAL = frozenset("*?\\[]{}")


def glob_quote_meta(value: Any) -> str:
    """``glob.quote_meta`` (gobwas/glob ``QuoteMeta``): ``*?\\[]{}`` escaped with ``\\``."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in _string(value, 1))


def urlquery_decode_object(value: Any) -> dict[str, list[str]]:
    """``urlquery.decode_object``: Go's ``url.ParseQuery`` (any bad pair fails the call)."""
    query = _string(value, 1)
    out: dict[str, list[str]] = {}
    failed: str | None = None
    for pair in query.split("&") if query else []:
        if ";" in pair:
            failed = failed or "invalid semicolon separator in query"
            continue
        if not pair:
            continue
        key, _, val = pair.partition("=")
        try:
            key, val = hostlib.urlquery_decode(key), hostlib.urlquery_decode(val)
        except HostBuiltinError as exc:
            failed = failed or str(exc)
            continue
        out.setdefault(key, []).append(val)
    if failed is not None:
        raise HostBuiltinError(failed)
    return out


# -- graph.reachable_paths (reachable.go) -------------------------------------------------------
def _vertex_edges(graph: dict[Any, Any], node: Any) -> tuple[bool, list[Any]]:
    """(whether ``node`` is a key of ``graph``, OPA's equality; its edges, if an array or set)."""
    for key, edges in graph.items():
        if hostmore._equal(key, node):
            return True, list(edges) if isinstance(edges, (list, RegoSet)) else []
    return False, []


def _paths_from(
    graph: dict[Any, Any],
    root: Any,
    path: list[Any],
    *,
    out: list[list[Any]],
    reached: list[Any],
    budget: list[int],
) -> None:
    known, edges = _vertex_edges(graph, root)
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError("graph.reachable_paths: more paths than an evaluation may build")
    if not known:
        out.append(path)
        return
    path = [*path, root]
    if not edges:
        out.append(path)
        return
    reached = [*reached, root]
    for neighbor in edges:
        if hostmore._contains(reached, neighbor):
            out.append(path)
        else:
            _paths_from(graph, neighbor, path, out=out, reached=reached, budget=budget)


def reachable_paths(graph: Any, initial: Any, *, max_items: int) -> RegoSet:
    """``graph.reachable_paths``: every path from the initial nodes, ended at a leaf or a cycle."""
    if not isinstance(graph, dict):
        raise HostBuiltinError("operand 1 must be an object")
    if not isinstance(initial, (list, RegoSet)):
        raise HostBuiltinError("operand 2 must be an array or a set")
    out: list[list[Any]] = []
    budget = [max_items]
    for node in initial:
        known, edges = _vertex_edges(graph, node)
        if not known:
            continue
        if not edges:
            out.append([node])
        for neighbor in edges:
            _paths_from(graph, neighbor, [node], out=out, reached=[node], budget=budget)
    return RegoSet(out)


# -- casts.go (deprecated since v0.13, still in v0 policies) ------------------------------------
def cast_array(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, RegoSet):
        return list(value)
    raise HostBuiltinError("operand 1 must be an array or a set")


def cast_set(value: Any) -> RegoSet:
    if isinstance(value, RegoSet):
        return value
    if isinstance(value, list):
        return RegoSet(value)
    raise HostBuiltinError("operand 1 must be an array or a set")


def cast_string(value: Any) -> str:
    return _string(value, 1)


def cast_boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise HostBuiltinError("operand 1 must be a boolean")
    return value


def cast_null(value: Any) -> None:
    if value is not None:
        raise HostBuiltinError("operand 1 must be null")


def cast_object(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise HostBuiltinError("operand 1 must be an object")
    return value
