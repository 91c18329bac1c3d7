"""PostgreSQL storage: the store, its named SQL and the migration runner."""

from __future__ import annotations

from floxy_core.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
