"""The HTTPS server of the sidecar injection webhook (aiohttp), run inside the operator.

Routes: ``POST /inject/namespace`` and ``POST /inject/annotated`` (the two webhooks of
the configuration, see :mod:`pkg_operator.inject.review`), ``GET /healthz`` (the pod's
readiness: it answers once a certificate is served). Every replica serves, whether or
not it is the replica that reconciles (peering pauses resource handling only), so the
webhook Service has as many endpoints as the operator has ready replicas. Its
metrics are in :mod:`pkg_operator.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pkg_operator.inject import review, tls
from pkg_operator.inject.patch import InjectionConfig
from pkg_operator.metrics import ADMISSIONS
from pkg_operator.settings import OperatorSettings

__all__ = ["ADMISSIONS", "Webhook", "injection_config", "start_webhook"]

log = logging.getLogger(__name__)

#: A pod's JSON is at most ~1.5 MiB (etcd's limit); a review carries it once or twice.
MAX_REVIEW_BYTES = 4 * 1024 * 1024


def injection_config(settings: OperatorSettings) -> InjectionConfig:
    return InjectionConfig(
        image=settings.inject_image,
        image_pull_policy=settings.inject_image_pull_policy,
        env=settings.inject_env,
        target=settings.inject_target,
        region=settings.inject_region,
        secret=settings.inject_secret,
        http_port=settings.inject_http_port,
        resources=settings.inject_resources_dict,
        wait_for_snapshot=settings.inject_wait_for_snapshot,
        version=importlib.metadata.version("pkg-operator"),
    )


@dataclass
class Webhook:
    """The running webhook: its server, its certificate and the task renewing it."""

    runner: web.AppRunner
    serving: tls.ServingCert
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runner.cleanup()


def _handler(mode: review.Mode, config: InjectionConfig) -> Any:
    async def handle(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the body is not an AdmissionReview"}, status=400)
        outcome = review.outcome_for(body, mode, config)
        ADMISSIONS.labels(mode, outcome.result).inc()
        req = body.get("request") or {}
        pod = (req.get("object") or {}).get("metadata") or {}
        log.info(
            "admission %s: pod %s/%s %s: %s",
            mode,
            req.get("namespace"),
            pod.get("name") or pod.get("generateName", "?"),
            outcome.result,
            outcome.message,
        )
        return web.json_response(review.answer(body, outcome))

    return handle


async def start_webhook(settings: OperatorSettings) -> Webhook:
    """Get the certificate (creating it when needed), then serve; raises when it cannot."""
    serving = tls.ServingCert()
    await tls.sync_once(settings, serving)
    config = injection_config(settings)
    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    for mode in review.MODES:
        app.router.add_post(f"/inject/{mode}", _handler(mode, config))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.webhook_host, settings.webhook_port, ssl_context=serving.context
    )
    await site.start()
    log.info(
        "injection webhook listening on https://%s:%d", settings.webhook_host, settings.webhook_port
    )
    task = asyncio.create_task(tls.keep_current(settings, serving), name="webhook-certificate")
    return Webhook(runner, serving, [task])
