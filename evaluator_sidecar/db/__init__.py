"""The PKG PostgreSQL layer: schema migrations, the client and its DAOs.

Modules (``import evaluator_sidecar.db`` loads none of them until a name is used):

- ``migrations``: the ``pkg-migrate`` runner; the SQL files live in
  ``migrations_sql/`` (package data), ``NNNN_description.sql``, forward-only.
- ``pool``: the one asyncpg pool (``Database``), DSN handling that never shows a password.
- ``client``: ``PKGClient``, the facade; ``snapshots``, ``deployments``, ``validation``,
  ``promotions``, ``devices``, ``audit``: the DAOs it composes.
- ``snapshot_rows``, ``audit_chain``: the pure parts (row <-> rule form; the chain's hash).
- ``errors``: ``PKGError`` and its subclasses, and SQLSTATE -> exception mapping.
- ``models``: input/result dataclasses and the audit action names the client writes.

The public names are importable from here and from ``evaluator_sidecar`` itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluator_sidecar.db.audit_chain import AuditChainReport, ChainBreak
    from evaluator_sidecar.db.client import PKGClient
    from evaluator_sidecar.db.errors import (
        ChecksumMismatchError,
        ConflictError,
        DatabaseUnavailableError,
        IntegrityError,
        NotFoundError,
        PKGError,
    )
    from evaluator_sidecar.db.models import AUDIT_ACTIONS, DeviceHeartbeat, TemporalFact

__all__ = [
    "AUDIT_ACTIONS",
    "AuditChainReport",
    "ChainBreak",
    "ChecksumMismatchError",
    "ConflictError",
    "DatabaseUnavailableError",
    "DeviceHeartbeat",
    "IntegrityError",
    "NotFoundError",
    "PKGClient",
    "PKGError",
    "TemporalFact",
]

_LAZY: dict[str, str] = {
    "AUDIT_ACTIONS": "evaluator_sidecar.db.models",
    "AuditChainReport": "evaluator_sidecar.db.audit_chain",
    "ChainBreak": "evaluator_sidecar.db.audit_chain",
    "ChecksumMismatchError": "evaluator_sidecar.db.errors",
    "ConflictError": "evaluator_sidecar.db.errors",
    "DatabaseUnavailableError": "evaluator_sidecar.db.errors",
    "DeviceHeartbeat": "evaluator_sidecar.db.models",
    "IntegrityError": "evaluator_sidecar.db.errors",
    "NotFoundError": "evaluator_sidecar.db.errors",
    "PKGClient": "evaluator_sidecar.db.client",
    "PKGError": "evaluator_sidecar.db.errors",
    "TemporalFact": "evaluator_sidecar.db.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evaluator_sidecar.db' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
