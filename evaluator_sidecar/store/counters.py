"""PKGCountersDAO: cumulative device counters, rollout step baselines, shadow diff examples.

Sidecars report per-process totals that only grow (requests, errors, activation
failures, shadow samples and diffs) with the process's id and start time.
``update_device_counters`` keeps them in ``pkg_device_counters`` in one
statement per batch: a report of the same process raises each counter to the
larger value (batches may arrive out of order); a report of a NEWER process
(a restart) first adds the old process's totals to the carried sums; a report
of an older process than the stored one is ignored. So a device's totals
(``pkg_device_totals``: current + carried) never go back, across restarts.

``capture_step_baseline`` copies the totals of a target's devices when a
rollout step starts (once per step: a second call changes nothing);
``step_counters`` returns each device's totals with its baseline, from which
the operator computes the step's exact error rate, activation failures and
diff rate. Migration 0009 holds the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evaluator_sidecar.store.errors import db_errors
from evaluator_sidecar.store.pool import Database

__all__ = ["COUNTER_NAMES", "DeviceCounters", "PKGCountersDAO", "ShadowDiffRow", "StepCounters"]

COUNTER_NAMES = ("requests", "errors", "activation_failures", "shadow_samples", "shadow_diffs")


@dataclass(frozen=True)
class DeviceCounters:
    """One heartbeat's cumulative counters of one sidecar process."""

    environment: str
    device_id: str
    process_id: str
    process_started: datetime
    requests: int = 0
    errors: int = 0
    activation_failures: int = 0
    shadow_samples: int = 0
    shadow_diffs: int = 0


@dataclass(frozen=True)
class StepCounters:
    """A device's totals now and at the step's start (None: it appeared after the start)."""

    device_id: str
    totals: dict[str, int]
    baseline: dict[str, int] | None


@dataclass(frozen=True)
class ShadowDiffRow:
    """An example decision a candidate made differently from the active snapshot."""

    deployment_uid: str
    deployment_name: str
    step_started_at: datetime
    device_id: str
    active_version: str | None
    candidate_version: str
    differs: Sequence[str]
    input: Any
    active_output: Any
    candidate_output: Any
    observed_at: datetime
    fingerprint: str


_UPSERT = """
INSERT INTO pkg_device_counters AS c (environment, device_id, process_id, process_started,
                                      requests, errors, activation_failures, shadow_samples,
                                      shadow_diffs, updated_at)
SELECT DISTINCT ON (h.environment, h.device_id)
       h.environment, h.device_id, h.process_id, h.process_started, h.requests, h.errors,
       h.activation_failures, h.shadow_samples, h.shadow_diffs, now()
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[],
              $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
       AS h(environment, device_id, process_id, process_started, requests, errors,
            activation_failures, shadow_samples, shadow_diffs)
 ORDER BY h.environment, h.device_id, h.process_started DESC, h.requests DESC
ON CONFLICT (environment, device_id) DO UPDATE SET
       process_id = EXCLUDED.process_id,
       process_started = EXCLUDED.process_started,
       requests = CASE WHEN c.process_id = EXCLUDED.process_id
                       THEN greatest(c.requests, EXCLUDED.requests) ELSE EXCLUDED.requests END,
       errors = CASE WHEN c.process_id = EXCLUDED.process_id
                     THEN greatest(c.errors, EXCLUDED.errors) ELSE EXCLUDED.errors END,
       activation_failures = CASE WHEN c.process_id = EXCLUDED.process_id
                     THEN greatest(c.activation_failures, EXCLUDED.activation_failures)
                     ELSE EXCLUDED.activation_failures END,
       shadow_samples = CASE WHEN c.process_id = EXCLUDED.process_id
                     THEN greatest(c.shadow_samples, EXCLUDED.shadow_samples)
                     ELSE EXCLUDED.shadow_samples END,
       shadow_diffs = CASE WHEN c.process_id = EXCLUDED.process_id
                     THEN greatest(c.shadow_diffs, EXCLUDED.shadow_diffs)
                     ELSE EXCLUDED.shadow_diffs END,
       carried_requests = c.carried_requests
           + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE c.requests END,
       carried_errors = c.carried_errors
           + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE c.errors END,
       carried_activation_failures = c.carried_activation_failures
           + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE c.activation_failures END,
       carried_shadow_samples = c.carried_shadow_samples
           + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE c.shadow_samples END,
       carried_shadow_diffs = c.carried_shadow_diffs
           + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE c.shadow_diffs END,
       restarts = c.restarts + CASE WHEN c.process_id = EXCLUDED.process_id THEN 0 ELSE 1 END,
       updated_at = now()
 WHERE c.process_started < EXCLUDED.process_started
    OR (c.process_id = EXCLUDED.process_id)
"""

_MARK = """
INSERT INTO pkg_step_baseline_marks (deployment_uid, step_started_at, target)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""

_CAPTURE = """
INSERT INTO pkg_step_baselines (deployment_uid, step_started_at, device_id, requests, errors,
                                activation_failures, shadow_samples, shadow_diffs)
SELECT $1, $2, t.device_id, t.requests, t.errors, t.activation_failures, t.shadow_samples,
       t.shadow_diffs
  FROM pkg_device_totals t
  JOIN pkg_device_versions v ON v.environment = t.environment AND v.device_id = t.device_id
 WHERE v.target = $3 AND v.region = $4 AND v.environment = $5
ON CONFLICT DO NOTHING
"""

_STEP_COUNTERS = """
SELECT t.device_id,
       t.requests, t.errors, t.activation_failures, t.shadow_samples, t.shadow_diffs,
       b.device_id IS NOT NULL AS has_baseline,
       b.requests AS b_requests, b.errors AS b_errors,
       b.activation_failures AS b_activation_failures,
       b.shadow_samples AS b_shadow_samples, b.shadow_diffs AS b_shadow_diffs
  FROM pkg_device_totals t
  JOIN pkg_device_versions v ON v.environment = t.environment AND v.device_id = t.device_id
  LEFT JOIN pkg_step_baselines b
         ON b.device_id = t.device_id AND b.deployment_uid = $1 AND b.step_started_at = $2
 WHERE v.target = $3 AND v.region = $4 AND v.environment = $5
 ORDER BY t.device_id
"""

_INSERT_DIFFS = """
INSERT INTO pkg_shadow_diffs (deployment_uid, deployment_name, step_started_at, device_id,
                              active_version, candidate_version, differs, input, active_output,
                              candidate_output, observed_at, fingerprint)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::jsonb[],
                     $11::timestamptz[], $12::text[])
ON CONFLICT DO NOTHING
"""


class PKGCountersDAO:
    """Cumulative counters per device, baselines per rollout step, shadow diff examples."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def update_device_counters(self, rows: Sequence[DeviceCounters]) -> int:
        """Fold many devices' cumulative counters in one statement; the rows written."""
        if not rows:
            return 0
        columns = [
            [r.environment for r in rows],
            [r.device_id for r in rows],
            [r.process_id for r in rows],
            [r.process_started for r in rows],
            *[[int(getattr(r, name)) for r in rows] for name in COUNTER_NAMES],
        ]
        with db_errors(f"recording {len(rows)} device counter report(s)"):
            async with self._db.connection() as conn:
                status: str = await conn.execute(_UPSERT, *columns)
        return int(status.rsplit(" ", 1)[-1])

    async def capture_step_baseline(
        self,
        deployment_uid: str,
        step_started_at: datetime,
        target: str,
        region: str,
        environment: str,
    ) -> bool:
        """Copy the totals of the place's devices as the step's baseline, once per step.

        True when this call captured it, False when it had been captured before.
        """
        with db_errors(f"capturing the baseline of a step of deployment {deployment_uid}"):
            async with self._db.connection() as conn, conn.transaction():
                status: str = await conn.execute(_MARK, deployment_uid, step_started_at, target)
                if status.endswith(" 0"):
                    return False
                await conn.execute(
                    _CAPTURE, deployment_uid, step_started_at, target, region, environment
                )
        return True

    async def step_counters(
        self,
        deployment_uid: str,
        step_started_at: datetime,
        target: str,
        region: str,
        environment: str,
    ) -> list[StepCounters]:
        """Every device of the environment, target and region with counters: its totals and
        baseline (the baseline table needs no environment: a deployment has one)."""
        with db_errors(f"reading the step counters of deployment {deployment_uid}"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    _STEP_COUNTERS, deployment_uid, step_started_at, target, region, environment
                )
        return [
            StepCounters(
                device_id=r["device_id"],
                totals={name: int(r[name]) for name in COUNTER_NAMES},
                baseline={name: int(r[f"b_{name}"]) for name in COUNTER_NAMES}
                if r["has_baseline"]
                else None,
            )
            for r in rows
        ]

    async def record_shadow_diffs(self, rows: Sequence[ShadowDiffRow]) -> int:
        """Store example diffs (a repeated example is stored once); the rows added."""
        if not rows:
            return 0
        columns = [
            [r.deployment_uid for r in rows],
            [r.deployment_name for r in rows],
            [r.step_started_at for r in rows],
            [r.device_id for r in rows],
            [r.active_version for r in rows],
            [r.candidate_version for r in rows],
            [",".join(r.differs) for r in rows],
            # The pool's jsonb codec encodes: pass the values themselves.
            [r.input for r in rows],
            [r.active_output for r in rows],
            [r.candidate_output for r in rows],
            [r.observed_at for r in rows],
            [r.fingerprint for r in rows],
        ]
        with db_errors(f"recording {len(rows)} shadow diff example(s)"):
            async with self._db.connection() as conn:
                status: str = await conn.execute(_INSERT_DIFFS, *columns)
        return int(status.rsplit(" ", 1)[-1])

    async def get_shadow_diffs(
        self,
        *,
        candidate_version: str | None = None,
        deployment_uid: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """The newest stored example diffs, filtered."""
        with db_errors("reading shadow diff examples"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT id, deployment_uid, deployment_name, step_started_at, device_id, "
                    "active_version, candidate_version, differs, input, active_output, "
                    "candidate_output, observed_at, recorded_at FROM pkg_shadow_diffs "
                    "WHERE ($1::text IS NULL OR candidate_version = $1) "
                    "AND ($2::text IS NULL OR deployment_uid = $2) "
                    "ORDER BY id DESC LIMIT $3",
                    candidate_version,
                    deployment_uid,
                    limit,
                )
        return [dict(r) for r in rows]
