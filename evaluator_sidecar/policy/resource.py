"""PolicySnapshot custom resources: from the YAML a user applies to ``PKGSnapshotData``.

A ``PolicySnapshot`` (group ``pkg.seedcore.io``, version ``v1alpha1``) is what a
user applies with kubectl; the offline CLI reads the same YAML. This module
turns one into ``PKGSnapshotData`` (id 0 when not stored) and finds a wasm
snapshot's module. It is also the one import path for the resource helpers,
which live by responsibility in sibling modules and are re-exported here:

* ``resource_yaml``: reading YAML as kubectl does, choosing the PolicySnapshot;
* ``resource_schema``: the spec's schema and ``validate_resource`` (shape checks);
* ``resource_checksum``: the single definition of the content checksum.

Pure: no I/O; callers pass text and bytes in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.errors import Problem
from evaluator_sidecar.policy.model import PKGSnapshotData, normalize_checksum
from evaluator_sidecar.policy.resource_checksum import (
    ChecksumMismatchError,
    canonical_json,
    content_checksum,
    decode_inline,
)
from evaluator_sidecar.policy.resource_schema import (
    API_VERSION,
    ENVS,
    KIND,
    MAX_NESTING,
    InvalidResourceError,
    nesting_problem,
    non_empty_str,
    validate_resource,
)
from evaluator_sidecar.policy.resource_yaml import load_documents, select_policy_snapshot

__all__ = [
    "API_VERSION",
    "ENVS",
    "KIND",
    "MAX_NESTING",
    "ChecksumMismatchError",
    "InvalidResourceError",
    "canonical_json",
    "content_checksum",
    "load_documents",
    "nesting_problem",
    "select_policy_snapshot",
    "snapshot_from_resource",
    "validate_resource",
    "wasm_artifact",
]


def _version_of(resource: Any) -> str:
    if isinstance(resource, Mapping):
        spec = resource.get("spec")
        if isinstance(spec, Mapping) and non_empty_str(spec.get("version")):
            return str(spec["version"])
        metadata = resource.get("metadata")
        if isinstance(metadata, Mapping) and non_empty_str(metadata.get("name")):
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
        return decode_inline(inline)
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
        signature=dict(spec["signature"]) if isinstance(spec.get("signature"), Mapping) else None,
    )
