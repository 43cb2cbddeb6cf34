"""Standalone mode: the sidecar's HTTP API on a PolicySnapshot file, with no PostgreSQL or Redis.

``pkg serve FILE`` (and ``pkg-sidecar`` with ``PKG_SNAPSHOT_FILE``) is the
counterpart of ``opa run --server policy.rego``: for local development, CI, and
pods that take their policy from a mounted ConfigMap. The file is what you
would ``kubectl apply`` (YAML or JSON, several documents allowed; ``--name``
picks one PolicySnapshot). It is verified and compiled as the sidecar does with a
snapshot from PostgreSQL: shape, ``spec.checksum``, the environment, signatures
when ``PKG_REQUIRE_SIGNATURES`` asks for them, and the fixtures as a self-test.

:class:`SnapshotFileWatcher` checks the file every ``PKG_SNAPSHOT_POLL_SECONDS``
and activates a changed one with one pointer swap. It follows symlinks at every
check, so the ConfigMap volume's update (a new ``..data`` symlink swapped in
atomically) is seen as a change. A file that cannot be read, parsed, verified
or self-tested leaves the last good snapshot serving; the error is in
``/healthz`` (``last_error``, ``degraded_mode``) until a good file replaces it.
Write files atomically (a new file renamed over the old), as ConfigMaps are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
from pathlib import Path

from evaluator_sidecar.policy.errors import EvaluatorError
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)
from evaluator_sidecar.settings import SettingsError, load_settings
from evaluator_sidecar.sidecar.http import SidecarAPI, serve_api
from evaluator_sidecar.sidecar.logs import configure_logging, log_event
from evaluator_sidecar.sidecar.manager import ActivationError, PKGManager
from evaluator_sidecar.sidecar.process import manager_options, set_global_pkg_manager
from evaluator_sidecar.sidecar.settings import SidecarSettings

__all__ = [
    "SnapshotFileWatcher",
    "read_snapshot_file",
    "run_standalone",
    "serve",
    "snapshot_env",
    "standalone_settings",
]

logger = logging.getLogger(__name__)


def _refusal(path: Path, message: str) -> ActivationError:
    return ActivationError(
        "",
        "invalid_file",
        f"snapshot file {str(path)!r}: {message}; the last good snapshot keeps serving",
        transient=False,
    )


#: The snapshot :func:`snapshot_env` read at start, by (sha256 of the content, name), for the
#: first activation to take instead of parsing and checking the same file a second time.
_read_at_start: dict[tuple[str, str | None], PKGSnapshotData] = {}


def read_snapshot_file(path: Path, content: bytes, *, name: str | None = None) -> PKGSnapshotData:
    """The checked snapshot in ``content`` (read from ``path``); :class:`ActivationError` if not."""
    handed_over = _read_at_start.pop((hashlib.sha256(content).hexdigest(), name), None)
    if handed_over is not None:
        return handed_over
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refusal(path, f"not UTF-8 text ({exc})") from exc
    try:
        resource = select_policy_snapshot(load_documents(text), name)
        return snapshot_from_resource(resource)
    except (ValueError, EvaluatorError) as exc:
        raise _refusal(path, str(exc)) from exc


def snapshot_env(path: Path, *, name: str | None = None) -> str | None:
    """The environment the file's snapshot names, or None when it cannot be read now.

    The snapshot read is kept for the first :func:`read_snapshot_file` of the same content,
    so that a start without ``PKG_ENV`` reads and checks the file once, not twice."""
    try:
        content = path.read_bytes()
        snapshot = read_snapshot_file(path, content, name=name)
    except (OSError, ActivationError):
        return None
    _read_at_start.clear()
    _read_at_start[(hashlib.sha256(content).hexdigest(), name)] = snapshot
    return snapshot.env


class SnapshotFileWatcher:
    """Activates the file's snapshot at start and whenever its content changes."""

    def __init__(
        self, manager: PKGManager, path: Path, *, name: str | None = None, interval: float = 1.0
    ) -> None:
        self.manager = manager
        self.path = path
        self.name = name
        self.interval = interval
        #: The file's identity after symlinks (device, inode, mtime, size) at the last read.
        self._stat: tuple[int, int, int, int] | None = None
        self._digest: str | None = None

    async def check(self) -> bool:
        """Look at the file once; True when it changed (and an activation was tried)."""
        try:
            content = await self._new_content()
        except OSError as exc:
            return self._failed(_refusal(self.path, exc.strerror or str(exc)), unreadable=True)
        if content is None:
            await self.manager.confirm_active()
            return False
        return await self._activate(content)

    async def _new_content(self) -> bytes | None:
        """The file's content when it differs from the last read, else None."""
        st = await asyncio.to_thread(os.stat, self.path)  # follows the ..data symlinks
        stat = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if stat == self._stat:
            return None
        content = await asyncio.to_thread(self.path.read_bytes)
        self._stat = stat
        digest = hashlib.sha256(content).hexdigest()
        if digest == self._digest:
            return None  # touched or re-linked, same content
        self._digest = digest
        return content

    async def _activate(self, content: bytes) -> bool:
        try:
            snapshot = read_snapshot_file(self.path, content, name=self.name)
        except ActivationError as exc:
            return self._failed(exc, unreadable=False)
        failures = self.manager.activation_failures
        try:
            await self.manager.activate_snapshot(snapshot, source="file")
        except ActivationError as exc:
            if self.manager.activation_failures == failures:
                # Refused before any load (another environment): not recorded yet.
                self.manager.record_source_failure(exc, source="file")
            return True
        log_event(
            logger,
            logging.INFO,
            "snapshot_file_loaded",
            path=str(self.path),
            version=snapshot.version,
        )
        return True

    def _failed(self, exc: ActivationError, *, unreadable: bool) -> bool:
        if unreadable:
            self._stat = None  # read it again as soon as it can be read
            if self.manager.get_health_status()["last_error"] == str(exc):
                return False  # the same unreadable file as at the last check: reported already
        self.manager.record_source_failure(exc, source="file")
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every ``interval`` seconds until ``stopping`` is set."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
            if stopping.is_set():
                return
            try:
                await self.check()
            except Exception:  # the watcher must outlive any one bad check; logged
                logger.exception("checking the snapshot file %s failed", self.path)


async def run_standalone(
    settings: SidecarSettings, *, name: str | None = None, stop: asyncio.Event | None = None
) -> None:
    """Serve ``settings.snapshot_file`` until ``stop`` is set (or SIGTERM/SIGINT arrives)."""
    if settings.snapshot_file is None:
        raise ValueError("run_standalone needs settings.snapshot_file")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # No disk cache: the file is the source, and the last good snapshot lives in memory.
    options = {**manager_options(settings), "cache_dir": None}
    manager = PKGManager(None, None, **options)
    watcher = SnapshotFileWatcher(
        manager, settings.snapshot_file, name=name, interval=settings.snapshot_poll_seconds
    )
    # The first load before listening: a local file loads in milliseconds, and a client
    # started right after the log line below finds the policy in place.
    await watcher.check()
    api = SidecarAPI(manager)
    server = await serve_api(
        api, settings.http_host, settings.http_port, settings.max_request_bytes
    )
    log_event(
        logger,
        logging.INFO,
        "sidecar_listening",
        host=settings.http_host,
        port=server.port,
        env=settings.env,
        snapshot_file=str(settings.snapshot_file),
        mode="standalone",
    )
    set_global_pkg_manager(manager)
    task = asyncio.create_task(watcher.run(stop), name="pkg-snapshot-file")
    try:
        await stop.wait()
    finally:
        log_event(logger, logging.INFO, "sidecar_stopping", mode="standalone")
        set_global_pkg_manager(None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()


def standalone_settings(settings: SidecarSettings, *, name: str | None = None) -> SidecarSettings:
    """``settings`` with the environment of the file's snapshot when ``PKG_ENV`` is not set.

    A file is one environment's snapshot: serving it should not need the environment
    said twice. A later file of another environment is refused (``env_mismatch``).
    """
    if settings.snapshot_file is None or os.environ.get("PKG_ENV"):
        return settings
    env = snapshot_env(settings.snapshot_file, name=name)
    if env is None or env == settings.env:
        return settings
    return settings.model_copy(update={"env": env})


def serve(args: argparse.Namespace) -> int:
    """``pkg serve``: the options parsed by :mod:`evaluator_sidecar.cli`, the rest from ``PKG_``."""
    overrides: dict[str, object] = {"snapshot_file": Path(args.snapshot)}
    for option, field in (
        ("host", "http_host"),
        ("port", "http_port"),
        ("env", "env"),
        ("poll", "snapshot_poll_seconds"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            overrides[field] = value
    try:
        settings = load_settings(SidecarSettings, **overrides)
    except SettingsError as exc:
        print(f"pkg serve: {exc}", file=sys.stderr)
        return 2
    if args.env is None:
        settings = standalone_settings(settings, name=args.name)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_standalone(settings, name=args.name))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the HTTP port is taken
        print(f"pkg serve: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0
