"""A real pkg-sidecar refuses what it cannot verify, before compiling it, and says why.

A snapshot row changed in PostgreSQL after it was stored, a tampered disk cache, and a
wrong checksum given to the store: each is refused, and the refusal is visible where an
operator looks (``/healthz``, heartbeats, metrics, logs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sidecar_fixtures import (
    Sidecar,
    clear_protocol_keys,
    create_database,
    drop_database,
    run,
    spec,
    store_snapshots,
    wait_for,
    with_signals,
)

from evaluator_sidecar.policy.resource import content_checksum
from evaluator_sidecar.signals import HEARTBEAT_STREAM, RedisSignals
from evaluator_sidecar.store import PKGClient
from evaluator_sidecar.store.errors import ChecksumMismatchError
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.procs import free_port
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration


def _sql(dsn: str, statement: str, *args: Any) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    run(go())


def _heartbeats(url: str, device_id: str) -> list[dict[str, Any]]:
    async def read(signals: RedisSignals) -> list[dict[str, Any]]:
        entries = await signals.redis.xrange(HEARTBEAT_STREAM)
        beats = [json.loads(fields[b"hb"]) for _, fields in entries]
        return [b for b in beats if b["device_id"] == device_id]

    return run(with_signals(url, read))


def test_a_snapshot_row_changed_in_postgres_is_refused_before_activation(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path: Path,
) -> None:
    dsn = create_database(postgres_server, pkg_template_db)
    url = redis_server.url(6)
    clear_protocol_keys(url)
    sidecar = None
    try:
        store_snapshots(dsn, [spec("rules@1.0.0"), spec("rules@2.0.0")], promote="rules@1.0.0")
        sidecar = Sidecar(tmp_path, device_id="verify-1", database_url=dsn, redis_url=url)
        sidecar.start()
        wait_for(lambda: sidecar.version() == "rules@1.0.0", timeout=30, what="v1 active")
        # The VIP rule of 2.0.0 now fires for everyone: changed by SQL, its hash left alone.
        _sql(
            dsn,
            "UPDATE pkg_rule_conditions c SET condition_key = 'guest' FROM pkg_policy_rules r, "
            "pkg_snapshots s WHERE c.rule_id = r.id AND r.snapshot_id = s.id AND s.version = $1",
            "rules@2.0.0",
        )
        run(with_signals(url, lambda s: s.publish_activate("rules@2.0.0")))
        wait_for(
            lambda: "changed in PostgreSQL" in (sidecar.health()["last_error"] or ""),
            timeout=30,
            what="the refusal in /healthz",
        )
        health = sidecar.health()
        assert health["active_version"] == "rules@1.0.0"  # kept what it ran
        assert health["activation_failures"] >= 1
        assert health["db_connected"] is True
        assert "rules@2.0.0" in health["last_error"]
        assert sidecar.evaluated_version() == "rules@1.0.0"
        metrics = sidecar.get("/metrics")[1]
        assert 'pkg_activation_failures_total{reason="checksum_mismatch"} 1.0' in metrics
        log = sidecar.log()
        assert '"error_type": "checksum_mismatch"' in log or "checksum_mismatch" in log
        assert "snapshot_loaded" not in log.split("rules@2.0.0", 1)[1]  # never compiled

        def reported() -> bool:
            beats = _heartbeats(url, "verify-1")
            return any(
                b["activation_failures"] >= 1 and "changed in PostgreSQL" in (b["last_error"] or "")
                for b in beats
            )

        wait_for(reported, timeout=30, what="the refusal in a heartbeat")
    finally:
        if sidecar is not None:
            sidecar.stop()
        clear_protocol_keys(url)
        drop_database(postgres_server, dsn)


def test_a_tampered_disk_cache_is_refused_and_named(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path: Path,
) -> None:
    dsn = create_database(postgres_server, pkg_template_db)
    url = redis_server.url(6)
    clear_protocol_keys(url)
    try:
        store_snapshots(dsn, [spec("rules@3.0.0")], promote="rules@3.0.0")
        first = Sidecar(tmp_path, device_id="tamper-1", database_url=dsn, redis_url=url).start()
        try:
            wait_for(lambda: first.version() == "rules@3.0.0", timeout=30, what="first load")
        finally:
            first.stop()
    finally:
        drop_database(postgres_server, dsn)
    (cached,) = (first.cache_dir / "snapshots").glob("*.json")
    cached.write_text(cached.read_text().replace('"vip"', '"guest"'))

    second = Sidecar(
        tmp_path,
        device_id="tamper-1",
        database_url=f"postgresql://pkg@127.0.0.1:{free_port()}/pkg",
        redis_url=url,
    ).start()
    try:
        wait_for(
            lambda: "disk cache was refused" in (second.health()["last_error"] or ""),
            timeout=30,
            what="the refusal in /healthz",
        )
        health = second.health()
        assert health["active_version"] is None
        assert health["serving_from_disk_cache"] is False
        assert "PostgreSQL unavailable" in health["last_error"]
        assert "fails its checksum" in health["last_error"]
        assert str(cached) in health["last_error"]
        log = second.log()
        assert "disk_cache_refused" in log
        assert "disk_cache_empty" not in log
        metrics = second.get("/metrics")[1]
        assert 'pkg_activation_failures_total{reason="checksum_mismatch"} 1.0' in metrics
    finally:
        second.stop()
        clear_protocol_keys(url)


async def test_the_store_refuses_a_wrong_checksum_from_the_caller(migrated_dsn: str) -> None:
    good = spec("rules@4.0.0")
    wrong = {**good, "checksum": content_checksum(spec("rules@4.0.1"))}
    async with PKGClient(migrated_dsn, env="prod", max_size=2) as client:
        with pytest.raises(ChecksumMismatchError, match="is not the content's"):
            await client.store_snapshot_spec(wrong)
        assert await client.get_snapshot_info(version="rules@4.0.0") is None
        # The right one, given or not, is stored and reads back verified.
        snapshot_id = await client.store_snapshot_spec({**good, "checksum": content_checksum(good)})
        stored = await client.get_snapshot_by_id(snapshot_id)
        assert stored is not None
        assert stored.checksum == content_checksum(good)
