"""The plugin's PostgreSQL reads (``coverage``, ``history``, ``audit verify``), synchronous.

Each call opens a small pool with :class:`evaluator_sidecar.store.PKGClient`, reads, and
closes it: the plugin is a short-lived command, so there is nothing to keep open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from evaluator_sidecar.store.audit_chain import AuditChainReport
from evaluator_sidecar.store.client import PKGClient

__all__ = ["audit_rows", "device_rows", "promotions", "snapshot_id", "verify_chain"]

T = TypeVar("T")


def _run(dsn: str, read: Callable[[PKGClient], Awaitable[T]]) -> T:
    async def go() -> T:
        client = await PKGClient.connect(dsn, min_size=1, max_size=1)
        try:
            return await read(client)
        finally:
            await client.close()

    return asyncio.run(go())


def device_rows(dsn: str, env: str, target: str, region: str) -> list[dict[str, Any]]:
    """``pkg_device_versions`` rows of one environment's target and region."""
    return _run(
        dsn,
        lambda c: c.get_device_versions(region=region, target=target, environment=env),
    )


def snapshot_id(dsn: str, version: str) -> int | None:
    """The stored id of a snapshot version (None when it was never stored)."""

    async def read(client: PKGClient) -> int | None:
        found = await client.get_snapshot_by_version(version, include_archived=True)
        return None if found is None else found.id

    return _run(dsn, read)


def promotions(dsn: str, snapshot: int) -> list[dict[str, Any]]:
    """``pkg_promotions`` rows of one snapshot, newest first."""
    return _run(dsn, lambda c: c.get_promotions(snapshot_id=snapshot, limit=200))


def audit_rows(
    dsn: str,
    *,
    snapshot: int | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> list[dict[str, Any]]:
    """``pkg_audit_log`` rows about one snapshot or one entity, oldest first."""
    return _run(
        dsn,
        lambda c: c.get_audit_log(
            snapshot_id=snapshot, entity_type=entity_type, entity_id=entity_id, limit=500
        ),
    )


def verify_chain(dsn: str) -> AuditChainReport:
    """The audit hash chain recomputed here, from the rows (the server is not trusted)."""
    return _run(dsn, lambda c: c.verify_audit_chain())
