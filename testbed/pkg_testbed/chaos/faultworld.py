"""The world the outage and partition scenarios run in: every link through a fault proxy.

A :class:`FaultWorld` starts one operator and a fleet of real sidecars whose every
connection to a server goes through its own :class:`~pkg_testbed.chaos.faultproxy.FaultProxy`
(links ``operator-redis``, ``operator-postgres``, ``operator-api``, ``sidecar-redis``,
``sidecar-postgres``; a device can get links of its own), two snapshots whose answers
differ (``v1`` promoted, ``v2`` Ready), and a canary rollout from one to the other.
:class:`AnswerLoad` sends evaluate requests to every sidecar throughout a scenario and
checks each answer against the version that gave it: an answer is lost when it does
not come (error, timeout, non-200) or is wrong (another decision than its version's).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_testbed.chaos.faultproxy import FaultProxy
from pkg_testbed.chaos.records import ScenarioRecord, record
from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess, SidecarProcess

__all__ = [
    "CANARY_STEPS",
    "LINKS",
    "AnswerLoad",
    "Answers",
    "Fault",
    "FaultWorld",
    "Outcome",
    "half_way",
    "record_outcome",
    "run_mid_rollout",
    "versioned_snapshot_doc",
]

LINKS = ("operator-redis", "operator-postgres", "operator-api", "sidecar-redis", "sidecar-postgres")
REGION = "eu-west"


def versioned_snapshot_doc(name: str, version: str, *, env: str, auto: bool = False) -> str:
    """A native snapshot whose one rule emits ``escalate_<name>`` for a ``vip`` tag."""
    doc = yaml.safe_load(snapshot_doc(name, version, env=env, expect=f"escalate_{name}", auto=auto))
    doc["spec"]["rules"][0]["emissions"][0]["subtask_name"] = f"escalate_{name}"
    return str(yaml.safe_dump(doc))


@dataclass
class Answers:
    total: int = 0
    lost: int = 0
    wrong: int = 0
    by_version: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if len(self.failures) < 10:
            self.failures.append(what)


class AnswerLoad:
    """A thread asking every sidecar ``POST /v1/evaluate {"tags": ["vip"]}`` in turn."""

    def __init__(self, urls: list[str], expected: dict[str, list[str]], *, pause: float = 0.02):
        self.urls, self.expected, self.pause = urls, expected, pause
        self.answers = Answers()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="answer-load")

    def __enter__(self) -> AnswerLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Answers:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.answers

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                self._ask(url)
            time.sleep(self.pause)

    def _ask(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        answers = self.answers
        answers.total += 1
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request(
                "POST", "/v1/evaluate", b'{"tags": ["vip"]}', {"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            answers.lost += 1
            answers.note(f"{url}: no answer ({exc!r})")
            return
        finally:
            conn.close()
        if response.status != 200:
            answers.lost += 1
            answers.note(f"{url}: HTTP {response.status} {body[:200]!r}")
            return
        result = json.loads(body)
        version = str(result.get("snapshot"))
        names = [s.get("name") for s in result.get("subtasks") or []]
        if self.expected.get(version) != names:
            answers.wrong += 1
            answers.note(
                f"{url}: {version} answered {names}, expected {self.expected.get(version)}"
            )
        answers.by_version[version] += 1


class FaultWorld:
    """One operator and a fleet, every link proxied; v1 promoted, v2 Ready, in ``env``."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        start_operator: Callable[..., OperatorProcess],
        workdir: Path,
        *,
        env: str = "prod",
        redis_url: str | None = None,
    ) -> None:
        self.cluster, self.namespace, self.workdir, self.env = cluster, namespace, workdir, env
        self.redis_url = redis_url or cluster.redis_url
        self.target = f"router-{namespace}"
        self._start_operator = start_operator
        self.proxies: dict[str, FaultProxy] = {}
        self.sidecars: dict[str, SidecarProcess] = {}
        self.operator: OperatorProcess | None = None
        self.v1 = f"rules@1.0.0-{namespace}"
        self.v2 = f"rules@2.0.0-{namespace}"
        self.expected = {self.v1: ["escalate_v1"], self.v2: ["escalate_v2"]}
        workdir.mkdir(parents=True, exist_ok=True)

    # -- links -------------------------------------------------------------------------

    def proxy(self, link: str, upstream: str) -> FaultProxy:
        if link not in self.proxies:
            self.proxies[link] = FaultProxy.for_url(upstream).start()
        return self.proxies[link]

    def _kubeconfig_via(self, proxy: FaultProxy) -> Path:
        config = json.loads(self.cluster.kube.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        path = self.workdir / "kubeconfig-proxied"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def close(self) -> None:
        for sidecar in self.sidecars.values():
            sidecar.stop()
        for proxy in self.proxies.values():
            proxy.close()

    # -- processes ---------------------------------------------------------------------

    def start_operator(self, **env: str) -> OperatorProcess:
        api = self.proxy("operator-api", self.cluster.kube.server)
        self.operator = self._start_operator(
            PKG_DATABASE_URL=self.proxy("operator-postgres", self.cluster.database_url).url(
                self.cluster.database_url
            ),
            PKG_REDIS_URL=self.proxy("operator-redis", self.redis_url).url(self.redis_url),
            KUBECONFIG=str(self._kubeconfig_via(api)),
            **env,
        )
        return self.operator

    def start_fleet(
        self, count: int, *, own_links: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> list[str]:
        """``count`` sidecars through the shared sidecar links; the first ``len(own_links)``
        devices get a Redis link of their own named ``own_links[i]`` instead. ``env``
        overrides the sidecars' settings (e.g. the product's default resync interval)."""
        ids = [f"{self.target}:{REGION}:{i}" for i in range(count)]
        for i, device in enumerate(ids):
            redis_link = own_links[i] if i < len(own_links) else "sidecar-redis"
            proc = SidecarProcess(
                self.workdir,
                {
                    "PKG_DATABASE_URL": self.proxy(
                        "sidecar-postgres", self.cluster.database_url
                    ).url(self.cluster.database_url),
                    "PKG_REDIS_URL": self.proxy(redis_link, self.redis_url).url(self.redis_url),
                    "PKG_ENV": self.env,
                    "PKG_TARGET": self.target,
                    "PKG_REGION": REGION,
                    "PKG_DEVICE_TYPE": "router",
                    "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                    "PKG_RESYNC_INTERVAL_SECONDS": "2",
                    "PKG_REDIS_BACKOFF_MAX_SECONDS": "5",
                    "PKG_LOG_LEVEL": "WARNING",
                    **(env or {}),
                },
                device_id=device,
            )
            proc.proc.start()
            self.sidecars[device] = proc
        for device in ids:
            self.sidecars[device].start_wait()
        return ids

    # -- resources ---------------------------------------------------------------------

    def snapshots(self) -> None:
        """v1 promoted (auto) and v2 Ready; then the fleet on v1."""
        for name, version, auto in (("v1", self.v1, True), ("v2", self.v2, False)):
            self.cluster.kubectl(
                "apply",
                "--server-side",
                "-n",
                self.namespace,
                "-f",
                "-",
                stdin=versioned_snapshot_doc(name, version, env=self.env, auto=auto),
            )
        for name, kind in (("v1", "Active"), ("v2", "Ready")):
            wait_for(partial(self._is, name, kind), timeout=90, what=f"psnap/{name} {kind}")

    def _is(self, name: str, kind: str) -> bool:
        return condition(self.psnap(name), kind).get("status") == "True"

    def psnap(self, name: str) -> dict[str, Any]:
        return self.cluster.get("psnap", name, self.namespace)

    def pdep(self, name: str = "rollout") -> dict[str, Any]:
        return self.cluster.get("pdep", name, self.namespace)

    def rollout(
        self, steps: list[dict[str, Any]], *, name: str = "rollout", min_devices: int | None = None
    ) -> str:
        """Apply a canary of v2 over the fleet (every device needed unless ``min_devices``
        says fewer); returns its uid."""
        doc = {
            "apiVersion": "pkg.seedcore.io/v1alpha1",
            "kind": "PolicyDeployment",
            "metadata": {"name": name},
            "spec": {
                "snapshotRef": {"name": "v2"},
                "env": self.env,
                "target": self.target,
                "region": REGION,
                "strategy": {"canary": {"steps": steps}},
                "progressDeadlineSeconds": 180,
                "coverage": {
                    "minPercent": 100,
                    "heartbeatTTLSeconds": 5,
                    "minDevices": len(self.sidecars) if min_devices is None else min_devices,
                },
            },
        }
        self.cluster.apply(self.namespace, yaml.safe_dump(doc))
        return str(self.pdep(name)["metadata"]["uid"])

    # -- what the scenario checks ------------------------------------------------------

    def versions(self) -> dict[str, str | None]:
        result: dict[str, str | None] = {}
        for device, proc in self.sidecars.items():
            try:
                result[device] = str(proc.metadata().get("version"))
            except OSError:
                result[device] = None
        return result

    def on(self, version: str) -> bool:
        return all(v == version for v in self.versions().values())

    def at_weight(self, weight: int, name: str = "rollout") -> bool:
        status = self.pdep(name).get("status") or {}
        return bool(status.get("weight") == weight)

    def outcome(self, name: str = "rollout") -> str:
        return str((self.pdep(name).get("status") or {}).get("summary"))

    def end_state(self, name: str = "rollout") -> list[str]:
        """What is wrong with the end state of a rollout of v2 to 100 %: [] when all is well."""
        wrong: list[str] = []
        status = self.pdep(name).get("status") or {}
        if status.get("summary") != "Succeeded":
            wrong.append(f"rollout summary {status.get('summary')!r}, not Succeeded")
        if (status.get("stable") or {}).get("version") != self.v2:
            wrong.append(f"status.stable {status.get('stable')!r}, not {self.v2}")
        if condition(self.pdep(name), "Available").get("status") != "True":
            wrong.append("Available is not True")
        off = {d: v for d, v in self.versions().items() if v != self.v2}
        if off:
            wrong.append(f"sidecars not on {self.v2} (the whole cohort at 100 %): {off}")
        return wrong

    def converge(self, *, timeout: float = 120, name: str = "rollout") -> tuple[float, list[str]]:
        """Seconds until the end state is right (or the timeout), and what is still wrong."""
        start = time.monotonic()
        deadline = start + timeout
        wrong = self.end_state(name)
        while wrong and time.monotonic() < deadline:
            time.sleep(0.5)
            wrong = self.end_state(name)
        return time.monotonic() - start, wrong


#: The reference canary of the scenarios: half the fleet, a short timed pause, then all.
CANARY_STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"pause": {"durationSeconds": 3}},
    {"setWeight": 100},
]


@dataclass
class Fault:
    """A fault a scenario injects: ``inject()``, hold for ``hold`` seconds, ``heal()``."""

    inject: Callable[[], None]
    heal: Callable[[], None]
    hold: float
    #: Wait for this before injecting (default: the canary's first step converged).
    when: Callable[[FaultWorld], bool] | None = None


def half_way(world: FaultWorld) -> bool:
    """The canary at 50 % with every device of its cohort on v2 (the others on v1)."""
    if not world.at_weight(50):
        return False
    uid = str(world.pdep()["metadata"]["uid"])
    want = {d: world.v2 if in_canary(d, uid, 50) else world.v1 for d in world.sidecars}
    return world.versions() == want


@dataclass
class Outcome:
    """What :func:`run_mid_rollout` measured."""

    #: Seconds from healing the fault to the right end state (or to giving up).
    converge_s: float
    #: What is still wrong with the end state ([] when right).
    wrong: list[str]
    #: The answers counted from the rollout's start to its end.
    answers: Answers
    #: Seconds from applying the rollout to the right end state.
    rollout_s: float


def run_mid_rollout(
    world: FaultWorld, fault: Fault, *, steps: list[dict[str, Any]] | None = None
) -> Outcome:
    """Roll v2 out over the running fleet (already on v1) with ``fault`` in the middle."""
    urls = [proc.url for proc in world.sidecars.values()]
    with AnswerLoad(urls, world.expected) as load:
        started = time.monotonic()
        world.rollout(steps or CANARY_STEPS)
        when = fault.when or half_way
        wait_for(lambda: when(world), timeout=120, what="the moment to inject the fault")
        fault.inject()
        time.sleep(fault.hold)
        fault.heal()
        converge_s, wrong = world.converge(timeout=180)
    return Outcome(converge_s, wrong, load.answers, time.monotonic() - started)


def record_outcome(
    scenario: str,
    *,
    group: str,
    outcome: Outcome,
    faults: int = 1,
    notes: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    """Record a scenario run by :func:`run_mid_rollout`, then assert it passed."""
    answers, wrong = outcome.answers, outcome.wrong
    lost = answers.lost + answers.wrong
    record(
        ScenarioRecord(
            scenario=scenario,
            group=group,
            faults=faults,
            passes=faults if not wrong and lost == 0 else 0,
            converge_s=round(outcome.converge_s, 2),
            answers_total=answers.total,
            answers_lost=lost,
            failures=wrong + answers.failures,
            notes=notes,
            extra={
                "rollout_s": round(outcome.rollout_s, 2),
                "answers_by_version": dict(answers.by_version),
                **(extra or {}),
            },
        )
    )
    assert not wrong, f"{scenario}: the end state is wrong: {wrong}"
    assert lost == 0, f"{scenario}: {lost} of {answers.total} answers lost: {answers.failures}"
