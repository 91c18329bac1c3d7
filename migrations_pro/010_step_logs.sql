-- What each handler call printed (DECISIONS.md "Operating (API, UI, logs)"): one row per call,
-- written by the transaction that applies the call's result (a result refused by fencing keeps
-- its row, outcome 'refused'). Each stream holds the call's last 256 KiB behind a
-- `[floxy: N earlier bytes cut]` line (`truncated`). Partitioned by day and dropped after the
-- retention like the other tables (002): logs never outlive their instance by long.

CREATE TABLE workflows.workflow_step_logs (
    id           BIGSERIAL,
    instance_id  BIGINT NOT NULL,
    step_name    TEXT NOT NULL,
    handler      TEXT NOT NULL,
    retry_count  INTEGER NOT NULL,
    compensation BOOLEAN NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('completed', 'failed', 'refused')),
    exit_code    INTEGER,
    stdout       TEXT NOT NULL,
    stderr       TEXT NOT NULL,
    truncated    BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_step_logs_instance_id ON workflows.workflow_step_logs (instance_id, id);

DO $$
DECLARE
    major int := split_part(
        (SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'), '.', 1)::int;
    ext_schema text := (SELECT n.nspname FROM pg_extension e
                        JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'pg_partman');
    parent text := 'workflows.workflow_step_logs';
BEGIN
    IF major >= 5 THEN
        EXECUTE format('SELECT %I.create_parent(p_parent_table => %L, p_control => %L, '
                       'p_interval => %L, p_premake => 30)',
                       ext_schema, parent, 'created_at', '1 day');
    ELSE
        EXECUTE format('SELECT %I.create_parent(p_parent_table => %L, p_control => %L, '
                       'p_type => %L, p_interval => %L, p_premake => 30)',
                       ext_schema, parent, 'created_at', 'native', 'daily');
    END IF;
    EXECUTE format('UPDATE %I.part_config SET retention = %L, retention_keep_table = false, '
                   'retention_keep_index = false, infinite_time_partitions = true '
                   'WHERE parent_table = %L', ext_schema, '90 days', parent);
END
$$;
