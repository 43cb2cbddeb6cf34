"""The shape of a PolicySnapshot: the spec's schema and every check of a resource's form.

``validate_resource`` checks the resource's shape (required fields, allowed
keys, types, enums, lengths, item limits, nesting depth, engine/rules/artifact
consistency) with the same rules the CRD's schema and CEL rules enforce on the
server (``SPEC_SCHEMA`` mirrors crds/policysnapshots.yaml; a test keeps the two
in step), so that ``pkg test`` catches mistakes before ``kubectl apply`` does.
Rule semantics (operators, patterns, cycles) are the engine's load check.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from evaluator_sidecar.policy.errors import Problem, SnapshotLoadError
from evaluator_sidecar.policy.model import ENGINES, normalize_checksum
from evaluator_sidecar.policy.resource_checksum import canonical_json, decode_inline

__all__ = [
    "API_VERSION",
    "ENVS",
    "KIND",
    "MAX_NESTING",
    "SPEC_SCHEMA",
    "InvalidResourceError",
    "nesting_problem",
    "validate_resource",
]

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)

API_VERSION = "pkg.seedcore.io/v1alpha1"
KIND = "PolicySnapshot"
ENVS = ("prod", "staging", "dev")

#: NAME@SEMVER: a name, then a semantic version exactly as semver.org 2.0.0 defines it
#: (no leading zeros, optional pre-release and build parts). The CRD declares the same
#: pattern, so the API server refuses what this refuses; a test keeps the two equal.
_SEMVER = (
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
_VERSION_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]*@{_SEMVER}$")
#: How deep a spec may nest, counting the spec itself as level 1. Free-form fields
#: (data, params, default_params, fixture inputs, fact objects) have no schema to bound
#: them, and the API server stores objects nested thousands of levels deep, which
#: recursive code (JSON encoders, deep copies) cannot process; real policies need a
#: handful of levels.
MAX_NESTING = 64
_ANY: dict[str, Any] = {}
_OBJECT_ANY: dict[str, Any] = {"type": "object"}


def _str(min_length: int = 0, max_length: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length, **extra}


# The spec's schema, as crds/policysnapshots.yaml declares it (types, required fields,
# enums, lengths, item limits); a test keeps the two in step.
_CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["condition_type", "condition_key", "operator"],
    "properties": {
        "condition_type": {"type": "string", "enum": ["TAG", "SIGNAL", "VALUE", "FACT"]},
        "condition_key": _str(1, 1024),
        "operator": {
            "type": "string",
            "enum": ["=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES"],
        },
        "value": _ANY,
        "position": {"type": "integer", "minimum": 0},
    },
}
_EMISSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subtask_type"],
    "properties": {
        "subtask_type": _str(1, 253),
        "subtask_name": _str(0, 253),
        "relationship_type": {"type": "string", "enum": ["EMITS", "ORDERS", "GATE"]},
        "params": _OBJECT_ANY,
        "position": {"type": "integer", "minimum": 0},
    },
}
_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["rule_id", "rule_name"],
    "properties": {
        "rule_id": _str(1, 253),
        "rule_name": _str(1, 253),
        "priority": {"type": "integer"},
        "disabled": {"type": "boolean"},
        "rule_source": _str(0, 65536),
        "conditions": {"type": "array", "maxItems": 64, "items": _CONDITION_SCHEMA},
        "emissions": {"type": "array", "maxItems": 64, "items": _EMISSION_SCHEMA},
    },
}
SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "env", "engine"],
    "properties": {
        "version": _str(3, 128, pattern=_VERSION_PATTERN, example="rules@1.4.0, NAME@SEMVER"),
        "env": {"type": "string", "enum": list(ENVS)},
        "engine": {"type": "string", "enum": list(ENGINES)},
        "autoPromote": {"type": "boolean"},
        "checksum": {"type": "string"},
        "subtaskTypes": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _str(1, 253), "default_params": _OBJECT_ANY},
            },
        },
        "rules": {"type": "array", "maxItems": 5000, "items": _RULE_SCHEMA},
        "wasm": {
            "type": "object",
            "properties": {
                "entrypoint": _str(0, 253),
                "inline": _str(0, 524288),
                "configMapRef": {
                    "type": "object",
                    "required": ["name", "key"],
                    "properties": {"name": _str(0, 253), "key": _str(0, 253)},
                },
            },
        },
        "data": _OBJECT_ANY,
        "facts": {
            "type": "array",
            "maxItems": 5000,
            "items": {
                "type": "object",
                "required": ["subject", "predicate"],
                "properties": {
                    "subject": _str(0, 1024),  # empty ones: the engine's load check says so
                    "predicate": _str(0, 1024),
                    "object": _ANY,
                    "valid_from": {"type": "string", "format": "date-time"},
                    "valid_to": {"type": "string", "format": "date-time"},
                },
            },
        },
        "fixtures": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["name", "input", "expect"],
                "properties": {"name": _str(1, 253), "input": _OBJECT_ANY, "expect": _OBJECT_ANY},
            },
        },
        "signature": {
            "type": "object",
            "properties": {
                "keyId": _str(0, 253),
                "algorithm": _str(0, 64),
                "value": _str(0, 4096),
            },
        },
    },
}


class InvalidResourceError(SnapshotLoadError):
    """The resource itself is malformed; ``problems`` lists every problem with its field path."""


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (Mapping,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def _check_schema(value: Any, schema: Mapping[str, Any], where: str, out: list[Problem]) -> None:
    """Check ``value`` against a schema in the CRD's OpenAPI subset; append problems."""
    kind = schema.get("type")
    if kind is None:
        return
    if not _is_type(value, kind):
        article = "an" if kind[0] in "aeiou" else "a"
        out.append(Problem(where, f"must be {article} {kind}; got {_kind(value)}"))
        return
    if kind == "object":
        properties = schema.get("properties")
        for name in schema.get("required", ()):
            if value.get(name) is None:
                out.append(Problem(f"{where}.{name}", "is required"))
        if properties is not None:
            for key, item in value.items():
                if key not in properties:
                    allowed = ", ".join(properties)
                    out.append(Problem(where, f"unknown field {key!r}; allowed: {allowed}"))
                elif item is not None:
                    _check_schema(item, properties[key], f"{where}.{key}", out)
    elif kind == "array":
        limit = schema.get("maxItems")
        if limit is not None and len(value) > limit:
            out.append(Problem(where, f"has {len(value)} items; at most {limit} are allowed"))
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                _check_schema(item, items, f"{where}[{i}]", out)
    elif kind == "string":
        enum = schema.get("enum")
        if enum is not None and value not in enum:
            out.append(Problem(where, f"must be one of {', '.join(enum)}; got {value!r}"))
        if len(value) < schema.get("minLength", 0):
            out.append(Problem(where, "must not be empty"))
        longest = schema.get("maxLength")
        if longest is not None and len(value) > longest:
            out.append(Problem(where, f"is longer than {longest} characters"))
        pattern = schema.get("pattern")
        if pattern is not None and not pattern.match(value):
            hint = f" (e.g. {schema['example']!r})" if "example" in schema else ""
            out.append(Problem(where, f"{value!r} does not match {pattern.pattern}{hint}"))
        if schema.get("format") == "date-time" and not _RFC3339.match(value):
            out.append(
                Problem(where, f"{value!r} is not an RFC 3339 time (e.g. '2026-01-01T00:00:00Z')")
            )
    elif kind == "integer":
        minimum = schema.get("minimum")
        if minimum is not None and value < minimum:
            out.append(Problem(where, f"must be at least {minimum}; got {value}"))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer"}
    return names.get(type(value), type(value).__name__)


def non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _check_engine_parts(spec: Mapping[str, Any], out: list[Problem]) -> None:
    """The CRD's CEL rules: native has rules and no wasm; wasm has wasm and no native parts."""
    engine = spec.get("engine")
    if engine == "native":
        if "wasm" in spec:
            out.append(Problem("spec.wasm", "is for engine wasm; a native snapshot has spec.rules"))
        if spec.get("rules") is None:
            out.append(Problem("spec.rules", "is required for engine native (a list of rules)"))
    elif engine == "wasm":
        for name in ("rules", "subtaskTypes"):
            if name in spec:
                out.append(
                    Problem(f"spec.{name}", "is for engine native; a wasm snapshot has spec.wasm")
                )
        wasm = spec.get("wasm")
        if not isinstance(wasm, Mapping):
            out.append(
                Problem("spec.wasm", "is required for engine wasm: give inline or configMapRef")
            )
            return
        if ("inline" in wasm) == ("configMapRef" in wasm):
            out.append(Problem("spec.wasm", "give exactly one of wasm.inline or wasm.configMapRef"))
        if isinstance(wasm.get("inline"), str):
            try:
                if not decode_inline(wasm["inline"]):
                    out.append(Problem("spec.wasm.inline", "decodes to no bytes"))
            except ValueError as exc:
                out.append(Problem("spec.wasm.inline", f"is not valid base64: {exc.__cause__}"))


def _check_fixture_names(fixtures: Any, out: list[Problem]) -> None:
    if not isinstance(fixtures, list):
        return
    seen: dict[str, int] = {}
    for i, fixture in enumerate(fixtures):
        name = fixture.get("name") if isinstance(fixture, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            out.append(
                Problem(
                    f"spec.fixtures[{i}].name",
                    f"{name!r} is also the name of fixtures[{seen[name]}]",
                )
            )
        else:
            seen[name] = i


def nesting_problem(value: Any, where: str, limit: int = MAX_NESTING) -> Problem | None:
    """The problem with ``value`` if its objects and arrays nest more than ``limit`` levels.

    Iterative on purpose: it must answer for values too deep for any recursive walk.
    """
    stack: list[tuple[str, Iterator[tuple[str, Any]]]] = [(where, _children(value))]
    while stack:
        step = next(stack[-1][1], None)
        if step is None:
            stack.pop()
            continue
        key, child = step
        if not isinstance(child, (Mapping, list)):
            continue
        if len(stack) >= limit:
            path = "".join(name for name, _ in stack) + key
            return Problem(
                where,
                f"nests more than {limit} levels deep (at {path}); flatten the structure: "
                f"objects and arrays may nest at most {limit} levels",
            )
        stack.append((key, _children(child)))
    return None


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return ((f".{key}", item) for key, item in value.items())
    if isinstance(value, list):
        return ((f"[{i}]", item) for i, item in enumerate(value))
    return iter(())


def validate_resource(resource: Any) -> list[Problem]:
    """Every problem with the resource's shape (empty when well-formed)."""
    out: list[Problem] = []
    if not isinstance(resource, Mapping):
        return [Problem("", f"a PolicySnapshot must be a mapping; got {_kind(resource)}")]
    if resource.get("apiVersion") != API_VERSION:
        out.append(
            Problem("apiVersion", f"must be {API_VERSION!r}; got {resource.get('apiVersion')!r}")
        )
    if resource.get("kind") != KIND:
        out.append(Problem("kind", f"must be {KIND!r}; got {resource.get('kind')!r}"))
    metadata = resource.get("metadata")
    if not isinstance(metadata, Mapping) or not non_empty_str(metadata.get("name")):
        out.append(Problem("metadata.name", "is required"))
    spec = resource.get("spec")
    if not isinstance(spec, Mapping):
        out.append(Problem("spec", "is required (a mapping)"))
        return out
    too_deep = nesting_problem(spec, "spec")
    if too_deep is not None:
        # Every later check recurses into the values: stop before one of them overflows.
        return [*out, too_deep]
    _check_schema(spec, SPEC_SCHEMA, "spec", out)
    if isinstance(spec.get("checksum"), str):
        try:
            normalize_checksum(spec["checksum"])
        except ValueError as exc:
            out.append(Problem("spec.checksum", str(exc)))
    _check_engine_parts(spec, out)
    _check_fixture_names(spec.get("fixtures"), out)
    try:
        canonical_json({k: spec.get(k) for k in ("rules", "subtaskTypes", "facts", "data")})
    except (TypeError, ValueError) as exc:
        out.append(Problem("spec", f"holds a value JSON cannot represent: {exc}"))
    return out
