"""``python -m pkg_testbed demo`` (``make demo``): the whole path, on a local test bed.

The scenario, in phases:

1. cluster: the CRDs (server-side apply), the ClusterKopfPeering ``pkg-operator``
   and a namespace;
2. migrate: ``pkg-migrate`` brings the PostgreSQL schema up to date;
3. operator: ``pkg-operator`` starts and answers its liveness probe;
4. fleet: a dozen ``pkg-sidecar`` processes stand in for pods (routers in
   eu-west and us-east, door controllers in eu-west);
5. v1: PolicySnapshot v1 is applied, stored and tested by the operator, and
   promoted as a person does it, with ``kubectl pkg promote psnap``; every sidecar
   swaps to it;
6. answers-v1: the same task facts go to every sidecar (``POST /v1/evaluate``);
7. v2: PolicySnapshot v2 is applied and tested (not promoted);
8. canary: a PolicyDeployment rolls v2 out to the eu-west routers: first a shadow
   step (v2 answers beside v1 on live requests the demo sends, no device acts on it;
   the diff rate shown live), then 10 % -> timed pause -> 50 % -> manual gate, shown
   live (step, weight, coverage, versions);
9. cohorts: at the gate, canary and stable devices answer the same facts
   differently, each as its cohort says;
10. promote: the demo opens the gate with ``kubectl pkg promote pdep``; 100 %, Succeeded;
11. answers-v2: the eu-west routers answer under v2, every other device under v1;
12. audit: promotions and audit rows read from PostgreSQL; the audit chain verified.

:func:`run_scenario` plays this on any running test bed (a
:class:`~pkg_testbed.demo_world.DemoWorld`); every step checks its outcome and
raises :class:`~pkg_testbed.demo_world.DemoError` saying what went wrong, so the
end-to-end test (``tests/e2e/test_demo.py``) runs this very function. :func:`main`
runs it on a fresh :class:`~pkg_testbed.stack.Stack` in a new temporary folder
and owns what a terminal needs: Ctrl-C, the summary, the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from evaluator_sidecar.signals.cohorts import in_canary
from evaluator_sidecar.store.audit_chain import AuditChainReport
from evaluator_sidecar.store.client import PKGClient
from pkg_testbed.demo_view import (
    DeviceGroup,
    Narrator,
    RolloutView,
    answer_groups,
    fleet_block,
    fleet_line,
    rollout_block,
    rollout_line,
    summarize_answer,
    timings_table,
)
from pkg_testbed.demo_world import (
    DemoCluster,
    DemoError,
    DemoWorld,
    DeviceSpec,
    Fleet,
    InterruptGuard,
    LiveTraffic,
    processes_using,
    wait_for,
)
from pkg_testbed.procs import TestbedError
from pkg_testbed.product import ROOT, OperatorProcess, venv_command, wait_established
from pkg_testbed.stack import Stack

__all__ = [
    "CASES",
    "DEPLOYMENT_FILE",
    "FLEET_LAYOUT",
    "V1_FILE",
    "V2_FILE",
    "DemoReport",
    "Phases",
    "TaskCase",
    "fleet_devices",
    "main",
    "run_scenario",
]

SAMPLES = ROOT / "manifests" / "samples"
V1_FILE = SAMPLES / "demo-policysnapshot-v1.yaml"
V2_FILE = SAMPLES / "demo-policysnapshot-v2.yaml"
DEPLOYMENT_FILE = SAMPLES / "demo-policydeployment.yaml"
CRDS_FILE = ROOT / "manifests" / "crds.yaml"
PEERING = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {name: pkg-operator}\n"
CRDS = (
    "policysnapshots.pkg.seedcore.io",
    "policydeployments.pkg.seedcore.io",
    "clusterkopfpeerings.kopf.dev",
)

#: (target, region, device type, how many): the sidecars standing in for pods.
FLEET_LAYOUT: tuple[tuple[str, str, str, int], ...] = (
    ("router", "eu-west", "router", 8),
    ("router", "us-east", "router", 2),
    ("edge:door", "eu-west", "door", 2),
)
#: The group the PolicyDeployment sample rolls out to (its target/region).
CANARY_GROUP = "router/eu-west"

#: How long one wait may take before the demo gives up and says what it waited for.
WAIT = 90.0


def fleet_devices() -> list[DeviceSpec]:
    return [
        DeviceSpec(f"{target}:{region}:{i}", target, region, kind)
        for target, region, kind, count in FLEET_LAYOUT
        for i in range(count)
    ]


@dataclass(frozen=True)
class TaskCase:
    """Task facts an application sends, and the subtasks each policy version answers."""

    label: str
    facts: Mapping[str, Any]
    v1: tuple[str, ...]
    v2: tuple[str, ...]


CASES: tuple[TaskCase, ...] = (
    TaskCase(
        "VIP guest request",
        {"tags": ["vip"], "context": {"domain": "hotel_ops", "task_type": "guest_request"}},
        ("escalate_vip",),
        ("escalate_vip", "notify_concierge"),
    ),
    TaskCase(
        "food order, allergen tag",
        {"tags": ["allergen"], "context": {"domain": "hotel_ops", "task_type": "food_order"}},
        ("check_allergens", "notify_kitchen"),
        ("check_allergens", "notify_kitchen"),
    ),
    TaskCase(
        "lounge door, guest:Ben at 01:30",
        {"context": {"domain": "hotel_ops"}, "now": "2026-01-01T01:30:00Z"},
        ("open_lounge_door",),
        ("open_lounge_door",),
    ),
    TaskCase("sensor reading x6 = 0.95", {"signals": {"x6": 0.95}}, (), ("page_duty_manager",)),
)


@dataclass(frozen=True)
class Policy:
    """One of the demo's PolicySnapshot samples, as a file and as its parts."""

    path: Path
    name: str
    version: str
    label: str

    @classmethod
    def load(cls, path: Path, label: str) -> Policy:
        doc = yaml.safe_load(path.read_text())
        return cls(path, doc["metadata"]["name"], doc["spec"]["version"], label)

    def expected(self, case: TaskCase) -> tuple[str, ...]:
        return case.v1 if self.label == "v1" else case.v2


@dataclass
class DemoReport:
    """What the scenario observed, for the summary and for the end-to-end test's assertions."""

    namespace: str
    #: Who the operator recorded for the person's actions (kubectl pkg sends the caller's
    #: user name as the API server knows it).
    actor: str = ""
    v1: str = ""
    v2: str = ""
    deployment: str = ""
    deployment_uid: str = ""
    migrations: list[str] = field(default_factory=list)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    gate_cohort: dict[str, str] = field(default_factory=dict)
    #: The shadow step as it ended: its spec, and the last figures seen during it
    #: (samples, diffs, diffRate) with every distinct (samples, diffs) shown live.
    shadow: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)
    final_status: dict[str, Any] = field(default_factory=dict)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    chain: AuditChainReport | None = None


class Phases:
    """Numbered phase headers, and how long each phase took (the summary's lines)."""

    def __init__(self, out: Narrator) -> None:
        self.out = out
        self.timings: list[tuple[str, str, float]] = []
        self.current: str | None = None
        self.started = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str, title: str) -> Iterator[None]:
        self.current = name
        self.out.header(f"{len(self.timings) + 1}. {name}: {title}")
        began = time.monotonic()
        yield
        self.timings.append((name, title, time.monotonic() - began))
        self.current = None

    def total(self) -> float:
        return time.monotonic() - self.started


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


@dataclass(frozen=True)
class Observation:
    """One look at the world: a deployment's status (if watched) and every device's version."""

    status: dict[str, Any]
    versions: dict[str, str | None]


class _Scenario:
    """The scenario's state between phases; each method is one small step."""

    def __init__(
        self,
        *,
        world: DemoWorld,
        out: Narrator,
        phases: Phases,
        guard: InterruptGuard,
        cleanup: contextlib.ExitStack,
    ) -> None:
        self.world, self.out, self.phases, self.guard = world, out, phases, guard
        self.cleanup = cleanup
        self.cluster = DemoCluster(world)
        self.v1 = Policy.load(V1_FILE, "v1")
        self.v2 = Policy.load(V2_FILE, "v2")
        self.labels = {self.v1.version: "1", self.v2.version: "2"}
        self.report = DemoReport(namespace=world.namespace, v1=self.v1.version, v2=self.v2.version)
        self.operator: OperatorProcess | None = None
        self.fleet = Fleet(world, fleet_devices(), guard=guard)
        self.watch_started = time.monotonic()

    # -- helpers ------------------------------------------------------------------------

    def logs(self) -> list[tuple[str, str]]:
        result = []
        if self.operator is not None:
            result.append(("operator", self.operator.proc.log_tail(40)))
        return result

    def wait(self, check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        return wait_for(check, timeout=timeout, what=what, logs=self.logs)

    def kubectl_pkg(self, *args: str, reason: str) -> None:
        """A person's action, as a person types it: ``kubectl pkg ...`` (the plugin writes
        the action annotation with a fresh token and the caller's identity, waits for the
        operator's outcome and prints it; non-zero exit when refused or unanswered)."""
        words = ["pkg", "-n", self.world.namespace, *args, "--reason", reason]
        self.out.command(f"kubectl {' '.join(words[:-1])} {json.dumps(reason)}")
        bindir = Path(venv_command("kubectl-pkg")).parent
        path = os.pathsep.join(
            [str(bindir), str(self.world.kubectl_bin.parent), os.environ.get("PATH", "")]
        )
        env = {**os.environ, "PATH": path, "KUBECONFIG": str(self.world.kubeconfig)}
        try:
            result = subprocess.run(
                [str(self.world.kubectl_bin), *words],
                env=env,
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoError(f"kubectl pkg {' '.join(args)} did not finish: {exc}") from exc
        for text in result.stdout.splitlines():
            self.out.say(text)
        if result.returncode != 0:
            raise DemoError(
                f"kubectl pkg {' '.join(args)} exited {result.returncode}: "
                f"{(result.stdout + result.stderr).strip()}",
                self.logs(),
            )

    def groups(self, versions: Mapping[str, str | None]) -> list[DeviceGroup]:
        return [
            DeviceGroup(name, tuple(versions.get(d.device_id) for d in devices))
            for name, devices in self.fleet.groups().items()
        ]

    def legend(self) -> str:
        return f"1 = {self.v1.version}, 2 = {self.v2.version}, - = no policy"

    def observe(self, deployment: str | None) -> Observation:
        status: dict[str, Any] = {}
        if deployment is not None:
            status = dict(
                (self.cluster.get("policydeployments", deployment) or {}).get("status") or {}
            )
        return Observation(status, self.fleet.versions())

    def render(self, obs: Observation, deployment: str | None, steps: Sequence[Any]) -> None:
        groups = self.groups(obs.versions)
        elapsed = time.monotonic() - self.watch_started
        if deployment is None:
            block = fleet_block(groups, self.labels, self.out.style, legend=self.legend())
            line = fleet_line(groups, self.labels, elapsed)
            key = fleet_line(groups, self.labels, 0.0)
        else:
            view = RolloutView(deployment, obs.status, steps, groups, self.labels, elapsed)
            block = rollout_block(view, self.out.style, legend=self.legend())
            line = rollout_line(view)
            key = rollout_line(RolloutView(deployment, obs.status, steps, groups, self.labels))
        self.out.live.update(block, line, key=key)

    def record(self, obs: Observation) -> None:
        status = obs.status
        if not status:
            return
        entry = {
            "summary": status.get("summary"),
            "stepIndex": status.get("currentStepIndex"),
            "weight": status.get("weight"),
            "onCanary": (status.get("coverage") or {}).get("onCanary"),
            "onIntended": (status.get("coverage") or {}).get("onIntended"),
        }
        if not self.report.trace or self.report.trace[-1] != entry:
            self.report.trace.append(entry)

    def mark(self) -> None:
        """Start the clock of the live view (at the action whose effect it shows)."""
        self.watch_started = time.monotonic()

    def watch(
        self,
        until: Callable[[Observation], bool],
        what: str,
        *,
        deployment: str | None = None,
        steps: Sequence[Any] = (),
    ) -> Observation:
        """Poll and show the fleet (and the deployment) until ``until`` holds.

        The times shown count from the last ``mark()``.
        """

        def check() -> Observation | None:
            obs = self.observe(deployment)
            self.render(obs, deployment, steps)
            self.record(obs)
            return obs if until(obs) else None

        result: Observation = wait_for(check, timeout=WAIT, what=what, logs=self.logs, interval=0.4)
        return result

    # -- phases ---------------------------------------------------------------------------

    def apply_cluster(self) -> None:
        self.out.command(f"kubectl apply --server-side -f {_rel(CRDS_FILE)}")
        for text in self.cluster.kubectl(
            "apply", "--server-side", "-f", str(CRDS_FILE)
        ).splitlines():
            self.out.say(text)
        try:
            wait_established(self.world.kubectl_bin, self.world.kubeconfig, list(CRDS))
        except TestbedError as exc:
            raise DemoError(str(exc)) from exc
        self.out.ok("CRDs established")
        self.out.command("kubectl apply -f -   # ClusterKopfPeering pkg-operator")
        self.out.say(self.cluster.kubectl("apply", "-f", "-", stdin=PEERING).strip())
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.world.namespace},
        }
        self.out.command(f"kubectl apply -f -   # Namespace {self.world.namespace}")
        self.out.say(
            self.cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace)).strip()
        )

    def migrate(self) -> None:
        self.out.command("pkg-migrate")
        try:
            result = subprocess.run(
                [venv_command("pkg-migrate")],
                env={**os.environ, "PKG_DATABASE_URL": self.world.database_url},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired, TestbedError) as exc:
            raise DemoError(f"pkg-migrate could not run: {exc}") from exc
        if result.returncode != 0:
            raise DemoError(
                f"pkg-migrate exited {result.returncode}",
                [("pkg-migrate", (result.stdout + result.stderr)[-3000:])],
            )
        self.report.migrations = result.stdout.splitlines()
        for text in self.report.migrations:
            self.out.say(text)

    def start_operator(self) -> None:
        env = {
            **self.world.product_env(),
            # The e2e tests' pace: rollouts reconciled twice a second.
            "PKG_ROLLOUT_INTERVAL_SECONDS": "0.5",
            "PKG_LOG_LEVEL": "INFO",
        }
        self.operator = operator = OperatorProcess(self.world.workdir, env)
        self.out.command("pkg-operator   # cluster-wide, peering pkg-operator, migrations on start")
        with self.guard.deferred():
            operator.proc.start()
            self.cleanup.callback(operator.stop)
        url = f"http://127.0.0.1:{operator.liveness_port}/healthz"

        def alive() -> bool:
            if not operator.proc.running():
                raise DemoError("pkg-operator exited during start-up", self.logs())
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        self.wait(alive, "pkg-operator's liveness endpoint", timeout=60)
        self.out.ok(f"pkg-operator is up (pid {operator.proc.pid}, liveness {url})")

    def start_fleet(self) -> None:
        self.cleanup.callback(self.fleet.stop)
        for name, devices in self.fleet.groups().items():
            self.out.say(f"{name:<18} {len(devices)} x pkg-sidecar  ({devices[0].device_id} ...)")
        started = time.monotonic()
        self.fleet.start()
        self.mark()
        self.out.ok(
            f"{len(self.fleet.sidecars)} sidecars serve HTTP ({time.monotonic() - started:.1f}s)"
        )
        self.out.say(f"versions below: one character per device, {self.legend()}")
        self.watch(lambda obs: True, "the fleet's versions")

    def snapshot_ready(self, policy: Policy) -> dict[str, Any]:
        self.out.command(
            f"kubectl apply --server-side -n {self.world.namespace} -f {_rel(policy.path)}"
        )
        applied = self.cluster.kubectl(
            "apply", "--server-side", "-n", self.world.namespace, "-f", str(policy.path)
        )
        self.out.say(applied.strip())

        def reconciled() -> dict[str, Any] | None:
            obj = self.cluster.get("policysnapshots", policy.name)
            return obj if _condition(obj, "Ready").get("status") in ("True", "False") else None

        obj: dict[str, Any] = self.wait(reconciled, f"psnap/{policy.name} to be reconciled")
        for kind in ("Stored", "Validated", "Ready"):
            cond = _condition(obj, kind)
            self.out.say(
                f"{kind:<9} {cond.get('status')}  {cond.get('reason')}: {cond.get('message')}"
            )
        if _condition(obj, "Ready").get("status") != "True":
            raise DemoError(
                f"PolicySnapshot {policy.name} is not Ready: {_condition(obj, 'Ready')}",
                self.logs(),
            )
        self.report.snapshots[policy.label] = obj
        return obj

    def promote_snapshot(self, policy: Policy) -> None:
        self.mark()
        self.kubectl_pkg(
            "promote",
            "psnap",
            policy.name,
            reason=f"{policy.version}: first version of the hotel rules",
        )
        # kubectl pkg returned once the operator recorded the outcome: it is the last action.
        obj = self.cluster.get("policysnapshots", policy.name) or {}
        last = (obj.get("status") or {}).get("lastAction") or {}
        self.report.actor = str(last.get("actor") or "")
        active = _condition(obj, "Active")
        self.out.say(
            f"lastAction: {last.get('action')} by {last.get('actor')}: {last.get('outcome')}"
        )
        self.out.say(
            f"Active    {active.get('status')}  {active.get('reason')}: {active.get('message')}"
        )
        if active.get("status") != "True":
            raise DemoError(f"{policy.name} was not activated: {last}", self.logs())
        self.report.snapshots[policy.label] = obj
        everyone = {d.device_id: policy.version for d in self.fleet.devices}
        self.watch(
            lambda obs: obs.versions == everyone,
            f"every sidecar to report {policy.version}",
        )
        self.out.ok(f"all {len(everyone)} sidecars run {policy.version} (GET /v1/metadata)")

    def answers(self, stage: str, expected: Mapping[str, Policy]) -> None:
        """Every case on every device; each answer checked against the device's policy."""
        names = {p.version: p.label for p in (self.v1, self.v2)}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for case in CASES:
            rows: list[tuple[str | None, str]] = []
            for device in self.fleet.devices:
                policy = expected[device.device_id]
                answer = self.fleet.evaluate(device.device_id, case.facts)
                results.setdefault(device.device_id, {})[case.label] = answer
                got = tuple(str(s.get("name")) for s in answer.get("subtasks") or [])
                if answer.get("snapshot") != policy.version or got != policy.expected(case):
                    raise DemoError(
                        f"{device.device_id} answered {case.label!r} with {got} from "
                        f"{answer.get('snapshot')}; expected {policy.expected(case)} from "
                        f"{policy.version}",
                        self.fleet.logs([device.device_id]),
                    )
                rows.append((answer.get("snapshot"), summarize_answer(answer)))
            for i, (label, count, summary) in enumerate(answer_groups(rows, names)):
                head = case.label if i == 0 else ""
                self.out.say(f"{head:<32} {label} x{count:<2}  {summary}")
        self.report.answers[stage] = results

    def expected_at(self, uid: str, weight: float) -> dict[str, Policy]:
        result = {}
        for device in self.fleet.devices:
            canary = device.group == CANARY_GROUP and in_canary(device.device_id, uid, weight)
            result[device.device_id] = self.v2 if canary else self.v1
        return result

    def converged(self, obs: Observation, expected: Mapping[str, Policy]) -> bool:
        return all(obs.versions.get(d) == p.version for d, p in expected.items())

    def at_weight(
        self, weight: float, expected: Mapping[str, Policy], *, gate: bool
    ) -> Callable[[Observation], bool]:
        """Reached: the status at ``weight``, the devices on their cohort's version, the
        coverage counted so, and (at a gate) the rollout Paused."""
        cohort = sum(1 for policy in expected.values() if policy is self.v2)
        targeted = len(self.fleet.in_group(CANARY_GROUP))

        def reached(obs: Observation) -> bool:
            coverage = obs.status.get("coverage") or {}
            return (
                obs.status.get("weight") == weight
                and self.converged(obs, expected)
                and coverage.get("onCanary") == cohort
                and coverage.get("onIntended") == targeted
                and (not gate or obs.status.get("summary") == "Paused")
            )

        return reached

    def canary(self) -> tuple[str, list[Any]]:
        doc = yaml.safe_load(DEPLOYMENT_FILE.read_text())
        name, spec = doc["metadata"]["name"], doc["spec"]
        steps = spec["strategy"]["canary"]["steps"]
        group = f"{spec['target']}/{spec.get('region', 'global')}"
        if group != CANARY_GROUP or spec["snapshotRef"]["name"] != self.v2.name:
            raise DemoError(
                f"{_rel(DEPLOYMENT_FILE)} must roll {self.v2.name} out to {CANARY_GROUP}"
            )
        self.report.deployment = name
        self.out.command(f"kubectl apply -n {self.world.namespace} -f {_rel(DEPLOYMENT_FILE)}")
        self.out.say(
            self.cluster.kubectl(
                "apply", "-n", self.world.namespace, "-f", str(DEPLOYMENT_FILE)
            ).strip()
        )
        self.mark()
        obj = self.wait(lambda: self.cluster.get("policydeployments", name), f"pdep/{name}")
        uid = self.report.deployment_uid = str(obj["metadata"]["uid"])
        self.shadow(name, steps)
        eu = len(self.fleet.in_group(CANARY_GROUP))
        after_pause = 1 + next(i for i, step in enumerate(steps) if "pause" in step)
        for weight, then in ((10, "timed pause"), (50, "manual gate")):
            expected = self.expected_at(uid, weight)
            cohort = sum(1 for p in expected.values() if p is self.v2)
            self.out.say(
                f"setWeight {weight}: {cohort} of {eu} {CANARY_GROUP} devices hash below {weight} "
                f"(deployment uid {uid[:8]}...) and move to v2; then a {then}"
            )
            self.watch(
                self.at_weight(weight, expected, gate=weight == 50),
                f"pdep/{name} at {weight}% with the cohort on v2",
                deployment=name,
                steps=steps,
            )
            if weight == 10:
                self.watch(
                    lambda obs: int(obs.status.get("currentStepIndex") or 0) >= after_pause,
                    f"the timed pause of pdep/{name} to end by itself",
                    deployment=name,
                    steps=steps,
                )
        paused = _condition(self.cluster.get("policydeployments", name), "Paused")
        if paused.get("status") != "True":
            raise DemoError(
                f"pdep/{name} at its manual gate without Paused=True: {paused}", self.logs()
            )
        self.out.say(
            f"Paused={paused['status']} ({paused.get('reason')}): the rollout waits for a person"
        )
        self.report.gate_cohort = {d: p.version for d, p in self.expected_at(uid, 50).items()}
        return name, steps

    def shadow(self, name: str, steps: list[Any]) -> None:
        """The shadow step: live requests to the targeted devices while v2 answers beside
        v1 (every device stays on v1: the strip shows it); the diff rate shown as it grows,
        and the step passed."""
        index = next((i for i, step in enumerate(steps) if "shadow" in step), None)
        if index is None:
            raise DemoError(f"{_rel(DEPLOYMENT_FILE)} must start with a shadow step")
        spec = dict(steps[index]["shadow"])
        self.report.shadow = {"spec": spec, "seen": []}
        self.out.say(
            f"shadow: for {spec['durationSeconds']}s and at least {spec['minSamples']} samples, "
            f"{CANARY_GROUP} answers under v1 and evaluates v2 beside it on "
            f"{float(spec['sampleRate']):.0%} of its requests, off the response path"
        )
        self.out.say(
            "diff rate = sampled requests v2 decides otherwise (subtasks, DAG or matched rules) "
            f"/ samples; above maxDiffRate {float(spec['maxDiffRate']):.0%} the rollout stops"
        )
        self.out.say(
            "v2 changes 2 of the 4 kinds of request the demo sends (VIP guests, sensor x6) on "
            "purpose: about half the decisions should differ"
        )
        targeted = [d.device_id for d in self.fleet.in_group(CANARY_GROUP)]
        seen: list[tuple[int, int]] = self.report.shadow["seen"]

        def passed(obs: Observation) -> bool:
            health = obs.status.get("health") or {}
            if int(obs.status.get("currentStepIndex") or 0) == index:
                figures = (
                    int(health.get("shadowSamples") or 0),
                    int(health.get("shadowDiffs") or 0),
                )
                if figures[0] and (not seen or seen[-1] != figures):
                    seen.append(figures)
            if obs.status.get("summary") in ("Failed", "RolledBack", "Aborted"):
                raise DemoError(f"pdep/{name} ended in its shadow step: {obs.status}", self.logs())
            return int(obs.status.get("currentStepIndex") or 0) > index

        traffic = LiveTraffic(self.fleet, targeted, [case.facts for case in CASES]).start()
        try:
            self.watch(
                passed, f"the shadow step of pdep/{name} to pass", deployment=name, steps=steps
            )
        finally:
            sent = traffic.stop()
        if not seen:
            raise DemoError(f"pdep/{name} left its shadow step without showing a sample")
        samples, diffs = seen[-1]
        self.report.shadow.update(samples=samples, diffs=diffs, diffRate=diffs / samples, sent=sent)
        self.out.ok(
            f"shadow step passed: v2 decided otherwise on {diffs} of {samples} sampled requests "
            f"({diffs / samples:.1%} <= {float(spec['maxDiffRate']):.0%}); {sent} requests "
            "answered, every one under v1"
        )

    def open_gate(self, name: str, steps: list[Any]) -> None:
        self.out.say(
            "The demo opens the gate itself, as a person would once the canary looks right:"
        )
        self.kubectl_pkg("promote", "pdep", name, reason="canary answers checked at 50%")
        everyone = {
            d.device_id: (self.v2 if d.group == CANARY_GROUP else self.v1)
            for d in self.fleet.devices
        }
        obs = self.watch(
            lambda o: o.status.get("summary") == "Succeeded" and self.converged(o, everyone),
            f"pdep/{name} to succeed with every {CANARY_GROUP} device on v2",
            deployment=name,
            steps=steps,
        )
        obj = self.cluster.get("policydeployments", name) or {}
        available = _condition(obj, "Available")
        if available.get("status") != "True":
            raise DemoError(f"pdep/{name} succeeded but is not Available: {available}", self.logs())
        self.report.final_status = obs.status
        stable = (obs.status.get("stable") or {}).get("version")
        self.out.ok(
            f"Succeeded, Available=True: {CANARY_GROUP} runs {stable}; "
            f"the other devices keep {self.v1.version}"
        )

    def final_expected(self) -> dict[str, Policy]:
        return {
            d.device_id: (self.v2 if d.group == CANARY_GROUP else self.v1)
            for d in self.fleet.devices
        }

    def audit(self) -> None:
        promotions, audit, chain = asyncio.run(
            read_audit(
                self.world.database_url,
                [self.v1.version, self.v2.version],
                self.report.deployment_uid,
            )
        )
        self.report.promotions, self.report.audit, self.report.chain = promotions, audit, chain
        self.out.say("pkg_promotions:")
        for row in promotions:
            self.out.say(f"  {promotion_line(row)}")
        self.out.say(f"pkg_audit_log ({len(audit)} rows of this demo, oldest first):")
        for row in audit:
            self.out.say(f"  {audit_line(row)}")
        self.check_audit()
        self.out.ok(f"verify_audit_chain(): {chain}")

    def check_audit(self) -> None:
        report = self.report
        got = [(r["action"], r.get("version"), r["actor"]) for r in report.promotions]
        first = ("promote", self.v1.version, report.actor)
        if not got or got[0] != first:
            raise DemoError(f"pkg_promotions should start with {first}; it holds {got}")
        if not any(
            action == "promote" and version == self.v2.version for action, version, _ in got
        ):
            raise DemoError(f"pkg_promotions holds no promotion of {self.v2.version}: {got}")
        steps = [
            float(r["details"].get("percent"))
            for r in report.audit
            if r["action"] == "deployment.step" and r["details"].get("kind") == "setWeight"
        ]
        if steps != [10.0, 50.0, 100.0]:
            raise DemoError(f"the audit log should show setWeight 10, 50, 100; it shows {steps}")
        if report.chain is None or not report.chain.ok:
            raise DemoError(f"the audit chain does not verify: {report.chain}")


async def read_audit(
    dsn: str, versions: Sequence[str], deployment_uid: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], AuditChainReport]:
    """The demo's promotions and audit rows (oldest first), and the whole chain's check."""
    client = await PKGClient.connect(dsn, min_size=1, max_size=2)
    try:
        ids: dict[int, str] = {}
        for version in versions:
            info = await client.get_snapshot_info(version=version)
            if info is not None:
                ids[int(info["id"])] = version
        promotions = [
            {**row, "version": ids[row["snapshot_id"]]}
            for row in reversed(await client.get_promotions(limit=1000))
            if row["snapshot_id"] in ids
        ]
        audit: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await client.get_audit_log(after_id=after, limit=1000)
            if not page:
                break
            after = int(page[-1]["id"])
            for row in page:
                details = row.get("details")
                row["details"] = json.loads(details) if isinstance(details, str) else details or {}
                ours = row.get("snapshot_id") in ids or str(row.get("entity_id")) == deployment_uid
                key = str(row.get("idempotency_key") or "")
                if ours or (deployment_uid and key.startswith(deployment_uid)):
                    audit.append(row)
        chain = await client.verify_audit_chain()
    finally:
        await client.close()
    return promotions, audit, chain


def promotion_line(row: Mapping[str, Any]) -> str:
    metrics = row.get("metrics")
    metrics = json.loads(metrics) if isinstance(metrics, str) else metrics or {}
    where = (
        f"{metrics['target']}/{metrics['region']}"
        if "target" in metrics
        else f"env {row.get('env')}"
    )
    return (
        f"#{row['id']:<3} {row['action']:<9} {row.get('from_version') or '(none)'} -> "
        f"{row['version']}  {where}  by {row['actor']}: {_short(row.get('reason') or '', 60)}"
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Rollout steps the operator takes by itself; the others are people's requests.
_ROUTINE_STEPS = ("setWeight", "pause", "analysis", "finish", "complete")


def audit_line(row: Mapping[str, Any]) -> str:
    details = row.get("details") or {}
    keys = ("kind", "percent", "version", "to_version", "env", "success")
    shown = ", ".join(
        f"{k}={details[k]:g}" if isinstance(details[k], float) else f"{k}={details[k]}"
        for k in keys
        if details.get(k) is not None
    )
    if details.get("kind") not in (None, *_ROUTINE_STEPS) and details.get("detail"):
        shown += f" ({_short(str(details['detail']), 70)})"  # names the person who asked
    entity = f"{row.get('entity_type')}:{row.get('entity_id')}"
    return f"#{row['id']:<4} {row['action']:<20} {row['actor']:<16} {entity:<18} {shown}"


def outcome_line(report: DemoReport) -> str:
    devices = len(report.answers.get("v2") or {})
    stable = (report.final_status.get("stable") or {}).get("version")
    return (
        f"{devices} sidecars; {report.v1} promoted by {report.actor}; {report.v2} canaried to "
        f"{CANARY_GROUP} (shadow -> 10% -> 50% -> gate -> 100%, stable now {stable}); "
        f"{len(report.audit)} audit rows, {report.chain}"
    )


def run_scenario(
    world: DemoWorld,
    out: Narrator,
    phases: Phases,
    *,
    guard: InterruptGuard | None = None,
) -> DemoReport:
    """The demo on a running test bed; raises DemoError at the first step that goes wrong.

    Everything it starts (the operator, the sidecars) is stopped before it returns or raises.
    """
    guard = guard or InterruptGuard()
    with contextlib.ExitStack() as cleanup:
        s = _Scenario(
            world=world,
            out=out,
            phases=phases,
            guard=guard,
            cleanup=cleanup,
        )
        try:
            _play(s)
        except BaseException:
            guard.stopping()  # the clean-up below must not be cut short by a second Ctrl-C
            raise
        with phases.phase("stop", "sidecars and operator stopped"):
            cleanup.close()
    return s.report


def _play(s: _Scenario) -> None:
    phase = s.phases.phase
    n = len(s.fleet.devices)
    with phase("cluster", "CRDs, ClusterKopfPeering pkg-operator, namespace"):
        s.apply_cluster()
    with phase("migrate", "PostgreSQL schema (pkg-migrate)"):
        s.migrate()
    with phase("operator", "pkg-operator started"):
        s.start_operator()
    with phase("fleet", f"{n} sidecar processes stand in for pods"):
        s.start_fleet()
    with phase("v1", f"PolicySnapshot {s.v1.version} applied, tested, promoted"):
        s.snapshot_ready(s.v1)
        s.promote_snapshot(s.v1)
    with phase("answers-v1", f"the same task facts on all {n} sidecars"):
        s.answers("v1", dict.fromkeys((d.device_id for d in s.fleet.devices), s.v1))
    with phase("v2", f"PolicySnapshot {s.v2.version} applied and tested"):
        s.snapshot_ready(s.v2)
    with phase(
        "canary", f"PolicyDeployment: {s.v2.version} to {CANARY_GROUP}, shadow -> 10% -> 50%"
    ):
        name, steps = s.canary()
    with phase("cohorts", "at the gate, canary and stable devices answer differently"):
        s.answers("gate", s.expected_at(s.report.deployment_uid, 50))
    with phase("promote", "the manual gate opened; 100%"):
        s.open_gate(name, steps)
    with phase("answers-v2", f"{CANARY_GROUP} answers under v2, everyone else under v1"):
        s.answers("v2", s.final_expected())
    with phase("audit", "the trail in PostgreSQL, and its hash chain"):
        s.audit()


# --------------------------------------------------------------------------- command


def _print_failure(phases: Phases, exc: BaseException, workdir: Path) -> None:
    err = sys.stderr
    where = phases.current or "start-up"
    err.write(f"\nmake demo FAILED in phase {where!r} after {phases.total():.1f}s:\n{exc}\n")
    for name, tail in getattr(exc, "logs", []):
        err.write(f"\n--- {name} ---\n{tail}\n")
    err.write(f"\nData and logs are kept in {workdir}\n")
    err.flush()


def main(*, keep: bool = False, stream: TextIO | None = None) -> int:
    """``make demo``: a fresh test bed in a new temporary folder, the scenario, the summary.

    Exit status: 0 when every step turned out as expected, 1 when one did not
    (what and where on stderr, with the relevant log's tail), 130 on Ctrl-C.
    """
    out = Narrator(stream or sys.stdout)
    guard = InterruptGuard()
    guard.install()
    phases = Phases(out)
    workdir = Path(tempfile.mkdtemp(prefix="pkg-demo-"))
    out.say(f"data and logs in {workdir} (kept on failure or with --keep); Ctrl-C stops everything")
    stack = Stack(workdir)
    status = 1
    report: DemoReport | None = None
    try:
        with phases.phase("stack", "PostgreSQL, Redis, etcd, kube-apiserver on loopback"):
            stack.start()
        assert stack.kube is not None
        assert stack.postgres is not None
        assert stack.redis is not None
        world = DemoWorld(
            kubectl_bin=stack.kube.kubectl_bin,
            kubeconfig=stack.kube.kubeconfig,
            database_url=stack.postgres.dsn(stack.database),
            redis_url=stack.redis.url(),
            workdir=workdir,
            namespace="pkg-demo",
        )
        report = run_scenario(world, out, phases, guard=guard)
        status = 0
    except KeyboardInterrupt:
        guard.stopping()
        sys.stderr.write(
            f"\ninterrupted during {phases.current or 'start-up'}: stopping everything\n"
        )
        status = 130
    except (DemoError, TestbedError) as exc:
        guard.stopping()
        _print_failure(phases, exc, workdir)
    except Exception as exc:  # noqa: BLE001 - a bug in the demo itself: printed with its traceback
        guard.stopping()
        traceback.print_exc()
        _print_failure(phases, exc, workdir)
    finally:
        guard.stopping()
        began = time.monotonic()
        stack.stop()
        left = processes_using(workdir)
        if status == 0:
            phases.timings.append(("stack-stop", "servers stopped", time.monotonic() - began))
        if status != 1 and not keep and not left:
            shutil.rmtree(workdir, ignore_errors=True)
    if left:
        sys.stderr.write(
            f"make demo: these processes outlived the demo (kill them by pid): {left}\n"
        )
        return status or 1
    if status == 130:
        sys.stderr.write("stopped: no process of the demo is left running\n")
    if report is not None and status == 0:
        out.header(f"summary: the whole path passed in {phases.total():.1f}s")
        out.say(outcome_line(report))
        out.lines(timings_table(phases.timings, phases.total()))
        if keep:
            out.say(f"data and logs kept in {workdir}")
    return status
