"""Fold the devices' latest heartbeats into a rollout's coverage and health (pure).

Each sidecar reports what it runs; the operator stores the latest report per
device in ``pkg_device_versions``. For one PolicyDeployment, this module decides
which devices count (its target and region, seen within the heartbeat TTL),
which version each of them *should* run at the published weight (the canary
when the device's cohort bucket is below the weight, else the stable), and how
many actually do. Health is taken from the canary cohort's reports made since
the current step started, so an earlier step's errors never fail a later one.
See docs/rollout-state-machine.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
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
) -> tuple[CoverageObs, HealthObs]:
    """Coverage of the target/region at ``weight``, and the canary cohort's health."""
    fresh_after = now - dt.timedelta(seconds=ttl_seconds)
    targeted = on_canary = on_stable = stale = on_intended = expected_canary = 0
    evaluations = errors = activation_failures = 0
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
        if intended is not None and report.version == intended:
            on_intended += 1
        if canary_cohort and (step_started_at is None or report.last_seen >= step_started_at):
            # A heartbeat counts successful evaluations and errors apart: the error rate's
            # denominator is every evaluation attempted.
            evaluations += report.evaluations + report.errors
            errors += report.errors
            activation_failures += report.activation_failures
            if report.p99_ms is not None:
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
    )
    health = HealthObs(
        evaluations=evaluations,
        errors=errors,
        p99_ms=p99,
        activation_failures=activation_failures,
        window_seconds=window,
        activation_errors=tuple(sorted(activation_errors)),
    )
    return coverage, health
