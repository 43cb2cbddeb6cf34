"""The sidecar's environment facts: the set loaded beside the evaluator, and the last good one.

A :class:`FactsKeeper` holds the sidecar's environment's fact set
(:class:`~evaluator_sidecar.policy.environment_facts.EnvironmentFacts`). It
loads the set from PostgreSQL when the facts level in Redis (or, without one,
PostgreSQL's own version) names a version other than the one held, swaps it in
by one assignment (readers on any thread see the old set or the new one, never a
mix), and writes it to the disk cache. At start without PostgreSQL it serves
the set from the disk cache; a set that fails to load leaves the held one in
place, logged and reported in health. Evaluation never waits on any of it.

The set never moves backwards: a version lower than the held one is ignored.
Validity (``valid_from``/``valid_to``) is not judged here but at evaluation
time, so a fact that expires needs no new version and no message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from evaluator_sidecar.policy.environment_facts import (
    EnvironmentFacts,
    EnvironmentFactsError,
)
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event

__all__ = ["FactsKeeper", "FactsSource"]

logger = logging.getLogger(MANAGER_LOGGER)

FactsOrigin = Literal["none", "postgres", "disk_cache"]


class FactsSource(Protocol):
    """What the keeper needs of PostgreSQL (``PKGClient`` has it)."""

    async def environment_facts(self, env: str | None = None) -> dict[str, Any]: ...

    async def facts_version(self, env: str | None = None) -> int: ...


class FactsKeeper:
    """The environment's fact set this sidecar evaluates with (see the module's description)."""

    def __init__(self, source: Any, *, env: str, cache_dir: Path | None, timeout: float) -> None:
        # Any source without environment facts (an old client, a test double of the
        # snapshot source only) leaves the set empty rather than failing the sidecar.
        self.source: FactsSource | None = (
            source if source is not None and hasattr(source, "environment_facts") else None
        )
        self.env = env
        self.timeout = timeout
        self._path = None if cache_dir is None else cache_dir / f"facts-{env}.json"
        self.current = EnvironmentFacts(env, 0)
        self.origin: FactsOrigin = "none"
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    @property
    def version(self) -> int:
        return self.current.version

    def status(self) -> dict[str, Any]:
        held = self.current
        return {
            "facts_version": held.version,
            "facts_count": len(held.facts),
            "facts_source": self.origin,
            "facts_error": self.last_error,
        }

    async def follow(self, level_version: int | None, reason: str) -> bool:
        """Load the set when ``level_version`` (the facts level's; None: ask PostgreSQL)
        differs from the held one; True when a new set was swapped in."""
        async with self._lock:
            if self.source is None:
                return False
            if level_version == self.version and self.origin == "postgres":
                return False
            try:
                if level_version is None:
                    wanted = await asyncio.wait_for(
                        self.source.facts_version(self.env), timeout=self.timeout
                    )
                    if wanted == self.version and self.origin == "postgres":
                        return False
                raw = await asyncio.wait_for(
                    self.source.environment_facts(self.env), timeout=self.timeout
                )
                loaded = EnvironmentFacts.build(
                    self.env, int(raw["version"]), list(raw.get("facts") or [])
                )
            except (EnvironmentFactsError, KeyError, TypeError, ValueError) as exc:
                return self._failed(f"the fact set of {self.env} does not load: {exc}", reason)
            except Exception as exc:  # noqa: BLE001 - PostgreSQL away: keep the set, retry later
                return self._failed(
                    f"reading the fact set of {self.env} failed: {str(exc) or type(exc).__name__}",
                    reason,
                )
            return self._swap(loaded, "postgres", reason)

    def _failed(self, error: str, reason: str) -> bool:
        self.last_error = error
        log_event(
            logger,
            logging.WARNING,
            "facts_load_failed",
            env=self.env,
            error=error,
            reason=reason,
            held_version=self.version,
            action="evaluating with the held fact set; retrying at the next resync",
        )
        return False

    def _swap(self, loaded: EnvironmentFacts, origin: FactsOrigin, reason: str) -> bool:
        held = self.current
        if loaded.version < held.version:
            log_event(
                logger,
                logging.INFO,
                "facts_ignored",
                env=self.env,
                version=loaded.version,
                held_version=held.version,
                reason="older than the set held",
            )
            return False
        self.current = loaded  # one assignment: readers see the old set or the new one
        self.origin = origin
        self.last_error = None
        log_event(
            logger,
            logging.INFO,
            "facts_loaded",
            env=self.env,
            version=loaded.version,
            previous_version=held.version,
            facts=len(loaded.facts),
            source=origin,
            reason=reason,
        )
        if origin == "postgres":
            self._write_cache(loaded)
        return True

    def _write_cache(self, loaded: EnvironmentFacts) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(orjson.dumps(loaded.to_dict()))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, TypeError) as exc:
            log_event(
                logger,
                logging.WARNING,
                "facts_cache_write_failed",
                path=str(self._path),
                error=str(exc),
                action="the set is in memory; a restart without PostgreSQL starts without it",
            )

    def load_from_disk(self) -> bool:
        """Serve the last good set from the disk cache (start-up without PostgreSQL)."""
        if self._path is None or self.version > 0:
            return False
        try:
            loaded = EnvironmentFacts.from_dict(orjson.loads(self._path.read_bytes()))
        except FileNotFoundError:
            return False
        except (OSError, orjson.JSONDecodeError, EnvironmentFactsError) as exc:
            self.last_error = f"the cached fact set {self._path} cannot be used: {exc}"
            log_event(logger, logging.ERROR, "facts_cache_unusable", error=self.last_error)
            return False
        if loaded.env != self.env:
            return False
        return self._swap(loaded, "disk_cache", "startup")
