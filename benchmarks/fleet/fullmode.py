"""The sidecar as a pod runs it (PostgreSQL and Redis): idle RSS, cold start, push propagation.

Owned by the sidecar-footprint benchmarks (``bench_footprint``). Starts the test
bed's PostgreSQL and Redis (:class:`pkg_testbed.stack.Stack`, no Kubernetes),
migrates, stores seeded snapshots with the store's own write path, promotes the
first, and runs one ``pkg-sidecar``. Versions are then activated by the seed's
plain ``PUBLISH pkg_updates "activate:<version>"``; the propagation time is from
the ``PUBLISH`` to ``/v1/metadata`` naming the version (polled every 2 ms).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet.opa_rules import generate_rules
from benchmarks.fleet.process_harness import (
    cpu_seconds,
    free_port,
    http_json,
    load,
    rss_mib,
    sidecar_command,
    stop,
    wait_http,
)

__all__ = ["measure_full_mode"]

SETTLE_S = 1.0


async def _store(dsn: str, specs: list[dict[str, Any]]) -> None:
    from evaluator_sidecar.store.client import PKGClient  # noqa: PLC0415
    from evaluator_sidecar.store.migrations import apply_migrations  # noqa: PLC0415

    await apply_migrations(dsn)
    async with PKGClient(dsn, env="dev", max_size=2) as client:
        first = None
        for spec in specs:
            stored: Any = await client.store_snapshot_spec(spec)
            snapshot_id = stored if isinstance(stored, int) else stored.id
            first = first if first is not None else snapshot_id
        assert first is not None
        outcome = await client.validate_snapshot(first)
        if not outcome.success:
            raise RuntimeError(f"validating the first snapshot failed: {outcome}")
        await client.promote_snapshot(first, reason="footprint benchmark")


async def _publish(url: str, version: str) -> None:
    from redis.asyncio import Redis  # noqa: PLC0415

    from evaluator_sidecar.signals import CHANNEL  # noqa: PLC0415

    client = Redis.from_url(url)
    try:
        await client.publish(CHANNEL, f"activate:{version}")
    finally:
        await client.aclose()


def _activate(port: int, url: str, version: str, proc: subprocess.Popen[bytes]) -> float:
    """PUBLISH ``activate:<version>``; ms until the sidecar serves it."""
    t0 = time.perf_counter()
    asyncio.run(_publish(url, version))
    while time.perf_counter() - t0 < 60:
        if proc.poll() is not None:
            raise RuntimeError("the sidecar exited")
        try:
            _, meta = http_json(port, "/v1/metadata", timeout=30)
        except OSError:
            continue
        if isinstance(meta, dict) and meta.get("version") == version:
            return (time.perf_counter() - t0) * 1000
        time.sleep(0.002)
    raise TimeoutError(f"the sidecar did not serve {version} within 60 s of the PUBLISH")


def measure_full_mode(work: Path, swaps: int) -> dict[str, Any]:
    """RSS and cold start of a sidecar on PostgreSQL + Redis, and push propagation."""
    from pkg_testbed.stack import Stack  # noqa: PLC0415 - the test bed is not a dependency

    large = [generate_rules(1000, seed=100 + n, version=f"full@1000.{n}.0") for n in (1, 2, 3)]
    small = [generate_rules(13, seed=700 + n, version=f"full@13.{n}.0") for n in range(swaps)]
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # PostgreSQL runs as its own user when we are root: it must get in
    stack = Stack(work / "stack")
    proc = None
    try:
        stack.start(kube=False)
        env = stack.env()
        asyncio.run(_store(env["PKG_DATABASE_URL"], [*large, *small]))
        port = free_port()
        proc = subprocess.Popen(
            sidecar_command(),
            env={
                **os.environ,
                **env,
                "PKG_ENV": "dev",
                "PKG_HTTP_PORT": str(port),
                "PKG_CACHE_DIR": str(work / "sidecar-cache"),
                "PKG_LOG_LEVEL": "WARNING",
                "PKG_DEVICE_ID": "footprint-full",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        t0 = time.perf_counter()
        ready = wait_http(port, "/readyz", proc)
        cold = {"ms": round((ready - t0) * 1000, 1), "cpu_ms": round(cpu_seconds(proc.pid) * 1000)}
        time.sleep(SETTLE_S)
        rss = [rss_mib(proc.pid)]
        for spec in large[1:]:
            _activate(port, env["PKG_REDIS_URL"], spec["version"], proc)
            time.sleep(SETTLE_S)
            rss.append(rss_mib(proc.pid))
        loads, pushes = [], []
        for spec in small:  # small snapshots: the compile does not hide the signal path
            loads.append(load()[0])
            pushes.append(_activate(port, env["PKG_REDIS_URL"], spec["version"], proc))
            time.sleep(0.2)
        return {"cold": cold, "rss": rss, "push_ms": pushes, "load": max(loads)}
    finally:
        stop(proc)
        stack.stop()
