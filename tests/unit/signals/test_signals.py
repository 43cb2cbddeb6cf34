"""The Redis protocol's pure parts: keys, messages, levels, resolution, back-off, heartbeats."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator_sidecar.signals import (
    ActivateMessage,
    DesiredLevels,
    DesiredMessage,
    DesiredState,
    Heartbeat,
    MessageError,
    SnapshotRef,
    backoff_delay,
    decode_message,
    desired_key,
    encode_activate,
    encode_desired_message,
    env_key,
    heartbeat_key,
    resolve_desired,
    rollout_key,
)
from evaluator_sidecar.signals.cohorts import in_canary

V14 = SnapshotRef("rules@1.4.0", 14, "a" * 64)
V15 = SnapshotRef("rules@1.5.0", 15, "b" * 64)


def env_state(epoch: int, ref: SnapshotRef | None = V14) -> DesiredState:
    return DesiredState(epoch=epoch, env="prod", stable=ref, updated_at=1.0, reason="promote")


def rollout_state(
    epoch: int,
    *,
    stable: SnapshotRef | None = V14,
    canary: SnapshotRef | None = V15,
    percent: float = 10.0,
) -> DesiredState:
    return DesiredState(
        epoch=epoch,
        env="prod",
        stable=stable,
        updated_at=2.0,
        reason="step",
        target="edge:door",
        region="us-west",
        deployment="uid-1",
        canary=canary,
        canary_percent=percent,
    )


class TestKeys:
    def test_names_follow_the_protocol(self) -> None:
        assert env_key("prod") == "pkg:desired:prod"
        assert rollout_key("prod", "edge:door", "us-west") == "pkg:desired:prod:edge:door:us-west"
        assert desired_key("prod") == "pkg:desired:prod"
        assert heartbeat_key("prod", "door:D-1") == "pkg:hb:prod:door:D-1"

    def test_a_rollout_key_needs_target_and_region(self) -> None:
        with pytest.raises(ValueError, match="both target and region"):
            desired_key("prod", "router", None)

    def test_empty_parts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="env must be a non-empty string"):
            env_key("")


class TestPlainMessages:
    def test_the_plain_activate_command_decodes(self) -> None:
        assert decode_message(b"activate:rules@1.5.0") == ActivateMessage("rules@1.5.0")

    def test_surrounding_whitespace_is_tolerated(self) -> None:
        assert decode_message(" activate: rules@1.5.0 \n") == ActivateMessage("rules@1.5.0")

    def test_encode_round_trips(self) -> None:
        assert decode_message(encode_activate("rules@2.0.0")) == ActivateMessage("rules@2.0.0")

    def test_activate_without_version_is_an_error(self) -> None:
        with pytest.raises(MessageError, match="names no version"):
            decode_message("activate:")

    @pytest.mark.parametrize(
        "raw", [b"hello", b"deactivate:x", b"\xff\xfe", b"[1,2]", b'{"kind":1']
    )
    def test_garbage_is_an_error_saying_what_was_expected(self, raw: bytes) -> None:
        with pytest.raises(MessageError):
            decode_message(raw)


class TestStructuredMessages:
    def test_round_trip_of_an_environment_state(self) -> None:
        state = env_state(7)
        message = decode_message(encode_desired_message(state))
        assert message == DesiredMessage("pkg:desired:prod", state)

    def test_round_trip_of_a_rollout_state(self) -> None:
        state = rollout_state(9, stable=None)
        message = decode_message(encode_desired_message(state))
        assert isinstance(message, DesiredMessage)
        assert message.state == state
        assert message.key == "pkg:desired:prod:edge:door:us-west"

    def test_key_must_match_the_state(self) -> None:
        body = orjson.loads(encode_desired_message(env_state(3)))
        body["key"] = "pkg:desired:staging"
        with pytest.raises(MessageError, match="does not match"):
            decode_message(orjson.dumps(body))

    @pytest.mark.parametrize(
        ("mutate", "complaint"),
        [
            (lambda s: s.update(epoch=-1), "'epoch' must be an integer >= 0"),
            (lambda s: s.update(epoch=True), "'epoch' must be an integer"),
            (lambda s: s.pop("env"), "'env' must be a non-empty string"),
            (lambda s: s.update(stable={"snapshot_id": 1}), "'version' must be"),
            (lambda s: s.update(canary_percent=120), "within 0..100"),
            (lambda s: s.pop("region"), "both 'target' and 'region'"),
            (lambda s: s.pop("deployment"), "'deployment' must be"),
        ],
    )
    def test_malformed_states_are_rejected_with_the_field_named(
        self, mutate: object, complaint: str
    ) -> None:
        body = orjson.loads(encode_desired_message(rollout_state(4)))
        mutate(body["state"])  # type: ignore[operator]
        with pytest.raises(MessageError, match=complaint):
            decode_message(orjson.dumps(body))

    def test_other_kinds_are_rejected(self) -> None:
        with pytest.raises(MessageError, match="kind"):
            decode_message(b'{"kind": "other"}')


class TestDesiredStateInvariants:
    def test_environment_states_have_no_canary(self) -> None:
        with pytest.raises(ValueError, match="no canary"):
            DesiredState(epoch=1, env="prod", stable=V14, canary=V15)

    def test_rollouts_need_their_deployment(self) -> None:
        with pytest.raises(ValueError, match="deployment uid"):
            DesiredState(epoch=1, env="prod", stable=V14, target="t", region="r")


class TestLevels:
    def test_epoch_is_the_newest_present(self) -> None:
        assert DesiredLevels().epoch == 0
        assert DesiredLevels(env_state(5), rollout_state(3)).epoch == 5

    def test_with_state_keeps_only_newer_states(self) -> None:
        levels = DesiredLevels(env_state(5))
        assert levels.with_state(env_state(4)) is levels
        assert levels.with_state(env_state(6)).env_state == env_state(6)
        assert levels.with_state(rollout_state(2)).rollout_state == rollout_state(2)


class TestResolution:
    def test_no_level_means_the_databases_active_snapshot(self) -> None:
        r = resolve_desired(DesiredLevels(), device_id="d")
        assert (r.ref, r.source, r.epoch) == (None, "database", 0)

    def test_environment_level(self) -> None:
        r = resolve_desired(DesiredLevels(env_state(3)), device_id="d")
        assert (r.ref, r.cohort, r.source, r.epoch) == (V14, "stable", "env", 3)

    def test_rollout_level_wins_when_present(self) -> None:
        levels = DesiredLevels(
            env_state(8, SnapshotRef("rules@1.3.0")), rollout_state(5, percent=0)
        )
        r = resolve_desired(levels, device_id="d")
        assert (r.ref, r.source, r.epoch) == (V14, "rollout", 8)

    def test_rollout_without_stable_falls_back_to_the_environment(self) -> None:
        levels = DesiredLevels(
            env_state(2, SnapshotRef("rules@1.3.0")), rollout_state(5, stable=None, percent=0)
        )
        r = resolve_desired(levels, device_id="d")
        assert r.ref == SnapshotRef("rules@1.3.0")
        assert r.source == "env"

    @settings(max_examples=200, derandomize=True)
    @given(device=st.text(min_size=1, max_size=20), percent=st.floats(0, 100))
    def test_canary_cohort_follows_the_bucket(self, device: str, percent: float) -> None:
        r = resolve_desired(
            DesiredLevels(None, rollout_state(1, percent=percent)), device_id=device
        )
        if in_canary(device, "uid-1", percent):
            assert (r.ref, r.cohort) == (V15, "canary")
        else:
            assert (r.ref, r.cohort) == (V14, "stable")

    def test_a_hundred_percent_puts_everyone_on_the_canary(self) -> None:
        levels = DesiredLevels(None, rollout_state(1, percent=100))
        assert {resolve_desired(levels, device_id=f"d{i}").ref for i in range(200)} == {V15}


class TestBackoff:
    def test_full_jitter_stays_under_the_exponential_ceiling(self) -> None:
        rng = random.Random(1)
        for attempt in range(12):
            ceiling = min(60.0, 0.5 * 2**attempt)
            delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
            assert all(0.0 <= d <= ceiling for d in delays)
            # Full jitter: the spread covers most of the range, not just its top.
            assert min(delays) < ceiling * 0.1
            assert max(delays) > ceiling * 0.9

    def test_capped_at_sixty_seconds_even_for_huge_attempts(self) -> None:
        assert backoff_delay(10_000, rng=random.Random(2)) <= 60.0


class TestHeartbeats:
    def beat(self) -> Heartbeat:
        return Heartbeat(
            device_id="door:D-1",
            device_type="door",
            env="prod",
            target="edge:door",
            region="us-west",
            version="rules@1.4.0",
            snapshot_id=14,
            checksum="a" * 64,
            epoch=7,
            cohort="canary",
            evaluations=120,
            errors=1,
            p99_ms=0.25,
            activation_failures=0,
            last_error=None,
            healthy=True,
            degraded=False,
            ts=1700000000.5,
            desired_epoch=7,
        )

    def test_round_trip(self) -> None:
        beat = self.beat()
        assert Heartbeat.from_json(beat.to_json()) == beat

    def test_carries_every_field_of_the_protocol(self) -> None:
        fields = set(orjson.loads(self.beat().to_json()))
        assert {
            "device_id", "device_type", "env", "target", "region", "version", "snapshot_id",
            "checksum", "epoch", "cohort", "evaluations", "errors", "p99_ms",
            "activation_failures", "last_error", "healthy", "degraded", "ts",
        } <= fields  # fmt: skip

    def test_malformed_heartbeats_name_the_field(self) -> None:
        body = orjson.loads(self.beat().to_json())
        body["cohort"] = "beta"
        with pytest.raises(MessageError, match="'cohort'"):
            Heartbeat.from_json(orjson.dumps(body))
