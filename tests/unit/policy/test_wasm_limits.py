"""A policy can never hang or exhaust a sidecar: deadlines and memory caps, each shown by a policy
that would run for hours or allocate 64 GiB without them (pytest-timeout is the safety net)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from wasm_modules import opa_like_wasm

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits
from evaluator_sidecar.policy.engines.wasm.limits import (
    DEFAULT_DEADLINE_MS,
    DEFAULT_MAX_MEMORY_PAGES,
    PAGE_SIZE,
    tick_ms_from_env,
    ticks_for,
)
from evaluator_sidecar.policy.engines.wasm.runtime import get_runtime
from evaluator_sidecar.policy.errors import EvaluationError, SnapshotLoadError

POLICIES = Path(__file__).resolve().parents[3] / "policies"
LOOP = (POLICIES / "limits" / "loop.wasm").read_bytes()
BOMB = (POLICIES / "limits" / "memory.wasm").read_bytes()
CONFORMANCE = (POLICIES / "conformance" / "policy.wasm").read_bytes()
ANSWERED = [
    {
        "rule_id": "loop-002",
        "rule_name": "answered",
        "rule_priority": 0,
        "matched_conditions": 0,
        "emissions_count": 0,
    }
]
#: Scheduling slack on a shared 2-core machine, on top of the deadline and one tick.
SLACK_S = 0.5


def load(wasm: bytes, limits: WasmLimits | None = None) -> OpaWasm:
    return OpaWasm.load_from_bytes(wasm, cache_dir=None, limits=limits)


def tick_s() -> float:
    runtime = get_runtime()
    assert runtime is not None
    return runtime.ticker.tick_ms / 1000


class TestLimitsConfiguration:
    def test_defaults_are_documented_values(self) -> None:
        limits = WasmLimits()
        assert limits.deadline_ms == DEFAULT_DEADLINE_MS == 50
        assert limits.max_memory_pages == DEFAULT_MAX_MEMORY_PAGES == 512
        assert limits.max_memory_bytes == 32 * 2**20

    def test_the_environment_overrides_the_defaults(self) -> None:
        env = {"PKG_WASM_DEADLINE_MS": "120", "PKG_WASM_MAX_MEMORY_PAGES": "64"}
        assert WasmLimits.from_env(env) == WasmLimits(deadline_ms=120, max_memory_pages=64)
        assert WasmLimits.from_env({}) == WasmLimits()

    @pytest.mark.parametrize(
        ("env", "names"),
        [
            ({"PKG_WASM_DEADLINE_MS": "soon"}, "PKG_WASM_DEADLINE_MS"),
            ({"PKG_WASM_MAX_MEMORY_PAGES": "1.5"}, "PKG_WASM_MAX_MEMORY_PAGES"),
            ({"PKG_WASM_MAX_MEMORY_PAGES": "1"}, "max_memory_pages"),
            ({"PKG_WASM_DEADLINE_MS": "-1"}, "deadline_ms"),
        ],
    )
    def test_a_bad_setting_names_itself(self, env: dict[str, str], names: str) -> None:
        with pytest.raises(ValueError, match=names):
            WasmLimits.from_env(env)

    def test_the_tick_comes_from_the_environment(self) -> None:
        assert tick_ms_from_env({}) == 5
        assert tick_ms_from_env({"PKG_WASM_TICK_MS": "2"}) == 2
        with pytest.raises(ValueError, match="PKG_WASM_TICK_MS"):
            tick_ms_from_env({"PKG_WASM_TICK_MS": "0"})

    @pytest.mark.parametrize(("deadline", "tick"), [(50, 5), (50, 7), (1, 5), (1000, 1)])
    def test_the_deadline_in_ticks_is_never_shorter_than_asked(
        self, deadline: float, tick: float
    ) -> None:
        # The first tick may come at once, so n ticks last at least (n - 1) * tick.
        assert (ticks_for(deadline, tick) - 1) * tick >= deadline
        assert (ticks_for(deadline, tick) - 2) * tick < deadline


@pytest.mark.timeout(60)
class TestDeadline:
    def test_a_runaway_rego_policy_is_stopped_at_its_deadline(self) -> None:
        engine = load(LOOP)
        assert engine.evaluate({})["rules"] == ANSWERED
        started = time.monotonic()
        with pytest.raises(EvaluationError, match="did not finish within its 50 ms deadline"):
            engine.evaluate({"context": {"spin": True}})
        elapsed = time.monotonic() - started
        assert 0.050 <= elapsed < 0.050 + tick_s() + SLACK_S

    def test_the_engine_answers_again_after_a_stop(self) -> None:
        engine = load(LOOP)
        for _ in range(3):
            with pytest.raises(EvaluationError):
                engine.evaluate({"context": {"spin": True}})
            assert engine.evaluate({})["rules"] == ANSWERED
        assert engine.failures == 3
        assert engine.rebuilds == 3

    def test_the_deadline_is_configurable(self) -> None:
        engine = load(LOOP, WasmLimits(deadline_ms=20))
        started = time.monotonic()
        with pytest.raises(EvaluationError, match="20 ms deadline"):
            engine.evaluate({"context": {"spin": True}})
        elapsed = time.monotonic() - started
        assert 0.020 <= elapsed < 0.020 + tick_s() + SLACK_S

    def test_a_module_that_loops_in_wasm_itself_is_stopped(self) -> None:
        engine = load(opa_like_wasm(eval_body="loop"), WasmLimits(deadline_ms=30))
        with pytest.raises(EvaluationError, match="30 ms deadline"):
            engine.evaluate({})

    def test_the_public_call_path_is_bounded_too(self) -> None:
        engine = OpaWasm.load_from_bytes(LOOP, cache_dir=None, fast_path=False)
        assert engine.fast_path is False
        with pytest.raises(EvaluationError, match="deadline"):
            engine.evaluate({"context": {"spin": True}})
        assert engine.evaluate({})["rules"] == ANSWERED


@pytest.mark.timeout(60)
class TestStack:
    def test_unbounded_recursion_is_a_trap_not_a_crash(self) -> None:
        engine = load(opa_like_wasm(eval_body="recurse"))
        for _ in range(3):
            with pytest.raises(EvaluationError, match="stack"):
                engine.evaluate({})
        assert engine.rebuilds == 3


@pytest.mark.timeout(60)
class TestMemoryCap:
    def test_a_memory_bomb_is_stopped_at_the_page_cap(self) -> None:
        # A generous deadline: under load, filling 32 MiB could outlast 50 ms and the
        # deadline, not the cap, would stop it.
        engine = load(BOMB, WasmLimits(deadline_ms=10_000))
        with pytest.raises(EvaluationError, match=r"ran out of memory \(cap 512 pages = 32 MiB\)"):
            engine.evaluate({"context": {"bomb": True}})
        answer = engine.evaluate({})
        assert answer["rules"][0]["rule_id"] == "mem-002"
        assert engine.memory_pages <= 512

    def test_the_cap_is_configurable(self) -> None:
        engine = load(BOMB, WasmLimits(deadline_ms=10_000, max_memory_pages=64))
        with pytest.raises(EvaluationError, match=r"cap 64 pages = 4 MiB"):
            engine.evaluate({"context": {"bomb": True}})
        assert engine.evaluate({})["rules"]

    def test_growing_memory_directly_stops_at_the_cap(self) -> None:
        engine = load(
            opa_like_wasm(eval_body="grow"), WasmLimits(deadline_ms=10_000, max_memory_pages=40)
        )
        with pytest.raises(EvaluationError, match="ran out of memory"):
            engine.evaluate({})

    def test_an_input_larger_than_the_cap_is_refused_and_the_engine_still_answers(self) -> None:
        engine = load(LOOP, WasmLimits(max_memory_pages=16))
        huge = {"context": {"blob": "x" * (2 * 2**20)}}
        with pytest.raises(EvaluationError, match="memory"):
            engine.evaluate(huge)
        assert engine.evaluate({})["rules"] == ANSWERED
        assert engine.memory_pages * PAGE_SIZE <= 16 * PAGE_SIZE

    def test_data_larger_than_the_cap_is_a_load_error(self) -> None:
        data = {"blob": "x" * (3 * 2**20)}
        with pytest.raises(SnapshotLoadError) as caught:
            OpaWasm.load_from_bytes(
                LOOP, data=data, cache_dir=None, limits=WasmLimits(max_memory_pages=32)
            )
        assert [p.where for p in caught.value.problems] == ["data"]

    def test_a_host_builtin_cannot_allocate_past_the_cap(self) -> None:
        engine = load(CONFORMANCE, WasmLimits(max_memory_pages=64))
        cases = [{"fn": "numbers.range_step", "args": [1, 10**12, 1]}]
        with pytest.raises(EvaluationError, match=r"numbers\.range_step"):
            engine.evaluate({"context": {"cases": cases}})
        small = [{"fn": "numbers.range_step", "args": [1, 5, 2]}]
        (subtask,) = engine.evaluate({"context": {"cases": small}})["subtasks"]
        assert subtask["params"]["value"] == [1, 3, 5]
