"""Fold the sidecars' heartbeats from Redis into ``pkg_device_versions``, in batches.

Sidecars append heartbeats to the stream ``pkg:heartbeats``; the operator reads
it through the consumer group ``pkg-operator`` (so replicas share the work and
none reads an entry twice), keeps the newest beat per device of each batch,
writes the batch in ONE statement, and only then acknowledges the entries: a
crash between the two re-delivers them, and the database keeps the newest beat
per device whatever the order, so nothing is lost or double counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Sequence

from evaluator_sidecar.db.models import DeviceHeartbeat
from evaluator_sidecar.signals import Heartbeat, backoff_delay
from pkg_operator.context import OperatorContext

__all__ = ["newest_per_device", "start_folder", "to_row"]

log = logging.getLogger(__name__)


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
    )


def newest_per_device(beats: Sequence[Heartbeat]) -> list[Heartbeat]:
    """One beat per device: its newest in this batch (a batch may hold several)."""
    newest: dict[str, Heartbeat] = {}
    for beat in beats:
        seen = newest.get(beat.device_id)
        if seen is None or beat.ts >= seen.ts:
            newest[beat.device_id] = beat
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
    beats = newest_per_device([beat for _, beat in entries])
    await ctx.db.update_device_heartbeats([to_row(beat) for beat in beats])
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
        except Exception:
            failures += 1
            delay = backoff_delay(failures, base=0.5, cap=30.0)
            log.exception(
                "folding heartbeats failed (attempt %d); retrying in %.1fs", failures, delay
            )
            await asyncio.sleep(delay)


def start_folder(ctx: OperatorContext) -> asyncio.Task[None]:
    return asyncio.create_task(_fold_forever(ctx), name="pkg-heartbeat-folder")
