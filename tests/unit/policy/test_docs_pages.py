"""The policy pages in docs/ name what the code provides, so they cannot silently drift.

- docs/rule-language.md lists, per condition type, exactly the operators the loader
  accepts, and every relationship type;
- docs/wasm-engine.md names every builtin the WASM engine provides, its default
  entrypoint and each ``PKG_WASM_`` limit.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from evaluator_sidecar.policy.engines.native.loader import (
    OPERATORS,
    RELATIONSHIPS,
    SUPPORTED_OPERATORS,
)
from evaluator_sidecar.policy.engines.wasm.abi import DEFAULT_ENTRYPOINT
from evaluator_sidecar.policy.engines.wasm.builtins import PROVIDED

DOCS = Path(__file__).resolve().parents[3] / "docs"


@cache
def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("ctype", sorted(SUPPORTED_OPERATORS))
def test_rule_language_lists_each_types_operators(ctype: str) -> None:
    row = re.search(rf"^\| `{ctype}` \| (.*) \|$", page("rule-language.md"), re.MULTILINE)
    assert row is not None, f"no operator row for {ctype}"
    cell = row.group(1)
    listed = set(re.findall(r"`([^`]+)`", cell))
    if cell == "all nine":
        listed = set(OPERATORS)
    assert listed == set(SUPPORTED_OPERATORS[ctype])


def test_rule_language_names_every_relationship() -> None:
    for relationship in RELATIONSHIPS:
        assert f"`{relationship}`" in page("rule-language.md")


def test_wasm_page_names_every_provided_builtin() -> None:
    for name in PROVIDED:
        assert f"`{name}`" in page("wasm-engine.md"), f"{name} is provided but not on the page"


def test_wasm_page_states_the_default_entrypoint_and_limits() -> None:
    text = page("wasm-engine.md")
    assert f"`{DEFAULT_ENTRYPOINT}`" in text
    for variable in ("PKG_WASM_DEADLINE_MS", "PKG_WASM_MAX_MEMORY_PAGES", "PKG_WASM_TICK_MS"):
        assert f"`{variable}`" in text
