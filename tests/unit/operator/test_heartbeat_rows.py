"""The heartbeat folder keeps one beat per device of each environment, with its environment."""

from __future__ import annotations

from evaluator_sidecar.signals import Heartbeat
from pkg_operator.heartbeats import newest_per_device, to_row


def beat(device: str, env: str, version: str, ts: float) -> Heartbeat:
    return Heartbeat(
        device_id=device,
        device_type="router",
        env=env,
        target="router",
        region="eu",
        version=version,
        snapshot_id=None,
        checksum=None,
        epoch=1,
        cohort="stable",
        ts=ts,
    )


def test_the_same_device_name_in_two_environments_is_two_devices() -> None:
    beats = [
        beat("r1", "prod", "rules@1", 10.0),
        beat("r1", "staging", "rules@1-s", 11.0),
        beat("r1", "prod", "rules@2", 12.0),
    ]
    newest = sorted((b.env, b.version) for b in newest_per_device(beats))
    assert newest == [("prod", "rules@2"), ("staging", "rules@1-s")]


def test_a_row_carries_the_environment_the_sidecar_reports() -> None:
    row = to_row(beat("r1", "staging", "rules@1-s", 10.0))
    assert (row.environment, row.device_id, row.version) == ("staging", "r1", "rules@1-s")
