"""Every metric the dashboard and the alerts query is one the code exports.

The metric names are read out of each PromQL expression in deploy/monitoring/ (the
dashboard's targets and template queries, the rules' ``expr``) and compared with
the families registered by :mod:`pkg_operator.metrics` (the operator's registry)
and :class:`evaluator_sidecar.sidecar.metrics.SidecarMetrics` (a sidecar's), each
with the suffixes Prometheus gives its samples. A renamed metric fails here before
a panel goes blank or an alert goes silent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import pkg_operator.metrics  # noqa: F401 - registers the operator's metrics in REGISTRY
from evaluator_sidecar.sidecar.metrics import SidecarMetrics

MONITORING = Path(__file__).resolve().parents[3] / "deploy" / "monitoring"
#: Series Prometheus writes itself for each scrape target, not any exporter.
SCRAPE_SERIES = frozenset({"up"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def _exported(registry: CollectorRegistry) -> set[str]:
    return {family.name + suffix for family in registry.collect() for suffix in _SUFFIXES}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, which may hold anything
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS:
            names.add(match.group(1))
    return names


def dashboard_queries() -> Iterator[str]:
    dashboard = json.loads((MONITORING / "pkg-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert found, f"template query {variable['query']['query']!r} is not label_values()"
            yield found.group(1)


def rule_queries() -> Iterator[str]:
    rules = yaml.safe_load((MONITORING / "pkg-alerts.rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield rule["expr"]


def test_the_name_reader_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (version, le) (rate(a_seconds_bucket{x="y(z)"}[5m])'
        " * on (instance, job) group_left(version) (b == 1))) / ignoring(le) c_total"
        " and time() - d > 120"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b", "c_total", "d"}


def test_every_metric_the_dashboard_and_the_alerts_query_is_exported() -> None:
    exported = _exported(REGISTRY) | _exported(SidecarMetrics().registry) | SCRAPE_SERIES
    queries = [*dashboard_queries(), *rule_queries()]
    queried = set().union(*(metric_names(q) for q in queries))
    assert len(queries) > 20
    assert {"pkg_active_version", "pkg_operator_rollout_deadline_timestamp_seconds"} <= queried
    unknown = {name for name in queried if name not in exported}
    assert not unknown, f"queried but exported by no code: {sorted(unknown)}"
