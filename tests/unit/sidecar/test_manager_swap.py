"""The manager in-process (no servers): atomic swaps under load, self-tests, rollback, disk."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sidecar_snapshots import FACTS, snapshot_for

from evaluator_sidecar.sidecar.manager import ActivationError, PKGManager


def manager(**kwargs: object) -> PKGManager:
    return PKGManager(None, None, env="prod", device_id="unit-1", **kwargs)  # type: ignore[arg-type]


def metric(m: PKGManager, name: str) -> float:
    for line in generate_latest(m.metrics.registry).decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class TestSwapUnderLoad:
    async def test_evaluation_never_fails_while_swapping_every_100ms(self) -> None:
        m = manager()
        versions = [f"rules@1.{i}.0" for i in range(5)]
        snapshots = [snapshot_for(v) for v in versions]
        await m.activate_snapshot(snapshots[0])
        stop = threading.Event()
        seen: set[str] = set()
        failures: list[BaseException] = []
        count = 0

        def evaluate_forever() -> None:
            nonlocal count
            while not stop.is_set():
                try:
                    evaluator = m.get_active_evaluator()
                    assert evaluator is not None
                    result = evaluator.evaluate(FACTS)
                    # The result is internally consistent: the rule's params name the version.
                    assert result["subtasks"][0]["params"]["version"] == result["snapshot"]
                    seen.add(result["snapshot"])
                    count += 1
                except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
                    failures.append(exc)

        worker = threading.Thread(target=evaluate_forever)
        worker.start()
        try:
            for i in range(1, 21):  # 20 swaps, 100 ms apart
                await asyncio.sleep(0.1)
                await m.activate_snapshot(snapshots[i % len(snapshots)])
        finally:
            stop.set()
            worker.join()
        assert failures == []
        assert seen == set(versions)
        assert count > 1000
        assert m.get_health_status()["cached_versions_count"] == 3

    async def test_get_active_evaluator_is_fast_enough_for_the_hot_path(self) -> None:
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.0.0"))
        n = 100_000
        started = time.perf_counter()
        for _ in range(n):
            m.get_active_evaluator()
        assert (time.perf_counter() - started) / n < 5e-6


class TestSelfTest:
    async def test_failing_fixtures_keep_the_current_evaluator_and_are_reported(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        caplog.set_level(logging.INFO, logger="evaluator_sidecar.sidecar.manager")
        with pytest.raises(ActivationError, match="failed 1 of 1 fixtures") as info:
            await m.activate_snapshot(snapshot_for("rules@1.5.0", good_fixtures=False))
        assert info.value.reason == "fixtures_failed"
        active = m.get_active_evaluator()
        assert active is not None
        assert active.version == "rules@1.4.0"
        health = m.get_health_status()
        assert health["activation_failures"] == 1
        assert "vip-escalates" in health["last_error"]
        assert health["degraded_mode"] is True
        assert metric(m, "pkg_fixture_failures_total") == 1
        assert metric(m, "pkg_activation_failures_total") == 1
        events = [getattr(r, "event", None) for r in caplog.records]
        assert "snapshot_activation_failed" in events

    async def test_self_test_can_be_turned_off(self) -> None:
        m = manager(self_test=False)
        await m.activate_snapshot(snapshot_for("rules@1.5.0", good_fixtures=False))
        assert m.get_metadata()["version"] == "rules@1.5.0"

    async def test_an_unloadable_snapshot_keeps_the_previous_one(self) -> None:
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        with pytest.raises(ActivationError, match="is not a number") as info:
            await m.activate_snapshot(snapshot_for("rules@1.5.0", broken=True))
        assert info.value.reason == "load_error"
        assert m.get_metadata()["version"] == "rules@1.4.0"

    async def test_a_success_clears_the_degraded_state(self) -> None:
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        with pytest.raises(ActivationError):
            await m.activate_snapshot(snapshot_for("rules@1.5.0", broken=True))
        await m.activate_snapshot(snapshot_for("rules@1.6.0"))
        health = m.get_health_status()
        assert health["last_error"] is None
        assert health["degraded_mode"] is False

    async def test_another_environments_snapshot_is_refused(self) -> None:
        m = manager()
        with pytest.raises(ActivationError, match="belongs to env 'staging'"):
            await m.activate_snapshot(snapshot_for("rules@1.5.0", env="staging"))


class TestLifecycleEvents:
    async def test_activation_logs_the_seeds_structured_events(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="evaluator_sidecar.sidecar.manager")
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.3.0"))
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        records = {getattr(r, "event", None): r for r in caplog.records}
        assert records["snapshot_load_start"].version == "rules@1.4.0"  # type: ignore[attr-defined]
        activated = records["snapshot_activated"]
        assert activated.version == "rules@1.4.0"  # type: ignore[attr-defined]
        assert activated.previous_version == "rules@1.3.0"  # type: ignore[attr-defined]
        assert activated.swap_duration_ms >= 0  # type: ignore[attr-defined]
        assert isinstance(activated.timestamp, float)  # type: ignore[attr-defined]


class TestRollbackAndMetadata:
    async def test_recent_versions_stay_cached_for_instant_rollback(self) -> None:
        m = manager()
        for v in ("rules@1.1.0", "rules@1.2.0", "rules@1.3.0", "rules@1.4.0"):
            await m.activate_snapshot(snapshot_for(v))
        meta = m.get_metadata()
        assert meta["cached_versions"] == ["rules@1.4.0", "rules@1.3.0", "rules@1.2.0"]
        assert m.get_evaluator_by_version("rules@1.1.0") is None
        previous = m.get_evaluator_by_version("rules@1.3.0")
        assert previous is not None
        assert previous.evaluate(FACTS)["snapshot"] == "rules@1.3.0"
        started = time.perf_counter()
        await m.activate_snapshot(snapshot_for("rules@1.3.0"))
        assert m.get_active_evaluator() is previous  # reused, not rebuilt
        assert time.perf_counter() - started < 0.05
        assert metric(m, "pkg_hotswap_count_total") == 5
        assert metric(m, 'pkg_active_version{version="rules@1.3.0"}') == 1
        assert metric(m, "pkg_cached_versions_count") == 3

    async def test_metadata_and_health_carry_the_seeds_fields(self) -> None:
        m = manager()
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        meta = m.get_metadata()
        for key in (
            "version", "loaded_at", "engine", "loaded", "error", "last_activation",
            "cached_versions", "cache_size", "cache_limit", "healthy", "degraded_mode",
            "last_error",
        ):  # fmt: skip
            assert key in meta
        health = m.get_health_status()
        for key in (
            "healthy", "degraded_mode", "last_error", "last_activation", "active_version",
            "cached_versions_count", "redis_connected", "db_connected", "desired_epoch",
            "cohort", "snapshot_age_seconds",
        ):  # fmt: skip
            assert key in health
        assert (meta["version"], meta["engine"], meta["loaded"]) == ("rules@1.4.0", "native", True)
        assert health["healthy"] is True


class TestNoPolicyAndDiskCache:
    async def test_without_any_snapshot_the_sidecar_is_unhealthy(self, tmp_path: Path) -> None:
        m = manager(cache_dir=tmp_path)
        await m.start()
        try:
            health = m.get_health_status()
            assert health["healthy"] is False
            assert health["ready"] is False
            assert m.get_active_evaluator() is None
        finally:
            await m.stop()

    async def test_the_last_good_snapshot_is_served_from_disk(self, tmp_path: Path) -> None:
        first = manager(cache_dir=tmp_path)
        await first.activate_snapshot(snapshot_for("rules@1.4.0"))
        second = manager(cache_dir=tmp_path)
        await second.start()
        try:
            active = second.get_active_evaluator()
            assert active is not None
            assert active.evaluate(FACTS)["snapshot"] == "rules@1.4.0"
            health = second.get_health_status()
            assert health["serving_from_disk_cache"] is True
            assert health["degraded_mode"] is True
            assert health["healthy"] is True
        finally:
            await second.stop()

    async def test_max_snapshot_age_makes_a_stale_snapshot_unready(self, tmp_path: Path) -> None:
        now = [1000.0]
        m = manager(max_snapshot_age=30.0, clock=lambda: now[0])
        await m.activate_snapshot(snapshot_for("rules@1.4.0"))
        assert m.is_ready()
        now[0] += 31
        assert not m.is_ready()
        assert m.get_health_status()["snapshot_age_seconds"] == 31.0


class TestGlobalManager:
    async def test_initialize_builds_from_settings_once_and_reports_what_is_down(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from evaluator_sidecar import get_global_pkg_manager, initialize_global_pkg_manager
        from evaluator_sidecar.sidecar.process import set_global_pkg_manager
        from pkg_testbed.procs import free_port

        # Nothing listens on these ports: both servers are "down".
        monkeypatch.setenv("PKG_DATABASE_URL", f"postgresql://pkg@127.0.0.1:{free_port()}/pkg")
        monkeypatch.setenv("PKG_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        monkeypatch.setenv("PKG_CACHE_DIR", str(tmp_path))
        monkeypatch.setenv("PKG_DEVICE_ID", "global-1")
        set_global_pkg_manager(None)
        m = await initialize_global_pkg_manager()
        try:
            assert get_global_pkg_manager() is m
            assert await initialize_global_pkg_manager() is m
            health = m.get_health_status()
            assert (health["healthy"], health["redis_connected"], health["db_connected"]) == (
                False,
                False,
                False,
            )
            assert m.device_id == "global-1"
        finally:
            await m.stop()
            set_global_pkg_manager(None)
