"""The evaluator library's exceptions: what went wrong loading or evaluating a snapshot.

Every error a user can cause says what is wrong and where, so that it can be
fixed without reading the code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EngineUnavailableError",
    "EvaluationError",
    "EvaluatorError",
    "InvalidTaskFactsError",
    "Problem",
    "SnapshotLoadError",
]


class EvaluatorError(Exception):
    """Base class of the evaluator library's errors."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a snapshot: where (rule and field) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class SnapshotLoadError(EvaluatorError):
    """A snapshot cannot be loaded; ``problems`` lists every problem found, not just the first."""

    def __init__(self, version: str, problems: list[Problem]) -> None:
        self.version = version
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"snapshot {version!r} cannot be loaded ({len(self.problems)} problem(s)):\n{lines}"
        )


class EvaluationError(EvaluatorError):
    """One evaluation failed (bad task facts, a trap, a timeout); the evaluator stays usable."""


class InvalidTaskFactsError(EvaluationError):
    """The task facts are malformed (the caller's fault, HTTP 400), not an engine failure.

    Callers tell the two apart by this type, never by the message's wording. (Not named
    InvalidInputError: the store has one, a PKGError, and the package's top level exports
    that.)
    """


class EngineUnavailableError(EvaluatorError):
    """The snapshot names an engine that is not registered."""
