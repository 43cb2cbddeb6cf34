"""Devices that report themselves stale are counted, and never count as converged."""

from __future__ import annotations

import datetime as dt

from rollout_world import T0

from pkg_operator.rollout.coverage import DeviceReport, fold
from pkg_operator.rollout.render import coverage, coverage_text
from pkg_operator.rollout.spec import Coverage


def _device(device: str, *, stale: bool) -> DeviceReport:
    return DeviceReport(
        device_id=device,
        target="router",
        region="global",
        version="rules@1.4.0",
        last_seen=T0,
        policy_stale=stale,
    )


def test_a_stale_device_is_targeted_but_never_on_its_intended_version() -> None:
    covered, _ = fold(
        [_device("a", stale=False), _device("b", stale=True)],
        target="router",
        region="global",
        deployment_uid="uid",
        stable_version="rules@1.4.0",
        canary_version=None,
        weight=0.0,
        ttl_seconds=30,
        step_started_at=None,
        now=T0 + dt.timedelta(seconds=1),
    )
    assert (covered.targeted, covered.on_intended, covered.policy_stale) == (2, 1, 1)
    assert coverage(covered)["policyStale"] == 1
    assert "1 past their maximum staleness" in coverage_text(covered, Coverage(min_percent=100))
