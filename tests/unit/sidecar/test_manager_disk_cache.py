"""The disk cache of last good snapshots: JSON files, atomic, checked on every read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sidecar_snapshots import snapshot_for

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar.cache import SnapshotDiskCache


def test_a_stored_snapshot_reads_back_equal(tmp_path: Path) -> None:
    cache = SnapshotDiskCache(tmp_path)
    snap = snapshot_for("rules@1.4.0", snapshot_id=7)
    cache.store(snap, epoch=3, cohort="canary", activated_at=123.0)
    assert cache.load("rules@1.4.0") == snap
    active = cache.load_active()
    assert active is not None
    assert (active.snapshot, active.epoch, active.cohort, active.activated_at) == (
        snap,
        3,
        "canary",
        123.0,
    )


def test_wasm_bytes_survive_as_base64_json(tmp_path: Path) -> None:
    cache = SnapshotDiskCache(tmp_path)
    snap = PKGSnapshotData(
        id=1,
        version="opa@1",
        engine="wasm",
        wasm_artifact=b"\x00asm\x01\x00\xff",
        checksum=None,
        rules=[],
    )
    path = cache.store(snap)
    body = json.loads(path.read_text())  # plain JSON, nothing executable
    assert isinstance(body["snapshot"]["wasm_artifact"], str)
    assert cache.load("opa@1") == snap


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_a_damaged_file_is_refused_not_loaded(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = SnapshotDiskCache(tmp_path)
    path = cache.store(snapshot_for("rules@1.4.0"))
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    else:
        path.write_text(text.replace("high_priority_vip", "high_priority_vIp"))
    assert cache.load("rules@1.4.0") is None
    assert cache.load_active() is None
    assert "snapshot cache file" in caplog.text


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    cache = SnapshotDiskCache(tmp_path)
    for i in range(3):
        cache.store(snapshot_for(f"rules@1.{i}.0"))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_old_snapshots_are_pruned_but_never_the_active_one(tmp_path: Path) -> None:
    cache = SnapshotDiskCache(tmp_path, keep=2)
    for i in range(4):
        cache.store(snapshot_for(f"rules@1.{i}.0"))
    assert cache.load("rules@1.0.0") is None
    assert cache.load("rules@1.3.0") is not None
    cache.mark_active("rules@1.2.0")
    cache.store(snapshot_for("rules@1.4.0"), active=False)
    active = cache.load_active()
    assert active is not None
    assert active.snapshot.version == "rules@1.2.0"


def test_an_empty_cache_has_nothing_active(tmp_path: Path) -> None:
    assert SnapshotDiskCache(tmp_path / "absent").load_active() is None
