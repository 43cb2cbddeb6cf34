"""Host builtin results written straight into the policy's memory work in its own arithmetic.

The engine writes scalar results of host builtins as OPA's own structs (strings,
booleans, null, and numbers: integers within 32 bits as integers, larger ones
and fractions as their decimal text, as the module's own parser stores them).
The module turns an integer number into a decimal with a 32-bit printf, so a
large integer written as an integer would be truncated the moment the policy
computes with it: these cases compute with every kind of result and compare
with ``opa eval``, for the direct path and the module's own dump/parse path.
"""

from __future__ import annotations

import decimal
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits, host

pytestmark = pytest.mark.integration

POLICY = """package hv

ns := time.parse_rfc3339_ns(input.when)
dur := time.parse_duration_ns(input.duration)

out := {
  "ns_plus_one": ns + 1,
  "ns_times_two": ns * 2,
  "ns_later": ns > 1700000000000000000,
  "ns_in_set": {ns, ns + 1},
  "ns_as_key": {sprintf("%d", [ns]): ns},
  "dur_plus_one": dur + 1,
  "dur_div": dur / 1000,
  "negative": time.parse_duration_ns("-2000000h") - 1,
  "small": time.parse_duration_ns("1us") + 1,
  "small_negative": time.parse_duration_ns("-1us") * 3,
  "zero": time.parse_duration_ns("0s") + 0,
  "range_max": time.parse_rfc3339_ns("2262-04-11T23:47:16.854775807Z") - 1,
  "date": time.date(ns),
  "count": strings.count(input.text, "a") + 2147483647,
  "string": concat("-", [sprintf("%v", [ns]), hex.encode(input.text)]),
  "bool": semver.is_valid(input.version) == true,
  "diff": time.diff(ns, ns - 86400000000000),
  "floor": floor(dur / 7),
  "arrays": sprintf("%v|%v|%v|%v|%v", [
    [1, ["a", [true, null, 1.5, 12345678901234567890]]],
    [],
    [[[[["deep"]]]]],
    [{"k": {1, 2}}, input.text],
    input.list,
  ]),
  "array_operand": strings.any_prefix_match(["ab", input.text], "ban"),
  "array_of_input": strings.any_suffix_match(input.list, "na"),
}
"""

INPUT = {
    "when": "2026-12-04T10:00:00.123456789Z",
    "duration": "2h0m0.000000001s",
    "text": "banana",
    "version": "1.2.3",
    "list": ["x", "y2", "banana"],
}


@pytest.fixture(scope="module")
def built(opa_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    tmp = tmp_path_factory.mktemp("hostvalues")
    rego = tmp / "hv.rego"
    rego.write_text(POLICY)
    bundle = tmp / "bundle.tar.gz"
    subprocess.run(
        [str(opa_bin), "build", "-t", "wasm", "-e", "hv/out", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return rego, member.read()


@pytest.fixture(scope="module")
def expected(
    opa_bin: Path, built: tuple[Path, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Any:
    rego, _wasm = built
    path = tmp_path_factory.mktemp("hostvalues-input") / "input.json"
    path.write_text(json.dumps(INPUT))
    done = subprocess.run(
        [
            str(opa_bin),
            "eval",
            "--format",
            "json",
            "--data",
            str(rego),
            "--input",
            str(path),
            "data.hv.out",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout, parse_float=decimal.Decimal)["result"][0]["expressions"][0][
        "value"
    ]


@pytest.fixture(params=[True, False], ids=["direct", "module-parse"])
def direct(request: pytest.FixtureRequest) -> Iterator[bool]:
    host.DIRECT_VALUES = request.param
    yield request.param
    host.DIRECT_VALUES = True


def test_results_of_every_kind_compute_as_in_opa(
    built: tuple[Path, bytes], expected: Any, direct: bool
) -> None:
    _rego, wasm = built
    engine = OpaWasm.load_from_bytes(
        wasm, entrypoint="hv/out", cache_dir=None, limits=WasmLimits(deadline_ms=5000)
    )
    (got,) = engine.query(INPUT)
    assert got["result"]["ns_plus_one"] == 1796378400123456790
    assert got["result"]["dur_plus_one"] == 7200000000002
    assert got == {"result": expected}
    # Again on the same instance: results written by one evaluation do not leak into the next.
    assert engine.query(INPUT) == [{"result": expected}]
