-- The claim's index (see floxy_claim in 004), and no indexes that cost every step a write and serve no query: the id prefix of each
-- (id, created_at) primary key already answers lookups by id; steps are never searched by status,
-- step name or created_at (the partition key: partitions are pruned instead), events never by
-- type, queue rows never by step. Fewer indexed columns also let step updates be HOT.
DROP INDEX IF EXISTS workflows.idx_workflow_instances_id;
DROP INDEX IF EXISTS workflows.idx_workflow_steps_id;
DROP INDEX IF EXISTS workflows.idx_workflow_steps_status;
DROP INDEX IF EXISTS workflows.idx_workflow_steps_step_name;
DROP INDEX IF EXISTS workflows.idx_workflow_steps_created_at;
DROP INDEX IF EXISTS workflows.idx_workflow_events_id;
DROP INDEX IF EXISTS workflows.idx_workflow_events_event_type;
DROP INDEX IF EXISTS workflows.idx_workflow_queue_step_id;
CREATE INDEX idx_workflow_queue_ready
    ON workflows.workflow_queue (priority, scheduled_at, id) WHERE attempted_at IS NULL;
