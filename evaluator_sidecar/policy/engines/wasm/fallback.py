"""The engine's stand-in when wasmtime cannot be used.

A sidecar whose image lacks wasmtime, or whose wasmtime native library fails to
load, must keep serving: a WASM snapshot then loads as a no-op that returns the
empty result for every evaluation, reports ``degraded = True`` (health and
heartbeats show it), and logs one warning per process naming the reason.
What follows for the sidecar and the operator: docs/wasm-engine.md ("Without
wasmtime") and the README's Known issues.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.base import EngineResult

__all__ = ["NoopBackend", "empty_result", "warn_fallback_once"]

log = logging.getLogger(__name__)


class _Once:
    """A flag that exactly one caller gets to set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    def claim(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True


_warning = _Once()


def empty_result() -> EngineResult:
    """The result of an undefined policy decision: nothing to do."""
    return {"subtasks": [], "dag": [], "rules": []}


def warn_fallback_once(reason: str) -> bool:
    """Log the fallback warning if this process has not yet; True when it logged."""
    if not _warning.claim():
        return False
    log.warning(
        "wasm engine running in no-op fallback mode: wasmtime is unavailable (%s). WASM snapshots "
        "evaluate to empty results and report degraded=true; install wasmtime "
        "(pip install 'wasmtime>=50,<51') "
        "to evaluate them.",
        reason,
    )
    return True


class NoopBackend:
    """Evaluates every input to the empty result."""

    degraded = True

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def evaluate(self, _task_facts: Mapping[str, Any]) -> EngineResult:
        return empty_result()
