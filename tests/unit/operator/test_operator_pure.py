"""The operator's pure parts: settings, a snapshot's status, coverage folded from heartbeats."""

from __future__ import annotations

import datetime as dt

import pytest

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_operator.rollout.coverage import DeviceReport, fold
from pkg_operator.rollout.render import health as render_health
from pkg_operator.settings import OperatorSettings, SettingsError, load_settings
from pkg_operator.snapshot.status import Outcome, ValidationSummary, snapshot_status

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
DSN = "postgresql://pkg@db:5432/pkg"


class TestSettings:
    def test_the_urls_are_required_and_named_in_the_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PKG_DATABASE_URL", raising=False)
        monkeypatch.delenv("PKG_REDIS_URL", raising=False)
        with pytest.raises(SettingsError, match="PKG_DATABASE_URL is not set") as caught:
            load_settings()
        assert "PKG_REDIS_URL" in str(caught.value)

    def test_defaults_work_and_namespaces_split(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PKG_DATABASE_URL", DSN)
        monkeypatch.setenv("PKG_REDIS_URL", "redis://redis:6379/0")
        monkeypatch.setenv("PKG_NAMESPACES", "team-a, team-b,")
        settings = load_settings()
        assert settings.namespace_list == ["team-a", "team-b"]
        assert settings.migrate_on_start
        assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"

    def test_replicas_get_different_peering_priorities_by_default(self) -> None:
        priorities = {
            OperatorSettings(database_url=DSN, redis_url="redis://r").peering_priority
            for _ in range(20)
        }
        assert len(priorities) > 1

    def test_a_bad_value_names_the_variable_and_the_value(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PKG_DATABASE_URL", DSN)
        monkeypatch.setenv("PKG_REDIS_URL", "redis://redis:6379/0")
        monkeypatch.setenv("PKG_ROLLOUT_INTERVAL_SECONDS", "-1")
        with pytest.raises(SettingsError, match="PKG_ROLLOUT_INTERVAL_SECONDS='-1'"):
            load_settings()


def _condition(status: dict[str, object], kind: str) -> dict[str, object]:
    conditions = status["conditions"]
    assert isinstance(conditions, list)
    return next(c for c in conditions if c["type"] == kind)


class TestSnapshotStatus:
    def test_a_rejected_snapshot_is_false_at_every_stage_with_the_same_reason(self) -> None:
        status = snapshot_status(
            Outcome(rejected=("ChecksumMismatch", "declared x, content y")),
            previous={},
            generation=1,
            now=NOW,
        )
        for kind in ("Stored", "Validated", "Ready", "Active"):
            assert _condition(status, kind)["status"] == "False"
            assert _condition(status, kind)["reason"] == "ChecksumMismatch"
        assert "snapshotId" not in status

    def test_a_validated_snapshot_is_ready_but_not_active_until_promoted(self) -> None:
        validation = ValidationSummary(
            7, passed=2, failed=0, total=2, finished_at=NOW, message="2/2 fixtures passed"
        )
        status = snapshot_status(
            Outcome(checksum="a" * 64, rule_count=3, snapshot_id=4, validation=validation),
            previous={},
            generation=1,
            now=NOW,
        )
        assert _condition(status, "Ready")["status"] == "True"
        assert _condition(status, "Active")["reason"] == "NotPromoted"
        assert status["validation"] == {
            "runId": 7,
            "passed": 2,
            "failed": 0,
            "total": 2,
            "finishedAt": "2026-11-22T12:00:00Z",
            "message": "2/2 fixtures passed",
        }
        assert status["activeIn"] is None  # cleared by the merge patch

    def test_failing_fixtures_leave_it_not_ready_with_the_diff(self) -> None:
        validation = ValidationSummary(
            1,
            passed=0,
            failed=1,
            total=1,
            finished_at=NOW,
            message="1 of 1 fixtures failed: expected a, got b",
        )
        status = snapshot_status(
            Outcome(snapshot_id=4, validation=validation), previous={}, generation=1, now=NOW
        )
        assert _condition(status, "Ready")["reason"] == "FixturesFailed"
        assert "expected a, got b" in str(_condition(status, "Ready")["message"])

    def test_transition_times_move_only_when_a_condition_changes(self) -> None:
        validation = ValidationSummary(1, 1, 0, 1, NOW, "1/1 fixtures passed")
        first = snapshot_status(
            Outcome(snapshot_id=4, validation=validation), previous={}, generation=1, now=NOW
        )
        later = NOW + dt.timedelta(minutes=5)
        second = snapshot_status(
            Outcome(snapshot_id=4, validation=validation, active_in="prod"),
            previous=first,
            generation=1,
            now=later,
        )
        assert _condition(second, "Ready")["lastTransitionTime"] == "2026-11-22T12:00:00Z"
        assert _condition(second, "Active")["lastTransitionTime"] == "2026-11-22T12:05:00Z"
        assert second["activeIn"] == "prod"

    def test_a_replaced_snapshot_says_what_superseded_it(self) -> None:
        validation = ValidationSummary(1, 1, 0, 1, NOW, "ok")
        status = snapshot_status(
            Outcome(snapshot_id=4, validation=validation, superseded_by="rules@2.0.0"),
            previous={},
            generation=1,
            now=NOW,
        )
        active = _condition(status, "Active")
        assert (active["status"], active["reason"]) == ("False", "Superseded")
        assert "rules@2.0.0" in str(active["message"])


def _report(
    device: str, version: str, *, region: str = "eu", age: float = 1.0, **metrics: float
) -> DeviceReport:
    return DeviceReport(
        device_id=device,
        target="router",
        region=region,
        version=version,
        last_seen=NOW - dt.timedelta(seconds=age),
        **metrics,
    )  # type: ignore[arg-type]


class TestCoverage:
    UID = "uid-1"

    def _fold(self, reports: list[DeviceReport], weight: float, **kwargs: object) -> tuple:  # type: ignore[type-arg]
        params: dict[str, object] = {
            "target": "router",
            "region": "eu",
            "deployment_uid": self.UID,
            "stable_version": "v1",
            "canary_version": "v2",
            "weight": weight,
            "ttl_seconds": 30,
            "step_started_at": None,
            "now": NOW,
            **kwargs,
        }
        return fold(reports, **params)  # type: ignore[arg-type]

    def test_devices_are_counted_against_the_version_their_cohort_should_run(self) -> None:
        devices = [f"d{i}" for i in range(40)]
        canary = {d for d in devices if in_canary(d, self.UID, 50)}
        reports = [_report(d, "v2" if d in canary else "v1") for d in devices]
        coverage, _ = self._fold(reports, 50)
        assert coverage.targeted == 40
        assert coverage.expected_canary == len(canary)
        assert (coverage.on_canary, coverage.on_stable) == (len(canary), 40 - len(canary))
        assert coverage.on_intended == 40
        assert coverage.weight == 50

    def test_a_device_on_the_wrong_version_is_not_on_intended(self) -> None:
        devices = [f"d{i}" for i in range(40)]
        coverage, _ = self._fold([_report(d, "v1") for d in devices], 50)
        assert coverage.on_intended == 40 - coverage.expected_canary

    def test_stale_devices_and_other_regions_do_not_count(self) -> None:
        reports = [
            _report("fresh", "v1"),
            _report("old", "v1", age=60),
            _report("elsewhere", "v1", region="us"),
        ]
        coverage, _ = self._fold(reports, 0)
        assert (coverage.targeted, coverage.stale) == (1, 1)

    def test_health_comes_from_canary_reports_made_since_the_step_started(self) -> None:
        step = NOW - dt.timedelta(seconds=10)
        reports = [
            _report("a", "v2", evaluations=100, errors=5, p99_ms=2.0),
            _report("b", "v2", evaluations=50, errors=0, p99_ms=9.0),
            _report("c", "v2", age=20, evaluations=999, errors=999, p99_ms=99.0),  # before the step
        ]
        _, health = self._fold(reports, 100, step_started_at=step)
        # 150 successful evaluations and 5 errors: 155 attempted.
        assert (health.evaluations, health.errors, health.p99_ms) == (155, 5, 9.0)
        assert health.window_seconds == 10.0

    def test_live_devices_activation_errors_reach_the_status_with_their_reason(self) -> None:
        refused = "refused snapshot v2: snapshot 'v2' (id 4) was changed in PostgreSQL"
        reports = [
            DeviceReport("b", "router", "eu", "v1", NOW, last_error=refused),
            DeviceReport("a", "router", "eu", "v1", NOW, last_error=refused),
            DeviceReport("ok", "router", "eu", "v1", NOW),
            DeviceReport("gone", "router", "eu", "v1", NOW - dt.timedelta(minutes=5),
                         last_error="old"),
            DeviceReport("us", "router", "us", "v1", NOW, last_error="elsewhere"),
        ]  # fmt: skip
        _, health = self._fold(reports, 0)
        assert health.activation_errors == (("a", refused), ("b", refused))
        rendered = render_health(health)
        assert rendered["devicesWithActivationErrors"] == 2
        assert rendered["activationErrors"] == [
            {"device": "a", "error": refused},
            {"device": "b", "error": refused},
        ]

    def test_the_status_lists_at_most_five_activation_errors(self) -> None:
        reports = [
            DeviceReport(f"d{i}", "router", "eu", "v1", NOW, last_error="x" * 900) for i in range(7)
        ]
        rendered = render_health(self._fold(reports, 0)[1])
        assert rendered["devicesWithActivationErrors"] == 7
        assert len(rendered["activationErrors"]) == 5
        assert len(rendered["activationErrors"][0]["error"]) == 500
