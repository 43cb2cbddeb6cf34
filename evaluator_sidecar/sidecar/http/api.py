"""The sidecar's HTTP API over one ``PKGManager``: routes, status codes, error bodies.

| method and path | answer |
| --- | --- |
| ``POST /v1/evaluate[?version=V]`` | the decision ``{subtasks, dag, rules, snapshot}`` |
| ``GET /v1/metadata`` | ``PKGManager.get_metadata()`` |
| ``GET /healthz`` | 200 while the process serves (liveness), with the health status |
| ``GET /readyz`` | 200 with an active evaluator confirmed within the maximum age, else 503 |
| ``GET /metrics`` | Prometheus text format |
| ``GET /openapi.json`` | the OpenAPI document of this API |

Errors are ``{"error": {"status": int, "code": str, "message": str}}``. Bad
input (malformed JSON, wrong types, unknown parameters, too large) is a 4xx
that says what is wrong; 503 means no policy is loaded (code ``unavailable``)
or, under ``PKG_STALENESS_POLICY=fail-closed``, that the sidecar is stale (code
``stale_policy``, with ``staleness_seconds`` and ``max_staleness_seconds``); 422
means the engine failed on well-formed task facts. Every answer of
``/v1/evaluate`` carries the headers ``PKG-Stale`` (``true``/``false``) and
``PKG-Staleness-Seconds`` (seconds since the desired level was last confirmed;
absent without Redis). README.md, "The sidecar's HTTP API", documents
the bodies and every status code.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from evaluator_sidecar.policy.errors import EvaluationError, InvalidTaskFactsError
from evaluator_sidecar.sidecar.http.openapi import openapi_document
from evaluator_sidecar.sidecar.http.protocol import Request, Response
from evaluator_sidecar.sidecar.staleness import STALE_ERROR_CODE

if TYPE_CHECKING:
    from evaluator_sidecar.sidecar.manager import PKGManager

__all__ = ["ROUTES", "SidecarAPI", "error_body"]

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "evaluation_failed",
    431: "headers_too_large",
    500: "internal",
    503: "unavailable",
}

#: path -> allowed method; the OpenAPI document is checked against this by a test.
ROUTES: dict[str, str] = {
    "/v1/evaluate": "POST",
    "/v1/metadata": "GET",
    "/healthz": "GET",
    "/readyz": "GET",
    "/metrics": "GET",
    "/openapi.json": "GET",
}


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps(
        {"error": {"status": status, "code": _CODES.get(status, "error"), "message": message}}
    )


def _error(status: int, message: str) -> Response:
    return Response(status, error_body(status, message))


def _number_text(value: object) -> orjson.Fragment:
    """A WASM result's number beyond float64 (a Decimal, as OPA keeps it) as JSON text."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(status: int, value: Any) -> Response:
    return Response(status, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


class SidecarAPI:
    """Routes requests to the manager; every handler is synchronous and does no I/O."""

    def __init__(self, manager: PKGManager) -> None:
        self.manager = manager
        self.stats = manager.metrics.stats
        self._openapi = orjson.dumps(openapi_document())
        self._handlers = {
            "/v1/evaluate": self.evaluate,
            "/v1/metadata": self.metadata,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
            "/openapi.json": self.openapi,
        }

    def __call__(self, request: Request) -> Response:
        handler = self._handlers.get(request.path)
        if handler is None:
            return _error(404, f"no route {request.path!r}; see GET /openapi.json")
        allowed = ROUTES[request.path]
        if request.method != allowed:
            response = _error(405, f"{request.path} accepts {allowed} only")
            response.headers.append((b"Allow", allowed.encode()))
            return response
        return handler(request)

    # ---- evaluation (the hot path)

    def evaluate(self, request: Request) -> Response:
        response = self._evaluate(request)
        staleness = self.manager.staleness
        age = staleness.seconds()
        response.headers.append((b"PKG-Stale", b"true" if staleness.stale() else b"false"))
        if age is not None:
            response.headers.append((b"PKG-Staleness-Seconds", b"%.3f" % age))
        return response

    def _stale_refusal(self) -> Response | None:
        staleness = self.manager.staleness
        if not staleness.refuses():
            return None
        age = staleness.seconds() or 0.0
        body = {
            "error": {
                "status": 503,
                "code": STALE_ERROR_CODE,
                "message": (
                    f"this sidecar has not confirmed its desired policy for {age:.1f} s, "
                    f"more than the maximum of {staleness.max_seconds:g} s "
                    "(PKG_MAX_STALENESS_SECONDS), and PKG_STALENESS_POLICY is fail-closed: "
                    "treat the request as denied or retry later; see GET /readyz"
                ),
                "staleness_seconds": round(age, 3),
                "max_staleness_seconds": staleness.max_seconds,
            }
        }
        return Response(503, orjson.dumps(body))

    def _evaluate(self, request: Request) -> Response:
        refused = self._stale_refusal()
        if refused is not None:
            return refused
        version: str | None = None
        if request.query:
            params = parse_qs(request.query.decode("utf-8", "replace"), keep_blank_values=True)
            unknown = sorted(set(params) - {"version"})
            if unknown:
                return _error(400, f"unknown query parameter(s) {unknown}; only 'version' is known")
            values = params.get("version")
            if values is not None:
                if len(values) != 1 or not values[0]:
                    return _error(400, "give 'version' once, with a snapshot version")
                version = values[0]
        content_type = request.headers.get(b"content-type")
        if content_type is not None and not content_type.lower().startswith(b"application/json"):
            return _error(
                415,
                f"send task facts as application/json, not {content_type.decode(errors='replace')}",
            )
        body = request.body
        if not body:
            return _error(400, "the request body is empty: send task facts as a JSON object ({})")
        try:
            facts = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"the request body is not valid JSON: {exc}")
        if not isinstance(facts, dict):
            return _error(
                400, f"the request body must be a JSON object of task facts, not {_kind(facts)}"
            )
        if version is None:
            evaluator = self.manager.get_active_evaluator()
            if evaluator is None:
                return _error(
                    503,
                    "no policy snapshot is loaded yet; see GET /healthz for why (last_error)",
                )
        else:
            evaluator = self.manager.get_evaluator_by_version(version)
            if evaluator is None:
                cached = self.manager.get_metadata()["cached_versions"]
                return _error(
                    404, f"version {version!r} is not cached in this sidecar; cached: {cached}"
                )
        environment = self.manager.get_environment_facts()
        started = time.perf_counter()
        try:
            result = evaluator.evaluate(facts, environment)
        except InvalidTaskFactsError as exc:
            self.stats.error(evaluator.engine_type, "bad_input")
            return _error(400, str(exc))
        except EvaluationError as exc:
            self.stats.error(evaluator.engine_type, "engine")
            return _error(422, str(exc))
        self.stats.observe(evaluator.engine_type, time.perf_counter() - started)
        if version is None:
            # Sampled for the shadow step's candidate, if any: an append, compared later.
            self.manager.shadow.offer(facts, result, evaluator.version, environment)
        result["facts_version"] = environment.version
        return Response(200, orjson.dumps(result, default=_number_text))

    # ---- introspection

    def metadata(self, request: Request) -> Response:
        return _json(200, self.manager.get_metadata())

    def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "alive", **self.manager.get_health_status()})

    def readyz(self, request: Request) -> Response:
        health = self.manager.get_health_status()
        reasons = []
        if health["active_version"] is None:
            reasons.append("no active evaluator")
        elif not health["ready"]:
            reasons.append(
                f"the active snapshot was last confirmed {health['snapshot_age_seconds']} s ago, "
                f"more than the maximum of {health['max_snapshot_age_seconds']} s"
            )
        if health["stale"] and health["staleness_policy"] == "fail-closed":
            reasons.append(
                f"stale: the desired level was last confirmed {health['staleness_seconds']} s "
                f"ago, more than the maximum of {health['max_staleness_seconds']} s"
            )
        body = {"ready": not reasons, "reasons": reasons, **health}
        return _json(200 if not reasons else 503, body)

    def metrics(self, request: Request) -> Response:
        return Response(
            200,
            generate_latest(self.manager.metrics.registry),
            content_type=CONTENT_TYPE_LATEST.encode(),
        )

    def openapi(self, request: Request) -> Response:
        return Response(200, self._openapi)


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
