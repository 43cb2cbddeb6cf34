"""Which facts levels in Redis must be (re)written: PostgreSQL's facts versions against
the levels found (pure).

An environment's facts level ``pkg:facts:{env}`` must carry the version of its fact
set in PostgreSQL (``pkg_facts_versions``). A level that is missing (Redis lost it,
or it is malformed) or that carries another version (a fact changed, or the key
was edited by hand) is rewritten with an epoch above the one found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from evaluator_sidecar.signals.messages import FactsLevel

__all__ = ["FactsRepair", "decide_facts"]

FactsReason = Literal["missing", "changed", "ahead"]


@dataclass(frozen=True)
class FactsRepair:
    """A facts level to write: the version PostgreSQL holds, and what Redis held."""

    env: str
    version: int
    found: FactsLevel | None
    reason: FactsReason

    @property
    def floor(self) -> int:
        """The epoch the rewrite must exceed (the one found, else 0)."""
        return 0 if self.found is None else self.found.epoch

    @property
    def is_repair(self) -> bool:
        """True when Redis was wrong (missing, or ahead of PostgreSQL); a changed
        version after a fact was written is an ordinary publication."""
        return self.reason != "changed"

    @property
    def detail(self) -> str:
        if self.found is None:
            return f"no facts level; PostgreSQL holds version {self.version}"
        return f"found version {self.found.version}, PostgreSQL holds {self.version}"


def decide_facts(
    envs: Sequence[str], wanted: Mapping[str, int], found: Mapping[str, FactsLevel | None]
) -> list[FactsRepair]:
    """The facts levels to write, in the order of ``envs``."""
    out: list[FactsRepair] = []
    for env in envs:
        version = wanted.get(env, 0)
        level = found.get(env)
        if level is None:
            out.append(FactsRepair(env, version, None, "missing"))
        elif level.version != version or level.env != env:
            reason: FactsReason = "ahead" if level.version > version else "changed"
            out.append(FactsRepair(env, version, level, reason))
    return out
