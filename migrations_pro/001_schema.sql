-- floxy schema: the reference's tables and columns (so its tools can read our database), plus
-- claim leases and the definition content hash. High-volume tables are partitioned by created_at.

CREATE SCHEMA IF NOT EXISTS workflows;

CREATE TABLE workflows.workflow_definitions (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INT NOT NULL,
    definition   JSONB NOT NULL,
    content_hash TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
CREATE INDEX idx_workflow_definitions_name ON workflows.workflow_definitions (name);

CREATE TABLE workflows.workflow_instances (
    id           BIGSERIAL,
    workflow_id  TEXT NOT NULL REFERENCES workflows.workflow_definitions (id),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                     'rolling_back', 'cancelled', 'cancelling', 'aborted', 'dlq')),
    input        JSONB,
    output       JSONB,
    error        TEXT,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_instances_id ON workflows.workflow_instances (id);

CREATE TABLE workflows.workflow_steps (
    id                       BIGSERIAL,
    instance_id              BIGINT NOT NULL,
    step_name                TEXT NOT NULL,
    step_type                TEXT NOT NULL CHECK (step_type IN ('task', 'parallel', 'condition',
                                 'fork', 'join', 'save_point', 'human')),
    status                   TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed',
                                 'failed', 'skipped', 'compensation', 'rolled_back',
                                 'waiting_decision', 'confirmed', 'rejected', 'paused')),
    input                    JSONB,
    output                   JSONB,
    error                    TEXT,
    retry_count              INT NOT NULL DEFAULT 0,
    max_retries              INT NOT NULL DEFAULT 3,
    started_at               TIMESTAMPTZ,
    completed_at             TIMESTAMPTZ,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    compensation_retry_count INT NOT NULL DEFAULT 0,
    idempotency_key          UUID NOT NULL DEFAULT gen_random_uuid(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_steps_id ON workflows.workflow_steps (id);
CREATE INDEX idx_workflow_steps_instance_id ON workflows.workflow_steps (instance_id);
CREATE INDEX idx_workflow_steps_status ON workflows.workflow_steps (status);
CREATE INDEX idx_workflow_steps_step_name ON workflows.workflow_steps (step_name);
CREATE INDEX idx_workflow_steps_created_at ON workflows.workflow_steps (created_at);

CREATE TABLE workflows.workflow_events (
    id          BIGSERIAL,
    instance_id BIGINT NOT NULL,
    step_id     BIGINT,
    event_type  TEXT NOT NULL,
    payload     JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_events_id ON workflows.workflow_events (id);
CREATE INDEX idx_workflow_events_instance_id ON workflows.workflow_events (instance_id);

CREATE TABLE workflows.workflow_dlq (
    id          BIGSERIAL,
    instance_id BIGINT NOT NULL,
    workflow_id TEXT NOT NULL,
    step_id     BIGINT NOT NULL,
    step_name   TEXT NOT NULL,
    step_type   TEXT NOT NULL,
    input       JSONB,
    error       TEXT,
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_dlq_id ON workflows.workflow_dlq (id);
CREATE INDEX idx_workflow_dlq_instance_id ON workflows.workflow_dlq (instance_id);

CREATE TABLE workflows.workflow_join_state (
    id             BIGSERIAL,
    instance_id    BIGINT NOT NULL,
    join_step_name TEXT NOT NULL,
    waiting_for    JSONB NOT NULL,
    completed      JSONB NOT NULL DEFAULT '[]',
    failed         JSONB NOT NULL DEFAULT '[]',
    join_strategy  TEXT NOT NULL DEFAULT 'all',
    is_ready       BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_workflow_join_state_instance_id ON workflows.workflow_join_state (instance_id);
CREATE INDEX idx_workflow_join_state_join_step_name
    ON workflows.workflow_join_state (join_step_name);
CREATE INDEX idx_workflow_join_state_created_at ON workflows.workflow_join_state (created_at);
CREATE INDEX idx_workflow_join_state_instance_join
    ON workflows.workflow_join_state (instance_id, join_step_name);

CREATE TABLE workflows.workflow_human_decisions (
    id          BIGSERIAL PRIMARY KEY,
    instance_id BIGINT NOT NULL,
    step_id     BIGINT NOT NULL,
    decided_by  TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    comment     TEXT,
    decided_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (step_id, decided_by)
);
CREATE INDEX idx_workflow_human_decisions_instance_id
    ON workflows.workflow_human_decisions (instance_id);
CREATE INDEX idx_workflow_human_decisions_step_id ON workflows.workflow_human_decisions (step_id);
CREATE INDEX idx_workflow_human_decisions_created_at
    ON workflows.workflow_human_decisions (created_at);

CREATE TABLE workflows.workflow_queue (
    id           BIGSERIAL PRIMARY KEY,
    instance_id  BIGINT NOT NULL,
    step_id      BIGINT NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempted_at TIMESTAMPTZ,
    attempted_by TEXT,
    priority     INT NOT NULL DEFAULT 0,
    lease_until  TIMESTAMPTZ
);
CREATE INDEX idx_workflow_queue_scheduled
    ON workflows.workflow_queue (scheduled_at ASC, priority DESC) WHERE attempted_at IS NULL;
CREATE INDEX idx_workflow_queue_lease ON workflows.workflow_queue (lease_until)
    WHERE attempted_at IS NOT NULL;
CREATE INDEX idx_workflow_queue_instance_id ON workflows.workflow_queue (instance_id);
CREATE INDEX idx_workflow_queue_step_id ON workflows.workflow_queue (step_id);

CREATE TABLE workflows.workflow_cancel_requests (
    id           BIGSERIAL PRIMARY KEY,
    instance_id  BIGINT NOT NULL UNIQUE,
    requested_by TEXT NOT NULL,
    cancel_type  TEXT NOT NULL CHECK (cancel_type IN ('cancel', 'abort')),
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_workflow_cancel_requests_instance_id
    ON workflows.workflow_cancel_requests (instance_id);

CREATE INDEX idx_workflow_instances_workflow_id ON workflows.workflow_instances (workflow_id);
CREATE INDEX idx_workflow_instances_status ON workflows.workflow_instances (status);
CREATE INDEX idx_workflow_events_event_type ON workflows.workflow_events (event_type);

CREATE VIEW workflows.active_workflows AS
SELECT wi.id,
       wi.workflow_id,
       wi.status,
       wi.created_at,
       wi.updated_at,
       EXTRACT(EPOCH FROM (now() - wi.created_at)) AS duration_seconds,
       COUNT(ws.id) AS total_steps,
       COUNT(ws.id) FILTER (WHERE ws.status = 'completed') AS completed_steps,
       COUNT(ws.id) FILTER (WHERE ws.status = 'failed') AS failed_steps,
       COUNT(ws.id) FILTER (WHERE ws.status = 'running') AS running_steps
FROM workflows.workflow_instances wi
LEFT JOIN workflows.workflow_steps ws ON ws.instance_id = wi.id
WHERE wi.status IN ('pending', 'running', 'dlq')
GROUP BY wi.id, wi.workflow_id, wi.status, wi.created_at, wi.updated_at;

CREATE VIEW workflows.workflow_stats AS
SELECT wd.name,
       wd.version,
       COUNT(wi.id) AS total_instances,
       COUNT(wi.id) FILTER (WHERE wi.status = 'completed') AS completed_instances,
       COUNT(wi.id) FILTER (WHERE wi.status = 'failed') AS failed_instances,
       COUNT(wi.id) FILTER (WHERE wi.status = 'running') AS running_instances,
       AVG(EXTRACT(EPOCH FROM (wi.completed_at - wi.created_at)))
           FILTER (WHERE wi.status = 'completed') AS avg_duration_seconds
FROM workflows.workflow_definitions wd
LEFT JOIN workflows.workflow_instances wi ON wi.workflow_id = wd.id
GROUP BY wd.name, wd.version;
