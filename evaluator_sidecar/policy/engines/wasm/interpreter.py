"""The native rule form as OPA ``data``, for the reference Rego policy (policies/reference).

That policy interprets the native rule language in Rego, reading the rules
from ``data`` in exactly the form the native engine reads them. This module
makes that ``data`` from a native snapshot, and a WASM snapshot that runs the
same rules on the WASM engine; it changes nothing in the rules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from evaluator_sidecar.policy.model import PKGSnapshotData, sha256_hex

__all__ = ["REFERENCE_ENTRYPOINT", "REFERENCE_POLICY", "rules_as_data", "wasm_twin"]

#: The built reference policy and its entrypoint (``make policies`` rebuilds it).
REFERENCE_POLICY = Path(__file__).resolve().parents[4] / "policies" / "reference" / "policy.wasm"
REFERENCE_ENTRYPOINT = "pkg/result"


def rules_as_data(snapshot: PKGSnapshotData) -> dict[str, Any]:
    """``{"rules", "subtask_types", "facts"}``: a native snapshot's rules as the ``data``."""
    return {
        "rules": list(snapshot.rules),
        "subtask_types": list(snapshot.subtask_types),
        "facts": list(snapshot.facts),
    }


def wasm_twin(
    snapshot: PKGSnapshotData, wasm_bytes: bytes, *, entrypoint: str = REFERENCE_ENTRYPOINT
) -> PKGSnapshotData:
    """A ``wasm`` snapshot running ``snapshot``'s rules on the reference policy ``wasm_bytes``."""
    return dataclasses.replace(
        snapshot,
        engine="wasm",
        wasm_artifact=wasm_bytes,
        checksum=f"sha256-{sha256_hex(wasm_bytes)}",
        rules=[],
        subtask_types=[],
        facts=[],
        data=rules_as_data(snapshot),
        entrypoint=entrypoint,
    )
