"""PolicySnapshot custom resources: reading, shape checks, content checksum, conversion.

A ``PolicySnapshot`` (group ``pkg.seedcore.io``, version ``v1alpha1``) is what a
user applies with kubectl; the offline CLI reads the same YAML. This module
turns one into ``PKGSnapshotData`` (id 0 when not stored) and owns the single
definition of its content checksum (``content_checksum``), used by the CLI, the
operator and the tests:

* engine ``native``: sha256 hex of the canonical JSON of ``{"rules",
  "subtask_types", "facts", "data"}`` as written in the spec (absent parts as
  ``[]``/``{}``). Canonical JSON is ``json.dumps(sort_keys=True,
  separators=(",", ":"), ensure_ascii=False)`` in UTF-8, with one refinement:
  a float with an integral value is written as an integer, because kubectl and
  the API server turn ``1.0`` into ``1`` on the way in, and the operator must
  arrive at the same checksum as ``pkg checksum`` on the file.
* engine ``wasm``: sha256 hex of the artifact's bytes.

``validate_resource`` checks the resource's shape (required fields, allowed
keys, engine/rules/artifact consistency) with the same rules the CRD's schema
and CEL rules enforce on the server, so that ``pkg test`` catches mistakes
before ``kubectl apply`` does. Rule semantics (operators, patterns, cycles) are
the engine's load check. Pure: no I/O; callers pass text and bytes in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from evaluator_sidecar.errors import Problem, SnapshotLoadError
from evaluator_sidecar.model import ENGINES, PKGSnapshotData, normalize_checksum

__all__ = [
    "API_VERSION",
    "ENVS",
    "KIND",
    "ChecksumMismatchError",
    "InvalidResourceError",
    "canonical_json",
    "content_checksum",
    "load_documents",
    "select_policy_snapshot",
    "snapshot_from_resource",
    "validate_resource",
    "wasm_artifact",
]

API_VERSION = "pkg.seedcore.io/v1alpha1"
KIND = "PolicySnapshot"
ENVS = ("prod", "staging", "dev")

_SPEC_KEYS = (
    "version", "env", "engine", "checksum", "subtaskTypes", "rules", "wasm", "data",
    "facts", "fixtures", "signature",
)  # fmt: skip
_RULE_KEYS = (
    "rule_id",
    "rule_name",
    "priority",
    "disabled",
    "rule_source",
    "conditions",
    "emissions",
)
_CONDITION_KEYS = ("condition_type", "condition_key", "operator", "value", "position")
_EMISSION_KEYS = ("subtask_type", "subtask_name", "relationship_type", "params", "position")
_SUBTASK_TYPE_KEYS = ("name", "default_params")
_FACT_KEYS = ("subject", "predicate", "object", "valid_from", "valid_to")
_FIXTURE_KEYS = ("name", "input", "expect")
_WASM_KEYS = ("entrypoint", "inline", "configMapRef")
_CONFIGMAP_REF_KEYS = ("name", "key")
_SIGNATURE_KEYS = ("keyId", "algorithm", "value")


class InvalidResourceError(SnapshotLoadError):
    """The resource itself is malformed; ``problems`` lists every problem with its field path."""


class ChecksumMismatchError(SnapshotLoadError):
    """``spec.checksum`` does not match the content."""

    def __init__(self, version: str, declared: str, actual: str) -> None:
        self.declared = declared
        self.actual = actual
        super().__init__(
            version,
            [
                Problem(
                    "spec.checksum",
                    f"declares {declared} but the content's checksum is {actual}; if the content "
                    "changed on purpose, put the output of `pkg checksum FILE` in spec.checksum",
                )
            ],
        )


# -- YAML ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML as kubectl reads it: timestamps stay text, ``1e3`` is a number, duplicate keys fail."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # the base constructor reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(text: str) -> list[Any]:
    """Every YAML document in ``text`` (empty documents dropped); raises ValueError on bad YAML."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc


def select_policy_snapshot(documents: list[Any], name: str | None = None) -> dict[str, Any]:
    """The one PolicySnapshot among ``documents`` (by ``metadata.name`` when several)."""
    candidates = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if name is not None:
        named = [
            doc for doc in candidates
            if isinstance(doc.get("metadata"), dict) and doc["metadata"].get("name") == name
        ]  # fmt: skip
        if not named:
            raise ValueError(
                f"no PolicySnapshot named {name!r} in the file; it has {_names(candidates)}"
            )
        candidates = named
    if not candidates:
        kinds = sorted({str(doc.get("kind")) for doc in documents if isinstance(doc, dict)})
        raise ValueError(
            f"no PolicySnapshot in the file (kinds found: {', '.join(kinds) or 'none'}); "
            f"expected apiVersion {API_VERSION}, kind {KIND}"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"several PolicySnapshots in the file ({_names(candidates)}); choose one by name"
        )
    return candidates[0]


def _names(docs: list[dict[str, Any]]) -> str:
    names = [
        str(doc["metadata"].get("name")) if isinstance(doc.get("metadata"), dict) else "<unnamed>"
        for doc in docs
    ]
    return ", ".join(names) or "none"


# -- checksum -----------------------------------------------------------------------------


def _canonical_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_value(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value`` (see the module docstring)."""
    return json.dumps(
        _canonical_value(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def content_checksum(spec: Mapping[str, Any], artifact: bytes | None = None) -> str:
    """The content checksum (64 lowercase hex) of a PolicySnapshot spec.

    For engine ``wasm``, ``artifact`` is the module's bytes; when it is None the
    inline artifact is decoded. Raises ValueError when the bytes are not available.
    """
    if spec.get("engine") == "wasm":
        if artifact is None:
            wasm = spec.get("wasm")
            inline = wasm.get("inline") if isinstance(wasm, Mapping) else None
            if not isinstance(inline, str):
                raise ValueError(
                    "the checksum of a wasm snapshot is that of its artifact: supply the "
                    "ConfigMap's bytes (CLI: --wasm-file PATH)"
                )
            artifact = _decode_inline(inline)
        return hashlib.sha256(artifact).hexdigest()
    content = {
        "rules": spec.get("rules") or [],
        "subtask_types": spec.get("subtaskTypes") or [],
        "facts": spec.get("facts") or [],
        "data": spec.get("data") or {},
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def _decode_inline(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"spec.wasm.inline is not valid base64: {exc}") from exc


# -- shape checks -------------------------------------------------------------------------


def _check_keys(
    value: Mapping[str, Any], allowed: tuple[str, ...], where: str, out: list[Problem]
) -> None:
    for key in value:
        if key not in allowed:
            out.append(Problem(where, f"unknown field {key!r}; allowed: {', '.join(allowed)}"))


def _check_list_of_mappings(
    value: Any, allowed: tuple[str, ...], where: str, out: list[Problem]
) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        out.append(Problem(where, f"must be a list; got {type(value).__name__}"))
        return []
    items: list[Mapping[str, Any]] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            out.append(Problem(f"{where}[{i}]", f"must be a mapping; got {type(item).__name__}"))
            continue
        _check_keys(item, allowed, f"{where}[{i}]", out)
        items.append(item)
    return items


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _check_native(spec: Mapping[str, Any], out: list[Problem]) -> None:
    if "wasm" in spec:
        out.append(Problem("spec.wasm", "is for engine wasm; a native snapshot has rules instead"))
    if "rules" not in spec or spec["rules"] is None:
        out.append(Problem("spec.rules", "is required for engine native (a list of rules)"))
    else:
        rules = _check_list_of_mappings(spec["rules"], _RULE_KEYS, "spec.rules", out)
        for i, rule in enumerate(rules):
            where = f"spec.rules[{i}]"
            for name in ("conditions", "emissions"):
                if rule.get(name) is not None:
                    keys = _CONDITION_KEYS if name == "conditions" else _EMISSION_KEYS
                    _check_list_of_mappings(rule[name], keys, f"{where}.{name}", out)
    if spec.get("subtaskTypes") is not None:
        _check_list_of_mappings(spec["subtaskTypes"], _SUBTASK_TYPE_KEYS, "spec.subtaskTypes", out)


def _check_wasm(spec: Mapping[str, Any], out: list[Problem]) -> None:
    for name in ("rules", "subtaskTypes"):
        if spec.get(name):
            out.append(
                Problem(
                    f"spec.{name}", "is for engine native; a wasm snapshot has spec.wasm instead"
                )
            )
    wasm = spec.get("wasm")
    if not isinstance(wasm, Mapping):
        out.append(Problem("spec.wasm", "is required for engine wasm: give inline or configMapRef"))
        return
    _check_keys(wasm, _WASM_KEYS, "spec.wasm", out)
    has_inline = wasm.get("inline") is not None
    has_ref = wasm.get("configMapRef") is not None
    if has_inline == has_ref:
        out.append(Problem("spec.wasm", "give exactly one of inline (base64) and configMapRef"))
    if has_inline:
        if not isinstance(wasm["inline"], str):
            out.append(Problem("spec.wasm.inline", "must be base64 text"))
        else:
            try:
                if not _decode_inline(wasm["inline"]):
                    out.append(Problem("spec.wasm.inline", "decodes to no bytes"))
            except ValueError as exc:
                out.append(Problem("spec.wasm.inline", str(exc)))
    if has_ref:
        ref = wasm["configMapRef"]
        if not isinstance(ref, Mapping):
            out.append(Problem("spec.wasm.configMapRef", "must be a mapping with name and key"))
        else:
            _check_keys(ref, _CONFIGMAP_REF_KEYS, "spec.wasm.configMapRef", out)
            for name in _CONFIGMAP_REF_KEYS:
                if not _non_empty_str(ref.get(name)):
                    out.append(
                        Problem(f"spec.wasm.configMapRef.{name}", "is required (non-empty text)")
                    )
    if wasm.get("entrypoint") is not None and not _non_empty_str(wasm["entrypoint"]):
        out.append(Problem("spec.wasm.entrypoint", "must be non-empty text"))


def _check_fixtures(value: Any, out: list[Problem]) -> None:
    fixtures = _check_list_of_mappings(value, _FIXTURE_KEYS, "spec.fixtures", out)
    seen: dict[str, int] = {}
    for i, fixture in enumerate(fixtures):
        where = f"spec.fixtures[{i}]"
        name = fixture.get("name")
        if not _non_empty_str(name):
            out.append(Problem(f"{where}.name", "is required (non-empty text)"))
        elif str(name) in seen:
            out.append(
                Problem(
                    f"{where}.name", f"{name!r} is also the name of fixtures[{seen[str(name)]}]"
                )
            )
        else:
            seen[str(name)] = i
        if fixture.get("input") is not None and not isinstance(fixture["input"], Mapping):
            out.append(Problem(f"{where}.input", "must be a mapping of task facts"))
        if not isinstance(fixture.get("expect"), Mapping):
            out.append(
                Problem(
                    f"{where}.expect",
                    "is required: a mapping with subtasks, rules, dag or snapshot",
                )
            )


def validate_resource(resource: Any) -> list[Problem]:
    """Every problem with the resource's shape (empty when well-formed)."""
    out: list[Problem] = []
    if not isinstance(resource, Mapping):
        return [Problem("", f"a PolicySnapshot must be a mapping; got {type(resource).__name__}")]
    if resource.get("apiVersion") != API_VERSION:
        out.append(
            Problem("apiVersion", f"must be {API_VERSION!r}; got {resource.get('apiVersion')!r}")
        )
    if resource.get("kind") != KIND:
        out.append(Problem("kind", f"must be {KIND!r}; got {resource.get('kind')!r}"))
    metadata = resource.get("metadata")
    if not isinstance(metadata, Mapping) or not _non_empty_str(metadata.get("name")):
        out.append(Problem("metadata.name", "is required"))
    spec = resource.get("spec")
    if not isinstance(spec, Mapping):
        out.append(Problem("spec", "is required (a mapping)"))
        return out
    _check_keys(spec, _SPEC_KEYS, "spec", out)
    if not _non_empty_str(spec.get("version")):
        out.append(Problem("spec.version", "is required (e.g. 'rules@1.4.0')"))
    if spec.get("env") not in ENVS:
        out.append(
            Problem("spec.env", f"must be one of {', '.join(ENVS)}; got {spec.get('env')!r}")
        )
    engine = spec.get("engine")
    if engine not in ENGINES:
        out.append(Problem("spec.engine", f"must be one of {', '.join(ENGINES)}; got {engine!r}"))
    if spec.get("checksum") is not None:
        checksum = spec["checksum"]
        try:
            normalize_checksum(checksum if isinstance(checksum, str) else repr(checksum))
        except ValueError as exc:
            out.append(Problem("spec.checksum", str(exc)))
    if engine == "native":
        _check_native(spec, out)
    elif engine == "wasm":
        _check_wasm(spec, out)
    if spec.get("data") is not None and not isinstance(spec["data"], Mapping):
        out.append(Problem("spec.data", "must be a mapping"))
    if spec.get("facts") is not None:
        facts = _check_list_of_mappings(spec["facts"], _FACT_KEYS, "spec.facts", out)
        for i, fact in enumerate(facts):
            for name in ("subject", "predicate"):
                if not _non_empty_str(fact.get(name)):
                    out.append(Problem(f"spec.facts[{i}].{name}", "is required (non-empty text)"))
    if spec.get("fixtures") is not None:
        _check_fixtures(spec["fixtures"], out)
    signature = spec.get("signature")
    if signature is not None:
        if not isinstance(signature, Mapping):
            out.append(Problem("spec.signature", "must be a mapping with keyId, algorithm, value"))
        else:
            _check_keys(signature, _SIGNATURE_KEYS, "spec.signature", out)
    try:
        canonical_json({k: spec.get(k) for k in ("rules", "subtaskTypes", "facts", "data")})
    except (TypeError, ValueError) as exc:
        out.append(Problem("spec", f"holds a value JSON cannot represent: {exc}"))
    return out


# -- conversion ---------------------------------------------------------------------------


def _version_of(resource: Any) -> str:
    if isinstance(resource, Mapping):
        spec = resource.get("spec")
        if isinstance(spec, Mapping) and _non_empty_str(spec.get("version")):
            return str(spec["version"])
        metadata = resource.get("metadata")
        if isinstance(metadata, Mapping) and _non_empty_str(metadata.get("name")):
            return str(metadata["name"])
    return "<unnamed>"


def wasm_artifact(
    spec: Mapping[str, Any],
    *,
    wasm_bytes: bytes | None = None,
    configmaps: Mapping[str, Mapping[str, bytes | str]] | None = None,
) -> bytes:
    """The WASM module of a wasm spec: inline, ``wasm_bytes``, or the ConfigMap's binaryData.

    ``configmaps`` maps a ConfigMap name to its binaryData (bytes, or base64 text
    as the API serves it). Raises ValueError saying what is missing.
    """
    wasm = spec.get("wasm")
    if not isinstance(wasm, Mapping):
        raise ValueError("spec.wasm is required for engine wasm")  # noqa: TRY004 - a user error
    inline = wasm.get("inline")
    if isinstance(inline, str):
        return _decode_inline(inline)
    ref = wasm.get("configMapRef")
    if not isinstance(ref, Mapping):
        raise ValueError("spec.wasm needs inline or configMapRef")  # noqa: TRY004 - a user error
    if wasm_bytes is not None:
        return wasm_bytes
    name, key = ref.get("name"), ref.get("key")
    data = (configmaps or {}).get(str(name))
    if data is None or key not in data:
        raise ValueError(
            f"spec.wasm.configMapRef names ConfigMap {name!r} key {key!r}, whose bytes were not "
            "supplied (CLI: pass --wasm-file PATH)"
        )
    value = data[str(key)]
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"ConfigMap {name!r} key {key!r} is not valid base64: {exc}") from exc
    return bytes(value)


def snapshot_from_resource(
    resource: Any,
    *,
    wasm_bytes: bytes | None = None,
    configmaps: Mapping[str, Mapping[str, bytes | str]] | None = None,
    snapshot_id: int = 0,
) -> PKGSnapshotData:
    """A checked PolicySnapshot as ``PKGSnapshotData``.

    Raises InvalidResourceError listing every shape problem, and
    ChecksumMismatchError when ``spec.checksum`` is given and differs from the
    content. The data's ``checksum`` is the content checksum (64 hex).
    """
    version = _version_of(resource)
    problems = validate_resource(resource)
    if problems:
        raise InvalidResourceError(version, problems)
    spec: Mapping[str, Any] = resource["spec"]
    artifact: bytes | None = None
    if spec["engine"] == "wasm":
        try:
            artifact = wasm_artifact(spec, wasm_bytes=wasm_bytes, configmaps=configmaps)
        except ValueError as exc:
            raise InvalidResourceError(version, [Problem("spec.wasm", str(exc))]) from exc
    actual = content_checksum(spec, artifact)
    if spec.get("checksum") is not None:
        declared = normalize_checksum(spec["checksum"])
        if declared != actual:
            raise ChecksumMismatchError(version, declared, actual)
    wasm = spec.get("wasm") if isinstance(spec.get("wasm"), Mapping) else {}
    return PKGSnapshotData(
        id=snapshot_id,
        version=str(spec["version"]),
        engine=str(spec["engine"]),
        wasm_artifact=artifact,
        checksum=actual,
        rules=list(spec.get("rules") or []),
        env=str(spec["env"]),
        subtask_types=list(spec.get("subtaskTypes") or []),
        data=dict(spec.get("data") or {}),
        facts=list(spec.get("facts") or []),
        fixtures=list(spec.get("fixtures") or []),
        entrypoint=wasm.get("entrypoint") if wasm else None,
    )
