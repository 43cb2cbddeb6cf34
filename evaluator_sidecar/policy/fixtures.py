"""Validation fixtures: partial expectations checked against evaluation results.

A fixture is ``{"name": str, "input": task facts, "expect": {...}}``. ``expect``
is partial; every key is optional:

* ``subtasks``: a list; each item is a subtask name or a mapping whose given
  keys must equal the result's subtask at that index; the lengths must match.
* ``rules``: the same, with rule ids for strings.
* ``dag``: a list of mappings, compared the same way.
* ``snapshot``: the version string.

A fixture passes when every given key matches. Equality is JSON equality
(numbers by value; booleans only equal booleans). ``run_fixtures`` runs a list
of fixtures through any ``evaluate`` callable and returns a ``FixtureReport``
(passed, failed, total, per-fixture differences) that formats as readable
text and converts to the JSON report stored in ``pkg_validation_runs``.
Pure: no I/O. Used by the CLI, the operator and the sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluator_sidecar.policy.engines.native.values import json_equal
from evaluator_sidecar.policy.errors import EvaluatorError

__all__ = [
    "EXPECT_KEYS",
    "Difference",
    "FixtureReport",
    "FixtureResult",
    "check_expectation",
    "run_fixtures",
]

EXPECT_KEYS = ("subtasks", "rules", "dag", "snapshot")
_ITEM_ID = {"subtasks": "name", "rules": "rule_id"}


@dataclass(frozen=True)
class Difference:
    """One expected key that did not match: what was expected, what came, and why."""

    key: str
    expected: Any
    got: Any
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "key": self.key,
            "expected": self.expected,
            "got": self.got,
            "details": list(self.details),
        }


@dataclass(frozen=True)
class FixtureResult:
    """One fixture's outcome; ``error`` is set when it could not be evaluated or is malformed."""

    name: str
    passed: bool
    differences: tuple[Difference, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"name": self.name, "passed": self.passed}
        if self.differences:
            out["differences"] = [d.to_dict() for d in self.differences]
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class FixtureReport:
    """All fixtures' outcomes."""

    results: tuple[FixtureResult, ...] = field(default=())

    @property
    def total(self) -> int:
        """Number of fixtures run."""
        return len(self.results)

    @property
    def passed(self) -> int:
        """Number that passed."""
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        """Number that failed (including malformed fixtures and evaluation errors)."""
        return self.total - self.passed

    @property
    def success(self) -> bool:
        """True when no fixture failed."""
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the validation run's ``report`` column)."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "total": self.total,
            "fixtures": [r.to_dict() for r in self.results],
        }

    def format(self) -> str:
        """A readable report: one line per fixture, and expected-versus-got for failures."""
        lines: list[str] = []
        for result in self.results:
            lines.append(f"{'PASS' if result.passed else 'FAIL'}  {result.name}")
            if result.error is not None:
                lines.append(f"      error: {result.error}")
            for diff in result.differences:
                lines.append(f"      {diff.key}:")
                lines.append(f"        expected: {_compact(diff.expected)}")
                lines.append(f"        got:      {_compact(diff.got)}")
                lines.extend(f"        - {detail}" for detail in diff.details)
        lines.append(f"{self.passed} passed, {self.failed} failed, {self.total} total")
        return "\n".join(lines)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False, default=repr)


def _summary(key: str, items: Any) -> Any:
    """Results shown by their identifying field (name, rule_id) where the expectation used one."""
    ident = _ITEM_ID.get(key)
    if ident is None or not isinstance(items, list):
        return items
    return [item.get(ident) if isinstance(item, Mapping) else item for item in items]


def _check_list(key: str, expected: Sequence[Any], got: Any) -> Difference | None:
    if not isinstance(got, list):
        return Difference(key, expected, got, (f"the result has no list {key!r}",))
    details: list[str] = []
    ident = _ITEM_ID.get(key)
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if isinstance(want, str) and ident is not None:
            actual = have.get(ident) if isinstance(have, Mapping) else have
            if actual != want:
                details.append(f"[{i}] expected {ident} {want!r}, got {actual!r}")
        elif isinstance(want, Mapping):
            if not isinstance(have, Mapping):
                details.append(f"[{i}] expected a mapping, got {_compact(have)}")
                continue
            for field_name, value in want.items():
                if field_name not in have:
                    details.append(
                        f"[{i}].{field_name} expected {_compact(value)}, but it is absent"
                    )
                elif not json_equal(have[field_name], value):
                    details.append(
                        f"[{i}].{field_name} expected {_compact(value)}, "
                        f"got {_compact(have[field_name])}"
                    )
    if len(expected) != len(got):
        details.append(f"expected {len(expected)} item(s), got {len(got)}")
        for i in range(len(expected), len(got)):
            details.append(f"[{i}] unexpected {_compact(_summary(key, [got[i]])[0])}")
        for i in range(len(got), len(expected)):
            details.append(f"[{i}] missing {_compact(expected[i])}")
    if not details:
        return None
    shown_got = _summary(key, got) if all(isinstance(w, str) for w in expected) else got
    return Difference(key, list(expected), shown_got, tuple(details))


def _expectation_problems(expect: Any) -> list[str]:
    if not isinstance(expect, Mapping):
        return [f"expect must be a mapping with keys {', '.join(EXPECT_KEYS)}"]
    problems = [
        f"unknown expect key {key!r}; use {', '.join(EXPECT_KEYS)}"
        for key in expect
        if key not in EXPECT_KEYS
    ]
    for key in ("subtasks", "rules", "dag"):
        if key not in expect:
            continue
        items = expect[key]
        if not isinstance(items, list):
            problems.append(f"expect.{key} must be a list")
            continue
        for i, item in enumerate(items):
            allowed_str = key in _ITEM_ID
            if not (isinstance(item, Mapping) or (allowed_str and isinstance(item, str))):
                kind = f"a {_ITEM_ID[key]} string or a mapping" if allowed_str else "a mapping"
                problems.append(f"expect.{key}[{i}] must be {kind}; got {_compact(item)}")
    if "snapshot" in expect and not isinstance(expect["snapshot"], str):
        problems.append("expect.snapshot must be a version string")
    return problems


def check_expectation(expect: Mapping[str, Any], result: Mapping[str, Any]) -> list[Difference]:
    """The differences between a partial expectation and a result (empty when it matches).

    Raises ValueError listing what is wrong when ``expect`` itself is malformed.
    """
    problems = _expectation_problems(expect)
    if problems:
        raise ValueError("; ".join(problems))
    differences: list[Difference] = []
    for key in ("subtasks", "rules", "dag"):
        if key in expect:
            diff = _check_list(key, expect[key], result.get(key))
            if diff is not None:
                differences.append(diff)
    if "snapshot" in expect and result.get("snapshot") != expect["snapshot"]:
        differences.append(Difference("snapshot", expect["snapshot"], result.get("snapshot")))
    return differences


def run_fixtures(
    evaluate: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    fixtures: Sequence[Any],
) -> FixtureReport:
    """Run every fixture through ``evaluate``; malformed fixtures and evaluation errors fail."""
    results: list[FixtureResult] = []
    for i, fixture in enumerate(fixtures):
        if not isinstance(fixture, Mapping):
            results.append(
                FixtureResult(f"fixtures[{i}]", False, error="a fixture must be a mapping")
            )
            continue
        name = fixture.get("name")
        if not isinstance(name, str) or not name:
            name = f"fixtures[{i}]"
        expect = fixture.get("expect")
        problems = _expectation_problems(expect if expect is not None else {})
        task_facts = fixture.get("input")
        if task_facts is None:
            task_facts = {}
        if not isinstance(task_facts, Mapping):
            problems.append("input must be a mapping of task facts")
        if problems:
            results.append(FixtureResult(name, False, error="; ".join(problems)))
            continue
        try:
            result = evaluate(task_facts)
        except EvaluatorError as exc:
            results.append(FixtureResult(name, False, error=f"evaluation failed: {exc}"))
            continue
        differences = check_expectation(expect or {}, result)
        results.append(FixtureResult(name, not differences, tuple(differences)))
    return FixtureReport(tuple(results))
