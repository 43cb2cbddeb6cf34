"""Validating a document against a compiled schema (:mod:`hostschema`), as gojsonschema does.

A port of ``internal/gojsonschema/validation.go`` and ``result.go``: the same
keyword order, error types and texts, the same "score" that picks which failed
branch of ``anyOf`` / ``oneOf`` / ``contains`` is reported, and the same field
paths (``(Root)``, ``a.b.0``). Where Go walks a map in random order (an
object's keys, ``patternProperties``), keys go in sorted order here.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from evaluator_sidecar.policy.engines.wasm.gostrconv import format_float
from evaluator_sidecar.policy.engines.wasm.hostschema import (
    ROOT,
    Sub,
    _json_without_number,
    _rat,
)
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat

__all__ = ["validate"]

FormatCheck = Callable[[str, Any], bool]


class Result:
    __slots__ = ("errors", "score")

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.score = 0

    def add(self, kind: str, desc: str, context: tuple[str, ...]) -> None:
        field = ".".join(context)
        field = field.removeprefix(ROOT + ".")
        self.errors.append(
            {"error": f"{field}: {desc}", "type": kind, "field": field, "desc": desc}
        )
        self.score -= 2

    def merge(self, other: Result) -> None:
        self.errors.extend(other.errors)
        self.score += other.score


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "integer" if _rat(v).denominator == 1 else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    return "array"


def _types_text(types: list[str]) -> str:
    return types[0] if len(types) == 1 else "[" + ",".join(types) + "]"


def _big(value: Fraction) -> str:
    """A ``*big.Float`` as Go's ``%v`` shows it (shortest 'g')."""
    return format_float(float(value), "g", -1)


class Validator:
    def __init__(self, is_format: FormatCheck) -> None:
        self.is_format = is_format

    def sub(self, s: Sub, node: Any, context: tuple[str, ...]) -> Result:
        result = Result()
        self.recurse(s, node, result, context)
        return result

    def recurse(self, s: Sub, node: Any, result: Result, context: tuple[str, ...]) -> None:
        if s.passes is not None:
            if not s.passes:
                result.add("false", "False always fails validation", context)
            return
        if s.ref is not None:
            self.recurse(s.ref, node, result, context)
            return
        given = _type_name(node)
        allowed = given in s.types or (given == "integer" and "number" in s.types)
        if s.types and not allowed:
            desc = f"Invalid type. Expected: {_types_text(s.types)}, given: {given}"
            result.add("invalid_type", desc, context)
            return
        self.schema(s, node, result, context)
        if given in ("integer", "number"):
            self.number(s, node, result, context)
        elif given == "array":
            self.array(s, node, result, context)
        elif given == "object":
            self.object(s, node, result, context)
        self.common(s, node, result, context)
        if given == "string":
            self.string(s, node, result, context)
        if given == "object":
            for child in s.properties:
                if child.prop in node:
                    self.recurse(child, node[child.prop], result, (*context, child.prop))
        result.score += 1

    def _best_failure(self, schemas: list[Sub], node: Any, context: tuple[str, ...]) -> Any:
        valid, best = 0, None
        for schema in schemas:
            r = self.sub(schema, node, context)
            if not r.errors:
                valid += 1
            elif valid == 0 and (best is None or r.score > best.score):
                best = r
        return valid, best

    def schema(self, s: Sub, node: Any, result: Result, context: tuple[str, ...]) -> None:  # noqa: C901, PLR0912 - validateSchema, keyword by keyword
        if s.any_of:
            best = None
            for schema in s.any_of:
                r = self.sub(schema, node, context)
                if not r.errors:
                    break
                if best is None or r.score > best.score:
                    best = r
            else:
                result.add("number_any_of", "Must validate at least one schema (anyOf)", context)
                if best is not None:
                    result.merge(best)
        if s.one_of:
            valid, best = self._best_failure(s.one_of, node, context)
            if valid != 1:
                result.add(
                    "number_one_of", "Must validate one and only one schema (oneOf)", context
                )
                if valid == 0 and best is not None:
                    result.merge(best)
        if s.all_of:
            valid = 0
            for schema in s.all_of:
                r = self.sub(schema, node, context)
                valid += not r.errors
                result.merge(r)
            if valid != len(s.all_of):
                result.add("number_all_of", "Must validate all the schemas (allOf)", context)
        if s.not_ is not None and not self.sub(s.not_, node, context).errors:
            result.add("number_not", "Must not validate the schema (not)", context)
        if s.dependencies and isinstance(node, dict):
            for key in sorted(node):
                dep = s.dependencies.get(key)
                if isinstance(dep, list):
                    for needed in dep:
                        if needed not in node:
                            result.add(
                                "missing_dependency", f"Has a dependency on {needed}", context
                            )
                elif isinstance(dep, Sub):
                    self.recurse(dep, node, result, context)
        if s.if_ is not None:
            if_ok = not self.sub(s.if_, node, context).errors
            branch, kind, word = (
                (s.then, "condition_then", '"then" as "if" was valid')
                if if_ok
                else (s.else_, "condition_else", '"else" as "if" was not valid')
            )
            if branch is not None:
                r = self.sub(branch, node, context)
                if r.errors:
                    result.add(kind, f"Must validate {word}", context)
                    result.merge(r)
        result.score += 1

    def common(self, s: Sub, node: Any, result: Result, context: tuple[str, ...]) -> None:
        field = ".".join(context).removeprefix(ROOT + ".")
        if s.const is not None and _json_without_number(node) != s.const:
            result.add("const", f"{field} does not match: {s.const}", context)
        if s.enum is not None and _json_without_number(node) not in s.enum:
            allowed = ", ".join(s.enum)
            result.add("enum", f"{field} must be one of the following: {allowed}", context)
        if s.format and not self.is_format(s.format, node):
            result.add("format", f"Does not match format '{s.format}'", context)
        result.score += 1

    def items(self, s: Sub, node: list[Any], result: Result, context: tuple[str, ...]) -> None:
        if s.items_single:
            for i, item in enumerate(node):
                result.merge(self.sub(s.items[0], item, (*context, str(i))))
        elif s.items:
            for i, (schema, item) in enumerate(zip(s.items, node, strict=False)):
                result.merge(self.sub(schema, item, (*context, str(i))))
            if len(s.items) < len(node):
                if s.additional_items is False:
                    result.add(
                        "array_no_additional_items", "No additional items allowed on array", context
                    )
                elif isinstance(s.additional_items, Sub):
                    for i in range(len(s.items), len(node)):
                        result.merge(self.sub(s.additional_items, node[i], (*context, str(i))))

    def array(self, s: Sub, node: list[Any], result: Result, context: tuple[str, ...]) -> None:
        self.items(s, node, result, context)
        if s.min_items is not None and len(node) < s.min_items:
            result.add("array_min_items", f"Array must have at least {s.min_items} items", context)
        if s.max_items is not None and len(node) > s.max_items:
            result.add("array_max_items", f"Array must have at most {s.max_items} items", context)
        if s.unique_items:
            seen: dict[str, int] = {}
            for j, item in enumerate(node):
                text = _json_without_number(item)
                if text in seen:
                    desc = f"array items[{seen[text]},{j}] must be unique"
                    result.add("unique", desc, context)
                seen[text] = j
        if s.contains is not None:
            best = None
            for i, item in enumerate(node):
                r = self.sub(s.contains, item, (*context, str(i)))
                if not r.errors:
                    break
                if best is None or r.score > best.score:
                    best = r
            else:
                result.add("contains", "At least one of the items must match", context)
                if best is not None:
                    result.merge(best)
        result.score += 1

    def object(
        self, s: Sub, node: dict[str, Any], result: Result, context: tuple[str, ...]
    ) -> None:
        if s.min_properties is not None and len(node) < s.min_properties:
            desc = f"Must have at least {s.min_properties} properties"
            result.add("array_min_properties", desc, context)
        if s.max_properties is not None and len(node) > s.max_properties:
            desc = f"Must have at most {s.max_properties} properties"
            result.add("array_max_properties", desc, context)
        for name in s.required:
            if name in node:
                result.score += 1
            else:
                result.add("required", f"{name} is required", context)
        known = {child.prop for child in s.properties}
        for key in sorted(node):
            matched = self.pattern_properties(s, key, node[key], result, context)
            if key in known or matched:
                continue
            if s.additional_properties is False:
                desc = f"Additional property {key} is not allowed"
                result.add("additional_property_not_allowed", desc, context)
            elif isinstance(s.additional_properties, Sub):
                result.merge(self.sub(s.additional_properties, node[key], (*context, key)))
        if s.property_names is not None:
            for key in sorted(node):
                r = self.sub(s.property_names, key, context)
                if r.errors:
                    desc = f'Property name of "{key}" does not match'
                    result.add("invalid_property_name", desc, context)
                    result.merge(r)
        result.score += 1

    def pattern_properties(
        self, s: Sub, key: str, value: Any, result: Result, context: tuple[str, ...]
    ) -> bool:
        matched = False
        for _text, regex, schema in s.pattern_properties:
            if regex.search(key):
                matched = True
                result.merge(self.sub(schema, value, (*context, key)))
        if matched:
            result.score += 1
        return matched

    def string(self, s: Sub, node: str, result: Result, context: tuple[str, ...]) -> None:
        length = len(node)
        if s.min_length is not None and length < s.min_length:
            desc = f"String length must be greater than or equal to {s.min_length}"
            result.add("string_gte", desc, context)
        if s.max_length is not None and length > s.max_length:
            desc = f"String length must be less than or equal to {s.max_length}"
            result.add("string_lte", desc, context)
        if s.pattern is not None and not s.pattern.search(node):
            result.add("pattern", f"Does not match pattern '{s.pattern_text}'", context)
        result.score += 1

    def number(self, s: Sub, node: Any, result: Result, context: tuple[str, ...]) -> None:
        value = _rat(node) if not isinstance(node, RegoFloat) else Fraction(node.text)
        if s.multiple_of is not None and (value / s.multiple_of).denominator != 1:
            result.add("multiple_of", f"Must be a multiple of {_big(s.multiple_of)}", context)
        if s.maximum is not None and value > s.maximum:
            result.add("number_lte", f"Must be less than or equal to {_big(s.maximum)}", context)
        if s.exclusive_maximum is not None and value >= s.exclusive_maximum:
            result.add("number_lt", f"Must be less than {_big(s.exclusive_maximum)}", context)
        if s.minimum is not None and value < s.minimum:
            desc = f"Must be greater than or equal to {_big(s.minimum)}"
            result.add("number_gte", desc, context)
        if s.exclusive_minimum is not None and value <= s.exclusive_minimum:
            result.add("number_gt", f"Must be greater than {_big(s.exclusive_minimum)}", context)
        result.score += 1


def validate(schema: Sub, document: Any, *, is_format: FormatCheck) -> list[dict[str, str]]:
    """The errors of ``document`` against ``schema``, as OPA's ``json.match_schema`` lists them."""
    result = Result()
    Validator(is_format).recurse(schema, document, result, (ROOT,))
    return result.errors
