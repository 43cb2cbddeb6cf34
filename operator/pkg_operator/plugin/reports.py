"""What ``kubectl pkg diff|coverage|history|audit`` show, computed from data: no I/O, no clock.

- :func:`rule_diff` compares two snapshots' rules by ``rule_id``: added, removed, changed
  (with the fields that changed);
- :func:`coverage_rows` is each device of a deployment's target/region with its cohort
  (the sidecars' own cohort function at the status's weight), version, last heartbeat,
  errors and p99; :func:`coverage_from_status` is what the status alone can say;
- :func:`history_entries` merges a status's actions with PostgreSQL's promotions and
  audit rows, oldest first;
- :func:`event_lines` and :func:`shadow_line` are the status tree's extra lines.

Every result is plain data (dicts, lists, strings) so that ``-o json|yaml`` dumps it as is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from evaluator_sidecar.signals.cohorts import in_canary

__all__ = [
    "COVERAGE_HEADER",
    "HISTORY_HEADER",
    "NO_DATABASE_NOTE",
    "coverage_from_status",
    "coverage_rows",
    "coverage_table",
    "diff_lines",
    "event_lines",
    "history_entries",
    "history_table",
    "rule_diff",
    "shadow_line",
]


def _rules_by_id(rules: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(rule.get("rule_id")): rule for rule in rules}


def rule_diff(
    rules_a: Sequence[Mapping[str, Any]], rules_b: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Rules of B not in A (added), of A not in B (removed), in both but different (changed).

    Rules are matched by ``rule_id`` (unique in a snapshot); a changed rule lists the
    top-level fields that differ with both values.
    """
    a, b = _rules_by_id(rules_a), _rules_by_id(rules_b)
    changed = []
    for rule_id in sorted(a.keys() & b.keys()):
        fields = sorted(
            key
            for key in a[rule_id].keys() | b[rule_id].keys()
            if a[rule_id].get(key) != b[rule_id].get(key)
        )
        if fields:
            changed.append(
                {
                    "rule_id": rule_id,
                    "rule_name": str(b[rule_id].get("rule_name") or ""),
                    "fields": {
                        key: {"a": a[rule_id].get(key), "b": b[rule_id].get(key)} for key in fields
                    },
                }
            )
    return {
        "added": [dict(b[k]) for k in sorted(b.keys() - a.keys())],
        "removed": [dict(a[k]) for k in sorted(a.keys() - b.keys())],
        "changed": changed,
        "unchanged": len(a.keys() & b.keys()) - len(changed),
    }


def diff_lines(diff: Mapping[str, Any], name_a: str, name_b: str) -> list[str]:
    """The diff as text: one ``+``/``-``/``~`` line per rule, a changed rule's fields under it."""
    out = [f"--- {name_a}", f"+++ {name_b}"]
    out += [f"+ {r.get('rule_id')} ({r.get('rule_name')})" for r in diff["added"]]
    out += [f"- {r.get('rule_id')} ({r.get('rule_name')})" for r in diff["removed"]]
    for rule in diff["changed"]:
        out.append(f"~ {rule['rule_id']} ({rule['rule_name']})")
        for key, values in rule["fields"].items():
            out.append(f"    {key}: {values['a']!r} -> {values['b']!r}")
    out.append(
        f"{len(diff['added'])} added, {len(diff['removed'])} removed, "
        f"{len(diff['changed'])} changed, {diff['unchanged']} unchanged"
    )
    return out


def _when(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return None if value is None else str(value)


def _version(ref: Any) -> str | None:
    return str(ref["version"]) if isinstance(ref, Mapping) and ref.get("version") else None


def coverage_rows(
    deployment: Mapping[str, Any], devices: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each device row (``pkg_device_versions``) of the deployment's target/region.

    The cohort is the one the sidecars compute: canary when the device's bucket for this
    deployment (its uid) is below the status's weight and there is a canary version.
    """
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    uid, weight = str(meta.get("uid") or ""), float(status.get("weight") or 0)
    canary = _version(status.get("canary"))
    region = spec.get("region") or "global"
    rows = []
    for device in devices:
        if device.get("target") != spec.get("target") or device.get("region") != region:
            continue
        device_id = str(device.get("device_id"))
        cohort = "canary" if canary and in_canary(device_id, uid, weight) else "stable"
        rows.append(
            {
                "device": device_id,
                "region": device.get("region"),
                "version": device.get("version"),
                "cohort": cohort,
                "lastHeartbeat": _when(device.get("last_seen")),
                "evaluations": device.get("evaluations"),
                "errors": device.get("errors"),
                "p99Ms": device.get("p99_latency_ms"),
            }
        )
    return rows


COVERAGE_HEADER = ["DEVICE", "REGION", "VERSION", "COHORT", "LAST HEARTBEAT", "ERRORS", "P99 MS"]


def coverage_table(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The rows as table cells, in :data:`COVERAGE_HEADER`'s order."""
    return [
        [
            str(row["device"]),
            str(row["region"]),
            str(row["version"] or "-"),
            str(row["cohort"]),
            str(row["lastHeartbeat"] or "-"),
            "-" if row["errors"] is None else str(row["errors"]),
            "-" if row["p99Ms"] is None else f"{float(row['p99Ms']):g}",
        ]
        for row in rows
    ]


#: Printed when per-device detail was asked for without a database.
NO_DATABASE_NOTE = (
    "per-device detail needs the database: set PKG_DATABASE_URL or pass --database-url"
)


def coverage_from_status(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What the status says of coverage and health (no per-device rows)."""
    status = deployment.get("status") or {}
    return {
        "coverage": dict(status.get("coverage") or {}),
        "health": dict(status.get("health") or {}),
        "weight": status.get("weight", 0),
        "canary": _version(status.get("canary")),
        "stable": _version(status.get("stable")),
        "note": NO_DATABASE_NOTE,
    }


def _status_actions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    entries = list(status.get("processedActions") or [])
    last = status.get("lastAction")
    if isinstance(last, Mapping) and last not in entries:
        entries.append(last)
    out = []
    for entry in entries:
        outcome = str(entry.get("outcome") or "")
        accepted = entry.get("accepted")
        if accepted is None:
            accepted = not outcome.startswith("refused")
        out.append(
            {
                "at": str(entry.get("at") or ""),
                "source": "status",
                "what": str(entry.get("action") or ""),
                "actor": str(entry.get("actor") or ""),
                "result": "accepted" if accepted else "refused",
                "reason": str(entry.get("reason") or ""),
                "detail": outcome,
            }
        )
    return out


def _attempts(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A deployment's ended attempts (``status.history``) and the current one (``attempt``)."""
    status = obj.get("status") or {}
    attempts = [a for a in status.get("history") or [] if isinstance(a, Mapping)]
    current = status.get("attempt")
    if isinstance(current, Mapping) and all(a.get("id") != current.get("id") for a in attempts):
        attempts.append(current)
    out = []
    for attempt in attempts:
        version = attempt.get("version") or _version(attempt.get("snapshot")) or "-"
        out.append(
            {
                "at": str(attempt.get("startedAt") or ""),
                "source": "status",
                "what": f"attempt {attempt.get('id')} (generation {attempt.get('generation')})",
                "actor": "",
                "result": str(attempt.get("outcome") or "running"),
                "reason": str(attempt.get("reason") or ""),
                "detail": f"{version}, ended {attempt.get('finishedAt') or '-'}",
            }
        )
    return out


def history_entries(
    obj: Mapping[str, Any],
    promotions: Sequence[Mapping[str, Any]] = (),
    audit: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The object's actions (status), promotions and audit rows (PostgreSQL), oldest first."""
    entries = _status_actions(obj) + _attempts(obj)
    for row in promotions:
        moved = f"{row.get('from_version') or '-'} -> {row.get('to_version') or '-'}"
        entries.append(
            {
                "at": _when(row.get("created_at")) or "",
                "source": "pkg_promotions",
                "what": str(row.get("action") or ""),
                "actor": str(row.get("actor") or ""),
                "result": "succeeded" if row.get("success") else "failed",
                "reason": str(row.get("reason") or ""),
                "detail": f"{row.get('env')}: {moved}",
            }
        )
    for row in audit:
        details = row.get("details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        entries.append(
            {
                "at": _when(row.get("created_at")) or "",
                "source": "pkg_audit_log",
                "what": str(row.get("action") or ""),
                "actor": str(row.get("actor") or ""),
                "result": f"row {row.get('id')}",
                "reason": str(reason or ""),
                "detail": f"{row.get('entity_type')} {row.get('entity_id')}",
            }
        )
    return sorted(entries, key=lambda e: str(e["at"]))


HISTORY_HEADER = ["AT", "SOURCE", "WHAT", "ACTOR", "RESULT", "REASON", "DETAIL"]


def history_table(entries: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The entries as table cells, in :data:`HISTORY_HEADER`'s order."""
    return [
        [str(e[k] or "-") for k in ("at", "source", "what", "actor", "result", "reason", "detail")]
        for e in entries
    ]


def event_lines(events: Sequence[Mapping[str, Any]], limit: int = 5) -> list[str]:
    """The object's last ``limit`` Kubernetes events, oldest first, one line each."""

    def when(event: Mapping[str, Any]) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or ""
        )

    chosen = sorted(events, key=when)[-limit:]
    out = []
    for event in chosen:
        count = int(event.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        out.append(
            f"{when(event)} {event.get('type', '')} {event.get('reason', '')}{times}: "
            f"{event.get('message') or ''}".rstrip()
        )
    return out


def shadow_line(status: Mapping[str, Any]) -> str | None:
    """The shadow comparison's diff rate, when the rollout has one, else None."""
    health = status.get("health") or {}
    samples = health.get("shadowSamples")
    shadow = status.get("shadow")
    if not samples and not isinstance(shadow, Mapping):
        return None
    rate = health.get("shadowDiffRate")
    rate_text = "-" if rate is None else f"{float(rate) * 100:.2f}%"
    text = f"diff rate {rate_text} ({health.get('shadowDiffs', 0)} of {samples or 0} sampled)"
    if isinstance(shadow, Mapping) and shadow.get("version"):
        text += f" against {shadow['version']}"
    return text
