-- An idempotency key given to a start (the API's `idempotency_key`, `floxyctl start
-- --idempotency-key`) names the one instance it started. Not partitioned: the key must be unique
-- over every instance, and a primary key on a partitioned table has to include the partition key.
CREATE TABLE workflows.workflow_start_keys (
    key          TEXT PRIMARY KEY,
    workflow_id  TEXT NOT NULL,
    instance_id  BIGINT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
