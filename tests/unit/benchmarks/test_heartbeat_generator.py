"""The fleet benchmarks' heartbeat generator: each device beats once per interval, at its
own phase, in the sidecar's own wire form; a fleet change is reported by the devices'
next beats."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/ is not installed

from benchmarks.fleet.heartbeats import FleetGenerator, due, make_fleet
from evaluator_sidecar.signals import Heartbeat


def test_every_device_beats_once_per_interval_whatever_the_tick() -> None:
    fleet = make_fleet(1000, prefix="d", version="v1", interval=10.0)
    for tick in (0.05, 0.37, 1.0):
        counts: Counter[int] = Counter()
        t = -1e-9  # as the generator starts: a phase of 0 beats at once
        while t < 30.0 - 1e-9:
            end = min(t + tick, 30.0 - 1e-9)
            counts.update(due(fleet, start=0.0, t0=t, t1=end, interval=10.0))
            t = end
        assert counts == dict.fromkeys(range(1000), 3)


def test_beats_are_spread_evenly_over_the_interval() -> None:
    fleet = make_fleet(10_000, prefix="d", version="v1", interval=10.0)
    per_second = [
        len(due(fleet, start=0.0, t0=float(s), t1=float(s + 1), interval=10.0)) for s in range(10)
    ]
    assert min(per_second) >= 999
    assert max(per_second) <= 1001


def test_a_beat_is_the_sidecars_wire_form_with_growing_totals() -> None:
    gen = FleetGenerator(make_fleet(2, prefix="d", version="v1", interval=10.0), "prod", "t", "g")
    first = Heartbeat.from_json(gen.beat(gen.devices[0], 100.0).to_json())
    second = Heartbeat.from_json(gen.beat(gen.devices[0], 110.0).to_json())
    assert (first.device_id, first.env, first.target, first.version) == (
        "d-00000",
        "prod",
        "t",
        "v1",
    )
    assert first.totals is not None
    assert second.totals is not None
    assert second.totals.requests > first.totals.requests
    assert first.process_id == second.process_id


def test_a_change_is_reported_once_every_changed_device_has_beaten() -> None:
    gen = FleetGenerator(make_fleet(4, prefix="d", version="v1", interval=10.0), "prod", "t", "g")
    assert gen.change([1, 2], version="v2", cohort="canary") == 2
    assert gen.change_pending == 2
    assert gen.change_reported_at is None
    assert [gen.devices[i].version for i in range(4)] == ["v1", "v2", "v2", "v1"]


def test_the_soonest_devices_are_those_whose_next_beat_comes_first() -> None:
    gen = FleetGenerator(make_fleet(10, prefix="d", version="v1", interval=10.0), "prod", "t", "g")
    # Device i beats at i seconds into each interval; 3.5 s in, 4 then 5 come next.
    assert gen.soonest(2, now=3.5, among=range(10)) == [4, 5]
    assert gen.soonest(2, now=9.5, among=[0, 1, 9]) == [0, 1]
