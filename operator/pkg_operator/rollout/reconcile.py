"""One tick of a PolicyDeployment's rollout timer: observe, decide, apply, write the status.

The timer is the only writer of a deployment's status. The decision's actions
are performed in order, and only then is its status written: if an action
fails, the status is not written and the next tick repeats the same
idempotency keys, which the database recognises. See
docs/rollout-state-machine.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from pkg_operator import kube, metrics
from pkg_operator.context import OperatorContext
from pkg_operator.rollout import effects, judge, machine
from pkg_operator.rollout.observe import observe

__all__ = ["tick"]


async def tick(
    ctx: OperatorContext,
    body: kopf.Body,
    memo: Any,
    snapshots_index: kopf.Index[Any, Any],
    deployments_index: kopf.Index[Any, Any],
) -> None:
    """Reconcile the deployment ``body`` once."""
    now = dt.datetime.now(dt.UTC)
    seen = await observe(ctx, body, memo, snapshots_index, deployments_index, now=now)
    place = {"env": seen.env, "target": seen.target, "region": seen.region}
    if seen.obs.superseded_by is None:  # a superseded deployment must not write its old state back
        await effects.repair_level(ctx, body, seen.status, **place)

    decision = machine.reconcile(body["spec"], seen.status, seen.obs, now)

    for action in decision.actions:
        await effects.apply(ctx, body, action, **place)

    meta = body["metadata"]
    due = judge.running_deadline(body["spec"], decision.status)
    metrics.record_rollout(meta["namespace"], meta["name"], decision.status, due)
    if decision.status != dict(seen.status):
        written = await kube.patch_status(
            "policydeployments", meta["namespace"], meta["name"], decision.status
        )
        if written is not None:
            metrics.count_refusals(seen.status, decision.status)
            # Remembered, so the next tick reasons about it even if kopf's copy lags.
            memo.rollout_status = written.get("status") or decision.status
