"""The process-wide manager: one ``PKGManager`` per process, for code that embeds the sidecar.

:func:`initialize_global_pkg_manager` builds the manager (and, when none are
given, its PostgreSQL and Redis clients from the ``PKG_`` settings), starts it
and installs it; :func:`get_global_pkg_manager` returns it from anywhere in
the process. The sidecar's own entry point installs the manager it runs with
:func:`set_global_pkg_manager`. The first two are also importable from
:mod:`evaluator_sidecar`.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any

from evaluator_sidecar.sidecar.manager import PKGManager

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from evaluator_sidecar.sidecar.snapshots import SnapshotSource

__all__ = [
    "get_global_pkg_manager",
    "initialize_global_pkg_manager",
    "manager_options",
    "set_global_pkg_manager",
]

_global_manager: PKGManager | None = None
_global_lock = threading.Lock()
#: One lock per event loop serialises first calls: two would otherwise both see no manager
#: and start two (two Redis listeners, two heartbeat loops for one device id).
_init_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _init_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    with _global_lock:
        lock = _init_locks.get(loop)
        if lock is None:
            lock = _init_locks[loop] = asyncio.Lock()
        return lock


def get_global_pkg_manager() -> PKGManager | None:
    """The process-wide manager, once :func:`initialize_global_pkg_manager` has run."""
    return _global_manager


def set_global_pkg_manager(manager: PKGManager | None) -> None:
    """Install (or clear) the process-wide manager; the sidecar's entry point uses it."""
    global _global_manager  # noqa: PLW0603 - one manager per process, as the module API promises
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
    async with _init_lock():
        existing = get_global_pkg_manager()
        if existing is not None:
            return existing  # a concurrent first call started it meanwhile
        return await _start_global(pkg_client, redis_client, options)


async def _start_global(
    pkg_client: SnapshotSource | None, redis_client: Redis | None, options: dict[str, Any]
) -> PKGManager:
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
            from evaluator_sidecar.signals.connect import connect_redis  # noqa: PLC0415

            redis_client = connect_redis(**settings.redis_options(), socket_connect_timeout=2)
        options = {**manager_options(settings), **options}
    manager = PKGManager(pkg_client, redis_client, **options)
    # Clients built here belong to no caller, so the manager closes them on stop().
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
        "require_signatures": settings.signatures_required_in(settings.env),
        "trusted_keys_dir": settings.trusted_keys_dir,
        "max_staleness": settings.max_staleness_seconds,
        "staleness_policy": settings.staleness_policy,
    }
