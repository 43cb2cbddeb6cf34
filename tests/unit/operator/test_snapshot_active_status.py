"""A PolicySnapshot's Active condition set from PostgreSQL by another snapshot's promotion
or by a level repair (``active_status``): by version, whatever its status holds yet."""

from __future__ import annotations

import datetime as dt

from pkg_operator.snapshot.status import active_status

NOW = dt.datetime(2026, 12, 4, 20, 0, tzinfo=dt.UTC)


def _conditions(change: dict[str, object] | None) -> dict[str, tuple[str, str]]:
    assert change is not None
    items = change["conditions"]
    assert isinstance(items, list)
    return {c["type"]: (c["status"], c["reason"]) for c in items}


def test_a_snapshot_whose_handler_has_not_run_yet_is_active_when_postgresql_says_so() -> None:
    # The restarted operator repairs Redis before the snapshot's own handler writes
    # snapshotId: the snapshot must not be called superseded by itself.
    change = active_status(
        {}, version="rules@7", env="dev", active_version="rules@7", generation=1, now=NOW
    )
    assert change is not None
    assert change["activeIn"] == "dev"
    assert _conditions(change) == {"Active": ("True", "Promoted")}


def test_the_other_conditions_are_kept_and_only_active_changes() -> None:
    previous = {
        "activeIn": "dev",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok"},
            {"type": "Active", "status": "True", "reason": "Promoted", "message": "m"},
        ],
    }
    change = active_status(
        previous, version="rules@6", env="dev", active_version="rules@7", generation=1, now=NOW
    )
    assert change is not None
    assert change["activeIn"] is None
    assert _conditions(change) == {"Ready": ("True", "Ready"), "Active": ("False", "Superseded")}


def test_nothing_is_written_when_the_status_already_says_it() -> None:
    first = active_status(
        {}, version="rules@6", env="dev", active_version=None, generation=1, now=NOW
    )
    assert first is not None
    later = NOW + dt.timedelta(minutes=5)
    assert (
        active_status(
            first, version="rules@6", env="dev", active_version=None, generation=1, now=later
        )
        is None
    )
