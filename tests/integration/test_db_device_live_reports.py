"""A device's latest activation error, staleness and prepared version in PostgreSQL.

The heartbeat folder writes them with the rest of each device's latest heartbeat, in
the same one-statement batch, so that a rollout tick reads everything it needs about
the devices from one query (it used to scan every heartbeat key in Redis per tick).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evaluator_sidecar.signals import Heartbeat
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.models import DeviceHeartbeat
from pkg_operator.heartbeats import to_row

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC) - timedelta(minutes=5)


def _beat(device: str, at: datetime, **state: object) -> DeviceHeartbeat:
    return DeviceHeartbeat(
        device, "router", target="live-reports", environment="prod", seen_at=at, **state
    )


async def _row(client: PKGClient, device: str) -> dict[str, object]:
    rows = await client.get_device_versions(target="live-reports", environment="prod")
    return next(r for r in rows if r["device_id"] == device)


async def test_the_latest_report_s_error_staleness_and_prepared_version_are_kept(
    client: PKGClient,
) -> None:
    await client.update_device_heartbeats(
        [
            _beat(
                "lr-1",
                T0,
                last_error="fixtures failed",
                policy_stale=True,
                prepared_version="rules@2.0.0",
            ),
            _beat("lr-2", T0),
        ]
    )
    row = await _row(client, "lr-1")
    assert (row["last_error"], row["policy_stale"], row["prepared_version"]) == (
        "fixtures failed",
        True,
        "rules@2.0.0",
    )
    other = await _row(client, "lr-2")
    assert (other["last_error"], other["policy_stale"], other["prepared_version"]) == (
        None,
        None,
        None,
    )


async def test_a_newer_report_without_them_clears_them_and_an_older_one_changes_nothing(
    client: PKGClient,
) -> None:
    await client.update_device_heartbeats(
        [_beat("lr-3", T0, last_error="refused", policy_stale=True, prepared_version="v2")]
    )
    # A late batch with an older report leaves the newer state alone...
    await client.update_device_heartbeats(
        [_beat("lr-3", T0 - timedelta(seconds=10), last_error="older")]
    )
    assert (await _row(client, "lr-3"))["last_error"] == "refused"
    # ...and the device's next beat, healthy again, clears it: it is the latest state,
    # not a history.
    await client.update_device_heartbeats([_beat("lr-3", T0 + timedelta(seconds=10))])
    row = await _row(client, "lr-3")
    assert (row["last_error"], row["policy_stale"], row["prepared_version"]) == (None, None, None)


async def test_the_folder_writes_what_the_sidecar_reported(client: PKGClient) -> None:
    beat = Heartbeat(
        device_id="lr-4",
        device_type="router",
        env="prod",
        target="live-reports",
        region="global",
        version="rules@1.0.0",
        snapshot_id=None,
        checksum=None,
        epoch=3,
        cohort="stable",
        last_error="snapshot rules@2.0.0 changed in PostgreSQL",
        stale=True,
        prepared="rules@2.0.0",
        ts=T0.timestamp(),
    )
    await client.update_device_heartbeats([to_row(beat)])
    row = await _row(client, "lr-4")
    assert row["last_error"] == "snapshot rules@2.0.0 changed in PostgreSQL"
    assert row["policy_stale"] is True
    assert row["prepared_version"] == "rules@2.0.0"
