-- Aborts per workflow, counted by the database: floxyd's `floxy_workflows_aborted_total`. An
-- abort is decided by whichever process asks for it (`floxyctl abort`, a rejected human step),
-- never seen by the daemons' hooks, so the count is kept where every abort is written. It is not
-- read off `workflow_instances` either: that table loses its partitions after the retention, and
-- a counter must never go down. One row per workflow, so the table stays small; only the
-- transition into `aborted` writes to it, so no other instance update pays more than the test.

CREATE TABLE workflows.workflow_abort_counts (
    workflow_id TEXT PRIMARY KEY,
    aborted     BIGINT NOT NULL
);

CREATE FUNCTION workflows.floxy_count_abort() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflows.workflow_abort_counts AS c (workflow_id, aborted)
    VALUES (NEW.workflow_id, 1)
    ON CONFLICT (workflow_id) DO UPDATE SET aborted = c.aborted + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER floxy_count_abort
    AFTER UPDATE OF status ON workflows.workflow_instances
    FOR EACH ROW WHEN (NEW.status = 'aborted' AND OLD.status IS DISTINCT FROM 'aborted')
    EXECUTE FUNCTION workflows.floxy_count_abort();

-- An upgraded install starts from the aborts its instances still show.
INSERT INTO workflows.workflow_abort_counts (workflow_id, aborted)
SELECT workflow_id, count(*) FROM workflows.workflow_instances
WHERE status = 'aborted' GROUP BY workflow_id;
