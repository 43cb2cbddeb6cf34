"""Migration files as package data, the runner's pure checks, the schema dump's normalization,
and what a DSN may show."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import pytest

from evaluator_sidecar.store.errors import (
    DatabaseUnavailableError,
    MigrationChecksumError,
    MigrationError,
)
from evaluator_sidecar.store.migrations import (
    AppliedMigration,
    Migration,
    check_applied,
    load_migrations,
    migrations_dir,
)
from evaluator_sidecar.store.pool import describe_dsn, redact_dsn, resolve_dsn
from evaluator_sidecar.store.schema_dump import normalize_dump


def _m(version: int, sha: str = "a") -> Migration:
    return Migration(version, f"{version:04d}_m.sql", "SELECT 1;", sha * 64)


class TestPackagedFiles:
    def test_the_migrations_ship_inside_the_package_in_order(self) -> None:
        packaged = importlib.resources.files("evaluator_sidecar.store.sql")
        about = {"schema.sql", "verify_pkg_migrations.sql"}  # beside them, not migrations
        names = sorted(
            p.name for p in packaged.iterdir() if p.name.endswith(".sql") and p.name not in about
        )
        assert names == [m.name for m in load_migrations()]
        assert [m.version for m in load_migrations()] == list(range(1, len(names) + 1))
        assert names[:5] == [
            "0001_pkg_core.sql",
            "0002_pkg_ops.sql",
            "0003_pkg_audit_log.sql",
            "0004_pkg_views_functions.sql",
            "0005_pkg_desired_levels.sql",
        ]

    def test_no_file_manages_its_own_transaction(self) -> None:
        for migration in load_migrations():
            statements = re.findall(r"^\s*(BEGIN|COMMIT|ROLLBACK)\s*;", migration.sql, re.M | re.I)
            assert statements == [], migration.name

    def test_misnamed_and_duplicate_files_are_refused(self, tmp_path: Path) -> None:
        (tmp_path / "1_core.sql").write_text("SELECT 1;")
        with pytest.raises(MigrationError, match=r"NNNN_description\.sql"):
            load_migrations(tmp_path)
        (tmp_path / "1_core.sql").unlink()
        (tmp_path / "0001_a.sql").write_text("SELECT 1;")
        (tmp_path / "0001_b.sql").write_text("SELECT 2;")
        with pytest.raises(MigrationError, match="share number 1"):
            load_migrations(tmp_path)

    def test_the_folder_is_the_packaged_one(self) -> None:
        assert migrations_dir() == Path(
            str(importlib.resources.files("evaluator_sidecar.store.sql"))
        )
        assert (migrations_dir() / "0001_pkg_core.sql").is_file()


class TestApplyPlan:
    def test_pending_are_those_not_yet_applied(self) -> None:
        applied = [AppliedMigration(1, "0001_m.sql", "a" * 64)]
        assert [m.version for m in check_applied([_m(1), _m(2), _m(3)], applied)] == [2, 3]

    def test_a_changed_file_names_both_checksums(self) -> None:
        applied = [AppliedMigration(1, "0001_m.sql", "b" * 64)]
        with pytest.raises(MigrationChecksumError) as caught:
            check_applied([_m(1, "a")], applied)
        assert "b" * 64 in str(caught.value)
        assert "a" * 64 in str(caught.value)
        assert "0001_m.sql" in str(caught.value)

    def test_an_unknown_applied_version_is_refused(self) -> None:
        with pytest.raises(MigrationError, match="newer release"):
            check_applied([_m(1)], [AppliedMigration(2, "0002_x.sql", "a" * 64)])


class TestSchemaDump:
    def test_normalization_drops_what_varies_between_runs(self) -> None:
        dump = (
            "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n"
            "-- Dumped from database version 15.18\nSET statement_timeout = 0;\n"
            "SELECT pg_catalog.set_config('search_path', '', false);\n\n\n"
            "CREATE TABLE public.t (\n    id bigint   \n);\n\n\n\n"
            "CREATE INDEX i ON public.t USING btree (id);\n\n\\unrestrict AbC123\n\n"
        )
        assert normalize_dump(dump) == (
            "CREATE TABLE public.t (\n    id bigint\n);\n\n"
            "CREATE INDEX i ON public.t USING btree (id);\n"
        )


class TestDsn:
    def test_describe_names_host_port_database_and_user(self) -> None:
        target = describe_dsn("postgresql://pkg:pw@db.example:6543/policies")
        assert str(target) == "db.example:6543 (database 'policies', user 'pkg')"

    def test_redact_removes_passwords_wherever_they_are(self) -> None:
        assert redact_dsn("postgresql://pkg:pw@h:5432/d") == "postgresql://pkg:***@h:5432/d"
        assert (
            redact_dsn("postgresql://h/d?user=u&password=pw")
            == "postgresql://h/d?user=u&password=***"
        )
        assert redact_dsn("postgresql://h/d") == "postgresql://h/d"

    def test_resolve_prefers_the_argument_then_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PKG_DATABASE_URL", "postgresql://env/db")
        assert resolve_dsn("postgresql://arg/db") == "postgresql://arg/db"
        assert resolve_dsn(None) == "postgresql://env/db"
        monkeypatch.delenv("PKG_DATABASE_URL")
        with pytest.raises(DatabaseUnavailableError, match="PKG_DATABASE_URL"):
            resolve_dsn(None)
