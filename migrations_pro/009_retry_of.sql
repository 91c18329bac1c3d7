-- A retry (`floxyctl retry`, `Runtime.retry`) is a new instance linked to the one it retries; the
-- link is kept on the new row, and found from the old one through the partial index (only
-- retries carry it).
ALTER TABLE workflows.workflow_instances ADD COLUMN retry_of BIGINT;
CREATE INDEX idx_workflow_instances_retry_of ON workflows.workflow_instances (retry_of)
    WHERE retry_of IS NOT NULL;
