"""``kubectl-pkg audit verify`` against a real PostgreSQL: intact, then an edited row.

The console script is run as a person runs it, with only a database URL (no kubeconfig:
the check needs none).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from evaluator_sidecar.store.client import PKGClient

pytestmark = pytest.mark.integration

PLUGIN = str(Path(sys.executable).parent / "kubectl-pkg")


def verify(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGIN, "audit", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent", **env},
    )


async def test_audit_verify_exits_0_on_an_intact_chain_and_1_naming_the_first_edited_row(
    client: PKGClient, sql: asyncpg.Connection, migrated_dsn: str
) -> None:
    for i in range(3):
        await client.append_audit(
            "rollout.paused", actor="ci", entity_type="rollout", entity_id=f"r{i}", details={}
        )
    intact = verify("--database-url", migrated_dsn)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.strip() == "audit chain intact (3 rows)"
    from_env = verify(PKG_DATABASE_URL=migrated_dsn)  # the same as --database-url
    assert (from_env.returncode, from_env.stdout) == (0, intact.stdout)

    async with sql.transaction():  # what a superuser can do: the append-only triggers skip
        await sql.execute("SET LOCAL session_replication_role = replica")
        await sql.execute("UPDATE pkg_audit_log SET actor = 'mallory' WHERE id = 2")
    broken = verify("--database-url", migrated_dsn)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.startswith("audit chain broken at row 2: its content does not match")
    as_json = json.loads(verify("--database-url", migrated_dsn, "-o", "json").stdout)
    assert as_json["ok"] is False
    assert as_json["rowsChecked"] == 1
    assert (as_json["firstBreak"]["row"], as_json["firstBreak"]["problem"]) == (2, "hash_mismatch")


def test_audit_verify_without_a_database_says_how_to_give_one() -> None:
    missing = verify()
    assert missing.returncode == 2
    assert "set PKG_DATABASE_URL or pass --database-url" in missing.stderr
