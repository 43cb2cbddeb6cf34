"""The facts levels' pure part: which ``pkg:facts:{env}`` keys must be written."""

from __future__ import annotations

from evaluator_sidecar.signals import FactsLevel
from pkg_operator.levels.facts_decide import decide_facts

ENVS = ("prod", "staging", "dev")


def test_levels_equal_to_postgresql_are_left_alone() -> None:
    found = {env: FactsLevel(env, 4, 9) for env in ENVS}
    assert decide_facts(ENVS, dict.fromkeys(ENVS, 4), found) == []


def test_a_missing_level_is_written_even_for_an_environment_without_facts() -> None:
    repairs = decide_facts(ENVS, {"prod": 7}, {"prod": FactsLevel("prod", 7, 3)})
    assert [(r.env, r.version, r.reason, r.floor) for r in repairs] == [
        ("staging", 0, "missing", 0),
        ("dev", 0, "missing", 0),
    ]
    assert all(r.is_repair for r in repairs)


def test_a_new_version_in_postgresql_is_published_above_the_epoch_found() -> None:
    (repair,) = decide_facts(["prod"], {"prod": 8}, {"prod": FactsLevel("prod", 7, 30)})
    assert (repair.reason, repair.version, repair.floor, repair.is_repair) == (
        "changed",
        8,
        30,
        False,
    )


def test_a_level_ahead_of_postgresql_is_a_repair() -> None:
    (repair,) = decide_facts(["prod"], {"prod": 8}, {"prod": FactsLevel("prod", 999, 31)})
    assert (repair.reason, repair.version, repair.is_repair) == ("ahead", 8, True)
    assert "999" in repair.detail
