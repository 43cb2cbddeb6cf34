"""One AdmissionReview answered: inject, leave alone, or refuse with a message. Pure.

The webhook configuration has two entries (see the chart's webhook.yaml):

- ``namespace`` mode: the API server sends only pods of namespaces labelled
  ``pkg.seedcore.io/inject=enabled``; every such pod is injected unless annotated
  ``pkg.seedcore.io/inject: disabled``;
- ``annotated`` mode: pods of the other namespaces; only those annotated
  ``pkg.seedcore.io/inject: enabled`` are injected.

A pod that already has a ``pkg-sidecar`` container is allowed unchanged (re-admission,
a copied spec, a sidecar written by hand). A pod whose options are wrong is refused
with every problem named, so that its owner can fix them in one go.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pkg_operator.inject.patch import (
    INJECT_KEY,
    InjectionConfig,
    already_injected,
    build_patch,
    read_options,
)

__all__ = ["MODES", "Mode", "Outcome", "answer", "decide", "outcome_for", "respond"]

Mode = Literal["namespace", "annotated"]
MODES: Final[tuple[Mode, ...]] = ("namespace", "annotated")
ENABLED: Final = ("enabled", "true")
DISABLED: Final = ("disabled", "false")


@dataclass(frozen=True)
class Outcome:
    """What the webhook does with one pod: ``result`` is injected, skipped or denied."""

    result: Literal["injected", "skipped", "denied"]
    message: str
    patch: list[dict[str, Any]] | None = None


def decide(pod: Mapping[str, Any], mode: Mode, config: InjectionConfig) -> Outcome:
    """Inject, skip (saying why) or deny (saying what to change) one pod at CREATE."""
    meta = pod.get("metadata") or {}
    choice = str((meta.get("annotations") or {}).get(INJECT_KEY, "")).strip().lower()
    if choice and choice not in ENABLED + DISABLED:
        return Outcome(
            "denied",
            f"annotation {INJECT_KEY}={choice!r} is not understood: use 'enabled' or 'disabled'",
        )
    if choice in DISABLED:
        return Outcome("skipped", f"the pod opts out ({INJECT_KEY}: {choice})")
    if mode == "annotated" and choice not in ENABLED:
        return Outcome("skipped", "neither the namespace nor the pod opts in")
    if already_injected(pod):
        return Outcome("skipped", "the pod already has a pkg-sidecar container; left unchanged")
    options, problems = read_options(pod, config)
    if options is None:
        return Outcome(
            "denied",
            "pkg-operator cannot inject the pkg-sidecar into this pod: "
            + "; ".join(problems)
            + f". Fix these, or annotate the pod {INJECT_KEY}: disabled to create it without one.",
        )
    what = f"{options.env} {options.target}/{options.region}, Secret {options.secret}"
    return Outcome("injected", f"pkg-sidecar injected ({what})", build_patch(pod, options, config))


def respond(review: Mapping[str, Any], mode: Mode, config: InjectionConfig) -> dict[str, Any]:
    """The AdmissionReview (admission.k8s.io/v1) answering ``review``'s request."""
    return answer(review, outcome_for(review, mode, config))


def outcome_for(review: Mapping[str, Any], mode: Mode, config: InjectionConfig) -> Outcome:
    request = review.get("request") or {}
    if request.get("operation") != "CREATE" or (request.get("kind") or {}).get("kind") != "Pod":
        return Outcome("skipped", "only pods are injected, when created")
    pod = request.get("object")
    if not isinstance(pod, Mapping):
        return Outcome("denied", "the admission request carries no pod object")
    return decide(pod, mode, config)


def answer(review: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
    request = review.get("request") or {}
    response: dict[str, Any] = {
        "uid": request.get("uid", ""),
        "allowed": outcome.result != "denied",
    }
    if outcome.result == "denied":
        response["status"] = {"code": 403, "reason": "Forbidden", "message": outcome.message}
    elif outcome.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(outcome.patch).encode()).decode()
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }
