"""The checks of one snapshot's parts: each item becomes a row, each problem a line.

Every checker takes the item, its path (``rules[2].conditions[0]``) and the list
``out`` it appends problems to, and returns a row even for a broken item (with a
harmless default in place of what was wrong), so that ``prepare_snapshot``
reports every problem of a snapshot at once rather than the first. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from evaluator_sidecar.store.snapshot_rows import (
    CONDITION_TYPES,
    OPERATORS,
    RELATIONS,
    ConditionRow,
    EmissionRow,
    FactRow,
    FixtureRow,
    RuleRow,
    SubtaskTypeRow,
    canonical_json,
    condition_value_text,
    parse_timestamp,
)

__all__ = [
    "check_fact",
    "check_fixture",
    "check_jsonable",
    "check_rule",
    "check_subtask_type",
    "check_unique",
    "list_items",
]

_RULE_KEYS = frozenset(
    {"rule_id", "rule_name", "priority", "disabled", "rule_source", "conditions", "emissions"}
)
_CONDITION_KEYS = frozenset({"condition_type", "condition_key", "operator", "value", "position"})
_EMISSION_KEYS = frozenset(
    {"subtask_type", "subtask_name", "relationship_type", "params", "position", "default_params"}
)
_SUBTASK_TYPE_KEYS = frozenset({"name", "default_params"})
_FACT_KEYS = frozenset({"subject", "predicate", "object", "valid_from", "valid_to"})
_FIXTURE_KEYS = frozenset({"name", "input", "expect"})

_INT32 = 2**31 - 1


def check_jsonable(value: Any, where: str, problems: list[str]) -> bool:
    """``value`` can be stored as JSON; else a problem at ``where``."""
    try:
        canonical_json(value)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: holds a value JSON cannot represent ({exc})")
        return False
    return True


def _unknown_keys(
    item: Mapping[str, Any], allowed: frozenset[str], where: str, out: list[str]
) -> None:
    for key in item:
        if key not in allowed:
            out.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def list_items(value: Any, where: str, out: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
    """The mappings of the list ``value`` with their paths; a problem for anything else."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        out.append(f"{where}: must be a list; got {type(value).__name__}")
        return []
    items = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping):
            items.append((f"{where}[{i}]", item))
        else:
            out.append(f"{where}[{i}]: must be a mapping; got {type(item).__name__}")
    return items


def _text(item: Mapping[str, Any], key: str, where: str, out: list[str]) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        out.append(f"{where}.{key}: is required (non-empty text)")
        return ""
    return value


def _int(item: Mapping[str, Any], key: str, default: int, where: str, out: list[str]) -> int:
    value = item.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _INT32:
        out.append(f"{where}.{key}: must be a whole number; got {value!r}")
        return default
    return value


def _mapping(
    item: Mapping[str, Any], key: str, where: str, out: list[str], *, default: dict[str, Any] | None
) -> dict[str, Any] | None:
    value = item.get(key)
    if value is None:
        return None if default is None else dict(default)
    if not isinstance(value, Mapping):
        out.append(f"{where}.{key}: must be a mapping; got {type(value).__name__}")
        return None if default is None else dict(default)
    result = dict(value)
    check_jsonable(result, f"{where}.{key}", out)
    return result


def _choice(
    item: Mapping[str, Any],
    key: str,
    allowed: Sequence[str],
    where: str,
    out: list[str],
    *,
    default: str | None = None,
) -> str:
    value = item.get(key, default)
    if value not in allowed:
        out.append(f"{where}.{key}: must be one of {', '.join(allowed)}; got {value!r}")
        return allowed[0]
    return str(value)


def _condition(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> ConditionRow:
    _unknown_keys(item, _CONDITION_KEYS, where, out)
    key = item.get("condition_key")
    if not isinstance(key, str):
        out.append(f"{where}.condition_key: is required (text)")
        key = ""
    try:
        value = condition_value_text(item.get("value"))
    except ValueError as exc:
        out.append(f"{where}.value: {exc}")
        value = None
    return ConditionRow(
        condition_type=_choice(item, "condition_type", CONDITION_TYPES, where, out),
        condition_key=key,
        operator=_choice(item, "operator", OPERATORS, where, out),
        value=value,
        position=_int(item, "position", index, where, out),
    )


def _emission(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> EmissionRow:
    _unknown_keys(item, _EMISSION_KEYS, where, out)
    subtask_type = _text(item, "subtask_type", where, out)
    name = item.get("subtask_name")
    if name is None:
        name = subtask_type
    elif not isinstance(name, str) or not name:
        out.append(f"{where}.subtask_name: must be non-empty text")
        name = subtask_type
    return EmissionRow(
        subtask_type=subtask_type,
        subtask_name=name,
        relationship_type=_choice(
            item, "relationship_type", RELATIONS, where, out, default="EMITS"
        ),
        params=_mapping(item, "params", where, out, default={}) or {},
        position=_int(item, "position", index, where, out),
        default_params=_mapping(item, "default_params", where, out, default=None),
    )


def check_rule(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> RuleRow:
    """A rule with its conditions and emissions as a row (defaults filled)."""
    _unknown_keys(item, _RULE_KEYS, where, out)
    disabled = item.get("disabled", False)
    if disabled is None:
        disabled = False
    if not isinstance(disabled, bool):
        out.append(f"{where}.disabled: must be true or false; got {disabled!r}")
        disabled = False
    source = item.get("rule_source")
    if source is not None and not isinstance(source, str):
        out.append(f"{where}.rule_source: must be text")
        source = None
    return RuleRow(
        rule_id=_text(item, "rule_id", where, out),
        rule_name=_text(item, "rule_name", where, out),
        priority=_int(item, "priority", 0, where, out),
        disabled=disabled,
        rule_source=source,
        position=index,
        conditions=tuple(
            _condition(w, c, i, out)
            for i, (w, c) in enumerate(
                list_items(item.get("conditions"), f"{where}.conditions", out)
            )
        ),
        emissions=tuple(
            _emission(w, e, i, out)
            for i, (w, e) in enumerate(list_items(item.get("emissions"), f"{where}.emissions", out))
        ),
    )


def check_fact(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> FactRow:
    """A fact as a row: subject, predicate, a JSON object, ordered bounds."""
    _unknown_keys(item, _FACT_KEYS, where, out)
    bounds: dict[str, datetime | None] = {}
    for key in ("valid_from", "valid_to"):
        try:
            bounds[key] = parse_timestamp(item.get(key))
        except (TypeError, ValueError) as exc:
            out.append(f"{where}.{key}: {exc}")
            bounds[key] = None
    start, end = bounds["valid_from"], bounds["valid_to"]
    if start is not None and end is not None and end <= start:
        out.append(f"{where}: valid_to must be later than valid_from")
    obj = item.get("object")
    check_jsonable(obj, f"{where}.object", out)
    return FactRow(
        subject=_text(item, "subject", where, out),
        predicate=_text(item, "predicate", where, out),
        object=obj,
        valid_from=start,
        valid_to=end,
        position=index,
    )


def check_subtask_type(
    where: str, item: Mapping[str, Any], index: int, out: list[str]
) -> SubtaskTypeRow:
    """A declared subtask type as a row (default_params empty when omitted)."""
    _unknown_keys(item, _SUBTASK_TYPE_KEYS, where, out)
    return SubtaskTypeRow(
        name=_text(item, "name", where, out),
        default_params=_mapping(item, "default_params", where, out, default={}) or {},
        declared=True,
        position=index,
    )


def check_fixture(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> FixtureRow:
    """A fixture as a row: its name, input and expected result."""
    _unknown_keys(item, _FIXTURE_KEYS, where, out)
    return FixtureRow(
        name=_text(item, "name", where, out),
        input=_mapping(item, "input", where, out, default={}) or {},
        expect=_mapping(item, "expect", where, out, default={}) or {},
        position=index,
    )


def check_unique(names: Iterable[tuple[str, str]], what: str, out: list[str]) -> None:
    """A problem for each name already used at an earlier path (empty names skipped)."""
    seen: dict[str, str] = {}
    for where, name in names:
        if not name:
            continue
        if name in seen:
            out.append(f"{where}: {what} {name!r} is also used at {seen[name]}")
        else:
            seen[name] = where
