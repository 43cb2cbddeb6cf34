"""The store: the PKG PostgreSQL layer (schema migrations, the client and its DAOs).

It owns everything that talks to PostgreSQL. It may import the policy core
(``evaluator_sidecar.policy``: the snapshot model, resources, the evaluator for
validation runs) and ``evaluator_sidecar.settings``, never ``evaluator_sidecar.signals``
(Redis) nor the sidecar's runtime nor the operator; import-linter contracts hold this.

Modules (``import evaluator_sidecar.store`` loads none of them until a name is used):

- ``migrations``: the ``pkg-migrate`` runner; the SQL files, ``NNNN_description.sql``,
  forward-only, live in the repository's ``migrations/`` folder, shipped as the package
  data of ``evaluator_sidecar.store.sql``.
- ``pool``: the one asyncpg pool (``Database``), DSN handling that never shows a password.
- ``client``: ``PKGClient``, the facade; ``snapshots``, ``deployments``, ``validation``,
  ``promotions``, ``devices``, ``audit``: the DAOs it composes; ``forwarding``: the
  typed forwarders that give the client its DAOs' methods; ``idempotency``: the one
  retry of a write keyed by an idempotency key.
- ``snapshot_reads``, ``snapshot_writes``, ``snapshot_lifecycle``, ``temporal_facts``:
  the parts ``PKGSnapshotsDAO`` is composed of; ``snapshot_inserts``: a new
  snapshot's rows.
- ``snapshot_rows``, ``snapshot_checks``, ``snapshot_prepare``, ``snapshot_assembly``,
  ``snapshot_verify``, ``audit_chain``: the pure parts (row types; content checked and
  normalized going in; rows back to the rule form; the checksum verified on store and
  the rows on every read; the chain's hash).
- ``lease``: the operator replicas' lease (a session-level advisory lock).
- ``errors``: ``PKGError`` and its subclasses, and SQLSTATE -> exception mapping.
- ``models``: input/result dataclasses and the audit action names the client writes.

The public names are importable from here and from ``evaluator_sidecar`` itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluator_sidecar.store.audit_chain import AuditChainReport, ChainBreak
    from evaluator_sidecar.store.client import PKGClient
    from evaluator_sidecar.store.errors import (
        ChecksumMismatchError,
        ConflictError,
        DatabaseUnavailableError,
        IntegrityError,
        NotFoundError,
        PKGError,
    )
    from evaluator_sidecar.store.models import AUDIT_ACTIONS, DeviceHeartbeat, TemporalFact

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
    "AUDIT_ACTIONS": "evaluator_sidecar.store.models",
    "AuditChainReport": "evaluator_sidecar.store.audit_chain",
    "ChainBreak": "evaluator_sidecar.store.audit_chain",
    "ChecksumMismatchError": "evaluator_sidecar.store.errors",
    "ConflictError": "evaluator_sidecar.store.errors",
    "DatabaseUnavailableError": "evaluator_sidecar.store.errors",
    "DeviceHeartbeat": "evaluator_sidecar.store.models",
    "IntegrityError": "evaluator_sidecar.store.errors",
    "NotFoundError": "evaluator_sidecar.store.errors",
    "PKGClient": "evaluator_sidecar.store.client",
    "PKGError": "evaluator_sidecar.store.errors",
    "TemporalFact": "evaluator_sidecar.store.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evaluator_sidecar.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
