"""The evaluators a sidecar holds: the active one, and the recent ones kept for rollback.

:class:`EvaluatorCache` keeps up to ``MAX_EVALUATOR_CACHE_SIZE`` compiled
evaluators by version, evicting the least recently *activated*, so that going
back to one of the last versions (a rollback, ``?version=`` on the HTTP API)
needs no load and no compile. :class:`EvaluatorSlot` puts the active pointer
and that cache behind one ``threading.Lock``: a swap is a single assignment, and
readers on any thread (the HTTP server's, the event loop's) see either the old
evaluator or the new one, never a half-made state. Nothing here does I/O, so
:meth:`EvaluatorSlot.active` is safe on the hot path.
"""

from __future__ import annotations

import threading

from evaluator_sidecar.policy.evaluator import PKGEvaluator

__all__ = ["MAX_EVALUATOR_CACHE_SIZE", "EvaluatorCache", "EvaluatorSlot"]

MAX_EVALUATOR_CACHE_SIZE = 3


class EvaluatorCache:
    """Up to ``limit`` evaluators by version; the least recently *activated* is evicted first.

    Not thread-safe by itself: :class:`EvaluatorSlot` calls it under its swap lock.
    """

    def __init__(self, limit: int = MAX_EVALUATOR_CACHE_SIZE) -> None:
        if limit < 1:
            raise ValueError("the evaluator cache must hold at least the active evaluator")
        self.limit = limit
        self._entries: dict[str, tuple[PKGEvaluator, float]] = {}

    def get(self, version: str) -> PKGEvaluator | None:
        entry = self._entries.get(version)
        return entry[0] if entry else None

    def activate(self, evaluator: PKGEvaluator, at: float) -> list[str]:
        """Record ``evaluator`` as activated at ``at``; return the versions evicted."""
        self._entries[evaluator.version] = (evaluator, at)
        evicted: list[str] = []
        while len(self._entries) > self.limit:
            oldest = min(self._entries, key=lambda v: self._entries[v][1])
            del self._entries[oldest]
            evicted.append(oldest)
        return evicted

    def versions(self) -> list[str]:
        """Cached versions, most recently activated first."""
        return sorted(self._entries, key=lambda v: self._entries[v][1], reverse=True)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, version: object) -> bool:
        return version in self._entries


class EvaluatorSlot:
    """The active evaluator and the :class:`EvaluatorCache`, swapped together under one lock.

    The lock is held for a pointer read or a dictionary update, a few hundred
    nanoseconds, so evaluation never waits on an activation in progress: the
    next evaluator is compiled and self-tested before :meth:`swap` is called.
    """

    def __init__(self, limit: int = MAX_EVALUATOR_CACHE_SIZE) -> None:
        self._lock = threading.Lock()
        self._active: PKGEvaluator | None = None
        self._cache = EvaluatorCache(limit)

    def active(self) -> PKGEvaluator | None:
        """The evaluator to use now (None when no policy is loaded)."""
        with self._lock:
            return self._active

    def get(self, version: str) -> PKGEvaluator | None:
        """A cached evaluator of ``version`` (active or kept for rollback), else None."""
        with self._lock:
            return self._cache.get(version)

    def swap(self, evaluator: PKGEvaluator, at: float) -> tuple[PKGEvaluator | None, list[str]]:
        """Make ``evaluator`` the active one; return the previous one and the versions evicted."""
        with self._lock:
            previous = self._active
            self._active = evaluator
            return previous, self._cache.activate(evaluator, at)

    def view(self) -> tuple[PKGEvaluator | None, list[str]]:
        """The active evaluator and the cached versions (most recent first), read together."""
        with self._lock:
            return self._active, self._cache.versions()

    @property
    def limit(self) -> int:
        return self._cache.limit

    def __len__(self) -> int:
        return len(self._cache)
