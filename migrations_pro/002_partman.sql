-- Daily partitions through pg_partman (30 premade, 90-day retention), on 4.x and 5.x alike.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman') THEN
        RAISE EXCEPTION 'pg_partman is not installed on the PostgreSQL server'
            USING HINT = 'install the package postgresql-15-partman (Debian/Ubuntu; '
                         'postgresql15-pg_partman on RHEL), then run the migration again';
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

DO $$
DECLARE
    major int := split_part(
        (SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'), '.', 1)::int;
    ext_schema text := (SELECT n.nspname FROM pg_extension e
                        JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'pg_partman');
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['workflows.workflow_instances', 'workflows.workflow_steps',
                                  'workflows.workflow_events', 'workflows.workflow_dlq',
                                  'workflows.workflow_join_state']
    LOOP
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
    END LOOP;
END
$$;

CREATE OR REPLACE PROCEDURE workflows.cleanup_all()
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partman.run_maintenance();
END
$$;
