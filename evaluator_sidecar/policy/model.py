"""The data both sides share: a loaded snapshot, and checksum helpers.

``PKGSnapshotData`` is a frozen dataclass. Native rules use the
hierarchical form the database client assembles (rules -> conditions ->
emissions -> subtask types)::

    {"rule_id": "rule-001", "rule_name": "high_priority_vip", "priority": 10,
     "disabled": False,
     "conditions": [{"condition_type": "TAG", "condition_key": "vip",
                     "operator": "EXISTS", "value": None, "position": 0}],
     "emissions": [{"subtask_type": "escalate", "subtask_name": "escalate_vip",
                    "relationship_type": "EMITS", "params": {"level": "high"},
                    "position": 0, "default_params": {}}]}

Condition values arrive as text (PostgreSQL stores them as TEXT). An emission
may carry its subtask type's ``default_params``; otherwise they are looked up in
``subtask_types`` by name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENGINES",
    "ENVS",
    "PKGSnapshotData",
    "normalize_checksum",
    "sha256_hex",
]

ENGINES = ("native", "wasm")
ENVS = ("prod", "staging", "dev")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 lowercase hex characters (the database's form)."""
    return hashlib.sha256(data).hexdigest()


def normalize_checksum(checksum: str) -> str:
    """Accept ``sha256-<hex>``, ``sha256:<hex>`` or bare hex; return 64 lowercase hex.

    Raises ValueError naming the accepted forms when ``checksum`` is none of them.
    """
    value = checksum.strip().lower()
    for prefix in ("sha256-", "sha256:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    if not _HEX64.match(value):
        raise ValueError(
            f"checksum {checksum!r} is not a sha256: give 64 hex characters, "
            "optionally prefixed with 'sha256-' or 'sha256:'"
        )
    return value


@dataclass(frozen=True)
class PKGSnapshotData:
    """One snapshot, as loaded from PostgreSQL or from a PolicySnapshot resource."""

    id: int
    version: str
    engine: str  # 'native' | 'wasm'
    wasm_artifact: bytes | None
    checksum: str | None
    rules: list[dict[str, Any]]
    env: str = "prod"
    #: ``[{"name": ..., "default_params": {...}}]``: the snapshot's subtask types.
    subtask_types: list[dict[str, Any]] = field(default_factory=list)
    #: Static data: OPA's ``data`` document for WASM policies.
    data: dict[str, Any] = field(default_factory=dict)
    #: The snapshot's own temporal fact store (``subject``, ``predicate``, ``object``,
    #: ``valid_from``, ``valid_to``), consulted by native ``FACT`` conditions.
    facts: list[dict[str, Any]] = field(default_factory=list)
    #: Validation fixtures: ``{"name", "input", "expect"}``.
    fixtures: list[dict[str, Any]] = field(default_factory=list)
    #: The WASM policy's entrypoint; ``None`` means the engine's documented default.
    entrypoint: str | None = None
    #: ``spec.signature`` (``{keyId, algorithm, value}``) when signed; see ``policy.signing``.
    signature: dict[str, Any] | None = None
