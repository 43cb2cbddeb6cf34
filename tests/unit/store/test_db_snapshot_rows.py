"""Snapshot content to rows and back (pure): defaults, value text, problems, hashes, assembly."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from evaluator_sidecar.store.errors import ChecksumMismatchError
from evaluator_sidecar.store.snapshot_assembly import assemble_rules, fact_to_dict
from evaluator_sidecar.store.snapshot_prepare import prepare_snapshot
from evaluator_sidecar.store.snapshot_rows import (
    InvalidSnapshotError,
    condition_value_text,
    format_timestamp,
    parse_timestamp,
)

CHECKSUM = "a" * 64


def _native(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": "rules@1.0.0",
        "env": "prod",
        "engine": "native",
        "checksum": CHECKSUM,
        "rules": [
            {
                "rule_id": "rule-001",
                "rule_name": "vip",
                "conditions": [
                    {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}
                ],
                "emissions": [{"subtask_type": "escalate"}],
            }
        ],
        "subtask_types": [{"name": "escalate", "default_params": {"level": "low"}}],
    }
    spec.update(overrides)
    return spec


class TestConditionValues:
    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (None, None),
            ("vip", "vip"),
            ("0.8", "0.8"),
            (0.8, "0.8"),
            (10, "10"),
            (1.0, "1"),  # as kubectl would pass it on
            (True, "true"),
            (["gold", "platinum"], '["gold", "platinum"]'),
            ([1, 2.5], "[1, 2.5]"),
            ({"service": "lounge"}, '{"service": "lounge"}'),
        ],
    )
    def test_values_are_stored_as_text(self, value: Any, text: str | None) -> None:
        assert condition_value_text(value) == text

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
    def test_values_json_cannot_hold_are_refused(self, value: Any) -> None:
        with pytest.raises(ValueError, match=r"JSON|condition value"):
            condition_value_text(value)


class TestPreparing:
    def test_defaults_are_filled_from_list_order_and_the_semantics(self) -> None:
        content = prepare_snapshot(**_native())
        [rule] = content.rules
        assert (rule.priority, rule.disabled, rule.position) == (0, False, 0)
        [condition] = rule.conditions
        assert (condition.value, condition.position) == (None, 0)
        [emission] = rule.emissions
        assert (emission.subtask_name, emission.relationship_type, emission.params) == (
            "escalate",
            "EMITS",
            {},
        )
        assert emission.default_params is None

    def test_undeclared_subtask_types_get_an_undeclared_row(self) -> None:
        spec = _native(subtask_types=[])
        content = prepare_snapshot(**spec)
        assert [(t.name, t.declared, t.default_params) for t in content.subtask_types] == [
            ("escalate", False, {})
        ]

    def test_every_problem_is_reported_with_its_path(self) -> None:
        spec = _native(
            env="qa",
            rules=[
                {
                    "rule_id": "",
                    "rule_name": "x",
                    "priority": "high",
                    "disabled": "no",
                    "conditions": [{"condition_type": "TAG", "operator": "LIKE"}],
                    "emissions": [{"subtask_name": "x", "relationship_type": "THEN", "params": []}],
                },
                "not a rule",
            ],
            fixtures=[{"name": "f"}, {"name": "f"}],
            facts=[
                {
                    "subject": "s",
                    "predicate": "p",
                    "valid_from": "2026-02-01T00:00:00Z",
                    "valid_to": "2026-01-01T00:00:00Z",
                }
            ],
        )
        with pytest.raises(InvalidSnapshotError) as caught:
            prepare_snapshot(**spec)
        problems = caught.value.problems
        expected = [
            "env: must be one of prod, staging, dev; got 'qa'",
            "rules[0].rule_id: is required (non-empty text)",
            "rules[0].priority: must be a whole number; got 'high'",
            "rules[0].disabled: must be true or false; got 'no'",
            "rules[0].conditions[0].condition_key: is required (text)",
            "rules[0].conditions[0].operator: must be one of",
            "rules[0].emissions[0].subtask_type: is required (non-empty text)",
            "rules[0].emissions[0].relationship_type: must be one of EMITS, ORDERS, GATE",
            "rules[0].emissions[0].params: must be a mapping",
            "rules[1]: must be a mapping; got str",
            "fixtures[1].name: name 'f' is also used at fixtures[0].name",
            "facts[0]: valid_to must be later than valid_from",
        ]
        for fragment in expected:
            assert any(fragment in p for p in problems), (fragment, problems)
        assert "correct them and store it again" in str(caught.value)

    def test_engine_and_artifact_must_agree(self) -> None:
        with pytest.raises(InvalidSnapshotError, match="needs its compiled module"):
            prepare_snapshot(version="p@1", env="prod", engine="wasm", checksum=CHECKSUM)
        with pytest.raises(InvalidSnapshotError, match="native snapshot has rules"):
            prepare_snapshot(**_native(wasm_artifact=b"\x00asm"))

    def test_a_wasm_checksum_must_be_the_artifacts_sha256(self) -> None:
        module = b"\x00asm\x01\x00\x00\x00"
        digest = hashlib.sha256(module).hexdigest()
        content = prepare_snapshot(
            version="p@1",
            env="prod",
            engine="wasm",
            wasm_artifact=module,
            checksum=f"sha256-{digest}",
        )
        assert (content.checksum, content.artifact_sha256) == (digest, digest)
        with pytest.raises(ChecksumMismatchError, match=digest):
            prepare_snapshot(
                version="p@1", env="prod", engine="wasm", wasm_artifact=module, checksum=CHECKSUM
            )


class TestContentHash:
    def test_equal_content_hashes_equal_however_it_was_written(self) -> None:
        a = prepare_snapshot(**_native())
        spelled_out = _native()
        spelled_out["rules"][0]["emissions"][0].update(
            subtask_name="escalate", relationship_type="EMITS", params={}, position=0
        )
        spelled_out["rules"][0]["priority"] = 0
        assert prepare_snapshot(**spelled_out).content_sha256 == a.content_sha256

    @pytest.mark.parametrize(
        "change",
        [
            {"env": "dev"},
            {"checksum": "b" * 64},
            {"fixtures": [{"name": "f", "input": {}, "expect": {"subtasks": []}}]},
            {"data": {"k": 1}},
            {"facts": [{"subject": "s", "predicate": "p", "object": 1}]},
        ],
    )
    def test_any_stored_difference_changes_the_hash(self, change: dict[str, Any]) -> None:
        assert (
            prepare_snapshot(**_native(**change)).content_sha256
            != prepare_snapshot(**_native()).content_sha256
        )


class TestTimestamps:
    def test_rfc3339_epoch_and_naive_values_become_utc(self) -> None:
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        assert parse_timestamp("2026-01-01T00:00:00Z") == moment
        assert parse_timestamp("2026-01-01T01:00:00+01:00") == moment
        assert parse_timestamp(moment.timestamp()) == moment
        assert parse_timestamp(datetime(2026, 1, 1)) == moment
        assert format_timestamp(moment) == "2026-01-01T00:00:00Z"

    def test_a_fact_lists_only_the_bounds_it_has(self) -> None:
        row = {
            "subject": "s",
            "predicate": "p",
            "object": None,
            "valid_from": None,
            "valid_to": datetime(2026, 1, 1, tzinfo=UTC),
        }
        assert fact_to_dict(row) == {
            "subject": "s",
            "predicate": "p",
            "object": None,
            "valid_to": "2026-01-01T00:00:00Z",
        }


class TestAssembling:
    def test_rows_become_the_rule_form_with_default_params(self) -> None:
        r1, r2 = uuid.uuid4(), uuid.uuid4()
        rules = [
            {
                "id": r1,
                "rule_id": "b",
                "rule_name": "second",
                "priority": 1,
                "disabled": False,
                "rule_source": None,
            },
            {
                "id": r2,
                "rule_id": "a",
                "rule_name": "first",
                "priority": 5,
                "disabled": True,
                "rule_source": "src",
            },
        ]
        conditions = [
            {
                "rule": r1,
                "condition_type": "SIGNAL",
                "condition_key": "x",
                "operator": ">",
                "value": "1",
                "position": 2,
            },
            {
                "rule": r1,
                "condition_type": "TAG",
                "condition_key": "t",
                "operator": "EXISTS",
                "value": None,
                "position": 0,
            },
        ]
        emissions = [
            {
                "rule": r1,
                "subtask_type": "notify",
                "subtask_name": "n",
                "relationship_type": "ORDERS",
                "params": {"a": 1},
                "default_params": None,
                "position": 0,
            },
            {
                "rule": r2,
                "subtask_type": "notify",
                "subtask_name": "m",
                "relationship_type": "EMITS",
                "params": {},
                "default_params": {"own": True},
                "position": 0,
            },
        ]
        types = [{"name": "notify", "default_params": {"channel": "email"}}]
        assembled = assemble_rules(rules, conditions, emissions, types)
        assert [r["rule_id"] for r in assembled] == ["b", "a"]  # stored order kept
        assert [c["position"] for c in assembled[0]["conditions"]] == [0, 2]
        assert assembled[0]["emissions"][0]["default_params"] == {"channel": "email"}
        assert assembled[1]["emissions"][0]["default_params"] == {"own": True}
        assert "rule_source" not in assembled[0]
        assert assembled[1]["rule_source"] == "src"
        assert assembled[1]["conditions"] == []
