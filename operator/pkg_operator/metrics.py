"""Every Prometheus metric the operator exports, and the HTTP endpoint that serves them.

One place owns the metric objects (prometheus_client's default registry of the
process, so its process and Python collectors come along); the effects and
handlers record into them. The pure decision modules never import this module:
what a decision did is read back from its status and actions by the effects.

``PKG_OPERATOR_METRICS_PORT`` (0 disables it) serves ``GET /metrics`` on
``PKG_OPERATOR_METRICS_HOST``; it starts with the operator (the startup handler) and
stops with it. Every replica serves its own figures; the rollout gauges are only
set by the replica that works. Label sets are bounded: resource kinds, outcomes and
fixed reasons, plus ``namespace``/``name`` of PolicyDeployments for the per-rollout
gauges (removed when a deployment is deleted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

import asyncpg
import redis.exceptions
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from evaluator_sidecar.store.errors import DatabaseUnavailableError

__all__ = [
    "ACTIONS_REFUSED",
    "ADMISSIONS",
    "AUDIT_ROWS",
    "CERT_EXPIRY",
    "FACTS_WRITES",
    "HEARTBEAT_BATCH",
    "HEARTBEAT_LAG",
    "INTEGRITY_AUDIT_CHAIN_BROKEN",
    "INTEGRITY_CHECKS",
    "INTEGRITY_PROBLEMS",
    "POSTGRES_ERRORS",
    "PROMOTIONS",
    "RECONCILES",
    "RECONCILE_DURATION",
    "REDIS_ERRORS",
    "REPAIRS",
    "ROLLBACKS",
    "ROLLOUT_COVERAGE",
    "ROLLOUT_DEADLINE",
    "ROLLOUT_ERROR_RATIO",
    "ROLLOUT_P99",
    "ROLLOUT_SHADOW_DIFF_RATIO",
    "ROLLOUT_STEP",
    "ROLLOUT_STEPS",
    "ROLLOUT_WEIGHT",
    "backend_error",
    "count_refusals",
    "forget_rollout",
    "reconciling",
    "record_rollout",
    "serve",
]

log = logging.getLogger(__name__)

RECONCILES = Counter(
    "pkg_operator_reconciles",
    "Reconciliations run, by resource kind and outcome (ok, error)",
    ["kind", "outcome"],
)
RECONCILE_DURATION = Histogram(
    "pkg_operator_reconcile_duration_seconds",
    "Time one reconciliation took, by resource kind and outcome",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROLLOUT_STEP = Gauge(
    "pkg_operator_rollout_step",
    "Index of the current step of a PolicyDeployment's rollout (0-based)",
    ["namespace", "name"],
)
ROLLOUT_STEPS = Gauge(
    "pkg_operator_rollout_steps",
    "Number of steps of a PolicyDeployment's rollout",
    ["namespace", "name"],
)
ROLLOUT_WEIGHT = Gauge(
    "pkg_operator_rollout_weight_percent",
    "Share of a PolicyDeployment's target sent to the canary, in percent",
    ["namespace", "name"],
)
ROLLOUT_COVERAGE = Gauge(
    "pkg_operator_rollout_coverage_ratio",
    "Share of a PolicyDeployment's targeted devices running the version intended for them",
    ["namespace", "name"],
)
ROLLOUT_DEADLINE = Gauge(
    "pkg_operator_rollout_deadline_timestamp_seconds",
    "When a PolicyDeployment's running attempt is due to finish its current step (Unix time; "
    "0 when no attempt runs or the step is an indefinite pause)",
    ["namespace", "name"],
)
ROLLOUT_ERROR_RATIO = Gauge(
    "pkg_operator_rollout_error_ratio",
    "Errors per evaluation of a PolicyDeployment's canary devices in the analysis window",
    ["namespace", "name"],
)
ROLLOUT_P99 = Gauge(
    "pkg_operator_rollout_p99_seconds",
    "Highest p99 evaluation latency reported by a PolicyDeployment's canary devices",
    ["namespace", "name"],
)
ROLLOUT_SHADOW_DIFF_RATIO = Gauge(
    "pkg_operator_rollout_shadow_diff_ratio",
    "Share of sampled requests on which a PolicyDeployment's shadow step saw the new snapshot "
    "decide differently (only while a shadow step has samples)",
    ["namespace", "name"],
)
PROMOTIONS = Counter(
    "pkg_operator_promotions",
    "Promotions carried out, by resource (snapshot, deployment) and outcome (ok, error)",
    ["resource", "outcome"],
)
ROLLBACKS = Counter(
    "pkg_operator_rollbacks",
    "Rollbacks carried out, by resource (snapshot, deployment) and outcome (ok, error)",
    ["resource", "outcome"],
)
ACTIONS_REFUSED = Counter(
    "pkg_operator_actions_refused",
    "Action annotations refused, by resource kind and action",
    ["kind", "action"],
)
AUDIT_ROWS = Counter(
    "pkg_operator_audit_rows_written",
    "Writes the operator made that append an audit row (a repeated idempotency key "
    "counts again but appends nothing), by event",
    ["event"],
)
HEARTBEAT_LAG = Gauge(
    "pkg_operator_heartbeat_fold_lag_seconds",
    "Age of the oldest heartbeat in the latest batch folded into PostgreSQL",
)
HEARTBEAT_BATCH = Histogram(
    "pkg_operator_heartbeat_batch_size",
    "Heartbeats read from Redis per folded batch",
    buckets=(1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 100_000),
)
REDIS_ERRORS = Counter(
    "pkg_operator_redis_errors",
    "Redis operations of the operator that failed, by where",
    ["where"],
)
POSTGRES_ERRORS = Counter(
    "pkg_operator_postgres_errors",
    "PostgreSQL operations of the operator that failed, by where",
    ["where"],
)
REPAIRS = Counter(
    "pkg_operator_desired_repairs",
    "Desired states in Redis rewritten from PostgreSQL because they were missing or different",
    ["kind", "reason"],
)
INTEGRITY_PROBLEMS = Gauge(
    "pkg_integrity_problems", "Problems found by the operator's latest integrity check"
)
INTEGRITY_AUDIT_CHAIN_BROKEN = Gauge(
    "pkg_integrity_audit_chain_broken",
    "1 when the operator's latest integrity check found the audit log's hash chain broken, else 0",
)
INTEGRITY_CHECKS = Counter(
    "pkg_integrity_checks",
    "Integrity checks run by this operator replica, by result (ok, problems, error)",
    ["result"],
)
FACTS_WRITES = Counter(
    "pkg_operator_facts_levels_written",
    "Facts levels written to Redis: after a change in PostgreSQL, or repaired.",
    ["reason"],
)
ADMISSIONS = Counter(
    "pkg_webhook_admissions",
    "Pods reviewed by the injection webhook, by mode and result (injected, skipped, denied)",
    ["mode", "result"],
)
CERT_EXPIRY = Gauge(
    "pkg_webhook_certificate_expiry_timestamp_seconds",
    "When the webhook's serving certificate expires (Unix time)",
)


_ROLLOUT_GAUGES = (
    ROLLOUT_STEP,
    ROLLOUT_STEPS,
    ROLLOUT_WEIGHT,
    ROLLOUT_COVERAGE,
    ROLLOUT_DEADLINE,
    ROLLOUT_ERROR_RATIO,
    ROLLOUT_P99,
    ROLLOUT_SHADOW_DIFF_RATIO,
)


def backend_error(exc: BaseException, where: str) -> None:
    """Count ``exc`` as a Redis or PostgreSQL error when it is one (others are not counted)."""
    if isinstance(exc, redis.exceptions.RedisError):
        REDIS_ERRORS.labels(where=where).inc()
    elif isinstance(exc, asyncpg.PostgresError | DatabaseUnavailableError):
        POSTGRES_ERRORS.labels(where=where).inc()


@contextmanager
def reconciling(kind: str) -> Iterator[None]:
    """Time one reconciliation of a ``kind`` and count it as ok or error (re-raising)."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = "error"
        backend_error(exc, where=kind)
        raise
    finally:
        RECONCILE_DURATION.labels(kind=kind, outcome=outcome).observe(time.perf_counter() - started)
        RECONCILES.labels(kind=kind, outcome=outcome).inc()


def record_rollout(
    namespace: str, name: str, new: Mapping[str, Any], deadline: datetime | None = None
) -> None:
    """The rollout gauges from a deployment's status and its running step's deadline."""
    labels = {"namespace": namespace, "name": name}
    ROLLOUT_DEADLINE.labels(**labels).set(deadline.timestamp() if deadline else 0.0)
    ROLLOUT_STEP.labels(**labels).set(float(new.get("currentStepIndex") or 0))
    ROLLOUT_STEPS.labels(**labels).set(float(new.get("stepCount") or 0))
    ROLLOUT_WEIGHT.labels(**labels).set(float(new.get("weight") or 0))
    coverage = new.get("coverage") or {}
    ROLLOUT_COVERAGE.labels(**labels).set(float(coverage.get("percent") or 0) / 100)
    health = new.get("health") or {}
    ROLLOUT_ERROR_RATIO.labels(**labels).set(float(health.get("errorRate") or 0))
    ROLLOUT_P99.labels(**labels).set(float(health.get("p99Ms") or 0) / 1000)
    diff_rate = health.get("shadowDiffRate")
    if diff_rate is None:
        with suppress(KeyError):  # no shadow samples (now): no figure rather than a false 0
            ROLLOUT_SHADOW_DIFF_RATIO.remove(namespace, name)
    else:
        ROLLOUT_SHADOW_DIFF_RATIO.labels(**labels).set(float(diff_rate))


def count_refusals(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Count the actions a written deployment status newly records as refused."""
    seen = {entry.get("token") for entry in old.get("processedActions") or []}
    for entry in new.get("processedActions") or []:
        if entry.get("token") not in seen and entry.get("accepted") is False:
            ACTIONS_REFUSED.labels(kind="PolicyDeployment", action=entry.get("action")).inc()


def forget_rollout(namespace: str, name: str) -> None:
    """Drop a deleted deployment's gauges, so that their label sets stay bounded."""
    for gauge in _ROLLOUT_GAUGES:
        with suppress(KeyError):  # never set by this replica
            gauge.remove(namespace, name)


async def _metrics(_: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _hold(runner: web.AppRunner) -> None:
    try:
        await asyncio.Event().wait()  # until cancelled with the operator's other tasks
    finally:
        await runner.cleanup()


async def serve(host: str, port: int) -> asyncio.Task[None]:
    """Serve ``GET /metrics`` until the returned task is cancelled.

    The socket is bound before this returns, so a port in use stops the operator's
    start with the error instead of leaving it running without metrics.
    """
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics served at http://%s:%d/metrics", host, port)
    return asyncio.create_task(_hold(runner), name="pkg-operator-metrics")
