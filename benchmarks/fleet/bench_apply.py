"""Apply to 100 %: from ``kubectl apply`` to every sidecar on the new snapshot, step by step.

Two ways a change reaches a fleet: a PolicySnapshot with ``autoPromote`` (stored,
validated, promoted in its environment, published, activated by every sidecar,
reported back as coverage), and a PolicyDeployment of ``setWeight`` 50 then 100
with no pauses until ``Succeeded``. Each is broken down with the audit rows the
operator writes in PostgreSQL, the level's time stamp in Redis, the sidecars'
own activation log events, and the resources' status.

Usage: ``python -m benchmarks.fleet.bench_apply [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
import uuid
from typing import Any

from benchmarks.fleet.harness import Bed, Fleet, native_spec, snapshot_yaml
from benchmarks.fleet.stats import Result, load_average, percentile

__all__ = ["main"]

TARGET, REGION = "router", "eu-west"
HEARTBEAT_SECONDS = 5.0  # the sidecar's default PKG_HEARTBEAT_INTERVAL_SECONDS
QUESTION = (
    "How long from `kubectl apply` until every sidecar runs the new snapshot, through "
    "`autoPromote` and through a PolicyDeployment with no pauses, and where does the time go?"
)


def method(args: argparse.Namespace) -> str:
    return (
        f"One stack, the operator with its defaults, and {args.devices} `pkg-sidecar` processes "
        f"(target `{TARGET}`, region `{REGION}`, heartbeats every {HEARTBEAT_SECONDS:g} s, the "
        "default). **autoPromote**: `kubectl apply` of a new 13-rule native PolicySnapshot with "
        "`spec.autoPromote: true`; the clock starts just before kubectl runs. Milestones: "
        "*store* and *validate* are the audit rows `snapshot.stored` and `validation.finished`, "
        "*promote* the row `snapshot.promoted` (PostgreSQL's `clock_timestamp()`), *publish* the "
        "`updated_at` of the environment's level in Redis, *activate* the first and the last "
        "sidecar's `snapshot_activated` log event, *coverage* the moment `kubectl get` first "
        "shows the snapshot's `FleetConverged=True` (polled every 0.25 s; the operator refreshes "
        f"it every `PKG_LEVEL_RESYNC_SECONDS`). {args.reps} applies. **Rollout**: a Ready "
        f"snapshot, then `kubectl apply` of a PolicyDeployment (steps `setWeight: 50`, "
        "`setWeight: 100`, coverage `minPercent: 100`, every device required) to the same "
        "sidecars, until `status.attempt.outcome` is `Succeeded` (its `finishedAt`); "
        "steps from the audit rows "
        f"`deployment.step`. {args.reps} rollouts, each a new snapshot in the same deployment. "
        "Times are ms from the apply; the table gives the median of the runs and the worst."
    )


async def _audit(dsn: str, since: float) -> list[dict[str, Any]]:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT action, extract(epoch FROM created_at)::float8 AS at, snapshot_id, details"
            " FROM pkg_audit_log WHERE created_at >= to_timestamp($1) ORDER BY id",
            since,
        )
    finally:
        await conn.close()
    return [
        {
            "action": r["action"],
            "at": r["at"],
            "snapshot_id": r["snapshot_id"],
            "details": json.loads(r["details"]) if isinstance(r["details"], str) else r["details"],
        }
        for r in rows
    ]


async def _level_updated_at(redis_url: str, key: str) -> float | None:
    from redis.asyncio import Redis  # noqa: PLC0415

    client = Redis.from_url(redis_url)
    try:
        raw = await client.get(key)
    finally:
        await client.aclose()
    return None if raw is None else float(json.loads(raw).get("updated_at") or 0)


def _condition(obj: dict[str, Any], kind: str) -> str:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return str(item.get("status"))
    return ""


def _wait(check: Any, *, timeout: float, what: str, every: float = 0.25) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:g} s: {what}")


def _first(rows: list[dict[str, Any]], action: str, **where: Any) -> float | None:
    for row in rows:
        if row["action"] != action:
            continue
        if all(row.get(k) == v or (row["details"] or {}).get(k) == v for k, v in where.items()):
            return float(row["at"])
    return None


def _ms(at: float | None, t0: float) -> float | None:
    return None if at is None else round((at - t0) * 1000, 1)


def auto_promote(bed: Bed, fleet: Fleet, version: str, name: str) -> dict[str, float | None]:
    from evaluator_sidecar.signals.keys import env_key  # noqa: PLC0415

    t0 = time.time()
    bed.kubectl(
        "apply",
        "-n",
        bed.namespace,
        "-f",
        "-",
        stdin=snapshot_yaml(name, native_spec(version), auto=True),
    )
    times = fleet.wait_activated(version, t0, timeout=60)
    if any(t is None for t in times):
        raise RuntimeError(f"{version}: not every sidecar activated it within 60 s")
    converged = _wait(
        lambda: _condition(bed.get("psnap", name), "FleetConverged") == "True",
        timeout=60,
        what=f"psnap/{name} FleetConverged",
    )
    rows = asyncio.run(_audit(bed.database_url, t0 - 1))
    snapshot_id = next((r["snapshot_id"] for r in rows if r["action"] == "snapshot.stored"), None)
    published = asyncio.run(_level_updated_at(bed.redis_url, env_key("prod")))
    done = [t for t in times if t is not None]
    return {
        "store": _ms(_first(rows, "snapshot.stored", snapshot_id=snapshot_id), t0),
        "validate": _ms(_first(rows, "validation.finished", snapshot_id=snapshot_id), t0),
        "promote": _ms(_first(rows, "snapshot.promoted", snapshot_id=snapshot_id), t0),
        "publish": _ms(published, t0),
        "first sidecar": _ms(min(done), t0),
        "all sidecars": _ms(max(done), t0),
        "coverage": _ms(converged, t0),
    }


def deployment_doc(name: str, snapshot: str, devices: int) -> str:
    return json.dumps(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": snapshot},
                "env": "prod",
                "target": TARGET,
                "region": REGION,
                "strategy": {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 100}]}},
                "progressDeadlineSeconds": 120,
                "coverage": {"minPercent": 100, "minDevices": devices},
            },
        }
    )


def rollout(
    bed: Bed, fleet: Fleet, version: str, name: str, devices: int
) -> dict[str, float | None]:
    bed.kubectl(
        "apply", "-n", bed.namespace, "-f", "-", stdin=snapshot_yaml(name, native_spec(version))
    )
    _wait(
        lambda: _condition(bed.get("psnap", name), "Ready") == "True",
        timeout=60,
        what=f"{name} Ready",
    )
    t0 = time.time()
    bed.kubectl(
        "apply",
        "-n",
        bed.namespace,
        "-f",
        "-",
        stdin=deployment_doc("bench-rollout", name, devices),
    )

    last: dict[str, Any] = {}

    def succeeded() -> bool:
        status = bed.get("pdep", "bench-rollout").get("status") or {}
        last.update(status)
        attempt = status.get("attempt") or {}
        return (
            attempt.get("outcome") == "Succeeded"
            and (attempt.get("snapshot") or {}).get("version") == version
        )

    try:
        done_at = _wait(succeeded, timeout=120, what=f"pdep/bench-rollout Succeeded on {version}")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; last status: {json.dumps(last)[:3000]}") from exc
    # The attempt's own finishedAt (microseconds) rather than when the poll saw it.
    finished = last.get("attempt", {}).get("finishedAt")
    if finished:
        done_at = datetime.datetime.fromisoformat(finished.replace("Z", "+00:00")).timestamp()
    times = [t for t in fleet.activation_times(version, t0) if t is not None]
    rows = asyncio.run(_audit(bed.database_url, t0 - 0.5))
    steps = [
        r
        for r in rows
        if r["action"] == "deployment.step" and (r["details"] or {}).get("version") == version
    ]
    at50 = next((r["at"] for r in steps if (r["details"] or {}).get("percent") == 50), None)
    at100 = next((r["at"] for r in steps if (r["details"] or {}).get("percent") == 100), None)
    return {
        "step 50 %": _ms(at50, t0),
        "step 100 %": _ms(at100, t0),
        "first sidecar": _ms(min(times), t0) if times else None,
        "all sidecars": _ms(max(times), t0) if len(times) == devices else None,
        "Succeeded": _ms(done_at, t0),
    }


def _table_rows(runs: list[dict[str, float | None]]) -> list[list[Any]]:
    rows = []
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        rows.append(
            [
                key,
                round(percentile(values, 50), 1) if values else None,
                max(values) if values else None,
            ]
        )
    return rows


def run(args: argparse.Namespace) -> Result:
    result = Result("apply", "Apply to 100 %", QUESTION, method(args))
    bed = Bed(kube=True).start()
    fleet: Fleet | None = None
    tag = uuid.uuid4().hex[:6]
    try:
        bed.start_operator()
        fleet = Fleet(bed, env={"PKG_TARGET": TARGET, "PKG_REGION": REGION}, prefix="apply")
        base = f"apply-{tag}@0.0.1"
        bed.kubectl(
            "apply",
            "-n",
            bed.namespace,
            "-f",
            "-",
            stdin=snapshot_yaml("base", native_spec(base), auto=True),
        )
        fleet.grow(args.devices)
        fleet.wait_activated(base, 0.0, timeout=90)
        time.sleep(HEARTBEAT_SECONDS)  # every sidecar's first heartbeat folded
        load0 = load_average()[0]
        autos = [
            auto_promote(bed, fleet, f"apply-{tag}@1.0.{i}", f"auto-{i}") for i in range(args.reps)
        ]
        for i, a in enumerate(autos):
            print(f"autoPromote {i}: {a}", flush=True)
        load1 = load_average()[0]
        rolls = [
            rollout(bed, fleet, f"apply-{tag}@2.0.{i}", f"roll-{i}", args.devices)
            for i in range(args.reps)
        ]
        for i, r in enumerate(rolls):
            print(f"rollout {i}: {r}", flush=True)
        result.table(
            f"autoPromote: ms from `kubectl apply` ({args.devices} sidecars, load 1m {load0})",
            ["milestone", "median ms", "worst ms"],
            _table_rows(autos),
        )
        result.table(
            f"Rollout setWeight 50, 100: ms from `kubectl apply` ({args.devices} sidecars, "
            f"load 1m {load1})",
            ["milestone", "median ms", "worst ms"],
            _table_rows(rolls),
        )
        all_on = max(a["all sidecars"] or 0 for a in autos)
        result.goal(
            f"apply -> all {args.devices} sidecars (autoPromote, worst of {args.reps})",
            "<= 1,000 ms",
            f"{all_on:,.0f} ms",
            met=all_on <= 1000,
        )
        worst = max(r["Succeeded"] or 0 for r in rolls)
        result.goal(
            f"rollout 50 -> 100 % with no pauses -> Succeeded (worst of {args.reps})",
            f"<= 2 x heartbeat interval ({2 * HEARTBEAT_SECONDS * 1000:,.0f} ms)",
            f"{worst:,.0f} ms",
            met=worst <= 2 * HEARTBEAT_SECONDS * 1000,
        )
        result.notes = notes(autos, rolls)
        result.extra["autoPromote"] = autos
        result.extra["rollout"] = rolls
    finally:
        if fleet is not None:
            fleet.close()
        bed.close()
    return result


def notes(autos: list[dict[str, float | None]], rolls: list[dict[str, float | None]]) -> str:
    """What bounds the figures, from this run's own numbers."""

    def med(runs: list[dict[str, float | None]], key: str) -> float:
        values = [r[key] for r in runs if r[key] is not None]
        return percentile(values, 50) if values else 0.0  # type: ignore[arg-type]

    store, publish = med(autos, "store"), med(autos, "publish")
    gaps = [
        {
            "a": (r["step 100 %"] or 0) - (r["step 50 %"] or 0),
            "b": (r["Succeeded"] or 0) - (r["step 100 %"] or 0),
            "c": (r["all sidecars"] or 0) - (r["step 100 %"] or 0),
        }
        for r in rolls
    ]
    step_gap = percentile([g["a"] for g in gaps], 50) if gaps else 0.0
    finish = percentile([g["b"] for g in gaps], 50) if gaps else 0.0
    on_all = percentile([g["c"] for g in gaps], 50) if gaps else 0.0
    first_step = med(rolls, "step 50 %")
    first, last = med(autos, "first sidecar"), med(autos, "all sidecars")
    return f"""**Where the time goes (autoPromote, medians).** {store:,.0f} ms pass before the
snapshot is stored: `kubectl` starting (`kubectl version --client` alone takes 110-180 ms on
this machine) and talking to the API server, the watch event, and kopf's handler start.
Validation, promotion and the publish follow within {publish - store:,.0f} ms; the first
sidecar runs the snapshot {first - publish:,.0f} ms after the publish and the last
{last - publish:,.0f} ms after it (each reads it from
PostgreSQL and compiles it; see "Propagation to N sidecars" for how that grows with N on two
cores). *Coverage* waits for the snapshot's `FleetConverged` condition, which the operator
refreshes every `PKG_LEVEL_RESYNC_SECONDS` (10 s by default): that, not the sidecars, sets it.

**The rollout.** Each `setWeight` step waits until coverage holds, and coverage is what the
heartbeats say. Before this benchmark's fix a sidecar reported a swap only at its next regular
heartbeat, up to one interval (5 s) later, once per step: with the same 20 sidecars the rollout
took 15.7-18.0 s to `Succeeded` (median 17.4 s, against the 10 s goal). Sidecars now send a
heartbeat at once after any change of what they run (activation, epoch, cohort, failure; at
most one per 0.25 s; `evaluator_sidecar/sidecar/heartbeat.py`). What remains per step is the
operator's heartbeat fold (`PKG_HEARTBEAT_FOLD_INTERVAL_SECONDS`, 1 s) and its rollout tick
(`PKG_ROLLOUT_INTERVAL_SECONDS`, 2 s), both defaults: in this run the first step began
{first_step:,.0f} ms after the apply (median; the operator noticing the spec change, then a
tick), the 100 % step {step_gap:,.0f} ms after the 50 % one, and `Succeeded` came
{finish:,.0f} ms after the 100 % step, although every sidecar ran the snapshot within
{on_all:,.0f} ms of that step. Those ticks, not the sidecars or the heartbeats, are what is
left between this and the goal; making the rollout react to a fold instead of waiting for
its next tick is the next step (not done here)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 sidecars, one run of each")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.devices, args.reps = 5, 1
    result = run(args)
    print(f"wrote {result.write()}")


if __name__ == "__main__":
    main()
