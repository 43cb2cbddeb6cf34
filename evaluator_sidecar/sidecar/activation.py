"""Activation: making a snapshot the active evaluator, or recording why it could not be.

An :class:`Activator` takes a snapshot reference and the desired state it was
resolved from, reuses a cached evaluator or has one fetched, verified and
compiled off the hot path (:mod:`evaluator_sidecar.sidecar.snapshots`), swaps
it in (:class:`~evaluator_sidecar.sidecar.evaluators.EvaluatorSlot`) and
writes it to the disk cache as the last good snapshot. When nothing can be
fetched at start it serves that last good snapshot instead.

It owns the activation status that health, metadata and heartbeats report:
what the active evaluator was applied for, the last error, the failure
count, when the active snapshot was last confirmed as the desired one and
whether it came from the disk cache. Failures keep the previous evaluator
active; they are logged, counted and left for the caller to retry or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache
from evaluator_sidecar.sidecar.desired import NO_APPLIED, Applied, as_cohort
from evaluator_sidecar.sidecar.evaluators import EvaluatorSlot
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.sidecar.snapshots import (
    ActivationError,
    SnapshotLoader,
    build_evaluator,
    check_snapshot,
    checksums_match,
)
from evaluator_sidecar.sidecar.trust import SignatureCheck
from evaluator_sidecar.signals import Resolution, SnapshotRef

__all__ = ["Activator", "Source"]

logger = logging.getLogger(MANAGER_LOGGER)

Source = Literal["startup", "redis", "resync", "reconnect", "manual", "disk_cache", "api", "file"]


class Activator:
    """Swaps verified, compiled evaluators in and keeps the activation status.

    Not safe for concurrent activations: the converger serialises them.
    """

    def __init__(
        self,
        slot: EvaluatorSlot,
        loader: SnapshotLoader,
        *,
        env: str,
        self_test: bool,
        metrics: SidecarMetrics,
        disk_cache: SnapshotDiskCache | None,
        clock: Callable[[], float],
        signatures: SignatureCheck | None = None,
    ) -> None:
        self.slot = slot
        self.signatures = signatures
        self.loader = loader
        self.env = env
        self.self_test = self_test
        self.metrics = metrics
        self.disk_cache = disk_cache
        self._clock = clock
        self.applied: Applied = NO_APPLIED
        self.last_error: str | None = None
        self.last_activation: float | None = None
        self.failed = False  # the latest attempt failed (degraded until one succeeds)
        self.failures = 0
        self.confirmed_at: float | None = None
        #: A snapshot prepared ahead of its activation (two-phase), held ready.
        self.held: PKGEvaluator | None = None  # when the active snapshot was last known desired
        self.serving_from_disk = False
        #: Why the disk cache's last good snapshot was refused at start, until one activates.
        self.disk_refusal: str | None = None
        #: Set whenever what a heartbeat reports changes (version, epoch, cohort, a
        #: failure): the heartbeat reporter beats at once instead of at its interval.
        self.changed = asyncio.Event()

    def unavailable(self, error: str) -> str:
        """``last_error`` for a failed read while nothing runs: the error, and why the
        disk cache could not stand in, when it was refused."""
        if self.disk_refusal is None:
            return error
        return f"{error}; the last good snapshot in the disk cache was refused: {self.disk_refusal}"

    async def hold(self, ref: SnapshotRef) -> PKGEvaluator:
        """Prepare ``ref`` and keep it ready: the next activation of it swaps at once."""
        held = self.held
        if (
            held is not None
            and held.version == ref.version
            and checksums_match(ref.checksum, held.checksum)
        ):
            return held
        evaluator = await self.prepare(ref)
        self.held = evaluator
        self.changed.set()  # heartbeats report what is prepared
        return evaluator

    async def prepare(self, ref: SnapshotRef) -> PKGEvaluator:
        """Load, verify, compile and self-test ``ref`` WITHOUT activating it (a shadow
        candidate); raises :class:`ActivationError`, which is not recorded as a failure
        of this device's active snapshot."""
        cached = self.slot.get(ref.version)
        if cached is not None and checksums_match(ref.checksum, cached.checksum):
            return cached
        snapshot = await self.loader.by_version(ref.version)
        check_snapshot(ref, snapshot, env=self.env)
        return await self._build(snapshot)

    async def activate(
        self,
        ref: SnapshotRef,
        target: Resolution,
        source: Source,
        preloaded: PKGSnapshotData | None = None,
    ) -> None:
        """Make ``ref`` active for ``target``; raises :class:`ActivationError` (recorded)."""
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
            cached = self.slot.get(ref.version)
            held = self.held
            if (
                (cached is None or not checksums_match(ref.checksum, cached.checksum))
                and held is not None
                and held.version == ref.version
                and checksums_match(ref.checksum, held.checksum)
            ):
                cached = held  # prepared in phase one of a two-phase activation
            if cached is not None and checksums_match(ref.checksum, cached.checksum):
                evaluator, from_cache, snapshot = cached, True, cached.snapshot
                # A held one was never written to the disk cache: write it as a new one.
                from_cache = cached is not held
            else:
                snapshot = preloaded or await self.loader.by_version(ref.version)
                check_snapshot(ref, snapshot, env=self.env)
                evaluator = await self._build(snapshot)
                self.metrics.load_duration.observe(time.perf_counter() - started)
                from_cache = False
        except ActivationError as exc:
            self.record_failure(exc, source, time.perf_counter() - started)
            raise
        now = self._clock()
        previous, evicted = self.slot.swap(evaluator, now)
        duration_ms = (time.perf_counter() - started) * 1000
        self.applied = Applied(target.epoch, target.cohort, source)
        self.last_activation = now
        self.failed = False
        self.changed.set()
        # PostgreSQL down and the snapshot read from the disk cache: say so until it answers.
        self.serving_from_disk = not from_cache and snapshot is self.loader.from_disk
        self.last_error = None
        self.disk_refusal = None
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
        await self.confirm(evaluator)
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

    async def keep(self, active: PKGEvaluator, target: Resolution, *, fresh: bool) -> None:
        """``active`` is already what ``target`` names: take its epoch and cohort, no swap.

        ``fresh`` says the target was just read from its source (not only held), which
        is what confirming the snapshot as the desired one requires.
        """
        if (target.epoch, target.cohort) != (self.applied.epoch, self.applied.cohort):
            self.changed.set()
        self.applied = Applied(target.epoch, target.cohort, self.applied.source)
        if fresh:
            await self.confirm(active)

    async def confirm(self, active: PKGEvaluator) -> None:
        """Record that ``active`` is, as of now, the snapshot this device should run."""
        self.confirmed_at = self._clock()
        if self.serving_from_disk and self.loader.db_connected:
            self.serving_from_disk = False
        if self.disk_cache is not None:
            try:
                await asyncio.to_thread(
                    self.disk_cache.mark_active,
                    active.version,
                    epoch=self.applied.epoch,
                    cohort=self.applied.cohort,
                    at=self.confirmed_at,
                )
            except OSError as exc:
                logger.warning("could not update the snapshot cache's pointer: %s", exc)

    def record_failure(self, exc: ActivationError, source: str, seconds: float) -> None:
        kept = self.slot.active()
        self.failures += 1
        self.failed = True
        self.changed.set()
        self.last_error = str(exc)
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

    async def activate_from_disk(self) -> None:
        """PostgreSQL (or the named snapshot) is unavailable: serve the last good snapshot."""
        if self.disk_cache is None:
            return
        cached = await asyncio.to_thread(self.disk_cache.load_active)
        if cached is None:
            refused = self.disk_cache.last_refusal
            if refused is None:
                log_event(
                    logger, logging.WARNING, "disk_cache_empty", dir=str(self.disk_cache.root)
                )
                return
            log_event(logger, logging.ERROR, "disk_cache_refused", error=refused)
            self.disk_refusal = refused
            self.record_failure(
                ActivationError(
                    "",
                    self.disk_cache.refusal_reason,
                    self.unavailable(self.last_error or "no snapshot could be read"),
                    transient=False,
                ),
                "disk_cache",
                0.0,
            )
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
            evaluator = await self._build(cached.snapshot)
        except ActivationError as exc:
            self.record_failure(exc, "disk_cache", 0.0)
            return
        now = self._clock()
        self.slot.swap(evaluator, now)
        self.serving_from_disk = True
        # Its age counts from when it was last confirmed, not from now: a stale copy
        # must not look fresh to readiness just because this process restarted.
        self.confirmed_at = cached.activated_at
        self.last_activation = now
        self.applied = Applied(cached.epoch, as_cohort(cached.cohort), "disk_cache")
        self.changed.set()
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

    async def _build(self, snapshot: PKGSnapshotData) -> PKGEvaluator:
        if self.signatures is not None:
            # Before compiling: a snapshot that may not run is not even loaded. Reading
            # the key folder blocks, hence the thread.
            await asyncio.to_thread(self.signatures.check, snapshot)
        # A worker thread: compiling and the fixtures take milliseconds to seconds, and
        # the event loop serves requests meanwhile.
        return await asyncio.to_thread(
            build_evaluator, snapshot, self_test=self.self_test, metrics=self.metrics
        )
