"""A heartbeat generator: N simulated devices beating into the real Redis, as sidecars do.

Each device beats once per ``interval`` seconds at its own phase (device ``i`` of ``n``
at ``i * interval / n`` into each interval, so the load is even, as a fleet started
at random times is). A beat is the sidecar's own wire form
(:class:`evaluator_sidecar.signals.Heartbeat`, with cumulative ``totals`` and a process
id, as the current sidecar sends) written exactly as
:meth:`evaluator_sidecar.signals.RedisSignals.write_heartbeat` writes it: the device's
key ``pkg:hb:{env}:{device}`` with its TTL and an entry in the stream ``pkg:heartbeats``.
Only the batching differs: the beats due in one tick go in one pipeline (the commands
Redis runs are the same; a fleet of processes would send them on many connections).

A *fleet change* switches some devices to another version at one instant; each reports
it in its next beat. :class:`FleetGenerator` remembers when the last of them did, the
moment from which Redis holds the whole change.

The schedule and the beats are pure (tested in tests/unit/benchmarks/); :meth:`run` does
the I/O.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evaluator_sidecar.signals import Heartbeat, Totals
from evaluator_sidecar.signals.keys import HEARTBEAT_STREAM, HEARTBEAT_STREAM_MAXLEN, heartbeat_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Device", "FleetGenerator", "due", "make_fleet"]

#: A sidecar's default heartbeat key TTL is three intervals.
TTL_FACTOR = 3


@dataclass
class Device:
    """One simulated sidecar: what it runs and its process's cumulative counters."""

    device_id: str
    phase: float
    version: str
    cohort: str = "stable"
    requests: int = 0
    process_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    process_started: float = field(default_factory=time.time)


def make_fleet(n: int, *, prefix: str, version: str, interval: float) -> list[Device]:
    """``n`` devices on ``version``, their phases spread evenly over one interval."""
    return [
        Device(device_id=f"{prefix}-{i:05d}", phase=i * interval / n, version=version)
        for i in range(n)
    ]


def due(devices: list[Device], *, start: float, t0: float, t1: float, interval: float) -> list[int]:
    """Indexes of the devices whose beat falls in ``(t0, t1]`` (seconds since ``start``).

    Device ``i`` beats at ``start + phase_i + k * interval`` for k = 0, 1, ...; a window
    longer than one interval gives each device once per beat it holds. Phases are sorted
    (``make_fleet``), so the due devices of a short window are found by bisection.
    """
    if t1 <= t0:
        return []
    out: list[int] = []
    phases = [d.phase for d in devices]
    first_k = max(0, math.floor((t0 - interval) / interval))
    last_k = math.floor(t1 / interval)
    for k in range(first_k, last_k + 1):
        low, high = t0 - k * interval, t1 - k * interval  # phase in (low, high]
        if high < 0 or low >= interval:
            continue
        out.extend(range(bisect.bisect_right(phases, low), bisect.bisect_right(phases, high)))
    return out


@dataclass
class FleetGenerator:
    """Drives a fleet's beats into Redis; counts what it wrote."""

    devices: list[Device]
    env: str
    target: str
    region: str
    interval: float = 10.0
    tick: float = 0.05
    beats_written: int = 0
    #: Wall time (epoch s) of the last beat that carried a pending change, and the
    #: devices that have not yet reported theirs.
    change_reported_at: float | None = None
    _pending: set[str] = field(default_factory=set)
    _start: float = 0.0

    def beat(self, device: Device, now: float) -> Heartbeat:
        """The heartbeat ``device`` sends at ``now``: a quiet, healthy sidecar."""
        device.requests += 10
        return Heartbeat(
            device_id=device.device_id,
            device_type="router",
            env=self.env,
            target=self.target,
            region=self.region,
            version=device.version,
            snapshot_id=None,
            checksum=None,
            epoch=1,
            desired_epoch=1,
            cohort=device.cohort,  # type: ignore[arg-type]
            evaluations=10,
            errors=0,
            p99_ms=0.2,
            ts=now,
            process_id=device.process_id,
            process_started=device.process_started,
            totals=Totals(requests=device.requests),
        )

    def change(self, indexes: Iterable[int], *, version: str, cohort: str) -> int:
        """Switch these devices to ``version`` now; each reports it in its next beat."""
        changed = 0
        for i in indexes:
            device = self.devices[i]
            device.version, device.cohort = version, cohort
            self._pending.add(device.device_id)
            changed += 1
        self.change_reported_at = None if changed else time.time()
        return changed

    @property
    def change_pending(self) -> int:
        return len(self._pending)

    def soonest(self, count: int, *, now: float, among: Iterable[int]) -> list[int]:
        """Of ``among``, the ``count`` devices whose next beat comes first after ``now``."""
        elapsed = now - self._start

        def wait(i: int) -> float:
            return (self.devices[i].phase - elapsed) % self.interval

        return sorted(among, key=wait)[:count]

    async def _write(self, redis: Redis, indexes: list[int], now: float) -> None:
        ttl = max(1, round(TTL_FACTOR * self.interval))
        async with redis.pipeline(transaction=False) as pipe:
            for i in indexes:
                device = self.devices[i]
                body = self.beat(device, now).to_json()
                pipe.set(heartbeat_key(self.env, device.device_id), body, ex=ttl)
                pipe.xadd(
                    HEARTBEAT_STREAM, {"hb": body}, maxlen=HEARTBEAT_STREAM_MAXLEN, approximate=True
                )
            await pipe.execute()
        self.beats_written += len(indexes)
        if self._pending:
            self._pending.difference_update(self.devices[i].device_id for i in indexes)
            if not self._pending:
                self.change_reported_at = time.time()

    async def run(self, redis: Redis, stopping: asyncio.Event) -> None:
        """Beat until ``stopping`` is set; every device's first beat within one interval."""
        self._start = time.time()
        last = -1e-9
        while not stopping.is_set():
            now = time.time()
            elapsed = now - self._start
            indexes = due(
                self.devices, start=self._start, t0=last, t1=elapsed, interval=self.interval
            )
            last = elapsed
            if indexes:
                await self._write(redis, indexes, now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.tick)
