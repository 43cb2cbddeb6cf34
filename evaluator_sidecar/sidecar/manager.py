"""``PKGManager``: which snapshot a sidecar evaluates with, and swapping it safely at run time.

The manager is a facade over the parts that do the work, each in its own module:

- :mod:`~evaluator_sidecar.sidecar.evaluators`: the active evaluator and up to
  ``MAX_EVALUATOR_CACHE_SIZE`` recent ones (least recently *activated* evicted
  first) for instant rollback and A/B evaluation, swapped under one lock;
- :mod:`~evaluator_sidecar.sidecar.desired`: which version this device should
  run, from the levels and messages of :mod:`evaluator_sidecar.signals`;
- :mod:`~evaluator_sidecar.sidecar.snapshots` and
  :mod:`~evaluator_sidecar.sidecar.activation`: fetching (PostgreSQL, else the
  disk cache of the last good snapshot), verifying, compiling, self-testing and
  swapping, and the record of failures;
- :mod:`~evaluator_sidecar.sidecar.converge`: one activation at a time towards
  the desired state (PostgreSQL's active snapshot when no level names one);
- :mod:`~evaluator_sidecar.sidecar.listener`: Redis, reconnects and resyncs.

Swapping never makes evaluation wait: the next evaluator is fetched, compiled
and self-tested (its fixtures) off the hot path, in a worker thread, and only
then put in place by one pointer assignment under a ``threading.Lock``.
``get_active_evaluator()`` holds that lock for a few hundred nanoseconds.

Failure modes (README.md, "Failure modes"), all visible in ``get_health_status()``:

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
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from evaluator_sidecar.policy.environment_facts import EnvironmentFacts
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.activation import Activator, Source
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache
from evaluator_sidecar.sidecar.converge import Converger
from evaluator_sidecar.sidecar.desired import DesiredTracker
from evaluator_sidecar.sidecar.evaluators import (
    MAX_EVALUATOR_CACHE_SIZE,
    EvaluatorCache,
    EvaluatorSlot,
)
from evaluator_sidecar.sidecar.facts import FactsKeeper
from evaluator_sidecar.sidecar.heartbeat import HeartbeatReporter
from evaluator_sidecar.sidecar.listener import RedisListener
from evaluator_sidecar.sidecar.logs import log_event
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.sidecar.shadow import ShadowRunner
from evaluator_sidecar.sidecar.snapshots import (
    ActivationError,
    SnapshotLoader,
    SnapshotSource,
    checksums_match,
)
from evaluator_sidecar.sidecar.staleness import Staleness, StalenessMode
from evaluator_sidecar.sidecar.trust import KeyFolder, SignatureCheck
from evaluator_sidecar.signals import (
    CHANNEL,
    MAX_RECONNECT_BACKOFF,
    Cohort,
    DesiredState,
    RedisSignals,
    in_canary,
)
from evaluator_sidecar.signals import errors as redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

# The helpers moved to their own modules stay importable from here, where callers
# have always found them.
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
]

logger = logging.getLogger(__name__)

PKG_REDIS_CHANNEL = CHANNEL


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
        require_signatures: bool = False,
        trusted_keys_dir: Path | None = None,
        max_staleness: float = 0.0,
        staleness_policy: StalenessMode = "serve",
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
        # Identifies this manager's run in heartbeats: its cumulative counters (metrics,
        # activation failures) start at zero with it, so a new id tells of a restart.
        self.process_id = uuid.uuid4().hex
        self.process_started = time.time()
        self.reconnect_backoff_max = reconnect_backoff_max
        self.metrics = metrics or SidecarMetrics()
        self.disk_cache = SnapshotDiskCache(cache_dir) if cache_dir is not None else None
        self._clock = clock

        self._evaluators = EvaluatorSlot(cache_limit)
        self._tracker = DesiredTracker(self.device_id)
        self._loader = SnapshotLoader(pkg_client, self.disk_cache, timeout=db_timeout)
        self._activator = Activator(
            self._evaluators,
            self._loader,
            env=env,
            self_test=self_test,
            metrics=self.metrics,
            disk_cache=self.disk_cache,
            clock=clock,
            signatures=SignatureCheck(
                required=require_signatures,
                keys=KeyFolder(trusted_keys_dir) if trusted_keys_dir is not None else None,
            ),
        )
        self._converger = Converger(self._tracker, self._activator, env=env)
        self._facts = FactsKeeper(pkg_client, env=env, cache_dir=cache_dir, timeout=db_timeout)
        self.shadow = ShadowRunner(self._activator.prepare)
        self.staleness = Staleness(
            max_seconds=max_staleness,
            mode=staleness_policy,
            applies=self.signals is not None,
            clock=clock,
        )
        self._stopping = asyncio.Event()
        self._listener = RedisListener(
            self.signals,
            self._converger,
            env=env,
            target=target,
            region=region,
            metrics=self.metrics,
            read_timeout=db_timeout,
            resync_interval=resync_interval,
            backoff_max=reconnect_backoff_max,
            stopping=self._stopping,
            facts=self._facts,
            staleness=self.staleness,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        #: The clients the manager built itself (and so closes on stop): (postgres, redis).
        self._owned_clients = (False, False)

        self.metrics.bind(
            cached_versions=lambda: float(len(self._evaluators)),
            degraded=lambda: 1.0 if self.degraded else 0.0,
            desired_epoch=lambda: float(self._tracker.epoch),
            staleness=lambda: self.staleness.seconds() or 0.0,
            stale=lambda: 1.0 if self.staleness.stale() else 0.0,
        )

    # ---- public API (any thread)

    def get_active_evaluator(self) -> PKGEvaluator | None:
        """The evaluator to use now (None when no policy is loaded)."""
        return self._evaluators.active()

    def get_environment_facts(self) -> EnvironmentFacts:
        """The environment's fact set evaluations use now (version 0: none loaded)."""
        return self._facts.current

    def get_evaluator_by_version(self, version: str) -> PKGEvaluator | None:
        """A cached evaluator of ``version`` (active or kept for rollback), else None."""
        return self._evaluators.get(version)

    @property
    def redis_connected(self) -> bool:
        return self._listener.connected

    @property
    def degraded(self) -> bool:
        active = self._evaluators.active()
        status = self._activator
        return (
            active is None
            or active.degraded
            or status.failed
            or status.serving_from_disk
            or (self.signals is not None and not self._listener.connected)
            or self._loader.db_connected is False
        )

    def snapshot_age(self) -> float | None:
        """Seconds since the active snapshot was last confirmed as the desired one."""
        confirmed_at = self._activator.confirmed_at
        if confirmed_at is None:
            return None
        return max(0.0, self._clock() - confirmed_at)

    def is_ready(self) -> bool:
        """An active evaluator, confirmed within ``max_snapshot_age`` (when that is set)."""
        if self.get_active_evaluator() is None:
            return False
        if self.max_snapshot_age > 0:
            age = self.snapshot_age()
            return age is not None and age <= self.max_snapshot_age
        return True

    def get_metadata(self) -> dict[str, Any]:
        """``GET /v1/metadata``: the active snapshot and the manager, plus the rollout state.

        README.md, "The sidecar's HTTP API", lists the fields.
        """
        active, cached = self._evaluators.view()
        health = self.get_health_status()
        status = self._activator
        return {
            "version": active.version if active else None,
            "loaded_at": active.loaded_at if active else None,
            "engine": active.engine_type if active else None,
            "loaded": active is not None,
            "error": status.last_error if status.failed else None,
            "last_activation": status.last_activation,
            "cached_versions": cached,
            "cache_size": len(cached),
            "cache_limit": self._evaluators.limit,
            "healthy": health["healthy"],
            "degraded_mode": health["degraded_mode"],
            "last_error": status.last_error,
            "snapshot_id": active.snapshot_id if active else None,
            "checksum": active.checksum if active else None,
            "env": self.env,
            "target": self.target,
            "region": self.region,
            "device_id": self.device_id,
            "desired_epoch": self._tracker.epoch,
            "applied_epoch": status.applied.epoch,
            "cohort": status.applied.cohort,
            "activation_source": status.applied.source,
            **self._facts.status(),
        }

    def get_health_status(self) -> dict[str, Any]:
        """``/healthz`` and ``/readyz``: health, connectivity, epochs, cohort and snapshot age.

        README.md, "The sidecar's HTTP API", lists the fields.
        """
        active = self.get_active_evaluator()
        age = self.snapshot_age()
        status = self._activator
        return {
            "healthy": active is not None and not self._stopping.is_set(),
            "ready": self.is_ready(),
            "degraded_mode": self.degraded,
            "last_error": status.last_error,
            "last_activation": status.last_activation,
            "active_version": active.version if active else None,
            "cached_versions_count": len(self._evaluators),
            "redis_connected": self._listener.connected,
            "db_connected": self._loader.db_connected,
            "desired_epoch": self._tracker.epoch,
            "applied_epoch": status.applied.epoch,
            "cohort": status.applied.cohort,
            "manual_override": self._tracker.manual,
            "snapshot_age_seconds": None if age is None else round(age, 3),
            "max_snapshot_age_seconds": self.max_snapshot_age or None,
            "serving_from_disk_cache": status.serving_from_disk,
            "activation_failures": status.failures,
            "engine_degraded": bool(active and active.degraded),
            **self._facts.status(),
            **self.staleness.status(),
        }

    @property
    def prepared(self) -> str | None:
        """The version held prepared for a two-phase activation (None: nothing held)."""
        held = self._activator.held
        return held.version if held is not None else None

    async def _follow_prepare(self, state: DesiredState | None) -> None:
        """Phase one of a two-phase activation: prepare what this device will switch to."""
        prepare = state.prepare if state is not None else None
        if prepare is None or state is None or not state.deployment:
            self._activator.held = None
            return
        if not in_canary(self.device_id, state.deployment, prepare.canary_percent):
            return
        active = self.get_active_evaluator()
        ref = prepare.snapshot
        if active is not None and active.version == ref.version:
            return
        try:
            await self._activator.hold(ref)
        except ActivationError as exc:
            # The flip waits for this device; its heartbeat names the error.
            self._activator.last_error = f"cannot prepare {ref.version}: {exc}"
            await asyncio.sleep(1.0)

    @property
    def activation_failures(self) -> int:
        return self._activator.failures

    def shadow_totals(self) -> tuple[int, int]:
        """Shadow evaluations sampled and decisions that differed, since this manager started."""
        return self.shadow.samples, self.shadow.diffs

    async def _follow_shadow_forever(self) -> None:
        """Load or drop the shadow candidate as the rollout's desired state says."""
        while not self._stopping.is_set():
            state = self._tracker.levels.rollout_state
            try:
                await self.shadow.follow(
                    state.shadow if state is not None else None,
                    state.deployment if state is not None else None,
                )
            except Exception:  # the loop must outlive any single failure
                logger.exception("following the shadow step failed; trying again")
            try:
                await self._follow_prepare(state)
            except Exception:  # the loop must outlive any single failure
                logger.exception("preparing a two-phase activation failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=0.25)

    @property
    def applied(self) -> tuple[int, Cohort]:
        return self._activator.applied.epoch, self._activator.applied.cohort

    # ---- activation (the event loop's)

    async def activate_version(self, version: str, *, source: Source = "manual") -> bool:
        """Activate ``version`` now as a manual override (an ``activate:<version>`` message).

        Ignored with a log line when the snapshot belongs to another environment.
        Returns True when ``version`` is active afterwards.
        """
        return await self._converger.activate_version(version, source=source)

    async def activate_snapshot(self, snapshot: PKGSnapshotData, *, source: Source = "api") -> None:
        """Build, self-test and activate ``snapshot`` as a manual override (no database read).

        For embedding and tools (a static snapshot from a file, benchmarks, tests);
        raises :class:`ActivationError` and keeps the current evaluator on failure.
        """
        await self._converger.activate_snapshot(snapshot, source=source)

    def record_source_failure(self, exc: ActivationError, *, source: Source = "file") -> None:
        """A snapshot could not even be read from its source (a file): keep the active one,
        report ``exc`` in ``/healthz`` (``last_error``) and count it, as a failed activation."""
        self._activator.record_failure(exc, source, 0.0)

    async def confirm_active(self) -> None:
        """The source still names the active snapshot (a file read again, unchanged)."""
        active = self.get_active_evaluator()
        if active is not None and not self._activator.failed:
            await self._activator.confirm(active)

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
        fresh = await self._listener.read_levels_at_start()
        await self._converger.converge("startup", fresh=fresh)
        if self.get_active_evaluator() is None:
            await self._activator.activate_from_disk()
        await self._listener.sync_facts("startup")
        if self._facts.version == 0:
            self._facts.load_from_disk()
        if self.get_active_evaluator() is None:
            log_event(
                logger,
                logging.ERROR,
                "no_policy",
                env=self.env,
                error=self._activator.last_error,
                action="answering 503 until a snapshot can be loaded",
            )
        self._spawn(self._listener.resync_forever(), "resync")
        self._spawn(self._follow_shadow_forever(), "shadow-follow")
        self._spawn(self.shadow.run(self._stopping), "shadow")
        if self.signals is not None:
            self._spawn(self._listener.listen(), "listener")
            reporter = HeartbeatReporter(self, self.signals, wake=self._activator.changed)
            self._spawn(reporter.run(self._stopping), "heartbeat")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
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
        self._listener.connected = False
        await self._close_owned_clients()

    async def _close_owned_clients(self) -> None:
        own_client, own_redis = self._owned_clients
        if own_redis and self.redis is not None:
            try:
                await self.redis.aclose()
            except (redis_errors.RedisError, OSError) as exc:
                logger.warning("closing the Redis client failed: %s", exc)
        close = getattr(self.client, "close", None) if own_client else None
        if close is not None:
            try:
                await close()
            except Exception:  # a failing close must not hide the stop; logged
                logger.exception("closing the PostgreSQL client failed")
