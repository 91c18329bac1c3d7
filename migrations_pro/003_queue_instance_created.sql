-- The queue row carries its instance's partition key, so a claim locks the instance row in one
-- partition instead of probing every daily partition of workflow_instances.

ALTER TABLE workflows.workflow_queue ADD COLUMN instance_created_at TIMESTAMPTZ;

UPDATE workflows.workflow_queue q
SET instance_created_at = i.created_at
FROM workflows.workflow_instances i
WHERE i.id = q.instance_id;

DELETE FROM workflows.workflow_queue WHERE instance_created_at IS NULL;

ALTER TABLE workflows.workflow_queue ALTER COLUMN instance_created_at SET NOT NULL;
