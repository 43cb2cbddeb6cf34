"""Getting a snapshot ready to activate: fetched, verified, compiled and self-tested.

Everything here happens before a swap and changes nothing a request can see.
:class:`SnapshotLoader` reads snapshots from PostgreSQL with a timeout, falls
back to the disk cache of the last good snapshots when PostgreSQL is down, and
remembers whether PostgreSQL last answered. The store verifies the rows it
reads against the hash recorded when they were stored, and the disk cache its
files' hashes; a refusal from either is an ``ActivationError`` that says why
(``checksum_mismatch``), never a silent fallback. :func:`check_snapshot` refuses a
snapshot of another environment or with another checksum than the desired
state names. :func:`build_evaluator` compiles a snapshot and runs its fixtures;
it is slow and blocking by design and is meant for a worker thread, which is
what keeps compiling off the hot path. Every failure is an
:class:`ActivationError` that says whether retrying can help.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from evaluator_sidecar.policy.errors import EvaluatorError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.model import PKGSnapshotData, normalize_checksum
from evaluator_sidecar.policy.resource_checksum import ChecksumMismatchError
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache
from evaluator_sidecar.sidecar.logs import MANAGER_LOGGER, log_event
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.signals import SnapshotRef

__all__ = [
    "ActivationError",
    "SnapshotLoader",
    "SnapshotSource",
    "build_evaluator",
    "check_snapshot",
    "checksums_match",
]

logger = logging.getLogger(MANAGER_LOGGER)

_T = TypeVar("_T")


class SnapshotSource(Protocol):
    """What the manager needs from PostgreSQL (``PKGClient`` provides it)."""

    async def get_active_snapshot(self) -> PKGSnapshotData | None:
        """The active snapshot of the manager's environment (the client is built for it)."""
        ...

    async def get_snapshot_by_version(self, version: str) -> PKGSnapshotData | None: ...


class ActivationError(Exception):
    """A snapshot could not be activated; ``transient`` failures are retried at the next resync."""

    def __init__(self, version: str, reason: str, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.version = version
        self.reason = reason
        self.transient = transient


def checksums_match(expected: str | None, actual: str | None) -> bool:
    """True when no checksum is expected, or both name the same sha256 in any accepted form."""
    if not expected:
        return True
    if not actual:
        return False
    try:
        return normalize_checksum(expected) == normalize_checksum(actual)
    except ValueError:
        return False


class SnapshotLoader:
    """Snapshots from PostgreSQL, else (when it is down) from the disk cache."""

    def __init__(
        self,
        client: SnapshotSource | None,
        disk_cache: SnapshotDiskCache | None,
        *,
        timeout: float,
    ) -> None:
        self.client = client
        self.disk_cache = disk_cache
        self.timeout = timeout
        #: Whether PostgreSQL answered the latest call; None until the first one.
        self.db_connected: bool | None = None
        #: The latest snapshot served from the disk cache (PostgreSQL down), by identity.
        self.from_disk: PKGSnapshotData | None = None

    async def _call(self, what: str, call: Awaitable[_T]) -> _T:
        try:
            result = await asyncio.wait_for(call, timeout=self.timeout)
        except (TimeoutError, OSError) as exc:  # ConnectionError, DatabaseUnavailableError
            self.db_connected = False
            raise ActivationError(
                what, "db_unavailable", f"PostgreSQL unavailable ({what}): {exc}", transient=True
            ) from exc
        except ChecksumMismatchError as exc:
            # The rows read are not what was stored (the store verifies them on read):
            # never compiled, never retried until the desired state changes.
            self.db_connected = True
            raise ActivationError(
                what, "checksum_mismatch", f"refused {what}: {exc}", transient=False
            ) from exc
        except Exception as exc:  # the client's own errors: the server answered
            self.db_connected = True
            raise ActivationError(
                what, "db_error", f"PostgreSQL error ({what}): {exc}", transient=True
            ) from exc
        self.db_connected = True
        return result

    async def active(self) -> PKGSnapshotData | None:
        """PostgreSQL's active snapshot of the environment (no disk fallback: it names none)."""
        if self.client is None:
            raise ActivationError("", "no_database", "no PostgreSQL client", transient=True)
        return await self._call("active snapshot", self.client.get_active_snapshot())

    async def by_version(self, version: str) -> PKGSnapshotData:
        """Snapshot ``version`` from PostgreSQL, else (when it is down) from the disk cache."""
        db_error: ActivationError | None = None
        if self.client is not None:
            try:
                snapshot = await self._call(
                    f"snapshot {version}", self.client.get_snapshot_by_version(version)
                )
            except ActivationError as exc:
                db_error = exc
            else:
                if snapshot is not None:
                    return snapshot
                raise ActivationError(
                    version,
                    "not_found",
                    f"snapshot {version!r} is not in PostgreSQL; store it before activating it",
                    transient=True,
                )
        refused: str | None = None
        if self.disk_cache is not None:
            cached = await asyncio.to_thread(self.disk_cache.load, version)
            if cached is not None:
                log_event(logger, logging.WARNING, "snapshot_from_disk_cache", version=version)
                self.from_disk = cached
                return cached
            refused = self.disk_cache.last_refusal
        if refused is not None:
            log_event(logger, logging.ERROR, "disk_cache_refused", version=version, error=refused)
            raise ActivationError(
                version,
                self.disk_cache.refusal_reason if self.disk_cache else "load_error",
                f"{db_error or 'no PostgreSQL client'}; the disk cache's copy was refused: "
                f"{refused}",
                transient=True,
            )
        raise db_error or ActivationError(
            version, "no_database", f"snapshot {version!r}: no database configured", transient=True
        )


def check_snapshot(ref: SnapshotRef, snapshot: PKGSnapshotData, *, env: str) -> None:
    """Refuse ``snapshot`` when it is not the one ``ref`` names for environment ``env``."""
    if snapshot.env != env:
        raise ActivationError(
            ref.version,
            "env_mismatch",
            f"snapshot {ref.version!r} belongs to env {snapshot.env!r}, this sidecar to {env!r}",
            transient=False,
        )
    if not checksums_match(ref.checksum, snapshot.checksum):
        raise ActivationError(
            ref.version,
            "checksum_mismatch",
            f"snapshot {ref.version!r} has checksum {snapshot.checksum!r}; the "
            f"desired state names {ref.checksum!r}",
            transient=False,
        )


def build_evaluator(
    snapshot: PKGSnapshotData, *, self_test: bool, metrics: SidecarMetrics
) -> PKGEvaluator:
    """Compile ``snapshot`` and run its fixtures; blocking, so call it in a worker thread."""
    try:
        evaluator = PKGEvaluator(snapshot)
    except EvaluatorError as exc:
        raise ActivationError(snapshot.version, "load_error", str(exc), transient=False) from exc
    if self_test and snapshot.fixtures:
        report = run_fixtures(evaluator.evaluate, snapshot.fixtures)
        if not report.success:
            metrics.fixture_failures.inc(report.failed)
            failed = [r for r in report.results if not r.passed]
            detail = "; ".join(
                f"{r.name}: {r.error or ', '.join(d.key for d in r.differences) + ' differ'}"
                for r in failed[:5]
            )
            raise ActivationError(
                snapshot.version,
                "fixtures_failed",
                f"snapshot {snapshot.version!r} failed {report.failed} of {report.total} "
                f"fixtures in the sidecar's self-test ({detail})",
                transient=False,
            )
    return evaluator
