"""The PKG PostgreSQL layer: schema migrations, the client and its DAOs.

Modules (each imported on demand; ``import evaluator_sidecar.db`` loads nothing):

- ``migrations``: the ``pkg-migrate`` runner; the SQL files live in
  ``migrations_sql/`` (package data), ``NNNN_description.sql``, forward-only.
- ``pool``: the one asyncpg pool (``Database``), DSN handling that never shows a password.
- ``client``: ``PKGClient``, the facade; ``snapshots``, ``deployments``, ``validation``,
  ``promotions``, ``devices``, ``audit``: the DAOs it composes.
- ``snapshot_rows``, ``audit_chain``: the pure parts (row <-> rule form; the chain's hash).
- ``errors``: ``PKGError`` and its subclasses, and SQLSTATE -> exception mapping.
- ``models``: input/result dataclasses and the audit action names the client writes.

The public names are also importable from ``evaluator_sidecar`` itself.
"""

__all__: list[str] = []
