"""The shadow step and two-phase activation outside the machine: the level repair keeps
them, and the heartbeat folder turns example diffs into rows."""

from __future__ import annotations

from dataclasses import replace

from evaluator_sidecar.signals import Heartbeat, PrepareSpec, ShadowSpec
from pkg_operator.heartbeats import shadow_rows
from pkg_operator.levels.decide import Level, Ref, decide
from pkg_operator.levels.reconcile import rollout_level

V1 = Ref("rules@1.0.0", 1, "a" * 64)
V2 = Ref("rules@2.0.0", 2, "b" * 64, "v2")
SHADOW = ShadowSpec(V2, 0.5, "2030-01-01T00:00:00Z", "ns/d")


def _level(**more: object) -> Level:
    base = Level(
        key="pkg:desired:prod:router:eu",
        env="prod",
        stable=V1,
        target="router",
        region="eu",
        deployment="u1",
    )
    return replace(base, **more)  # type: ignore[arg-type]


class TestLevelRepairKeepsThem:
    def test_a_level_that_lost_its_shadow_is_rewritten_with_it(self) -> None:
        [repair] = decide([_level(shadow=SHADOW)], {"pkg:desired:prod:router:eu": _level()})
        assert repair.wanted.shadow == SHADOW

    def test_a_level_that_lost_its_preparation_is_rewritten_with_it(self) -> None:
        prepare = PrepareSpec(V2, 50.0)
        assert decide([_level(prepare=prepare)], {"pkg:desired:prod:router:eu": _level()})

    def test_the_status_names_the_shadow_the_level_must_hold(self) -> None:
        status = {
            "lastPublish": {"key": "k"},
            "stable": {"version": V1.version, "snapshotId": 1, "checksum": V1.checksum},
            "shadow": {
                "name": "v2",
                "version": V2.version,
                "snapshotId": 2,
                "checksum": V2.checksum,
                "sampleRate": 0.5,
                "step": SHADOW.step,
            },
        }
        wanted = rollout_level(status, uid="u1", env="prod", target="router", region="eu")
        assert wanted is not None
        # The same shadow as published (the name is not content): no repair.
        assert not decide([wanted], {wanted.key: _level(shadow=SHADOW)})


def _beat(shadow: dict[str, object] | None) -> Heartbeat:
    beat = Heartbeat("r1", "router", "prod", "router", "eu", "rules@1.0.0", 1, None, 3, "stable")
    return replace(beat, shadow=shadow)


class TestExamplesFromHeartbeats:
    def test_each_example_becomes_a_row_filed_under_its_step(self) -> None:
        example = {
            "input": {"tags": ["vip"]},
            "active_version": "rules@1.0.0",
            "active_output": {"subtasks": []},
            "candidate_output": {"subtasks": [{"name": "x"}]},
            "differs": ["subtasks"],
            "observed_at": 1.9e9,
            "fingerprint": "f1",
        }
        [row] = shadow_rows(
            _beat(
                {
                    "deployment": "u1",
                    "deployment_name": "ns/d",
                    "candidate": "rules@2.0.0",
                    "step": "2030-01-01T00:00:00+00:00",
                    "examples": [example],
                }
            )
        )
        assert (row.deployment_uid, row.device_id, row.candidate_version) == (
            "u1",
            "r1",
            "rules@2.0.0",
        )
        assert row.step_started_at.year == 2030
        assert row.input == {"tags": ["vip"]}

    def test_a_malformed_example_is_skipped_not_fatal(self) -> None:
        beat = _beat({"deployment": "u1", "candidate": "c", "step": "x", "examples": [{}]})
        assert shadow_rows(beat) == []

    def test_a_beat_without_a_shadow_has_no_rows(self) -> None:
        assert shadow_rows(_beat(None)) == []
