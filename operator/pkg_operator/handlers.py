"""The kopf registrations, and nothing else: each handler hands its object to the code
that reconciles it (``pkg_operator.snapshot``, ``pkg_operator.rollout``) with the
operator's context from kopf's memo.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from evaluator_sidecar.store.errors import DatabaseUnavailableError
from pkg_operator import heartbeats, integrity, metrics
from pkg_operator.api import DEPLOYMENTS, SNAPSHOTS
from pkg_operator.context import OperatorContext, open_context
from pkg_operator.inject import server as inject
from pkg_operator.kopf_config import configure_kopf
from pkg_operator.levels import fleet_status
from pkg_operator.levels import loop as levels
from pkg_operator.rollout import reconcile as rollout
from pkg_operator.settings import OperatorSettings
from pkg_operator.snapshot import reconcile as snapshot

__all__ = ["build_registry"]


def _ctx(memo: Any) -> OperatorContext:
    ctx: OperatorContext = memo.ctx
    return ctx


def _levels(memo: Any) -> levels.LevelReconciler:
    reconciler: levels.LevelReconciler = memo.levels
    return reconciler


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
        # Before PostgreSQL and Redis: injection needs neither, and pods must not wait
        # for them. Every replica serves (peering pauses resource handlers only).
        if ours.webhook_port and "webhook" not in memo:
            memo.webhook = await inject.start_webhook(ours)
        if ours.metrics_port and "metrics" not in memo:
            # Before PostgreSQL and Redis too: their errors are among what it reports.
            memo.metrics = await metrics.serve(ours.metrics_host, ours.metrics_port)
        memo.ctx = await open_context(ours)
        memo.ctx.tasks.append(heartbeats.start_folder(memo.ctx))
        if ours.integrity_check_seconds > 0:
            # Started on every replica; one holds the lease and reports (integrity.py).
            memo.ctx.tasks.append(integrity.start_checker(memo.ctx))
        # Started like the folder; it writes only while this replica works: the
        # resource timers below renew its lease (see pkg_operator.levels.loop).
        memo.levels, task = levels.start(memo.ctx)
        memo.ctx.tasks.append(task)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: kopf.Memo, **_: Any) -> None:
        if "webhook" in memo:
            await memo.webhook.stop()
        if "metrics" in memo:
            memo.metrics.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await memo.metrics
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
        with metrics.reconciling("PolicySnapshot"):
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

    level_interval = settings.level_resync_seconds

    @kopf.timer(*SNAPSHOTS, interval=level_interval, registry=registry, id="levels_lease")
    async def levels_lease(
        *, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, memo: kopf.Memo, **_: Any
    ) -> None:
        _levels(memo).renew()
        await fleet_status.refresh_fleet(_ctx(memo), spec=spec, meta=meta, status=status)

    interval = settings.rollout_interval_seconds

    # Explicit ids: kopf passes an index to handlers under its id, and the id of a
    # nested function would otherwise be its qualified name.
    @kopf.index(*SNAPSHOTS, registry=registry, id="snapshots_index")
    def snapshots_index(
        *, body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> dict[Any, Any]:
        return {(namespace, name): body}

    @kopf.index(*DEPLOYMENTS, registry=registry, id="deployments_index")
    def deployments_index(
        *, spec: kopf.Spec, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
    ) -> dict[Any, Any]:
        key = (spec.get("env"), spec.get("target"), spec.get("region") or "global")
        return {
            key: {
                "uid": meta.get("uid"),
                "namespace": namespace,
                "name": name,
                "creationTimestamp": meta.get("creationTimestamp"),
            }
        }

    @kopf.timer(
        *DEPLOYMENTS, interval=interval, backoff=max(interval, 2.0), registry=registry, id="rollout"
    )
    async def rollout_tick(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
        # kopf passes each index as a keyword argument named after its function.
        snapshots, deployments = kwargs["snapshots_index"], kwargs["deployments_index"]
        _levels(memo).renew()
        try:
            with metrics.reconciling("PolicyDeployment"):
                await rollout.tick(memo.ctx, body, memo, snapshots, deployments)
        except DatabaseUnavailableError as exc:
            raise kopf.TemporaryError(f"PostgreSQL is unavailable: {exc}", delay=interval) from exc

    # Optional: no finalizer, it only drops the deleted deployment's gauges.
    @kopf.on.delete(*DEPLOYMENTS, registry=registry, optional=True, id="deployment_gauges")
    def deployment_deleted(*, namespace: str | None, name: str, **_: Any) -> None:
        metrics.forget_rollout(namespace or "", name)

    return registry
