"""Fold the sidecars' heartbeats from Redis into ``pkg_device_versions``, in batches.

The same background task also recreates what a Redis restart loses of the
stream: the consumer group. (The desired states are the level reconciler's,
``pkg_operator.levels``.)

Sidecars append heartbeats to the stream ``pkg:heartbeats``; the operator reads
it through the consumer group ``pkg-operator`` (so replicas share the work and
none reads an entry twice), keeps the newest beat per device of each batch,
writes the batch in ONE statement, and only then acknowledges the entries: a
crash between the two re-delivers them, and the database keeps the newest beat
per device whatever the order, so nothing is lost or double counted.

Beats from sidecars that send cumulative totals (with their process id) are
also folded into ``pkg_device_counters`` (see
:mod:`evaluator_sidecar.store.counters`): the rollout's exact step health. The
example diffs of a shadow step that beats carry are stored in
``pkg_shadow_diffs`` (each once, whatever the re-deliveries).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Sequence

from redis.exceptions import ResponseError

from evaluator_sidecar.signals import Heartbeat, backoff_delay
from evaluator_sidecar.store.counters import DeviceCounters, ShadowDiffRow
from evaluator_sidecar.store.models import DeviceHeartbeat
from pkg_operator.context import OperatorContext
from pkg_operator.metrics import HEARTBEAT_BATCH, HEARTBEAT_LAG, backend_error

__all__ = [
    "RETRY_CAP_SECONDS",
    "newest_per_device",
    "retry_delay",
    "shadow_rows",
    "start_folder",
    "to_counters",
    "to_row",
]

log = logging.getLogger(__name__)

#: The longest wait before folding again after a failure. The folder is how coverage
#: learns what the fleet runs, so every rollout step waits for it once PostgreSQL (or
#: Redis) is back: with the 30 s cap it had, a rollout stood still for up to 30 s after
#: a PostgreSQL outage had ended (chaos scenario outage/postgres-down-30s/mid-rollout).
#: A retry costs one stream read and one statement; retrying often harms nobody.
RETRY_CAP_SECONDS = 2.0


def retry_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row (jittered, at most the cap)."""
    return backoff_delay(failures, base=0.25, cap=RETRY_CAP_SECONDS)


def to_row(beat: Heartbeat) -> DeviceHeartbeat:
    return DeviceHeartbeat(
        device_id=beat.device_id,
        device_type=beat.device_type,
        snapshot_id=beat.snapshot_id,
        version=beat.version,
        region=beat.region,
        target=beat.target,
        evaluations=beat.evaluations,
        errors=beat.errors,
        p99_latency_ms=beat.p99_ms,
        activation_failures=beat.activation_failures,
        seen_at=dt.datetime.fromtimestamp(beat.ts, dt.UTC),
        environment=beat.env,
        # What a rollout tick needs per device beside the counts: kept with them so the
        # tick never has to read every heartbeat key in Redis (migration 0010).
        last_error=beat.last_error,
        policy_stale=beat.stale,
        prepared_version=beat.prepared,
    )


def to_counters(beat: Heartbeat) -> DeviceCounters | None:
    """The beat's cumulative counters, or None from a sidecar that sends none."""
    totals = beat.totals
    if totals is None or beat.process_id is None or beat.process_started is None:
        return None
    return DeviceCounters(
        environment=beat.env,
        device_id=beat.device_id,
        process_id=beat.process_id,
        process_started=dt.datetime.fromtimestamp(beat.process_started, dt.UTC),
        requests=totals.requests,
        errors=totals.errors,
        activation_failures=totals.activation_failures,
        shadow_samples=totals.shadow_samples,
        shadow_diffs=totals.shadow_diffs,
    )


def shadow_rows(beat: Heartbeat) -> list[ShadowDiffRow]:
    """The example diffs a beat carries, as rows; malformed ones are skipped and logged."""
    shadow = beat.shadow or {}
    examples = shadow.get("examples") or []
    if not examples or not shadow.get("deployment") or not shadow.get("step"):
        return []
    try:
        step = dt.datetime.fromisoformat(str(shadow["step"]))
        return [
            ShadowDiffRow(
                deployment_uid=str(shadow["deployment"]),
                deployment_name=str(shadow.get("deployment_name") or shadow["deployment"]),
                step_started_at=step,
                device_id=beat.device_id,
                active_version=example.get("active_version"),
                candidate_version=str(shadow["candidate"]),
                differs=[str(part) for part in example["differs"]],
                input=example["input"],
                active_output=example["active_output"],
                candidate_output=example["candidate_output"],
                observed_at=dt.datetime.fromtimestamp(float(example["observed_at"]), dt.UTC),
                fingerprint=str(example["fingerprint"]),
            )
            for example in examples
        ]
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("device %s sent malformed shadow examples (%s); skipped", beat.device_id, exc)
        return []


def newest_per_device(beats: Sequence[Heartbeat]) -> list[Heartbeat]:
    """One beat per device of each environment: its newest in this batch (a batch may
    hold several). Two environments may use the same device names."""
    newest: dict[tuple[str, str], Heartbeat] = {}
    for beat in beats:
        seen = newest.get((beat.env, beat.device_id))
        if seen is None or beat.ts >= seen.ts:
            newest[(beat.env, beat.device_id)] = beat
    return list(newest.values())


async def fold_once(ctx: OperatorContext, consumer: str, *, pending: bool = False) -> int:
    """Read, write and acknowledge one batch; the number of entries folded."""
    entries = await ctx.signals.read_heartbeats(
        consumer,
        count=ctx.settings.heartbeat_batch_size,
        block_ms=int(ctx.settings.heartbeat_fold_interval_seconds * 1000),
        pending=pending,
    )
    if not entries:
        return 0
    HEARTBEAT_BATCH.observe(len(entries))
    HEARTBEAT_LAG.set(max(0.0, time.time() - min(beat.ts for _, beat in entries)))
    beats = newest_per_device([beat for _, beat in entries])
    await ctx.db.update_device_heartbeats([to_row(beat) for beat in beats])
    counters = [c for c in map(to_counters, beats) if c is not None]
    await ctx.db.update_device_counters(counters)
    # Every entry's examples, not only the newest beat's: each beat carries new ones.
    examples = [row for _, beat in entries for row in shadow_rows(beat)]
    await ctx.db.record_shadow_diffs(examples)
    await ctx.signals.ack_heartbeats([entry_id for entry_id, _ in entries])
    return len(entries)


async def _fold_forever(ctx: OperatorContext) -> None:
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    failures = 0
    recovering = True  # first re-read what this consumer was given but never acknowledged
    while True:
        try:
            folded = await fold_once(ctx, consumer, pending=recovering)
            if recovering and folded == 0:
                recovering = False
            failures = 0
        except asyncio.CancelledError:
            raise
        except ResponseError as exc:
            backend_error(exc, where="heartbeats")
            if not _stream_lost(exc):
                failures += 1
                log.exception("reading heartbeats failed (attempt %d)", failures)
                await asyncio.sleep(retry_delay(failures))
                continue
            # Redis restarted without persistence, or the stream was deleted: the stream
            # and its consumer group are gone. Blocked readers get UNBLOCKED, later NOGROUP.
            log.warning("the heartbeat stream or its group is gone (%s); recreating it", exc)
            await ctx.signals.ensure_heartbeat_group()
            recovering = False
        except Exception as exc:
            backend_error(exc, where="heartbeats")
            failures += 1
            delay = retry_delay(failures)
            message = "folding heartbeats failed (attempt %d); retrying in %.1fs: %s"
            reason = str(exc) or type(exc).__name__
            if failures == 1:
                log.exception(message, failures, delay, reason)
            else:  # the traceback once per run of failures: retries come every few seconds
                log.warning(message, failures, delay, reason)
            await asyncio.sleep(delay)


def _stream_lost(exc: ResponseError) -> bool:
    text = str(exc)
    return "NOGROUP" in text or "no longer exists" in text


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the heartbeat folder stopped: coverage will go stale until the operator restarts",
            exc_info=task.exception(),
        )


def start_folder(ctx: OperatorContext) -> asyncio.Task[None]:
    task = asyncio.create_task(_fold_forever(ctx), name="pkg-heartbeat-folder")
    task.add_done_callback(_report_end)
    return task
