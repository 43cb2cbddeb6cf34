"""What the fleet reports, against what was published: the FleetConverged condition (pure).

It counts only what the live heartbeats say: a device whose heartbeat expired is
not counted at all, and with none live the answer is Unknown, never True.
Devices under an ``activate:<version>`` override report the cohort ``manual``;
they are counted in ``manual`` (and in ``onActive`` only when they run it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DeviceReport", "FleetView", "fleet_view"]

_MAX_OTHERS = 20


@dataclass(frozen=True)
class DeviceReport:
    """One live device's latest heartbeat, as far as convergence goes."""

    device_id: str
    version: str | None
    cohort: str


@dataclass(frozen=True)
class FleetView:
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    summary: dict[str, Any]


def fleet_view(version: str, env: str, reports: Sequence[DeviceReport]) -> FleetView:
    """The FleetConverged condition and ``status.fleet`` of the active snapshot ``version``."""
    newest = {r.device_id: r for r in reports}  # one report per device
    live = len(newest)
    on_active = sum(1 for r in newest.values() if r.version == version)
    manual = sum(1 for r in newest.values() if r.cohort == "manual")
    others = Counter(r.version or "(none)" for r in newest.values() if r.version != version)
    summary: dict[str, Any] = {
        "version": version,
        "liveDevices": live,
        "onActive": on_active,
        "manual": manual,
        "others": [
            {"version": v, "devices": n}
            for v, n in sorted(others.items(), key=lambda item: (-item[1], item[0]))[:_MAX_OTHERS]
        ],
    }
    manual_note = f" ({manual} under an activate: override)" if manual else ""
    if live == 0:
        return FleetView(
            "Unknown", "NoLiveDevices", f"no device of {env} has a live heartbeat", summary
        )
    if on_active == live:
        return FleetView(
            "True",
            "AllDevicesConverged",
            f"{live} of {live} devices run {version}{manual_note}",
            summary,
        )
    shown = ", ".join(f"{n} run {v}" for v, n in others.most_common(3))
    return FleetView(
        "False",
        "DevicesBehind",
        f"{on_active} of {live} devices run {version}; {shown}{manual_note}",
        summary,
    )
