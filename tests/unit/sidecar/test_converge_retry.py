"""A convergence that failed for a reason that may pass asks the listener for a retry soon.

The sidecar's resync loop retries within seconds (with back-off) while the converger
says ``retry_pending``, instead of at the next periodic resync, 30 s by default (chaos
scenario partition/sidecar-postgres-only/new-snapshot). Here the manager has no
PostgreSQL at all: loading a snapshot it does not hold fails, transiently.
"""

from __future__ import annotations

from sidecar_snapshots import snapshot_for

from evaluator_sidecar.sidecar.manager import PKGManager
from evaluator_sidecar.signals import DesiredState, SnapshotRef


def manager() -> PKGManager:
    return PKGManager(None, None, env="prod", device_id="unit-retry")  # type: ignore[arg-type]


async def test_a_snapshot_that_cannot_be_loaded_yet_asks_for_a_retry_until_it_runs() -> None:
    m = manager()
    converger = m._converger
    ref = SnapshotRef("rules@9.0.0", None, None)
    converger.tracker.merge(DesiredState(epoch=5, env="prod", stable=ref))

    assert not await converger.converge("redis", fresh=True)
    assert converger.retry_pending

    await m.activate_snapshot(snapshot_for("rules@9.0.0"))
    assert await converger.converge("resync", fresh=True)
    assert not converger.retry_pending
