"""The rollout state machine's inputs and outputs: observations in, a decision out.

These frozen dataclasses are the whole interface between the pure machine
(``machine.py``) and the timer that applies it (``reconcile.py``). The timer gathers
:class:`Observations`, calls ``reconcile(spec, status, obs, now)``, performs the
returned actions in order, then writes ``Decision.status`` as a JSON merge patch
(a ``None`` value deletes the field; the status is complete, not a delta).

Every side effect carries a ``key``, an idempotency key built by
:func:`idempotency_key` from the deployment uid, the attempt, the step index,
the kind of event, a manual request's token, and what the key is for
(``desired``, ``step`` or ``promotion``). The same inputs always give the same
keys, and no two different events of one deployment share a key.
See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from evaluator_sidecar.signals.messages import PrepareSpec, ShadowSpec, SnapshotRef
from pkg_operator.actions import ActionRequest

__all__ = [
    "Action",
    "ActionRequest",
    "CoverageObs",
    "Decision",
    "EmitEvent",
    "HealthObs",
    "Observations",
    "PrepareSpec",
    "RecordPromotion",
    "RecordStep",
    "SetDesiredState",
    "ShadowSpec",
    "SnapshotInfo",
    "SnapshotRef",
    "idempotency_key",
]


@dataclass(frozen=True)
class SnapshotInfo:
    """A PolicySnapshot as the operator sees it now.

    ``ready`` means stored and validated (its Ready condition is True); when it
    is not, ``reason`` and ``message`` are the snapshot's own explanation.
    """

    name: str
    version: str
    checksum: str
    snapshot_id: int | None
    ready: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class CoverageObs:
    """Devices of the deployment's target and region, at the currently published weight.

    ``targeted`` counts live devices (fresh heartbeat); ``on_intended`` those that
    run exactly what their cohort should; ``expected_canary`` those in the
    canary cohort; ``stale`` devices whose heartbeat expired.
    """

    targeted: int = 0
    on_canary: int = 0
    on_stable: int = 0
    stale: int = 0
    on_intended: int = 0
    expected_canary: int = 0
    # The canary percentage these figures were computed for. When given and not the
    # published weight, the figures are stale (a step just published) and no step
    # converges on them.
    weight: float | None = None
    #: Live devices that report themselves stale (their desired level unconfirmed past
    #: their maximum staleness); counted in ``targeted``, never in ``on_intended``.
    policy_stale: int = 0
    #: Two-phase activation: live devices that will switch at the flip, and how many of
    #: them report the snapshot prepared.
    prepare_expected: int = 0
    prepared: int = 0


@dataclass(frozen=True)
class HealthObs:
    """Canary-cohort health aggregated since ``status.stepStartedAt``.

    ``exact_devices`` devices reported cumulative counters (their figures are totals
    since the step began); ``windowed_devices`` reported only their latest window.
    """

    evaluations: int = 0
    errors: int = 0
    p99_ms: float | None = None
    activation_failures: int = 0
    window_seconds: float = 0.0
    shadow_samples: int = 0
    shadow_diffs: int = 0
    exact_devices: int = 0
    windowed_devices: int = 0
    #: (device id, its last activation error) of live devices of the target and region
    #: that report one: a refused snapshot and why (a checksum mismatch, failed fixtures).
    activation_errors: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Observations:
    """Everything the machine needs to know about the world for one tick.

    ``uid`` is the deployment's metadata.uid: it salts every idempotency key so
    that a deleted and re-created deployment of the same name never collides
    with the old one's rows. ``snapshot`` is spec.snapshotRef resolved (None: no
    such PolicySnapshot). ``baseline`` is what the target runs while this
    deployment has published nothing: the environment's active snapshot.
    ``action`` is the parsed annotation, if any (new or already handled: the
    machine tells by its token). ``superseded_by`` names a newer
    PolicyDeployment for the same env, target and region.
    """

    uid: str
    generation: int
    snapshot: SnapshotInfo | None
    baseline: SnapshotInfo | None = None
    coverage: CoverageObs = CoverageObs()
    health: HealthObs = HealthObs()
    action: ActionRequest | None = None
    superseded_by: str | None = None
    #: ``namespace/name`` of the deployment (for people: shadow diff examples name it).
    name: str = ""


@dataclass(frozen=True)
class SetDesiredState:
    """Publish the desired state of this target and region (the operator allocates the epoch).

    ``canary`` is None exactly when ``canary_percent`` is 0.
    """

    stable: SnapshotRef | None
    canary: SnapshotRef | None
    canary_percent: float
    reason: str
    key: str
    #: The shadow step's candidate, while one runs.
    shadow: ShadowSpec | None = None
    #: Phase one of a two-phase activation, while the devices prepare.
    prepare: PrepareSpec | None = None


@dataclass(frozen=True)
class RecordStep:
    """A pkg_deployments row and an audit row: the rollout moved (or a person moved it).

    ``kind`` is a step kind (setWeight, pause, analysis, finish) when a step
    starts, or an event: promote, promote-full, resume, retry, abort, rollback,
    complete, withdraw.
    """

    attempt: int
    step_index: int
    kind: str
    percent: float
    version: str
    detail: str
    key: str
    #: Who moved the rollout: the person whose request it carried out, else the operator.
    actor: str = "pkg-operator"


@dataclass(frozen=True)
class RecordPromotion:
    """A pkg_promotions row and an audit row.

    ``to_version`` is None only for a rollback when there was no stable
    snapshot to return to (the target then falls back to the environment's).
    """

    action: Literal["promote", "rollback"]
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    metrics: dict[str, Any]
    key: str


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes event on the PolicyDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = SetDesiredState | RecordStep | RecordPromotion | EmitEvent


@dataclass(frozen=True)
class Decision:
    """The complete new status, the side effects in order, and when to look again.

    ``requeue_after`` is the number of seconds until something is due (a pause
    ends, the deadline passes), or None when nothing is scheduled.
    """

    status: dict[str, Any]
    actions: tuple[Action, ...]
    requeue_after: float | None


def idempotency_key(
    uid: str, attempt: int, step_index: int, kind: str, *, purpose: str, token: str | None = None
) -> str:
    """``<uid>/a<attempt>/s<step>/<kind>[/<token>]#<purpose>``.

    ``purpose`` (desired, step or promotion) keeps the keys of one event apart
    when it produces several rows. Tokens cannot hold "/" or "#" (see actions.py).
    """
    base = f"{uid}/a{attempt}/s{step_index}/{kind}"
    if token is not None:
        base = f"{base}/{token}"
    return f"{base}#{purpose}"
