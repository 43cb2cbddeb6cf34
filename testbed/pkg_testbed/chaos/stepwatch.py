"""Follow a rollout step by step and time how long the fleet takes to match each step.

A :class:`StepWatch` polls the desired-state levels in Redis (the rollout's and the
environment's), the sidecars themselves and the PolicyDeployment's status. Each time
the levels name a new state (stable, canary, weight), it notes the moment, and then the
moment every sidecar runs what its cohort says for that state (the deterministic hash
of its id and the deployment's uid; the version read from the sidecar's own
``/v1/metadata``, never from the operator's view). The difference is the step's time
to converge. Scenarios use it to show that a fleet keeps up with a rollout through a
fault (lost pub/sub messages, a partitioned device) and to measure by how much.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from evaluator_sidecar.signals import keys
from evaluator_sidecar.signals.cohorts import in_canary
from evaluator_sidecar.signals.messages import DesiredState
from pkg_testbed.chaos.faultworld import REGION, FaultWorld
from pkg_testbed.procs import TestbedError

__all__ = ["StepTime", "StepWatch", "ask", "summary_is", "wanted_versions"]

#: How often the sampler reads the levels and the fleet.
_SAMPLE_S = 0.05


def wanted_versions(world: FaultWorld, uid: str, status: dict[str, Any]) -> dict[str, str | None]:
    """What each sidecar must run for ``status``: the canary in its cohort, else the stable."""
    stable = (status.get("stable") or {}).get("version")
    canary = (status.get("canary") or {}).get("version")
    weight = float(status.get("weight") or 0)
    return {d: canary if canary and in_canary(d, uid, weight) else stable for d in world.sidecars}


@dataclass
class StepTime:
    """One published state and how long the fleet took to match it."""

    #: e.g. ``weight 25 canary=rules@2... stable=rules@1...``
    state: str
    #: Seconds from the watch's start to the status naming this state.
    published_s: float
    #: Seconds from then to every sidecar on its cohort's version (None: never seen).
    converge_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "published_s": round(self.published_s, 2),
            "converge_s": None if self.converge_s is None else round(self.converge_s, 2),
        }


class StepWatch:
    """Polls ``world``'s deployment ``name`` and its fleet; see the module docstring."""

    def __init__(self, world: FaultWorld, *, name: str = "rollout", poll: float = 0.2) -> None:
        self.world, self.name, self.poll = world, name, poll
        self.started = time.monotonic()
        self.steps: list[StepTime] = []
        self._label: str | None = None
        #: kubectl calls that failed while polling (retried at the next poll).
        self.hiccups: list[str] = []
        self._redis = redis.Redis.from_url(world.redis_url)
        place = (world.env, world.target, REGION)
        self._rollout_key, self._env_key = keys.rollout_key(*place), keys.env_key(world.env)
        # A fast sampler of the levels and the fleet (no kubectl): a step the fleet matches
        # only briefly, before the next is published, is still timed.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_forever, daemon=True)
        self._sampler.start()

    def close(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=10)
        self._redis.close()

    def _sample_forever(self) -> None:
        while not self._stop.wait(_SAMPLE_S):
            try:
                self._note()
            except (OSError, redis.RedisError, ValueError) as exc:  # sampled again next time
                self.hiccups.append(f"sampling: {exc!r}"[:200])

    def _note(self) -> bool:
        """Read the levels, then the fleet; note a new state or its convergence; a match."""
        label, wanted = self._published()
        versions = self.world.versions()
        with self._lock:
            now = time.monotonic()
            if label != self._label:
                self._label = label
                self.steps.append(StepTime(label, now - self.started))
            step = self.steps[-1]
            matched = versions == wanted
            if matched and step.converge_s is None:
                step.converge_s = now - self.started - step.published_s
            return matched

    def _published(self) -> tuple[str, dict[str, str | None]]:
        """The levels in Redis now: a label, and what each sidecar must run for them."""
        raw_rollout, raw_env = self._redis.mget([self._rollout_key, self._env_key])
        rollout = DesiredState.from_json(raw_rollout) if raw_rollout else None
        env = DesiredState.from_json(raw_env) if raw_env else None
        stable = env.stable.version if env is not None and env.stable is not None else None
        canary, percent, salt = None, 0.0, ""
        if rollout is not None:
            # Devices outside the canary follow the rollout's stable, else the environment's.
            stable = rollout.stable.version if rollout.stable is not None else stable
            canary = rollout.canary.version if rollout.canary is not None else None
            percent, salt = rollout.canary_percent, rollout.deployment or ""
        wanted = {
            d: canary if canary and in_canary(d, salt, percent) else stable
            for d in self.world.sidecars
        }
        return f"{percent:g} % canary={canary} stable={stable}", wanted

    def _observe(self) -> tuple[dict[str, Any], bool]:
        """Read the status, then the levels and the fleet; the object and whether they match.

        The status first: the operator publishes a level before its status tells of it,
        so levels read afterwards are never older than what the status says.
        """
        obj = self.world.pdep(self.name)
        return obj, self._note()

    def follow(
        self, until: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> dict[str, Any]:
        """Poll until ``until(pdep)`` holds and the fleet matches the status; the object."""
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while True:
            try:
                obj, matched = self._observe()
            except TestbedError as exc:  # one kubectl call failing (a busy API server)
                self.hiccups.append(str(exc)[:200])
                matched = False
            if matched and until(obj):
                return obj
            if time.monotonic() > deadline:
                summary = (obj.get("status") or {}).get("summary")
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what} "
                    f"(summary {summary!r}, fleet {self.world.versions()}, steps {self.times()}, "
                    f"kubectl failures {self.hiccups[-3:]})"
                )
            time.sleep(self.poll)

    def times(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.as_dict() for s in self.steps]

    def worst(self) -> float | None:
        """The longest time a step took to converge (None: none was seen converged; a step
        the next replaced before the fleet was seen on it shows ``converge_s`` None)."""
        times = [s.converge_s for s in self.steps if s.converge_s is not None]
        return max(times) if times else None


def summary_is(*summaries: str) -> Callable[[dict[str, Any]], bool]:
    """A ``follow`` condition: the deployment's summary is one of ``summaries``."""
    return lambda obj: (obj.get("status") or {}).get("summary") in summaries


def ask(world: FaultWorld, action: str, *, reason: str, name: str = "rollout") -> None:
    """Ask the operator for ``action`` on the deployment (the action annotation, fresh token)."""
    request = {"action": action, "token": uuid.uuid4().hex[:12], "actor": "chaos", "reason": reason}
    world.cluster.kubectl(
        "annotate",
        "pdep",
        name,
        "-n",
        world.namespace,
        "--overwrite",
        f"pkg.seedcore.io/action={json.dumps(request)}",
    )
