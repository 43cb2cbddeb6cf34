"""Small native snapshots for the sidecar's tests: one rule whose emission names the version."""

from __future__ import annotations

from typing import Any

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.resource import content_checksum

FACTS = {"tags": ["vip"], "signals": {"x2": 0.8}, "context": {"domain": "hotel_ops"}}


def rules_for(version: str) -> list[dict[str, Any]]:
    """A VIP rule emitting ``escalate`` with ``params.version`` = the snapshot's version."""
    return [
        {
            "rule_id": "rule-001",
            "rule_name": "high_priority_vip",
            "priority": 10,
            "conditions": [{"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}],
            "emissions": [
                {
                    "subtask_type": "escalate",
                    "subtask_name": "escalate_vip",
                    "relationship_type": "EMITS",
                    "params": {"level": "high", "version": version},
                }
            ],
        }
    ]


def spec_for(
    version: str, *, env: str = "prod", good_fixtures: bool = True, broken: bool = False
) -> dict[str, Any]:
    """A PolicySnapshot spec; ``good_fixtures=False`` adds a fixture the rules fail;
    ``broken=True`` makes the rules unloadable (a SIGNAL compared with text)."""
    rules = rules_for(version)
    if broken:
        rules[0]["conditions"] = [
            {"condition_type": "SIGNAL", "condition_key": "x2", "operator": ">=", "value": "high"}
        ]
    expect = ["escalate_vip"] if good_fixtures else ["something_else"]
    return {
        "version": version,
        "env": env,
        "engine": "native",
        "rules": rules,
        "fixtures": [
            {"name": "vip-escalates", "input": {"tags": ["vip"]}, "expect": {"subtasks": expect}}
        ],
    }


def snapshot_for(version: str, *, snapshot_id: int = 0, **kwargs: Any) -> PKGSnapshotData:
    spec = spec_for(version, **kwargs)
    return PKGSnapshotData(
        id=snapshot_id,
        version=version,
        engine="native",
        wasm_artifact=None,
        checksum=content_checksum(spec),
        rules=spec["rules"],
        env=spec["env"],
        fixtures=spec["fixtures"],
    )
