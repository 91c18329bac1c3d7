"""floxyctl honours libpq's own environment (issue 16 item 5): `PGHOST`, `PGPORT`, `PGUSER`,
`PGDATABASE` (and `PGPASSWORD`, `PGSERVICE` ...) when no floxy setting says otherwise.

Precedence: a flag, then its `FLOXY_*` variable, then the `PG*` variable; libpq applies the last
to whatever the conninfo leaves out. The test server trusts local connections, so passwords are
not what is checked here (test_secrets.py covers them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.e2e.test_db_cli import floxyctl, usage_error
from tests.pgcluster import Cluster

MARKER = "flows:\n  - name: marker\n    steps:\n      - {type: human, name: ok}\n"


@pytest.fixture
def parts(pg_dsn: str) -> dict[str, str]:
    """host, port, user, dbname of a fresh migrated database, as the PG* variables."""
    info = conninfo_to_dict(pg_dsn)
    return {
        "PGHOST": str(info["host"]),
        "PGPORT": str(info["port"]),
        "PGUSER": str(info["user"]),
        "PGDATABASE": str(info["dbname"]),
    }


@pytest.fixture
def other_db(pg_cluster: Cluster) -> Iterator[str]:
    """A second migrated database, told apart from the first by one registered flow."""
    dsn = pg_cluster.create_database()
    try:
        yield dsn
    finally:
        pg_cluster.drop_database(dsn)


def _workflows(result: object) -> str:
    assert getattr(result, "returncode", None) == 0, result
    return str(getattr(result, "stdout", ""))


def test_plain_libpq_variables_are_a_configuration(parts: dict[str, str], tmp_path: Path) -> None:
    result = floxyctl("status", dsn=None, env=parts)
    assert result.returncode == 0, result.stderr
    assert "No instances match." in result.stdout
    # A write goes to the database PGDATABASE names.
    flows = tmp_path / "marker.yaml"
    flows.write_text(MARKER)
    assert floxyctl("register", "-f", str(flows), dsn=None, env=parts).returncode == 0
    dsn = " ".join(f"{key}={parts['PG' + key.upper()]}" for key in ("host", "port", "user"))
    with psycopg.connect(f"{dsn} dbname={parts['PGDATABASE']}") as conn:
        rows = conn.execute("SELECT id FROM workflows.workflow_definitions").fetchall()
    assert rows == [("marker-v1",)]
    # Without PGDATABASE libpq's default applies, as for psql: the database named like the
    # user (`postgres` here), which has no floxy schema.
    no_db = {k: v for k, v in parts.items() if k != "PGDATABASE"}
    result = floxyctl("status", dsn=None, env=no_db)
    assert result.returncode == 6, result.stderr
    assert f"no floxy schema in the database at {parts['PGHOST']}:{parts['PGPORT']}/postgres" in (
        result.stderr
    )


def test_floxy_settings_win_and_pg_variables_fill_in(
    parts: dict[str, str], other_db: str, tmp_path: Path
) -> None:
    flows = tmp_path / "marker.yaml"
    flows.write_text(MARKER)
    assert floxyctl("register", "-f", str(flows), dsn=other_db).returncode == 0
    other = conninfo_to_dict(other_db)

    # FLOXY_DSN wins over every PG* variable.
    result = floxyctl("workflows", dsn=other_db, env=parts)
    assert "marker-v1" in _workflows(result)
    # --database and FLOXY_DB_NAME win over PGDATABASE; the PG* variables give the rest.
    by_flag = floxyctl("workflows", "--database", str(other["dbname"]), dsn=None, env=parts)
    assert "marker-v1" in _workflows(by_flag)
    by_env = floxyctl("workflows", dsn=None, env={**parts, "FLOXY_DB_NAME": str(other["dbname"])})
    assert "marker-v1" in _workflows(by_env)
    # A floxy setting that leaves the database out takes it from PGDATABASE.
    complemented = floxyctl(
        "workflows",
        dsn=None,
        env={"FLOXY_DB_HOST": parts["PGHOST"], "FLOXY_DB_PORT": parts["PGPORT"], **parts},
    )
    assert "marker-v1" not in _workflows(complemented)


def test_an_unknown_database_from_pgdatabase_is_one_line(parts: dict[str, str]) -> None:
    missing = "no_such_" + uuid.uuid4().hex[:8]
    line = usage_error(floxyctl("status", dsn=None, env={**parts, "PGDATABASE": missing}))
    assert f'database "{missing}" does not exist' in line
    assert f"/{missing}" in line  # the message says where it tried


def test_nothing_set_names_the_pg_variables_too() -> None:
    line = usage_error(floxyctl("status", dsn=None))
    assert line.startswith("floxyctl: error: no database configured")
    assert "PGHOST" in line and "PGDATABASE" in line


def test_floxyctl_takes_floxyds_flag_names_too(parts: dict[str, str], other_db: str) -> None:
    """One set of names for both programs (issue 15): `--db-host --db-port --db-user --db-name`
    are aliases of `--host --port --user --database`."""
    other = conninfo_to_dict(other_db)
    result = floxyctl(
        "status",
        "--db-host",
        str(other["host"]),
        "--db-port",
        str(other["port"]),
        "--db-user",
        str(other["user"]),
        "--db-name",
        str(other["dbname"]),
        dsn=None,
    )
    assert result.returncode == 0, result.stderr
