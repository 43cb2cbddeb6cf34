"""Helpers for the native engine's unit tests: building rules and snapshots, both engines.

``engine_cls`` runs a test against the compiled engine and the reference
interpreter alike, so each behaviour is specified once and held to both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.reference import ReferenceEngine
from evaluator_sidecar.policy.model import PKGSnapshotData

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SNAPSHOT = REPO / "tests" / "data" / "reference-snapshot.yaml"
SAMPLE_SNAPSHOT = REPO / "manifests" / "samples" / "policysnapshot-native.yaml"

_MISSING = object()


def cond(ctype: str, key: Any, op: str, value: Any = _MISSING, **extra: Any) -> dict[str, Any]:
    """A condition in the snapshot's rule form."""
    out: dict[str, Any] = {"condition_type": ctype, "operator": op}
    if key is not None:
        out["condition_key"] = key
    if value is not _MISSING:
        out["value"] = value
    out.update(extra)
    return out


def emit(
    name: str, relationship: str = "EMITS", subtask_type: str = "task", **extra: Any
) -> dict[str, Any]:
    """An emission in the snapshot's rule form."""
    return {
        "subtask_type": subtask_type,
        "subtask_name": name,
        "relationship_type": relationship,
        **extra,
    }


def rule(
    rule_id: str,
    conditions: Sequence[Mapping[str, Any]] = (),
    emissions: Sequence[Mapping[str, Any]] | None = None,
    *,
    priority: int = 0,
    name: str | None = None,
    disabled: bool = False,
) -> dict[str, Any]:
    """A rule; by default it emits one subtask named after the rule."""
    return {
        "rule_id": rule_id,
        "rule_name": name or f"name_{rule_id}",
        "priority": priority,
        "disabled": disabled,
        "conditions": list(conditions),
        "emissions": list(emissions) if emissions is not None else [emit(f"{rule_id}_task")],
    }


def snapshot(
    rules: Sequence[Mapping[str, Any]],
    *,
    subtask_types: Sequence[Mapping[str, Any]] = (),
    facts: Sequence[Mapping[str, Any]] = (),
    version: str = "test@1.0.0",
) -> PKGSnapshotData:
    """A native snapshot holding ``rules``."""
    return PKGSnapshotData(
        id=0,
        version=version,
        engine="native",
        wasm_artifact=None,
        checksum=None,
        rules=[dict(r) for r in rules],
        subtask_types=[dict(t) for t in subtask_types],
        facts=[dict(f) for f in facts],
    )


EngineFactory = Callable[..., Any]


@pytest.fixture(params=[NativeRuleEngine, ReferenceEngine], ids=["compiled", "reference"])
def engine_cls(request: pytest.FixtureRequest) -> Any:
    """The compiled engine and the reference interpreter, in turn."""
    return request.param


@pytest.fixture
def run(engine_cls: Any) -> Callable[..., dict[str, Any]]:
    """``run(rules, task_facts, **snapshot_kw)`` evaluates with the engine under test."""

    def _run(
        rules: Sequence[Mapping[str, Any]], task_facts: Mapping[str, Any], **kw: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = engine_cls.from_snapshot(snapshot(rules, **kw)).evaluate(
            task_facts
        )
        return result

    return _run
