"""Heartbeats from a sidecar to Redis (never to PostgreSQL).

Every ``heartbeat_interval`` seconds, and at once (at most every
:data:`MIN_GAP_SECONDS`) after the device's applied state changes (an
activation, a new epoch or cohort, a failed activation), the reporter writes,
in one pipeline, the per-device key ``pkg:hb:{env}:{device_id}`` with a TTL and an entry in the
stream ``pkg:heartbeats`` (see :mod:`evaluator_sidecar.signals`). Counts
(evaluations, errors, activation failures) and the p99 latency cover the time
since the previous beat that reached Redis: a beat that fails leaves them to
accumulate into the next one, so the operator's totals stay right across a
Redis outage.

Every beat also carries the process's cumulative :class:`~evaluator_sidecar.signals.Totals`
(requests, errors, activation failures, shadow samples and diffs since the
process started) with the process's id and start time. These never reset
between beats, so a burst of errors between two beats (or in a beat that was
lost) is still in the next total, and the operator judges a rollout step on
everything since the step began.

The early beat after a change is what lets a rollout step finish in well under
one heartbeat interval: the operator counts coverage from heartbeats, and a
device that swapped just after its regular beat would otherwise stay uncounted
for a whole interval (BENCHMARKS.md, "Apply to 100 %").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from evaluator_sidecar.sidecar.metrics import LatencyHistogram, SidecarMetrics
from evaluator_sidecar.signals import Cohort, Heartbeat, RedisSignals, Totals
from evaluator_sidecar.signals import errors as redis_errors

if TYPE_CHECKING:
    from evaluator_sidecar.policy.evaluator import PKGEvaluator
    from evaluator_sidecar.sidecar.shadow import ShadowRunner

__all__ = ["MIN_GAP_SECONDS", "HeartbeatReporter", "HeartbeatSource"]

logger = logging.getLogger(__name__)

#: The shortest time between two beats, however often the device swaps (a fleet
#: swapping every 100 ms must not flood the stream the operator folds).
MIN_GAP_SECONDS = 0.25


class HeartbeatSource(Protocol):
    """What a :class:`HeartbeatReporter` reads from the manager it reports on.

    ``PKGManager`` is one; naming only these members keeps this module free of the
    manager's (which imports this one).
    """

    @property
    def device_id(self) -> str: ...
    @property
    def device_type(self) -> str: ...
    @property
    def env(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def heartbeat_ttl(self) -> int: ...
    @property
    def metrics(self) -> SidecarMetrics: ...
    @property
    def activation_failures(self) -> int: ...
    @property
    def applied(self) -> tuple[int, Cohort]: ...
    def get_active_evaluator(self) -> PKGEvaluator | None: ...
    def get_health_status(self) -> dict[str, Any]: ...
    def shadow_totals(self) -> tuple[int, int]: ...
    @property
    def shadow(self) -> ShadowRunner: ...
    @property
    def prepared(self) -> str | None: ...
    @property
    def process_id(self) -> str: ...
    @property
    def process_started(self) -> float: ...


@dataclass
class _Baseline:
    latency: LatencyHistogram
    errors: int
    activation_failures: int


class HeartbeatReporter:
    """Builds and sends one manager's heartbeats."""

    def __init__(
        self, manager: HeartbeatSource, signals: RedisSignals, *, wake: asyncio.Event | None = None
    ) -> None:
        self.manager = manager
        self.signals = signals
        #: Set when the applied state changed: beat now (after the minimum gap).
        self.wake = wake
        self._baseline = self._current()
        self._failing = False
        self._examples_in_beat = 0

    def totals(self) -> Totals:
        """The cumulative counters since this process (manager) started."""
        stats = self.manager.metrics.stats
        errors = stats.error_count()
        samples, diffs = self.manager.shadow_totals()
        return Totals(
            requests=stats.merged().count + errors,
            errors=errors,
            activation_failures=self.manager.activation_failures,
            shadow_samples=samples,
            shadow_diffs=diffs,
        )

    def _current(self) -> _Baseline:
        stats = self.manager.metrics.stats
        return _Baseline(stats.merged(), stats.error_count(), self.manager.activation_failures)

    def build(self) -> tuple[Heartbeat, _Baseline]:
        """The heartbeat to send now, and the baseline to keep once it is sent."""
        m = self.manager
        now = self._current()
        delta = now.latency.delta(self._baseline.latency)
        p99 = delta.quantile(0.99)
        active = m.get_active_evaluator()
        health = m.get_health_status()
        epoch, cohort = m.applied
        shadow, self._examples_in_beat = m.shadow.report()
        beat = Heartbeat(
            device_id=m.device_id,
            device_type=m.device_type,
            env=m.env,
            target=m.target,
            region=m.region,
            version=active.version if active else None,
            snapshot_id=active.snapshot_id if active else None,
            checksum=active.checksum if active else None,
            epoch=epoch,
            desired_epoch=int(health["desired_epoch"]),
            facts_version=int(health.get("facts_version") or 0),
            cohort=cohort if active else "none",
            evaluations=delta.count,
            errors=now.errors - self._baseline.errors,
            p99_ms=None if p99 is None else round(p99 * 1000, 4),
            activation_failures=now.activation_failures - self._baseline.activation_failures,
            last_error=health["last_error"],
            healthy=bool(health["healthy"]),
            degraded=bool(health["degraded_mode"]),
            ts=time.time(),
            process_id=m.process_id,
            process_started=m.process_started,
            totals=self.totals(),
            stale=bool(health.get("stale")),
            staleness_seconds=health.get("staleness_seconds"),
            shadow=shadow,
            prepared=m.prepared,
            last_activation=health.get("last_activation"),
        )
        return beat, now

    async def beat_once(self) -> bool:
        """Send one heartbeat; True when Redis took it."""
        beat, baseline = self.build()
        try:
            await self.signals.write_heartbeat(beat, ttl_seconds=self.manager.heartbeat_ttl)
        except (redis_errors.RedisError, OSError) as exc:
            if not self._failing:
                logger.warning(
                    "heartbeat not delivered (%s); counts accumulate into the next one", exc
                )
            self._failing = True
            return False
        self._failing = False
        self._baseline = baseline
        self.manager.shadow.delivered(self._examples_in_beat)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat every ``heartbeat_interval`` until ``stopping`` is set."""
        while not stopping.is_set():
            try:
                await self.beat_once()
            except Exception:  # the loop must outlive any single failure
                logger.exception("building a heartbeat failed; trying again next interval")
            await self._pause(stopping)

    async def _pause(self, stopping: asyncio.Event) -> None:
        """Wait one interval, cut short by ``wake`` once :data:`MIN_GAP_SECONDS` have passed."""
        interval = self.manager.heartbeat_interval
        deadline = time.monotonic() + interval
        if self.wake is not None:
            await _wait_any(stopping, seconds=min(MIN_GAP_SECONDS, interval))
            if stopping.is_set():
                return
            await _wait_any(stopping, self.wake, seconds=deadline - time.monotonic())
            # Cleared before the beat is built: a change from here on is in this beat
            # or sets it again for the next one.
            self.wake.clear()
            return
        await _wait_any(stopping, seconds=interval)


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of ``events`` is set, or after ``seconds``."""
    if seconds <= 0 or any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
