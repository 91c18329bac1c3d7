-- Bookkeeping of the migrations themselves (the migrations are the files of migrations_pro/).
-- Only `create_schema` and `create_version_table` are DDL, and they run only when a migration
-- is pending: a role without CREATE rights can check, and start against, a current schema.

-- name: lock
-- One advisory lock for every migrating process (floxyctl migrate, floxyd at start-up).
SELECT pg_advisory_lock(%(key)s)

-- name: unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: version_table
-- The version table's oid, or NULL when the schema was never migrated (no DDL, no error).
SELECT to_regclass('workflows.floxy_migrations')

-- name: applied
SELECT version, checksum, applied_at FROM workflows.floxy_migrations

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS workflows

-- name: create_version_table
CREATE TABLE IF NOT EXISTS workflows.floxy_migrations (
    version INT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- name: record_applied
INSERT INTO workflows.floxy_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s)
