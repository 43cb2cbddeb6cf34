"""Replay recorded decisions against a candidate snapshot: the shadow step, offline.

Each record holds the task facts a sidecar was asked about (``input``) and the
decision it answered (``output``, the body of ``/v1/evaluate``). The candidate
evaluates every input; a decision differs when its subtasks, DAG or matched
rules do (:func:`~evaluator_sidecar.policy.diff.decision_diff`), the same
measure a shadow step applies to live traffic. ``pkg replay`` prints the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evaluator_sidecar.policy.diff import DECISION_PARTS, decision_diff
from evaluator_sidecar.policy.errors import EvaluationError

__all__ = ["ReplayReport", "replay"]


@dataclass
class ReplayReport:
    candidate: str
    samples: int = 0
    diffs: int = 0
    by_part: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISION_PARTS, 0))
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def diff_rate(self) -> float:
        return self.diffs / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "samples": self.samples,
            "diffs": self.diffs,
            "diff_rate": round(self.diff_rate, 6),
            "by_part": self.by_part,
            "examples": self.examples,
        }

    def format(self) -> str:
        lines = [
            f"candidate {self.candidate}: {self.diffs} of {self.samples} recorded decisions "
            f"differ ({self.diff_rate:.2%})"
        ]
        lines += [f"  {part}: {count}" for part, count in self.by_part.items() if count]
        for example in self.examples:
            lines.append(f"  differs in {', '.join(example['differs'])}: input {example['input']}")
        return "\n".join(lines)


def replay(
    evaluate: Callable[[Mapping[str, Any]], dict[str, Any]],
    candidate: str,
    records: Iterable[Mapping[str, Any]],
    *,
    max_examples: int = 10,
) -> ReplayReport:
    """Evaluate each record's input with ``evaluate`` and compare with its output."""
    report = ReplayReport(candidate)
    for record in records:
        facts, recorded = record["input"], record["output"]
        try:
            answer = evaluate(facts)
        except EvaluationError as exc:
            answer = {"error": str(exc)}
        report.samples += 1
        differs = decision_diff(recorded, answer)
        if not differs:
            continue
        report.diffs += 1
        for part in differs:
            report.by_part[part] += 1
        if len(report.examples) < max_examples:
            report.examples.append(
                {
                    "input": facts,
                    "differs": list(differs),
                    "recorded": recorded,
                    "candidate": answer,
                }
            )
    return report
