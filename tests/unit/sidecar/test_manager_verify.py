"""Refusals the sidecar must report truthfully: a tampered disk cache, a store that refuses
the rows it read, and a start from the disk cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sidecar_snapshots import snapshot_for

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache
from evaluator_sidecar.sidecar.manager import PKGManager
from evaluator_sidecar.signals import DesiredState, SnapshotRef
from evaluator_sidecar.store.errors import ChecksumMismatchError


class DownClient:
    """PostgreSQL down: every read fails the way the pool fails."""

    async def get_active_snapshot(self) -> PKGSnapshotData | None:
        raise ConnectionRefusedError("connection refused (127.0.0.1:1)")

    async def get_snapshot_by_version(self, version: str) -> PKGSnapshotData | None:
        raise ConnectionRefusedError("connection refused (127.0.0.1:1)")


class TamperedClient:
    """The store read rows that no longer hash to what was stored."""

    async def get_active_snapshot(self) -> PKGSnapshotData | None:
        raise ChecksumMismatchError(
            "snapshot 'rules@1.4.0' (id 1) was changed in PostgreSQL after it was stored",
            version="rules@1.4.0",
        )

    async def get_snapshot_by_version(self, version: str) -> PKGSnapshotData | None:
        return await self.get_active_snapshot()


def _manager(client: Any, cache_dir: Path) -> PKGManager:
    return PKGManager(client, None, env="prod", device_id="unit-v", cache_dir=cache_dir)


def _tamper(cache_dir: Path) -> None:
    (path,) = (cache_dir / "snapshots").glob("*.json")
    path.write_text(path.read_text().replace("high_priority_vip", "high_priority_vIp"))


async def test_a_tampered_disk_cache_is_reported_as_refused_not_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SnapshotDiskCache(tmp_path).store(snapshot_for("rules@1.4.0"))
    _tamper(tmp_path)
    m = _manager(DownClient(), tmp_path)
    await m.start()
    try:
        health = m.get_health_status()
        assert health["active_version"] is None
        assert "PostgreSQL unavailable" in health["last_error"]
        assert "the last good snapshot in the disk cache was refused" in health["last_error"]
        assert "fails its checksum" in health["last_error"]
        assert health["activation_failures"] == 1
        assert "disk_cache_refused" in caplog.text
        assert "disk_cache_empty" not in caplog.text
    finally:
        await m.stop()


async def test_an_empty_disk_cache_is_still_called_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    m = _manager(DownClient(), tmp_path)
    await m.start()
    try:
        assert "disk_cache_empty" in caplog.text
        assert m.get_health_status()["activation_failures"] == 0
    finally:
        await m.stop()


async def test_rows_the_store_refuses_are_a_permanent_checksum_mismatch(tmp_path: Path) -> None:
    m = _manager(TamperedClient(), tmp_path)
    ok = await m.activate_version("rules@1.4.0")
    assert not ok
    health = m.get_health_status()
    assert health["active_version"] is None
    assert "changed in PostgreSQL after it was stored" in health["last_error"]
    assert health["db_connected"] is True  # PostgreSQL answered; the rows were refused
    assert health["activation_failures"] == 1
    text = "\n".join(
        line
        for line in m.metrics.registry.collect()
        for line in [str(s) for s in line.samples]
        if "checksum_mismatch" in line
    )
    assert "checksum_mismatch" in text


async def test_healthz_says_serving_from_disk_after_a_start_from_the_disk_cache(
    tmp_path: Path,
) -> None:
    """A level names the version, PostgreSQL is down, the disk cache holds it."""
    snap = snapshot_for("rules@1.4.0")
    SnapshotDiskCache(tmp_path).store(snap)
    m = _manager(DownClient(), tmp_path)
    state = DesiredState(
        epoch=4, env="prod", stable=SnapshotRef("rules@1.4.0", None, snap.checksum)
    )
    m._tracker.merge(state)  # what read_levels_at_start would have stored
    await m._converger.converge("startup", fresh=True)
    health = m.get_health_status()
    assert health["active_version"] == "rules@1.4.0"
    assert health["serving_from_disk_cache"] is True
    assert health["degraded_mode"] is True


def test_a_disk_cache_refusal_names_the_file_and_the_hashes(tmp_path: Path) -> None:
    cache = SnapshotDiskCache(tmp_path)
    path = cache.store(snapshot_for("rules@1.4.0"))
    body = json.loads(path.read_text())
    body["snapshot"]["rules"][0]["priority"] = 99
    path.write_text(json.dumps(body))
    assert cache.load("rules@1.4.0") is None
    assert cache.last_refusal is not None
    assert str(path) in cache.last_refusal
    assert body["sha256"] in cache.last_refusal
    assert cache.refusal_reason == "checksum_mismatch"
