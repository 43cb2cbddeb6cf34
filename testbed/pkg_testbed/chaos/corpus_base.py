"""What the bad-input corpus (pkg_testbed.chaos.corpus) is made from: its model (``Case``,
``Corpus``, the ``Builder`` that names cases), the valid manifests it mutates, the
mutations (set or remove one path), and the tables it mutates by: typed fields, bounds,
required fields, enums and patterns of the two CRDs, and patterns RE2 refuses.

Kept beside crds/ by hand: a field added to a CRD without a row here is simply not
mutated; a row whose path the valid base no longer has fails when the corpus is built
(KeyError), or when it runs (the mutation is accepted, not refused).
"""

from __future__ import annotations

import base64
import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pkg_testbed.product import ROOT

__all__ = [
    "ACCEPTS",
    "API_VERSION",
    "BAD_REGEXES",
    "DEPLOYMENT_ENUMS",
    "DEPLOYMENT_FIELDS",
    "DEPLOYMENT_OUT_OF_RANGE",
    "DEPLOYMENT_REQUIRED",
    "REFUSED",
    "SNAPSHOT_ENUMS",
    "SNAPSHOT_FIELDS",
    "SNAPSHOT_OUT_OF_RANGE",
    "SNAPSHOT_REQUIRED",
    "STATUS",
    "WASM_ENTRYPOINT",
    "WASM_FILE",
    "WRONG",
    "Builder",
    "Case",
    "Change",
    "Corpus",
    "base_deployment",
    "base_native",
    "base_wasm",
    "delete_path",
    "meta",
    "removing",
    "set_path",
    "setting",
    "then",
    "unchanged",
]

#: Wrong values of each JSON type, for fields declared with another type.
WRONG: dict[str, list[Any]] = {
    "string": ["text", ""],
    "integer": [7, -3],
    "number": [2.5],
    "boolean": [True],
    "array": [["a", 1]],
    "object": [{"k": "v"}],
}
#: Which JSON types a declared type accepts (an integer is a number too).
ACCEPTS = {
    "string": {"string"},
    "integer": {"integer"},
    "number": {"integer", "number"},
    "boolean": {"boolean"},
    "array": {"array"},
    "object": {"object"},
}


# ---- the schema's typed fields, for mutation ----------------------------------------

#: (path, declared type) of PolicySnapshot fields the CRD types; a path is dotted keys
#: and list indexes.
SNAPSHOT_FIELDS: list[tuple[str, str]] = [
    ("spec", "object"),
    ("spec.version", "string"),
    ("spec.env", "string"),
    ("spec.engine", "string"),
    ("spec.autoPromote", "boolean"),
    ("spec.checksum", "string"),
    ("spec.subtaskTypes", "array"),
    ("spec.subtaskTypes.0", "object"),
    ("spec.subtaskTypes.0.name", "string"),
    ("spec.subtaskTypes.0.default_params", "object"),
    ("spec.rules", "array"),
    ("spec.rules.0", "object"),
    ("spec.rules.0.rule_id", "string"),
    ("spec.rules.0.rule_name", "string"),
    ("spec.rules.0.priority", "integer"),
    ("spec.rules.0.disabled", "boolean"),
    ("spec.rules.0.rule_source", "string"),
    ("spec.rules.0.conditions", "array"),
    ("spec.rules.0.conditions.1.condition_type", "string"),
    ("spec.rules.0.conditions.1.condition_key", "string"),
    ("spec.rules.0.conditions.1.operator", "string"),
    ("spec.rules.0.conditions.1.position", "integer"),
    ("spec.rules.0.emissions", "array"),
    ("spec.rules.0.emissions.0.subtask_type", "string"),
    ("spec.rules.0.emissions.0.subtask_name", "string"),
    ("spec.rules.0.emissions.0.relationship_type", "string"),
    ("spec.rules.0.emissions.0.params", "object"),
    ("spec.rules.0.emissions.0.position", "integer"),
    ("spec.facts", "array"),
    ("spec.facts.0.subject", "string"),
    ("spec.facts.0.predicate", "string"),
    ("spec.facts.0.valid_from", "string"),
    ("spec.data", "object"),
    ("spec.fixtures", "array"),
    ("spec.fixtures.0.name", "string"),
    ("spec.fixtures.0.input", "object"),
    ("spec.fixtures.0.expect", "object"),
]

DEPLOYMENT_FIELDS: list[tuple[str, str]] = [
    ("spec.snapshotRef", "object"),
    ("spec.snapshotRef.name", "string"),
    ("spec.target", "string"),
    ("spec.region", "string"),
    ("spec.env", "string"),
    ("spec.strategy", "object"),
    ("spec.strategy.canary", "object"),
    ("spec.strategy.canary.steps", "array"),
    ("spec.strategy.canary.steps.0.setWeight", "number"),
    ("spec.strategy.canary.steps.1.pause", "object"),
    ("spec.strategy.canary.steps.1.pause.durationSeconds", "integer"),
    ("spec.strategy.canary.steps.2.analysis.maxErrorRate", "number"),
    ("spec.strategy.canary.analysis.consecutiveFailures", "integer"),
    ("spec.progressDeadlineSeconds", "integer"),
    ("spec.coverage.minPercent", "number"),
    ("spec.coverage.heartbeatTTLSeconds", "integer"),
    ("spec.coverage.minDevices", "integer"),
]

#: (path, value out of the field's range or length) for either kind.
SNAPSHOT_OUT_OF_RANGE: list[tuple[str, Any]] = [
    ("spec.rules.0.conditions.1.position", -1),
    ("spec.rules.0.emissions.0.position", -5),
    ("spec.version", "v" * 130 + "@1.0.0"),
    ("spec.rules.0.rule_id", ""),
    ("spec.rules.0.rule_name", "n" * 254),
    ("spec.rules.0.conditions.1.condition_key", "k" * 1025),
    ("spec.subtaskTypes.0.name", ""),
    ("spec.fixtures.0.name", ""),
    ("spec.facts.0.subject", "s" * 1025),
]
DEPLOYMENT_OUT_OF_RANGE: list[tuple[str, Any]] = [
    ("spec.strategy.canary.steps.0.setWeight", 100.5),
    ("spec.strategy.canary.steps.0.setWeight", -1),
    ("spec.strategy.canary.steps.1.pause.durationSeconds", -1),
    ("spec.strategy.canary.steps.1.pause.durationSeconds", 604801),
    ("spec.strategy.canary.steps.2.analysis.maxErrorRate", 1.5),
    ("spec.strategy.canary.analysis.consecutiveFailures", 0),
    ("spec.strategy.canary.analysis.consecutiveFailures", 1001),
    ("spec.progressDeadlineSeconds", 0),
    ("spec.coverage.minPercent", 101),
    ("spec.coverage.heartbeatTTLSeconds", 0),
    ("spec.coverage.minDevices", -1),
    ("spec.snapshotRef.name", ""),
    ("spec.target", "t" * 129),
]

SNAPSHOT_REQUIRED = [
    "spec",
    "spec.version",
    "spec.env",
    "spec.engine",
    "spec.rules",
    "spec.subtaskTypes.0.name",
    "spec.rules.0.rule_id",
    "spec.rules.0.rule_name",
    "spec.rules.0.conditions.1.condition_type",
    "spec.rules.0.conditions.1.condition_key",
    "spec.rules.0.conditions.1.operator",
    "spec.rules.0.emissions.0.subtask_type",
    "spec.facts.0.subject",
    "spec.facts.0.predicate",
    "spec.fixtures.0.name",
    "spec.fixtures.0.input",
    "spec.fixtures.0.expect",
]
DEPLOYMENT_REQUIRED = [
    "spec",
    "spec.snapshotRef",
    "spec.snapshotRef.name",
    "spec.target",
    "spec.env",
    "spec.strategy",
    "spec.strategy.canary",
    "spec.strategy.canary.steps",
]

#: (path, values outside the enum or pattern).
SNAPSHOT_ENUMS: list[tuple[str, list[str]]] = [
    ("spec.env", ["production", "PROD", "qa"]),
    ("spec.engine", ["lua", "rego"]),
    ("spec.rules.0.conditions.1.condition_type", ["REGEX", "signal"]),
    # Unknown rule operators: the CRD's enum lists the engine's nine.
    ("spec.rules.0.conditions.1.operator", ["LIKE", "~=", "CONTAINS", "=>", "==", "NOT IN"]),
    ("spec.rules.0.emissions.0.relationship_type", ["BEFORE", "emits"]),
    ("spec.version", ["rules", "rules@1.2", "rules@01.2.3", "@1.0.0", "rules@1.0.0-", "a b@1.0.0"]),
    ("spec.checksum", ["sha256:xyz", "md5:" + "0" * 32, "0" * 63, "sha512-" + "a" * 64]),
    ("spec.facts.0.valid_from", ["yesterday", "2026-13-01T00:00:00Z"]),
]
DEPLOYMENT_ENUMS: list[tuple[str, list[str]]] = [
    ("spec.env", ["production", "Dev"]),
    ("spec.target", ["router!", "-router", "edge:door:x", "a b"]),
    ("spec.region", ["US_West", "eu-", "Global"]),
    ("spec.strategy.canary.activation", ["threePhase", "IMMEDIATE"]),
]


#: Patterns RE2 refuses (backreferences and look-arounds need backtracking; the rest is
#: malformed): each is an invalid MATCHES value.
BAD_REGEXES = [
    "(",
    "[a-",
    "a{2,1}",
    "(a)\\1",
    "(?=x)",
    "(?<=x)y",
    "(?!x)",
    "\\p{NoSuchClass}",
    "a**",
    "x{1001}",
    "*a",
    "(?i",
    "[z-a]",
    "\\",
]

API_VERSION = "pkg.seedcore.io/v1alpha1"
WASM_FILE = ROOT / "policies" / "limits" / "loop.wasm"
WASM_ENTRYPOINT = "limits/loop/result"

# ---- valid manifests, the seeds of the mutations -------------------------------------


def meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {"pkg-chaos": "bad-input"}}


def base_native(name: str, version: str, *, env: str = "dev") -> dict[str, Any]:
    """A valid native snapshot using every field, its fixture passing."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicySnapshot",
        "metadata": meta(name),
        "spec": {
            "version": version,
            "env": env,
            "engine": "native",
            "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low"}}],
            "rules": [
                {
                    "rule_id": "rule-001",
                    "rule_name": "vip_escalation",
                    "priority": 10,
                    "disabled": False,
                    "rule_source": "vip and score >= 0.5",
                    "conditions": [
                        {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"},
                        {
                            "condition_type": "SIGNAL",
                            "condition_key": "score",
                            "operator": ">=",
                            "value": 0.5,
                            "position": 1,
                        },
                    ],
                    "emissions": [
                        {
                            "subtask_type": "escalate",
                            "subtask_name": "escalate_vip",
                            "relationship_type": "EMITS",
                            "params": {"level": "high"},
                            "position": 0,
                        }
                    ],
                }
            ],
            "facts": [
                {
                    "subject": "guest:Ben",
                    "predicate": "hasTemporaryAccess",
                    "object": {"service": "lounge"},
                    "valid_from": "2026-01-01T00:00:00Z",
                    "valid_to": "2036-01-01T00:00:00Z",
                }
            ],
            "data": {"owner": "chaos"},
            "fixtures": [
                {
                    "name": "vip",
                    "input": {"tags": ["vip"], "signals": {"score": 0.9}},
                    "expect": {"subtasks": ["escalate_vip"]},
                }
            ],
        },
    }


def base_wasm(name: str, version: str, *, env: str = "dev") -> dict[str, Any]:
    """A valid wasm snapshot (an OPA module built by ``opa build -t wasm``), inline."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicySnapshot",
        "metadata": meta(name),
        "spec": {
            "version": version,
            "env": env,
            "engine": "wasm",
            "wasm": {
                "entrypoint": WASM_ENTRYPOINT,
                "inline": base64.b64encode(WASM_FILE.read_bytes()).decode(),
            },
            "fixtures": [{"name": "answers", "input": {}, "expect": {"rules": ["loop-002"]}}],
        },
    }


def base_deployment(name: str, snapshot: str, *, target: str) -> dict[str, Any]:
    """A valid PolicyDeployment of ``snapshot`` to ``target`` (which no device runs)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicyDeployment",
        "metadata": meta(name),
        "spec": {
            "snapshotRef": {"name": snapshot},
            "env": "dev",
            "target": target,
            "region": "chaos",
            "strategy": {
                "canary": {
                    "activation": "immediate",
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"durationSeconds": 5}},
                        {"analysis": {"maxErrorRate": 0.01, "durationSeconds": 5}},
                    ],
                    "analysis": {"maxErrorRate": 0.05, "consecutiveFailures": 2},
                }
            },
            "progressDeadlineSeconds": 120,
            "coverage": {"minPercent": 100, "heartbeatTTLSeconds": 5, "minDevices": 1},
        },
    }


def _split(path: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = _split(path)
    node: Any = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def delete_path(doc: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = _split(path)
    node: Any = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


Change = Callable[[dict[str, Any]], dict[str, Any]]


def setting(path: str, value: Any) -> Change:
    """A mutation: the document with ``value`` at ``path``."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        return set_path(doc, path, value)

    return change


def removing(path: str) -> Change:
    """A mutation: the document without ``path``."""

    def change(doc: dict[str, Any]) -> dict[str, Any]:
        return delete_path(doc, path)

    return change


def then(first: Change, second: Change) -> Change:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        return second(first(doc))

    return change


def unchanged(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


REFUSED = "refused"
STATUS = "status"


@dataclass(frozen=True)
class Case:
    name: str  # also the object's metadata.name
    kind: str  # PolicySnapshot or PolicyDeployment
    expect: str  # REFUSED or STATUS
    category: str
    what: str  # what is wrong, for people
    document: dict[str, Any] | None = None
    #: The manifest as JSON text, for values no encoder writes (thousands of levels).
    text: str | None = None
    #: The CamelCase reason the operator must report (STATUS cases).
    reason: str | None = None
    #: The field a mutation broke: a refusal's message must name it (its last key).
    field: str | None = None

    def manifest(self) -> str:
        if self.text is not None:
            return self.text
        return json.dumps(self.document)


@dataclass
class Corpus:
    tag: str
    cases: list[Case]
    #: Applied (and Ready, for snapshots) before the cases: what references point at.
    prerequisites: list[dict[str, Any]] = field(default_factory=list)

    def by_category(self) -> dict[str, list[Case]]:
        out: dict[str, list[Case]] = {}
        for case in self.cases:
            out.setdefault(case.category, []).append(case)
        return out

    def sample(self, per_category: int) -> list[Case]:
        """A representative slice: the first ``per_category`` cases of every category."""
        return [c for cases in self.by_category().values() for c in cases[:per_category]]


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


class Builder:
    """Collects cases with unique names, versions and targets."""

    def __init__(self, tag: str, rng: random.Random) -> None:
        self.tag = tag
        self.rng = rng
        self.cases: list[Case] = []

    def _name(self, prefix: str, what: str) -> str:
        return f"{prefix}{len(self.cases):03d}-{_slug(what)}"[:63].rstrip("-")

    def version(self, name: str) -> str:
        return f"{name[:40].rstrip('-')}@1.0.0-{self.tag}"

    def snapshot(
        self,
        category: str,
        what: str,
        make: Change,
        *,
        expect: str,
        reason: str | None = None,
        wasm: bool = False,
        field: str | None = None,
    ) -> None:
        name = self._name("s", what)
        base = (base_wasm if wasm else base_native)(name, self.version(name))
        self.cases.append(
            Case(
                name,
                "PolicySnapshot",
                expect,
                category,
                what,
                make(base),
                reason=reason,
                field=field,
            )
        )

    def deployment(
        self,
        category: str,
        what: str,
        make: Change,
        *,
        expect: str,
        reason: str | None = None,
        snapshot: str = "missing",
        field: str | None = None,
    ) -> None:
        name = self._name("d", what)
        base = base_deployment(name, snapshot, target=f"bad-{len(self.cases)}-{self.tag}")
        self.cases.append(
            Case(
                name,
                "PolicyDeployment",
                expect,
                category,
                what,
                make(base),
                reason=reason,
                field=field,
            )
        )
