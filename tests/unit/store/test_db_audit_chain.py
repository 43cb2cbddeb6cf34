"""The audit chain's hash and the walk that finds the first broken link (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from evaluator_sidecar.store.audit_chain import (
    GENESIS_HASH,
    AuditRow,
    ChainWalker,
    audit_hash,
    epoch_microseconds,
    netstring,
)

T0 = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)


def _chain(length: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    prev = GENESIS_HASH
    for i in range(1, length + 1):
        row = AuditRow(
            id=i,
            created_at=T0 + timedelta(seconds=i),
            action="operator.tick",
            actor="op",
            entity_type="op",
            entity_id=str(i),
            snapshot_id=None,
            details_text=f'{{"n": {i}}}',
            idempotency_key=None,
            prev_hash=prev,
            hash="",
        )
        row = replace(row, hash=audit_hash(row))
        rows.append(row)
        prev = row.hash
    return rows


class TestHash:
    def test_netstrings_are_unambiguous_and_count_utf8_bytes(self) -> None:
        assert netstring(None) == "~"
        assert netstring("") == "0:,"
        assert netstring("✓") == "3:✓,"
        assert netstring("a,b") + netstring("c") != netstring("a") + netstring("b,c")

    def test_epoch_microseconds_are_exact(self) -> None:
        assert epoch_microseconds(T0) == 1_767_225_600_123_456
        with pytest.raises(ValueError, match="timezone-aware"):
            epoch_microseconds(datetime(2026, 1, 1))

    def test_the_hash_matches_postgresqls_pkg_audit_hash(self) -> None:
        # SELECT pkg_audit_hash(repeat('0', 64), 1, '2026-01-01 00:00:00.123456+00',
        #   'snapshot.promoted', 'ci', 'snapshot', '7', 7, '{"env": "prod", "ü": "✓"}', NULL)
        row = AuditRow(
            id=1,
            created_at=T0,
            action="snapshot.promoted",
            actor="ci",
            entity_type="snapshot",
            entity_id="7",
            snapshot_id=7,
            details_text='{"ü": "✓", "env": "prod"}',  # jsonb's rendering: shorter keys first
            idempotency_key=None,
            prev_hash=GENESIS_HASH,
            hash="",
        )
        assert audit_hash(row) == "1fc555dfddb4c4bafa5089b10169e3d4c2f126ff3bd9938aac9cecf622bf4851"

    def test_every_field_is_covered(self) -> None:
        row = _chain(1)[0]
        variants = [
            replace(row, id=2),
            replace(row, created_at=T0),
            replace(row, action="operator.tock"),
            replace(row, actor="mallory"),
            replace(row, entity_type="x"),
            replace(row, entity_id="9"),
            replace(row, snapshot_id=1),
            replace(row, details_text="{}"),
            replace(row, idempotency_key="k"),
            replace(row, prev_hash="f" * 64),
        ]
        hashes = {audit_hash(v) for v in variants}
        assert row.hash not in hashes
        assert len(hashes) == len(variants)


class TestWalking:
    def test_an_intact_chain_checks_out_in_pages(self) -> None:
        rows = _chain(7)
        walker = ChainWalker()
        assert walker.feed(rows[:3])
        assert walker.feed(rows[3:])
        report = walker.finish(7, rows[-1].hash)
        assert (report.ok, report.rows_checked, report.first_break) == (True, 7, None)
        assert str(report) == "audit chain intact (7 rows)"

    def test_an_edited_row_is_a_hash_mismatch_at_that_row(self) -> None:
        rows = _chain(5)
        rows[2] = replace(rows[2], actor="mallory")
        walker = ChainWalker()
        assert not walker.feed(rows)
        report = walker.finish(5, rows[-1].hash)
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (3, "hash_mismatch")
        assert report.first_break.stored == rows[2].hash
        assert report.first_break.expected == audit_hash(rows[2])
        assert report.rows_checked == 2

    def test_a_deleted_row_is_reported_at_the_row_after_the_gap(self) -> None:
        rows = _chain(5)
        del rows[1]
        walker = ChainWalker()
        walker.feed(rows)
        report = walker.finish(5, rows[-1].hash)
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (3, "missing_rows")
        assert report.first_break.expected == rows[0].hash

    def test_a_relinked_row_is_a_prev_hash_mismatch(self) -> None:
        rows = _chain(4)
        forged = replace(rows[1], actor="mallory")
        rows[1] = replace(forged, hash=audit_hash(forged))
        walker = ChainWalker()
        walker.feed(rows)
        report = walker.finish(4, rows[-1].hash)
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (3, "prev_hash_mismatch")

    def test_a_truncated_tail_is_a_head_mismatch(self) -> None:
        rows = _chain(4)
        walker = ChainWalker()
        walker.feed(rows[:3])
        report = walker.finish(4, rows[-1].hash)
        assert report.first_break is not None
        assert (report.first_break.row_id, report.first_break.problem) == (4, "head_mismatch")
        assert "rows were removed" in str(report)

    def test_an_empty_chain_is_intact(self) -> None:
        assert ChainWalker().finish(0, GENESIS_HASH).ok
