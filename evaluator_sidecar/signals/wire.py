"""Reading the protocol's JSON fields with clear errors: one place for messages and heartbeats.

:class:`MessageError` (a ``ValueError``) says what is wrong and where; the readers below
check one field each. Used by :mod:`evaluator_sidecar.signals.messages` and
:mod:`evaluator_sidecar.signals.heartbeat`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "MessageError",
    "as_text",
    "num",
    "opt_int",
    "opt_str",
    "parse_object",
    "req_int",
    "req_str",
]


class MessageError(ValueError):
    """A message, level or heartbeat that breaks the protocol; the text says what is wrong."""


# --------------------------------------------------------------------------- value types


def as_text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"message is not UTF-8 text ({exc})") from exc
    return raw


def req_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MessageError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(f"{where}: '{key}' must be a string or null, got {value!r}")
    return value


def req_int(obj: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MessageError(f"{where}: '{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def opt_int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{where}: '{key}' must be an integer or null, got {value!r}")
    return value


def num(obj: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def parse_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise MessageError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
