"""What ``kubectl pkg`` shows and writes, computed from objects: no I/O, no clock. Pure.

- :func:`resource` turns ``pdep``/``psnap`` (and their long names) into a plural;
- :func:`action_value` is the ``pkg.seedcore.io/action`` annotation's JSON;
- :func:`recorded` finds what the operator recorded for a token (``processedActions``
  on a PolicyDeployment, ``lastAction`` on a PolicySnapshot);
- :func:`tree` is a status as a tree of :class:`Node` (rendered by ``rich`` on a
  terminal, by :func:`lines` elsewhere); :func:`progress_line` is one line of ``watch``;
- :func:`ending` says whether a rollout has ended and with which exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pkg_operator.plugin.reports import event_lines, shadow_line

__all__ = [
    "ENDINGS",
    "EXIT_ENDED_BADLY",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "KINDS",
    "Node",
    "Recorded",
    "action_value",
    "ending",
    "lines",
    "plain_table",
    "progress_line",
    "recorded",
    "resource",
    "rows",
    "tree",
]

#: Exit codes: 0 done/accepted/Succeeded; 1 refused; 2 usage or not found; 3 a
#: timeout; 4 a rollout that ended other than Succeeded.
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2
EXIT_TIMEOUT: Final = 3
EXIT_ENDED_BADLY: Final = 4

#: Names a person may type -> the plural the API uses.
KINDS: Final = {
    "pdep": "policydeployments",
    "pdeps": "policydeployments",
    "policydeployment": "policydeployments",
    "policydeployments": "policydeployments",
    "psnap": "policysnapshots",
    "psnaps": "policysnapshots",
    "policysnapshot": "policysnapshots",
    "policysnapshots": "policysnapshots",
}

#: A deployment's summary once its attempt is over -> the exit code of ``watch``.
ENDINGS: Final = {
    "Succeeded": EXIT_OK,
    "Aborted": EXIT_ENDED_BADLY,
    "RolledBack": EXIT_ENDED_BADLY,
    "Failed": EXIT_ENDED_BADLY,
    "Superseded": EXIT_ENDED_BADLY,
    "Invalid": EXIT_ENDED_BADLY,
}


def resource(kind: str) -> str:
    """The plural for ``kind``; ValueError naming the choices otherwise."""
    try:
        return KINDS[kind.lower()]
    except KeyError:
        raise ValueError(
            f"unknown resource {kind!r}: use pdep (PolicyDeployment) or psnap (PolicySnapshot)"
        ) from None


def action_value(action: str, token: str, actor: str, reason: str) -> str:
    """The annotation's value (README "Two ways to promote")."""
    return json.dumps({"action": action, "token": token, "actor": actor, "reason": reason})


@dataclass(frozen=True)
class Recorded:
    """What the operator did with one request."""

    action: str
    accepted: bool
    outcome: str
    actor: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "accepted": self.accepted,
            "outcome": self.outcome,
            "actor": self.actor,
            "at": self.at,
        }


def recorded(obj: Mapping[str, Any], token: str) -> Recorded | None:
    """The outcome recorded for ``token`` in ``obj``'s status, or None while pending."""
    status = obj.get("status") or {}
    entries = list(status.get("processedActions") or [])
    last = status.get("lastAction")
    if isinstance(last, Mapping):
        entries.append(last)
    for entry in entries:
        if entry.get("token") != token:
            continue
        outcome = str(entry.get("outcome") or "")
        accepted = entry.get("accepted")
        if accepted is None:  # a snapshot's lastAction says it in the outcome
            accepted = not outcome.startswith("refused")
        return Recorded(
            action=str(entry.get("action") or ""),
            accepted=bool(accepted),
            outcome=outcome,
            actor=str(entry.get("actor") or ""),
            at=str(entry.get("at") or ""),
        )
    return None


@dataclass
class Node:
    """One line of the status tree and the lines under it."""

    label: str
    children: list[Node] = field(default_factory=list)

    def add(self, label: str) -> Node:
        child = Node(label)
        self.children.append(child)
        return child


def _step_label(step: Mapping[str, Any]) -> str:
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        duration = (step.get("pause") or {}).get("duration")
        return f"pause {duration}" if duration else "pause (until promoted)"
    if "analysis" in step:
        return "analysis"
    return ", ".join(sorted(step)) or "step"


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def _ref(ref: Any) -> str:
    return str(ref.get("version")) if isinstance(ref, Mapping) and ref.get("version") else "-"


def _health(health: Mapping[str, Any]) -> str:
    rate = health.get("errorRate")
    rate_text = "-" if rate is None else f"{float(rate) * 100:.2f}%"
    text = f"{health.get('evaluations', 0)} evaluations, error rate {rate_text}"
    if health.get("p99Ms") is not None:
        text += f", p99 {health['p99Ms']} ms"
    if health.get("shadowDiffRate") is not None:
        text += f", diff rate {float(health['shadowDiffRate']) * 100:.2f}%"
    return text


def _steps(node: Node, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    current = int(status.get("currentStepIndex") or 0)
    ended = status.get("summary") in ENDINGS
    branch = node.add(f"Steps {status.get('stepProgress', '')}".rstrip())
    for index, step in enumerate(steps):
        if index < current or (ended and status.get("summary") == "Succeeded"):
            mark = "✔"
        elif index == current and not ended:
            mark = "►"
        else:
            mark = " "
        suffix = "  ◀ current" if mark == "►" else ""
        branch.add(f"{mark} {index + 1}. {_step_label(step)}{suffix}")


def _actions(node: Node, entries: Sequence[Mapping[str, Any]], limit: int = 3) -> None:
    if not entries:
        return
    branch = node.add("Last actions")
    for entry in list(entries)[-limit:]:
        verdict = "accepted" if entry.get("accepted", True) else "refused"
        outcome = str(entry.get("outcome") or "")
        if entry.get("accepted") is None and outcome.startswith("refused"):
            verdict = "refused"
        branch.add(
            f"{entry.get('at', '')} {entry.get('action')} by {entry.get('actor')} "
            f"({verdict}): {outcome}"
        )


def _events(node: Node, events: Sequence[Mapping[str, Any]]) -> None:
    shown = event_lines(events)
    if shown:
        branch = node.add("Events")
        for line in shown:
            branch.add(line)


def _deployment(obj: Mapping[str, Any]) -> Node:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    root = Node(f"PolicyDeployment {meta.get('namespace')}/{meta.get('name')}")
    root.add(f"Status:   {status.get('summary', 'Pending')} {status.get('message') or ''}".rstrip())
    place = f"{spec.get('env')}/{spec.get('target')}/{spec.get('region') or 'global'}"
    root.add(f"Target:   {place}")
    root.add(f"Stable:   {_ref(status.get('stable'))}")
    root.add(f"Canary:   {_ref(status.get('canary'))}")
    root.add(f"Weight:   {status.get('weight', 0)}%")
    coverage = status.get("coverage") or {}
    if coverage:
        root.add(
            f"Coverage: {coverage.get('display', '-')} devices on their version "
            f"({coverage.get('percent', 0)}%, {coverage.get('stale', 0)} stale)"
        )
    health = status.get("health") or {}
    if health:
        root.add(f"Health:   {_health(health)}")
    shadow = shadow_line(status)
    if shadow is not None:
        root.add(f"Shadow:   {shadow}")
    _steps(root, spec, status)
    _actions(root, status.get("processedActions") or [])
    return root


def _snapshot(obj: Mapping[str, Any]) -> Node:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    root = Node(f"PolicySnapshot {meta.get('namespace')}/{meta.get('name')}")
    root.add(f"Version:  {spec.get('version')} ({spec.get('engine', 'native')})")
    root.add(f"Env:      {spec.get('env')}")
    for kind in ("Ready", "Active"):
        cond = _condition(status, kind)
        if cond:
            text = f"{kind + ':':9} {cond.get('status')} {cond.get('reason', '')}"
            root.add(f"{text} {cond.get('message') or ''}".rstrip())
    last = status.get("lastAction")
    if isinstance(last, Mapping):
        _actions(root, [last])
    return root


def tree(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> Node:
    """The status of a PolicyDeployment or a PolicySnapshot as a tree, with its last events."""
    root = _snapshot(obj) if obj.get("kind") == "PolicySnapshot" else _deployment(obj)
    _events(root, events)
    return root


def _walk(node: Node, prefix: str, last: bool, top: bool) -> Iterator[str]:
    if top:
        yield node.label
        child_prefix = ""
    else:
        yield f"{prefix}{'└── ' if last else '├── '}{node.label}"
        child_prefix = prefix + ("    " if last else "│   ")
    for index, child in enumerate(node.children):
        yield from _walk(child, child_prefix, index == len(node.children) - 1, False)


def lines(node: Node) -> list[str]:
    """The tree as plain text lines (for output that is not a terminal)."""
    return list(_walk(node, "", True, True))


def progress_line(obj: Mapping[str, Any]) -> str:
    """One line of ``watch``: summary, step, weight, coverage."""
    status = obj.get("status") or {}
    coverage = status.get("coverage") or {}
    return (
        f"{status.get('summary', 'Pending')} step={status.get('stepProgress', '-')} "
        f"weight={status.get('weight', 0)}% coverage={coverage.get('display', '-')} "
        f"({coverage.get('percent', 0)}%) canary={_ref(status.get('canary'))} "
        f"stable={_ref(status.get('stable'))}"
    )


def rows(objs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """A listing: the header and one row per PolicyDeployment or PolicySnapshot."""
    if objs and objs[0].get("kind") == "PolicySnapshot":
        header = ["NAMESPACE", "NAME", "VERSION", "ENV", "READY", "ACTIVE"]
        table = []
        for obj in objs:
            meta, spec, status = (
                obj.get("metadata") or {},
                obj.get("spec") or {},
                obj.get("status") or {},
            )
            table.append(
                [
                    str(meta.get("namespace")),
                    str(meta.get("name")),
                    str(spec.get("version")),
                    str(spec.get("env")),
                    str(_condition(status, "Ready").get("status", "-")),
                    str(_condition(status, "Active").get("status", "-")),
                ]
            )
        return header, table
    header = ["NAMESPACE", "NAME", "STATUS", "STEP", "WEIGHT", "COVERAGE", "STABLE", "CANARY"]
    table = []
    for obj in objs:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        coverage = status.get("coverage") or {}
        table.append(
            [
                str(meta.get("namespace")),
                str(meta.get("name")),
                str(status.get("summary", "Pending")),
                str(status.get("stepProgress", "-")),
                f"{status.get('weight', 0)}%",
                str(coverage.get("display", "-")),
                _ref(status.get("stable")),
                _ref(status.get("canary")),
            ]
        )
    return header, table


def plain_table(header: Sequence[str], table: Sequence[Sequence[str]]) -> list[str]:
    """Columns aligned with spaces, as ``kubectl get`` prints them."""
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *table]
    ]


def ending(obj: Mapping[str, Any]) -> int | None:
    """The exit code once the rollout has ended (and the status is current), else None."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return None
    return ENDINGS.get(str(status.get("summary")))
