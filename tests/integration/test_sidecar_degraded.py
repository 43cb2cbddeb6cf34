"""Degraded modes of a real pkg-sidecar: PostgreSQL down at start, with and without a disk cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sidecar_fixtures import (
    Sidecar,
    create_database,
    drop_database,
    spec,
    store_snapshots,
    wait_for,
)

from pkg_testbed.postgres import PostgresServer
from pkg_testbed.procs import free_port
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration


def dead_database_url() -> str:
    """A PostgreSQL URL where nothing listens: the database is down."""
    return f"postgresql://pkg@127.0.0.1:{free_port()}/pkg"


def test_postgres_down_at_start_serves_the_last_good_snapshot_from_disk(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path: Path,
) -> None:
    dsn = create_database(postgres_server, pkg_template_db)
    try:
        store_snapshots(dsn, [spec("rules@2.0.0")], promote="rules@2.0.0")
        first = Sidecar(
            tmp_path,
            device_id="cache-1",
            database_url=dsn,
            redis_url=redis_server.url(),
            target="cachetest",
        ).start()
        try:
            wait_for(lambda: first.version() == "rules@2.0.0", timeout=8, what="first load")
        finally:
            first.stop()
    finally:
        drop_database(postgres_server, dsn)

    # Same device (same cache folder), PostgreSQL unreachable.
    second = Sidecar(
        tmp_path,
        device_id="cache-1",
        database_url=dead_database_url(),
        redis_url=redis_server.url(),
        target="cachetest",
    ).start()
    try:
        wait_for(lambda: second.version() == "rules@2.0.0", timeout=10, what="served from disk")
        assert second.evaluated_version() == "rules@2.0.0"
        health = second.health()
        assert health["serving_from_disk_cache"] is True
        assert health["db_connected"] is False
        assert health["degraded_mode"] is True
        assert health["healthy"] is True
        assert second.get("/readyz")[0] == 200
        assert "pkg_degraded_mode 1.0" in second.get("/metrics")[1]
    finally:
        second.stop()


def test_postgres_down_and_no_cache_runs_without_policy_and_says_so(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    sidecar = Sidecar(
        tmp_path,
        device_id="nocache-1",
        database_url=dead_database_url(),
        redis_url=redis_server.url(),
        target="nocachetest",
    ).start()
    try:
        wait_for(
            lambda: sidecar.health()["last_error"] is not None, timeout=10, what="error reported"
        )
        health = sidecar.health()
        assert health["healthy"] is False
        assert health["active_version"] is None
        assert "PostgreSQL unavailable" in health["last_error"]
        status, body = sidecar.post("/v1/evaluate", {"tags": ["vip"]})
        assert status == 503
        assert "no policy snapshot is loaded" in body["error"]["message"]
        assert sidecar.get("/readyz")[0] == 503
        assert sidecar.get("/healthz")[0] == 200  # alive: restarting would not help
    finally:
        sidecar.stop()


def test_a_bad_setting_stops_the_start_with_one_clear_paragraph(tmp_path: Path) -> None:
    sidecar = Sidecar(
        tmp_path,
        device_id="badcfg",
        database_url="postgresql://pkg@127.0.0.1:1/pkg",
        redis_url="redis://127.0.0.1:1/0",
        extra={"PKG_HTTP_PORT": "eighty"},
    )
    sidecar.start(wait=False)
    assert sidecar.proc is not None
    assert sidecar.proc.wait(timeout=20) == 2
    log = sidecar.log()
    assert "PKG_HTTP_PORT='eighty' is not valid" in log
    assert "Traceback" not in log
