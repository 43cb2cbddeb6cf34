"""The benchmark's Rego for N generated rules means the same in both forms and in OPA's Go.

``benchmarks/wasm_rules.py`` writes the rule table either as a Rego constant or
as ``data``; the WASM engine must give the same result for both, and the same
as ``opa eval``, so that timing one against the other (and against OPA's Go
evaluator) compares equal work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_native import generate_facts  # noqa: E402
from benchmarks.wasm_rules import rules_rego  # noqa: E402

N_RULES = 60


def build(opa_bin: Path, rego: Path) -> bytes:
    bundle = rego.with_suffix(".tar.gz")
    subprocess.run(
        [str(opa_bin), "build", "-t", "wasm", "-e", "pkg/gen/result", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return member.read()


def opa_eval(opa_bin: Path, rego: Path, data: dict[str, Any], facts: Any, tmp: Path) -> Any:
    (tmp / "data.json").write_text(json.dumps(data))
    (tmp / "input.json").write_text(json.dumps(facts))
    done = subprocess.run(
        [str(opa_bin), "eval", "--format", "json", "--data", str(rego), "--data",
         str(tmp / "data.json"), "--input", str(tmp / "input.json"), "data.pkg.gen.result"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)["result"][0]["expressions"][0]["value"]


def test_the_table_as_rego_and_as_data_give_opas_results(opa_bin: Path, tmp_path: Path) -> None:
    engines = {}
    for in_data in (False, True):
        text, data = rules_rego(N_RULES, table_in_data=in_data)
        rego = tmp_path / f"rules-{in_data}.rego"
        rego.write_text(text)
        engine = OpaWasm.load_from_bytes(
            build(opa_bin, rego), data=data, cache_dir=None, limits=WasmLimits(deadline_ms=5000)
        )
        engines[in_data] = (engine, rego, data)
    all_facts = generate_facts(20, seed=3)
    matched = 0
    for facts in all_facts:
        as_rego = engines[False][0].evaluate(facts)
        assert engines[True][0].evaluate(facts) == as_rego
        matched += len(as_rego["rules"])
    assert matched > 0, "no rule matched any fact set: the comparison would be empty"
    for in_data, (engine, rego, data) in engines.items():
        want = opa_eval(opa_bin, rego, data, all_facts[0], tmp_path)
        assert engine.evaluate(all_facts[0]) == {"dag": [], **want}, in_data
