"""Verification of snapshot content, pure: the checksum on store, the stored rows on read."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from evaluator_sidecar.policy import resource
from evaluator_sidecar.policy.resource_checksum import content_checksum
from evaluator_sidecar.store import errors
from evaluator_sidecar.store.snapshot_prepare import prepare_snapshot
from evaluator_sidecar.store.snapshot_rows import SnapshotContent
from evaluator_sidecar.store.snapshot_verify import (
    stored_content_sha256,
    verified_content,
    verify_stored_rows,
)

CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)

SPEC: dict[str, Any] = {
    "engine": "native",
    "rules": [
        {
            "rule_id": "r1",
            "rule_name": "vip",
            "priority": 10,
            "conditions": [
                # Explicit positions out of list order: rows are rebuilt in insertion order.
                {"condition_type": "SIGNAL", "condition_key": "x2", "operator": ">=", "value": 0.5,
                 "position": 2},
                {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS",
                 "position": 1},
            ],
            "emissions": [
                {"subtask_type": "escalate", "params": {"level": "high"}},
                {"subtask_type": "notify", "default_params": {"channel": "sms"}},
            ],
        }
    ],
    "subtaskTypes": [{"name": "escalate", "default_params": {"queue": "vip"}}],
    "facts": [{"subject": "room:1", "predicate": "is", "object": {"vip": True},
               "valid_from": "2026-01-01T00:00:00Z"}],
    "data": {"limit": 3.0},
}  # fmt: skip


def _content(checksum: str | None = None) -> SnapshotContent:
    return prepare_snapshot(
        version="rules@1.0.0",
        env="prod",
        engine="native",
        rules=SPEC["rules"],
        subtask_types=SPEC["subtaskTypes"],
        facts=SPEC["facts"],
        fixtures=[{"name": "f", "input": {"tags": ["vip"]}, "expect": {}}],
        data=SPEC["data"],
        checksum=checksum or content_checksum(SPEC),
    )


def _rows(content: SnapshotContent) -> dict[str, Any]:
    """What PostgreSQL holds after store_snapshot, as the read queries return it."""
    ids = iter(range(100, 1000))
    rules, conditions, emissions = [], [], []
    for rule in content.rules:
        uid = f"uuid-{rule.rule_id}"
        rules.append({"id": uid, **{k: getattr(rule, k) for k in (
            "rule_id", "rule_name", "priority", "disabled", "rule_source")}})  # fmt: skip
        conditions += [{"id": next(ids), "rule": uid, **c.__dict__} for c in rule.conditions]
        emissions += [{"id": next(ids), "rule": uid, **e.__dict__} for e in rule.emissions]
    # The read queries order by position: reverse-sorted input proves the rebuild re-orders.
    conditions.sort(key=lambda c: c["position"])
    return {
        "snapshot": {
            "id": 1,
            "version": content.version,
            "env": content.env,
            "engine": content.engine,
            "checksum": content.checksum,
            "content_sha256": content.content_sha256,
            "data": content.data,
            "entrypoint": content.entrypoint,
            "created_at": CREATED,
        },
        "rules": rules,
        "conditions": conditions,
        "emissions": emissions,
        "subtask_types": [t.__dict__ for t in content.subtask_types],
        "facts": [{**f.__dict__, "created_at": CREATED} for f in content.facts],
        "fixtures": [f.__dict__ for f in content.fixtures],
        "artifact": None,
    }


def _verify(rows: dict[str, Any]) -> None:
    verify_stored_rows(
        rows["snapshot"],
        rules=rows["rules"],
        conditions=rows["conditions"],
        emissions=rows["emissions"],
        subtask_types=rows["subtask_types"],
        facts=rows["facts"],
        fixtures=rows["fixtures"],
        artifact=rows["artifact"],
    )


def test_untouched_rows_hash_to_the_stored_content_sha256() -> None:
    content = _content()
    rows = _rows(content)
    del rows["snapshot"]["content_sha256"]
    assert stored_content_sha256(**{"snapshot": rows.pop("snapshot"), **rows}) == (
        content.content_sha256
    )


def test_untouched_rows_pass() -> None:
    _verify(_rows(_content()))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r["conditions"][0].update(value="0.1"),
        lambda r: r["conditions"][1].update(operator="!="),
        lambda r: r["emissions"][0].update(params={"level": "low"}),
        lambda r: r["rules"][0].update(disabled=True),
        lambda r: r["subtask_types"][0].update(default_params={}),
        lambda r: r["facts"][0].update(object={"vip": False}),
        lambda r: r["fixtures"].clear(),
        lambda r: r["snapshot"].update(checksum="0" * 64),
        lambda r: r["snapshot"].update(data={"limit": 4}),
    ],
    ids=["condition value", "operator", "params", "disabled", "type defaults", "fact",
         "fixtures", "checksum column", "data"],
)  # fmt: skip
def test_a_changed_row_is_refused(tamper: Any) -> None:
    rows = _rows(_content())
    tamper(rows)
    with pytest.raises(errors.ChecksumMismatchError, match="changed in PostgreSQL"):
        _verify(rows)


def test_a_fact_added_later_is_not_part_of_the_content() -> None:
    rows = _rows(_content())
    later = CREATED + dt.timedelta(minutes=5)
    rows["facts"].append({**rows["facts"][0], "object": 1, "created_at": later})
    _verify(rows)


def test_the_store_refuses_a_checksum_that_is_not_the_contents() -> None:
    wrong = "a" * 64
    with pytest.raises(errors.ChecksumMismatchError, match="is not the content's") as info:
        verified_content(_content(wrong), content_checksum(SPEC))
    assert info.value.declared == wrong
    assert info.value.actual == content_checksum(SPEC)


def test_one_checksum_error_under_both_import_paths() -> None:
    """Catching the policy core's refusal also catches the store's."""
    exc = errors.ChecksumMismatchError("x", version="v")
    assert isinstance(exc, resource.ChecksumMismatchError)
    assert isinstance(exc, errors.IntegrityError)
    with pytest.raises(resource.ChecksumMismatchError):
        raise exc
