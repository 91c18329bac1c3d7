"""Ordered SQL migrations: a version table, one transaction per file, an advisory lock so that
concurrent starters are safe, and checksums so an edited applied migration is reported.

Checking is read-only (`status`, `pending`): a role that may only read can ask whether the schema
is current. `migrate` runs DDL only when something is pending, so a role without CREATE rights
(floxyd's worker role) starts fine against a schema an owner has migrated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floxy_core.errors import StoreError
from floxy_core.resources import migrations_dir
from floxy_core.storage.postgres.sql import blocks

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


def _q(name: str) -> bytes:
    return blocks("migrations.sql")[name].encode()


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_q("create_schema"))
    conn.execute(_q("create_version_table"))


def status(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[MigrationStatus]:
    """Every known migration with when it was applied (read-only: no DDL, no lock)."""
    exists = conn.execute(_q("version_table")).fetchone()
    applied: dict[int, tuple[str, datetime]] = {}
    if exists and exists[0] is not None:
        rows: list[tuple[Any, ...]] = conn.execute(_q("applied")).fetchall()
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


def pending(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[Migration]:
    """The migrations not applied yet, read-only; raises if an applied file was edited."""
    states = status(conn, directory)
    edited = [s.migration.filename for s in states if not s.checksum_ok]
    if edited:
        raise MigrationError(
            "applied migrations were changed afterwards: "
            + ", ".join(edited)
            + " (never edit a released migration; add a new one)"
        )
    return [s.migration for s in states if s.applied_at is None]


def migrate(
    conn: psycopg.Connection[Any], *, dry_run: bool = False, directory: Path | None = None
) -> list[Migration]:
    """Apply pending migrations (or list them with `dry_run`). `conn` must be in autocommit.

    Nothing but the advisory lock and two reads happen when the schema is current.
    """
    conn.execute(_q("lock"), {"key": LOCK_KEY})
    try:
        todo = pending(conn, directory)
        if dry_run or not todo:
            return todo
        _ensure_table(conn)
        for migration in todo:
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        _q("record_applied"),
                        {
                            "version": migration.version,
                            "name": migration.name,
                            "checksum": migration.checksum,
                        },
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
        return todo
    finally:
        conn.execute(_q("unlock"), {"key": LOCK_KEY})
