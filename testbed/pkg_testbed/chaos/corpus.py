"""Malformed PolicySnapshot and PolicyDeployment manifests: the bad-input scenario's corpus.

Every :class:`Case` is one manifest a user (or a GitOps tool) could apply, with what is
wrong with it and the outcome it must have:

- ``REFUSED``: the API server refuses ``kubectl apply`` and says why (the CRD's schema,
  its CEL rules, its formats, the request size limit);
- ``STATUS``: the API server stores it (its schema cannot see the problem) and the
  operator reports it: ``Ready`` False (PolicySnapshot) or ``Progressing`` False
  (PolicyDeployment) with the CamelCase ``reason`` given here and a message.

Two sources: mutations of valid manifests (every typed field given a value of each wrong
type, every bounded number pushed out of range, every required field removed, every
enum and pattern given values outside them), drawn deterministically from a seeded
``random.Random``; and hand-written edge cases (invalid RE2, unknown operators,
oversized fields, deep nesting, wrong base64, wrong checksums, missing ConfigMaps and
snapshots, versions reused with other content). Versions and targets carry ``tag``
(the test's namespace) so that a run shares nothing with another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pkg_testbed.chaos.corpus_base import (
    ACCEPTS,
    BAD_REGEXES,
    DEPLOYMENT_ENUMS,
    DEPLOYMENT_FIELDS,
    DEPLOYMENT_OUT_OF_RANGE,
    DEPLOYMENT_REQUIRED,
    REFUSED,
    SNAPSHOT_ENUMS,
    SNAPSHOT_FIELDS,
    SNAPSHOT_OUT_OF_RANGE,
    SNAPSHOT_REQUIRED,
    STATUS,
    WASM_ENTRYPOINT,
    WASM_FILE,
    WRONG,
    Builder,
    Case,
    Change,
    Corpus,
    base_deployment,
    base_native,
    base_wasm,
    meta,
    removing,
    set_path,
    setting,
    then,
    unchanged,
)

__all__ = [
    "REFUSED",
    "STATUS",
    "Case",
    "Corpus",
    "base_deployment",
    "base_native",
    "base_wasm",
    "build",
]


def _wrong_types(b: Builder) -> None:
    for kind, fields in (("snapshot", SNAPSHOT_FIELDS), ("deployment", DEPLOYMENT_FIELDS)):
        add = b.snapshot if kind == "snapshot" else b.deployment
        for path, declared in fields:
            wrong_kinds = [k for k in WRONG if k not in ACCEPTS[declared]]
            # Two wrong types per field, drawn by the seeded generator.
            for wrong in b.rng.sample(wrong_kinds, 2):
                value = b.rng.choice(WRONG[wrong])
                add(
                    "wrong-type",
                    f"{path} {wrong}",
                    setting(path, value),
                    expect=REFUSED,
                    field=path,
                )


def _out_of_range(b: Builder) -> None:
    for path, value in SNAPSHOT_OUT_OF_RANGE:
        b.snapshot(
            "out-of-range", f"{path} out of range", setting(path, value),
            expect=REFUSED,
            field=path,
        )  # fmt: skip
    for path, value in DEPLOYMENT_OUT_OF_RANGE:
        b.deployment(
            "out-of-range", f"{path} {value}"[:40], setting(path, value),
            expect=REFUSED,
            field=path,
        )  # fmt: skip
    # Beyond what the schema bounds: the operator's own checks.
    b.deployment(
        "out-of-range",
        "shadow sampleRate 0",
        setting("spec.strategy.canary.steps.0", {"shadow": {"sampleRate": 0}}),
        expect=STATUS,
        reason="InvalidSpec",
    )
    for count, path, item in (
        (65, "spec.rules.0.conditions", {"condition_type": "TAG", "condition_key": "x",
                                         "operator": "EXISTS"}),
        (65, "spec.rules.0.emissions", {"subtask_type": "escalate"}),
        (1001, "spec.fixtures", {"name": "f", "input": {}, "expect": {}}),
    ):  # fmt: skip
        b.snapshot(
            "out-of-range",
            f"{path} {count} items",
            setting(path, [item] * count),
            expect=REFUSED,
            field=path,
        )
    b.deployment(
        "out-of-range",
        "65 steps",
        setting("spec.strategy.canary.steps", [{"setWeight": 1}] * 65),
        expect=REFUSED,
    )


def _missing(b: Builder) -> None:
    for path in SNAPSHOT_REQUIRED:
        b.snapshot("missing-field", f"no {path}", removing(path), expect=REFUSED, field=path)
    for path in DEPLOYMENT_REQUIRED:
        b.deployment("missing-field", f"no {path}", removing(path), expect=REFUSED, field=path)
    # Required by the engine, not the schema: a condition without its value.
    b.snapshot(
        "missing-field",
        "SIGNAL >= without value",
        removing("spec.rules.0.conditions.1.value"),
        expect=STATUS,
        reason="InvalidSnapshot",
    )
    b.snapshot(
        "missing-field",
        "empty subtask_name",
        setting("spec.rules.0.emissions.0.subtask_name", ""),
        expect=STATUS,
        reason="InvalidSnapshot",
    )


def _enums(b: Builder) -> None:
    for path, values in SNAPSHOT_ENUMS:
        for value in values:
            b.snapshot(
                "enum-or-pattern", f"{path} {value}", setting(path, value),
                expect=REFUSED,
                field=path,
            )  # fmt: skip
    for path, values in DEPLOYMENT_ENUMS:
        for value in values:
            b.deployment(
                "enum-or-pattern", f"{path} {value}", setting(path, value),
                expect=REFUSED,
                field=path,
            )  # fmt: skip
    for field_name in ("spec.unknownField", "spec.rules.0.when", "spec.wasmModule"):
        b.snapshot(
            "unknown-field", field_name, setting(field_name, "x"), expect=REFUSED, field=field_name
        )
    b.deployment(
        "unknown-field", "spec.canary", setting("spec.canary", {}), expect=REFUSED,
        field="spec.canary",
    )  # fmt: skip


def _cel_rules(b: Builder) -> None:
    wasm = {"inline": base64.b64encode(b"\0asm\x01\0\0\0").decode()}
    b.snapshot("engine-mismatch", "native with wasm", setting("spec.wasm", wasm),
               expect=REFUSED)  # fmt: skip
    b.snapshot("engine-mismatch", "wasm with rules", setting("spec.engine", "wasm"),
               expect=REFUSED)  # fmt: skip
    b.snapshot("engine-mismatch", "wasm without module", removing("spec.wasm"),
               expect=REFUSED, wasm=True)  # fmt: skip
    b.snapshot(
        "engine-mismatch",
        "inline and configMapRef",
        setting("spec.wasm.configMapRef", {"name": "cm", "key": "k"}),
        expect=REFUSED,
        wasm=True,
    )
    b.snapshot("engine-mismatch", "wasm neither inline nor ref",
               removing("spec.wasm.inline"), expect=REFUSED, wasm=True)  # fmt: skip
    for kinds in ({"setWeight": 10, "pause": {}}, {}, {"setWeight": 5, "analysis": {}}):
        b.deployment(
            "engine-mismatch",
            f"step with {len(kinds)} kinds",
            setting("spec.strategy.canary.steps.0", kinds),
            expect=REFUSED,
        )


def _rules(b: Builder) -> None:
    for i, pattern in enumerate(BAD_REGEXES):
        ctype, key = (("VALUE", "context.domain"), ("TAG", "vip"), ("FACT", "hasAccess"))[i % 3]
        cond = {"condition_type": ctype, "condition_key": key, "operator": "MATCHES",
                "value": pattern}  # fmt: skip
        b.snapshot(
            "invalid-re2",
            f"MATCHES {pattern}",
            setting("spec.rules.0.conditions.1", cond),
            expect=STATUS,
            reason="InvalidSnapshot",
        )
    engine_refusals: list[tuple[str, dict[str, Any]]] = [
        ("TAG >", {"condition_type": "TAG", "condition_key": "vip", "operator": ">",
                   "value": 1}),
        ("SIGNAL MATCHES", {"condition_type": "SIGNAL", "condition_key": "s",
                            "operator": "MATCHES", "value": "a"}),
        ("SIGNAL > text", {"condition_type": "SIGNAL", "condition_key": "s", "operator": ">",
                           "value": "high"}),
        ("IN empty", {"condition_type": "VALUE", "condition_key": "a.b", "operator": "IN",
                      "value": []}),
        ("SIGNAL IN text", {"condition_type": "SIGNAL", "condition_key": "s", "operator": "IN",
                            "value": [1, "two"]}),
        ("VALUE key a..b", {"condition_type": "VALUE", "condition_key": "a..b",
                            "operator": "EXISTS"}),
        ("VALUE key .a", {"condition_type": "VALUE", "condition_key": ".a",
                          "operator": "EXISTS"}),
        ("VALUE < object", {"condition_type": "VALUE", "condition_key": "a", "operator": "<",
                            "value": {"n": 1}}),
    ]  # fmt: skip
    for what, cond in engine_refusals:
        b.snapshot(
            "engine-rule",
            what,
            setting("spec.rules.0.conditions.1", cond),
            expect=STATUS,
            reason="InvalidSnapshot",
        )

    def duplicate_rule(d: dict[str, Any]) -> dict[str, Any]:
        rules = d["spec"]["rules"]
        return set_path(d, "spec.rules", [*rules, {**rules[0], "rule_name": "other"}])

    def duplicate_type(d: dict[str, Any]) -> dict[str, Any]:
        types = d["spec"]["subtaskTypes"]
        return set_path(d, "spec.subtaskTypes", [*types, types[0]])

    def duplicate_fixture(d: dict[str, Any]) -> dict[str, Any]:
        fixtures = d["spec"]["fixtures"]
        return set_path(d, "spec.fixtures", [*fixtures, fixtures[0]])

    for what, make in (
        ("duplicate rule_id", duplicate_rule),
        ("duplicate subtask type", duplicate_type),
        ("duplicate fixture name", duplicate_fixture),
    ):
        b.snapshot("engine-rule", what, make, expect=STATUS, reason="InvalidSnapshot")
    for what, expect in (
        ("fixture expects another subtask", {"subtasks": ["something_else"]}),
        ("fixture expects no subtasks", {"subtasks": []}),
        ("fixture expects another rule", {"rules": ["rule-999"]}),
    ):
        b.snapshot(
            "fixtures-fail",
            what,
            setting("spec.fixtures.0.expect", expect),
            expect=STATUS,
            reason="FixturesFailed",
        )


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep(b: Builder) -> None:
    # Deep enough to pass the API server (it stores them) and far past the operator's
    # bound of 64 levels; the deepest are written as text, too deep for json.dumps.
    for path, depth in (
        ("spec.data", 65),
        ("spec.data", 300),
        ("spec.subtaskTypes.0.default_params", 100),
        ("spec.rules.0.emissions.0.params", 80),
        ("spec.fixtures.0.input", 200),
        ("spec.fixtures.0.expect", 70),
        ("spec.facts.0.object", 90),
        ("spec.rules.0.conditions.1.value", 66),
    ):
        b.snapshot(
            "deep-nesting",
            f"{path} {depth} levels",
            setting(path, _nested(depth)),
            expect=STATUS,
            reason="InvalidSnapshot",
        )
    for depth in (2_000, 5_000):
        name = b._name("s", f"spec.data {depth} levels as text")
        doc = set_path(base_native(name, b.version(name)), "spec.data", "DEEP")
        text = json.dumps(doc).replace('"DEEP"', '{"a":' * depth + "1" + "}" * depth)
        b.cases.append(
            Case(name, "PolicySnapshot", STATUS, "deep-nesting",
                 f"spec.data nested {depth} levels", text=text, reason="InvalidSnapshot")
        )  # fmt: skip


def _oversized(b: Builder) -> None:
    b.snapshot(
        "oversized",
        "rule_source 70000 chars",
        setting("spec.rules.0.rule_source", "x" * 70_000),
        expect=REFUSED,
    )
    b.snapshot(
        "oversized",
        "inline over 512 KiB",
        setting("spec.wasm.inline", "A" * 524_292),
        expect=REFUSED,
        wasm=True,
    )
    # Past the API server's request limit (3 MiB): refused before any schema check.
    b.snapshot(
        "oversized",
        "spec.data of 3.5 MB",
        setting("spec.data", {"blob": "y" * 3_500_000}),
        expect=REFUSED,
    )
    b.snapshot("oversized", "5001 facts",
               setting("spec.facts", [{"subject": "s", "predicate": "p"}] * 5001),
               expect=REFUSED)  # fmt: skip


def _bad_wasm(b: Builder) -> None:
    module = WASM_FILE.read_bytes()
    good = base64.b64encode(module).decode()
    inline_cases: list[tuple[str, str]] = [
        ("not base64", "this is not base64!"),
        ("bad padding", good[:-2] + "="),
        ("url-safe alphabet", base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode()),
        ("empty", ""),
        ("base64 of text", base64.b64encode(b"hello, world").decode()),
        ("truncated module", base64.b64encode(module[: len(module) // 2]).decode()),
        ("wasm magic only", base64.b64encode(b"\0asm\x01\0\0\0").decode()),
        ("random bytes", base64.b64encode(b.rng.randbytes(512)).decode()),
        ("asterisk inside", good[:100] + "*" + good[100:]),
    ]
    for what, inline in inline_cases:
        b.snapshot(
            "wrong-base64",
            what,
            setting("spec.wasm.inline", inline),
            expect=STATUS,
            reason="InvalidSnapshot",
            wasm=True,
        )
    b.snapshot(
        "wrong-base64",
        "unknown entrypoint",
        setting("spec.wasm.entrypoint", "no/such/entrypoint"),
        expect=STATUS,
        reason="InvalidSnapshot",
        wasm=True,
    )


def _checksums(b: Builder) -> None:
    for i in range(6):
        digest = b.rng.randbytes(32).hex()
        prefix = ("", "sha256:", "sha256-")[i % 3]
        value = prefix + (digest.upper() if i % 2 else digest)
        b.snapshot(
            "wrong-checksum",
            f"checksum {prefix or 'bare'} {i}",
            setting("spec.checksum", value),
            expect=STATUS,
            reason="ChecksumMismatch",
            wasm=i >= 3,
        )
    # The checksum of the module, declared on content that is not that module.
    module_sum = hashlib.sha256(WASM_FILE.read_bytes()).hexdigest()
    b.snapshot(
        "wrong-checksum",
        "checksum of the module for native rules",
        setting("spec.checksum", module_sum),
        expect=STATUS,
        reason="ChecksumMismatch",
    )


def _references(b: Builder, *, config_map: str, not_ready: str) -> None:
    for what, ref, reason in (
        ("ConfigMap missing", {"name": "no-such-configmap", "key": "policy.wasm"},
         "ArtifactUnavailable"),
        ("ConfigMap key missing", {"name": config_map, "key": "no-such-key"},
         "ArtifactUnavailable"),
        ("ConfigMap not wasm", {"name": config_map, "key": "policy.wasm"}, "InvalidSnapshot"),
    ):  # fmt: skip
        b.snapshot(
            "missing-reference",
            what,
            setting("spec.wasm", {"entrypoint": WASM_ENTRYPOINT,
                                                   "configMapRef": ref}),
            expect=STATUS,
            reason=reason,
            wasm=True,
        )  # fmt: skip
    for what, snapshot, reason in (
        ("snapshot missing", "no-such-snapshot", "SnapshotNotFound"),
        ("snapshot missing 2", "deleted-long-ago", "SnapshotNotFound"),
        ("snapshot not Ready", not_ready, "SnapshotNotReady"),
    ):
        b.deployment(
            "missing-reference", what, unchanged, expect=STATUS, reason=reason, snapshot=snapshot
        )


def _duplicates(b: Builder, *, owner_version: str) -> None:
    changes: list[tuple[str, Change]] = [
        ("other expectation", setting("spec.fixtures.0.expect.subtasks", ["x"])),
        ("other priority", setting("spec.rules.0.priority", 99)),
        ("other data", setting("spec.data", {"owner": "someone else"})),
        ("other env", setting("spec.env", "staging")),
        ("no facts", removing("spec.facts")),
        ("rule disabled", setting("spec.rules.0.disabled", True)),
    ]
    for what, change in changes:
        b.snapshot(
            "duplicate-version",
            f"version reused {what}",
            then(change, setting("spec.version", owner_version)),
            expect=STATUS,
            reason="VersionConflict",
        )
    # The same content under a second name: the version belongs to its first resource.
    b.snapshot(
        "duplicate-version",
        "version reused same content",
        setting("spec.version", owner_version),
        expect=STATUS,
        reason="VersionInUse",
    )


ACTION_ANNOTATION = "pkg.seedcore.io/action"
#: Values of the action annotation people get wrong; the object under it must still be
#: reconciled and reported (the action refused with an InvalidAction event).
BAD_ACTIONS = [
    ("not json", "promote now"),
    ("a JSON array", '["promote"]'),
    ("an unknown action", '{"action": "explode", "token": "t-1"}'),
    ("no token", '{"action": "promote"}'),
    ("a token with spaces", '{"action": "promote", "token": "not a token"}'),
    ("unknown fields", '{"action": "promote", "token": "t-2", "force": true}'),
    # Deeper than the operator's recursion limit (25,000), within the API server's 256 KiB
    # for all annotations.
    ("an array 100000 deep", "[" * 100_000),
    ("an object 30000 deep", '{"a":' * 30_000),
]


def _actions(b: Builder, *, not_ready: str) -> None:
    # On objects that are bad anyway (fixtures fail; the snapshot is missing): their own
    # reason must still be reported under a bad annotation.
    for what, value in BAD_ACTIONS:
        annotate = setting("metadata.annotations", {ACTION_ANNOTATION: value})
        fixtures_fail = setting("spec.fixtures.0.expect", {"subtasks": ["never"]})
        b.snapshot(
            "bad-action",
            f"action {what}",
            then(fixtures_fail, annotate),
            expect=STATUS,
            reason="FixturesFailed",
        )
        b.deployment(
            "bad-action",
            f"action {what}",
            annotate,
            expect=STATUS,
            reason="SnapshotNotReady",
            snapshot=not_ready,
        )


def build(tag: str, *, seed: int = 19) -> Corpus:
    """The corpus for one run; ``tag`` (the namespace) makes versions and targets unique."""
    b = Builder(tag, random.Random(seed))
    owner = base_native("dup-owner", f"dup-owner@1.0.0-{tag}")
    not_ready = set_path(base_native("not-ready", f"not-ready@1.0.0-{tag}"),
                     "spec.fixtures.0.expect", {"subtasks": ["never"]})  # fmt: skip
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("not-a-module"),
        "binaryData": {"policy.wasm": base64.b64encode(b"#!/bin/sh\necho no\n").decode()},
    }
    _wrong_types(b)
    _out_of_range(b)
    _missing(b)
    _enums(b)
    _cel_rules(b)
    _rules(b)
    _deep(b)
    _oversized(b)
    _bad_wasm(b)
    _checksums(b)
    _references(b, config_map="not-a-module", not_ready="not-ready")
    _actions(b, not_ready="not-ready")
    # The owner must be Ready before these: the base (before mutation) is the owner's
    # content with another name, so "same content" differs only in metadata.
    _duplicates(b, owner_version=owner["spec"]["version"])
    return Corpus(tag, b.cases, prerequisites=[owner, not_ready, config_map])


def write_batch(cases: list[Case], folder: Path) -> Iterator[Path]:
    """One file per case in ``folder`` (``kubectl apply -f FOLDER`` applies them all)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        path = folder / f"{case.name}.json"
        path.write_text(case.manifest(), encoding="utf-8")
        yield path
