"""The shipped snapshots: the reference rule set (shared with the WASM engine) and the
sample (manifests/samples/policysnapshot-native.yaml) pass their fixtures on the
compiled engine and the reference interpreter alike."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import REFERENCE_SNAPSHOT, SAMPLE_SNAPSHOT

from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)


@pytest.mark.parametrize("path", [REFERENCE_SNAPSHOT, SAMPLE_SNAPSHOT], ids=["reference", "sample"])
def test_fixtures_pass(engine_cls: Any, path: Path) -> None:
    data = snapshot_from_resource(select_policy_snapshot(load_documents(path.read_text())))
    engine = engine_cls.from_snapshot(data)

    def evaluate(task_facts: Mapping[str, Any]) -> dict[str, Any]:
        return {**engine.evaluate(task_facts), "snapshot": data.version}

    report = run_fixtures(evaluate, data.fixtures)
    assert report.total >= 6
    assert report.success, report.format()


def test_reference_snapshot_covers_the_language() -> None:
    from evaluator_sidecar.policy.engines.native.loader import SUPPORTED_OPERATORS

    spec = select_policy_snapshot(load_documents(REFERENCE_SNAPSHOT.read_text()))["spec"]
    rules = spec["rules"]
    used = {(c["condition_type"], c["operator"]) for r in rules for c in r["conditions"]}
    assert used == {(t, op) for t, ops in SUPPORTED_OPERATORS.items() for op in ops}
    relationships = {e.get("relationship_type", "EMITS") for r in rules for e in r["emissions"]}
    assert relationships == {"EMITS", "ORDERS", "GATE"}
    assert any(r.get("disabled") for r in rules)
    assert any(f.get("valid_from") or f.get("valid_to") for f in spec["facts"])
    priorities = [r.get("priority", 0) for r in rules]
    assert len(set(priorities)) < len(priorities)  # ties
