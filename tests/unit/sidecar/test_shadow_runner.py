"""The shadow step on a sidecar: sampled requests, compared off the response path."""

from __future__ import annotations

import asyncio

from sidecar_snapshots import FACTS, snapshot_for

from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.replay import replay
from evaluator_sidecar.sidecar.shadow import EXAMPLES_PER_BEAT, MAX_EXAMPLES, ShadowRunner
from evaluator_sidecar.sidecar.snapshots import ActivationError
from evaluator_sidecar.signals import ShadowSpec, SnapshotRef

ACTIVE = PKGEvaluator(snapshot_for("rules@1.0.0"))
CANDIDATE = PKGEvaluator(snapshot_for("rules@2.0.0"))  # its VIP subtask names its version
QUIET = {"tags": ["ordinary"]}  # no rule matches: both decide nothing, alike


def _spec(rate: float = 1.0, step: str = "2030-01-01T00:00:00Z") -> ShadowSpec:
    return ShadowSpec(SnapshotRef("rules@2.0.0", None, None), rate, step, "ns/dep")


async def _prepare(ref: SnapshotRef) -> PKGEvaluator:
    return CANDIDATE


async def _runner(rate: float = 1.0, rng: float = 0.0) -> ShadowRunner:
    runner = ShadowRunner(_prepare, rng=lambda: rng)
    await runner.follow(_spec(rate), "uid-1")
    return runner


def _offer(runner: ShadowRunner, facts: dict[str, object]) -> None:
    runner.offer(facts, ACTIVE.evaluate(facts), ACTIVE.version)


async def _drain(runner: ShadowRunner) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    for _ in range(50):
        await asyncio.sleep(0)
    stopping.set()
    task.cancel()


class TestSampling:
    async def test_the_answer_is_only_queued_the_comparison_happens_later(self) -> None:
        runner = await _runner()
        _offer(runner, FACTS)
        assert runner.samples == 0
        await _drain(runner)
        assert (runner.samples, runner.diffs) == (1, 1)

    async def test_identical_decisions_are_samples_without_diffs(self) -> None:
        runner = await _runner()
        for _ in range(5):
            _offer(runner, QUIET)
        await _drain(runner)
        assert (runner.samples, runner.diffs) == (5, 0)

    async def test_requests_outside_the_sample_rate_are_not_compared(self) -> None:
        runner = await _runner(rate=0.3, rng=0.5)  # every draw is above the rate
        _offer(runner, FACTS)
        await _drain(runner)
        assert runner.samples == 0

    async def test_no_shadow_no_samples(self) -> None:
        runner = ShadowRunner(_prepare)
        _offer(runner, FACTS)
        await _drain(runner)
        assert runner.samples == 0


class TestExamples:
    async def test_examples_are_bounded_distinct_and_each_reported_once(self) -> None:
        runner = await _runner()
        for i in range(MAX_EXAMPLES + 10):
            _offer(runner, {"tags": ["vip"], "context": {"i": i}})
        _offer(runner, {"tags": ["vip"], "context": {"i": 0}})  # a repeat
        await _drain(runner)
        assert runner.diffs == MAX_EXAMPLES + 11
        report, count = runner.report()
        assert report is not None
        assert count == EXAMPLES_PER_BEAT
        first = report["examples"][0]
        assert first["differs"] == ["subtasks"]
        assert first["input"] == {"tags": ["vip"], "context": {"i": 0}}
        assert report["deployment"] == "uid-1"
        runner.delivered(count)
        seen = count
        while True:
            report, count = runner.report()
            assert report is not None
            if not count:
                break
            seen += count
            runner.delivered(count)
        assert seen == MAX_EXAMPLES

    async def test_a_candidate_that_cannot_load_samples_nothing_and_says_why(self) -> None:
        async def refuse(ref: SnapshotRef) -> PKGEvaluator:
            raise ActivationError(ref.version, "checksum_mismatch", "bad", transient=False)

        runner = ShadowRunner(refuse, rng=lambda: 0.0)
        await runner.follow(_spec(), "uid")
        _offer(runner, FACTS)
        report, _ = runner.report()
        assert report is not None
        assert report["loaded"] is False
        assert report["error"]

    async def test_dropping_the_shadow_stops_sampling(self) -> None:
        runner = await _runner()
        await runner.follow(None)
        _offer(runner, FACTS)
        await _drain(runner)
        assert runner.samples == 0
        assert runner.report() == (None, 0)


class TestReplay:
    def test_recorded_decisions_are_compared_like_live_ones(self) -> None:
        records = [
            {"input": FACTS, "output": ACTIVE.evaluate(FACTS)},
            {"input": QUIET, "output": ACTIVE.evaluate(QUIET)},
            {"input": QUIET, "output": ACTIVE.evaluate(QUIET)},
        ]
        report = replay(CANDIDATE.evaluate, CANDIDATE.version, records)
        assert (report.samples, report.diffs) == (3, 1)
        assert report.by_part["subtasks"] == 1
        assert report.examples[0]["input"] == FACTS
        assert "1 of 3" in report.format()


class TestSwitchingCandidates:
    async def test_samples_of_an_earlier_candidate_never_count_for_the_next(self) -> None:
        other = PKGEvaluator(snapshot_for("rules@3.0.0"))
        gate = asyncio.Event()

        async def slow(ref: SnapshotRef) -> PKGEvaluator:
            if ref.version == "rules@3.0.0":
                await gate.wait()
                return other
            return CANDIDATE

        runner = ShadowRunner(slow, rng=lambda: 0.0)
        await runner.follow(_spec(), "uid")
        _offer(runner, FACTS)  # queued for rules@2.0.0
        loading = asyncio.create_task(
            runner.follow(
                ShadowSpec(SnapshotRef("rules@3.0.0", None, None), 1.0, "step-2", ""), "uid"
            )
        )
        await asyncio.sleep(0)
        _offer(runner, FACTS)  # while the next candidate loads: not sampled
        await _drain(runner)
        assert runner.samples == 0
        gate.set()
        await loading
        assert runner.candidate is other


class TestStepCounts:
    """The heartbeat's ``shadow`` field counts the current candidate's step only."""

    async def test_the_report_counts_samples_and_diffs_of_this_shadow(self) -> None:
        runner = await _runner()
        _offer(runner, FACTS)
        _offer(runner, QUIET)
        await _drain(runner)
        report, _ = runner.report()
        assert report is not None
        assert (report["samples"], report["diffs"]) == (2, 1)

    async def test_a_new_candidate_or_deployment_starts_from_zero(self) -> None:
        runner = await _runner()
        _offer(runner, FACTS)
        await _drain(runner)
        # Another deployment's shadow step, with the same candidate and step string.
        await runner.follow(_spec(), "uid-2")
        report, _ = runner.report()
        assert report is not None
        assert (report["samples"], report["diffs"]) == (0, 0)
        assert (runner.samples, runner.diffs) == (1, 1)  # the process totals stay

    async def test_the_same_shadow_followed_again_keeps_counting(self) -> None:
        runner = await _runner()
        _offer(runner, FACTS)
        await _drain(runner)
        await runner.follow(_spec(), "uid-1")
        report, _ = runner.report()
        assert report is not None
        assert (report["samples"], report["diffs"]) == (1, 1)
