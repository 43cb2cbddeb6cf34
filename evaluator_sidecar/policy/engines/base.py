"""The engine protocol and the registry that maps engine names to engine classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["ENGINE_REGISTRY", "EngineResult", "PolicyEngine", "register_engine"]

#: ``{"subtasks": [...], "dag": [...], "rules": [...]}`` in the shapes docs/rule-language.md
#: describes ("The output");
#: ``PKGEvaluator`` adds ``"snapshot"``.
EngineResult = dict[str, Any]


@runtime_checkable
class PolicyEngine(Protocol):
    """What every engine provides.

    ``from_snapshot`` does all the expensive work (parsing, compiling, checksum
    checks) and raises ``SnapshotLoadError`` listing every problem; ``evaluate``
    is called on the hot path and must not do I/O. ``evaluate`` receives task
    facts that ``PKGEvaluator`` has already validated, and raises
    ``EvaluationError`` for a failure of that one call.
    """

    @classmethod
    def from_snapshot(cls, snapshot: PKGSnapshotData) -> PolicyEngine: ...

    def evaluate(self, task_facts: Mapping[str, Any]) -> EngineResult: ...

    @property
    def degraded(self) -> bool:
        """True when the engine runs in a fallback mode (e.g. wasmtime missing)."""
        ...


ENGINE_REGISTRY: dict[str, type[PolicyEngine]] = {}


def register_engine(name: str, cls: type[PolicyEngine]) -> None:
    """Register ``cls`` as the engine for snapshots whose ``engine`` is ``name``.

    Registering a name again replaces the previous class (useful for tests and
    for plugging in an alternative implementation).
    """
    if not name or not name.isidentifier():
        raise ValueError(f"engine name {name!r} must be a non-empty identifier")
    ENGINE_REGISTRY[name] = cls
