"""Without wasmtime, WASM snapshots load as a degraded no-op (docs/wasm-engine.md).

wasmtime is not uninstalled: a child process blocks its import with a meta
path finder before anything imports it, as a missing or broken wheel would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SLA = ROOT / "policies" / "sla" / "policy.wasm"

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, logging, sys

    class BlockWasmtime(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "wasmtime" or name.startswith("wasmtime."):
                raise ImportError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, BlockWasmtime())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")

    from evaluator_sidecar.policy.engines.wasm import OpaWasm
    from evaluator_sidecar.policy.errors import SnapshotLoadError
    from evaluator_sidecar.policy.evaluator import PKGEvaluator
    from evaluator_sidecar.policy.model import PKGSnapshotData, sha256_hex

    wasm = open(sys.argv[1], "rb").read()
    first = OpaWasm.load_from_bytes(wasm, checksum="sha256-" + sha256_hex(wasm))
    second = OpaWasm.load_from_bytes(wasm)
    snapshot = PKGSnapshotData(id=1, version="sla@1", engine="wasm", wasm_artifact=wasm,
                               checksum=None, rules=[], entrypoint="pkg/sla/result")
    evaluator = PKGEvaluator(snapshot)
    try:
        OpaWasm.load_from_bytes(wasm, checksum="sha256-" + "0" * 64)
        checksum_problem = None
    except SnapshotLoadError as exc:
        checksum_problem = exc.problems[0].where
    print(json.dumps({
        "degraded": [first.degraded, second.degraded, evaluator.degraded],
        "result": first.evaluate({"tags": ["vip"], "context": {"room": 1}}),
        "evaluator": evaluator.evaluate({"tags": ["vip"]}),
        "checksum_problem": checksum_problem,
        "wasmtime_imported": "wasmtime" in sys.modules,
    }))
    """
)


@pytest.fixture(scope="module")
def child() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(SLA)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )


class TestWithoutWasmtime:
    def test_wasm_snapshots_load_degraded(self, child: subprocess.CompletedProcess[str]) -> None:
        assert json.loads(child.stdout)["degraded"] == [True, True, True]

    def test_evaluation_returns_the_empty_result(
        self, child: subprocess.CompletedProcess[str]
    ) -> None:
        report = json.loads(child.stdout)
        assert report["result"] == {"subtasks": [], "dag": [], "rules": []}
        assert report["evaluator"] == {"subtasks": [], "dag": [], "rules": [], "snapshot": "sla@1"}

    def test_one_warning_says_why_and_what_to_do(
        self, child: subprocess.CompletedProcess[str]
    ) -> None:
        warnings = [line for line in child.stderr.splitlines() if "fallback mode" in line]
        assert len(warnings) == 1
        assert warnings[0].startswith("WARNING")
        assert "No module named 'wasmtime'" in warnings[0]
        assert "pip install" in warnings[0]

    def test_the_checksum_is_still_verified(self, child: subprocess.CompletedProcess[str]) -> None:
        assert json.loads(child.stdout)["checksum_problem"] == "checksum"

    def test_wasmtime_really_was_absent(self, child: subprocess.CompletedProcess[str]) -> None:
        assert json.loads(child.stdout)["wasmtime_imported"] is False
