"""FleetConverged: what the live heartbeats say, never more."""

from __future__ import annotations

from pkg_operator.levels.fleet import DeviceReport, fleet_view

V = "rules@2.0.0"


def r(device: str, version: str | None, cohort: str = "stable") -> DeviceReport:
    return DeviceReport(device, version, cohort)


def test_no_live_device_is_unknown_not_true() -> None:
    view = fleet_view(V, "prod", [])
    assert (view.status, view.reason) == ("Unknown", "NoLiveDevices")
    assert view.summary["liveDevices"] == 0


def test_all_devices_on_the_active_version_is_true() -> None:
    view = fleet_view(V, "prod", [r("a", V), r("b", V)])
    assert (view.status, view.reason, view.message) == (
        "True",
        "AllDevicesConverged",
        "2 of 2 devices run rules@2.0.0",
    )


def test_devices_behind_say_how_many_and_on_what() -> None:
    view = fleet_view(V, "prod", [r("a", V), r("b", "rules@1.0.0"), r("c", None)])
    assert view.status == "False"
    assert view.reason == "DevicesBehind"
    assert view.message.startswith("1 of 3 devices run rules@2.0.0; ")
    assert "1 run rules@1.0.0" in view.message
    assert view.summary["others"] == [
        {"version": "(none)", "devices": 1},
        {"version": "rules@1.0.0", "devices": 1},
    ]


def test_manual_overrides_are_counted_and_named() -> None:
    view = fleet_view(V, "prod", [r("a", V), r("b", "rules@9.0.0", "manual")])
    assert view.status == "False"
    assert view.summary["manual"] == 1
    assert "(1 under an activate: override)" in view.message
    on_it = fleet_view(V, "prod", [r("a", V, "manual")])
    assert on_it.status == "True"
    assert on_it.summary["manual"] == 1


def test_a_device_counts_once() -> None:
    view = fleet_view(V, "prod", [r("a", "rules@1.0.0"), r("a", V)])
    assert view.summary["liveDevices"] == 1
    assert view.status == "True"
