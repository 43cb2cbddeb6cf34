"""A PolicyDeployment rolls a snapshot out to real sidecar processes as a canary.

The operator and a fleet of ``pkg-sidecar`` processes (devices in two regions of
one target) run against the test bed. Every step is checked where it takes
effect: which version each sidecar runs (its own metadata), the deployment's
status, rows in PostgreSQL, and what the sidecars answer.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import ROOT, OperatorProcess, SidecarProcess

pytestmark = pytest.mark.e2e

EU, US = "eu-west", "us-east"


class Fleet:
    """Sidecar processes for one target, some in each region."""

    def __init__(self, cluster: Cluster, workdir: Path, env: str, target: str) -> None:
        self.cluster, self.workdir, self.env, self.target = cluster, workdir, env, target
        self.sidecars: dict[str, SidecarProcess] = {}

    def start(self, region: str, count: int) -> list[str]:
        ids = [f"{self.target}:{region}:{i}" for i in range(count)]
        procs = []
        for device in ids:
            proc = SidecarProcess(
                self.workdir,
                {
                    "PKG_DATABASE_URL": self.cluster.database_url,
                    "PKG_REDIS_URL": self.cluster.redis_url,
                    "PKG_ENV": self.env,
                    "PKG_TARGET": self.target,
                    "PKG_REGION": region,
                    "PKG_DEVICE_TYPE": "router",
                    "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                    "PKG_RESYNC_INTERVAL_SECONDS": "2",
                    "PKG_LOG_LEVEL": "WARNING",
                },
                device_id=device,
            )
            proc.proc.start()
            procs.append(proc)
            self.sidecars[device] = proc
        for proc in procs:
            proc.start_wait()
        return ids

    def versions(self, ids: list[str]) -> dict[str, str | None]:
        return {device: self.sidecars[device].metadata().get("version") for device in ids}

    def converged(self, expected: dict[str, str]) -> bool:
        return self.versions(list(expected)) == expected

    def stop(self) -> None:
        for proc in self.sidecars.values():
            proc.stop()


@pytest.fixture
def fleet_factory(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[[str, str], Fleet]]:
    fleets: list[Fleet] = []

    def make(env: str, target: str) -> Fleet:
        fleet = Fleet(cluster, cluster.workdir / request.node.name, env, target)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


#: spec.coverage.heartbeatTTLSeconds of the deployments here.
HEARTBEAT_TTL = 5


def deployment_doc(
    name: str,
    snapshot: str,
    *,
    env: str,
    target: str,
    region: str,
    steps: list[dict[str, Any]],
    min_devices: int,
    analysis: dict[str, Any] | None = None,
) -> str:
    canary: dict[str, Any] = {"steps": steps}
    if analysis:
        canary["analysis"] = analysis
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": snapshot},
                "env": env,
                "target": target,
                "region": region,
                "strategy": {"canary": canary},
                "progressDeadlineSeconds": 90,
                "coverage": {
                    "minPercent": 100,
                    "heartbeatTTLSeconds": HEARTBEAT_TTL,
                    "minDevices": min_devices,
                },
            },
        }
    )


def pdep(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.get("pdep", name, namespace)


def status_is(cluster: Cluster, namespace: str, name: str, **want: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = pdep(cluster, namespace, name)
        status = obj.get("status") or {}
        return obj if all(status.get(k) == v for k, v in want.items()) else None

    result: dict[str, Any] = wait_for(check, timeout=90, what=f"pdep/{name} status {want}")
    return result


def act(cluster: Cluster, namespace: str, kind: str, name: str, action: str) -> None:
    value = json.dumps(
        {
            "action": action,
            "token": uuid.uuid4().hex[:12],
            "actor": "e2e-tester",
            "reason": f"e2e {action}",
        }
    )
    cluster.kubectl(
        "annotate", kind, name, "-n", namespace, "--overwrite", f"pkg.seedcore.io/action={value}"
    )


def ready_snapshot(cluster: Cluster, namespace: str, name: str, doc: str) -> None:
    # Server-side apply: client-side apply would copy the whole spec (an inline WASM
    # module) into the last-applied annotation, beyond the API server's limit.
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=doc)
    wait_for(
        lambda: condition(cluster.get("psnap", name, namespace), "Ready").get("status") == "True",
        what=f"psnap/{name} Ready",
    )


def active_stable(cluster: Cluster, namespace: str, env: str, tag: str) -> str:
    """A v1 snapshot promoted in ``env`` (the stable every sidecar starts on)."""
    version = f"rules@1.0.0-{tag}"
    ready_snapshot(cluster, namespace, "v1", snapshot_doc("v1", version, env=env, auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted",
    )
    return version


def v1_v2_and_fleet(
    cluster: Cluster,
    namespace: str,
    fleet_factory: Callable[[str, str], Fleet],
    env: str,
    target: str,
) -> tuple[str, str, Fleet, list[str]]:
    """v1 promoted in ``env``, v2 Ready, and six eu-west sidecars of ``target`` running v1."""
    v1 = active_stable(cluster, namespace, env, namespace)
    v2 = f"rules@2.0.0-{namespace}"
    ready_snapshot(cluster, namespace, "v2", snapshot_doc("v2", v2, env=env))
    fleet = fleet_factory(env, target)
    eu = fleet.start(EU, 6)
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="the fleet on v1")
    return v1, v2, fleet, eu


def expected_versions(
    ids: list[str], uid: str, weight: float, stable: str, canary: str
) -> dict[str, str]:
    return {device: canary if in_canary(device, uid, weight) else stable for device in ids}


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


class Twins:
    """Staging devices named like the fleet's, kept live, and one prod device kept silent for
    four heartbeat TTLs (stale: neither live nor forgotten), in PostgreSQL."""

    def __init__(
        self,
        cluster: Cluster,
        ids: list[str],
        target: str,
        version: str,
        *,
        silent: str,
        silent_version: str,
    ) -> None:
        self.cluster, self.ids, self.target, self.version = cluster, ids, target, version
        self.silent, self.silent_version = silent, silent_version

    async def refresh(self) -> None:
        await fetch(
            self.cluster,
            "INSERT INTO pkg_device_versions (environment, device_id, device_type, region, target,"
            " version, last_seen) VALUES ('prod', $1, 'router', $2, $3, $4, now() - $5::interval)"
            " ON CONFLICT (environment, device_id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
            self.silent,
            EU,
            self.target,
            self.silent_version,
            datetime.timedelta(seconds=4 * HEARTBEAT_TTL),
        )
        await fetch(
            self.cluster,
            "INSERT INTO pkg_device_versions (environment, device_id, device_type, region, target,"
            " version, last_seen) SELECT 'staging', d, 'router', $2, $3, $4, now() "
            "FROM unnest($1::text[]) AS d ON CONFLICT (environment, device_id) "
            "DO UPDATE SET last_seen = now()",
            self.ids,
            EU,
            self.target,
            self.version,
        )

    async def _read(self, namespace: str, uid: str) -> tuple[dict[str, Any], dict[str, Any]]:
        await self.refresh()
        [row] = await fetch(
            self.cluster, "SELECT * FROM pkg_deployment_coverage WHERE deployment_uid = $1", uid
        )
        coverage = pdep(self.cluster, namespace, "canary")["status"]["coverage"]
        view = {
            "targeted": row["devices_total"],
            "onCanary": row["devices_on_snapshot"],
            "expectedCanary": row["devices_expected_on_snapshot"],
            "onIntended": row["devices_on_intended"],
            "stale": row["devices_stale"],
        }
        return view, {k: coverage.get(k) for k in view}

    async def view_and_status(
        self, namespace: str, uid: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The view's figures and the status's, read until a tick no longer falls between."""
        view, status = await self._read(namespace, uid)
        for _ in range(20):
            if view == status:
                break
            await asyncio.sleep(0.5)
            view, status = await self._read(namespace, uid)
        return view, status


async def test_a_canary_goes_10_50_100_through_a_timed_pause_and_a_manual_gate(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "prod", f"router-{namespace}"
    start_operator()
    v1 = active_stable(cluster, namespace, env, namespace)
    v2 = f"rules@2.0.0-{namespace}"
    ready_snapshot(cluster, namespace, "v2", snapshot_doc("v2", v2, env=env))
    fleet = fleet_factory(env, target)
    eu, us = fleet.start(EU, 10), fleet.start(US, 4)
    wait_for(lambda: fleet.converged(dict.fromkeys(eu + us, v1)), what="the fleet on v1")

    cluster.apply(
        namespace,
        deployment_doc(
            "canary",
            "v2",
            env=env,
            target=target,
            region=EU,
            min_devices=10,
            steps=[
                {"setWeight": 10},
                {"pause": {"durationSeconds": 2}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100},
            ],
        ),
    )
    uid = pdep(cluster, namespace, "canary")["metadata"]["uid"]
    # Beside the fleet, in PostgreSQL: a device of the same place silent for 4 TTLs (stale),
    # and staging devices with the same names, target and region, all on v2.
    twins = Twins(cluster, eu, target, v2, silent=f"{target}:silent", silent_version=v1)

    for weight in (10, 50):
        want = expected_versions(eu, uid, weight, v1, v2)
        wait_for(lambda w=want: fleet.converged(w), what=f"the eu cohort at {weight}%")
        on_canary = sum(1 for version in want.values() if version == v2)
        figures = {
            "targeted": len(eu),
            "onCanary": on_canary,
            "onStable": len(eu) - on_canary,
            "onIntended": len(eu),
            "expectedCanary": on_canary,
            "stale": 1,
        }
        await twins.refresh()
        wait_for(
            lambda w=weight, f=figures: (
                # The fleet can converge before the tick that published writes status.
                (s := pdep(cluster, namespace, "canary").get("status") or {})
                and s.get("weight") == w
                and {k: (s.get("coverage") or {}).get(k) for k in f} == f
            ),
            what=f"the status to count {figures} at {weight}%",
        )
        # pkg_deployment_coverage tells the same story as the status, mid-canary.
        view, status = await twins.view_and_status(namespace, uid)
        assert view == status, f"at {weight}%: the view says {view}, the status {status}"
        assert (view["targeted"], view["stale"]) == (len(eu), 1)
        assert fleet.converged(dict.fromkeys(us, v1)), "the other region never moves"

    paused = status_is(cluster, namespace, "canary", summary="Paused")
    assert condition(paused, "Paused")["status"] == "True"
    assert paused["status"]["weight"] == 50
    table = cluster.kubectl("get", "pdep", "canary", "-n", namespace)
    assert "Paused" in table
    assert v2 in table
    assert "50" in table

    act(cluster, namespace, "pdep", "canary", "promote")
    done = status_is(cluster, namespace, "canary", summary="Succeeded")
    wait_for(
        lambda: fleet.converged({**dict.fromkeys(eu, v2), **dict.fromkeys(us, v1)}),
        what="eu on v2, us still on v1",
    )
    assert condition(done, "Available")["status"] == "True"
    assert condition(done, "Available")["observedGeneration"] == done["metadata"]["generation"]
    cluster.kubectl(
        "wait", "--for=condition=Available", "--timeout=10s", "pdep/canary", "-n", namespace
    )
    assert done["status"]["stable"]["version"] == v2

    # Every step on record; pkg_deployment_coverage agrees with the status.
    steps = await fetch(
        cluster,
        "SELECT details->>'kind' AS kind, details->>'percent' AS pct "
        "FROM pkg_audit_log WHERE idempotency_key LIKE $1 || '/%' "
        "ORDER BY id",
        uid,
    )
    percents = [float(r["pct"]) for r in steps if r["kind"] == "setWeight"]
    assert percents == [10.0, 50.0, 100.0]
    promotions = await fetch(
        cluster,
        "SELECT p.action, s.version, p.metrics FROM pkg_promotions p"
        " JOIN pkg_snapshots s ON s.id = p.snapshot_id WHERE "
        "p.metrics->>'target' = $1",
        target,
    )
    assert [(r["action"], r["version"]) for r in promotions] == [("promote", v2)]
    coverage = await fetch(
        cluster,
        "SELECT devices_on_snapshot, devices_total FROM "
        "pkg_deployment_coverage WHERE deployment_uid = $1 AND "
        "snapshot_version = $2",
        uid,
        v2,
    )
    assert [(r["devices_on_snapshot"], r["devices_total"]) for r in coverage] == [
        (len(eu), len(eu))
    ]


def wasm_loop_doc(name: str, version: str, env: str) -> str:
    """An OPA policy that never finishes when asked to spin: every such call is an error."""
    wasm = (ROOT / "policies" / "limits" / "loop.wasm").read_bytes()
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "env": env,
                "engine": "wasm",
                "wasm": {
                    "entrypoint": "limits/loop/result",
                    "inline": base64.b64encode(wasm).decode(),
                },
                "fixtures": [{"name": "answers", "input": {}, "expect": {"rules": ["loop-002"]}}],
            },
        }
    )


def traffic(urls: list[str], stop: threading.Event) -> None:
    body = json.dumps({"context": {"spin": True}}).encode()
    while not stop.is_set():
        for url in urls:
            request = urllib.request.Request(
                f"{url}/v1/evaluate",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5):
                    pass
            except urllib.error.HTTPError:
                pass  # 422 from the canary: exactly the errors the sidecars report
        stop.wait(0.05)


async def test_a_canary_whose_sidecars_report_errors_is_rolled_back_at_once(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "staging", f"door-{namespace}"
    start_operator()
    v1 = active_stable(cluster, namespace, env, namespace)
    bad = f"spin@1.0.0-{namespace}"
    ready_snapshot(cluster, namespace, "spin", wasm_loop_doc("spin", bad, env))
    fleet = fleet_factory(env, target)
    eu = fleet.start(EU, 6)
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="the fleet on v1")
    stop = threading.Event()
    worker = threading.Thread(
        target=traffic, args=([fleet.sidecars[d].url for d in eu], stop), daemon=True
    )
    worker.start()
    try:
        cluster.apply(
            namespace,
            deployment_doc(
                "bad",
                "spin",
                env=env,
                target=target,
                region=EU,
                min_devices=6,
                steps=[{"setWeight": 100}, {"pause": {}}],
                analysis={"maxErrorRate": 0.1, "minEvaluations": 3},
            ),
        )
        uid = pdep(cluster, namespace, "bad")["metadata"]["uid"]
        rolled = status_is(cluster, namespace, "bad", summary="RolledBack")
    finally:
        stop.set()
        worker.join(timeout=10)
    status = rolled["status"]
    assert condition(rolled, "Degraded")["status"] == "True"
    assert "error" in condition(rolled, "Degraded")["message"].lower()
    assert status["lastRollback"]["timeToRollbackSeconds"] < 5
    assert status.get("canary") is None
    assert status["weight"] == 0
    wait_for(
        lambda: fleet.converged(dict.fromkeys(eu, v1)), timeout=30, what="every device back on v1"
    )
    rows = await fetch(
        cluster,
        "SELECT p.action, s.version, p.metrics FROM pkg_promotions p JOIN "
        "pkg_snapshots s ON s.id = p.snapshot_id WHERE "
        "p.metrics->>'target' = $1",
        target,
    )
    assert [(r["action"], r["version"]) for r in rows] == [("rollback", v1)]
    metrics = (
        json.loads(rows[0]["metrics"])
        if isinstance(rows[0]["metrics"], str)
        else rows[0]["metrics"]
    )
    assert metrics.get("errors", 0) > 0 or "health" in metrics, metrics
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=bad",
        "-o",
        "json",
    )
    assert '"Warning"' in events
    assert uid


async def test_abort_retry_and_promote_full_are_carried_out_once_each(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "dev", f"kiosk-{namespace}"
    start_operator()
    v1, v2, fleet, eu = v1_v2_and_fleet(cluster, namespace, fleet_factory, env, target)
    cluster.apply(
        namespace,
        deployment_doc(
            "manual",
            "v2",
            env=env,
            target=target,
            region=EU,
            min_devices=6,
            steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 80}, {"pause": {}}],
        ),
    )
    uid = pdep(cluster, namespace, "manual")["metadata"]["uid"]
    status_is(cluster, namespace, "manual", summary="Paused")

    act(cluster, namespace, "pdep", "manual", "abort")
    aborted = status_is(cluster, namespace, "manual", summary="Aborted")
    assert condition(aborted, "Degraded")["status"] == "False"
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="abort: all back on v1")

    act(cluster, namespace, "pdep", "manual", "retry")
    retried = status_is(cluster, namespace, "manual", summary="Paused")
    assert retried["status"]["attempt"]["id"] == 2
    wait_for(
        lambda: fleet.converged(expected_versions(eu, uid, 50, v1, v2)),
        what="retry: the 50% cohort on v2 again",
    )

    act(cluster, namespace, "pdep", "manual", "promote-full")
    status_is(cluster, namespace, "manual", summary="Succeeded")
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v2)), what="promote-full: all on v2")
    actions = await fetch(
        cluster,
        "SELECT details->>'kind' AS kind FROM pkg_audit_log WHERE idempotency_key LIKE $1 || '/%'",
        uid,
    )
    kinds = [r["kind"] for r in actions]
    assert kinds.count("abort") == 1
    assert kinds.count("retry") == 1
    assert kinds.count("promote-full") == 1


async def test_a_spec_change_mid_rollout_restarts_with_the_new_snapshot(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "prod", f"gate-{namespace}"
    start_operator()
    v1 = active_stable(cluster, namespace, env, namespace)
    v2, v3 = f"rules@2.0.0-{namespace}", f"rules@3.0.0-{namespace}"
    ready_snapshot(cluster, namespace, "v2", snapshot_doc("v2", v2, env=env))
    fleet = fleet_factory(env, target)
    eu = fleet.start(EU, 6)
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="the fleet on v1")
    doc = deployment_doc(
        "change",
        "v2",
        env=env,
        target=target,
        region=EU,
        min_devices=6,
        steps=[{"setWeight": 50}, {"pause": {}}],
    )
    cluster.apply(namespace, doc)
    uid = pdep(cluster, namespace, "change")["metadata"]["uid"]
    status_is(cluster, namespace, "change", summary="Paused")

    # v3 does not exist yet: the rollout waits and never publishes it.
    cluster.apply(namespace, doc.replace("name: v2", "name: v3"))
    waiting = status_is(cluster, namespace, "change", summary="Waiting")
    assert waiting["status"]["attempt"]["id"] == 2
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="the old canary withdrawn")
    ready_snapshot(cluster, namespace, "v3", snapshot_doc("v3", v3, env=env))
    status_is(cluster, namespace, "change", summary="Paused")
    wait_for(
        lambda: fleet.converged(expected_versions(eu, uid, 50, v1, v3)), what="the cohort on v3"
    )
    history = pdep(cluster, namespace, "change")["status"]["history"]
    assert (history[0]["outcome"], history[0]["version"]) == ("Superseded", v2)


async def test_an_operator_killed_mid_rollout_resumes_without_repeating_a_step(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "staging", f"lift-{namespace}"
    first = start_operator(name="first")
    _v1, v2, fleet, eu = v1_v2_and_fleet(cluster, namespace, fleet_factory, env, target)
    cluster.apply(
        namespace,
        deployment_doc(
            "resume",
            "v2",
            env=env,
            target=target,
            region=EU,
            min_devices=6,
            steps=[
                {"setWeight": 20},
                {"pause": {"durationSeconds": 3}},
                {"setWeight": 60},
                {"pause": {"durationSeconds": 3}},
                {"setWeight": 100},
            ],
        ),
    )
    uid = pdep(cluster, namespace, "resume")["metadata"]["uid"]
    status_is(cluster, namespace, "resume", weight=60)
    first.kill()
    await asyncio.sleep(1)
    start_operator(name="second")
    status_is(cluster, namespace, "resume", summary="Succeeded")
    wait_for(lambda: fleet.converged(dict.fromkeys(eu, v2)), what="all on v2")
    rows = await fetch(
        cluster,
        "SELECT idempotency_key, details->>'kind' AS kind FROM "
        "pkg_audit_log WHERE idempotency_key LIKE $1 || '/%'",
        uid,
    )
    keys = [r["idempotency_key"] for r in rows]
    assert len(keys) == len(set(keys))
    weights = [r["kind"] for r in rows if r["kind"] == "setWeight"]
    assert len(weights) == 3, rows  # 20, 60, 100: each once, across the restart
    promotions = await fetch(
        cluster, "SELECT count(*) AS n FROM pkg_promotions WHERE metrics->>'target' = $1", target
    )
    assert promotions[0]["n"] == 1


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def test_a_snapshot_changed_in_postgres_is_refused_by_sidecars_and_shown_in_the_status(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[[str, str], Fleet],
) -> None:
    env, target = "prod", f"verify-{namespace}"
    start_operator()
    v1, v2, fleet, eu = v1_v2_and_fleet(cluster, namespace, fleet_factory, env, target)
    # Someone with write access to PostgreSQL makes v2's VIP rule fire for every guest.
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            "UPDATE pkg_rule_conditions c SET condition_key = 'guest' FROM pkg_policy_rules r, "
            "pkg_snapshots s WHERE c.rule_id = r.id AND r.snapshot_id = s.id AND s.version = $1",
            v2,
        )
    finally:
        await conn.close()
    cluster.apply(
        namespace,
        deployment_doc(
            "tampered", "v2", env=env, target=target, region=EU, min_devices=6,
            steps=[{"setWeight": 100}],
        ),
    )  # fmt: skip

    def refusals() -> list[dict[str, Any]] | None:
        health = (pdep(cluster, namespace, "tampered").get("status") or {}).get("health") or {}
        errors: list[dict[str, Any]] = health.get("activationErrors") or []
        return errors if health.get("devicesWithActivationErrors") == len(eu) else None

    errors = await asyncio.to_thread(wait_for, refusals, what="the refusals in status.health")
    assert {e["device"] for e in errors} <= set(eu)
    for error in errors:
        assert "changed in PostgreSQL after it was stored" in error["error"], error
        assert v2 in error["error"]
    # The refusals are a condition too, and its turning False a Warning event.
    refused = condition(pdep(cluster, namespace, "tampered"), "ActivationsHealthy")
    assert (refused["status"], refused["reason"]) == ("False", "ActivationsRefused"), refused
    assert f"{len(eu)} of {len(eu)} live devices refuse to activate" in refused["message"]
    assert "changed in PostgreSQL after it was stored" in refused["message"]

    def warned() -> list[dict[str, Any]] | None:
        selector = "involvedObject.name=tampered,type=Warning,reason=ActivationsRefused"
        items: list[dict[str, Any]] = json.loads(
            cluster.kubectl(
                "get", "events", "-n", namespace, "--field-selector", selector, "-ojson"
            )
        )["items"]
        return items or None

    [event] = await asyncio.to_thread(wait_for, warned, what="the ActivationsRefused event")
    assert "refuse to activate" in event["message"]
    # Nothing was activated: every device still runs and answers with v1.
    assert fleet.converged(dict.fromkeys(eu, v1))
    health = await asyncio.to_thread(_get_json, f"{fleet.sidecars[eu[0]].url}/healthz")
    assert health["active_version"] == v1
    assert "changed in PostgreSQL" in health["last_error"]
