"""Ordered SQL migrations: a version table, one transaction per file, an advisory lock so that
concurrent starters are safe, and checksums so an edited applied migration is reported."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floxy_core.errors import StoreError
from floxy_core.resources import migrations_dir

if TYPE_CHECKING:
    import psycopg

LOCK_KEY = 0x466C6F7879  # "Floxy": one advisory lock for every migrating process
_FILE = re.compile(r"^(\d+)_([\w-]+)\.sql$")


class MigrationError(StoreError):
    """A migration could not be applied, or an applied one was changed afterwards."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:03d}_{self.name}.sql"


@dataclass(frozen=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None
    checksum_ok: bool


def available(directory: Path | None = None) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted((directory or migrations_dir()).glob("*.sql")):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS workflows")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS workflows.floxy_migrations ("
        " version INT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )


def status(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[MigrationStatus]:
    """Every known migration with when it was applied; raises if an applied file was edited."""
    exists = conn.execute("SELECT to_regclass('workflows.floxy_migrations')").fetchone()
    applied: dict[int, tuple[str, datetime]] = {}
    if exists and exists[0] is not None:
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT version, checksum, applied_at FROM workflows.floxy_migrations"
        ).fetchall()
        for version, checksum, applied_at in rows:
            applied[int(version)] = (str(checksum), applied_at)
    result = []
    for migration in available(directory):
        record = applied.get(migration.version)
        result.append(
            MigrationStatus(
                migration,
                record[1] if record else None,
                record is None or record[0] == migration.checksum,
            )
        )
    return result


def migrate(
    conn: psycopg.Connection[Any], *, dry_run: bool = False, directory: Path | None = None
) -> list[Migration]:
    """Apply pending migrations (or list them with `dry_run`). `conn` must be in autocommit."""
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        if not dry_run:
            _ensure_table(conn)
        states = status(conn, directory)
        edited = [s.migration.filename for s in states if not s.checksum_ok]
        if edited:
            raise MigrationError(
                "applied migrations were changed afterwards: "
                + ", ".join(edited)
                + " (never edit a released migration; add a new one)"
            )
        pending = [s.migration for s in states if s.applied_at is None]
        if dry_run:
            return pending
        for migration in pending:
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO workflows.floxy_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except Exception as exc:
                import psycopg

                if not isinstance(exc, psycopg.Error):
                    raise
                hint = getattr(exc.diag, "message_hint", None)
                detail = exc.diag.message_primary or str(exc)
                raise MigrationError(
                    f"migration {migration.filename} failed: {detail}"
                    + (f" (hint: {hint})" if hint else "")
                ) from exc
        return pending
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
