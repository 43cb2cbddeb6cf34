"""The OpenAPI 3.1 document of the sidecar's HTTP API, written by hand.

A test keeps it true: every route the server answers is documented with its
method and status codes, and real responses validate against the schemas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_NNUM = {"type": ["number", "null"]}
_BOOL = {"type": "boolean"}
_ANY_OBJ = {"type": "object"}

_ERROR = _obj(
    ["error"],
    error=_obj(
        ["status", "code", "message"],
        status=_INT,
        code=_STR,
        message={"type": "string", "description": "What is wrong and what to do."},
    ),
)

_TASK_FACTS = {
    "type": "object",
    "additionalProperties": False,
    "description": "Every part is optional; other top-level keys are rejected (use context).",
    "properties": {
        "tags": {"type": "array", "items": _STR},
        "signals": {"type": "object", "additionalProperties": _NUM},
        "context": _ANY_OBJ,
        "facts": {
            "type": "array",
            "items": _obj(
                ["subject", "predicate", "object"],
                subject=_STR,
                predicate=_STR,
                object={},
                valid_from={"type": ["string", "number", "null"]},
                valid_to={"type": ["string", "number", "null"]},
            ),
        },
        "now": {
            "type": ["string", "number"],
            "description": "RFC 3339 time or epoch seconds; overrides the clock for FACT validity.",
        },
    },
    "example": {
        "tags": ["vip", "allergen"],
        "signals": {"x2": 0.8, "x6": 0.95},
        "context": {"domain": "hotel_ops", "task_type": "guest_request"},
    },
}

_RESULT = _obj(
    ["subtasks", "dag", "rules", "snapshot", "facts_version"],
    subtasks={
        "type": "array",
        "items": _obj(
            ["name", "type", "params", "rule_id", "rule_name"],
            name=_STR,
            type=_STR,
            params=_ANY_OBJ,
            rule_id=_STR,
            rule_name=_STR,
        ),
    },
    dag={
        "type": "array",
        "items": _obj(
            ["from", "to", "type", "rule"],
            **{"from": _STR, "to": _STR, "type": _STR, "rule": _STR},
        ),
    },
    rules={
        "type": "array",
        "items": _obj(
            ["rule_id", "rule_name", "rule_priority", "matched_conditions", "emissions_count"],
            rule_id=_STR,
            rule_name=_STR,
            rule_priority=_INT,
            matched_conditions=_INT,
            emissions_count=_INT,
        ),
    },
    snapshot=_STR,
    facts_version={
        "type": "integer",
        "description": "The version of the environment's fact set this answer used (0: none).",
    },
)

_HEALTH_PROPS: dict[str, Any] = {
    "healthy": _BOOL,
    "ready": _BOOL,
    "degraded_mode": _BOOL,
    "last_error": _NSTR,
    "last_activation": _NNUM,
    "active_version": _NSTR,
    "cached_versions_count": _INT,
    "redis_connected": _BOOL,
    "db_connected": {"type": ["boolean", "null"]},
    "desired_epoch": _INT,
    "applied_epoch": _INT,
    "cohort": {"type": "string", "enum": ["canary", "stable", "manual", "none"]},
    "manual_override": _NSTR,
    "snapshot_age_seconds": _NNUM,
    "max_snapshot_age_seconds": _NNUM,
    "serving_from_disk_cache": _BOOL,
    "activation_failures": _INT,
    "engine_degraded": _BOOL,
    "facts_version": _INT,
    "facts_count": _INT,
    "facts_source": {"type": "string", "enum": ["none", "postgres", "disk_cache"]},
    "facts_error": _NSTR,
}
_HEALTH = _obj(list(_HEALTH_PROPS), **_HEALTH_PROPS)

_METADATA = _obj(
    [
        "version",
        "loaded_at",
        "engine",
        "loaded",
        "error",
        "last_activation",
        "cached_versions",
        "cache_size",
        "cache_limit",
        "healthy",
        "degraded_mode",
        "last_error",
    ],
    version=_NSTR,
    loaded_at=_NNUM,
    engine=_NSTR,
    loaded=_BOOL,
    error=_NSTR,
    last_activation=_NNUM,
    cached_versions={"type": "array", "items": _STR},
    cache_size=_INT,
    cache_limit=_INT,
    healthy=_BOOL,
    degraded_mode=_BOOL,
    last_error=_NSTR,
    snapshot_id={"type": ["integer", "null"]},
    checksum=_NSTR,
    env=_STR,
    target=_STR,
    region=_STR,
    device_id=_STR,
    desired_epoch=_INT,
    applied_epoch=_INT,
    cohort=_STR,
    activation_source=_STR,
    facts_version=_INT,
    facts_count=_INT,
    facts_source=_STR,
    facts_error=_NSTR,
)


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


def openapi_document() -> dict[str, Any]:
    """The document served at ``GET /openapi.json``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PKG evaluator sidecar",
            "version": "1",
            "description": (
                "Policy decisions for the application in the same pod, over loopback. "
                "Evaluation never waits for I/O: the active snapshot is swapped atomically "
                "in the background."
            ),
        },
        "paths": {
            "/v1/evaluate": {
                "post": {
                    "operationId": "evaluate",
                    "summary": "Evaluate task facts with the active snapshot (or a cached version)",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": _STR,
                            "description": "Evaluate with this cached version instead (A/B).",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _TASK_FACTS}},
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Result"}, "The decision."),
                        "400": _err("Malformed JSON, wrong types or unknown parameters."),
                        "404": _err("The requested version is not cached in this sidecar."),
                        "413": _err("The body exceeds PKG_MAX_REQUEST_BYTES."),
                        "415": _err("The body is not application/json."),
                        "422": _err("The engine failed on well-formed task facts."),
                        "503": _err(
                            "No snapshot is loaded (code unavailable), or the sidecar is "
                            "stale under PKG_STALENESS_POLICY=fail-closed (code stale_policy)."
                        ),
                    },
                }
            },
            "/v1/metadata": {
                "get": {
                    "operationId": "metadata",
                    "summary": "The active snapshot and the manager's state",
                    "responses": {"200": _json(_METADATA, "Metadata.")},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: 200 while the process serves",
                    "responses": {"200": _json(_HEALTH, "Alive, with the health status.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: an active snapshot confirmed recently enough",
                    "responses": {
                        "200": _json(_HEALTH, "Ready."),
                        "503": _json(_HEALTH, "Not ready; 'reasons' says why."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format.",
                            "content": {"text/plain": {"schema": _STR}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": _json(_ANY_OBJ, "OpenAPI 3.1.")},
                }
            },
        },
        "components": {"schemas": {"Error": _ERROR, "Result": _RESULT, "TaskFacts": _TASK_FACTS}},
    }
