"""Every status the machine writes fits the CRD's status schema, field by field.

The API server prunes fields a structural schema does not list, silently: a
field missing from crds/policydeployments.yaml would vanish between ticks and
the machine would forget it. This checks each written value against the
schema (listed properties, types, nullability, enums).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from rollout_world import NEWER, World, replace_health

CRD = Path(__file__).resolve().parents[3] / "crds" / "policydeployments.yaml"


@cache
def status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def violations(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    if value is None:
        return [] if schema.get("nullable") else [f"{path} is null but not nullable"]
    kind = schema.get("type")
    if kind is not None:
        if isinstance(value, bool) and kind != "boolean":
            return [f"{path} is a boolean, schema says {kind}"]
        if not isinstance(value, _TYPES[kind]):
            return [f"{path} is {type(value).__name__}, schema says {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}={value!r} is not one of {schema['enum']}"]
    found: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key} is not in the schema (it would be pruned)")
            else:
                found.extend(violations(item, properties[key], f"{path}.{key}"))
        found.extend(
            f"{path}.{key} is required" for key in schema.get("required", []) if key not in value
        )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{path} has {len(value)} items, at most {schema['maxItems']}")
        for index, item in enumerate(value):
            found.extend(violations(item, schema.get("items", {}), f"{path}[{index}]"))
    return found


def test_statuses_of_a_rollout_with_every_outcome_fit_the_crd() -> None:
    schema = status_schema()
    steps = [{"setWeight": 10}, {"analysis": {"maxErrorRate": 0.1}}, {"pause": {}}]
    world = World(steps, strategy={"canary": {"steps": steps, "analysis": {"maxP99LatencyMs": 9}}})
    world.tick()
    world.tick()
    replace_health(world, evaluations=10, errors=5, p99_ms=12.0)
    world.tick()  # rolled back
    replace_health(world, evaluations=0, errors=0, p99_ms=None)
    world.request("retry", "r")
    world.tick()
    world.point_at(NEWER)
    world.tick()
    world.request("abort", "a")
    world.tick()
    world.request("retry", "r2")
    world.tick()
    world.tick()
    world.tick(61)
    world.request("promote", "p")
    world.tick()
    world.tick()
    world.request("rollback", "undo")
    world.tick()
    world.superseded_by = "newer"
    world.tick()
    assert [d.status["summary"] for d in world.decisions][-3:] == [
        "Succeeded",
        "RolledBack",
        "Superseded",
    ]
    for decision in world.decisions:
        assert violations(decision.status, schema) == []


def test_the_checker_catches_an_unlisted_field() -> None:
    assert violations({"surprise": 1}, status_schema()) == [
        "status.surprise is not in the schema (it would be pruned)"
    ]
