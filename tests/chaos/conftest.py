"""The fault-injection suite (``make chaos``): scenarios on the real test bed.

Every test here is marked ``chaos``; ``make test`` runs only those also marked
``chaos_quick`` (the quick subset), ``make chaos`` runs them all. The stack and
operator fixtures are the end-to-end ones (pkg_testbed.e2e_plugin).
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside ``make chaos`` (PKG_CHAOS unset) keep only the quick subset."""
    if os.environ.get("PKG_CHAOS"):
        return
    skip = [
        i
        for i in items
        if i.get_closest_marker("chaos") and not i.get_closest_marker("chaos_quick")
    ]
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = [i for i in items if i not in skip]
