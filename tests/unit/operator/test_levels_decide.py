"""The level reconciler's pure part: which levels in Redis must be rewritten."""

from __future__ import annotations

from pkg_operator.levels.decide import Level, Ref, decide, differences

V1 = Ref("rules@1.0.0", 1, "a" * 64)
V2 = Ref("rules@2.0.0", 2, "b" * 64)


def env_level(stable: Ref | None, *, epoch: int = 0) -> Level:
    return Level(key="pkg:desired:prod", env="prod", stable=stable, epoch=epoch)


def rollout_level(
    stable: Ref | None, canary: Ref | None, percent: float, *, epoch: int = 0, uid: str = "u1"
) -> Level:
    return Level(
        key="pkg:desired:prod:router:eu-west",
        env="prod",
        stable=stable,
        target="router",
        region="eu-west",
        deployment=uid,
        canary=canary,
        canary_percent=percent,
        epoch=epoch,
    )


def test_an_agreeing_level_is_left_alone_whatever_its_epoch() -> None:
    assert decide([env_level(V1)], {"pkg:desired:prod": env_level(V1, epoch=7)}) == []


def test_a_missing_level_is_rewritten_above_epoch_zero() -> None:
    (repair,) = decide([env_level(V1)], {"pkg:desired:prod": None})
    assert repair.reason == "missing"
    assert repair.found is None
    assert repair.floor == 0
    (repair,) = decide([env_level(V1)], {})
    assert repair.reason == "missing"


def test_a_tampered_level_is_rewritten_above_the_epoch_found() -> None:
    found = env_level(V2, epoch=1_000_000)
    (repair,) = decide([env_level(V1)], {"pkg:desired:prod": found})
    assert repair.reason == "different"
    assert repair.found == found
    assert repair.floor == 1_000_000
    assert "rules@2.0.0" in repair.detail
    assert "rules@1.0.0" in repair.detail


def test_same_version_with_another_id_or_checksum_differs() -> None:
    other_id = Ref("rules@1.0.0", 9, V1.checksum)
    assert decide([env_level(V1)], {"pkg:desired:prod": env_level(other_id)})
    other_sum = Ref("rules@1.0.0", 1, "c" * 64)
    assert decide([env_level(V1)], {"pkg:desired:prod": env_level(other_sum)})


def test_missing_id_or_checksum_on_one_side_is_not_a_difference() -> None:
    bare = Ref("rules@1.0.0")
    assert decide([env_level(V1)], {"pkg:desired:prod": env_level(bare)}) == []
    assert decide([env_level(bare)], {"pkg:desired:prod": env_level(V1)}) == []


def test_an_environment_with_nothing_active_is_never_written() -> None:
    assert decide([env_level(None)], {"pkg:desired:prod": None}) == []
    assert decide([env_level(None)], {"pkg:desired:prod": env_level(V2, epoch=3)}) == []


def test_rollout_levels_compare_canary_weight_and_deployment() -> None:
    wanted = rollout_level(V1, V2, 50.0)
    key = wanted.key
    assert decide([wanted], {key: rollout_level(V1, V2, 50.0, epoch=4)}) == []
    assert differences(wanted, rollout_level(V1, V2, 10.0)) == ["canary weight 10, wanted 50"]
    assert differences(wanted, rollout_level(V1, None, 0.0)) == [
        "canary none, wanted rules@2.0.0 (#2)",
        "canary weight 0, wanted 50",
    ]
    assert differences(wanted, rollout_level(V1, V2, 50.0, uid="u2")) == [
        "deployment u2, wanted u1"
    ]
    assert differences(wanted, rollout_level(V2, V2, 50.0)) == [
        "stable rules@2.0.0 (#2), wanted rules@1.0.0 (#1)"
    ]


def test_an_environment_level_found_under_a_rollout_key_differs() -> None:
    wanted = rollout_level(V1, None, 0.0)
    found = Level(key=wanted.key, env="prod", stable=V1, epoch=5)
    (repair,) = decide([wanted], {wanted.key: found})
    assert "place" in repair.detail


def test_repairs_keep_the_wanted_order() -> None:
    a = env_level(V1)
    b = Level(key="pkg:desired:dev", env="dev", stable=V2)
    repairs = decide([a, b], {a.key: None, b.key: None})
    assert [r.wanted.key for r in repairs] == [a.key, b.key]


def test_a_weight_without_a_canary_is_not_a_difference() -> None:
    wanted = rollout_level(V1, None, 0.0)
    assert decide([wanted], {wanted.key: rollout_level(V1, None, 100.0, epoch=3)}) == []


def test_a_rollout_level_is_read_from_the_deployments_status() -> None:
    from pkg_operator.levels.reconcile import rollout_level as from_status

    place = {"uid": "u1", "env": "prod", "target": "router", "region": "eu-west"}
    assert from_status({"stable": {"version": "rules@1.0.0"}}, **place) is None  # never published
    status = {
        "lastPublish": {"at": "2026-01-01T00:00:00Z"},
        "stable": {"name": "one", "version": "rules@1.0.0", "checksum": "a" * 64, "snapshotId": 1},
        "canary": {"name": "two", "version": "rules@2.0.0", "checksum": "", "snapshotId": None},
        "weight": 50,
    }
    level = from_status(status, **place)
    assert level == rollout_level(V1, Ref("rules@2.0.0"), 50.0)
    withdrawn = from_status({**status, "canary": None}, **place)
    assert withdrawn is not None
    assert (withdrawn.canary, withdrawn.canary_percent) == (None, 0.0)
