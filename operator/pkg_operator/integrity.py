"""Scheduled integrity checks: the database's own checks, the audit chain, every snapshot's rows.

Every ``PKG_INTEGRITY_CHECK_SECONDS`` (0 disables it) one replica runs:

* ``pkg_check_integrity()`` (cross-snapshot emissions, wasm snapshots without or
  with a mismatching artifact, several active snapshots, deployments of archived
  snapshots);
* the audit chain, recomputed in Python (``verify_audit_chain``, the same walk
  as ``pkg_verify_audit_chain()`` without trusting the database);
* every stored (not archived) snapshot read back, which makes the store
  recompute its rows' hash (``store/snapshot_verify.py``): a row changed in
  PostgreSQL after the store shows here before any sidecar is told to load it.

It reports each run as a log line (WARNING with every problem, INFO when clean),
three metrics (``pkg_integrity_problems``, ``pkg_integrity_audit_chain_broken``,
``pkg_integrity_checks_total{result}``,
owned by :mod:`pkg_operator.metrics`), and Kubernetes
events: a Warning ``IntegrityCheckFailed`` on each PolicySnapshot a problem
concerns, and one summarising the run on the ``policysnapshots`` CRD (the one
object every installation has, standalone or not) when anything is wrong.

Which replica: the task starts on every replica (kopf's startup handler runs
before peering decides who works), and each run first takes the PostgreSQL
advisory lease ``pkg_integrity`` (``store/lease.py``). The replica holding it
checks and reports; the others skip. A replica that dies releases it with its
connection. The lease holder need not be the replica kopf lets work: the checks
read only, so what matters is that exactly one reports, not which one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.store.audit_chain import AuditChainReport
from evaluator_sidecar.store.errors import ChecksumMismatchError
from evaluator_sidecar.store.lease import AdvisoryLease
from pkg_operator import kube
from pkg_operator.api import GROUP, SNAPSHOTS
from pkg_operator.context import OperatorContext
from pkg_operator.metrics import INTEGRITY_AUDIT_CHAIN_BROKEN as CHAIN_BROKEN
from pkg_operator.metrics import INTEGRITY_CHECKS as CHECKS
from pkg_operator.metrics import INTEGRITY_PROBLEMS as PROBLEMS

__all__ = [
    "CHECKS",
    "PROBLEMS",
    "Finding",
    "IntegrityResult",
    "check_once",
    "start_checker",
    "summarize",
]

log = logging.getLogger(__name__)

LEASE = "pkg_integrity"
#: The object run-wide problems (the audit chain) are reported on.
ANCHOR_CRD = f"{SNAPSHOTS[2]}.{GROUP}"
#: At most this many findings in one event's message.
_EVENT_FINDINGS = 5


@dataclass(frozen=True)
class Finding:
    """One problem: which check found it, the snapshot it concerns (if one), what it is."""

    check: str
    snapshot_id: int | None
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


@dataclass(frozen=True)
class IntegrityResult:
    findings: tuple[Finding, ...]
    audit_rows_checked: int
    snapshots_checked: int

    @property
    def ok(self) -> bool:
        return not self.findings

    def by_snapshot(self) -> dict[int, list[Finding]]:
        out: dict[int, list[Finding]] = {}
        for finding in self.findings:
            if finding.snapshot_id is not None:
                out.setdefault(finding.snapshot_id, []).append(finding)
        return out

    def summary(self) -> str:
        checked = (
            f"{self.audit_rows_checked} audit rows, {self.snapshots_checked} snapshots checked"
        )
        if self.ok:
            return f"integrity check passed ({checked})"
        shown = "; ".join(str(f) for f in self.findings[:_EVENT_FINDINGS])
        more = len(self.findings) - _EVENT_FINDINGS
        tail = f"; and {more} more" if more > 0 else ""
        return f"integrity check found {len(self.findings)} problem(s) ({checked}): {shown}{tail}"


def summarize(
    issues: Iterable[Mapping[str, Any]],
    chain: AuditChainReport,
    refused: Iterable[tuple[int, str]],
    *,
    snapshots_checked: int,
) -> IntegrityResult:
    """The run's findings from pkg_check_integrity()'s rows, the chain and refused snapshots."""
    findings = [
        Finding(str(i["check_name"]), i.get("snapshot_id"), str(i["detail"])) for i in issues
    ]
    if not chain.ok:
        findings.append(Finding("audit_chain", None, str(chain)))
    findings.extend(Finding("snapshot_rows_changed", sid, why) for sid, why in refused)
    return IntegrityResult(tuple(findings), chain.rows_checked, snapshots_checked)


async def _refused_snapshots(ctx: OperatorContext) -> tuple[list[tuple[int, str]], int]:
    rows = await ctx.db.list_snapshots(limit=100_000)
    refused = []
    for row in rows:
        try:
            await ctx.db.get_snapshot_by_id(row["id"])
        except ChecksumMismatchError as exc:
            refused.append((int(row["id"]), str(exc)))
    return refused, len(rows)


async def check_once(ctx: OperatorContext) -> IntegrityResult:
    """Run every check once and report the result (log, metrics, events)."""
    integrity = await ctx.db.check_integrity()
    chain = await ctx.db.verify_audit_chain()
    refused, checked = await _refused_snapshots(ctx)
    result = summarize(integrity["issues"], chain, refused, snapshots_checked=checked)
    PROBLEMS.set(len(result.findings))
    CHAIN_BROKEN.set(0 if chain.ok else 1)
    CHECKS.labels(result="ok" if result.ok else "problems").inc()
    if result.ok:
        log.info(result.summary(), extra={"event": "integrity_check_passed"})
        return result
    log.warning(
        result.summary(),
        extra={"event": "integrity_check_failed", "problems": len(result.findings)},
    )
    await _post_events(ctx, result)
    return result


async def _post_events(ctx: OperatorContext, result: IntegrityResult) -> None:
    for snapshot_id, findings in result.by_snapshot().items():
        body = await _snapshot_body(ctx, snapshot_id)
        if body is not None:
            await _warn(body, "; ".join(str(f) for f in findings))
    anchor = await kube.get_crd(ANCHOR_CRD)
    if anchor is not None:
        await _warn(anchor, result.summary())
    else:
        log.warning("cannot post the integrity event: CRD %s is not readable", ANCHOR_CRD)


async def _warn(obj: dict[str, Any], message: str) -> None:
    # kopf.warn() needs the event queue kopf sets up for handlers, which a task started
    # by the startup handler does not have: post it directly.
    await kube.post_event(obj, type_="Warning", reason="IntegrityCheckFailed", message=message)


async def _snapshot_body(ctx: OperatorContext, snapshot_id: int) -> dict[str, Any] | None:
    info = await ctx.db.get_snapshot_info(snapshot_id=snapshot_id)
    if info is None or not info.get("resource_name"):
        return None
    return await kube.get_object(
        SNAPSHOTS[2], info["resource_namespace"] or "", info["resource_name"]
    )


async def _check_forever(ctx: OperatorContext) -> None:
    interval = ctx.settings.integrity_check_seconds
    lease = AdvisoryLease(ctx.settings.database_url, LEASE)
    try:
        while True:
            try:
                if await lease.held():
                    await check_once(ctx)
                else:
                    log.debug("another replica holds the integrity lease; not checking")
            except asyncio.CancelledError:
                raise
            except Exception:  # the next run may succeed: PostgreSQL back, API server back
                CHECKS.labels(result="error").inc()
                log.exception("the integrity check failed; next try in %gs", interval)
            await asyncio.sleep(interval)
    finally:
        await lease.close()


def start_checker(ctx: OperatorContext) -> asyncio.Task[None]:
    """The periodic check as a task of the operator's context (stopped on cleanup)."""
    return asyncio.create_task(_check_forever(ctx), name="pkg-integrity-check")
