"""Crash runs: the reference rollout and the snapshot path, driven to their end across kill -9s.

The operator's test-only crash points (``pkg_operator.crashpoints``) make it exit with
137 just before a chosen write. A :class:`CrashBed` owns one sidecar fleet of one
target and runs, one after the other, rollouts of ever newer snapshots to it, each in a
namespace of its own (the operator watches only the bed's namespaces, so what other
tests left behind never adds writes to the count): first a recording run that lists
the points the operator passes, then one run per point that kills the operator there,
starts a fresh one and drives the rollout to its end for the oracle to judge.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.procs import TestbedError
from pkg_testbed.product import OperatorProcess, SidecarProcess

__all__ = [
    "PERIODIC",
    "REFERENCE_STEPS",
    "CrashBed",
    "CrashRun",
    "crash_points",
    "rollout_doc",
]

#: The reference rollout: several setWeight steps, a timed pause, an analysis step and a
#: manual gate (an indefinite pause promoted by annotation).
REFERENCE_STEPS: list[dict[str, Any]] = [
    {"setWeight": 25},
    {"pause": {"durationSeconds": 1}},
    {"setWeight": 50},
    {"analysis": {"durationSeconds": 1, "minEvaluations": 0}},
    {"pause": {}},
    {"setWeight": 100},
]
GATE_STEP = 4
#: What ends a rollout (status.summary).
TERMINAL = {"Succeeded", "RolledBack", "Failed", "Invalid", "Superseded"}

#: Background writes on a timer (heartbeat folding, the FleetConverged refresh): only their
#: first hit is a crash point.
PERIODIC = frozenset(
    {
        "pg:update_device_heartbeats",
        "pg:update_device_heartbeat",
        "pg:update_device_counters",
        "pg:record_shadow_diffs",
        "redis:ack_heartbeats",
        "kube:fleet_status:policysnapshots",
    }
)


def rollout_doc(
    name: str,
    snapshot: str,
    *,
    env: str,
    target: str,
    region: str,
    min_devices: int,
    steps: list[dict[str, Any]] | None = None,
) -> str:
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
                "strategy": {"canary": {"steps": REFERENCE_STEPS if steps is None else steps}},
                "progressDeadlineSeconds": 120,
                "coverage": {
                    "minPercent": 100,
                    "heartbeatTTLSeconds": 5,
                    "minDevices": min_devices,
                },
            },
        }
    )


def crash_points(recorded: list[str], *, periodic: frozenset[str]) -> list[tuple[str, int]]:
    """The distinct crash points of a recording: every (point, n-th hit) of the writes the
    run itself causes, and only the first hit of the periodic background writes (heartbeat
    folding), whose later hits fall at no fixed place in the run."""
    seen: Counter[str] = Counter()
    points: list[tuple[str, int]] = []
    for point in recorded:
        seen[point] += 1
        if point in periodic and seen[point] > 1:
            continue
        points.append((point, seen[point]))
    return points


@dataclass
class CrashRun:
    """What one run did: whether the crash happened, the operators used, the timings."""

    point: str | None
    crashed: bool = False
    restarts: int = 0
    converge_s: float | None = None
    summary: str = ""
    notes: list[str] = field(default_factory=list)


class CrashBed:
    """One target's fleet, and the runs against it, one namespace per run."""

    def __init__(
        self,
        cluster: Cluster,
        workdir: Path,
        *,
        env: str,
        tag: str,
        devices: int = 4,
    ) -> None:
        self.cluster, self.workdir = cluster, workdir
        self.env, self.tag = env, tag
        self.target, self.region = f"crash-{tag}", "eu-west"
        self.glob = f"crash-{tag}-*"
        self.devices = devices
        self.sidecars: list[SidecarProcess] = []
        self._runs = 0
        self._operators = 0
        self.operators: list[OperatorProcess] = []

    # ---- set-up

    def sidecar_env(self) -> dict[str, str]:
        return {
            "PKG_DATABASE_URL": self.cluster.database_url,
            "PKG_REDIS_URL": self.cluster.redis_url,
            "PKG_ENV": self.env,
            "PKG_TARGET": self.target,
            "PKG_REGION": self.region,
            "PKG_DEVICE_TYPE": "router",
            "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
            "PKG_RESYNC_INTERVAL_SECONDS": "2",
            "PKG_LOG_LEVEL": "WARNING",
        }

    def start_fleet(self) -> None:
        for i in range(self.devices):
            proc = SidecarProcess(
                self.workdir, self.sidecar_env(), device_id=f"{self.target}:{self.region}:{i}"
            )
            proc.proc.start()
            self.sidecars.append(proc)
        for proc in self.sidecars:
            proc.start_wait()

    def stop_operators(self) -> OperatorProcess | None:
        """Stop every operator of the bed (after a run that never settled); the last one."""
        for operator in self.operators:
            operator.stop()
        return self.operators[-1] if self.operators else None

    def stop(self, *, show_logs: bool = False) -> None:
        for index, operator in enumerate(self.operators):
            if show_logs and index >= len(self.operators) - 3:
                print(f"\n===== {operator.proc.name} =====\n{operator.log()}")
            operator.stop()
        for proc in self.sidecars:
            proc.stop()

    def new_namespace(self) -> str:
        self._runs += 1
        name = f"crash-{self.tag}-{self._runs}"
        self.cluster.kubectl("create", "namespace", name)
        return name

    def operator(self, *, standalone: bool = True, **env: str) -> OperatorProcess:
        """An operator watching only this bed's namespaces; standalone by default (a
        successor starts at once: no peering record to outwait). One that dies at its
        crash point while starting is returned dead: :meth:`drive` replaces it."""
        self._operators += 1
        settings = {
            "PKG_NAMESPACES": self.glob,
            "PKG_LEVEL_RESYNC_SECONDS": "3",
            **({"PKG_STANDALONE": "true"} if standalone else {}),
            **env,
        }
        proc = OperatorProcess(
            self.workdir, self.cluster.operator_env(**settings), name=f"operator-{self._operators}"
        )
        self.operators.append(proc)
        try:
            proc.start()
        except TestbedError:
            if proc.proc.running() or not env.get("PKG_TEST_CRASH_AT"):
                raise
        return proc

    def versions(self) -> dict[str, str | None]:
        result: dict[str, str | None] = {}
        for proc in self.sidecars:
            try:
                result[proc.device_id] = str(proc.metadata().get("version"))
            except OSError:
                result[proc.device_id] = None
        return result

    # ---- snapshots

    def snapshot(self, namespace: str, name: str, version: str, *, auto: bool) -> None:
        """Apply a snapshot (promoted in the bed's environment when ``auto``)."""
        self.cluster.apply(namespace, snapshot_doc(name, version, env=self.env, auto=auto))

    def snapshot_settled(self, namespace: str, name: str, *, auto: bool) -> dict[str, Any] | None:
        obj = self.cluster.get("psnap", name, namespace)
        if condition(obj, "Ready").get("status") != "True":
            return None
        if auto and condition(obj, "Active").get("status") != "True":
            return None
        return obj

    # ---- driving a run across crashes

    def drive(
        self,
        run: CrashRun,
        operator: OperatorProcess,
        settled: Callable[[], bool],
        *,
        gate: Callable[[], None] | None = None,
        timeout: float = 150,
    ) -> OperatorProcess:
        """Poll until ``settled()``; restart the operator each time it died at its crash
        point; call ``gate()`` on every poll (it promotes a paused rollout)."""
        deadline = time.monotonic() + timeout
        crashed_at: float | None = None
        while time.monotonic() < deadline:
            if not operator.proc.running():
                code = operator.proc._proc.poll() if operator.proc._proc else None
                run.crashed = True
                run.restarts += 1
                run.notes.append(f"operator exited ({code}); restarted without crash point")
                crashed_at = time.monotonic()
                operator.proc.stop()
                operator = self.operator()
                continue
            if settled():
                if crashed_at is not None:
                    run.converge_s = round(time.monotonic() - crashed_at, 2)
                return operator
            if gate is not None:
                gate()
            time.sleep(0.3)
        raise AssertionError(
            f"run at {run.point} did not settle in {timeout}s: {run.notes}\n{operator.log()}"
        )

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self.cluster.get("pdep", name, namespace)

    def apply_rollout(
        self, namespace: str, snapshot: str, *, steps: list[dict[str, Any]] | None = None
    ) -> None:
        """Create the PolicyDeployment ``roll`` of ``snapshot`` to the fleet."""
        self.cluster.apply(
            namespace,
            rollout_doc(
                "roll",
                snapshot,
                env=self.env,
                target=self.target,
                region=self.region,
                min_devices=self.devices,
                steps=steps,
            ),
        )

    def drive_rollout(
        self, run: CrashRun, namespace: str, operator: OperatorProcess, *, timeout: float = 150
    ) -> OperatorProcess:
        """Drive ``roll`` to its end: promote it at the gate, restart a dead operator."""
        promoted: dict[str, float] = {}

        def gate() -> None:
            status = self.deployment(namespace, "roll").get("status") or {}
            if status.get("summary") != "Paused" or status.get("currentStepIndex") != GATE_STEP:
                return
            # Promote once; again only if the rollout still waits long after (as a person
            # would when the first promotion was lost with a crashed operator).
            if time.monotonic() - promoted.get("at", -1e9) > 15:
                if "at" in promoted:
                    run.notes.append("gate promoted a second time (the first was not seen)")
                promoted["at"] = time.monotonic()
                self.act(namespace, "pdep", "roll", "promote")

        def settled() -> bool:
            status = self.deployment(namespace, "roll").get("status") or {}
            run.summary = str(status.get("summary") or "")
            return run.summary in TERMINAL

        return self.drive(run, operator, settled, gate=gate, timeout=timeout)

    def rollout(
        self, run: CrashRun, namespace: str, operator: OperatorProcess, snapshot: str
    ) -> OperatorProcess:
        """The reference rollout of the Ready snapshot ``snapshot`` to the fleet, to its end."""
        self.apply_rollout(namespace, snapshot)
        return self.drive_rollout(run, namespace, operator)

    def act(self, namespace: str, kind: str, name: str, action: str) -> None:
        value = json.dumps(
            {
                "action": action,
                "token": uuid.uuid4().hex[:12],
                "actor": "chaos-tester",
                "reason": f"chaos {action}",
            }
        )
        self.cluster.kubectl(
            "annotate",
            kind,
            name,
            "-n",
            namespace,
            "--overwrite",
            f"pkg.seedcore.io/action={value}",
        )

    def wait_versions(self, want: dict[str, str], timeout: float = 30) -> bool:
        try:
            wait_for(lambda: self.versions() == want, timeout=timeout, what=f"fleet on {want}")
        except AssertionError:
            return False
        return True
