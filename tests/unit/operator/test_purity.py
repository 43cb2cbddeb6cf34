"""The operator's pure modules read no clock: ``now`` is always an argument.

import-linter (``make lint``) keeps client libraries and the I/O modules out of them;
a clock read is a call, not an import, so this test looks for one in their source.
The module list is the contract's own, read from pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}


def _pure_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    pure = next(c for c in contracts if c["id"] == "operator-decisions-are-pure")
    modules: list[str] = pure["source_modules"]
    return modules


def test_the_contract_lists_the_pure_modules() -> None:
    assert "pkg_operator.rollout.machine" in _pure_modules()
    assert "pkg_operator.snapshot.decide" in _pure_modules()


@pytest.mark.parametrize("module", _pure_modules())
def test_a_pure_module_reads_no_clock(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(), spec.origin)
    reads = [
        f"line {node.lineno}: {ast.unparse(node.func)}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    assert reads == [], f"{module} reads a clock; take `now` as an argument instead"
