"""pyproject.toml lists every package, so the wheel holds all the code and the migrations."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _packages_under(root: Path, name: str) -> set[str]:
    return {
        ".".join((name, *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_the_explicit_package_list_is_complete() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = _packages_under(REPO / "evaluator_sidecar", "evaluator_sidecar")
    found |= _packages_under(REPO / "operator" / "pkg_operator", "pkg_operator")
    found.add("evaluator_sidecar.store.sql")  # mapped onto migrations/ (package-dir)
    assert sorted(config["packages"]) == sorted(found)
    assert config["package-dir"]["evaluator_sidecar.store.sql"] == "migrations"
    assert (REPO / "migrations" / "0001_pkg_core.sql").is_file()
