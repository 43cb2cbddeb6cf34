"""PKGSnapshotsDAO: snapshots in and out, their artifacts, temporal facts, soft delete, integrity.

The DAO is composed of one mixin per responsibility, each in its own module and
each using the DAO's pool (``_db``) and default environment (``_env``):

- ``snapshot_reads.SnapshotReads``: whole snapshots for the evaluator (their rows
  verified against the hash recorded at store time), snapshot rows, the active
  artifact;
- ``snapshot_writes.SnapshotWrites``: storing a snapshot in one transaction,
  idempotently (the same content under the same version or resource uid returns
  the stored id and writes nothing), a version owned by one resource, a given
  checksum compared with the one the store computes;
- ``snapshot_lifecycle.SnapshotLifecycle``: history questions, archive and
  restore, the integrity check;
- ``temporal_facts.TemporalFacts``: facts valid within a time range.

The pure parts live beside them: ``snapshot_rows`` (the row types and value
forms), ``snapshot_checks`` and ``snapshot_prepare`` (content in),
``snapshot_assembly`` (rows out), ``snapshot_verify`` (the checks on store and on
read), ``snapshot_inserts`` (the bulk inserts).
"""

from __future__ import annotations

from evaluator_sidecar.store.pool import Database
from evaluator_sidecar.store.snapshot_lifecycle import SnapshotLifecycle
from evaluator_sidecar.store.snapshot_reads import SnapshotReads
from evaluator_sidecar.store.snapshot_rows import check_env
from evaluator_sidecar.store.snapshot_writes import SnapshotWrites
from evaluator_sidecar.store.temporal_facts import TemporalFacts

__all__ = ["PKGSnapshotsDAO"]


class PKGSnapshotsDAO(SnapshotReads, SnapshotWrites, SnapshotLifecycle, TemporalFacts):
    """Snapshots, their content and artifacts, temporal facts, archive and integrity checks."""

    def __init__(self, db: Database, env: str = "prod") -> None:
        self._db = db
        self._env = check_env(env)
