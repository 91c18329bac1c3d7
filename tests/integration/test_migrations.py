"""Migrations on a real PostgreSQL with pg_partman: partitions, concurrency, fresh == upgraded."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import psycopg

from floxy_core.storage.postgres.migrations import MigrationError, available, migrate, status
from tests.pgcluster import Cluster

PARTITIONED = [
    "workflows.workflow_instances",
    "workflows.workflow_steps",
    "workflows.workflow_events",
    "workflows.workflow_dlq",
    "workflows.workflow_join_state",
    "workflows.workflow_step_logs",
]


def _empty_database(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.dsn(name)


def _schema(dsn: str) -> str:
    """The workflows schema as pg_dump prints it, plus partman's configuration."""
    dump = shutil.which("pg_dump")
    assert dump, "pg_dump is needed (postgresql-client)"
    text = subprocess.run(
        [dump, "--schema-only", "--schema=workflows", "--no-owner", dsn],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("--", "\\restrict", "\\unrestrict"))  # random per dump
    ]
    with psycopg.connect(dsn) as conn:
        config = conn.execute(
            "SELECT parent_table, partition_interval, premake, retention "
            "FROM partman.part_config ORDER BY parent_table"
        ).fetchall()
    return "\n".join(lines) + "\n" + repr(config)


def test_partitions_exist_after_migrate(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT parent_table, premake, retention FROM partman.part_config ORDER BY 1"
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(PARTITIONED)
        assert all(r[1] == 30 and r[2] == "90 days" for r in rows)
        for parent in PARTITIONED:
            future = conn.execute(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass AND c.relname > %s",
                (parent, parent.split(".")[1] + "_p" + _today()),
            ).fetchone()
            assert future is not None and future[0] >= 30, parent


def _today() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y_%m_%d")


def test_two_concurrent_migrations_on_an_empty_database_both_succeed(
    pg_cluster: Cluster,
) -> None:
    dsn = _empty_database(pg_cluster, "concurrent_migrate")
    results: list[object] = []

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                results.append(len(migrate(conn)))
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == [0, len(available())], results  # type: ignore[type-var]
    pg_cluster.drop_database(dsn)


def test_a_fresh_install_equals_an_upgraded_one(pg_cluster: Cluster, tmp_path: Path) -> None:
    fresh = _empty_database(pg_cluster, "fresh_install")
    upgraded = _empty_database(pg_cluster, "upgraded_install")
    with psycopg.connect(fresh, autocommit=True) as conn:
        migrate(conn)
    migrations = available()
    for count in range(1, len(migrations) + 1):  # one release at a time
        step_dir = tmp_path / f"release{count}"
        step_dir.mkdir()
        for migration in migrations[:count]:
            (step_dir / migration.filename).write_text(migration.sql)
        with psycopg.connect(upgraded, autocommit=True) as conn:
            migrate(conn, directory=step_dir)
    assert _schema(fresh) == _schema(upgraded)
    with psycopg.connect(upgraded, autocommit=True) as conn:
        assert all(s.applied_at is not None and s.checksum_ok for s in status(conn))
    pg_cluster.drop_database(fresh)
    pg_cluster.drop_database(upgraded)


def test_an_edited_applied_migration_is_reported(pg_dsn: str, tmp_path: Path) -> None:
    for migration in available():
        text = migration.sql + ("\n-- edited\n" if migration.version == 1 else "")
        (tmp_path / migration.filename).write_text(text)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        try:
            migrate(conn, directory=tmp_path)
        except MigrationError as exc:
            assert "001_schema.sql" in str(exc)
        else:
            raise AssertionError("an edited migration was not reported")
