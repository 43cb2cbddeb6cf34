"""ActivationsHealthy: a PolicyDeployment says when live devices refuse their activations.

Refusals used to show only in status.health.activationErrors. The condition says
how many devices refuse and why, and turning False posts one Warning event.
"""

from __future__ import annotations

from rollout_world import World, events, replace_health

from pkg_operator.rollout import render
from pkg_operator.rollout.model import CoverageObs, HealthObs

TAMPERED = "snapshot rules@1.5.0 changed in PostgreSQL after it was stored; refusing it"
UNSIGNED = "snapshot rules@1.5.0 is not signed by a trusted key; refusing it"


def refusing(*pairs: tuple[str, str]) -> HealthObs:
    return HealthObs(activation_errors=tuple(sorted(pairs)))


class TestTheCondition:
    def test_no_refusal_among_live_devices_is_true(self) -> None:
        status, reason, message = render.activations(HealthObs(), CoverageObs(targeted=4))
        assert (status, reason) == ("True", "NoRefusals")
        assert "4 live devices" in message

    def test_no_live_device_is_unknown_not_true(self) -> None:
        assert render.activations(HealthObs(), CoverageObs())[:2] == ("Unknown", "NoLiveDevices")

    def test_refusals_say_how_many_devices_and_why_most_common_first(self) -> None:
        health = refusing(("d1", TAMPERED), ("d2", TAMPERED), ("d3", UNSIGNED))
        status, reason, message = render.activations(health, CoverageObs(targeted=10))
        assert (status, reason) == ("False", "ActivationsRefused")
        assert message.startswith("3 of 10 live devices refuse to activate: ")
        assert message.index(f"2 x {TAMPERED} (e.g. d1)") < message.index(f"1 x {UNSIGNED}")

    def test_many_distinct_reasons_are_summarized(self) -> None:
        health = refusing(*[(f"d{i}", f"reason {i}") for i in range(5)])
        message = render.activations(health, CoverageObs(targeted=5))[2]
        assert "and 2 other reason(s)" in message


class TestInTheStatus:
    def test_the_deployment_shows_the_condition_and_warns_once_when_it_turns_false(
        self,
    ) -> None:
        world = World([{"setWeight": 100}])
        world.tick()
        assert world.cond(render.ACTIVATIONS) == ("True", "NoRefusals")
        replace_health(world, activation_errors=(("d1", TAMPERED), ("d2", TAMPERED)))
        turned = world.tick()
        assert world.cond(render.ACTIVATIONS) == ("False", "ActivationsRefused")
        assert "2 of 10 live devices refuse" in world.condition(render.ACTIVATIONS)["message"]
        warned = [e for e in events(turned) if e.reason == "ActivationsRefused"]
        assert [e.type for e in warned] == ["Warning"]
        still = world.tick()
        assert [e for e in events(still) if e.reason == "ActivationsRefused"] == []
        replace_health(world, activation_errors=())
        world.tick()
        assert world.cond(render.ACTIVATIONS) == ("True", "NoRefusals")
        condition = world.condition(render.ACTIVATIONS)
        assert condition["observedGeneration"] == world.generation
