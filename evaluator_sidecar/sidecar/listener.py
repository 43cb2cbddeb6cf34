"""The Redis listener: how a sidecar learns what to run, and keeps learning through outages.

A :class:`RedisListener` reads the desired-state levels at start, subscribes to
the channel of :mod:`evaluator_sidecar.signals`, and hands ``activate:`` and
desired-state messages to the :class:`~evaluator_sidecar.sidecar.converge.Converger`.
When Redis goes away it reconnects with exponential back-off and full jitter
and re-reads the levels once subscribed again, so a message published during
the outage is not missed. A periodic resync re-reads the levels (or, without
Redis, PostgreSQL's active snapshot) to catch what a lost message or a key
written without one would leave behind; after a failure that may pass (PostgreSQL away
when a snapshot must be loaded) it comes sooner, with back-off. The facts level ``pkg:facts:{env}``
is followed the same way (its message, every resync) by the
:class:`~evaluator_sidecar.sidecar.facts.FactsKeeper`. Evaluation never waits
on any of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from evaluator_sidecar.sidecar.activation import Source
from evaluator_sidecar.sidecar.converge import Converger
from evaluator_sidecar.sidecar.facts import FactsKeeper
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.sidecar.staleness import Staleness
from evaluator_sidecar.signals import (
    ActivateMessage,
    DesiredMessage,
    FactsMessage,
    RedisSignals,
    backoff_delay,
)
from evaluator_sidecar.signals import errors as redis_errors

__all__ = ["RETRY_CAP_SECONDS", "RedisListener"]

logger = logging.getLogger(MANAGER_LOGGER)

#: The longest wait before resyncing again after a convergence failed for a reason
#: that may pass. Full jitter spreads a fleet's retries over it.
RETRY_CAP_SECONDS = 5.0
#: How often the resync loop looks at the clock and at a failed convergence.
_TICK_SECONDS = 0.5


class RedisListener:
    """Feeds the converger from Redis: start-up read, subscription, reconnects, resyncs."""

    def __init__(
        self,
        signals: RedisSignals | None,
        converger: Converger,
        *,
        env: str,
        target: str,
        region: str,
        metrics: SidecarMetrics,
        read_timeout: float,
        resync_interval: float,
        backoff_max: float,
        stopping: asyncio.Event,
        facts: FactsKeeper | None = None,
        staleness: Staleness | None = None,
    ) -> None:
        self.signals = signals
        self.facts = facts
        self.staleness = staleness or Staleness(applies=False)
        self.converger = converger
        self.env = env
        self.target = target
        self.region = region
        self.metrics = metrics
        self.read_timeout = read_timeout
        self.resync_interval = resync_interval
        self.backoff_max = backoff_max
        self._stopping = stopping
        self.connected = False
        #: False once Redis refused the epoch floor: a least-privilege ACL user may not
        #: write ``pkg:epoch``, and the operator draws epochs from PostgreSQL anyway.
        self.may_raise_floor = True

    async def read_levels_at_start(self) -> bool:
        """Read the levels once, with a timeout; True when the tracker is now up to date.

        Without Redis there is nothing to read, which counts as up to date: the
        converger then asks PostgreSQL, the only source left.
        """
        if self.signals is None:
            return True
        try:
            levels = await asyncio.wait_for(
                self.signals.read_levels(self.env, self.target, self.region),
                timeout=self.read_timeout,
            )
            self.converger.tracker.merge_levels(levels)
            self.staleness.confirm()
            self.connected = True
        except (redis_errors.RedisError, OSError, TimeoutError) as exc:
            log_event(
                logger,
                logging.WARNING,
                "redis_unavailable",
                error=str(exc) or type(exc).__name__,
                phase="startup",
                action="serving without hot-swap; retrying with back-off",
            )
        return self.connected

    async def listen(self) -> None:
        """Subscribe and dispatch messages until stopped, reconnecting whenever Redis fails."""
        assert self.signals is not None
        attempt = 0
        lost = False
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = await self.signals.subscribe()
                if lost:
                    self.metrics.redis_reconnects.inc()
                    log_event(logger, logging.INFO, "redis_reconnected", attempts=attempt)
                self.connected = True
                attempt = 0
                # Subscribed first, then read the level: nothing published in between is lost.
                await self.resync("reconnect" if lost else "startup")
                async for message in self.signals.messages(pubsub, idle_seconds=1.0):
                    if self._stopping.is_set():
                        return
                    if message is not None:
                        await self._on_message(message)
            except (redis_errors.RedisError, OSError) as exc:
                if not lost or self.connected:
                    log_event(
                        logger,
                        logging.WARNING,
                        "redis_disconnected",
                        error=str(exc) or type(exc).__name__,
                        action="evaluating with the active snapshot; reconnecting with back-off",
                    )
                self.connected = False
                lost = True
                delay = backoff_delay(attempt, cap=self.backoff_max)
                attempt += 1
                await asyncio.sleep(delay)
            except Exception:  # a bug must not end hot-swapping for good; logged, retried
                logger.exception("the Redis listener failed unexpectedly; restarting it")
                await asyncio.sleep(backoff_delay(attempt, cap=self.backoff_max))
                attempt += 1
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis_errors.RedisError, OSError):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _on_message(self, message: ActivateMessage | DesiredMessage | FactsMessage) -> None:
        if isinstance(message, FactsMessage):
            if self.facts is not None and message.level.env == self.env:
                await self.facts.follow(message.level.version, "redis")
            return
        if isinstance(message, ActivateMessage):
            await self.converger.activate_version(message.version, source="redis")
            return
        state = message.state
        if state.env != self.env or (
            state.is_rollout and (state.target, state.region) != (self.target, self.region)
        ):
            return  # another environment's or rollout's level
        self.staleness.confirm()
        tracker = self.converger.tracker
        if tracker.merge(state):
            await self.converger.converge("redis", fresh=True)
        else:
            log_event(
                logger,
                logging.INFO,
                "desired_state_ignored",
                key=message.key,
                epoch=state.epoch,
                held_epoch=tracker.epoch,
                reason="not newer than the state already applied",
            )

    async def resync(self, source: Source) -> None:
        """Read the levels (when Redis is there) and converge on them."""
        fresh = self.signals is None
        if self.signals is not None:
            try:
                levels = await self.signals.read_levels(self.env, self.target, self.region)
                fresh = True
                self.converger.tracker.merge_levels(levels)
                self.staleness.confirm()
                await self._raise_floor()
            except (redis_errors.RedisError, OSError) as exc:
                log_event(
                    logger,
                    logging.WARNING,
                    "resync_failed",
                    error=str(exc) or type(exc).__name__,
                    source=source,
                )
        await self.converger.converge(source, fresh=fresh)
        await self.sync_facts(source)

    async def sync_facts(self, source: Source) -> None:
        """Follow the facts level (missing, or no Redis: PostgreSQL's version)."""
        if self.facts is None:
            return
        version: int | None = None
        if self.signals is not None:
            try:
                level = await asyncio.wait_for(
                    self.signals.read_facts_level(self.env), timeout=self.read_timeout
                )
                version = None if level is None else level.version
            except (redis_errors.RedisError, OSError, TimeoutError) as exc:
                log_event(
                    logger,
                    logging.WARNING,
                    "facts_level_unreadable",
                    error=str(exc) or type(exc).__name__,
                    source=source,
                    action="asking PostgreSQL for the facts version",
                )
        await self.facts.follow(version, source)

    async def _raise_floor(self) -> None:
        applied_epoch = self.converger.activator.applied.epoch
        if applied_epoch <= 0 or not self.may_raise_floor or self.signals is None:
            return
        try:
            await self.signals.raise_epoch_floor(applied_epoch)
        except redis_errors.NoPermissionError as exc:
            self.may_raise_floor = False
            log_event(
                logger,
                logging.INFO,
                "epoch_floor_not_permitted",
                error=str(exc),
                action="not raising pkg:epoch again (the operator's epochs come from PostgreSQL)",
            )

    async def resync_forever(self) -> None:
        """Resync every ``resync_interval`` seconds until stopped.

        While the last convergence failed for a reason that may pass (PostgreSQL away
        when a snapshot had to be loaded), resync sooner: after a jittered back-off of
        at most :data:`RETRY_CAP_SECONDS`. Waiting for the next periodic resync kept a
        rollout step waiting up to a whole interval (30 s by default) after PostgreSQL
        had come back (chaos scenario partition/sidecar-postgres-only/new-snapshot).
        """
        failures = 0
        due = time.monotonic() + self.resync_interval
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=min(_TICK_SECONDS, self.resync_interval)
                )
            if self._stopping.is_set():
                return
            now = time.monotonic()
            if self.converger.retry_pending and failures == 0:
                failures = 1  # failed on a message: retry soon, not at the next interval
                due = min(due, now + self._retry_delay(failures))
            if now < due:
                continue
            try:
                await self.resync("resync")
            except Exception:  # the loop must outlive any single failure
                logger.exception("resync failed unexpectedly; retrying at the next interval")
            if self.converger.retry_pending:
                failures += 1
                due = time.monotonic() + self._retry_delay(failures)
            else:
                failures = 0
                due = time.monotonic() + self.resync_interval

    def _retry_delay(self, failures: int) -> float:
        return backoff_delay(failures, base=0.5, cap=min(RETRY_CAP_SECONDS, self.resync_interval))
