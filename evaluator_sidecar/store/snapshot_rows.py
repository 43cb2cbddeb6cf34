"""Snapshot content <-> table rows: checked and normalized going in, assembled coming out.

Pure: no I/O. ``prepare_snapshot`` takes a snapshot in the evaluator's rule
form (the PolicySnapshot spec's shape, /tmp/semantics.md), fills the defaults
(positions from list order, ``subtask_name`` from ``subtask_type``,
``relationship_type`` EMITS, empty params), turns condition values into the
TEXT the database stores (numbers as their text, lists and objects as JSON
text), and computes ``content_sha256``, the hash of everything stored, which
makes storing idempotent. Every problem is reported at once, with its path.

``assemble_rules`` and friends rebuild the rule form from rows, with each
emission carrying ``default_params`` (its own, else its subtask type's).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from evaluator_sidecar.policy.model import normalize_checksum, sha256_hex
from evaluator_sidecar.store.errors import ChecksumMismatchError, InvalidInputError

__all__ = [
    "CONDITION_TYPES",
    "ENGINES",
    "ENVS",
    "OPERATORS",
    "RELATIONS",
    "ConditionRow",
    "EmissionRow",
    "FactRow",
    "FixtureRow",
    "InvalidSnapshotError",
    "Row",
    "RuleRow",
    "SnapshotContent",
    "SubtaskTypeRow",
    "assemble_rules",
    "condition_value_text",
    "content_hash",
    "fact_to_dict",
    "format_timestamp",
    "parse_timestamp",
    "prepare_snapshot",
]

ENVS = ("prod", "staging", "dev")
ENGINES = ("native", "wasm")
CONDITION_TYPES = ("TAG", "SIGNAL", "VALUE", "FACT")
OPERATORS = ("=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES")
RELATIONS = ("EMITS", "ORDERS", "GATE")

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


class Row(Protocol):
    """What assembling needs of a row: a value per column name (a dict or an asyncpg Record)."""

    def __getitem__(self, key: str, /) -> Any: ...


class InvalidSnapshotError(InvalidInputError):
    """The snapshot cannot be stored; ``problems`` lists every problem with its path."""

    def __init__(self, version: str, problems: Sequence[str]) -> None:
        self.version = version
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"snapshot {version!r} cannot be stored ({len(self.problems)} problem(s)); "
            f"correct them and store it again:\n{lines}"
        )


@dataclass(frozen=True)
class ConditionRow:
    condition_type: str
    condition_key: str
    operator: str
    value: str | None
    position: int


@dataclass(frozen=True)
class EmissionRow:
    subtask_type: str
    subtask_name: str
    relationship_type: str
    params: dict[str, Any]
    position: int
    #: The emission's own default_params; None means "those of its subtask type".
    default_params: dict[str, Any] | None


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    rule_name: str
    priority: int
    disabled: bool
    rule_source: str | None
    position: int
    conditions: tuple[ConditionRow, ...]
    emissions: tuple[EmissionRow, ...]


@dataclass(frozen=True)
class SubtaskTypeRow:
    name: str
    default_params: dict[str, Any]
    #: False for a type only an emission names (stored so the emission can point at it).
    declared: bool
    position: int


@dataclass(frozen=True)
class FactRow:
    subject: str
    predicate: str
    object: Any
    valid_from: datetime | None
    valid_to: datetime | None
    position: int


@dataclass(frozen=True)
class FixtureRow:
    name: str
    input: dict[str, Any]
    expect: dict[str, Any]
    position: int


@dataclass(frozen=True)
class SnapshotContent:
    """A snapshot checked and normalized into rows, ready for one transaction."""

    version: str
    env: str
    engine: str
    checksum: str
    content_sha256: str
    rules: tuple[RuleRow, ...]
    subtask_types: tuple[SubtaskTypeRow, ...]
    facts: tuple[FactRow, ...]
    fixtures: tuple[FixtureRow, ...]
    data: dict[str, Any]
    entrypoint: str | None
    wasm_artifact: bytes | None
    artifact_sha256: str | None


# -- values ---------------------------------------------------------------------------------


def _integral(value: Any) -> Any:
    # kubectl turns 1.0 into 1 on the way in: store what survives that round trip.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_integral(v) for v in value]
    return value


def _canonical(value: Any) -> bytes:
    return json.dumps(
        _integral(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def condition_value_text(value: Any) -> str | None:
    """A condition value as stored: text as is, numbers as their text, lists as JSON text.

    Raises ValueError for values JSON cannot hold (NaN, infinities, other types).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a number JSON can hold")
        return json.dumps(_integral(value))
    if isinstance(value, list | tuple | dict):
        return json.dumps(_integral(value), ensure_ascii=False, allow_nan=False)
    raise ValueError(
        f"a condition value is text, a number, a boolean or a list; got {type(value).__name__}"
    )


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 text, epoch seconds or a datetime, as an aware UTC datetime (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise TypeError(f"expected RFC 3339 text or epoch seconds; got {type(value).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2026-01-01T00:00:00Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any, where: str, problems: list[str]) -> bool:
    try:
        _canonical(value)
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}: holds a value JSON cannot represent ({exc})")
        return False
    return True


# -- checking and normalizing ---------------------------------------------------------------


def _unknown_keys(
    item: Mapping[str, Any], allowed: frozenset[str], where: str, out: list[str]
) -> None:
    for key in item:
        if key not in allowed:
            out.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")


def _items(value: Any, where: str, out: list[str]) -> list[tuple[str, Mapping[str, Any]]]:
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
    _jsonable(result, f"{where}.{key}", out)
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


def _rule(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> RuleRow:
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
            for i, (w, c) in enumerate(_items(item.get("conditions"), f"{where}.conditions", out))
        ),
        emissions=tuple(
            _emission(w, e, i, out)
            for i, (w, e) in enumerate(_items(item.get("emissions"), f"{where}.emissions", out))
        ),
    )


def _fact(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> FactRow:
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
    _jsonable(obj, f"{where}.object", out)
    return FactRow(
        subject=_text(item, "subject", where, out),
        predicate=_text(item, "predicate", where, out),
        object=obj,
        valid_from=start,
        valid_to=end,
        position=index,
    )


def _fixture(where: str, item: Mapping[str, Any], index: int, out: list[str]) -> FixtureRow:
    _unknown_keys(item, _FIXTURE_KEYS, where, out)
    return FixtureRow(
        name=_text(item, "name", where, out),
        input=_mapping(item, "input", where, out, default={}) or {},
        expect=_mapping(item, "expect", where, out, default={}) or {},
        position=index,
    )


def _duplicates(names: Iterable[tuple[str, str]], what: str, out: list[str]) -> None:
    seen: dict[str, str] = {}
    for where, name in names:
        if not name:
            continue
        if name in seen:
            out.append(f"{where}: {what} {name!r} is also used at {seen[name]}")
        else:
            seen[name] = where


def prepare_snapshot(
    *,
    version: str,
    env: str,
    engine: str,
    rules: Sequence[Mapping[str, Any]] | None = None,
    subtask_types: Sequence[Mapping[str, Any]] | None = None,
    facts: Sequence[Mapping[str, Any]] | None = None,
    fixtures: Sequence[Mapping[str, Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    wasm_artifact: bytes | None = None,
    entrypoint: str | None = None,
    checksum: str,
) -> SnapshotContent:
    """Check and normalize a snapshot for storing.

    ``checksum`` is the content checksum (any form ``normalize_checksum``
    accepts); for a wasm snapshot it must be the artifact's sha256. Raises
    InvalidSnapshotError listing every problem, or ChecksumMismatchError.
    """
    out: list[str] = []
    if not isinstance(version, str) or not version:
        out.append("version: is required (non-empty text, e.g. 'rules@1.4.0')")
    if env not in ENVS:
        out.append(f"env: must be one of {', '.join(ENVS)}; got {env!r}")
    if engine not in ENGINES:
        out.append(f"engine: must be one of {', '.join(ENGINES)}; got {engine!r}")
    try:
        normalized_checksum = normalize_checksum(checksum)
    except (ValueError, AttributeError) as exc:
        out.append(f"checksum: {exc}")
        normalized_checksum = "0" * 64

    rule_rows = tuple(_rule(w, r, i, out) for i, (w, r) in enumerate(_items(rules, "rules", out)))
    _duplicates(
        ((f"rules[{i}].rule_id", r.rule_id) for i, r in enumerate(rule_rows)), "rule_id", out
    )

    declared: list[SubtaskTypeRow] = []
    for i, (where, item) in enumerate(_items(subtask_types, "subtask_types", out)):
        _unknown_keys(item, _SUBTASK_TYPE_KEYS, where, out)
        declared.append(
            SubtaskTypeRow(
                name=_text(item, "name", where, out),
                default_params=_mapping(item, "default_params", where, out, default={}) or {},
                declared=True,
                position=i,
            )
        )
    _duplicates(((f"subtask_types[{t.position}].name", t.name) for t in declared), "name", out)
    known = {t.name for t in declared}
    implicit: list[SubtaskTypeRow] = []
    for rule in rule_rows:
        for emission in rule.emissions:
            if emission.subtask_type and emission.subtask_type not in known:
                known.add(emission.subtask_type)
                implicit.append(
                    SubtaskTypeRow(emission.subtask_type, {}, False, len(declared) + len(implicit))
                )

    fact_rows = tuple(_fact(w, f, i, out) for i, (w, f) in enumerate(_items(facts, "facts", out)))
    fixture_rows = tuple(
        _fixture(w, f, i, out) for i, (w, f) in enumerate(_items(fixtures, "fixtures", out))
    )
    _duplicates(((f"fixtures[{f.position}].name", f.name) for f in fixture_rows), "name", out)

    data_dict: dict[str, Any] = {}
    if data is not None:
        if isinstance(data, Mapping):
            data_dict = dict(data)
            _jsonable(data_dict, "data", out)
        else:
            out.append(f"data: must be a mapping; got {type(data).__name__}")
    if entrypoint is not None and (not isinstance(entrypoint, str) or not entrypoint):
        out.append("entrypoint: must be non-empty text when given")

    artifact_sha256: str | None = None
    if wasm_artifact is not None:
        if not isinstance(wasm_artifact, bytes | bytearray) or not wasm_artifact:
            out.append("wasm_artifact: must be the module's bytes (non-empty)")
        else:
            artifact_sha256 = sha256_hex(bytes(wasm_artifact))
    if engine == "wasm":
        if wasm_artifact is None:
            out.append("wasm_artifact: a wasm snapshot needs its compiled module's bytes")
        if rule_rows or declared:
            out.append("rules/subtask_types: are for native snapshots; a wasm snapshot has none")
    elif engine == "native" and wasm_artifact is not None:
        out.append("wasm_artifact: a native snapshot has rules, not a wasm module")

    if out:
        raise InvalidSnapshotError(str(version), out)
    if engine == "wasm" and artifact_sha256 is not None and normalized_checksum != artifact_sha256:
        raise ChecksumMismatchError(
            f"snapshot {version!r}: checksum {normalized_checksum} is not the sha256 of its wasm "
            f"artifact ({artifact_sha256}); the module changed or the checksum is stale: "
            "rebuild or re-upload, or correct spec.checksum"
        )

    content = SnapshotContent(
        version=version,
        env=env,
        engine=engine,
        checksum=normalized_checksum,
        content_sha256="",
        rules=rule_rows,
        subtask_types=tuple(declared + implicit),
        facts=fact_rows,
        fixtures=fixture_rows,
        data=data_dict,
        entrypoint=entrypoint,
        wasm_artifact=bytes(wasm_artifact) if wasm_artifact is not None else None,
        artifact_sha256=artifact_sha256,
    )
    return _with_content_hash(content)


def _with_content_hash(content: SnapshotContent) -> SnapshotContent:
    payload = {
        "version": content.version,
        "env": content.env,
        "engine": content.engine,
        "checksum": content.checksum,
        "rules": [_rule_dict(r, None) for r in content.rules],
        "subtask_types": [
            {"name": t.name, "default_params": t.default_params, "declared": t.declared}
            for t in content.subtask_types
        ],
        "facts": [fact_to_dict(f) for f in content.facts],
        "fixtures": [
            {"name": f.name, "input": f.input, "expect": f.expect} for f in content.fixtures
        ],
        "data": content.data,
        "entrypoint": content.entrypoint,
        "artifact_sha256": content.artifact_sha256,
    }
    return replace(content, content_sha256=hashlib.sha256(_canonical(payload)).hexdigest())


def content_hash(content: SnapshotContent) -> str:
    """The ``content_sha256`` of ``content`` (its own field is ignored)."""
    return _with_content_hash(content).content_sha256


# -- assembling -----------------------------------------------------------------------------


def _rule_dict(rule: RuleRow, type_defaults: Mapping[str, dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": rule.rule_id,
        "rule_name": rule.rule_name,
        "priority": rule.priority,
        "disabled": rule.disabled,
    }
    if rule.rule_source is not None:
        out["rule_source"] = rule.rule_source
    out["conditions"] = [
        {
            "condition_type": c.condition_type,
            "condition_key": c.condition_key,
            "operator": c.operator,
            "value": c.value,
            "position": c.position,
        }
        for c in rule.conditions
    ]
    emissions = []
    for e in rule.emissions:
        emission: dict[str, Any] = {
            "subtask_type": e.subtask_type,
            "subtask_name": e.subtask_name,
            "relationship_type": e.relationship_type,
            "params": e.params,
            "position": e.position,
        }
        if type_defaults is None:
            emission["default_params"] = e.default_params
        else:
            emission["default_params"] = (
                e.default_params
                if e.default_params is not None
                else dict(type_defaults.get(e.subtask_type, {}))
            )
        emissions.append(emission)
    out["emissions"] = emissions
    return out


def assemble_rules(
    rules: Iterable[Row],
    conditions: Iterable[Row],
    emissions: Iterable[Row],
    subtask_types: Iterable[Row],
) -> list[dict[str, Any]]:
    """The evaluator's rule form from table rows.

    ``rules`` rows have id, rule_id, rule_name, priority, disabled, rule_source
    (in stored order); ``conditions`` and ``emissions`` rows have ``rule``
    (the rule's id) and their columns, emissions with ``subtask_type`` (the
    type's name); ``subtask_types`` rows have name and default_params. Rules
    keep their order; conditions and emissions are ordered by position, then
    as stored.
    """
    by_rule_c: dict[Any, list[ConditionRow]] = {}
    for c in conditions:
        by_rule_c.setdefault(c["rule"], []).append(
            ConditionRow(
                c["condition_type"], c["condition_key"], c["operator"], c["value"], c["position"]
            )
        )
    by_rule_e: dict[Any, list[EmissionRow]] = {}
    for e in emissions:
        by_rule_e.setdefault(e["rule"], []).append(
            EmissionRow(
                e["subtask_type"],
                e["subtask_name"],
                e["relationship_type"],
                dict(e["params"] or {}),
                e["position"],
                dict(e["default_params"]) if e["default_params"] is not None else None,
            )
        )
    defaults = {t["name"]: dict(t["default_params"] or {}) for t in subtask_types}
    assembled = []
    for index, r in enumerate(rules):
        row = RuleRow(
            rule_id=r["rule_id"],
            rule_name=r["rule_name"],
            priority=r["priority"],
            disabled=r["disabled"],
            rule_source=r["rule_source"],
            position=index,
            # sorted() is stable: equal positions keep their stored order.
            conditions=tuple(sorted(by_rule_c.get(r["id"], []), key=lambda c: c.position)),
            emissions=tuple(sorted(by_rule_e.get(r["id"], []), key=lambda e: e.position)),
        )
        assembled.append(_rule_dict(row, defaults))
    return assembled


def fact_to_dict(fact: FactRow | Row) -> dict[str, Any]:
    """A fact in the snapshot's form: subject, predicate, object, and the bounds it has."""
    if isinstance(fact, FactRow):
        subject, predicate, obj = fact.subject, fact.predicate, fact.object
        start, end = fact.valid_from, fact.valid_to
    else:
        subject, predicate, obj = fact["subject"], fact["predicate"], fact["object"]
        start, end = fact["valid_from"], fact["valid_to"]
    out: dict[str, Any] = {"subject": subject, "predicate": predicate, "object": obj}
    if start is not None:
        out["valid_from"] = format_timestamp(start)
    if end is not None:
        out["valid_to"] = format_timestamp(end)
    return out
