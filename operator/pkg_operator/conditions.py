"""Kubernetes status conditions and timestamps, as plain JSON-ready dicts.

Owns the API conventions every custom resource of the operator follows
(PolicySnapshot and PolicyDeployment alike): one condition per ``type``;
``status`` is "True", "False" or "Unknown"; ``reason`` is one CamelCase word;
``lastTransitionTime`` moves only when ``status`` changes (a new reason or
message alone does not move it); every condition carries the
``observedGeneration`` it was computed for, so ``kubectl wait`` never takes a
condition of an older generation for an answer about the current one.

Pure: no clock reads, the caller passes ``now``. Timestamps are RFC 3339 in
UTC with a ``Z``: whole seconds for conditions (as ``metav1.Time`` writes
them), microseconds kept elsewhere when present.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "ConditionStatus",
    "find_condition",
    "format_time",
    "is_true",
    "parse_time",
    "set_condition",
]

ConditionStatus = Literal["True", "False", "Unknown"]

_STATUSES = frozenset({"True", "False", "Unknown"})
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is needed, got the naive {now.isoformat()}")
    return now.astimezone(UTC)


def format_time(moment: datetime, *, whole_seconds: bool = False) -> str:
    """``2025-01-02T03:04:05Z`` (or ``...05.250000Z`` when there is a fraction to keep)."""
    utc = _require_aware(moment)
    if whole_seconds or utc.microsecond == 0:
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time`; accepts any RFC 3339 timestamp with an offset."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    return _require_aware(parsed)


def find_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    """The condition of that type, or None."""
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    found = find_condition(conditions, type_)
    return found is not None and found.get("status") == "True"


def set_condition(  # noqa: PLR0917 -- the positional form is the shared contract
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """A new list with the condition of ``type_`` set; the input is not modified.

    Order is kept (a new type is appended), so writing the same conditions twice
    gives the same list. ``lastTransitionTime`` is kept from the existing
    condition when ``status`` is unchanged, and set to ``now`` otherwise.
    """
    if status not in _STATUSES:
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    if not _REASON.match(reason):
        raise ValueError(f"condition reason must be one CamelCase word, not {reason!r}")
    stamp = format_time(now, whole_seconds=True)
    updated: list[dict[str, Any]] = []
    seen = False
    for existing in conditions:
        if existing.get("type") != type_:
            updated.append(dict(existing))
            continue
        seen = True
        previous = existing.get("lastTransitionTime")
        keep = existing.get("status") == status and isinstance(previous, str)
        updated.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": previous if keep else stamp,
                "observedGeneration": generation,
            }
        )
    if not seen:
        updated.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp,
                "observedGeneration": generation,
            }
        )
    return updated
