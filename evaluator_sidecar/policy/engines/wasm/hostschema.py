"""``json.verify_schema`` and ``json.match_schema``: JSON Schema as OPA's gojsonschema checks it.

A port of OPA's ``internal/gojsonschema`` (drafts 4, 6 and 7, and its "hybrid"
default when ``$schema`` names none; patterns checked as RE2): the schema is
compiled with the same checks and error texts (``has a primitive type that is
NOT VALID …``), and a document validated with the same error objects
(``error``, ``type``, ``field``, ``desc``), in the same order where Go's is
fixed (Go walks some maps in random order; here they go in key order). Formats:
:mod:`hostschemafmt`. ``$ref`` is followed within the schema document (``#``,
``#/definitions/…``); a reference to another document would need the network
and is refused (the call is undefined), as OPA refuses it without ``allow_net``.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import re2  # type: ignore[import-untyped]

from evaluator_sidecar.policy.engines.wasm.gostrconv import format_float
from evaluator_sidecar.policy.engines.wasm.hostjwt import json_unmarshal
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.hostschemafmt import is_format
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet

__all__ = ["SchemaError", "compile_schema", "match_schema", "verify_schema"]

DRAFT4, DRAFT6, DRAFT7, HYBRID = 4, 6, 7, 2**31 - 1
_DRAFT_URLS = {
    "http://json-schema.org/draft-04/schema": DRAFT4,
    "http://json-schema.org/draft-06/schema": DRAFT6,
    "http://json-schema.org/draft-07/schema": DRAFT7,
}
JSON_TYPES = ("array", "boolean", "integer", "number", "null", "object", "string")
ROOT = "(Root)"


class SchemaError(HostBuiltinError):
    """The schema does not compile; the message is gojsonschema's."""


def _invalid_type(expected: str, given: str) -> SchemaError:
    return SchemaError(f"Invalid type. Expected: {expected}, given: {given}")


def _must_be(x: str, y: str) -> SchemaError:
    article = "an" if y[0] in "aeiouAEIOU" else "a"
    return SchemaError(f"{x} must be of {article} {y}")


# -- numbers and JSON text as Go's encoding/json writes them --------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rat(v: Any) -> Fraction:
    return Fraction(v.text) if isinstance(v, RegoFloat) else Fraction(v)


def _go_float_json(f: float) -> str:
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        text = format_float(f, "e", -1)
        mantissa, _, exp = text.partition("e")
        sign, digits = exp[0], exp[1:].lstrip("0") or "0"
        return f"{mantissa}e{sign}{digits}"
    return format_float(f, "f", -1)


def _json_without_number(v: Any) -> str:
    """gojsonschema's ``marshalWithoutNumber``: JSON text, numbers as float64, keys sorted."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_number(v):
        return _go_float_json(float(v))
    if isinstance(v, str):
        text = json.dumps(v, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if isinstance(v, dict):
        items = (f"{_json_without_number(k)}:{_json_without_number(v[k])}" for k in sorted(v))
        return "{" + ",".join(items) + "}"
    return "[" + ",".join(_json_without_number(x) for x in v) + "]"


def _plain(v: Any) -> Any:
    """OPA's ``ast.JSON``: sets become arrays (in OPA's order), object keys must be strings."""
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise HostBuiltinError("object keys must be strings to be JSON")
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, RegoSet):
        from evaluator_sidecar.policy.engines.wasm.result import sorted_set  # noqa: PLC0415

        return [_plain(x) for x in sorted_set(v)]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def load(value: Any) -> Any:
    """``astValueToJSONSchemaLoader``: a JSON string, an object or an array."""
    if isinstance(value, str):
        try:
            return json_unmarshal(value.encode("utf-8", "surrogatepass"))
        except HostBuiltinError as exc:
            raise HostBuiltinError("invalid JSON string") from exc
    if isinstance(value, (dict, list, RegoSet)):
        return _plain(value)
    raise HostBuiltinError("wrong type, expected string or object")


# -- compiled schemas ------------------------------------------------------------------------------
class Sub:
    """One (sub)schema, with gojsonschema's fields."""

    def __init__(self, prop: str, parent: Sub | None, draft: int | None) -> None:
        self.prop, self.parent = prop, parent
        self.draft: int = draft if draft is not None else (parent.draft if parent else HYBRID)
        self.passes: bool | None = None
        self.ref: Sub | None = None
        self.types: list[str] = []
        self.properties: list[Sub] = []
        self.additional_properties: Any = None
        self.pattern_properties: list[tuple[str, Any, Sub]] = []
        self.property_names: Sub | None = None
        self.dependencies: dict[str, Any] = {}
        self.items: list[Sub] = []
        self.items_single = False
        self.additional_items: Any = None
        self.multiple_of: Fraction | None = None
        self.minimum: Fraction | None = None
        self.maximum: Fraction | None = None
        self.exclusive_minimum: Fraction | None = None
        self.exclusive_maximum: Fraction | None = None
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.min_items: int | None = None
        self.max_items: int | None = None
        self.min_properties: int | None = None
        self.max_properties: int | None = None
        self.pattern: Any = None
        self.pattern_text = ""
        self.format = ""
        self.required: list[str] = []
        self.unique_items = False
        self.contains: Sub | None = None
        self.const: str | None = None
        self.enum: list[str] | None = None
        self.one_of: list[Sub] = []
        self.any_of: list[Sub] = []
        self.all_of: list[Sub] = []
        self.not_: Sub | None = None
        self.if_: Sub | None = None
        self.then: Sub | None = None
        self.else_: Sub | None = None


def _regex(pattern: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the schema's error, not stderr noise
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise SchemaError(f"Invalid regex pattern '{pattern}'") from exc


def _integer(m: dict[str, Any], key: str) -> int | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise _must_be(key, "integer")
    if v < 0:
        raise SchemaError(f"{key} must be greater than or equal to 0")
    return v


def _number(m: dict[str, Any], key: str) -> Fraction | None:
    if key not in m:
        return None
    if not _is_number(m[key]):
        raise _must_be(key, "Number")
    return _rat(m[key])


def _string(m: dict[str, Any], key: str) -> str | None:
    if key not in m:
        return None
    if not isinstance(m[key], str):
        raise _invalid_type("string", key)
    return m[key]  # type: ignore[no-any-return]


def _slice(m: dict[str, Any], key: str) -> list[Any]:
    if key not in m:
        return []
    if not isinstance(m[key], list):
        raise _must_be(key, "array")
    return m[key]  # type: ignore[no-any-return]


class Compiler:
    """``Schema.parseSchema`` over one schema document."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.refs: dict[str, Sub] = {}
        draft = HYBRID
        if not isinstance(document, (bool, dict)):
            raise SchemaError("schema is invalid")  # parseSchemaURL, before any parse
        if isinstance(document, dict) and "$schema" in document:
            url = document["$schema"]
            if not isinstance(url, str):
                raise SchemaError("$schema must be of type string")
            draft = _DRAFT_URLS.get(url.split("#", 1)[0].rstrip("/"), HYBRID)
        self.root_draft = draft

    def compile(self) -> Sub:
        root = Sub(ROOT, None, self.root_draft)
        self.parse(self.document, root)
        return root

    def _resolve(self, ref: str, current: Sub) -> None:
        if ref in self.refs:
            current.ref = self.refs[ref]
            return
        if not ref.startswith("#"):
            raise SchemaError(f"reference {ref} is not within the schema: it is not followed")
        target = Sub("$ref", current, None)
        self.refs[ref] = target
        node: Any = self.document
        for part in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else []:
            part = part.replace("~1", "/").replace("~0", "~")  # noqa: PLW2901 - one decoding
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"Object has no key '{part}'")
        if not isinstance(node, (bool, dict)):
            raise SchemaError("Valid Schema must be of type object")
        self.parse(node, target)
        current.ref = target

    def _child(self, node: Any, prop: str, parent: Sub) -> Sub:
        sub = Sub(prop, parent, None)
        self.parse(node, sub)
        return sub

    def parse(self, node: Any, s: Sub) -> None:
        if s.draft >= DRAFT6 and isinstance(node, bool):
            s.passes = node
            return
        if not isinstance(node, dict):
            raise SchemaError("Expected: Valid Schema, given: Invalid JSON")
        m = node
        id_key = "id" if s.draft == DRAFT4 or (s.draft == HYBRID and "id" in m) else "$id"
        _string(m, id_key)
        if "definitions" in m:
            if not isinstance(m["definitions"], dict):
                raise _invalid_type("Array Of Schemas", "definitions")
            for key in sorted(m["definitions"]):
                value = m["definitions"][key]
                if not isinstance(value, (bool, dict)):
                    raise _invalid_type("Array Of Schemas", "definitions")
                self._child(value, "definitions", s)
        _string(m, "title")
        _string(m, "description")
        ref = _string(m, "$ref")
        if ref is not None:
            known = ref in self.refs
            self._resolve(ref, s)
            if not known:
                return  # as gojsonschema: a first reference ends this schema's parse
        self._types(m, s)
        self._objects(m, s)
        self._arrays(m, s)
        self._numbers(m, s)
        self._strings(m, s)
        self._values(m, s)
        self._combinators(m, s)

    def _types(self, m: dict[str, Any], s: Sub) -> None:
        if "type" not in m:
            return
        t = m["type"]
        names = [t] if isinstance(t, str) else t
        if not isinstance(names, list):
            raise _invalid_type("type", "string/Array Of Strings")
        for name in names:
            if not isinstance(name, str):
                raise _invalid_type("type", "string/Array Of Strings")
            if name not in JSON_TYPES:
                expected = "[" + " ".join(JSON_TYPES) + "]"
                raise SchemaError(
                    f"has a primitive type that is NOT VALID -- given: /{name}/ "
                    f"Expected valid values are:{expected}"
                )
            if name in s.types:
                raise SchemaError(f"{name} type is duplicated")
            s.types.append(name)

    def _objects(self, m: dict[str, Any], s: Sub) -> None:  # noqa: C901, PLR0912 - one per keyword
        if "properties" in m:
            if not isinstance(m["properties"], dict):
                raise SchemaError("Properties must be of type object")
            for key in sorted(m["properties"]):
                s.properties.append(self._child(m["properties"][key], key, s))
        if "additionalProperties" in m:
            ap = m["additionalProperties"]
            if isinstance(ap, bool):
                s.additional_properties = ap
            elif isinstance(ap, dict):
                s.additional_properties = self._child(ap, "additionalProperties", s)
            else:
                raise _invalid_type("boolean/Valid Schema", "additionalProperties")
        if "patternProperties" in m:
            pp = m["patternProperties"]
            if not isinstance(pp, dict):
                raise _invalid_type("Valid Schema", "patternProperties")
            for key in sorted(pp):
                s.pattern_properties.append((key, _regex(key), self._child(pp[key], key, s)))
        if "propertyNames" in m and s.draft >= DRAFT6:
            if not isinstance(m["propertyNames"], (bool, dict)):
                raise _invalid_type("Valid Schema", "patternProperties")
            s.property_names = self._child(m["propertyNames"], "propertyNames", s)
        if "dependencies" in m:
            deps = m["dependencies"]
            if not isinstance(deps, dict):
                raise SchemaError("dependencies must be of type object")
            for key in sorted(deps):
                dep = deps[key]
                if isinstance(dep, list):
                    if not all(isinstance(d, str) for d in dep):
                        raise SchemaError("Dependency must be of type Schema Or Array Of Strings")
                    if dep:
                        s.dependencies[key] = list(dep)
                elif isinstance(dep, (bool, dict)):
                    s.dependencies[key] = self._child(dep, key, s)
                else:
                    raise SchemaError("Dependency must be of type Schema Or Array Of Strings")
        s.min_properties = _integer(m, "minProperties")
        s.max_properties = _integer(m, "maxProperties")
        if (
            s.min_properties is not None
            and s.max_properties is not None
            and s.min_properties > s.max_properties
        ):
            raise SchemaError("minProperties cannot be greater than maxProperties")
        for name in _slice(m, "required"):
            if not isinstance(name, str):
                raise _invalid_type("string", "required")
            if name in s.required:
                raise SchemaError("required items must be unique")
            s.required.append(name)

    def _arrays(self, m: dict[str, Any], s: Sub) -> None:
        if "items" in m:
            items = m["items"]
            if isinstance(items, list):
                for item in items:
                    if not isinstance(item, (dict, bool)):
                        raise _invalid_type("Valid Schema/Array Of Schemas", "items")
                    s.items.append(self._child(item, "items", s))
            elif isinstance(items, (dict, bool)):
                s.items.append(self._child(items, "items", s))
                s.items_single = True
            else:
                raise _invalid_type("Valid Schema/Array Of Schemas", "items")
        if "additionalItems" in m:
            ai = m["additionalItems"]
            if isinstance(ai, bool):
                s.additional_items = ai
            elif isinstance(ai, dict):
                s.additional_items = self._child(ai, "additionalItems", s)
            else:
                raise _invalid_type("boolean/Valid Schema", "additionalItems")

    def _numbers(self, m: dict[str, Any], s: Sub) -> None:
        if "multipleOf" in m:
            if not _is_number(m["multipleOf"]):
                raise _invalid_type("Number", "multipleOf")
            s.multiple_of = _rat(m["multipleOf"])
            if s.multiple_of <= 0:
                raise SchemaError("multipleOf must be strictly greater than 0")
        s.minimum = _number(m, "minimum")
        s.exclusive_minimum = self._exclusive(m, s, "exclusiveMinimum", "minimum")
        s.maximum = _number(m, "maximum")
        s.exclusive_maximum = self._exclusive(m, s, "exclusiveMaximum", "maximum")

    @staticmethod
    def _exclusive(m: dict[str, Any], s: Sub, key: str, bound: str) -> Fraction | None:
        if key not in m:
            return None
        v = m[key]
        if s.draft in (DRAFT4, HYBRID) and isinstance(v, bool):
            if getattr(s, bound) is None:
                raise SchemaError(f"{key} cannot be used without {bound}")
            if v:
                value = getattr(s, bound)
                setattr(s, bound, None)
                return value  # type: ignore[no-any-return]
            return None
        if s.draft != DRAFT4 and _is_number(v):
            return _rat(v)
        expected = {DRAFT4: "boolean", HYBRID: "boolean/number"}.get(s.draft, "number")
        raise _invalid_type(expected, key)

    def _strings(self, m: dict[str, Any], s: Sub) -> None:
        s.min_length = _integer(m, "minLength")
        s.max_length = _integer(m, "maxLength")
        if s.min_length is not None and s.max_length is not None and s.min_length > s.max_length:
            raise SchemaError("minLength cannot be greater than maxLength")
        pattern = _string(m, "pattern")
        if pattern is not None:
            try:
                s.pattern = _regex(pattern)
            except SchemaError as exc:
                raise SchemaError("pattern must be a valid regex") from exc
            s.pattern_text = pattern
        s.format = _string(m, "format") or ""

    def _values(self, m: dict[str, Any], s: Sub) -> None:
        s.min_items = _integer(m, "minItems")
        s.max_items = _integer(m, "maxItems")
        if "uniqueItems" in m:
            if not isinstance(m["uniqueItems"], bool):
                raise _must_be("uniqueItems", "boolean")
            s.unique_items = m["uniqueItems"]
        if "contains" in m and s.draft >= DRAFT6:
            s.contains = self._child(m["contains"], "contains", s)
        if "const" in m and s.draft >= DRAFT6:
            s.const = _json_without_number(m["const"])
        if "enum" in m:
            s.enum = []
            for v in _slice(m, "enum"):
                text = _json_without_number(v)
                if text in s.enum:
                    raise SchemaError("enum items must be unique")
                s.enum.append(text)

    def _combinators(self, m: dict[str, Any], s: Sub) -> None:
        s.one_of = [self._child(v, "oneOf", s) for v in _slice(m, "oneOf")]
        s.any_of = [self._child(v, "anyOf", s) for v in _slice(m, "anyOf")]
        s.all_of = [self._child(v, "allOf", s) for v in _slice(m, "allOf")]
        if "not" in m:
            if not isinstance(m["not"], (bool, dict)):
                raise _must_be("not", "object")
            s.not_ = self._child(m["not"], "not", s)
        if s.draft >= DRAFT7:
            for key, attr in (("if", "if_"), ("then", "then"), ("else", "else_")):
                if key in m:
                    if not isinstance(m[key], (bool, dict)):
                        raise _must_be(key, "object")
                    setattr(s, attr, self._child(m[key], key, s))


def compile_schema(schema: Any) -> Sub:
    """The compiled schema of a loaded schema document; :class:`SchemaError` if invalid."""
    return Compiler(schema).compile()


def verify_schema(schema: Any) -> list[Any]:
    """``json.verify_schema(schema)``: ``[true, null]`` or ``[false, "jsonschema: why"]``."""
    try:
        compile_schema(load(schema))
    except HostBuiltinError as exc:
        return [False, f"jsonschema: {exc}"]
    return [True, None]


def match_schema(document: Any, schema: Any) -> list[Any]:
    """``json.match_schema(document, schema)``: ``[valid, errors]``; a bad schema is undefined."""
    from evaluator_sidecar.policy.engines.wasm.hostschemacheck import validate  # noqa: PLC0415

    doc = load(document)
    compiled = compile_schema(load(schema))
    try:
        errors = validate(compiled, doc, is_format=is_format)
    except RecursionError as exc:
        # A schema whose $ref leads back into itself on the same value (OPA's Go dies of
        # a stack overflow on it): the call is undefined here.
        raise HostBuiltinError("the schema refers to itself without end") from exc
    return [not errors, errors]
