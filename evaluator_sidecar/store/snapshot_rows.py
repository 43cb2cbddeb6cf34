"""Snapshot rows: the checked, normalized form of a snapshot's content, and its value forms.

The dataclasses here are what one snapshot becomes on its way into the tables
(``SnapshotContent``: rules -> conditions -> emissions, subtask types, facts,
fixtures), the enumerations the schema allows, and the conversions every part
shares: a condition value as the TEXT the database stores (numbers as their
text, lists and objects as JSON text), timestamps, and the canonical JSON that
hashing uses. Pure: no I/O.

Going in, ``snapshot_prepare.prepare_snapshot`` checks a snapshot and builds a
``SnapshotContent``; coming out, ``snapshot_assembly.assemble_rules`` rebuilds
the evaluator's rule form from table rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from evaluator_sidecar.store.errors import InvalidInputError

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
    "canonical_json",
    "check_env",
    "condition_value_text",
    "format_timestamp",
    "parse_timestamp",
]

ENVS = ("prod", "staging", "dev")
ENGINES = ("native", "wasm")
CONDITION_TYPES = ("TAG", "SIGNAL", "VALUE", "FACT")
OPERATORS = ("=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES")
RELATIONS = ("EMITS", "ORDERS", "GATE")


def check_env(env: str) -> str:
    """``env`` if it is one of ENVS, else InvalidInputError naming them."""
    if env not in ENVS:
        raise InvalidInputError(f"environment {env!r} is not one of {', '.join(ENVS)}")
    return env


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


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no spaces, whole floats as ints):
    equal content hashes equally however it was written."""
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
