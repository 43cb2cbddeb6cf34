"""A PolicyDeployment spec, read into typed steps and limits.

The API server has already validated the spec against the CRD and applied its
defaults; this module applies the same defaults again (so that a spec given by
a test or an older object reads the same) and raises :class:`SpecError`, with
what to fix, for anything the CRD would have refused.

Health limits compose in one direction: ``strategy.canary.analysis`` holds
rollout-wide limits, checked at every step while a canary is published, and
the defaults of every analysis step; an analysis step's own fields override
them for that gate.
See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

__all__ = [
    "DEFAULT_ANALYSIS_SECONDS",
    "DEFAULT_HEARTBEAT_TTL_SECONDS",
    "Coverage",
    "Limits",
    "RolloutSpec",
    "Shadow",
    "SpecError",
    "Step",
    "parse_spec",
]

DEFAULT_ANALYSIS_SECONDS = 60
DEFAULT_DEADLINE_SECONDS = 600

StepKind = Literal["setWeight", "pause", "analysis", "shadow"]

DEFAULT_SHADOW_SAMPLE_RATE = 0.1
DEFAULT_SHADOW_MIN_SAMPLES = 100


class SpecError(ValueError):
    """The spec cannot be rolled out; the message names the field and what to write."""


@dataclass(frozen=True)
class Limits:
    """Health limits and gate parameters; None means "not set here"."""

    max_error_rate: float | None = None
    max_p99_latency_ms: float | None = None
    max_activation_failures: int | None = None
    min_evaluations: int | None = None
    min_coverage_percent: float | None = None
    duration_seconds: int | None = None
    #: A breach rolls back only after this many bad checks in a row (None: 1, at once).
    consecutive_failures: int | None = None

    def over(self, defaults: Limits) -> Limits:
        """These limits, with unset fields taken from ``defaults``."""
        merged = {
            f.name: getattr(self, f.name)
            if getattr(self, f.name) is not None
            else getattr(defaults, f.name)
            for f in fields(self)
        }
        return replace(self, **merged)


@dataclass(frozen=True)
class Shadow:
    """A shadow step: the candidate beside the active snapshot on sampled live requests."""

    duration_seconds: int = DEFAULT_ANALYSIS_SECONDS
    sample_rate: float = DEFAULT_SHADOW_SAMPLE_RATE
    max_diff_rate: float = 0.0
    min_samples: int = DEFAULT_SHADOW_MIN_SAMPLES


@dataclass(frozen=True)
class Step:
    kind: StepKind
    weight: float = 0.0
    pause_seconds: int | None = None  # None: indefinite (only for pause)
    limits: Limits = Limits()
    shadow: Shadow | None = None

    def describe(self) -> str:
        if self.kind == "setWeight":
            return f"setWeight {_pct(self.weight)}%"
        if self.kind == "pause":
            return "pause" if self.pause_seconds is None else f"pause {self.pause_seconds}s"
        if self.kind == "shadow" and self.shadow is not None:
            return f"shadow {self.shadow.duration_seconds}s at {self.shadow.sample_rate:g}"
        return f"analysis {self.limits.duration_seconds or 0}s"


#: spec.coverage.heartbeatTTLSeconds when unset: how recent a device's heartbeat must be for
#: it to count as live. The view pkg_deployment_coverage (migration 0006) uses the same.
DEFAULT_HEARTBEAT_TTL_SECONDS = 30


@dataclass(frozen=True)
class Coverage:
    min_percent: float = 100.0
    heartbeat_ttl_seconds: int = DEFAULT_HEARTBEAT_TTL_SECONDS
    min_devices: int = 1


@dataclass(frozen=True)
class RolloutSpec:
    snapshot_name: str
    target: str
    region: str
    env: str
    steps: tuple[Step, ...]
    limits: Limits
    progress_deadline_seconds: int
    coverage: Coverage
    #: ``activation: twoPhase``: every setWeight step first has the devices it switches
    #: prepare the snapshot, then flips them together.
    two_phase: bool = False


def _pct(value: float) -> str:
    return f"{value:g}"


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object")
    return value


def _number(
    data: Mapping[str, Any], key: str, where: str, low: float, high: float | None
) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{where}.{key} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise SpecError(f"{where}.{key} must be {bound}, got {value!r}")
    return float(value)


def _integer(
    data: Mapping[str, Any], key: str, where: str, low: int, high: int | None = None
) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise SpecError(f"{where}.{key} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(f"{where}.{key} must be {bound}, got {value!r}")
    return value


def _limits(data: Mapping[str, Any], where: str) -> Limits:
    min_evaluations = _integer(data, "minEvaluations", where, 0)
    duration = _integer(data, "durationSeconds", where, 0)
    return Limits(
        max_error_rate=_number(data, "maxErrorRate", where, 0, 1),
        max_p99_latency_ms=_number(data, "maxP99LatencyMs", where, 0, None),
        max_activation_failures=_integer(data, "maxActivationFailures", where, 0),
        min_evaluations=min_evaluations,
        min_coverage_percent=_number(data, "minCoveragePercent", where, 0, 100),
        duration_seconds=duration,
        consecutive_failures=_integer(data, "consecutiveFailures", where, 1, 1000),
    )


def _shadow(data: Mapping[str, Any], where: str) -> Shadow:
    at = f"{where}.shadow"
    rate = _number(data, "sampleRate", at, 0, 1)
    if rate == 0:
        raise SpecError(f"{at}.sampleRate must be above 0 (a share of requests, up to 1)")
    duration = _integer(data, "durationSeconds", at, 0)
    max_diff = _number(data, "maxDiffRate", at, 0, 1)
    min_samples = _integer(data, "minSamples", at, 0)
    return Shadow(
        duration_seconds=DEFAULT_ANALYSIS_SECONDS if duration is None else duration,
        sample_rate=DEFAULT_SHADOW_SAMPLE_RATE if rate is None else rate,
        max_diff_rate=0.0 if max_diff is None else max_diff,
        min_samples=DEFAULT_SHADOW_MIN_SAMPLES if min_samples is None else min_samples,
    )


_GATE_DEFAULTS = Limits(min_evaluations=0, duration_seconds=DEFAULT_ANALYSIS_SECONDS)


def _step(raw: object, index: int, rollout_limits: Limits) -> Step:
    where = f"spec.strategy.canary.steps[{index}]"
    item = _mapping(raw, where)
    present = [k for k in ("setWeight", "pause", "analysis", "shadow") if item.get(k) is not None]
    if len(present) != 1:
        raise SpecError(
            f"{where} needs exactly one of setWeight, pause, analysis or shadow, found "
            f"{present or 'none'}; split a combined step into consecutive steps"
        )
    kind = present[0]
    if kind == "setWeight":
        weight = _number(item, "setWeight", where, 0, 100)
        return Step("setWeight", weight=weight or 0.0)
    if kind == "pause":
        pause = _mapping(item["pause"], f"{where}.pause")
        return Step("pause", pause_seconds=_integer(pause, "durationSeconds", f"{where}.pause", 0))
    if kind == "shadow":
        return Step("shadow", shadow=_shadow(_mapping(item["shadow"], f"{where}.shadow"), where))
    gate = _limits(_mapping(item["analysis"], f"{where}.analysis"), f"{where}.analysis")
    return Step("analysis", limits=gate.over(rollout_limits).over(_GATE_DEFAULTS))


def _required_text(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where} is required (a non-empty string)")
    return value


def parse_spec(spec: Mapping[str, Any]) -> RolloutSpec:
    """Read a PolicyDeployment spec; raise :class:`SpecError` saying what to fix."""
    ref = _mapping(spec.get("snapshotRef"), "spec.snapshotRef")
    snapshot_name = _required_text(ref, "name", "spec.snapshotRef.name")
    target = _required_text(spec, "target", "spec.target")
    env = _required_text(spec, "env", "spec.env")
    region = spec.get("region") or "global"
    if not isinstance(region, str):
        raise SpecError("spec.region must be a string such as global or us-west")
    canary = _mapping(_mapping(spec.get("strategy"), "spec.strategy").get("canary"), "canary")
    limits = _limits(
        _mapping(canary.get("analysis"), "spec.strategy.canary.analysis"),
        "spec.strategy.canary.analysis",
    )
    activation = canary.get("activation") or "immediate"
    if activation not in ("immediate", "twoPhase"):
        raise SpecError(
            f"spec.strategy.canary.activation must be immediate or twoPhase, got {activation!r}"
        )
    raw_steps = canary.get("steps") or []
    if not isinstance(raw_steps, list):
        raise SpecError("spec.strategy.canary.steps must be a list of steps")
    steps = tuple(_step(raw, i, limits) for i, raw in enumerate(raw_steps))
    deadline = _integer(spec, "progressDeadlineSeconds", "spec", 1)
    cov = _mapping(spec.get("coverage"), "spec.coverage")
    min_percent = _number(cov, "minPercent", "spec.coverage", 0, 100)
    ttl = _integer(cov, "heartbeatTTLSeconds", "spec.coverage", 1)
    min_devices = _integer(cov, "minDevices", "spec.coverage", 0)
    coverage = Coverage(
        min_percent=100.0 if min_percent is None else min_percent,
        heartbeat_ttl_seconds=DEFAULT_HEARTBEAT_TTL_SECONDS if ttl is None else ttl,
        min_devices=1 if min_devices is None else min_devices,
    )
    return RolloutSpec(
        snapshot_name=snapshot_name,
        target=target,
        region=region,
        env=env,
        steps=steps,
        limits=limits,
        progress_deadline_seconds=deadline or DEFAULT_DEADLINE_SECONDS,
        coverage=coverage,
        two_phase=activation == "twoPhase",
    )
