"""The committed schema snapshot (migrations/schema.sql): dump, normalize, regenerate.

``migrations/schema.sql`` is what the migrations produce on an empty database,
as ``pg_dump --schema-only`` prints it, normalized so that it depends only on
the schema: pg_dump's comment headers, ``SET`` lines, search-path reset and
``\\restrict`` guards (their key is random) are dropped, blank lines collapsed.
A test migrates an empty database and compares; after adding a migration,
regenerate it with::

    python -m evaluator_sidecar.store.schema_dump --dsn postgresql://.../db > migrations/schema.sql

(on a database migrated from empty by ``pkg-migrate``, with a pg_dump of the
server's major version or newer).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence

from evaluator_sidecar.store.errors import PKGError
from evaluator_sidecar.store.pool import DSN_ENV, redact_dsn, resolve_dsn

__all__ = ["dump_schema", "main", "normalize_dump"]

_DROP = re.compile(
    r"^(--.*|SET \w+ = .*;|SELECT pg_catalog\.set_config\('search_path', '', false\);"
    r"|\\restrict .*|\\unrestrict .*)$"
)


def normalize_dump(text: str) -> str:
    """pg_dump output without what varies between runs and servers; one blank line between
    statements; a single trailing newline."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if _DROP.match(line):
            continue
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def dump_schema(dsn: str, *, pg_dump: str | None = None) -> str:
    """The normalized ``pg_dump --schema-only`` of the database at ``dsn``."""
    binary = pg_dump or shutil.which("pg_dump")
    if binary is None:
        raise PKGError("pg_dump is not on PATH: install postgresql-client or pass --pg-dump PATH")
    result = subprocess.run(
        [binary, "--schema-only", "--no-owner", "--no-privileges", "--dbname", dsn],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    if result.returncode != 0:
        raise PKGError(
            f"pg_dump of {redact_dsn(dsn)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return normalize_dump(result.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the normalized schema of ``--dsn`` (default ``$PKG_DATABASE_URL``)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluator_sidecar.store.schema_dump",
        description="Print the normalized schema of a migrated database (migrations/schema.sql).",
    )
    parser.add_argument("--dsn", help=f"postgresql:// DSN (default: ${DSN_ENV})")
    parser.add_argument("--pg-dump", help="the pg_dump binary (default: from PATH)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(dump_schema(resolve_dsn(args.dsn), pg_dump=args.pg_dump))
    except PKGError as exc:
        print(f"schema_dump: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
