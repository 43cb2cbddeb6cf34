"""The engine's own call path through wasmtime's C API gives what wasmtime-py's public API gives.

The fast path (preallocated ``wasmtime_func_call_unchecked``, raw host
callbacks, reads straight from linear memory) relies on wasmtime-py internals,
so it is pinned to the wasmtime versions it was checked on and held here to
the public API on the same inputs.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import wasmtime
from wasm_factgen import fact_sets
from wasm_modules import opa_like_wasm

from evaluator_sidecar.policy.engines.wasm import OpaWasm
from evaluator_sidecar.policy.engines.wasm.fastcall import FastCaller, PublicCaller
from evaluator_sidecar.policy.engines.wasm.interpreter import (
    REFERENCE_POLICY,
    rules_as_data,
    wasm_twin,
)
from evaluator_sidecar.policy.engines.wasm.limits import WasmLimits
from evaluator_sidecar.policy.engines.wasm.runtime import FAST_PATH_VERSIONS, get_runtime
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)

ROOT = Path(__file__).resolve().parents[3]
SLA = ROOT / "policies" / "sla" / "policy.wasm"
CONFORMANCE = ROOT / "policies" / "conformance" / "policy.wasm"


@pytest.fixture(scope="module")
def reference_engine() -> OpaWasm:
    text = (ROOT / "tests" / "data" / "reference-snapshot.yaml").read_text()
    snapshot = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
    # These tests are about answers, not speed: a loaded CI machine must not hit the
    # default 50 ms deadline.
    return OpaWasm.from_snapshot(
        wasm_twin(snapshot, REFERENCE_POLICY.read_bytes()), limits=WasmLimits(deadline_ms=5_000)
    )


class TestSameResults:
    def test_the_fast_path_is_in_use(self, reference_engine: OpaWasm) -> None:
        assert reference_engine.fast_path is True

    def test_the_reference_policy_gives_the_same_results_both_ways(
        self, reference_engine: OpaWasm
    ) -> None:
        for facts in fact_sets(7, 300):
            assert reference_engine.evaluate(facts) == reference_engine.evaluate_public(facts), (
                facts
            )

    def test_host_builtins_give_the_same_results_both_ways(self) -> None:
        engine = OpaWasm.load_from_bytes(
            CONFORMANCE.read_bytes(), limits=WasmLimits(deadline_ms=5_000)
        )
        cases = [
            {"fn": "sprintf", "args": ["%s=%v", ["k", [1, {"a": 2.50}]]]},
            {"fn": "time.parse_rfc3339_ns", "args": ["2026-01-01T00:00:00+01:00"]},
            {"fn": "crypto.sha256", "args": ["é"]},
            {"fn": "time.date", "args": [[0, "Asia/Tokyo"]]},
            {"fn": "semver.compare", "args": ["1.0.0-rc.1", "1.0.0"]},
            {"fn": "time.parse_duration_ns", "args": ["bad"]},
        ]
        facts = {"context": {"cases": cases}}
        fast = engine.evaluate(facts)
        assert fast == engine.evaluate_public(facts)
        assert len(fast["subtasks"]) == 5  # the bad duration is undefined both ways

    def test_an_engine_loaded_without_the_fast_path_agrees(self, reference_engine: OpaWasm) -> None:
        text = (ROOT / "tests" / "data" / "reference-snapshot.yaml").read_text()
        snapshot = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
        public = OpaWasm.load_from_bytes(
            REFERENCE_POLICY.read_bytes(),
            data=rules_as_data(snapshot),
            fast_path=False,
            limits=WasmLimits(deadline_ms=5_000),
        )
        assert public.fast_path is False
        for facts in fact_sets(11, 100):
            assert public.evaluate(facts) == reference_engine.evaluate(facts)

    def test_failures_are_reported_alike(self) -> None:
        engine = OpaWasm.load_from_bytes(opa_like_wasm(eval_body="abort"), cache_dir=None)
        messages = []
        for call in (engine.evaluate, engine.evaluate_public):
            with pytest.raises(Exception) as caught:  # noqa: PT011 - the message is what is compared
                call({})
            messages.append(str(caught.value))
        assert messages[0] == messages[1]


class TestCallers:
    def test_a_function_of_another_signature_is_refused(self) -> None:
        runtime = get_runtime()
        assert runtime is not None
        store = wasmtime.Store(runtime.engine)
        module = wasmtime.Module(runtime.engine, '(module (func (export "f") (param i64)))')
        instance = wasmtime.Instance(store, module, [])
        func = instance.exports(store)["f"]
        assert isinstance(func, wasmtime.Func)
        for caller in (FastCaller, PublicCaller):
            with pytest.raises(TypeError, match="i32"):
                caller(wasmtime, store, func, 1, 0)

    def test_both_callers_return_unsigned_addresses(self) -> None:
        runtime = get_runtime()
        assert runtime is not None
        store = wasmtime.Store(runtime.engine)
        module = wasmtime.Module(
            runtime.engine, '(module (func (export "f") (param i32) (result i32) local.get 0))'
        )
        instance = wasmtime.Instance(store, module, [])
        func = instance.exports(store)["f"]
        assert isinstance(func, wasmtime.Func)
        store.set_epoch_deadline(10**9)  # the engine interrupts at the deadline; give one far off
        fast = FastCaller(wasmtime, store, func, 1, 1)
        public = PublicCaller(wasmtime, store, func, 1, 1)
        assert fast(store._context(), 0x7FFFFFFF + 2) == public(None, -(2**31) + 1) == 0x80000001


class TestVersionPin:
    def test_the_installed_wasmtime_is_one_the_fast_path_was_checked_on(self) -> None:
        runtime = get_runtime()
        assert runtime is not None
        assert int(runtime.version.split(".")[0]) in FAST_PATH_VERSIONS
        assert runtime.fast_path_problem is None

    def test_pyproject_pins_wasmtime_to_those_versions(self) -> None:
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        (spec,) = [d for d in deps if d.startswith("wasmtime")]
        low, high = (int(v) for v in re.findall(r"[<>]=?(\d+)", spec))
        assert range(low, high) == FAST_PATH_VERSIONS
