"""Fold the devices' latest heartbeats into a rollout's coverage and health (pure).

Each sidecar reports what it runs; the operator stores the latest report per
device in ``pkg_device_versions``. For one PolicyDeployment, this module decides
which devices count (its target and region, seen within the heartbeat TTL),
which version each of them *should* run at the published weight (the canary
when the device's cohort bucket is below the weight, else the stable), and how
many actually do. Health is taken from the canary cohort since the current step
started, so an earlier step's errors never fail a later one: exactly, from the
devices' cumulative counters minus their baseline at the step's start, when the
device reports counters (``totals``); else from its latest heartbeat window
made since the step started (older sidecars), which can miss a burst between
two heartbeats. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_operator.rollout.model import CoverageObs, HealthObs

__all__ = ["DeviceReport", "fold"]


@dataclass(frozen=True)
class DeviceReport:
    """One device's latest heartbeat, as ``pkg_device_versions`` holds it."""

    device_id: str
    target: str
    region: str
    version: str | None
    last_seen: dt.datetime
    evaluations: int = 0
    errors: int = 0
    p99_ms: float | None = None
    activation_failures: int = 0
    #: The device's last activation error as its latest heartbeat reports it (None: none).
    last_error: str | None = None
    #: Cumulative counters (requests, errors, activation_failures, shadow_samples,
    #: shadow_diffs) now, and at the step's start (None: the device appeared after it).
    #: ``totals`` None: the sidecar reports no counters; its latest window is used.
    totals: Mapping[str, int] | None = None
    baseline: Mapping[str, int] | None = None
    #: The version the device holds prepared (two-phase activation), if any.
    prepared_version: str | None = None
    #: (samples, diffs) the device counted for the shadow step running now, from its
    #: live heartbeat; None: it reports none for this step (yet).
    shadow_counts: tuple[int, int] | None = None
    #: The device says it is past its maximum staleness: it may not run what it should
    #: (it cannot confirm), so it never counts as converged.
    policy_stale: bool = False

    def since_baseline(self, name: str) -> int:
        """How much counter ``name`` grew since the step began (needs ``totals``)."""
        assert self.totals is not None
        now = int(self.totals.get(name, 0))
        before = int(self.baseline.get(name, 0)) if self.baseline is not None else 0
        # A baseline above the total can only come from a device id reused by another
        # fleet; count from zero rather than report a negative figure.
        return now - before if now >= before else now


@dataclass
class _Sums:
    evaluations: int = 0
    errors: int = 0
    activation_failures: int = 0
    shadow_samples: int = 0
    shadow_diffs: int = 0
    exact: int = 0
    windowed: int = 0

    def add_shadow(self, report: DeviceReport) -> None:
        # Every targeted device runs the shadow step's candidate, not only the canary's.
        # Its counts since it began this step's candidate, not its cumulative counters
        # since the step began: those would also count the diffs of a candidate it was
        # still sampling then (the step before, or a deployment deleted for this one).
        if report.shadow_counts is not None:
            samples, diffs = report.shadow_counts
            self.shadow_samples += samples
            self.shadow_diffs += diffs

    def add(self, report: DeviceReport, step_started_at: dt.datetime | None) -> None:
        if report.totals is not None:
            self.exact += 1
            self.evaluations += report.since_baseline("requests")
            self.errors += report.since_baseline("errors")
            self.activation_failures += report.since_baseline("activation_failures")
        elif step_started_at is None or report.last_seen >= step_started_at:
            self.windowed += 1
            # A heartbeat window counts successful evaluations and errors apart: the
            # error rate's denominator is every evaluation attempted.
            self.evaluations += report.evaluations + report.errors
            self.errors += report.errors
            self.activation_failures += report.activation_failures


def _preparation(
    report: DeviceReport, deployment_uid: str, prepare: tuple[str, float] | None
) -> tuple[int, int]:
    """(1 if the device switches at the flip, 1 if it has prepared): a live device."""
    if prepare is None:
        return 0, 0
    version, weight = prepare
    if report.version == version or not in_canary(report.device_id, deployment_uid, weight):
        return 0, 0
    return 1, int(report.prepared_version == version)


def fold(
    reports: Iterable[DeviceReport],
    *,
    target: str,
    region: str,
    deployment_uid: str,
    stable_version: str | None,
    canary_version: str | None,
    weight: float,
    ttl_seconds: float,
    step_started_at: dt.datetime | None,
    now: dt.datetime,
    prepare: tuple[str, float] | None = None,
) -> tuple[CoverageObs, HealthObs]:
    """Coverage of the target/region at ``weight``, and the canary cohort's health."""
    fresh_after = now - dt.timedelta(seconds=ttl_seconds)
    targeted = on_canary = on_stable = stale = on_intended = expected_canary = 0
    policy_stale = prepare_expected = prepared = 0
    sums = _Sums()
    p99: float | None = None
    activation_errors: list[tuple[str, str]] = []
    for report in reports:
        if report.target != target or report.region != region:
            continue
        if report.last_seen < fresh_after:
            stale += 1
            continue
        targeted += 1
        if report.last_error:
            activation_errors.append((report.device_id, report.last_error))
        canary_cohort = canary_version is not None and in_canary(
            report.device_id, deployment_uid, weight
        )
        intended = canary_version if canary_cohort else stable_version
        if canary_cohort:
            expected_canary += 1
        if canary_version is not None and report.version == canary_version:
            on_canary += 1
        elif stable_version is not None and report.version == stable_version:
            on_stable += 1
        if report.policy_stale:
            policy_stale += 1
        elif intended is not None and report.version == intended:
            on_intended += 1
        sums.add_shadow(report)
        expected, ready = _preparation(report, deployment_uid, prepare)
        prepare_expected, prepared = prepare_expected + expected, prepared + ready
        if canary_cohort:
            sums.add(report, step_started_at)
        recent = step_started_at is None or report.last_seen >= step_started_at
        if canary_cohort and recent and report.p99_ms is not None:
            # The worst device's p99 is a conservative bound on the cohort's p99.
            p99 = report.p99_ms if p99 is None else max(p99, report.p99_ms)
    window = 0.0 if step_started_at is None else max(0.0, (now - step_started_at).total_seconds())
    coverage = CoverageObs(
        targeted=targeted,
        on_canary=on_canary,
        on_stable=on_stable,
        stale=stale,
        on_intended=on_intended,
        expected_canary=expected_canary,
        weight=weight,
        policy_stale=policy_stale,
        prepare_expected=prepare_expected,
        prepared=prepared,
    )
    health = HealthObs(
        evaluations=sums.evaluations,
        errors=sums.errors,
        p99_ms=p99,
        activation_failures=sums.activation_failures,
        shadow_samples=sums.shadow_samples,
        shadow_diffs=sums.shadow_diffs,
        exact_devices=sums.exact,
        windowed_devices=sums.windowed,
        window_seconds=window,
        activation_errors=tuple(sorted(activation_errors)),
    )
    return coverage, health
