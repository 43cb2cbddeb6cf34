"""Converging on the desired state: one activation at a time, towards what the tracker says.

A :class:`Converger` asks the :class:`~evaluator_sidecar.sidecar.desired.DesiredTracker`
which snapshot this device should run (PostgreSQL's active snapshot when no
level names one), does nothing when that is already active, and otherwise has
the :class:`~evaluator_sidecar.sidecar.activation.Activator` activate it. It
also takes manual overrides (``activate:<version>`` messages, snapshots handed
in by tools and tests). An ``asyncio.Lock`` serialises all of it, so a message
and a resync arriving together cannot interleave two activations.

A snapshot that failed for good (broken, failing its fixtures, of another
environment) is not retried by periodic resyncs, which would only log the
same failure every interval; a new desired state or an explicit message
retries it.
"""

from __future__ import annotations

import asyncio
import logging

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.activation import Activator, Source
from evaluator_sidecar.sidecar.desired import DesiredTracker
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event
from evaluator_sidecar.sidecar.snapshots import ActivationError, check_snapshot, checksums_match
from evaluator_sidecar.signals import SnapshotRef

__all__ = ["Converger"]

logger = logging.getLogger(MANAGER_LOGGER)


class Converger:
    """Brings the active evaluator to the tracker's desired state, one activation at a time."""

    def __init__(self, tracker: DesiredTracker, activator: Activator, *, env: str) -> None:
        self.tracker = tracker
        self.activator = activator
        self.env = env
        self._lock = asyncio.Lock()
        self._permanent_failures: dict[tuple[str, str | None], str] = {}
        #: The last convergence failed for a reason that may pass (PostgreSQL away): the
        #: listener retries soon rather than at the next periodic resync.
        self.retry_pending = False
        self._transient = False

    async def converge(self, source: Source, *, fresh: bool) -> bool:
        """Activate what the tracker resolves to; True when it is active afterwards.

        ``fresh`` says the tracker's levels were just read (not only held), so an
        unchanged active snapshot counts as confirmed.
        """
        async with self._lock:
            done = await self._converge_locked(source, fresh=fresh)
            self.retry_pending = not done and self._transient
            return done

    async def activate_version(self, version: str, *, source: Source = "manual") -> bool:
        """Activate ``version`` now as a manual override (an ``activate:<version>`` message).

        Ignored with a log line when the snapshot belongs to another environment.
        Returns True when ``version`` is active afterwards.
        """
        async with self._lock:
            cached = self.activator.slot.get(version)
            snapshot = cached.snapshot if cached is not None else None
            if snapshot is None:
                try:
                    snapshot = await self.activator.loader.by_version(version)
                except ActivationError as exc:
                    self.activator.record_failure(exc, source, 0.0)
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
            self.tracker.set_manual(version)
            return await self._converge_locked(source, fresh=True, preloaded=snapshot)

    async def activate_snapshot(self, snapshot: PKGSnapshotData, *, source: Source = "api") -> None:
        """Build, self-test and activate ``snapshot`` as a manual override (no database read).

        Raises :class:`ActivationError` and keeps the current evaluator on failure.
        """
        async with self._lock:
            ref = SnapshotRef(snapshot.version, snapshot.id or None, snapshot.checksum)
            check_snapshot(ref, snapshot, env=self.env)
            self.tracker.set_manual(snapshot.version)
            await self.activator.activate(ref, self.tracker.resolution(), source, snapshot)

    async def _converge_locked(
        self, source: Source, *, fresh: bool, preloaded: PKGSnapshotData | None = None
    ) -> bool:
        self._transient = False
        target = self.tracker.resolution()
        ref = target.ref
        if ref is None:
            # No level names a snapshot: PostgreSQL's active snapshot for the environment.
            try:
                snapshot = await self.activator.loader.active()
            except ActivationError as exc:
                self._transient = exc.transient
                if self.activator.slot.active() is None:
                    self.activator.last_error = self.activator.unavailable(str(exc))
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
                return self.activator.slot.active() is not None
            ref = SnapshotRef(snapshot.version, snapshot.id, snapshot.checksum)
            preloaded = snapshot
            fresh = True
        active = self.activator.slot.active()
        if (
            active is not None
            and active.version == ref.version
            and checksums_match(ref.checksum, active.checksum)
        ):
            await self.activator.keep(active, target, fresh=fresh)
            return True
        key = (ref.version, ref.checksum)
        if key in self._permanent_failures and source in ("resync", "reconnect"):
            return False  # already reported; a new desired state or message retries it
        try:
            await self.activator.activate(ref, target, source, preloaded)
        except ActivationError as exc:
            self._transient = exc.transient
            if not exc.transient:
                self._permanent_failures[key] = str(exc)
            return False
        self._permanent_failures.pop(key, None)
        return True
