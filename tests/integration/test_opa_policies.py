"""The committed .wasm files are what the real ``opa build -t wasm`` makes of the committed .rego.

``opa build`` is deterministic for a given OPA version (checked: two builds of
the same sources give the same bytes), so the check is byte equality, plus the
entrypoint each policy is documented to have.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from evaluator_sidecar.policy.engines.wasm import OpaWasm

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policies_build", POLICIES / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


build = _build_module()
SPECS = build.load_manifest()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_committed_wasm_is_what_opa_builds(opa_bin: Path, spec: object) -> None:
    fresh = build.build(opa_bin, spec)
    committed = spec.wasm.read_bytes()  # type: ignore[attr-defined]
    assert fresh == committed, f"{spec.wasm} is stale: run `make policies` and commit it"  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_each_policy_has_its_documented_entrypoint(spec: object) -> None:
    engine = OpaWasm.load_from_bytes(
        spec.wasm.read_bytes(),  # type: ignore[attr-defined]
        entrypoint=spec.entrypoint,  # type: ignore[attr-defined]
    )
    assert set(engine.entrypoints) == {spec.entrypoint}  # type: ignore[attr-defined]


def test_opa_builds_are_deterministic(opa_bin: Path) -> None:
    (spec,) = [s for s in SPECS if s.name == "limits-loop"]
    assert build.build(opa_bin, spec) == build.build(opa_bin, spec)
