"""Seeded task facts aimed at the reference rule set (tests/data/reference-snapshot.yaml).

Each part is drawn from a small vocabulary built from the rules' own keys and
values, plus near misses, so that every rule both matches and fails often:
tags with and without the ones the rules test, signals on and around their
thresholds (ints, floats, 3 versus 3.0), context values of every JSON type at
the paths the VALUE conditions read (numeric text, booleans, nulls, lists where
objects are expected), request facts with the rules' predicates and subjects,
and validity bounds and ``now`` around the snapshot facts' windows, written in
every form the task-facts check accepts (``Z``, ``z``, offsets, fractions, a
space or ``t`` separator, epoch seconds as ints and floats).

``fact_sets(seed, n)`` is deterministic for a seed. Every set it yields passes
``evaluator_sidecar.policy.facts.validate_task_facts``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

__all__ = ["fact_sets"]

TAGS = [
    "vip", "allergen", "gold", "platinum", "loyalty-gold", "loyalty-silver", "loyalty-bronze",
    "blocked", "VIP", "tags", "", "é", "loyalty-gold ",
]  # fmt: skip
SIGNAL_VALUES = [
    0, 1, 2, 3, 3.0, 3.5, 0.5, 0.50001, 0.6, 0.8, 0.9, 0.95, 0.9500001, 0.96, 9.99, 10, 10.0, -1,
    1e-7, 1e21, 12345678901234567890, 2**70, 0.1 + 0.2,
]  # fmt: skip
SIGNAL_KEYS = ["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]
ANY_VALUES: list[Any] = [
    None, True, False, 0, 1, 3, 3.0, 5, "5", "5.0", "05", " 5", "-0", "1e1", "3", "10", "true",
    "hotel_ops", "resort_ops", "web", "app", "web, app", "suite", "deluxe", "Ben", "bob", "",
    [], ["suite"], {}, {"name": "Ben"}, 2.5, "NaN", "1e400",
]  # fmt: skip
CONTEXT_KEYS: dict[str, list[Any]] = {
    "domain": ["hotel_ops", "resort_ops", "", "HOTEL_OPS", None, 5],
    "floor": [0, 1, 2, 3, 5, 6, 9, 10, 11, "3", "5", "10", 3.0, 4.5, True, None, "three"],
    "room_type": ["suite", "deluxe", "standard", None, ["suite"]],
    "note": [None, "late arrival", "", 0, False],
    "express": [True, False, "true", 1, None],
    "code": ["5", 5, 5.0, "05", "5.0", " 5", 6, None],
    "channel": ["web", "app", "phone", "web, app", None],
    "task_type": ["guest_request", None],
}
SUBJECTS = ["guest:Ben", "guest:Ann", "guest:Cy", "guest:Ben "]
PREDICATES = [
    "hasTemporaryAccess", "loyaltyPoints", "membershipTier", "email", "roomNumber", "other",
]  # fmt: skip
FACT_OBJECTS: dict[str, list[Any]] = {
    "hasTemporaryAccess": [{"service": "lounge"}, {"service": "spa"}, "lounge", None],
    "loyaltyPoints": [999, 1000, 1200, 4999, 5000, "1500", 1000.0, None, "many"],
    "membershipTier": ["gold", "platinum", "banned", "silver", None, ["gold"]],
    "email": ["ben@example.com", "ben@example.org", "x@example.com.au", 5, None],
    "roomNumber": [100, 101, 512, 999, 1000, "512", 512.5, None],
    "other": [1, "x", None],
}
#: Instants around the reference snapshot's fact windows (2025-06 .. 2026-06).
INSTANTS = [
    "2025-01-01T00:00:00Z",
    "2025-06-01T00:00:00Z",
    "2025-05-31T23:59:59.999999999Z",
    "2025-12-31T00:00:00Z",
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:30:00+00:00",
    "2026-01-01T01:00:00Z",
    "2026-01-01T02:00:00+01:00",
    "2026-01-01T01:59:59.999999999Z",
    "2026-01-01T02:00:00Z",
    "2026-01-01t03:00:00z",
    "2026-01-01 01:00:00Z",
    "2026-01-01T05:30:00.5+05:30",
    "2025-12-31T20:00:00-05:00",
    "2026-01-08T00:00:00Z",
    "2026-06-01T00:00:00Z",
    "2026-06-01T00:00:00.000000001Z",
    1767225600,
    1767229200,
    1767229200.5,
    1767232799.25,
    1767232800,
    1780272000,
    0,
]


def _pick_some(rng: random.Random, items: list[Any], most: int) -> list[Any]:
    return rng.sample(items, rng.randint(0, min(most, len(items))))


def _context(rng: random.Random) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for key, choices in CONTEXT_KEYS.items():
        if rng.random() < 0.6:
            context[key] = rng.choice(choices)
    if rng.random() < 0.5:
        context["guest"] = rng.choice(
            [{"name": "Ben"}, {"name": "bob"}, {"name": None}, {"name": 5}, ["Ben"], "Ben", {}]
        )
    if rng.random() < 0.2:
        context[rng.choice(["extra", "nested"])] = {"deep": rng.choice(ANY_VALUES)}
    return context


def _fact(rng: random.Random) -> dict[str, Any]:
    predicate = rng.choice(PREDICATES)
    fact: dict[str, Any] = {
        "subject": rng.choice(SUBJECTS),
        "predicate": predicate,
        "object": rng.choice(FACT_OBJECTS[predicate]),
    }
    if rng.random() < 0.5:
        fact["valid_from"] = rng.choice(INSTANTS)
    if rng.random() < 0.5:
        fact["valid_to"] = rng.choice(INSTANTS)
    if rng.random() < 0.1:
        fact["id"] = rng.randint(1, 99)  # extra keys are ignored
    return fact


#: Near matches of the rules with the most conditions (rule-004, rule-005): each
#: value is kept or, now and then, swapped for another from the vocabulary.
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("signals", {"x3": 3, "x4": 1, "x5": 3.5, "x7": 0, "x8": 2}),
    (
        "context",
        {
            "floor": 3,
            "room_type": "suite",
            "guest": {"name": "Ben"},
            "note": "late",
            "express": True,
        },
    ),
    ("context", {"domain": "resort_ops", "floor": 5, "code": "5", "channel": "app"}),
]


def _near_match(rng: random.Random, template: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kept in template.items():
        roll = rng.random()
        if roll < 0.08:
            continue  # missing
        pool: list[Any] = CONTEXT_KEYS.get(
            key, SIGNAL_VALUES if key.startswith("x") else ANY_VALUES
        )
        out[key] = rng.choice(pool) if roll < 0.2 else kept
    return out


def fact_set(rng: random.Random) -> dict[str, Any]:
    """One task-facts object; each part present with some probability."""
    facts: dict[str, Any] = {}
    if rng.random() < 0.3:
        part, template = rng.choice(TEMPLATES)
        facts[part] = _near_match(rng, template)
    if rng.random() < 0.8:
        facts["tags"] = _pick_some(rng, TAGS, 4)
    if "signals" not in facts and rng.random() < 0.8:
        facts["signals"] = {k: rng.choice(SIGNAL_VALUES) for k in _pick_some(rng, SIGNAL_KEYS, 6)}
    if "context" not in facts and rng.random() < 0.8:
        facts["context"] = _context(rng)
    if rng.random() < 0.5:
        facts["facts"] = [_fact(rng) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.97:  # now and then the wall clock (the snapshot windows are past)
        facts["now"] = rng.choice(INSTANTS)
    for key in ("tags", "signals", "context", "facts"):
        if rng.random() < 0.03:
            facts[key] = None  # null means absent
    return facts


def fact_sets(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """``n`` task-facts objects, the same ones for the same seed."""
    rng = random.Random(seed)
    for _ in range(n):
        yield fact_set(rng)
