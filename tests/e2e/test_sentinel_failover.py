"""Redis behind Sentinel: the master dies in the middle of a canary rollout, and it completes.

The operator and four ``pkg-sidecar`` processes reach Redis only through a real
sentinel (``PKG_REDIS_SENTINELS``), over a master and a replica of their own. The
rollout goes to 50 %, the master is SIGKILLed, the sentinel promotes the replica,
and then: the sidecars reconnect to the new master (their heartbeats are there),
the operator writes the next step there, and every device ends on the new version.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from test_rollout import EU, Fleet, active_stable, deployment_doc, ready_snapshot, status_is

from pkg_testbed.cluster import Cluster, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess, SidecarProcess
from pkg_testbed.sentinel import MASTER_NAME, SentinelSet

pytestmark = pytest.mark.e2e

DEVICES = 4


@pytest.fixture
def sentinel(testbed_dir: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(testbed_dir / f"sentinel-{uuid.uuid4().hex[:8]}")
    servers.start()
    yield servers
    servers.stop()


def sentinel_env(servers: SentinelSet) -> dict[str, str]:
    # With sentinels the URL's host is not used: the sentinel names the master.
    return {
        "PKG_REDIS_URL": "redis://via-sentinel/0",
        "PKG_REDIS_SENTINELS": servers.sentinels,
        "PKG_REDIS_SENTINEL_MASTER": MASTER_NAME,
    }


class SentinelFleet(Fleet):
    """test_rollout's fleet, connected through the sentinel."""

    servers: SentinelSet

    def start(self, region: str, count: int) -> list[str]:
        ids = [f"{self.target}:{region}:{i}" for i in range(count)]
        for device in ids:
            proc = SidecarProcess(
                self.workdir,
                {
                    "PKG_DATABASE_URL": self.cluster.database_url,
                    **sentinel_env(self.servers),
                    "PKG_ENV": self.env,
                    "PKG_TARGET": self.target,
                    "PKG_REGION": region,
                    "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                    "PKG_RESYNC_INTERVAL_SECONDS": "2",
                    "PKG_REDIS_BACKOFF_MAX_SECONDS": "1",
                    "PKG_LOG_LEVEL": "INFO",
                },
                device_id=device,
            )
            proc.proc.start()
            self.sidecars[device] = proc
        for device in ids:
            self.sidecars[device].start_wait()
        return ids


def heartbeat_version(port: int, env: str, device: str) -> str | None:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        raw = client.get(f"pkg:hb:{env}:{device}")
    finally:
        client.close()
    return None if raw is None else json.loads(raw).get("version")


def test_a_master_killed_mid_rollout_fails_over_and_the_rollout_completes(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    sentinel: SentinelSet,
    request: pytest.FixtureRequest,
) -> None:
    env, target = "staging", f"sentinel-{namespace}"
    start_operator(**sentinel_env(sentinel))
    v1 = active_stable(cluster, namespace, env, namespace)
    v2 = f"rules@2.0.0-{namespace}"
    ready_snapshot(cluster, namespace, "v2", snapshot_doc("v2", v2, env=env))
    fleet = SentinelFleet(cluster, cluster.workdir / request.node.name, env, target)
    fleet.servers = sentinel
    try:
        eu = fleet.start(EU, DEVICES)
        wait_for(lambda: fleet.converged(dict.fromkeys(eu, v1)), what="the fleet on v1")
        cluster.apply(
            namespace,
            deployment_doc(
                "failover",
                "v2",
                env=env,
                target=target,
                region=EU,
                min_devices=DEVICES,
                steps=[
                    {"setWeight": 50},
                    {"pause": {"durationSeconds": 3}},
                    {"setWeight": 100},
                ],
            ),
        )
        status_is(cluster, namespace, "failover", weight=50)

        old = sentinel.kill_master()
        started = time.monotonic()
        new = sentinel.wait_for_failover(old)
        promoted = time.monotonic() - started
        status_is(cluster, namespace, "failover", summary="Succeeded")
        wait_for(lambda: fleet.converged(dict.fromkeys(eu, v2)), what="every device on v2")
        completed = time.monotonic() - started
        # Heartbeats reach the new master: the sidecars followed the failover.
        wait_for(
            lambda: all(heartbeat_version(new, env, d) == v2 for d in eu),
            timeout=20,
            what="every device's heartbeat on the new master",
        )
        client = redis.Redis(port=new, socket_timeout=2)
        try:
            level = json.loads(client.get(f"pkg:desired:{env}:{target}:{EU}") or b"{}")
        finally:
            client.close()
        # The level the operator wrote after the failover: v2 is the rollout's stable now.
        assert level["stable"]["version"] == v2, level
        assert level.get("canary") is None, level
        print(
            f"\n[sentinel] master killed at 50%: replica promoted after {promoted:.1f}s, "
            f"rollout Succeeded and {DEVICES}/{DEVICES} devices on v2 after {completed:.1f}s",
            flush=True,
        )
    finally:
        fleet.stop()
