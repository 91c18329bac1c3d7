-- Named SQL blocks of the PostgreSQL store: `-- name: NAME` starts a block. Parameters only.

-- name: insert_definition
INSERT INTO workflows.workflow_definitions (id, name, version, definition, content_hash)
VALUES (%(id)s, %(name)s, %(version)s, %(definition)s, %(content_hash)s)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: definition_by_id
SELECT name, version, definition, content_hash
FROM workflows.workflow_definitions WHERE id = %(id)s;

-- name: latest_definition_by_name
SELECT name, version, definition, content_hash
FROM workflows.workflow_definitions WHERE name = %(name)s
ORDER BY version DESC LIMIT 1;

-- name: list_definitions
SELECT id, name, version, created_at FROM workflows.workflow_definitions ORDER BY name, version DESC;

-- name: insert_instance
INSERT INTO workflows.workflow_instances (workflow_id, status, input, created_at, updated_at)
VALUES (%(workflow_id)s, 'pending', %(input)s, %(now)s, %(now)s)
RETURNING id, created_at;

-- name: lock_instance
SELECT created_at FROM workflows.workflow_instances WHERE id = %(id)s FOR UPDATE;

-- name: lock_instance_at
SELECT created_at FROM workflows.workflow_instances
WHERE id = %(id)s AND created_at = %(created)s FOR UPDATE;

-- name: load_state
-- Bounded by the instance's created_at (an hour of clock skew allowed either way) so that
-- PostgreSQL prunes the daily partitions of steps, joins and DLQ records to one or two.
SELECT i.workflow_id, i.status, i.input, i.output, i.error, i.created_at,
       i.updated_at, i.started_at, i.completed_at,
       (SELECT coalesce(json_agg(json_build_object(
                  'id', s.id, 'step_name', s.step_name, 'step_type', s.step_type,
                  'status', s.status, 'input', s.input, 'output', s.output, 'error', s.error,
                  'retry_count', s.retry_count, 'max_retries', s.max_retries,
                  'compensation_retry_count', s.compensation_retry_count,
                  'idempotency_key', s.idempotency_key, 'created_at', s.created_at,
                  'started_at', s.started_at, 'completed_at', s.completed_at)
               ORDER BY s.created_at, s.id), '[]')
        FROM workflows.workflow_steps s WHERE s.instance_id = %(id)s
          AND s.created_at >= %(since)s AND s.created_at < %(until)s) AS steps,
       (SELECT coalesce(json_agg(json_build_object(
                  'id', j.id, 'join_step', j.join_step_name, 'waiting_for', j.waiting_for,
                  'completed', j.completed, 'failed', j.failed, 'strategy', j.join_strategy,
                  'is_ready', j.is_ready, 'created_at', j.created_at)), '[]')
        FROM workflows.workflow_join_state j WHERE j.instance_id = %(id)s
          AND j.created_at >= %(since)s AND j.created_at < %(until)s) AS joins,
       (SELECT coalesce(json_agg(json_build_object(
                  'id', q.id, 'step_id', q.step_id, 'scheduled_at', q.scheduled_at,
                  'priority', q.priority, 'attempted_at', q.attempted_at,
                  'attempted_by', q.attempted_by, 'lease_until', q.lease_until) ORDER BY q.id),
                  '[]')
        FROM workflows.workflow_queue q WHERE q.instance_id = %(id)s) AS queue,
       (SELECT coalesce(json_agg(json_build_object(
                  'step_id', d.step_id, 'decision', d.decision, 'decided_by', d.decided_by,
                  'comment', d.comment, 'decided_at', d.decided_at) ORDER BY d.id), '[]')
        FROM workflows.workflow_human_decisions d WHERE d.instance_id = %(id)s) AS decisions,
       (SELECT coalesce(json_agg(json_build_object(
                  'id', x.id, 'step_name', x.step_name, 'step_type', x.step_type,
                  'input', x.input, 'error', x.error, 'reason', x.reason,
                  'created_at', x.created_at) ORDER BY x.id), '[]')
        FROM workflows.workflow_dlq x WHERE x.instance_id = %(id)s
          AND x.created_at >= %(since)s AND x.created_at < %(until)s) AS dlq,
       (SELECT json_build_object('cancel_type', c.cancel_type, 'requested_by', c.requested_by,
                                 'reason', c.reason, 'created_at', c.created_at)
        FROM workflows.workflow_cancel_requests c WHERE c.instance_id = %(id)s) AS cancel_request
FROM workflows.workflow_instances i WHERE i.id = %(id)s AND i.created_at = %(created)s;

-- name: update_instance
UPDATE workflows.workflow_instances
SET status = %(status)s, output = %(output)s, error = %(error)s, started_at = %(started_at)s,
    completed_at = %(completed_at)s, updated_at = %(updated_at)s
WHERE id = %(id)s AND created_at = %(created_at)s;

-- name: insert_step
INSERT INTO workflows.workflow_steps (instance_id, step_name, step_type, status, input, output,
    error, retry_count, max_retries, compensation_retry_count, idempotency_key, started_at,
    completed_at, created_at)
VALUES (%(instance_id)s, %(step_name)s, %(step_type)s, %(status)s, %(input)s, %(output)s,
    %(error)s, %(retry_count)s, %(max_retries)s, %(compensation_retry_count)s,
    %(idempotency_key)s, %(started_at)s, %(completed_at)s, %(created_at)s)
RETURNING id;

-- name: update_step
UPDATE workflows.workflow_steps
SET status = %(status)s, input = %(input)s, output = %(output)s, error = %(error)s,
    retry_count = %(retry_count)s, compensation_retry_count = %(compensation_retry_count)s,
    started_at = %(started_at)s, completed_at = %(completed_at)s
WHERE id = %(id)s AND created_at = %(created_at)s;

-- name: insert_join
INSERT INTO workflows.workflow_join_state (instance_id, join_step_name, waiting_for, completed,
    failed, join_strategy, is_ready, created_at, updated_at)
VALUES (%(instance_id)s, %(join_step)s, %(waiting_for)s, %(completed)s, %(failed)s,
    %(strategy)s, %(is_ready)s, %(now)s, %(now)s);

-- name: update_join
UPDATE workflows.workflow_join_state
SET waiting_for = %(waiting_for)s, completed = %(completed)s, failed = %(failed)s,
    is_ready = %(is_ready)s, updated_at = %(now)s
WHERE instance_id = %(instance_id)s AND join_step_name = %(join_step)s;

-- name: insert_queue
INSERT INTO workflows.workflow_queue (instance_id, instance_created_at, step_id, scheduled_at,
    priority)
VALUES (%(instance_id)s, %(instance_created_at)s, %(step_id)s, %(scheduled_at)s, %(priority)s)
RETURNING id;

-- name: update_queue
UPDATE workflows.workflow_queue
SET scheduled_at = %(scheduled_at)s, attempted_at = %(attempted_at)s,
    attempted_by = %(attempted_by)s, lease_until = %(lease_until)s
WHERE id = %(id)s;

-- name: delete_queue
DELETE FROM workflows.workflow_queue WHERE id = %(id)s;

-- name: insert_event
INSERT INTO workflows.workflow_events (instance_id, step_id, event_type, payload, created_at)
VALUES (%(instance_id)s, %(step_id)s, %(event_type)s, %(payload)s, %(created_at)s);

-- name: insert_dlq
INSERT INTO workflows.workflow_dlq (instance_id, workflow_id, step_id, step_name, step_type,
    input, error, reason, created_at)
VALUES (%(instance_id)s, %(workflow_id)s, %(step_id)s, %(step_name)s, %(step_type)s, %(input)s,
    %(error)s, %(reason)s, %(created_at)s)
RETURNING id;

-- name: delete_dlq
DELETE FROM workflows.workflow_dlq WHERE id = %(id)s;

-- name: insert_decision
INSERT INTO workflows.workflow_human_decisions (instance_id, step_id, decided_by, decision,
    comment, decided_at)
VALUES (%(instance_id)s, %(step_id)s, %(decided_by)s, %(decision)s, %(comment)s, %(decided_at)s)
ON CONFLICT (step_id, decided_by) DO NOTHING;

-- name: upsert_cancel_request
INSERT INTO workflows.workflow_cancel_requests (instance_id, requested_by, cancel_type, reason)
VALUES (%(instance_id)s, %(requested_by)s, %(cancel_type)s, %(reason)s)
ON CONFLICT (instance_id) DO UPDATE
SET requested_by = EXCLUDED.requested_by, cancel_type = EXCLUDED.cancel_type,
    reason = EXCLUDED.reason;

-- name: delete_cancel_request
DELETE FROM workflows.workflow_cancel_requests WHERE instance_id = %(instance_id)s;

-- name: claim_candidate
-- One due row and, in the same statement, the lock of its instance (NULL when another worker
-- holds it: the caller skips that instance), found in its own partition.
WITH candidate AS (
    SELECT id, instance_id, instance_created_at FROM workflows.workflow_queue
    WHERE scheduled_at <= %(now)s
      AND (attempted_at IS NULL OR lease_until < %(now)s)
      AND NOT (instance_id = ANY(%(skip)s))
    ORDER BY LEAST(100, priority + FLOOR(EXTRACT(EPOCH FROM (%(now)s - scheduled_at)) * %(rate)s))
             DESC, scheduled_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
SELECT c.id, c.instance_id,
       (SELECT i.created_at FROM workflows.workflow_instances i
        WHERE i.id = c.instance_id AND i.created_at = c.instance_created_at
        FOR UPDATE SKIP LOCKED) AS locked_created_at
FROM candidate c;

-- name: queue_item_exists
SELECT 1 FROM workflows.workflow_queue WHERE id = %(id)s;

-- name: renew_lease
UPDATE workflows.workflow_queue SET lease_until = %(until)s
WHERE id = %(id)s AND attempted_by = %(worker)s;

-- name: release_claim
-- The step goes back to pending with its queue row: nothing runs it until it is claimed again.
WITH released AS (
    UPDATE workflows.workflow_queue
    SET attempted_at = NULL, attempted_by = NULL, lease_until = NULL
    WHERE id = %(id)s AND attempted_by = %(worker)s
    RETURNING step_id
), step AS (
    UPDATE workflows.workflow_steps s SET status = 'pending'
    FROM released r WHERE s.id = r.step_id AND s.status = 'running'
)
SELECT count(*) FROM released;

-- name: next_due
SELECT min(scheduled_at) FROM workflows.workflow_queue WHERE attempted_at IS NULL;

-- name: get_instance
SELECT id, workflow_id, status, input, output, error, created_at, updated_at, started_at,
       completed_at
FROM workflows.workflow_instances WHERE id = %(id)s;

-- name: list_instances
SELECT id, workflow_id, status, input, output, error, created_at, updated_at, started_at,
       completed_at
FROM workflows.workflow_instances
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow_id)s::text IS NULL OR workflow_id = %(workflow_id)s)
ORDER BY created_at DESC, id DESC LIMIT %(limit)s;

-- name: get_steps
SELECT id, instance_id, step_name, step_type, status, input, output, error, retry_count,
       max_retries, compensation_retry_count, idempotency_key::text, created_at, started_at,
       completed_at
FROM workflows.workflow_steps WHERE instance_id = %(id)s ORDER BY created_at, id;

-- name: get_events
SELECT e.id, e.instance_id, e.event_type, e.payload, e.created_at
FROM workflows.workflow_events e WHERE e.instance_id = %(id)s ORDER BY e.id;

-- name: get_dlq
SELECT id, instance_id, workflow_id, step_name, step_type, input, error, reason, created_at
FROM workflows.workflow_dlq
WHERE (%(instance_id)s::bigint IS NULL OR instance_id = %(instance_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: find_dlq
SELECT id, instance_id, workflow_id, step_name, step_type, input, error, reason, created_at
FROM workflows.workflow_dlq WHERE id = %(id)s;

-- name: stats_summary
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status IN ('running', 'rolling_back', 'cancelling')) AS running,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status IN ('pending', 'running', 'dlq', 'rolling_back',
                                         'cancelling')) AS active
FROM workflows.workflow_instances;
