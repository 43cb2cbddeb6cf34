"""The shadow step on the sidecar: a candidate evaluated beside the active snapshot.

When its rollout's desired state names a shadow (``DesiredState.shadow``), the
sidecar loads, verifies, compiles and self-tests the candidate WITHOUT activating
it. The HTTP handler answers every request with the active evaluator as always,
then, for a ``sample_rate`` share of requests, only appends ``(facts, answer)`` to
a bounded queue (:meth:`ShadowRunner.offer`: one random draw and one append).
A background task drains the queue between requests, evaluates the candidate
and compares the decisions (:func:`evaluator_sidecar.policy.diff.decision_diff`).
A full queue drops the sample (counted in ``dropped``) rather than delay anyone.

It counts samples and diffs twice: since the process started (heartbeat
``totals``, folded into PostgreSQL's device counters), and since it began the
shadow it runs now (the heartbeat's ``shadow`` field, which names the candidate,
step and deployment). The operator judges a shadow step on the latter only: a
cumulative counter cannot tell diffs of the candidate a step names from those of
the one before it that a device was still sampling when the step began. It keeps
a bounded set of example diffs per step (input, both answers), which heartbeats
carry to the operator once each; the operator stores them in PostgreSQL
(``pkg_shadow_diffs``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from evaluator_sidecar.policy.diff import decision_diff, example_fingerprint
from evaluator_sidecar.policy.environment_facts import EnvironmentFacts
from evaluator_sidecar.policy.errors import EvaluationError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.sidecar.logs import log_event
from evaluator_sidecar.sidecar.snapshots import ActivationError
from evaluator_sidecar.signals import ShadowSpec, SnapshotRef

__all__ = ["MAX_EXAMPLES", "ShadowRunner"]

logger = logging.getLogger(__name__)

#: Example diffs kept per shadow step; heartbeats carry at most EXAMPLES_PER_BEAT each.
MAX_EXAMPLES = 20
EXAMPLES_PER_BEAT = 5
_QUEUE = 512

Prepare = Callable[[SnapshotRef], Awaitable[PKGEvaluator]]
_Item = tuple[PKGEvaluator, dict[str, Any], dict[str, Any], str | None, EnvironmentFacts | None]


class ShadowRunner:
    """Follows the shadow named by the desired state; samples, compares, counts, keeps."""

    def __init__(self, prepare: Prepare, *, rng: Callable[[], float] = random.random) -> None:
        self._prepare = prepare
        self._rng = rng
        self.spec: ShadowSpec | None = None
        self.deployment: str | None = None
        self.candidate: PKGEvaluator | None = None
        self._rate = 0.0
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self.samples = 0
        self.diffs = 0
        #: Samples and diffs of the current shadow (candidate, step, deployment) only.
        self.step_samples = 0
        self.step_diffs = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._examples: list[dict[str, Any]] = []
        self._fingerprints: set[str] = set()
        self._sent = 0

    # ---- the hot path (the HTTP handler, after it has its answer)

    def offer(
        self,
        facts: dict[str, Any],
        answer: dict[str, Any],
        active: str | None,
        environment: EnvironmentFacts | None = None,
    ) -> None:
        """Queue a sample; ``environment`` is the fact set the answer was made with, so the
        candidate sees the same facts (a fact set swapped meanwhile is not a decision diff)."""
        candidate = self.candidate
        if candidate is None or self._rng() >= self._rate:
            return
        if len(self._queue) >= _QUEUE:
            self.dropped += 1
            return
        self._queue.append((candidate, facts, answer, active, environment))
        self._wake.set()

    # ---- following the desired state

    async def follow(self, spec: ShadowSpec | None, deployment: str | None = None) -> None:
        """Load the candidate ``spec`` names (or drop the shadow when None); ``deployment``
        is the uid of the rollout whose desired state names it."""
        if spec is None:
            self.deployment = deployment
            if self.spec is not None:
                log_event(logger, logging.INFO, "shadow_stopped", version=self._version())
            self.spec, self.candidate, self._rate = None, None, 0.0
            self._queue.clear()
            return
        if (deployment, spec.snapshot.version, spec.step) != self._identity():
            self.step_samples = self.step_diffs = 0
        self.deployment = deployment
        if spec == self.spec and self.candidate is not None:
            return
        if self.spec is None or spec.step != self.spec.step:
            self._examples, self._fingerprints, self._sent = [], set(), 0
        # Nothing of an earlier candidate may count in this step: stop sampling it now,
        # not once the new one is ready, and drop what it left queued.
        self.spec, self.candidate, self._rate = spec, None, 0.0
        self._queue.clear()
        try:
            candidate = await self._prepare(spec.snapshot)
        except ActivationError as exc:
            # The step will not gather samples and fails on its deadline; say why.
            self.last_error = str(exc)
            self.candidate = None
            log_event(
                logger,
                logging.WARNING,
                "shadow_load_failed",
                version=spec.snapshot.version,
                error=str(exc),
            )
            return
        self.last_error = None
        self.candidate, self._rate = candidate, spec.sample_rate
        log_event(
            logger,
            logging.INFO,
            "shadow_started",
            version=candidate.version,
            sample_rate=spec.sample_rate,
            step=spec.step,
        )

    def _identity(self) -> tuple[str | None, str, str] | None:
        if self.spec is None:
            return None
        return (self.deployment, self.spec.snapshot.version, self.spec.step)

    def _version(self) -> str | None:
        return self.spec.snapshot.version if self.spec else None

    # ---- off the response path

    async def run(self, stopping: asyncio.Event) -> None:
        """Compare queued samples until ``stopping`` is set, yielding to requests often."""
        while not stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            done = 0
            while self._queue:
                item = self._queue.popleft()
                if item[0] is not self.candidate:
                    continue  # queued for a candidate no longer shadowed
                self.compare(*item)
                done += 1
                if done % 8 == 0:
                    await asyncio.sleep(0)  # let pending requests through

    def compare(
        self,
        candidate: PKGEvaluator,
        facts: dict[str, Any],
        answer: dict[str, Any],
        active: str | None,
        environment: EnvironmentFacts | None = None,
    ) -> None:
        try:
            other: dict[str, Any] = candidate.evaluate(facts, environment)
        except EvaluationError as exc:
            other = {"error": str(exc)}
        self.samples += 1
        self.step_samples += 1
        differs = decision_diff(answer, other)
        if not differs:
            return
        self.diffs += 1
        self.step_diffs += 1
        if len(self._examples) >= MAX_EXAMPLES:
            return
        fingerprint = example_fingerprint(candidate.version, facts)
        if fingerprint in self._fingerprints:
            return
        self._fingerprints.add(fingerprint)
        self._examples.append(
            {
                "input": facts,
                "active_version": active,
                "active_output": answer,
                "candidate_output": other,
                "differs": list(differs),
                "observed_at": time.time(),
                "fingerprint": fingerprint,
            }
        )

    # ---- reporting

    def report(self) -> tuple[dict[str, Any] | None, int]:
        """The heartbeat's ``shadow`` field, and how many new examples it carries."""
        spec = self.spec
        if spec is None:
            return None, 0
        new = self._examples[self._sent : self._sent + EXAMPLES_PER_BEAT]
        return (
            {
                "deployment": self.deployment,
                "candidate": spec.snapshot.version,
                "step": spec.step,
                "deployment_name": spec.deployment_name,
                "loaded": self.candidate is not None,
                "error": self.last_error,
                "dropped": self.dropped,
                "samples": self.step_samples,
                "diffs": self.step_diffs,
                "examples": new,
            },
            len(new),
        )

    def delivered(self, count: int) -> None:
        """The heartbeat carrying ``count`` new examples reached Redis."""
        self._sent = min(len(self._examples), self._sent + count)
