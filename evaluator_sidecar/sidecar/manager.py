"""``PKGManager``: which snapshot a sidecar evaluates with, and swapping it safely at run time.

The manager keeps the active evaluator and up to ``MAX_EVALUATOR_CACHE_SIZE``
recent ones (least recently *activated* evicted first) for instant rollback
and A/B evaluation. It learns what to run from Redis (the levels and the edge
of :mod:`evaluator_sidecar.signals`), falls back to PostgreSQL's active
snapshot when no level names one, and to its disk cache of the last good
snapshot when PostgreSQL is down.

Swapping never makes evaluation wait: the next evaluator is fetched, compiled
and self-tested (its fixtures) off the hot path, in a worker thread, and only
then put in place by one pointer assignment under a ``threading.Lock``.
``get_active_evaluator()`` holds that lock for a few hundred nanoseconds.

Failure modes (the seed's 1 to 4), all visible in ``get_health_status()``:

1. PostgreSQL down at start: the last good snapshot from the disk cache is
   served; with none, the sidecar runs without policy and reports unhealthy.
2. Redis down: evaluation goes on; the listener reconnects with exponential
   back-off and full jitter; no hot-swap until it is back, and then the level
   is read at once.
3. A snapshot that fails to load or fails its fixtures: the previous
   evaluator stays active; the failure is logged, counted and reported.
4. A WASM runtime that is unavailable: the engine's own fallback, reported as
   degraded.

All mutable state is owned by the event loop that ran ``start()``, except the
active pointer and the evaluator cache, which the swap lock guards for readers
on any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import RedisError

from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache
from evaluator_sidecar.sidecar.desired import NO_APPLIED, Applied, DesiredTracker, as_cohort
from evaluator_sidecar.sidecar.evaluators import (
    MAX_EVALUATOR_CACHE_SIZE,
    EvaluatorCache,
    EvaluatorSlot,
)
from evaluator_sidecar.sidecar.heartbeat import HeartbeatReporter
from evaluator_sidecar.sidecar.logs import log_event
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.sidecar.snapshots import (
    ActivationError,
    SnapshotLoader,
    SnapshotSource,
    build_evaluator,
    check_snapshot,
    checksums_match,
)
from evaluator_sidecar.signals import (
    CHANNEL,
    MAX_RECONNECT_BACKOFF,
    ActivateMessage,
    Cohort,
    DesiredMessage,
    RedisSignals,
    Resolution,
    SnapshotRef,
    backoff_delay,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "MAX_EVALUATOR_CACHE_SIZE",
    "MAX_RECONNECT_BACKOFF",
    "PKG_REDIS_CHANNEL",
    "ActivationError",
    "DesiredTracker",
    "EvaluatorCache",
    "PKGManager",
    "SnapshotSource",
    "checksums_match",
    "get_global_pkg_manager",
    "initialize_global_pkg_manager",
    "set_global_pkg_manager",
]

logger = logging.getLogger(__name__)

PKG_REDIS_CHANNEL = CHANNEL


# --------------------------------------------------------------------------- the manager


Source = Literal["startup", "redis", "resync", "reconnect", "manual", "disk_cache", "api"]


class PKGManager:
    """Loads, hot-swaps and serves evaluators for one sidecar (see the module's description)."""

    def __init__(
        self,
        pkg_client: SnapshotSource | None,
        redis_client: Redis | None,
        *,
        env: str = "prod",
        target: str = "default",
        region: str = "global",
        device_id: str | None = None,
        device_type: str = "sidecar",
        cache_dir: Path | None = None,
        resync_interval: float = 30.0,
        heartbeat_interval: float = 5.0,
        heartbeat_ttl: int | None = None,
        max_snapshot_age: float = 0.0,
        db_timeout: float = 5.0,
        self_test: bool = True,
        reconnect_backoff_max: float = MAX_RECONNECT_BACKOFF,
        cache_limit: int = MAX_EVALUATOR_CACHE_SIZE,
        metrics: SidecarMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = pkg_client
        self.redis = redis_client
        self.signals = RedisSignals(redis_client) if redis_client is not None else None
        self.env = env
        self.target = target
        self.region = region
        self.device_id = device_id or socket.gethostname()
        self.device_type = device_type
        self.resync_interval = resync_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_ttl = heartbeat_ttl or max(1, round(3 * heartbeat_interval))
        self.max_snapshot_age = max_snapshot_age
        self.db_timeout = db_timeout
        self.self_test = self_test
        self.reconnect_backoff_max = reconnect_backoff_max
        self.metrics = metrics or SidecarMetrics()
        self.disk_cache = SnapshotDiskCache(cache_dir) if cache_dir is not None else None
        self._clock = clock
        self._loader = SnapshotLoader(pkg_client, self.disk_cache, timeout=db_timeout)

        self._evaluators = EvaluatorSlot(cache_limit)
        self._tracker = DesiredTracker(self.device_id)
        self._applied = NO_APPLIED
        self._apply_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._started = False
        #: The clients the manager built itself (and so closes on stop): (postgres, redis).
        self._owned_clients = (False, False)

        self._redis_connected = False
        self._last_error: str | None = None
        self._last_activation: float | None = None
        self._activation_failed = False  # the latest attempt failed (degraded until one succeeds)
        self._activation_failures = 0
        self._confirmed_at: float | None = None  # when the active snapshot was last known desired
        self._serving_from_disk = False
        self._permanent_failures: dict[tuple[str, str | None], str] = {}

        self.metrics.bind(
            cached_versions=lambda: float(len(self._evaluators)),
            degraded=lambda: 1.0 if self.degraded else 0.0,
            desired_epoch=lambda: float(self._tracker.epoch),
        )

    # ---- public API (any thread)

    def get_active_evaluator(self) -> PKGEvaluator | None:
        """The evaluator to use now (None when no policy is loaded)."""
        return self._evaluators.active()

    def get_evaluator_by_version(self, version: str) -> PKGEvaluator | None:
        """A cached evaluator of ``version`` (active or kept for rollback), else None."""
        return self._evaluators.get(version)

    @property
    def redis_connected(self) -> bool:
        return self._redis_connected

    @property
    def degraded(self) -> bool:
        active = self.get_active_evaluator()
        return (
            active is None
            or active.degraded
            or self._activation_failed
            or self._serving_from_disk
            or (self.signals is not None and not self._redis_connected)
            or self._loader.db_connected is False
        )

    def snapshot_age(self) -> float | None:
        """Seconds since the active snapshot was last confirmed as the desired one."""
        if self._confirmed_at is None:
            return None
        return max(0.0, self._clock() - self._confirmed_at)

    def is_ready(self) -> bool:
        """An active evaluator, confirmed within ``max_snapshot_age`` (when that is set)."""
        if self.get_active_evaluator() is None:
            return False
        if self.max_snapshot_age > 0:
            age = self.snapshot_age()
            return age is not None and age <= self.max_snapshot_age
        return True

    def get_metadata(self) -> dict[str, Any]:
        """The seed's metadata of the active snapshot and the manager, plus the rollout state."""
        active, cached = self._evaluators.view()
        health = self.get_health_status()
        return {
            "version": active.version if active else None,
            "loaded_at": active.loaded_at if active else None,
            "engine": active.engine_type if active else None,
            "loaded": active is not None,
            "error": self._last_error if self._activation_failed else None,
            "last_activation": self._last_activation,
            "cached_versions": cached,
            "cache_size": len(cached),
            "cache_limit": self._evaluators.limit,
            "healthy": health["healthy"],
            "degraded_mode": health["degraded_mode"],
            "last_error": self._last_error,
            "snapshot_id": active.snapshot_id if active else None,
            "checksum": active.checksum if active else None,
            "env": self.env,
            "target": self.target,
            "region": self.region,
            "device_id": self.device_id,
            "desired_epoch": self._tracker.epoch,
            "applied_epoch": self._applied.epoch,
            "cohort": self._applied.cohort,
            "activation_source": self._applied.source,
        }

    def get_health_status(self) -> dict[str, Any]:
        """The seed's health indicators plus connectivity, epochs, cohort and snapshot age."""
        active = self.get_active_evaluator()
        age = self.snapshot_age()
        return {
            "healthy": active is not None and not self._stopping.is_set(),
            "ready": self.is_ready(),
            "degraded_mode": self.degraded,
            "last_error": self._last_error,
            "last_activation": self._last_activation,
            "active_version": active.version if active else None,
            "cached_versions_count": len(self._evaluators),
            "redis_connected": self._redis_connected,
            "db_connected": self._loader.db_connected,
            "desired_epoch": self._tracker.epoch,
            "applied_epoch": self._applied.epoch,
            "cohort": self._applied.cohort,
            "manual_override": self._tracker.manual,
            "snapshot_age_seconds": None if age is None else round(age, 3),
            "max_snapshot_age_seconds": self.max_snapshot_age or None,
            "serving_from_disk_cache": self._serving_from_disk,
            "activation_failures": self._activation_failures,
            "engine_degraded": bool(active and active.degraded),
        }

    @property
    def activation_failures(self) -> int:
        return self._activation_failures

    @property
    def applied(self) -> tuple[int, Cohort]:
        return self._applied.epoch, self._applied.cohort

    # ---- lifecycle

    async def __aenter__(self) -> PKGManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load the desired snapshot, then listen, resync and beat in the background."""
        if self._started:
            return
        self._started = True
        self._stopping.clear()
        if self.signals is not None:
            try:
                levels = await asyncio.wait_for(
                    self.signals.read_levels(self.env, self.target, self.region),
                    timeout=self.db_timeout,
                )
                self._tracker.merge_levels(levels)
                self._redis_connected = True
            except (RedisError, OSError, TimeoutError) as exc:
                log_event(
                    logger,
                    logging.WARNING,
                    "redis_unavailable",
                    error=str(exc) or type(exc).__name__,
                    phase="startup",
                    action="serving without hot-swap; retrying with back-off",
                )
        await self._converge("startup", fresh=self._redis_connected or self.signals is None)
        if self.get_active_evaluator() is None:
            await self._activate_from_disk()
        if self.get_active_evaluator() is None:
            log_event(
                logger,
                logging.ERROR,
                "no_policy",
                env=self.env,
                error=self._last_error,
                action="answering 503 until a snapshot can be loaded",
            )
        self._spawn(self._resync_loop(), "resync")
        if self.signals is not None:
            self._spawn(self._listen_loop(), "listener")
            reporter = HeartbeatReporter(self, self.signals)
            self._spawn(reporter.run(self._stopping), "heartbeat")

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"pkg-manager-{name}")
        self._tasks.append(task)

    async def stop(self) -> None:
        """Stop the background tasks (the active evaluator stays usable)."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._started = False
        self._redis_connected = False
        await self._close_owned_clients()

    async def _close_owned_clients(self) -> None:
        own_client, own_redis = self._owned_clients
        if own_redis and self.redis is not None:
            try:
                await self.redis.aclose()
            except (RedisError, OSError) as exc:
                logger.warning("closing the Redis client failed: %s", exc)
        close = getattr(self.client, "close", None) if own_client else None
        if close is not None:
            try:
                await close()
            except Exception:  # a failing close must not hide the stop; logged
                logger.exception("closing the PostgreSQL client failed")

    # ---- Redis: the edge

    async def _listen_loop(self) -> None:
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
                self._redis_connected = True
                attempt = 0
                # Subscribed first, then read the level: nothing published in between is lost.
                await self._resync("reconnect" if lost else "startup")
                async for message in self.signals.messages(pubsub, idle_seconds=1.0):
                    if self._stopping.is_set():
                        return
                    if message is not None:
                        await self._on_message(message)
            except (RedisError, OSError) as exc:
                if not lost or self._redis_connected:
                    log_event(
                        logger,
                        logging.WARNING,
                        "redis_disconnected",
                        error=str(exc) or type(exc).__name__,
                        action="evaluating with the active snapshot; reconnecting with back-off",
                    )
                self._redis_connected = False
                lost = True
                delay = backoff_delay(attempt, cap=self.reconnect_backoff_max)
                attempt += 1
                await asyncio.sleep(delay)
            except Exception:  # a bug must not end hot-swapping for good; logged, retried
                logger.exception("the Redis listener failed unexpectedly; restarting it")
                await asyncio.sleep(backoff_delay(attempt, cap=self.reconnect_backoff_max))
                attempt += 1
            finally:
                if pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _on_message(self, message: ActivateMessage | DesiredMessage) -> None:
        if isinstance(message, ActivateMessage):
            await self.activate_version(message.version, source="redis")
            return
        state = message.state
        if state.env != self.env or (
            state.is_rollout and (state.target, state.region) != (self.target, self.region)
        ):
            return  # another environment's or rollout's level
        if self._tracker.merge(state):
            await self._converge("redis", fresh=True)
        else:
            log_event(
                logger,
                logging.INFO,
                "desired_state_ignored",
                key=message.key,
                epoch=state.epoch,
                held_epoch=self._tracker.epoch,
                reason="not newer than the state already applied",
            )

    async def _resync(self, source: Source) -> None:
        """Read the levels (when Redis is there) and converge on them."""
        fresh = self.signals is None
        if self.signals is not None:
            try:
                levels = await self.signals.read_levels(self.env, self.target, self.region)
                fresh = True
                self._tracker.merge_levels(levels)
                if self._applied.epoch > 0:
                    await self.signals.raise_epoch_floor(self._applied.epoch)
            except (RedisError, OSError) as exc:
                log_event(
                    logger,
                    logging.WARNING,
                    "resync_failed",
                    error=str(exc) or type(exc).__name__,
                    source=source,
                )
        await self._converge(source, fresh=fresh)

    async def _resync_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.resync_interval)
            if self._stopping.is_set():
                return
            try:
                await self._resync("resync")
            except Exception:  # the loop must outlive any single failure
                logger.exception("resync failed unexpectedly; retrying at the next interval")

    # ---- converging on the desired state

    async def activate_version(self, version: str, *, source: Source = "manual") -> bool:
        """Activate ``version`` now as a manual override (the seed's ``activate:<version>``).

        Ignored with a log line when the snapshot belongs to another environment.
        Returns True when ``version`` is active afterwards.
        """
        async with self._apply_lock:
            cached = self.get_evaluator_by_version(version)
            snapshot = cached.snapshot if cached is not None else None
            if snapshot is None:
                try:
                    snapshot = await self._loader.by_version(version)
                except ActivationError as exc:
                    self._record_failure(exc, source, 0.0)
                    return False
            if snapshot.env != self.env:
                log_event(
                    logger,
                    logging.INFO,
                    "activation_ignored",
                    version=version,
                    snapshot_env=snapshot.env,
                    env=self.env,
                    source=source,
                    reason="the snapshot belongs to another environment",
                )
                return False
            self._tracker.set_manual(version)
            return await self._converge_locked(source, fresh=True, preloaded=snapshot)

    async def activate_snapshot(self, snapshot: PKGSnapshotData, *, source: Source = "api") -> None:
        """Build, self-test and activate ``snapshot`` as a manual override (no database read).

        For embedding and tools (a static snapshot from a file, benchmarks, tests);
        raises :class:`ActivationError` and keeps the current evaluator on failure.
        """
        async with self._apply_lock:
            ref = SnapshotRef(snapshot.version, snapshot.id or None, snapshot.checksum)
            check_snapshot(ref, snapshot, env=self.env)
            self._tracker.set_manual(snapshot.version)
            await self._activate(ref, self._tracker.resolution(), source, snapshot)

    async def _converge(self, source: Source, *, fresh: bool) -> bool:
        async with self._apply_lock:
            return await self._converge_locked(source, fresh=fresh)

    async def _converge_locked(
        self, source: Source, *, fresh: bool, preloaded: PKGSnapshotData | None = None
    ) -> bool:
        target = self._tracker.resolution()
        ref = target.ref
        if ref is None:
            # No level names a snapshot: PostgreSQL's active snapshot for the environment.
            try:
                snapshot = await self._loader.active()
            except ActivationError as exc:
                if self.get_active_evaluator() is None:
                    self._last_error = str(exc)
                log_event(logger, logging.WARNING, "active_snapshot_unavailable", error=str(exc))
                return False
            if snapshot is None:
                log_event(
                    logger,
                    logging.WARNING,
                    "no_active_snapshot",
                    env=self.env,
                    action="no level and no active snapshot in PostgreSQL; promote one",
                )
                return self.get_active_evaluator() is not None
            ref = SnapshotRef(snapshot.version, snapshot.id, snapshot.checksum)
            preloaded = snapshot
            fresh = True
        active = self.get_active_evaluator()
        if (
            active is not None
            and active.version == ref.version
            and checksums_match(ref.checksum, active.checksum)
        ):
            self._applied = Applied(target.epoch, target.cohort, self._applied.source)
            if fresh:
                await self._confirm(active)
            return True
        key = (ref.version, ref.checksum)
        if key in self._permanent_failures and source in ("resync", "reconnect"):
            return False  # already reported; a new desired state or message retries it
        try:
            await self._activate(ref, target, source, preloaded)
        except ActivationError as exc:
            if not exc.transient:
                self._permanent_failures[key] = str(exc)
            return False
        self._permanent_failures.pop(key, None)
        return True

    async def _confirm(self, active: PKGEvaluator) -> None:
        self._confirmed_at = self._clock()
        if self._serving_from_disk and self._loader.db_connected:
            self._serving_from_disk = False
        if self.disk_cache is not None:
            try:
                await asyncio.to_thread(
                    self.disk_cache.mark_active,
                    active.version,
                    epoch=self._applied.epoch,
                    cohort=self._applied.cohort,
                    at=self._confirmed_at,
                )
            except OSError as exc:
                logger.warning("could not update the snapshot cache's pointer: %s", exc)

    async def _activate(
        self,
        ref: SnapshotRef,
        target: Resolution,
        source: Source,
        preloaded: PKGSnapshotData | None = None,
    ) -> None:
        started = time.perf_counter()
        log_event(
            logger,
            logging.INFO,
            "snapshot_load_start",
            version=ref.version,
            source=source,
            epoch=target.epoch,
            cohort=target.cohort,
        )
        try:
            cached = self.get_evaluator_by_version(ref.version)
            if cached is not None and checksums_match(ref.checksum, cached.checksum):
                evaluator, from_cache, snapshot = cached, True, cached.snapshot
            else:
                snapshot = preloaded or await self._loader.by_version(ref.version)
                check_snapshot(ref, snapshot, env=self.env)
                evaluator = await asyncio.to_thread(
                    build_evaluator, snapshot, self_test=self.self_test, metrics=self.metrics
                )
                self.metrics.load_duration.observe(time.perf_counter() - started)
                from_cache = False
        except ActivationError as exc:
            self._record_failure(exc, source, time.perf_counter() - started)
            raise
        now = self._clock()
        previous, evicted = self._evaluators.swap(evaluator, now)
        duration_ms = (time.perf_counter() - started) * 1000
        self._applied = Applied(target.epoch, target.cohort, source)
        self._last_activation = now
        self._activation_failed = False
        self._serving_from_disk = False
        self._last_error = None
        if previous is not evaluator:
            self.metrics.hotswaps.inc()
        self.metrics.set_active_version(evaluator.version)
        log_event(
            logger,
            logging.INFO,
            "snapshot_activated",
            version=evaluator.version,
            previous_version=previous.version if previous else None,
            source=source,
            swap_duration_ms=round(duration_ms, 3),
            from_memory_cache=from_cache,
            epoch=target.epoch,
            cohort=target.cohort,
            evicted=evicted,
            engine=evaluator.engine_type,
        )
        await self._confirm(evaluator)
        if not from_cache and self.disk_cache is not None:
            try:
                await asyncio.to_thread(
                    self.disk_cache.store,
                    snapshot,
                    epoch=target.epoch,
                    cohort=target.cohort,
                    activated_at=now,
                )
            except OSError as exc:
                logger.warning("could not write the snapshot cache for %s: %s", ref.version, exc)

    def _record_failure(self, exc: ActivationError, source: str, seconds: float) -> None:
        kept = self.get_active_evaluator()
        self._activation_failures += 1
        self._activation_failed = True
        self._last_error = str(exc)
        self.metrics.activation_failures.labels(reason=exc.reason).inc()
        log_event(
            logger,
            logging.ERROR,
            "snapshot_activation_failed",
            version=exc.version,
            source=source,
            error=str(exc),
            error_type=exc.reason,
            transient=exc.transient,
            duration_ms=round(seconds * 1000, 3),
            kept_version=kept.version if kept else None,
        )

    async def _activate_from_disk(self) -> None:
        """PostgreSQL (or the named snapshot) is unavailable: serve the last good snapshot."""
        if self.disk_cache is None:
            return
        cached = await asyncio.to_thread(self.disk_cache.load_active)
        if cached is None:
            log_event(logger, logging.WARNING, "disk_cache_empty", dir=str(self.disk_cache.root))
            return
        if cached.snapshot.env != self.env:
            log_event(
                logger,
                logging.WARNING,
                "disk_cache_other_env",
                version=cached.snapshot.version,
                snapshot_env=cached.snapshot.env,
            )
            return
        try:
            evaluator = await asyncio.to_thread(
                build_evaluator, cached.snapshot, self_test=self.self_test, metrics=self.metrics
            )
        except ActivationError as exc:
            self._record_failure(exc, "disk_cache", 0.0)
            return
        now = self._clock()
        self._evaluators.swap(evaluator, now)
        self._serving_from_disk = True
        self._confirmed_at = cached.activated_at
        self._last_activation = now
        self._applied = Applied(cached.epoch, as_cohort(cached.cohort), "disk_cache")
        self.metrics.hotswaps.inc()
        self.metrics.set_active_version(evaluator.version)
        log_event(
            logger,
            logging.WARNING,
            "snapshot_activated",
            version=evaluator.version,
            previous_version=None,
            source="disk_cache",
            swap_duration_ms=0.0,
            confirmed_at=cached.activated_at,
            action="serving the last good snapshot until PostgreSQL answers",
        )


# --------------------------------------------------------------------------- global


_global_manager: PKGManager | None = None
_global_lock = threading.Lock()


def get_global_pkg_manager() -> PKGManager | None:
    """The process-wide manager, once :func:`initialize_global_pkg_manager` has run."""
    return _global_manager


def set_global_pkg_manager(manager: PKGManager | None) -> None:
    """Install (or clear) the process-wide manager; the sidecar's entry point uses it."""
    global _global_manager  # noqa: PLW0603 - the seed's process-wide singleton
    with _global_lock:
        _global_manager = manager


async def initialize_global_pkg_manager(
    pkg_client: SnapshotSource | None = None,
    redis_client: Redis | None = None,
    **options: Any,
) -> PKGManager:
    """Create, start and install the process-wide manager (once; later calls return it).

    Without clients, they are built from the ``PKG_`` settings
    (``PKG_DATABASE_URL``, ``PKG_REDIS_URL``, ...); ``options`` are passed to
    :class:`PKGManager` and override the settings.
    """
    existing = get_global_pkg_manager()
    if existing is not None:
        return existing
    owned = (pkg_client is None, redis_client is None)
    if any(owned):
        # Imported here: a manager built from its clients needs neither the settings nor asyncpg.
        from evaluator_sidecar.settings import load_settings  # noqa: PLC0415
        from evaluator_sidecar.sidecar.settings import SidecarSettings  # noqa: PLC0415

        settings = load_settings(SidecarSettings)
        if pkg_client is None:
            from evaluator_sidecar.store.client import PKGClient  # noqa: PLC0415

            pkg_client = PKGClient(settings.database_url, env=settings.env, min_size=1, max_size=2)
        if redis_client is None:
            from redis.asyncio import Redis as AsyncRedis  # noqa: PLC0415

            redis_client = AsyncRedis.from_url(settings.redis_url, socket_connect_timeout=2)
        options = {**manager_options(settings), **options}
    manager = PKGManager(pkg_client, redis_client, **options)
    manager._owned_clients = owned
    await manager.start()
    set_global_pkg_manager(manager)
    return manager


def manager_options(settings: Any) -> dict[str, Any]:
    """:class:`PKGManager` keyword arguments from a ``SidecarSettings``."""
    return {
        "env": settings.env,
        "target": settings.target,
        "region": settings.region,
        "device_id": settings.device_id,
        "device_type": settings.device_type,
        "cache_dir": settings.cache_dir,
        "resync_interval": settings.resync_interval_seconds,
        "heartbeat_interval": settings.heartbeat_interval_seconds,
        "heartbeat_ttl": settings.heartbeat_ttl,
        "max_snapshot_age": settings.max_snapshot_age_seconds,
        "db_timeout": settings.db_timeout_seconds,
        "self_test": settings.self_test,
        "reconnect_backoff_max": settings.redis_backoff_max_seconds,
    }
