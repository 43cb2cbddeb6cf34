"""The alert rules pass the real promtool, fire on their unit tests, and ship in the chart.

``promtool check rules`` and ``promtool test rules`` (the test bed's promtool, built from
its Go module) run on deploy/monitoring/; the unit-test file must fire every alert at
least once and, in its healthy case, none; every dashboard query must parse too.
``helm template`` with the monitoring flags renders the dashboard ConfigMap and the
PrometheusRule with exactly those sources.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "pkg-alerts.rules.yaml"
RULE_TESTS = MONITORING / "pkg-alerts.test.yaml"
DASHBOARD = MONITORING / "pkg-dashboard.json"
CHART = ROOT / "helm" / "pkg-operator"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def alert_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_promtool_accepts_the_rules(promtool_bin: Path) -> None:
    checked = run(promtool_bin, "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout


def test_the_unit_tests_fire_every_alert_and_a_healthy_installation_fires_none(
    promtool_bin: Path,
) -> None:
    tested = run(promtool_bin, "test", "rules", RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert fired == alert_names()
    healthy = next(case for case in cases if case["name"] == "a healthy installation fires nothing")
    assert {c["alertname"] for c in healthy["alert_rule_test"] if not c["exp_alerts"]} == (
        alert_names()
    )


def test_a_broken_rule_file_is_refused(promtool_bin: Path, tmp_path: Path) -> None:
    """The check can fail: a rule whose PromQL lost its right-hand side."""
    broken = tmp_path / "broken.yaml"
    rules = RULES.read_text()
    assert "max(pkg_integrity_problems) > 0" in rules
    broken.write_text(
        rules.replace("max(pkg_integrity_problems) > 0", "max(pkg_integrity_problems) >")
    )
    checked = run(promtool_bin, "check", "rules", broken)
    assert checked.returncode != 0
    assert 'PKGIntegrityProblems": could not parse expression' in checked.stdout + checked.stderr


def test_every_dashboard_query_is_valid_promql(promtool_bin: Path, tmp_path: Path) -> None:
    """Each panel's query, with Grafana's variables filled in, checked as a recording rule."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    filled = [
        e.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$deployment", ".*")
        for e in exprs
    ]
    assert not [e for e in filled if "$" in e], "a Grafana variable the test does not fill"
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"pkg:dashboard:{i}", "expr": e} for i, e in enumerate(filled)
                ],
            }
        ]
    }
    as_rules = tmp_path / "dashboard-queries.yaml"
    as_rules.write_text(yaml.safe_dump(rules))
    checked = run(promtool_bin, "check", "rules", as_rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout


def render(helm_bin: Path, *sets: str) -> list[dict[str, Any]]:
    args: list[str | Path] = [helm_bin, "template", "pkg-operator", CHART, "-n", "pkg-system"]
    for setting in sets:
        args += ["--set", setting]
    rendered = run(*args)
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def test_the_chart_renders_the_dashboard_and_the_rules_behind_their_flags(
    helm_bin: Path,
) -> None:
    plain = {d["kind"] for d in render(helm_bin)}
    assert "PrometheusRule" not in plain
    assert not any(
        d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
        for d in render(helm_bin)
    )

    objects = render(
        helm_bin,
        "monitoring.dashboard.enabled=true",
        "monitoring.dashboard.annotations.grafana_folder=PKG",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.labels.release=prometheus",
    )
    dashboard = next(d for d in objects if d["metadata"]["name"] == "pkg-operator-dashboard")
    assert dashboard["kind"] == "ConfigMap"
    assert dashboard["metadata"]["namespace"] == "pkg-system"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "PKG"}
    assert json.loads(dashboard["data"]["pkg-operator.json"]) == json.loads(DASHBOARD.read_text())

    rule = next(d for d in objects if d["kind"] == "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_unknown_monitoring_values_are_refused(helm_bin: Path) -> None:
    refused = run(
        helm_bin, "template", "pkg-operator", CHART, "--set", "monitoring.dashbaord.enabled=true"
    )
    assert refused.returncode != 0
    assert "dashbaord" in refused.stderr
