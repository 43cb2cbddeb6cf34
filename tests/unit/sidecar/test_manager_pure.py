"""The manager's pure parts: the evaluator LRU, the desired-state tracker, checksum matching."""

from __future__ import annotations

import pytest
from sidecar_snapshots import snapshot_for

from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.sidecar.manager import DesiredTracker, EvaluatorCache, checksums_match
from evaluator_sidecar.sidecar.metrics import LatencyHistogram
from evaluator_sidecar.signals import DesiredLevels, DesiredState, SnapshotRef


def evaluator(version: str) -> PKGEvaluator:
    return PKGEvaluator(snapshot_for(version))


class TestEvaluatorCache:
    def test_keeps_at_most_three_evicting_the_least_recently_activated(self) -> None:
        cache = EvaluatorCache(3)
        for at, version in enumerate(["a@1", "b@1", "c@1"]):
            assert cache.activate(evaluator(version), float(at)) == []
        # Re-activating a@1 (a rollback) makes it the most recent, so b@1 goes next.
        cache.activate(cache.get("a@1"), 10.0)  # type: ignore[arg-type]
        assert cache.activate(evaluator("d@1"), 11.0) == ["b@1"]
        assert cache.versions() == ["d@1", "a@1", "c@1"]

    def test_eviction_is_by_time_not_by_name(self) -> None:
        cache = EvaluatorCache(2)
        cache.activate(evaluator("rules@9.0.0"), 1.0)
        cache.activate(evaluator("rules@10.0.0"), 2.0)
        assert cache.activate(evaluator("rules@2.0.0"), 3.0) == ["rules@9.0.0"]

    def test_the_latest_activation_is_never_evicted(self) -> None:
        cache = EvaluatorCache(1)
        cache.activate(evaluator("a@1"), 5.0)
        assert cache.activate(evaluator("b@1"), 6.0) == ["a@1"]
        assert "b@1" in cache

    def test_needs_room_for_the_active_evaluator(self) -> None:
        with pytest.raises(ValueError, match="at least"):
            EvaluatorCache(0)


def env_state(epoch: int, version: str) -> DesiredState:
    return DesiredState(epoch=epoch, env="prod", stable=SnapshotRef(version))


def rollout(epoch: int, percent: float) -> DesiredState:
    return DesiredState(
        epoch=epoch,
        env="prod",
        stable=SnapshotRef("rules@1.4.0"),
        target="router",
        region="global",
        deployment="dep-1",
        canary=SnapshotRef("rules@1.5.0"),
        canary_percent=percent,
    )


class TestDesiredTracker:
    def test_starts_on_the_databases_active_snapshot(self) -> None:
        assert DesiredTracker("d").resolution().source == "database"

    def test_takes_newer_states_and_ignores_older_ones(self) -> None:
        t = DesiredTracker("d")
        assert t.merge(env_state(5, "rules@1.5.0"))
        assert not t.merge(env_state(4, "rules@1.3.0"))
        assert not t.merge(env_state(5, "rules@1.3.0"))
        assert t.resolution().ref == SnapshotRef("rules@1.5.0")

    def test_a_resync_reading_the_same_level_changes_nothing(self) -> None:
        t = DesiredTracker("d")
        t.merge(env_state(5, "rules@1.5.0"))
        assert not t.merge_levels(DesiredLevels(env_state(5, "rules@1.5.0")))

    def test_levels_lost_by_redis_do_not_move_the_device_back(self) -> None:
        t = DesiredTracker("d")
        t.merge(env_state(5, "rules@1.5.0"))
        assert not t.merge_levels(DesiredLevels())
        assert t.resolution().ref == SnapshotRef("rules@1.5.0")

    def test_a_manual_activation_holds_until_a_higher_epoch(self) -> None:
        t = DesiredTracker("d")
        t.merge(env_state(5, "rules@1.5.0"))
        t.set_manual("rules@9.9.9")
        r = t.resolution()
        assert (r.ref, r.cohort, r.source) == (SnapshotRef("rules@9.9.9"), "manual", "manual")
        t.merge_levels(DesiredLevels(env_state(5, "rules@1.5.0")))  # a resync
        assert t.resolution().ref == SnapshotRef("rules@9.9.9")
        assert t.merge(env_state(6, "rules@1.6.0"))
        assert t.resolution().ref == SnapshotRef("rules@1.6.0")
        assert t.manual is None

    def test_canary_cohort_follows_the_rollout(self) -> None:
        devices = [f"dev-{i}" for i in range(400)]
        canaries = 0
        for device in devices:
            t = DesiredTracker(device)
            t.merge(rollout(3, 25.0))
            canaries += t.resolution().cohort == "canary"
        assert 60 < canaries < 140


class TestChecksums:
    def test_any_accepted_form_matches(self) -> None:
        hexa = "ab" * 32
        assert checksums_match(f"sha256:{hexa}", hexa.upper())
        assert checksums_match(None, None)
        assert checksums_match(None, hexa)

    def test_a_missing_or_different_checksum_does_not(self) -> None:
        assert not checksums_match("ab" * 32, None)
        assert not checksums_match("ab" * 32, "cd" * 32)
        assert not checksums_match("not-a-checksum", "ab" * 32)


class TestLatencyHistogram:
    def test_p99_comes_from_the_bucket_holding_it(self) -> None:
        h = LatencyHistogram()
        for _ in range(990):
            h.observe(20e-6)
        for _ in range(10):
            h.observe(5e-3)
        p99 = h.quantile(0.99)
        assert p99 is not None
        assert 20e-6 <= p99 < 26e-6
        assert h.quantile(0.999) == pytest.approx(5e-3, rel=0.3)

    def test_delta_counts_only_new_observations(self) -> None:
        h = LatencyHistogram()
        h.observe(1e-3)
        before = h.copy()
        h.observe(2e-3)
        h.observe(3e-3)
        assert h.delta(before).count == 2
        assert LatencyHistogram().quantile(0.99) is None
