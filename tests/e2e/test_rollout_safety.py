"""Safer rollouts on the real test bed: exact step health, and the staleness policy.

The operator and real ``pkg-sidecar`` processes run against the test bed. A burst
of errors shorter than one heartbeat interval, followed by quiet, healthy traffic,
must still fail the step: the operator judges the devices' totals since the step
began, not their latest heartbeat window. A sidecar cut off from Redis (its
connection runs through a TCP relay the test can cut) turns stale past its limit
and, fail-closed, refuses with the documented error until it is reconnected.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.procs import free_port
from pkg_testbed.product import ROOT, OperatorProcess, SidecarProcess

pytestmark = pytest.mark.e2e

REGION = "eu-west"
HEARTBEAT_SECONDS = 2.0


def _sidecars(
    cluster: Cluster, workdir: Path, env: str, target: str, count: int, **extra: str
) -> list[SidecarProcess]:
    procs = []
    for i in range(count):
        proc = SidecarProcess(
            workdir,
            {
                "PKG_DATABASE_URL": cluster.database_url,
                "PKG_REDIS_URL": cluster.redis_url,
                "PKG_ENV": env,
                "PKG_TARGET": target,
                "PKG_REGION": REGION,
                "PKG_DEVICE_TYPE": "router",
                "PKG_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
                "PKG_RESYNC_INTERVAL_SECONDS": "2",
                "PKG_LOG_LEVEL": "WARNING",
                **extra,
            },
            device_id=f"{target}:{REGION}:{i}",
        )
        proc.proc.start()
        procs.append(proc)
    for proc in procs:
        proc.start_wait()
    return procs


@pytest.fixture
def sidecars(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., list[SidecarProcess]]]:
    started: list[SidecarProcess] = []

    def make(env: str, target: str, count: int, **extra: str) -> list[SidecarProcess]:
        procs = _sidecars(cluster, cluster.workdir / request.node.name, env, target, count, **extra)
        started.extend(procs)
        return procs

    yield make
    for proc in started:
        proc.stop()


def _ready(cluster: Cluster, namespace: str, name: str, doc: str) -> None:
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=doc)
    wait_for(
        lambda: condition(cluster.get("psnap", name, namespace), "Ready").get("status") == "True",
        what=f"psnap/{name} Ready",
    )


def _wasm_loop_doc(name: str, version: str, env: str) -> str:
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


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{url}/v1/evaluate",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _healthy_traffic(urls: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        for url in urls:
            _post(url, {"context": {}, "tags": ["vip"]})
        stop.wait(0.02)


def _deployment(name: str, snapshot: str, env: str, target: str, gate: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": snapshot},
                "env": env,
                "target": target,
                "region": REGION,
                "strategy": {"canary": {"steps": [{"setWeight": 100}, {"analysis": gate}]}},
                "progressDeadlineSeconds": 120,
                "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 8, "minDevices": 3},
            },
        }
    )


async def test_an_error_burst_shorter_than_one_heartbeat_interval_fails_the_step(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sidecars: Callable[..., list[SidecarProcess]],
) -> None:
    env, target = "staging", f"burst-{namespace}"
    # Rollout ticks far apart compared with heartbeats: the beat holding the burst is
    # long replaced by quiet ones when the operator looks.
    start_operator(PKG_ROLLOUT_INTERVAL_SECONDS="4")
    v1 = f"rules@1.0.0-{namespace}"
    _ready(cluster, namespace, "v1", snapshot_doc("v1", v1, env=env, auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted",
    )
    spin = f"spin@1.0.0-{namespace}"
    _ready(cluster, namespace, "spin", _wasm_loop_doc("spin", spin, env))
    fleet = sidecars(env, target, 3, PKG_WASM_DEADLINE_MS="5")
    urls = [p.url for p in fleet]
    wait_for(lambda: all(p.metadata().get("version") == v1 for p in fleet), what="the fleet on v1")

    stop = threading.Event()
    worker = threading.Thread(target=_healthy_traffic, args=(urls, stop), daemon=True)
    worker.start()
    try:
        gate = {"durationSeconds": 90, "maxErrorRate": 0.03, "minEvaluations": 5}
        cluster.apply(namespace, _deployment("burst", "spin", env, target, gate))

        def analysing_with_traffic() -> bool:
            status = cluster.get("pdep", "burst", namespace).get("status") or {}
            health = status.get("health") or {}
            return (
                status.get("currentStepIndex") == 1
                and health.get("evaluations", 0) >= 100
                and health.get("exact") is True
            )

        wait_for(analysing_with_traffic, timeout=120, what="the analysis step with traffic")
        # The burst: 15 requests per device that the candidate fails (the spin input
        # runs into the 5 ms WASM deadline), all at once.
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=15) as pool:
            codes = list(pool.map(lambda u: _post(u, {"context": {"spin": True}}), [*urls] * 15))
        burst_seconds = time.monotonic() - began
        assert burst_seconds < HEARTBEAT_SECONDS, burst_seconds
        assert sum(code >= 400 for code in codes) >= 30, codes

        def ended() -> dict[str, Any] | None:
            obj = cluster.get("pdep", "burst", namespace)
            outcome = ((obj.get("status") or {}).get("attempt") or {}).get("outcome")
            return obj if outcome else None

        obj = wait_for(ended, timeout=60, what="the rollout to end")
    finally:
        stop.set()
        worker.join(timeout=10)
    status = obj["status"]
    assert status["attempt"]["outcome"] == "RolledBack", status["attempt"]
    assert status["attempt"]["reason"] == "ErrorRateExceeded"
    health = status["lastRollback"]["health"]
    assert health["exact"] is True
    assert health["errors"] >= 30, health
    assert condition(obj, "Degraded")["status"] == "True"
    # Never rolled out again by itself: the snapshot is blocked until a person retries.
    assert status["blockedSnapshots"][0]["version"] == spin


class Relay:
    """A TCP relay to Redis that the test can cut (every connection closed, no new ones)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._open = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._open.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # the relay was cut: both ends are closed below
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):  # already closed by the other direction
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)
            self._sockets.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._server.close()


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _evaluate(url: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/v1/evaluate",
        data=json.dumps({"tags": ["vip"]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), json.loads(exc.read())


async def test_a_device_cut_off_from_redis_turns_stale_and_fail_closed_refuses(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sidecars: Callable[..., list[SidecarProcess]],
) -> None:
    env, target = "dev", f"stale-{namespace}"
    start_operator()
    v1 = f"rules@1.0.0-{namespace}"
    _ready(cluster, namespace, "v1", snapshot_doc("v1", v1, env=env, auto=True))
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted",
    )
    redis_port = int(cluster.redis_url.rsplit(":", 1)[1].split("/")[0])
    db = cluster.redis_url.rsplit("/", 1)[1]
    relay = Relay(redis_port)
    try:
        [device] = sidecars(
            env,
            target,
            1,
            PKG_REDIS_URL=f"redis://127.0.0.1:{relay.port}/{db}",
            PKG_MAX_STALENESS_SECONDS="3",
            PKG_STALENESS_POLICY="fail-closed",
            PKG_RESYNC_INTERVAL_SECONDS="1",
            PKG_REDIS_BACKOFF_MAX_SECONDS="1",
        )
        wait_for(lambda: device.metadata().get("version") == v1, what="the device on v1")
        status, headers, _ = _evaluate(device.url)
        assert status == 200
        assert headers["PKG-Stale"] == "false"

        relay.cut()
        wait_for(
            lambda: _get_json(f"{device.url}/readyz")[0] == 503,
            timeout=30,
            what="/readyz to report the device stale",
        )
        _, body = _get_json(f"{device.url}/readyz")
        assert body["stale"] is True
        assert body["staleness_seconds"] > 3
        assert body["staleness_policy"] == "fail-closed"
        status, headers, answer = _evaluate(device.url)
        assert status == 503
        assert headers["PKG-Stale"] == "true"
        assert answer["error"]["code"] == "stale_policy"
        assert answer["error"]["max_staleness_seconds"] == 3
        assert "pkg_stale 1.0" in _text(f"{device.url}/metrics")

        relay.restore()
        wait_for(
            lambda: _evaluate(device.url)[0] == 200,
            timeout=30,
            what="answers again once the device reconnected",
        )
        assert _get_json(f"{device.url}/readyz")[1]["stale"] is False
    finally:
        relay.close()


def _rules_doc(name: str, version: str, env: str, subtask: str) -> str:
    """A native snapshot whose VIP rule emits ``subtask`` (other requests match nothing)."""
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicySnapshot",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "env": env,
                "engine": "native",
                "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low"}}],
                "rules": [
                    {
                        "rule_id": "rule-001",
                        "rule_name": "high_priority_vip",
                        "priority": 10,
                        "conditions": [
                            {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}
                        ],
                        "emissions": [
                            {
                                "subtask_type": "escalate",
                                "subtask_name": subtask,
                                "params": {"level": "high"},
                            }
                        ],
                    }
                ],
                "fixtures": [
                    {"name": "vip", "input": {"tags": ["vip"]}, "expect": {"subtasks": [subtask]}}
                ],
            },
        }
    )


def _mixed_traffic(urls: list[str], stop: threading.Event) -> None:
    """Three requests in ten carry the VIP tag: the ones a changed VIP rule decides otherwise."""
    n = 0
    while not stop.is_set():
        for url in urls:
            tags = ["vip", f"r{n}"] if n % 10 < 3 else ["ordinary", f"r{n}"]
            _post(url, {"tags": tags})
            n += 1
        stop.wait(0.01)


def _shadow_deployment(name: str, snapshot: str, env: str, target: str) -> str:
    shadow = {"durationSeconds": 4, "sampleRate": 1.0, "maxDiffRate": 0.1, "minSamples": 60}
    return yaml.safe_dump(
        {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": snapshot},
                "env": env,
                "target": target,
                "region": REGION,
                "strategy": {"canary": {"steps": [{"shadow": shadow}, {"setWeight": 100}]}},
                "progressDeadlineSeconds": 60,
                "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 5, "minDevices": 3},
            },
        }
    )


async def test_a_shadow_step_stops_a_candidate_that_changes_decisions_and_passes_one_that_does_not(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sidecars: Callable[..., list[SidecarProcess]],
) -> None:
    env, target = "staging", f"shadow-{namespace}"
    start_operator()
    v1 = f"rules@1.0.0-{namespace}"
    _ready(cluster, namespace, "v1", _rules_doc("v1", v1, env, "escalate_vip"))
    cluster.kubectl(
        "annotate", "psnap", "v1", "-n", namespace,
        'pkg.seedcore.io/action={"action": "promote", "token": "p1", "actor": "e2e"}',
    )  # fmt: skip
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted",
    )
    changed = f"rules@2.0.0-{namespace}"
    _ready(cluster, namespace, "changed", _rules_doc("changed", changed, env, "page_oncall"))
    same = f"rules@2.0.1-{namespace}"
    _ready(cluster, namespace, "same", _rules_doc("same", same, env, "escalate_vip"))
    fleet = sidecars(env, target, 3)
    urls = [p.url for p in fleet]
    wait_for(lambda: all(p.metadata().get("version") == v1 for p in fleet), what="fleet on v1")

    stop = threading.Event()
    worker = threading.Thread(target=_mixed_traffic, args=(urls, stop), daemon=True)
    worker.start()
    try:
        cluster.apply(namespace, _shadow_deployment("changed", "changed", env, target))
        uid = cluster.get("pdep", "changed", namespace)["metadata"]["uid"]

        def ended(name: str) -> dict[str, Any] | None:
            obj = cluster.get("pdep", name, namespace)
            outcome = ((obj.get("status") or {}).get("attempt") or {}).get("outcome")
            return obj if outcome else None

        stopped = wait_for(lambda: ended("changed"), timeout=90, what="the shadow step to judge")
        # No device ever ran the candidate.
        assert all(p.metadata().get("version") == v1 for p in fleet)
        cluster.kubectl("delete", "pdep", "changed", "-n", namespace)

        cluster.apply(namespace, _shadow_deployment("same", "same", env, target))
        passed = wait_for(lambda: ended("same"), timeout=90, what="the second rollout to end")
    finally:
        stop.set()
        worker.join(timeout=10)

    attempt = stopped["status"]["attempt"]
    assert (attempt["outcome"], attempt["reason"]) == ("Failed", "ShadowDiffExceeded"), attempt
    assert "decided differently" in attempt["message"]
    rate = stopped["status"]["health"]["shadowDiffRate"]
    assert 0.2 <= rate <= 0.4, stopped["status"]["health"]
    rows = await asyncio.to_thread(_shadow_rows, cluster, changed)
    assert rows, "no example diffs stored"
    assert all(row["deployment_uid"] == uid for row in rows)
    assert all("vip" in json.loads(row["input"])["tags"] for row in rows)
    assert all(row["differs"].startswith("subtasks") for row in rows)

    assert passed["status"]["attempt"]["outcome"] == "Succeeded", passed["status"]["attempt"]
    assert passed["status"]["health"].get("shadowDiffRate") in (None, 0, 0.0)
    wait_for(lambda: all(p.metadata().get("version") == same for p in fleet), what="fleet on same")
    assert not await asyncio.to_thread(_shadow_rows, cluster, same)


def _shadow_rows(cluster: Cluster, candidate: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(cluster.database_url)
        try:
            rows = await conn.fetch(
                "SELECT deployment_uid, input::text AS input, differs FROM pkg_shadow_diffs "
                "WHERE candidate_version = $1",
                candidate,
            )
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(fetch())


async def test_a_two_phase_activation_prepares_every_device_then_flips_them_together(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sidecars: Callable[..., list[SidecarProcess]],
) -> None:
    env, target = "dev", f"flip-{namespace}"
    start_operator()
    v1 = f"rules@1.0.0-{namespace}"
    _ready(cluster, namespace, "v1", _rules_doc("v1", v1, env, "escalate_vip"))
    cluster.kubectl(
        "annotate", "psnap", "v1", "-n", namespace,
        'pkg.seedcore.io/action={"action": "promote", "token": "p1", "actor": "e2e"}',
    )  # fmt: skip
    wait_for(
        lambda: condition(cluster.get("psnap", "v1", namespace), "Active").get("status") == "True",
        what="v1 promoted",
    )
    v2 = f"rules@2.0.0-{namespace}"
    _ready(cluster, namespace, "v2", _rules_doc("v2", v2, env, "page_oncall"))
    fleet = sidecars(env, target, 4)
    wait_for(lambda: all(p.metadata().get("version") == v1 for p in fleet), what="fleet on v1")
    doc = yaml.safe_load(_shadow_deployment("flip", "v2", env, target))
    doc["spec"]["strategy"]["canary"] = {"steps": [{"setWeight": 100}], "activation": "twoPhase"}
    doc["spec"]["coverage"]["minDevices"] = 4
    cluster.apply(namespace, yaml.safe_dump(doc))
    uid = cluster.get("pdep", "flip", namespace)["metadata"]["uid"]

    def ended() -> dict[str, Any] | None:
        obj = cluster.get("pdep", "flip", namespace)
        outcome = ((obj.get("status") or {}).get("attempt") or {}).get("outcome")
        return obj if outcome else None

    done = wait_for(ended, timeout=90, what="the two-phase rollout to end")
    assert done["status"]["attempt"]["outcome"] == "Succeeded", done["status"]["attempt"]
    activations = [float(_get_json(f"{p.url}/healthz")[1]["last_activation"]) for p in fleet]
    assert all(p.metadata().get("version") == v2 for p in fleet)
    steps = await asyncio.to_thread(_steps, cluster, uid)
    kinds = [kind for kind, _ in steps]
    assert kinds.index("setWeight") < kinds.index("flip") < kinds.index("complete"), steps
    # The flip came only once every device that switches had prepared the snapshot.
    assert "4/4 devices prepared" in dict(steps)["flip"]
    skew = max(activations) - min(activations)
    print(f"two-phase flip skew across 4 sidecars: {skew * 1000:.1f} ms")
    # Every device switched on the one flip message (a resync would take seconds).
    assert skew < 1.0, activations


def _steps(cluster: Cluster, uid: str) -> list[tuple[str, str]]:
    async def fetch() -> list[tuple[str, str]]:
        conn = await asyncpg.connect(cluster.database_url)
        try:
            rows = await conn.fetch(
                "SELECT details->>'kind' AS kind, details->>'detail' AS detail FROM pkg_audit_log "
                "WHERE action LIKE 'deployment.%' AND details->>'kind' IS NOT NULL "
                "AND entity_id IN (SELECT id::text FROM pkg_deployments "
                "                   WHERE deployment_uid = $1) ORDER BY id",
                uid,
            )
        finally:
            await conn.close()
        return [(str(r["kind"]), str(r["detail"])) for r in rows]

    return asyncio.run(fetch())
