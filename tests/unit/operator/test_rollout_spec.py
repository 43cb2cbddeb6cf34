"""Reading a PolicyDeployment spec: the CRD's defaults, the one-kind-per-step rule, limits."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_world import World, make_spec

from pkg_operator.rollout.spec import Limits, SpecError, parse_spec


def bare_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "snapshotRef": {"name": "rules-1-5-0"},
        "target": "edge:door",
        "env": "staging",
        "strategy": {"canary": {"steps": [{"setWeight": 5}]}},
    }
    spec.update(extra)
    return spec


class TestDefaults:
    def test_the_crd_defaults_apply_when_fields_are_absent(self) -> None:
        parsed = parse_spec(bare_spec())
        assert parsed.region == "global"
        assert parsed.progress_deadline_seconds == 600
        assert (
            parsed.coverage.min_percent,
            parsed.coverage.heartbeat_ttl_seconds,
            parsed.coverage.min_devices,
        ) == (100, 30, 1)

    def test_zero_is_a_value_not_an_absence(self) -> None:
        parsed = parse_spec(bare_spec(coverage={"minPercent": 0, "minDevices": 0}))
        assert parsed.coverage.min_percent == 0
        assert parsed.coverage.min_devices == 0


class TestSteps:
    def test_each_kind(self) -> None:
        parsed = parse_spec(
            make_spec(
                [
                    {"setWeight": 12.5},
                    {"pause": {"durationSeconds": 30}},
                    {"pause": {}},
                    {"analysis": {"maxErrorRate": 0.02, "durationSeconds": 90}},
                ]
            )
        )
        assert [s.describe() for s in parsed.steps] == [
            "setWeight 12.5%",
            "pause 30s",
            "pause",
            "analysis 90s",
        ]
        assert parsed.steps[2].pause_seconds is None

    @pytest.mark.parametrize(
        "step", [{}, {"setWeight": 10, "pause": {}}, {"pause": {}, "analysis": {}}]
    )
    def test_a_step_needs_exactly_one_kind(self, step: dict[str, Any]) -> None:
        with pytest.raises(SpecError, match=r"steps\[1\] needs exactly one of setWeight"):
            parse_spec(make_spec([{"setWeight": 1}, step]))

    @pytest.mark.parametrize("weight", [-1, 100.5, "ten", True])
    def test_weights_are_numbers_from_0_to_100(self, weight: object) -> None:
        with pytest.raises(SpecError, match=r"steps\[0\]\.setWeight"):
            parse_spec(make_spec([{"setWeight": weight}]))

    def test_required_fields_are_named(self) -> None:
        spec = bare_spec()
        del spec["target"]
        with pytest.raises(SpecError, match=r"spec\.target is required"):
            parse_spec(spec)


class TestLimits:
    def test_an_analysis_step_inherits_the_rollout_wide_limits_and_may_override_them(
        self,
    ) -> None:
        spec = make_spec(
            [{"analysis": {"maxErrorRate": 0.05}}, {"analysis": {}}],
            strategy={
                "canary": {
                    "steps": [{"analysis": {"maxErrorRate": 0.05}}, {"analysis": {}}],
                    "analysis": {"maxErrorRate": 0.01, "maxP99LatencyMs": 25, "minEvaluations": 9},
                }
            },
        )
        first, second = parse_spec(spec).steps
        assert first.limits == Limits(
            max_error_rate=0.05,
            max_p99_latency_ms=25,
            min_evaluations=9,
            duration_seconds=60,
        )
        assert second.limits.max_error_rate == 0.01
        assert second.limits.duration_seconds == 60  # the default gate length

    def test_an_error_rate_is_a_fraction(self) -> None:
        with pytest.raises(SpecError, match="maxErrorRate must be between 0 and 1"):
            parse_spec(make_spec([{"analysis": {"maxErrorRate": 5}}]))


class TestAnUnreadableSpec:
    def test_is_reported_on_the_resource_and_nothing_is_done(self) -> None:
        world = World([{"setWeight": 10}])
        world.spec["strategy"] = {"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}
        decision = world.tick()
        assert decision.actions == ()
        assert world.summary == "Invalid"
        assert world.cond("Degraded") == ("True", "InvalidSpec")
        assert world.cond("Available") == ("False", "InvalidSpec")
        assert "split a combined step" in world.status["message"]
