"""PolicySnapshot resources: YAML as kubectl reads it, shape checks that match the CRD,
the one content checksum, and conversion to PKGSnapshotData."""

# ruff: noqa: E501 - tables of cases read best one case per line

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from typing import Any

import pytest
import yaml
from conftest import REFERENCE_SNAPSHOT, REPO, SAMPLE_SNAPSHOT

from evaluator_sidecar.policy.errors import SnapshotLoadError
from evaluator_sidecar.policy.resource import (
    MAX_NESTING,
    ChecksumMismatchError,
    InvalidResourceError,
    canonical_json,
    content_checksum,
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
    validate_resource,
    wasm_artifact,
)
from evaluator_sidecar.policy.resource_schema import SPEC_SCHEMA

WASM = b"\x00asm\x01\x00\x00\x00"


def _native(**spec: Any) -> dict[str, Any]:
    base = {
        "version": "rules@1.4.0",
        "env": "prod",
        "engine": "native",
        "rules": [
            {"rule_id": "rule-001", "rule_name": "high_priority_vip", "priority": 10,
             "conditions": [{"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS"}],
             "emissions": [{"subtask_type": "escalate", "subtask_name": "escalate_vip",
                            "params": {"level": "high"}}]}
        ],
    }  # fmt: skip
    base.update(spec)
    return {"apiVersion": "pkg.seedcore.io/v1alpha1", "kind": "PolicySnapshot",
            "metadata": {"name": "rules-1-4-0"}, "spec": base}  # fmt: skip


def _wasm(**wasm: Any) -> dict[str, Any]:
    resource = _native(engine="wasm", wasm=wasm or {"inline": base64.b64encode(WASM).decode()})
    del resource["spec"]["rules"]
    return resource


# -- YAML ---------------------------------------------------------------------------------


def test_multi_document_yaml_and_selection_by_name() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        + yaml.safe_dump(_native())
        + "---\n"
        + yaml.safe_dump({**_native(), "metadata": {"name": "other"}})
        + "---\n"
    )
    docs = load_documents(text)
    assert len(docs) == 3
    with pytest.raises(
        ValueError, match="several PolicySnapshots in the file \\(rules-1-4-0, other\\)"
    ):
        select_policy_snapshot(docs)
    assert select_policy_snapshot(docs, "other")["metadata"]["name"] == "other"
    with pytest.raises(
        ValueError, match="no PolicySnapshot named 'nope' in the file; it has rules-1-4-0, other"
    ):
        select_policy_snapshot(docs, "nope")


def test_no_policy_snapshot_lists_the_kinds_found() -> None:
    with pytest.raises(
        ValueError, match=r"no PolicySnapshot in the file \(kinds found: ConfigMap\)"
    ):
        select_policy_snapshot(load_documents("kind: ConfigMap\n"))


def test_yaml_reads_like_kubectl() -> None:
    (doc,) = load_documents(
        "when: 2026-01-01T00:00:00Z\nday: 2026-01-01\nbig: 1e3\nsmall: 2.5e-3\nword: yes\nquoted: '1e3'\n"
    )
    assert doc == {
        "when": "2026-01-01T00:00:00Z",  # timestamps stay text, as JSON has them
        "day": "2026-01-01",
        "big": 1000.0,
        "small": 0.0025,
        "word": True,
        "quoted": "1e3",
    }


def test_repeated_short_text_in_a_json_file_is_one_shared_string() -> None:
    (doc,) = load_documents('{"a": "TAG", "b": [{"c": "TAG"}], "d": "' + "x" * 100 + '"}')
    assert doc["a"] is doc["b"][0]["c"]  # a cached snapshot's rules keep one copy each
    assert doc["d"] == "x" * 100


def test_a_json_file_reads_as_its_yaml_reading() -> None:
    text = json.dumps({"big": 1e3, "n": 12, "s": "2026-01-01", "l": [True, None, -0.5]})
    assert load_documents(text) == list(yaml.safe_load_all(text))
    reference = load_documents(REFERENCE_SNAPSHOT.read_text())
    assert load_documents(json.dumps(reference[0])) == reference


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a: 1\na: 2\n", "found duplicate key 'a'"),
        ('{"a": 1, "b": {"c": 1, "c": 2}}', "found duplicate key 'c'"),
        ('{"a": NaN, "b": [1', "not valid YAML"),  # not JSON: the YAML parser says why
        ("a: [1\n", "not valid YAML"),
    ],
)
def test_bad_yaml(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        load_documents(text)


# -- shape ------------------------------------------------------------------------------


def test_sample_and_reference_snapshots_are_well_formed() -> None:
    for path in (SAMPLE_SNAPSHOT, REFERENCE_SNAPSHOT):
        resource = select_policy_snapshot(load_documents(path.read_text()))
        assert validate_resource(resource) == []


def _problems(resource: Any) -> list[str]:
    return [str(p) for p in validate_resource(resource)]


def _with(resource: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    target: Any = out
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("apiVersion", "v1", "apiVersion: must be 'pkg.seedcore.io/v1alpha1'; got 'v1'"),
        ("kind", "Snapshot", "kind: must be 'PolicySnapshot'; got 'Snapshot'"),
        ("metadata", {}, "metadata.name: is required"),
        ("spec", _DELETE, "spec: is required (a mapping)"),
        ("spec.version", _DELETE, "spec.version: is required"),
        ("spec.version", "1.4.0", "spec.version: '1.4.0' does not match"),
        ("spec.env", "qa", "spec.env: must be one of prod, staging, dev; got 'qa'"),
        ("spec.engine", "lua", "spec.engine: must be one of native, wasm; got 'lua'"),
        ("spec.checksum", "abc", "spec.checksum: checksum 'abc' is not a sha256"),
        ("spec.autoPromote", "yes", "spec.autoPromote: must be a boolean; got string"),
        ("spec.colour", "red", "spec: unknown field 'colour'; allowed: version, env, engine"),
        ("spec.rules", _DELETE, "spec.rules: is required for engine native (a list of rules)"),
        ("spec.rules", {}, "spec.rules: must be an array; got object"),
        ("spec.rules.0.rule_id", _DELETE, "spec.rules[0].rule_id: is required"),
        ("spec.rules.0.priority", "10", "spec.rules[0].priority: must be an integer; got string"),
        ("spec.rules.0.disabled", 0, "spec.rules[0].disabled: must be a boolean; got integer"),
        ("spec.rules.0.salience", 1, "spec.rules[0]: unknown field 'salience'"),
        ("spec.rules.0.conditions.0.condition_key", _DELETE, "spec.rules[0].conditions[0].condition_key: is required"),
        ("spec.rules.0.conditions.0.operator", "LIKE", "spec.rules[0].conditions[0].operator: must be one of =, !="),
        ("spec.rules.0.conditions.0.position", -1, "spec.rules[0].conditions[0].position: must be at least 0; got -1"),
        ("spec.rules.0.emissions.0.relationship_type", "AFTER", "spec.rules[0].emissions[0].relationship_type: must be one of EMITS, ORDERS, GATE"),
        ("spec.rules.0.emissions.0.default_params", {}, "spec.rules[0].emissions[0]: unknown field 'default_params'"),
        ("spec.rules.0.conditions", [{}] * 65, "spec.rules[0].conditions: has 65 items; at most 64 are allowed"),
        ("spec.wasm", {"inline": "AA=="}, "spec.wasm: is for engine wasm; a native snapshot has spec.rules"),
        ("spec.facts", [{"subject": "s", "predicate": "p", "valid_to": 1767225600}], "spec.facts[0].valid_to: must be a string"),
        ("spec.facts", [{"subject": "s", "predicate": "p", "valid_to": "tomorrow"}], "spec.facts[0].valid_to: 'tomorrow' is not an RFC 3339 time"),
        ("spec.fixtures", [{"name": "a", "input": {}}], "spec.fixtures[0].expect: is required"),
        ("spec.fixtures", [{"name": "a", "input": {}, "expect": {}}, {"name": "a", "input": {}, "expect": {}}],
         "spec.fixtures[1].name: 'a' is also the name of fixtures[0]"),
        ("spec.data", [], "spec.data: must be an object; got array"),
        ("spec.signature", {"keyId": "k", "sig": "x"}, "spec.signature: unknown field 'sig'"),
        ("spec.data", {"x": float("nan")}, "spec: holds a value JSON cannot represent"),
    ],
)  # fmt: skip
def test_shape_problems_name_the_field(path: str, value: Any, expected: str) -> None:
    problems = _problems(_with(_native(), path, value))
    assert any(p.startswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"inline": "AA==", "configMapRef": {"name": "m", "key": "k"}}, "spec.wasm: give exactly one of wasm.inline or wasm.configMapRef"),
        ({}, "spec.wasm: give exactly one of wasm.inline or wasm.configMapRef"),
        ({"inline": "not base64!"}, "spec.wasm.inline: is not valid base64: Only base64 data is allowed"),
        ({"inline": ""}, "spec.wasm.inline: decodes to no bytes"),
        ({"configMapRef": {"name": "m"}}, "spec.wasm.configMapRef.key: is required"),
    ],
)  # fmt: skip
def test_wasm_artifact_shape(change: dict[str, Any], expected: str) -> None:
    problems = _problems(_with(_wasm(), "spec.wasm", change))
    assert expected in problems, problems


def test_wasm_snapshots_have_no_native_parts() -> None:
    resource = _with(_wasm(), "spec.rules", [])
    resource["spec"]["subtaskTypes"] = []
    assert _problems(resource) == [
        "spec.rules: is for engine native; a wasm snapshot has spec.wasm",
        "spec.subtaskTypes: is for engine native; a wasm snapshot has spec.wasm",
    ]


def test_several_problems_are_reported_together() -> None:
    resource = _with(_with(_native(), "spec.env", "qa"), "spec.engine", "lua")
    assert len(_problems(resource)) == 2


def _crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "policysnapshots.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]  # type: ignore[no-any-return]


def _compare(ours: dict[str, Any], theirs: dict[str, Any], where: str, out: list[str]) -> None:
    if "type" in ours and ours["type"] != theirs.get("type"):
        out.append(f"{where}: type {ours['type']} != {theirs.get('type')}")
    for key in ("required", "enum", "maxItems", "maxLength", "minimum"):
        mine, crd = ours.get(key), theirs.get(key)
        if key == "required" and mine is not None:
            mine = sorted(mine)
            crd = sorted(crd or [])
        if mine != crd and not (key == "maxLength" and mine is None):
            out.append(f"{where}: {key} {mine!r} != {crd!r}")
    if "pattern" in ours and ours["pattern"].pattern != theirs.get("pattern"):
        out.append(f"{where}: pattern {ours['pattern'].pattern!r} != {theirs.get('pattern')!r}")
    if ours.get("minLength", 0) != theirs.get("minLength", 0):
        out.append(f"{where}: minLength {ours.get('minLength')} != {theirs.get('minLength')}")
    if "properties" in ours or "properties" in theirs:
        mine_props = ours.get("properties", {})
        crd_props = theirs.get("properties", {})
        if set(mine_props) != set(crd_props):
            out.append(f"{where}: properties {sorted(mine_props)} != {sorted(crd_props)}")
        for name in set(mine_props) & set(crd_props):
            _compare(mine_props[name], crd_props[name], f"{where}.{name}", out)
    if "items" in ours:
        _compare(ours["items"], theirs.get("items", {}), f"{where}[]", out)


def test_shape_checks_match_the_crd_schema() -> None:
    differences: list[str] = []
    _compare(SPEC_SCHEMA, _crd_spec_schema(), "spec", differences)
    assert differences == []


# -- versions and nesting ----------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    ["rules@1.4.0", "wh@0.0.1", "edge.door_v2@10.20.30", "rules@2.0.0-rc.1",
     "rules@1.0.0-alpha.beta-2+build.5", "rules@1.0.0+20261204", "rules@3.0.0-e2e-1-1234"],
)  # fmt: skip
def test_a_name_at_a_semantic_version_is_accepted(version: str) -> None:
    assert _problems(_with(_native(), "spec.version", version)) == []


@pytest.mark.parametrize(
    "version",
    ["wh@banana", "wh@1.2", "wh@1", "wh@01.2.3", "wh@1.02.3", "wh@1.2.3-01", "wh@1.2.3-",
     "wh@1.2.3+", "wh@v1.2.3", "@1.2.3", "wh1.2.3", "wh@1.2.3@4.5.6", "wh@1.2.3 "],
)  # fmt: skip
def test_a_version_that_is_not_name_at_semver_is_refused_showing_the_form(version: str) -> None:
    problems = _problems(_with(_native(), "spec.version", version))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"spec.version: {version!r} does not match"), problems
    assert "rules@1.4.0, NAME@SEMVER" in problems[0]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_free_form_fields_may_nest_up_to_the_limit() -> None:
    # spec (1) > data (2) > ... : the data object may take the remaining levels.
    resource = _with(_native(), "spec.data", _nested(MAX_NESTING - 1))
    assert _problems(resource) == []


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [("spec.data", _nested(MAX_NESTING + 5), "spec.data.a.a"),
     ("spec.rules.0.emissions.0.params", _nested(MAX_NESTING + 5), "spec.rules[0].emissions[0].params.a"),
     ("spec.fixtures", [{"name": "f", "input": _nested(MAX_NESTING + 5), "expect": {}}], "spec.fixtures[0].input.a")],
)  # fmt: skip
def test_deeper_nesting_is_one_clear_problem_naming_the_path(
    path: str, value: Any, where: str
) -> None:
    resource = _with(_native(), path, value)
    problems = _problems(resource)
    assert len(problems) == 1, problems
    assert problems[0].startswith("spec: nests more than 64 levels deep (at " + where), problems


def test_nesting_far_beyond_pythons_recursion_limit_is_refused_not_crashed() -> None:
    # What the API server stores: thousands of levels, past any recursive walk.
    deep: Any = 1
    for _ in range(20_000):
        deep = [deep]
    resource = _with(_native(), "spec.data", {"x": deep})
    with pytest.raises(InvalidResourceError, match="nests more than 64 levels deep"):
        snapshot_from_resource(resource)


# -- checksum -----------------------------------------------------------------------------


def test_native_checksum_is_sha256_of_the_canonical_json() -> None:
    spec = _native(subtaskTypes=[{"name": "escalate"}], facts=[], data={"k": "v"})["spec"]
    content = {
        "rules": spec["rules"],
        "subtask_types": spec["subtaskTypes"],
        "facts": [],
        "data": {"k": "v"},
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert content_checksum(spec) == hashlib.sha256(text.encode()).hexdigest()


def test_checksum_ignores_key_order_and_non_content_fields() -> None:
    spec = _native()["spec"]
    reordered = dict(reversed(list(spec.items())))
    reordered["rules"] = [dict(reversed(list(r.items()))) for r in spec["rules"]]
    assert content_checksum(reordered) == content_checksum(spec)
    changed_env = {**spec, "env": "dev", "version": "rules@9.9.9", "fixtures": [{"name": "x"}]}
    assert content_checksum(changed_env) == content_checksum(spec)
    assert content_checksum({**spec, "data": {"k": 1}}) != content_checksum(spec)


def test_checksum_survives_the_api_servers_number_rewriting() -> None:
    typed = _native(data={"threshold": 1.0, "ratio": 0.5})["spec"]
    served = _native(data={"threshold": 1, "ratio": 0.5})["spec"]
    assert content_checksum(typed) == content_checksum(served)
    assert canonical_json({"a": [2.0, 2.5, "é"]}) == '{"a":[2,2.5,"é"]}'.encode()


def test_absent_parts_count_as_empty() -> None:
    spec = _native()["spec"]
    assert content_checksum(spec) == content_checksum(
        {**spec, "subtaskTypes": [], "facts": None, "data": {}}
    )


def test_wasm_checksum_is_the_artifacts_sha256() -> None:
    expected = hashlib.sha256(WASM).hexdigest()
    assert content_checksum(_wasm()["spec"]) == expected
    ref = _wasm(configMapRef={"name": "m", "key": "policy.wasm"})["spec"]
    assert content_checksum(ref, WASM) == expected
    with pytest.raises(ValueError, match="supply the ConfigMap's bytes"):
        content_checksum(ref)


# -- conversion ---------------------------------------------------------------------------


def test_native_resource_becomes_snapshot_data() -> None:
    resource = _native(subtaskTypes=[{"name": "escalate", "default_params": {"level": "low"}}],
                       facts=[{"subject": "s", "predicate": "p"}], data={"k": 1},
                       fixtures=[{"name": "f", "input": {}, "expect": {}}])  # fmt: skip
    data = snapshot_from_resource(resource)
    assert (data.id, data.version, data.env, data.engine) == (0, "rules@1.4.0", "prod", "native")
    assert data.wasm_artifact is None
    assert data.checksum == content_checksum(resource["spec"])
    assert data.rules == resource["spec"]["rules"]
    assert data.subtask_types == [{"name": "escalate", "default_params": {"level": "low"}}]
    assert data.facts == [{"subject": "s", "predicate": "p"}]
    assert data.data == {"k": 1}
    assert data.fixtures == [{"name": "f", "input": {}, "expect": {}}]
    assert snapshot_from_resource(resource, snapshot_id=7).id == 7


@pytest.mark.parametrize("prefix", ["", "sha256:", "sha256-", "SHA256:"])
def test_declared_checksum_is_verified_in_any_accepted_form(prefix: str) -> None:
    resource = _native()
    digest = content_checksum(resource["spec"])
    resource["spec"]["checksum"] = prefix + (digest.upper() if prefix.isupper() else digest)
    assert snapshot_from_resource(resource).checksum == digest


def test_checksum_mismatch_names_both_values() -> None:
    resource = _native(checksum="sha256:" + "0" * 64)
    actual = content_checksum(resource["spec"])
    with pytest.raises(ChecksumMismatchError) as info:
        snapshot_from_resource(resource)
    assert info.value.declared == "0" * 64
    assert info.value.actual == actual
    message = str(info.value)
    assert f"declares {'0' * 64} but the content's checksum is {actual}" in message
    assert "pkg checksum FILE" in message
    assert isinstance(info.value, SnapshotLoadError)


def test_invalid_resource_lists_every_problem() -> None:
    with pytest.raises(InvalidResourceError) as info:
        snapshot_from_resource(_with(_with(_native(), "spec.env", "qa"), "kind", "Other"))
    assert [p.where for p in info.value.problems] == ["kind", "spec.env"]
    assert info.value.version == "rules@1.4.0"


def test_inline_wasm_is_decoded() -> None:
    data = snapshot_from_resource(
        _wasm(inline=base64.b64encode(WASM).decode(), entrypoint="pkg/evaluate")
    )
    assert data.wasm_artifact == WASM
    assert data.engine == "wasm"
    assert data.entrypoint == "pkg/evaluate"
    assert data.rules == []
    assert data.checksum == hashlib.sha256(WASM).hexdigest()


def test_configmap_wasm_from_caller_supplied_bytes() -> None:
    resource = _wasm(configMapRef={"name": "policy", "key": "policy.wasm"})
    assert snapshot_from_resource(resource, wasm_bytes=WASM).wasm_artifact == WASM
    served = {"policy": {"policy.wasm": base64.b64encode(WASM).decode()}}
    assert snapshot_from_resource(resource, configmaps=served).wasm_artifact == WASM
    assert (
        snapshot_from_resource(resource, configmaps={"policy": {"policy.wasm": WASM}}).wasm_artifact
        == WASM
    )
    with pytest.raises(
        InvalidResourceError,
        match=re.escape("ConfigMap 'policy' key 'policy.wasm', whose bytes were not supplied"),
    ):
        snapshot_from_resource(resource)
    with pytest.raises(ValueError, match="is not valid base64"):
        wasm_artifact(resource["spec"], configmaps={"policy": {"policy.wasm": "!!"}})


def test_wasm_checksum_is_verified_against_the_artifact() -> None:
    resource = _wasm(configMapRef={"name": "policy", "key": "policy.wasm"})
    resource["spec"]["checksum"] = hashlib.sha256(WASM).hexdigest()
    assert snapshot_from_resource(resource, wasm_bytes=WASM).wasm_artifact == WASM
    with pytest.raises(ChecksumMismatchError):
        snapshot_from_resource(resource, wasm_bytes=WASM + b"\x00")
