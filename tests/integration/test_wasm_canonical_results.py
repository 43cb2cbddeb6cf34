"""The WASM engine's results equal ``opa eval``'s, set order and big numbers included.

A policy built by the real ``opa build -t wasm`` puts sets (built from the
input, so the module's hash order differs from sorted order) and numbers
beyond 64 bits into its result; ``evaluate`` (the sidecar's path), its public
API twin and ``query`` (the conformance tools' path) must all give what OPA's
own evaluator gives.
"""

from __future__ import annotations

import decimal
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm

pytestmark = pytest.mark.integration

POLICY = """package pkg

tags contains t if some t in input.tags

result := {
  "subtasks": [{"name": "s", "type": "t", "params": {
    "tags": tags,
    "pairs": {[t, n] | some t in input.tags; some n in input.numbers},
    "numbers": {n | some n in input.numbers},
    "big": 12345678901234567890123 * 10,
  }}],
  "dag": [],
  "rules": [],
}
"""

FACTS = {
    "tags": ["zeta", "alpha", "mu", "beta", "omega", "gamma", "delta", "kappa"],
    "numbers": [30, -2, 7, 1.5, 100, 0],
}


@pytest.fixture(scope="module")
def built(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    tmp = tmp_path_factory.mktemp("canonical")
    rego = tmp / "canonical.rego"
    rego.write_text(POLICY)
    bundle = tmp / "bundle.tar.gz"
    subprocess.run(
        [str(opa_bin), "build", "-t", "wasm", "-e", "pkg/result", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return rego, member.read()


def opa_eval(opa_bin: Path, rego: Path, tmp_path: Path) -> Any:
    (tmp_path / "input.json").write_text(json.dumps(FACTS))
    done = subprocess.run(
        [
            str(opa_bin),
            "eval",
            "--format",
            "json",
            "--data",
            str(rego),
            "--input",
            str(tmp_path / "input.json"),
            "data.pkg.result",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout, parse_float=decimal.Decimal)["result"][0]["expressions"][0][
        "value"
    ]


def test_evaluate_gives_opas_result_sets_sorted_and_numbers_exact(
    opa_bin: Path, built: tuple[Path, bytes], tmp_path: Path
) -> None:
    rego, wasm = built
    engine = OpaWasm.load_from_bytes(wasm, cache_dir=None)
    want = opa_eval(opa_bin, rego, tmp_path)
    params = engine.evaluate(FACTS)["subtasks"][0]["params"]
    assert params["tags"] == sorted(FACTS["tags"])
    assert params["big"] == 123456789012345678901230
    assert engine.evaluate(FACTS) == want
    assert engine.evaluate_public(FACTS) == want


def test_the_module_itself_keeps_another_set_order(built: tuple[Path, bytes]) -> None:
    # Without this the tests above could not fail: the module's JSON keeps its hash order.
    _rego, wasm = built
    engine = OpaWasm.load_from_bytes(wasm, cache_dir=None)
    raw = engine._backend.run(json.dumps(FACTS).encode())  # type: ignore[union-attr]
    tags = json.loads(raw)[0]["result"]["subtasks"][0]["params"]["tags"]
    assert tags != sorted(FACTS["tags"])


def test_query_gives_opas_result(opa_bin: Path, built: tuple[Path, bytes], tmp_path: Path) -> None:
    rego, wasm = built
    engine = OpaWasm.load_from_bytes(wasm, cache_dir=None)
    assert engine.query(FACTS) == [{"result": opa_eval(opa_bin, rego, tmp_path)}]


def test_query_reads_an_input_given_as_opas_value_text_sets_included(
    built: tuple[Path, bytes],
) -> None:
    # As OPA's Go SDK hands the module an ast.Term: a set input, which JSON cannot carry.
    _rego, wasm = built
    engine = OpaWasm.load_from_bytes(wasm, cache_dir=None)
    text = b'{"tags": {"b", "a", "c"}, "numbers": {3, 1}}'
    params = engine.query(input_text=text)[0]["result"]["subtasks"][0]["params"]
    assert params["tags"] == ["a", "b", "c"]
    assert params["numbers"] == [1, 3]
    assert engine.query({"tags": ["b", "a", "c"], "numbers": [3, 1]}) == engine.query(
        input_text=text
    )
