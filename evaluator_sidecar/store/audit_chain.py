"""The audit chain's hash, recomputed in Python, and the walk that finds its first break.

Pure: no I/O. The database computes the same hash in ``pkg_audit_hash()``
(migration 0003); this module lets a verifier check the chain without trusting
those functions. The hashed message is the netstrings (``<bytes>:<text>,``, or
``~`` for NULL) of ``pkg-audit-v1``, prev_hash, id, created_at in integer
microseconds since the Unix epoch, action, actor, entity_type, entity_id,
snapshot_id, details as PostgreSQL's jsonb text, and idempotency_key; the hash
is the sha256 hex of that message's UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "ACTION_PATTERN",
    "GENESIS_HASH",
    "AuditChainReport",
    "AuditRow",
    "ChainBreak",
    "ChainWalker",
    "audit_hash",
    "epoch_microseconds",
    "netstring",
]

#: prev_hash of the first row.
GENESIS_HASH = "0" * 64

#: What an action name looks like: dotted lowercase words, e.g. ``deployment.step``.
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def netstring(value: str | None) -> str:
    """``<utf-8 byte length>:<value>,``, or ``~`` for None: unambiguous when concatenated."""
    if value is None:
        return "~"
    return f"{len(value.encode('utf-8'))}:{value},"


def epoch_microseconds(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch, exactly (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError("audit timestamps are timezone-aware; got a naive datetime")
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class AuditRow:
    """One row of pkg_audit_log as the chain sees it (details as jsonb text)."""

    id: int
    created_at: datetime
    action: str
    actor: str
    entity_type: str
    entity_id: str
    snapshot_id: int | None
    details_text: str
    idempotency_key: str | None
    prev_hash: str
    hash: str


def audit_hash(row: AuditRow, prev_hash: str | None = None) -> str:
    """The hash ``row`` must carry, chained to ``prev_hash`` (default: the row's own)."""
    fields = (
        "pkg-audit-v1",
        row.prev_hash if prev_hash is None else prev_hash,
        str(row.id),
        str(epoch_microseconds(row.created_at)),
        row.action,
        row.actor,
        row.entity_type,
        row.entity_id,
        None if row.snapshot_id is None else str(row.snapshot_id),
        row.details_text,
        row.idempotency_key,
    )
    message = "".join(netstring(f) for f in fields)
    return hashlib.sha256(message.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link: which row, what kind of break, expected vs stored hash.

    ``problem`` is one of ``missing_rows`` (ids skip: rows were deleted),
    ``prev_hash_mismatch`` (the row does not point at its predecessor's hash),
    ``hash_mismatch`` (the row's content was changed) and ``head_mismatch``
    (rows were cut off the end, or the head was changed).
    """

    row_id: int
    problem: str
    expected: str | None
    stored: str | None

    def __str__(self) -> str:
        what = {
            "missing_rows": "rows before it are missing",
            "prev_hash_mismatch": "its prev_hash is not the previous row's hash",
            "hash_mismatch": "its content does not match its hash (the row was changed)",
            "head_mismatch": "the chain's end does not match pkg_audit_head (rows were removed)",
        }.get(self.problem, self.problem)
        return (
            f"audit chain broken at row {self.row_id}: {what}; expected {self.expected}, "
            f"stored {self.stored}"
        )


@dataclass(frozen=True)
class AuditChainReport:
    """The result of verifying the chain: ``ok``, how many rows were checked, the first break."""

    ok: bool
    rows_checked: int
    first_break: ChainBreak | None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact ({self.rows_checked} rows)"
        return str(self.first_break)


class ChainWalker:
    """Feeds rows in id order (in pages, if need be) and stops at the first break."""

    def __init__(self) -> None:
        self.prev_hash = GENESIS_HASH
        self.next_id = 1
        self.rows_checked = 0
        self.first_break: ChainBreak | None = None

    def feed(self, rows: Iterable[AuditRow]) -> bool:
        """Check ``rows``; False once a break is found (the rest is not checked)."""
        for row in rows:
            if self.first_break is not None:
                return False
            if row.id != self.next_id:
                self.first_break = ChainBreak(row.id, "missing_rows", self.prev_hash, row.prev_hash)
            elif row.prev_hash != self.prev_hash:
                self.first_break = ChainBreak(
                    row.id, "prev_hash_mismatch", self.prev_hash, row.prev_hash
                )
            else:
                computed = audit_hash(row)
                if computed != row.hash:
                    self.first_break = ChainBreak(row.id, "hash_mismatch", computed, row.hash)
            if self.first_break is not None:
                return False
            self.prev_hash = row.hash
            self.next_id += 1
            self.rows_checked += 1
        return self.first_break is None

    def finish(self, head_last_id: int, head_last_hash: str) -> AuditChainReport:
        """Compare the end of the walk with the head; the verdict."""
        if self.first_break is None and (
            self.next_id - 1 != head_last_id or self.prev_hash != head_last_hash
        ):
            self.first_break = ChainBreak(
                head_last_id, "head_mismatch", head_last_hash, self.prev_hash
            )
        return AuditChainReport(
            ok=self.first_break is None,
            rows_checked=self.rows_checked,
            first_break=self.first_break,
        )
