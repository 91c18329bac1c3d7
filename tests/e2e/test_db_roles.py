"""floxyctl against databases it may not change: reads never migrate, roles with fewer rights.

Issue 16 item 4: every database command used to apply migrations first, so a role that may only
read got `permission denied` from `status` and `inspect`. Reads now check the schema and, when it
is missing or behind, say in one line to run `floxyctl migrate` (exit 6).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    ["logs", "1"],
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


# -- the least-privilege setup of docs/floxyd.md, run exactly as written -----------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "floxyd.md"
ROLES = ("floxy_owner", "floxy_worker", "floxy_reader")
ROLE_FLOWS = """\
handlers:
  - name: pack
    exec: echo '{"packed":true}'
flows:
  - name: parcel
    steps:
      - pack
"""


def doc_sql(marker: str) -> str:
    """The ```sql block right after `<!-- database-roles: MARKER -->` in docs/floxyd.md."""
    text = DOC.read_text(encoding="utf-8")
    head = f"<!-- database-roles: {marker} -->\n```sql\n"
    assert head in text, f"no {head!r} in {DOC}"
    return text.split(head, 1)[1].split("\n```", 1)[0]


def run_as_psql(conn: psycopg.Connection[object], script: str) -> None:
    """Each statement on its own, in autocommit, as `psql -f` would run them."""
    for statement in script.split(";\n"):
        if statement.strip(" \n;"):
            conn.execute(statement.encode())


@pytest.fixture
def doc_roles(pg_cluster: Cluster) -> Iterator[dict[str, str]]:
    """The doc's roles and `floxy` database on the test cluster; a DSN per role."""
    with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
        taken = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),)
        ).fetchall()
        assert not taken, f"roles {taken} already exist on the test server"
        run_as_psql(conn, doc_sql("cluster"))
    base = pg_cluster.dsn("floxy")
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            run_as_psql(conn, doc_sql("database"))
        yield {
            "superuser": base,
            **{r.removeprefix("floxy_"): base.replace("user=postgres", f"user={r}") for r in ROLES},
        }
    finally:
        pg_cluster.drop_database(base)
        with psycopg.connect(pg_cluster.admin_dsn, autocommit=True) as conn:
            for role in ROLES:
                conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_the_documented_roles_migrate_work_and_read(
    doc_roles: dict[str, str], tmp_path: Path
) -> None:
    owner, worker, reader = doc_roles["owner"], doc_roles["worker"], doc_roles["reader"]
    flows = tmp_path / "parcel.yaml"
    flows.write_text(ROLE_FLOWS)

    # Before the owner migrates, reads and writes say so (neither migrates); the worker cannot.
    schema_error(floxyctl("status", dsn=reader))
    schema_error(floxyctl("register", "-f", str(flows), dsn=worker))
    refused = floxyctl("migrate", dsn=worker)
    assert refused.returncode == 2 and "permission denied" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    migrated = floxyctl("migrate", dsn=owner)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 001_schema.sql" in migrated.stdout

    # The worker writes rows and floxyd runs the steps as the worker, without DDL rights.
    assert floxyctl("register", "-f", str(flows), dsn=worker).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env |= {
        "FLOXY_DSN": worker,
        "FLOXY_TECH_ADDR": "off",
        "FLOXY_MAINTENANCE_INTERVAL": "0",
        "FLOXY_STATS_INTERVAL": "0",
        "FLOXY_NO_PLUGINS": "1",
    }
    log = tmp_path / "floxyd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "floxyd", str(flows)], env=env, stdout=out, stderr=out
        )
    try:
        done = floxyctl(
            "start", "-o", "parcel", "--wait", "--completion-timeout", "60s",
            "--output", "json", dsn=worker,
        )  # fmt: skip
        assert done.returncode == 0, (done.stderr, log.read_text())
        instance = json.loads(done.stdout)
        assert instance["status"] == "completed" and instance["output"] == {"packed": True}
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert "permission denied" not in log.read_text()

    # The reader reads everything.
    for args in (
        ["status"],
        ["inspect", str(instance["instance_id"])],
        ["workflows"],
        ["dlq", "list"],
        ["migrate", "--status"],
    ):
        result = floxyctl(*args, dsn=reader)
        assert result.returncode == 0, (args, result.stderr)
    assert "parcel-v1" in floxyctl("status", dsn=reader).stdout

    # ... and writes nothing: one clear line, exit 2, no traceback. (`migrate` with nothing
    # pending changes nothing, so it is no write and succeeds.)
    assert floxyctl("migrate", dsn=reader).returncode == 0
    flows.write_text(ROLE_FLOWS + "  - name: other\n    steps:\n      - pack\n")
    for args in (["start", "-o", "parcel"], ["register", "-f", str(flows)]):
        result = floxyctl(*args, dsn=reader)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("floxyctl: error: "), result.stderr
        assert "permission denied" in lines[0] and "Traceback" not in result.stderr
        assert "this role lacks the privilege" in lines[0], lines[0]

    # Partition maintenance is DDL: the owner runs it, the worker may not (see the doc).
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("CALL workflows.cleanup_all()")
    with psycopg.connect(worker, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CALL workflows.cleanup_all()")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE workflows.not_allowed (id int)")
