"""A throwaway PostgreSQL cluster for the tests (or the server named by FLOXY_TEST_DSN).

Each test database is cloned from a migrated template, so a test starts from a fresh schema in
well under a second. Missing PostgreSQL binaries or pg_partman fail the run with a message saying
what to install: nothing is skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

TEMPLATE = "floxy_template"


def server_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb) not found: install postgresql-15 and "
        "postgresql-15-partman (bash scripts/test.sh does this as root), or set FLOXY_TEST_DSN"
    )


@dataclass
class Cluster:
    admin_dsn: str
    """DSN of the maintenance database; test databases share host, port and user."""
    process: subprocess.Popen[bytes] | None = None
    datadir: str | None = None

    def dsn(self, dbname: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("dbname=")
        return f"{base}dbname={dbname}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = dsn.rpartition("dbname=")[2]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.datadir:
            shutil.rmtree(self.datadir, ignore_errors=True)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_cluster() -> Cluster:
    external = os.environ.get("FLOXY_TEST_DSN")
    if external:
        cluster = Cluster(
            admin_dsn=external if "dbname=" in external else external + " dbname=postgres"
        )
        _prepare_template(cluster)
        return cluster
    bindir = server_bindir()
    root = tempfile.mkdtemp(prefix="floxy-pg-")
    os.chmod(root, 0o777)
    datadir = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bindir / "initdb"),
                "-D",
                datadir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        _as_postgres(
            [
                str(bindir / "postgres"),
                "-D",
                datadir,
                "-p",
                str(port),
                "-k",
                root,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cluster = Cluster(
        admin_dsn=f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
        process=process,
        datadir=root,
    )
    _wait_ready(cluster)
    _prepare_template(cluster)
    return cluster


def _wait_ready(cluster: Cluster, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.admin_dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if cluster.process is not None and cluster.process.poll() is not None:
                raise RuntimeError("the test PostgreSQL server exited at start-up") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _prepare_template(cluster: Cluster) -> None:
    import psycopg

    from floxy_core.storage.postgres.migrations import migrate

    with psycopg.connect(cluster.admin_dsn, autocommit=True) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'"
        ).fetchone()
        if available is None:
            raise RuntimeError(
                "pg_partman is not installed on the test PostgreSQL server: install "
                "postgresql-15-partman (bash scripts/test.sh does this as root)"
            )
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    with psycopg.connect(cluster.dsn(TEMPLATE), autocommit=True) as conn:
        migrate(conn)
