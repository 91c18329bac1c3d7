-- A long instance must not cost more per step than a short one. `floxy_state` (004) sent every
-- step row of the instance, with its input and output, on every transaction: a 10,000-step
-- flow moved 10,000 rows per step. Now an instance of more than 64 steps sends only the rows
-- its queue and human decisions refer to (what a claim or a result is about), and the client
-- reads any other row when a decision asks for it (`floxy_steps`, by name or all of them).
-- The document gains a 16th element: true when its step list is the whole instance.
--
-- Lookups by name go through (instance_id, step_name), which replaces the index on
-- instance_id alone: the same number of indexes, and neither column is ever updated, so step
-- updates stay HOT.

CREATE INDEX idx_workflow_steps_instance_name
    ON workflows.workflow_steps (instance_id, step_name);
DROP INDEX IF EXISTS workflows.idx_workflow_steps_instance_id;

-- One step row as the state document has it (004's floxy_state wrote this object inline).
CREATE FUNCTION workflows.floxy_step_json(s workflows.workflow_steps)
RETURNS JSON LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', s.id, 'step_name', s.step_name, 'step_type', s.step_type,
        'status', s.status, 'input', s.input, 'output', s.output, 'error', s.error,
        'retry_count', s.retry_count, 'max_retries', s.max_retries,
        'compensation_retry_count', s.compensation_retry_count,
        'idempotency_key', s.idempotency_key, 'created_at', s.created_at,
        'created_epoch', extract(epoch FROM s.created_at),
        'started_at', extract(epoch FROM s.started_at),
        'completed_at', extract(epoch FROM s.completed_at));
$$;

-- The step rows of one instance in the document's shape, in creation order: those named in
-- `p_names`, or all of them when it is NULL. PL/pgSQL, not SQL: its plans are cached per
-- session (an SQL function's are made again on every call, across every daily partition), and
-- each branch has a plan of its own (by name through the (instance_id, step_name) index).
CREATE FUNCTION workflows.floxy_steps(
    p_id BIGINT, p_created TIMESTAMPTZ, p_now TIMESTAMPTZ, p_names TEXT[])
RETURNS JSON LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_since TIMESTAMPTZ := p_created - interval '1 hour';
    v_until TIMESTAMPTZ := greatest(p_created, p_now) + interval '1 hour';
    v_steps JSON;
BEGIN
    IF p_names IS NULL THEN
        SELECT coalesce(json_agg(workflows.floxy_step_json(s) ORDER BY s.created_at, s.id), '[]')
        INTO v_steps
        FROM workflows.workflow_steps s
        WHERE s.instance_id = p_id AND s.created_at >= v_since AND s.created_at < v_until;
    ELSE
        SELECT coalesce(json_agg(workflows.floxy_step_json(s) ORDER BY s.created_at, s.id), '[]')
        INTO v_steps
        FROM workflows.workflow_steps s
        WHERE s.instance_id = p_id AND s.step_name = ANY(p_names)
          AND s.created_at >= v_since AND s.created_at < v_until;
    END IF;
    RETURN v_steps;
END
$$;

CREATE OR REPLACE FUNCTION workflows.floxy_state(p_id BIGINT, p_created TIMESTAMPTZ, p_now TIMESTAMPTZ)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    -- Timestamps are epoch seconds (the engine's clock), except the created_at partition keys,
    -- which go back verbatim to find their rows. The bounds allow an hour of clock skew either
    -- way, so that PostgreSQL reads only the one or two daily partitions of the instance.
    v_since TIMESTAMPTZ := p_created - interval '1 hour';
    v_until TIMESTAMPTZ := greatest(p_created, p_now) + interval '1 hour';
    v_whole BOOLEAN;
    v_steps JSON;
BEGIN
    SELECT count(*) <= 64 INTO v_whole FROM (
        SELECT 1 FROM workflows.workflow_steps s WHERE s.instance_id = p_id
          AND s.created_at >= v_since AND s.created_at < v_until LIMIT 65) few;
    IF v_whole THEN
        v_steps := workflows.floxy_steps(p_id, p_created, p_now, NULL);
    ELSE
        SELECT coalesce(json_agg(workflows.floxy_step_json(s) ORDER BY s.created_at, s.id), '[]')
        INTO v_steps
        FROM workflows.workflow_steps s
        WHERE s.created_at >= v_since AND s.created_at < v_until
          AND s.id IN (SELECT q.step_id FROM workflows.workflow_queue q WHERE q.instance_id = p_id
                       UNION
                       SELECT d.step_id FROM workflows.workflow_human_decisions d
                       WHERE d.instance_id = p_id);
    END IF;
    RETURN (
    SELECT json_build_array(
       i.workflow_id, i.status, i.input, i.output, i.error, i.created_at,
       extract(epoch FROM i.updated_at), extract(epoch FROM i.started_at), extract(epoch FROM i.completed_at),
       v_steps,
       (SELECT coalesce(json_agg(json_build_object(
                  'id', j.id, 'join_step', j.join_step_name, 'waiting_for', j.waiting_for,
                  'completed', j.completed, 'failed', j.failed, 'strategy', j.join_strategy,
                  'is_ready', j.is_ready, 'created_at', j.created_at)), '[]')
        FROM workflows.workflow_join_state j WHERE j.instance_id = p_id
          AND j.created_at >= v_since AND j.created_at < v_until),
       (SELECT coalesce(json_agg(json_build_object(
                  'id', q.id, 'step_id', q.step_id, 'scheduled_at', extract(epoch FROM q.scheduled_at),
                  'priority', q.priority, 'attempted_at', extract(epoch FROM q.attempted_at),
                  'attempted_by', q.attempted_by, 'lease_until', extract(epoch FROM q.lease_until)) ORDER BY q.id),
                  '[]')
        FROM workflows.workflow_queue q WHERE q.instance_id = p_id),
       (SELECT coalesce(json_agg(json_build_object(
                  'step_id', d.step_id, 'decision', d.decision, 'decided_by', d.decided_by,
                  'comment', d.comment, 'decided_at', extract(epoch FROM d.decided_at)) ORDER BY d.id), '[]')
        FROM workflows.workflow_human_decisions d WHERE d.instance_id = p_id),
       (SELECT coalesce(json_agg(json_build_object(
                  'id', x.id, 'step_name', x.step_name, 'step_type', x.step_type,
                  'input', x.input, 'error', x.error, 'reason', x.reason,
                  'created_at', extract(epoch FROM x.created_at)) ORDER BY x.id), '[]')
        FROM workflows.workflow_dlq x WHERE x.instance_id = p_id
          AND x.created_at >= v_since AND x.created_at < v_until),
       (SELECT json_build_object('cancel_type', c.cancel_type, 'requested_by', c.requested_by,
                                 'reason', c.reason, 'created_at', extract(epoch FROM c.created_at))
        FROM workflows.workflow_cancel_requests c WHERE c.instance_id = p_id),
       v_whole)
    FROM workflows.workflow_instances i WHERE i.id = p_id AND i.created_at = p_created);
END
$$;
