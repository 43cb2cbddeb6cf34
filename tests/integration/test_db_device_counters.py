"""Cumulative device counters on PostgreSQL: restarts carried, old reports ignored, baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.counters import DeviceCounters, ShadowDiffRow
from evaluator_sidecar.store.models import DeviceHeartbeat

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _c(device: str, process: str, started: datetime, **counts: int) -> DeviceCounters:
    return DeviceCounters("prod", device, process, started, **counts)


async def _totals(client: PKGClient, device: str) -> dict[str, int]:
    rows = await client.step_counters("no-such-uid", T0, "router", "global", "prod")
    by_device = {r.device_id: r.totals for r in rows}
    return by_device[device]


async def _seen(client: PKGClient, *devices: str) -> None:
    await client.update_device_heartbeats(
        [
            DeviceHeartbeat(d, "router", target="router", region="global", environment="prod")
            for d in devices
        ]
    )


class TestCountersOnlyGrow:
    async def test_a_restart_carries_the_old_process_totals_forward(
        self, client: PKGClient
    ) -> None:
        await _seen(client, "r1")
        await client.update_device_counters([_c("r1", "p1", T0, requests=100, errors=7)])
        await client.update_device_counters(
            [_c("r1", "p2", T0 + timedelta(minutes=1), requests=5, errors=1)]
        )
        totals = await _totals(client, "r1")
        assert (totals["requests"], totals["errors"]) == (105, 8)

    async def test_an_older_report_of_the_same_process_never_lowers_a_counter(
        self, client: PKGClient
    ) -> None:
        await _seen(client, "r2")
        await client.update_device_counters([_c("r2", "p1", T0, requests=100, errors=9)])
        await client.update_device_counters([_c("r2", "p1", T0, requests=60, errors=3)])
        assert (await _totals(client, "r2"))["errors"] == 9

    async def test_a_late_report_of_a_dead_process_is_ignored(self, client: PKGClient) -> None:
        await _seen(client, "r3")
        await client.update_device_counters([_c("r3", "old", T0, requests=50, errors=5)])
        await client.update_device_counters(
            [_c("r3", "new", T0 + timedelta(minutes=1), requests=10, errors=1)]
        )
        await client.update_device_counters([_c("r3", "old", T0, requests=55, errors=6)])
        totals = await _totals(client, "r3")
        assert (totals["requests"], totals["errors"]) == (60, 6)


class TestStepBaselines:
    async def test_the_baseline_is_captured_once_and_a_new_device_counts_from_zero(
        self, client: PKGClient
    ) -> None:
        await _seen(client, "b1")
        await client.update_device_counters([_c("b1", "p", T0, requests=100, errors=10)])
        assert await client.capture_step_baseline("dep", T0, "router", "global", "prod") is True
        await client.update_device_counters([_c("b1", "p", T0, requests=150, errors=30)])
        assert await client.capture_step_baseline("dep", T0, "router", "global", "prod") is False
        await _seen(client, "b2")
        await client.update_device_counters([_c("b2", "q", T0, requests=8, errors=2)])
        rows = {
            r.device_id: r
            for r in await client.step_counters("dep", T0, "router", "global", "prod")
        }
        assert rows["b1"].baseline is not None
        assert rows["b1"].baseline["errors"] == 10
        assert rows["b1"].totals["errors"] == 30
        assert rows["b2"].baseline is None

    async def test_devices_of_other_targets_are_neither_baselined_nor_listed(
        self, client: PKGClient
    ) -> None:
        await client.update_device_heartbeats(
            [
                DeviceHeartbeat(
                    "door1", "door", target="edge:door", region="global", environment="prod"
                )
            ]
        )
        await client.update_device_counters([_c("door1", "p", T0, requests=1)])
        await client.capture_step_baseline("dep2", T0, "router", "global", "prod")
        rows = await client.step_counters("dep2", T0, "router", "global", "prod")
        assert "door1" not in {r.device_id for r in rows}


class TestShadowDiffExamples:
    async def test_an_example_is_stored_once_and_reads_back_as_json(
        self, client: PKGClient
    ) -> None:
        row = ShadowDiffRow(
            deployment_uid="dep3",
            deployment_name="ns/router",
            step_started_at=T0,
            device_id="r1",
            active_version="rules@1.0.0",
            candidate_version="rules@1.1.0",
            differs=("subtasks", "rules"),
            input={"tags": ["vip"]},
            active_output={"subtasks": []},
            candidate_output={"subtasks": [{"name": "x"}]},
            observed_at=T0,
            fingerprint="abc",
        )
        assert await client.record_shadow_diffs([row, row]) == 1
        assert await client.record_shadow_diffs([row]) == 0
        [stored] = await client.get_shadow_diffs(candidate_version="rules@1.1.0")
        assert stored["differs"] == "subtasks,rules"
        assert stored["input"] == {"tags": ["vip"]}
        assert stored["candidate_output"] == {"subtasks": [{"name": "x"}]}
