"""The docs stay true to the code they describe.

- ``docs/crd-reference.md`` is exactly what ``tools/gen_crd_docs.py`` renders from
  ``crds/`` now (run ``make docs`` after editing a CRD), and the renderer leaves out no
  field, rule or printer column;
- the README's configuration tables name every ``PKG_`` variable the settings classes
  and the WASM engine read, no other, each with the default the code uses;
- the README lists every route of the sidecar's HTTP API and every metric it exports.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from pydantic.fields import FieldInfo

import pkg_operator.metrics  # noqa: F401  (registers the operator's metrics in REGISTRY)
from evaluator_sidecar.policy.engines.wasm import limits
from evaluator_sidecar.settings import CommonSettings
from evaluator_sidecar.sidecar.http import ROUTES
from evaluator_sidecar.sidecar.metrics import SidecarMetrics
from evaluator_sidecar.sidecar.settings import SidecarSettings
from pkg_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
WASM_PACKAGE = REPO / "evaluator_sidecar" / "policy" / "engines" / "wasm"


@cache
def generator() -> ModuleType:
    """tools/gen_crd_docs.py, loaded from its path (tools/ is not a package)."""
    path = REPO / "tools" / "gen_crd_docs.py"
    spec = importlib.util.spec_from_file_location("gen_crd_docs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_crd_docs", module)
    spec.loader.exec_module(module)
    return module


@cache
def readme() -> str:
    return README.read_text()


# --------------------------------------------------------------------- CRD reference


def test_crd_reference_is_current() -> None:
    gen = generator()
    committed = gen.OUTPUT.read_text() if gen.OUTPUT.exists() else ""
    assert committed == gen.render(), (
        "docs/crd-reference.md is out of date with crds/: run `make docs` and commit it"
    )


def _schema_paths(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Every property path under ``schema``, found independently of the renderer."""
    yield path
    items = schema.get("items")
    if isinstance(items, Mapping):
        for name, child in (items.get("properties") or {}).items():
            yield from _schema_paths(child, f"{path}[].{name}")
    for name, child in (schema.get("properties") or {}).items():
        yield from _schema_paths(child, f"{path}.{name}")


def _rules(schema: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from schema.get("x-kubernetes-validations") or []
    for child in (schema.get("properties") or {}).values():
        yield from _rules(child)
    if isinstance(schema.get("items"), Mapping):
        yield from _rules(schema["items"])


@pytest.mark.parametrize("source", generator().SOURCES, ids=lambda p: p.name)
def test_crd_reference_has_every_field_rule_and_column(source: Path) -> None:
    page = generator().render()
    crd = yaml.safe_load(source.read_text())
    for version in crd["spec"]["versions"]:
        top = version["schema"]["openAPIV3Schema"]["properties"]
        for part in ("spec", "status"):
            for path in _schema_paths(top[part], part):
                assert f"| `{path}` |" in page, f"{source.name}: no row for {path}"
            for rule in _rules(top[part]):
                assert " ".join(rule["message"].split()) in page, rule["message"]
        for column in version["additionalPrinterColumns"]:
            assert f"| {column['name']} | {column['type']} |" in page, column


def test_crd_reference_check_mode_reports_a_stale_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = generator()
    stale = tmp_path / "crd-reference.md"
    stale.write_text("stale\n")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert stale.read_text() == "stale\n"
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


# --------------------------------------------------------------------- configuration


def readme_variables() -> dict[str, str]:
    """``PKG_X`` -> the default cell, from every README table row that starts with one."""
    rows = {}
    for line in readme().splitlines():
        match = re.match(r"^\| `(PKG_[A-Z0-9_]+)` \| ([^|]*) \|", line)
        if match:
            name, default = match.groups()
            assert name not in rows, f"README documents {name} twice"
            rows[name] = default.strip()
    return rows


def code_variables() -> dict[str, FieldInfo | str]:
    """Every PKG_ variable the code reads: settings fields, and the WASM engine's own."""
    found: dict[str, FieldInfo | str] = {}
    for cls in (CommonSettings, SidecarSettings, OperatorSettings):
        for name, info in cls.model_fields.items():
            found["PKG_" + name.upper()] = info
    for source in sorted(WASM_PACKAGE.glob("*.py")):
        for name in re.findall(r"PKG_WASM_[A-Z0-9_]*[A-Z0-9]", source.read_text()):
            found.setdefault(name, "wasm")
    return found


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_readme_documents_every_variable_and_no_other() -> None:
    documented, read = readme_variables(), code_variables()
    assert sorted(set(read) - set(documented)) == [], "variables the README does not document"
    assert sorted(set(documented) - set(read)) == [], "README rows for variables nothing reads"


def test_readme_defaults_are_the_codes() -> None:
    documented = readme_variables()
    for name, info in code_variables().items():
        cell = documented[name]
        if isinstance(info, str) or info.default_factory is not None:
            continue  # computed at start (host name, temp dir, random priority): described
        if info.is_required():
            assert cell == "(required)", name
        elif info.default is None:
            # Unset means "computed" (for example 3 x the interval): a rule, not a value.
            assert not cell.startswith("`"), f"{name}: {cell}"
        elif info.default == "":
            assert "empty" in cell, f"{name}: {cell}"
        else:
            assert f"`{_default_text(info.default)}`" in cell, f"{name}: {cell}"
    wasm_defaults = {
        "PKG_WASM_DEADLINE_MS": limits.DEFAULT_DEADLINE_MS,
        "PKG_WASM_MAX_MEMORY_PAGES": limits.DEFAULT_MAX_MEMORY_PAGES,
        "PKG_WASM_TICK_MS": limits.DEFAULT_TICK_MS,
    }
    for name, value in wasm_defaults.items():
        assert f"`{_default_text(value)}`" in documented[name], name


# --------------------------------------------------------------------- HTTP API and metrics


def test_readme_lists_every_route_of_the_sidecar() -> None:
    for path, method in ROUTES.items():
        assert f"`{method} {path}" in readme(), f"README does not list {method} {path}"


def exported_metrics() -> set[str]:
    text = generate_latest(SidecarMetrics().registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    return {name for name in names if not name.endswith("_created")}


def test_readme_lists_every_metric_the_sidecar_exports() -> None:
    names = exported_metrics()
    assert "pkg_hotswap_count_total" in names  # the exposition names, as scrapers see them
    for name in names:
        assert re.search(rf"`{name}[`{{]", readme()), f"README does not list metric {name}"


def test_readme_lists_every_metric_the_operator_exports() -> None:
    text = generate_latest(REGISTRY).decode()
    names = {
        name
        for name in re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE)
        if name.startswith(("pkg_operator_", "pkg_integrity_")) and not name.endswith("_created")
    }
    assert "pkg_operator_reconciles_total" in names
    for name in names:
        assert re.search(rf"`{name}[`{{]", readme()), f"README does not list metric {name}"
