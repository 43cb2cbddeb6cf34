"""The test suite's own layout: every test module has a basename of its own.

The test folders are not packages (a ``tests/unit/operator`` package would shadow
Python's ``operator`` module), so pytest imports test modules by basename; two with
one name make the whole run stop at collection.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_no_two_test_modules_share_a_basename() -> None:
    names = Counter(
        path.name for path in TESTS.rglob("*.py") if path.name not in ("conftest.py", "__init__.py")
    )
    assert [name for name, count in names.items() if count > 1] == []
