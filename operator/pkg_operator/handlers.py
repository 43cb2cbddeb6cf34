"""The kopf registrations, and nothing else: each handler hands its object to the code
that reconciles it (``pkg_operator.snapshot``, ``pkg_operator.rollout``) with the
operator's context from kopf's memo.
"""

from __future__ import annotations

from typing import Any

import kopf

from pkg_operator import heartbeats, rollouts
from pkg_operator.api import SNAPSHOTS
from pkg_operator.context import OperatorContext, open_context
from pkg_operator.kopf_config import configure_kopf
from pkg_operator.settings import OperatorSettings
from pkg_operator.snapshot import reconcile as snapshot

__all__ = ["build_registry"]


def _ctx(memo: Any) -> OperatorContext:
    ctx: OperatorContext = memo.ctx
    return ctx


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A fresh registry with every handler (a fresh one per operator run, and per test)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    ours = settings  # kopf passes its own settings to handlers under the same name

    @kopf.on.startup(registry=registry)
    async def startup(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings, ours)
        memo.ctx = await open_context(ours)
        memo.ctx.tasks.append(heartbeats.start_folder(memo.ctx))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: kopf.Memo, **_: Any) -> None:
        if "ctx" in memo:
            await _ctx(memo).close()

    @kopf.on.resume(*SNAPSHOTS, registry=registry)
    @kopf.on.create(*SNAPSHOTS, registry=registry)
    @kopf.on.update(*SNAPSHOTS, registry=registry)
    async def snapshot_changed(
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        await snapshot.changed(
            _ctx(memo), body=body, meta=meta, spec=spec, status=status, patch=patch
        )

    @kopf.on.delete(*SNAPSHOTS, registry=registry)
    async def snapshot_deleted(
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        await snapshot.deleted(
            _ctx(memo), body=body, meta=meta, spec=spec, status=status, patch=patch
        )

    rollouts.register(registry, interval=settings.rollout_interval_seconds)
    return registry
