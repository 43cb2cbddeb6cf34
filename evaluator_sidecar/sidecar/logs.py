"""Structured log events, and the formatters that print them as JSON lines or text.

Lifecycle events (``snapshot_load_start``, ``snapshot_activated``, ...) are
ordinary ``logging`` records whose ``extra`` holds the event's fields, so any
handler can print them; :class:`JsonFormatter` prints one JSON object per line
with the fields at the top level (the shape README.md, "Logs and events",
documents), :class:`TextFormatter` appends them as ``key=value``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

__all__ = ["MANAGER_LOGGER", "JsonFormatter", "TextFormatter", "configure_logging", "log_event"]

# The manager's parts (activation, convergence, the Redis listener) live in modules of
# their own but log under the one name their events always had, so that log filters
# and alerts keyed on the logger keep matching.
MANAGER_LOGGER = "evaluator_sidecar.sidecar.manager"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log the structured event ``event`` with ``fields`` (and a ``timestamp``)."""
    if logger.isEnabledFor(level):
        fields.setdefault("timestamp", time.time())
        logger.log(level, event, extra={"event": event, **fields})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """``{"level", "logger", "message", <event fields>, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update(_extras(record))
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={v!r}" for k, v in extras.items() if k != "event")
        return text


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr in ``fmt`` (``json`` or ``text``) at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
