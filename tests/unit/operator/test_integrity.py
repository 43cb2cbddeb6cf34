"""The integrity check's report, pure: which findings, which concern a snapshot, the summary."""

from __future__ import annotations

import pytest

from evaluator_sidecar.store.audit_chain import AuditChainReport, ChainBreak
from pkg_operator.integrity import Finding, summarize
from pkg_operator.settings import OperatorSettings

INTACT = AuditChainReport(ok=True, rows_checked=12, first_break=None)
BROKEN = AuditChainReport(
    ok=False, rows_checked=3, first_break=ChainBreak(4, "hash_mismatch", "a" * 64, "b" * 64)
)


def test_a_clean_run_has_no_findings() -> None:
    result = summarize([], INTACT, [], snapshots_checked=5)
    assert result.ok
    assert result.summary() == "integrity check passed (12 audit rows, 5 snapshots checked)"


def test_every_source_of_problems_becomes_a_finding() -> None:
    issue = {"check_name": "wasm_without_artifact", "snapshot_id": 7, "detail": "no module"}
    result = summarize([issue], BROKEN, [(9, "rows changed")], snapshots_checked=2)
    assert not result.ok
    assert result.findings == (
        Finding("wasm_without_artifact", 7, "no module"),
        Finding("audit_chain", None, str(BROKEN)),
        Finding("snapshot_rows_changed", 9, "rows changed"),
    )
    assert sorted(result.by_snapshot()) == [7, 9]
    text = result.summary()
    assert text.startswith("integrity check found 3 problem(s)")
    assert "audit chain broken at row 4" in text


def test_the_summary_names_at_most_five_findings() -> None:
    refused = [(i, f"changed {i}") for i in range(8)]
    text = summarize([], INTACT, refused, snapshots_checked=8).summary()
    assert "changed 4" in text
    assert "changed 5" not in text
    assert text.endswith("and 3 more")


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("300", True), ("-1", False)])
def test_the_interval_setting(monkeypatch: pytest.MonkeyPatch, value: str, ok: bool) -> None:
    monkeypatch.setenv("PKG_INTEGRITY_CHECK_SECONDS", value)
    if ok:
        settings = OperatorSettings(database_url="postgresql://x/y", redis_url="redis://x")
        assert settings.integrity_check_seconds == float(value)
    else:
        with pytest.raises(ValueError, match="integrity_check_seconds"):
            OperatorSettings(database_url="postgresql://x/y", redis_url="redis://x")
