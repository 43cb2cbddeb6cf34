"""Which rollout levels no PolicyDeployment owns, and the withdrawal that replaces them."""

from __future__ import annotations

from pkg_operator.levels.decide import Level, Ref
from pkg_operator.levels.owners import owned_key, unowned, withdrawal


def rollout(target: str, region: str = "eu", *, env: str = "prod") -> Level:
    return Level(
        key=f"pkg:desired:{env}:{target}:{region}",
        env=env,
        stable=Ref("rules@2", 5, None),
        target=target,
        region=region,
        deployment="uid-1",
        canary=Ref("rules@3", 6, None),
        canary_percent=20.0,
        epoch=40,
    )


def test_a_deployment_owns_the_level_of_its_environment_target_and_region() -> None:
    assert owned_key({"env": "prod", "target": "edge:door", "region": "eu"}) == (
        "pkg:desired:prod:edge:door:eu"
    )
    assert owned_key({"env": "prod", "target": "router"}) == "pkg:desired:prod:router:global"
    assert owned_key({"target": "router"}) is None


def test_only_rollout_levels_without_an_owner_are_unowned() -> None:
    owned, orphan, other_env = rollout("router"), rollout("edge:door"), rollout("router", env="dev")
    env_level = Level(key="pkg:desired:prod", env="prod", stable=Ref("rules@1", 1, None))
    found = {lv.key: lv for lv in (owned, orphan, other_env, env_level)}
    found["pkg:desired:prod:broken:eu"] = None  # malformed: not judged
    found["pkg:desired:prod:moved:eu"] = rollout("elsewhere")  # stored under another key
    assert unowned(found, {owned.key}) == sorted([orphan, other_env], key=lambda lv: lv.key)
    assert unowned(found, {owned.key, orphan.key, other_env.key}) == []


def test_a_withdrawal_keeps_the_place_and_names_nothing() -> None:
    level = rollout("router")
    out = withdrawal(level)
    assert (out.key, out.env, out.target, out.region, out.deployment) == (
        level.key,
        "prod",
        "router",
        "eu",
        "uid-1",
    )
    assert (out.stable, out.canary, out.canary_percent) == (None, None, 0.0)
