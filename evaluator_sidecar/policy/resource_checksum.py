"""The content checksum of a PolicySnapshot: the single definition the CLI, operator and tests use.

* engine ``native``: sha256 hex of the canonical JSON of ``{"rules",
  "subtask_types", "facts", "data"}`` as written in the spec (absent parts as
  ``[]``/``{}``). Canonical JSON is ``json.dumps(sort_keys=True,
  separators=(",", ":"), ensure_ascii=False)`` in UTF-8, with one refinement:
  a float with an integral value is written as an integer, because kubectl and
  the API server turn ``1.0`` into ``1`` on the way in, and the operator must
  arrive at the same checksum as ``pkg checksum`` on the file.
* engine ``wasm``: sha256 hex of the artifact's bytes.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.errors import Problem, SnapshotLoadError

__all__ = ["ChecksumMismatchError", "canonical_json", "content_checksum", "decode_inline"]


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
            artifact = decode_inline(inline)
        return hashlib.sha256(artifact).hexdigest()
    content = {
        "rules": spec.get("rules") or [],
        "subtask_types": spec.get("subtaskTypes") or [],
        "facts": spec.get("facts") or [],
        "data": spec.get("data") or {},
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def decode_inline(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"spec.wasm.inline is not valid base64: {exc}") from exc
