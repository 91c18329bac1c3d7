"""floxyctl against databases it may not change: reads never migrate, roles with fewer rights.

Issue 16 item 4: every database command used to apply migrations first, so a role that may only
read got `permission denied` from `status` and `inspect`. Reads now check the schema and, when it
is missing or behind, say in one line to run `floxyctl migrate` (exit 6).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from floxy_core.resources import migrations_dir
from floxy_core.storage.postgres.migrations import available, migrate
from tests.e2e.test_db_cli import floxyctl
from tests.pgcluster import Cluster

READS = (
    ["status"],
    ["list", "--status", "running"],
    ["inspect", "1"],
    ["workflows"],
    ["dlq", "list"],
    ["dlq", "show", "1"],
)
SCHEMA_EXIT = 6


def schema_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 6 with exactly one `floxyctl: error:` line naming `floxyctl migrate`."""
    assert result.returncode == SCHEMA_EXIT, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("floxyctl: error: "), result.stderr
    assert "run `floxyctl migrate`" in lines[0]
    return lines[0]


@pytest.fixture
def empty_db(pg_cluster: Cluster) -> Iterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    name = "e_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_cluster.dsn(name)
    try:
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


def _has_schema(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regnamespace('workflows')").fetchone()
    return row is not None and row[0] is not None


def test_reads_never_migrate_and_say_to_run_migrate(empty_db: str, tmp_path: Path) -> None:
    for args in READS:
        line = schema_error(floxyctl(*args, dsn=empty_db))
        assert "no floxy schema in the database at 127.0.0.1:" in line, args
    assert not _has_schema(empty_db)

    # A schema one migration behind the code: the reads name what is pending.
    older = tmp_path / "older"
    older.mkdir()
    *applied, last = available()
    for migration in applied:
        shutil.copy(migrations_dir() / migration.filename, older / migration.filename)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate(conn, directory=older)
    for args in READS:
        line = schema_error(floxyctl(*args, dsn=empty_db))
        assert f"is older than this floxyctl (1 pending: {last.filename})" in line, args
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT max(version) FROM workflows.floxy_migrations").fetchone() == (
            applied[-1].version,
        )

    done = floxyctl("migrate", dsn=empty_db)
    assert done.returncode == 0 and f"applied {last.filename}" in done.stdout, done.stderr
    status = floxyctl("status", dsn=empty_db)
    assert status.returncode == 0 and status.stderr == "", status.stderr


def test_a_role_that_may_only_read_runs_the_reads(pg_cluster: Cluster, pg_dsn: str) -> None:
    role = "reader_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA workflows TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA workflows TO {role}")
    as_reader = pg_dsn.replace("user=postgres", f"user={role}")
    try:
        for args in READS:
            result = floxyctl(*args, dsn=as_reader)
            assert "permission denied" not in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr
        result = floxyctl("status", dsn=as_reader)
        assert result.returncode == 0, result.stderr
        assert "No instances match." in result.stdout
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
