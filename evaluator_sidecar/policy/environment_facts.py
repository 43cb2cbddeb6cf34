"""Environment facts: one environment's versioned set of temporal facts, and how it meets a request.

Snapshots are immutable; facts change often. So facts that hold for a whole
environment (``guest:Ben hasTemporaryAccess lounge`` until 18:00) are a data set
of their own, stored in PostgreSQL with a version that grows on every change and
loaded by each sidecar beside its evaluator (README, Concepts, "Temporal facts").
This module is the pure part:

- :class:`EnvironmentFacts` is one loaded set: the environment, its version,
  and the facts checked once at load, with their bounds in nanoseconds;
- :meth:`EnvironmentFacts.valid_at` is the expiry logic: a fact holds when
  ``valid_from <= now < valid_to`` (a missing bound is open), so a fact whose
  ``valid_to`` passes stops matching at that instant, with no message;
- :func:`with_environment_facts` is how a request and the set combine: the
  request's own ``facts`` are kept as sent, and the environment's facts valid at
  the request's instant (its ``now``, else the clock read once) are added after
  them. FACT conditions see the union: ``=`` matches when any of them matches,
  ``!=`` only when none does. The request's facts cannot hide or replace an
  environment fact.

Environment facts are not counted against the request's ``MAX_FACTS``: the
request is checked as it was sent, the set when it is loaded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluator_sidecar.policy.engines.native.values import timestamp_ns
from evaluator_sidecar.policy.errors import EvaluationError

__all__ = [
    "NO_ENVIRONMENT_FACTS",
    "EnvironmentFact",
    "EnvironmentFacts",
    "EnvironmentFactsError",
    "with_environment_facts",
]


class EnvironmentFactsError(EvaluationError):
    """A fact set that cannot be loaded; the text says which fact and why."""


@dataclass(frozen=True, slots=True)
class EnvironmentFact:
    """One environment fact, valid when ``valid_from <= now < valid_to`` (None is open)."""

    subject: str
    predicate: str
    object: Any
    valid_from: int | None = None  # ns since the epoch
    valid_to: int | None = None

    def valid_at(self, now_ns: int) -> bool:
        return (self.valid_from is None or self.valid_from <= now_ns) and (
            self.valid_to is None or now_ns < self.valid_to
        )

    def as_task_fact(self) -> dict[str, Any]:
        """The form FACT conditions read (bounds left out: it was checked valid already)."""
        return {"subject": self.subject, "predicate": self.predicate, "object": self.object}

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "predicate": self.predicate,
            "object": self.object,
            "valid_from": self.valid_from,
            "valid_to": self.valid_to,
        }


def _bound_ns(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp") and callable(value.timestamp):  # a datetime from the store
        if getattr(value, "tzinfo", None) is None:
            raise EnvironmentFactsError(f"{where} is a time without an offset: {value!r}")
        micros: float = value.timestamp() * 1_000_000
        return round(micros) * 1_000
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**14:
        return value  # already nanoseconds (the disk cache's form)
    try:
        return timestamp_ns(value)
    except ValueError as exc:
        raise EnvironmentFactsError(f"{where}: {exc}") from exc


def _fact(raw: Any, where: str) -> EnvironmentFact:
    if not isinstance(raw, Mapping):
        raise EnvironmentFactsError(f"{where} must be an object, got {type(raw).__name__}")
    subject, predicate = raw.get("subject"), raw.get("predicate")
    if not isinstance(subject, str) or not subject:
        raise EnvironmentFactsError(f"{where}.subject must be a non-empty string")
    if not isinstance(predicate, str) or not predicate:
        raise EnvironmentFactsError(f"{where}.predicate must be a non-empty string")
    obj = raw.get("object")
    if isinstance(obj, float) and not math.isfinite(obj):
        raise EnvironmentFactsError(f"{where}.object is {obj!r}: JSON numbers are finite")
    start = _bound_ns(raw.get("valid_from"), f"{where}.valid_from")
    end = _bound_ns(raw.get("valid_to"), f"{where}.valid_to")
    if start is not None and end is not None and end <= start:
        raise EnvironmentFactsError(f"{where}: valid_to must be later than valid_from")
    return EnvironmentFact(subject, predicate, obj, start, end)


@dataclass(frozen=True)
class EnvironmentFacts:
    """One environment's fact set at one version (0: nothing loaded yet).

    The form FACT conditions read is built once, here, not on every evaluation:
    facts valid at all times as they are, the rest with their bounds beside them.
    """

    env: str
    version: int
    facts: tuple[EnvironmentFact, ...] = ()
    _always: tuple[dict[str, Any], ...] = field(default=(), init=False, repr=False, compare=False)
    _windowed: tuple[tuple[int | None, int | None, dict[str, Any]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        always = tuple(f.as_task_fact() for f in self.facts if f.valid_from is f.valid_to is None)
        windowed = tuple(
            (f.valid_from, f.valid_to, f.as_task_fact())
            for f in self.facts
            if not (f.valid_from is None and f.valid_to is None)
        )
        object.__setattr__(self, "_always", always)
        object.__setattr__(self, "_windowed", windowed)

    @classmethod
    def build(cls, env: str, version: int, facts: Iterable[Any]) -> EnvironmentFacts:
        """Check ``facts`` (mappings with subject, predicate, object, valid_from, valid_to;
        bounds as datetimes, RFC 3339, epoch seconds or ns) into a set; raises
        :class:`EnvironmentFactsError` naming the first bad fact."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise EnvironmentFactsError(f"facts version must be an integer >= 0, got {version!r}")
        checked = tuple(_fact(raw, f"facts[{i}]") for i, raw in enumerate(facts))
        return cls(env, version, checked)

    @classmethod
    def from_dict(cls, obj: Any) -> EnvironmentFacts:
        """The set from :meth:`to_dict`'s form (the disk cache)."""
        if not isinstance(obj, Mapping) or not isinstance(obj.get("env"), str):
            raise EnvironmentFactsError("a fact set must be an object with env, version, facts")
        facts = obj.get("facts")
        if not isinstance(facts, list):
            raise EnvironmentFactsError("a fact set's 'facts' must be a list")
        return cls.build(obj["env"], obj.get("version"), facts)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "version": self.version,
            "facts": [fact.to_dict() for fact in self.facts],
        }

    def valid_at(self, now_ns: int) -> list[dict[str, Any]]:
        """The facts that hold at ``now_ns``, in the form FACT conditions read (shared
        objects: callers must not change them)."""
        found = list(self._always)
        for start, end, fact in self._windowed:
            if (start is None or start <= now_ns) and (end is None or now_ns < end):
                found.append(fact)
        return found


NO_ENVIRONMENT_FACTS = EnvironmentFacts("", 0)


def with_environment_facts(
    task_facts: Mapping[str, Any], environment: EnvironmentFacts | None
) -> Mapping[str, Any]:
    """``task_facts`` with the environment's facts valid at its instant added after its own.

    ``task_facts`` must already be checked (``validate_task_facts``). Without
    environment facts it is returned as it is; otherwise a new mapping is made
    (the caller's is never changed). The instant is the request's ``now`` when
    given, else the clock, read once here.
    """
    if environment is None or not environment.facts:
        return task_facts
    given = task_facts.get("now")
    now_ns = time.time_ns() if given is None else timestamp_ns(given)
    valid = environment.valid_at(now_ns)
    if not valid:
        return task_facts
    merged = dict(task_facts)
    own = task_facts.get("facts")
    merged["facts"] = [*own, *valid] if own else valid
    return merged
