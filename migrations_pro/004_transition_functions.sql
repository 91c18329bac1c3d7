-- The engine's hot path as three server-side functions, so a step costs two statements per
-- transaction instead of a dozen: `floxy_claim` (claim + lock + load), `floxy_lock_load`
-- (lock + load) and `floxy_apply` (every write of one decision, given as one JSON document).
-- Each statement inside a PL/pgSQL function takes a fresh snapshot, so the state is always read
-- after the instance lock is held; plans are cached per session and prune partitions at run time.

CREATE FUNCTION workflows.floxy_state(p_id BIGINT, p_created TIMESTAMPTZ, p_now TIMESTAMPTZ)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    -- Timestamps are epoch seconds (the engine's clock), except the created_at partition keys,
    -- which go back verbatim to find their rows. The bounds allow an hour of clock skew either
    -- way, so that PostgreSQL reads only the one or two daily partitions of the instance.
    v_since TIMESTAMPTZ := p_created - interval '1 hour';
    v_until TIMESTAMPTZ := greatest(p_created, p_now) + interval '1 hour';
BEGIN
    RETURN (
    SELECT json_build_array(
       i.workflow_id, i.status, i.input, i.output, i.error, i.created_at,
       extract(epoch FROM i.updated_at), extract(epoch FROM i.started_at), extract(epoch FROM i.completed_at),
       (SELECT coalesce(json_agg(json_build_object(
                  'id', s.id, 'step_name', s.step_name, 'step_type', s.step_type,
                  'status', s.status, 'input', s.input, 'output', s.output, 'error', s.error,
                  'retry_count', s.retry_count, 'max_retries', s.max_retries,
                  'compensation_retry_count', s.compensation_retry_count,
                  'idempotency_key', s.idempotency_key, 'created_at', s.created_at,
                  'created_epoch', extract(epoch FROM s.created_at), 'started_at', extract(epoch FROM s.started_at),
                  'completed_at', extract(epoch FROM s.completed_at))
               ORDER BY s.created_at, s.id), '[]')
        FROM workflows.workflow_steps s WHERE s.instance_id = p_id
          AND s.created_at >= v_since AND s.created_at < v_until),
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
        FROM workflows.workflow_cancel_requests c WHERE c.instance_id = p_id))
    FROM workflows.workflow_instances i WHERE i.id = p_id AND i.created_at = p_created);
END
$$;

-- Lock one instance (waiting for another transaction that holds it) and return its state;
-- NULL when it does not exist. `p_created` may be NULL when the caller does not know it.
CREATE FUNCTION workflows.floxy_lock_load(p_id BIGINT, p_created TIMESTAMPTZ, p_now TIMESTAMPTZ)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    v_created TIMESTAMPTZ;
BEGIN
    IF p_created IS NULL THEN
        SELECT created_at INTO v_created FROM workflows.workflow_instances
        WHERE id = p_id FOR UPDATE;
    ELSE
        SELECT created_at INTO v_created FROM workflows.workflow_instances
        WHERE id = p_id AND created_at = p_created FOR UPDATE;
    END IF;
    IF v_created IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN workflows.floxy_state(p_id, v_created, p_now);
END
$$;

-- Take the due queue row with the highest effective priority (aging: `p_rate` points per second
-- of waiting, capped at 100) whose instance no other transaction holds, lock both, and return
-- the row with the state of its instance; NULL when nothing can be claimed now.
--
-- Aging only raises a row's priority with its age, so the oldest ready row of each priority is
-- the best of that priority, and the best row overall is one of those few. They are found
-- through the index on (priority, scheduled_at, id) (migration 005) with a loose index scan
-- over the distinct priorities, instead of sorting the whole queue on every claim. Rows whose
-- lease expired (their worker died) compete too.
--
-- The queue swings between empty and thousands of rows, so its statistics are often wrong
-- (an ANALYZE of an empty queue makes every plan a sequential scan): the claim and apply
-- functions always take the indexes.
CREATE FUNCTION workflows.floxy_claim(p_now TIMESTAMPTZ, p_rate DOUBLE PRECISION)
RETURNS JSON LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_skip BIGINT[] := '{}';
    v_item BIGINT;
    v_instance BIGINT;
    v_created TIMESTAMPTZ;
    v_rank DOUBLE PRECISION;
    v_at TIMESTAMPTZ;
    e_item BIGINT;
    e_instance BIGINT;
    e_created TIMESTAMPTZ;
    e_rank DOUBLE PRECISION;
    e_at TIMESTAMPTZ;
BEGIN
    FOR attempt IN 1..8 LOOP
        WITH RECURSIVE prio(p) AS (
            (SELECT priority FROM workflows.workflow_queue
             WHERE attempted_at IS NULL ORDER BY priority LIMIT 1)
            UNION ALL
            SELECT (SELECT priority FROM workflows.workflow_queue
                    WHERE attempted_at IS NULL AND priority > prio.p ORDER BY priority LIMIT 1)
            FROM prio WHERE prio.p IS NOT NULL
        )
        SELECT c.id, c.instance_id, c.instance_created_at,
               LEAST(100, c.priority + FLOOR(EXTRACT(EPOCH FROM (p_now - c.scheduled_at)) * p_rate)),
               c.scheduled_at
        INTO v_item, v_instance, v_created, v_rank, v_at
        FROM prio CROSS JOIN LATERAL (
            SELECT q.id, q.instance_id, q.instance_created_at, q.priority, q.scheduled_at
            FROM workflows.workflow_queue q
            WHERE q.priority = prio.p AND q.attempted_at IS NULL AND q.scheduled_at <= p_now
              AND NOT (q.instance_id = ANY(v_skip))
            ORDER BY q.scheduled_at, q.id
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        ) c
        WHERE prio.p IS NOT NULL
        ORDER BY 4 DESC, c.scheduled_at, c.id
        LIMIT 1;

        SELECT id, instance_id, instance_created_at,
               LEAST(100, priority + FLOOR(EXTRACT(EPOCH FROM (p_now - scheduled_at)) * p_rate)),
               scheduled_at
        INTO e_item, e_instance, e_created, e_rank, e_at
        FROM workflows.workflow_queue
        WHERE attempted_at IS NOT NULL AND lease_until < p_now AND scheduled_at <= p_now
          AND NOT (instance_id = ANY(v_skip))
        ORDER BY 4 DESC, scheduled_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED;

        IF e_item IS NOT NULL AND (v_item IS NULL OR e_rank > v_rank
                OR (e_rank = v_rank AND (e_at, e_item) < (v_at, v_item))) THEN
            v_item := e_item;
            v_instance := e_instance;
            v_created := e_created;
        END IF;
        IF v_item IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM workflows.workflow_instances
        WHERE id = v_instance AND created_at = v_created FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            RETURN json_build_object(
                'item_id', v_item, 'instance_id', v_instance,
                'state', workflows.floxy_state(v_instance, v_created, p_now));
        END IF;
        v_skip := v_skip || v_instance;  -- another worker holds that instance: try another row
        v_item := NULL;
        e_item := NULL;
    END LOOP;
    RETURN NULL;
END
$$;

-- Apply every write of one engine decision. Steps are named; ids of steps inserted here are
-- resolved for the queue rows, events, DLQ records and decisions that refer to them. Returns
-- the ids of the new steps, DLQ records and queue rows.
CREATE FUNCTION workflows.floxy_apply(p JSONB) RETURNS JSONB LANGUAGE plpgsql
SET enable_seqscan = off AS $$
DECLARE
    v_instance BIGINT := (p->>'instance_id')::BIGINT;
    v_created TIMESTAMPTZ := (p->>'instance_created')::TIMESTAMPTZ;
    v_ids JSONB := coalesce(p->'step_ids', '{}');
    v_dlq_ids JSONB := '[]';
    v_queue_ids JSONB := '[]';
    v_id BIGINT;
    x JSONB;
BEGIN
    FOR x IN SELECT jsonb_array_elements(coalesce(p->'new_steps', '[]')) LOOP
        INSERT INTO workflows.workflow_steps (instance_id, step_name, step_type, status, input,
            output, error, retry_count, max_retries, compensation_retry_count, idempotency_key,
            started_at, completed_at, created_at)
        VALUES (v_instance, x->>'step_name', x->>'step_type', x->>'status',
            nullif(x->'input', 'null'), nullif(x->'output', 'null'), x->>'error',
            (x->>'retry_count')::INT, (x->>'max_retries')::INT,
            (x->>'compensation_retry_count')::INT, (x->>'idempotency_key')::UUID,
            (x->>'started_at')::TIMESTAMPTZ, (x->>'completed_at')::TIMESTAMPTZ,
            (x->>'created_at')::TIMESTAMPTZ)
        RETURNING id INTO v_id;
        v_ids := v_ids || jsonb_build_object(x->>'step_name', v_id);
    END LOOP;
    FOR x IN SELECT jsonb_array_elements(coalesce(p->'steps', '[]')) LOOP
        UPDATE workflows.workflow_steps
        SET status = x->>'status', input = nullif(x->'input', 'null'),
            output = nullif(x->'output', 'null'), error = x->>'error',
            retry_count = (x->>'retry_count')::INT,
            compensation_retry_count = (x->>'compensation_retry_count')::INT,
            started_at = (x->>'started_at')::TIMESTAMPTZ,
            completed_at = (x->>'completed_at')::TIMESTAMPTZ
        WHERE id = (x->>'id')::BIGINT AND created_at = (x->>'created_at')::TIMESTAMPTZ;
    END LOOP;
    IF p ? 'instance' THEN
        x := p->'instance';
        UPDATE workflows.workflow_instances
        SET status = x->>'status', output = nullif(x->'output', 'null'), error = x->>'error',
            started_at = (x->>'started_at')::TIMESTAMPTZ,
            completed_at = (x->>'completed_at')::TIMESTAMPTZ,
            updated_at = (x->>'updated_at')::TIMESTAMPTZ
        WHERE id = v_instance AND created_at = v_created;
    END IF;
    FOR x IN SELECT jsonb_array_elements(coalesce(p->'joins', '[]')) LOOP
        UPDATE workflows.workflow_join_state
        SET waiting_for = x->'waiting_for', completed = x->'completed', failed = x->'failed',
            is_ready = (x->>'is_ready')::BOOLEAN, updated_at = (x->>'now')::TIMESTAMPTZ
        WHERE instance_id = v_instance AND join_step_name = x->>'join_step';
        IF NOT FOUND THEN
            INSERT INTO workflows.workflow_join_state (instance_id, join_step_name, waiting_for,
                completed, failed, join_strategy, is_ready, created_at, updated_at)
            VALUES (v_instance, x->>'join_step', x->'waiting_for', x->'completed', x->'failed',
                x->>'strategy', (x->>'is_ready')::BOOLEAN, (x->>'now')::TIMESTAMPTZ,
                (x->>'now')::TIMESTAMPTZ);
        END IF;
    END LOOP;
    IF p ? 'queue_removed' THEN
        DELETE FROM workflows.workflow_queue
        WHERE id IN (SELECT jsonb_array_elements_text(p->'queue_removed')::BIGINT);
    END IF;
    FOR x IN SELECT jsonb_array_elements(coalesce(p->'queue', '[]')) LOOP
        UPDATE workflows.workflow_queue
        SET scheduled_at = (x->>'scheduled_at')::TIMESTAMPTZ,
            attempted_at = (x->>'attempted_at')::TIMESTAMPTZ, attempted_by = x->>'attempted_by',
            lease_until = (x->>'lease_until')::TIMESTAMPTZ
        WHERE id = (x->>'id')::BIGINT;
    END LOOP;
    IF p ? 'queue_new' THEN  -- a row may come claimed already (the worker chains to it)
        WITH inserted AS (
            INSERT INTO workflows.workflow_queue (instance_id, instance_created_at, step_id,
                scheduled_at, priority, attempted_at, attempted_by, lease_until)
            SELECT v_instance, v_created, (v_ids->>(e->>'step_name'))::BIGINT,
                   (e->>'scheduled_at')::TIMESTAMPTZ, (e->>'priority')::INT,
                   (e->>'attempted_at')::TIMESTAMPTZ, e->>'attempted_by',
                   (e->>'lease_until')::TIMESTAMPTZ
            FROM jsonb_array_elements(p->'queue_new') WITH ORDINALITY AS a(e, n)
            ORDER BY n
            RETURNING id
        )
        SELECT jsonb_agg(id ORDER BY id) INTO v_queue_ids FROM inserted;
    END IF;
    IF p ? 'events' THEN
        INSERT INTO workflows.workflow_events (instance_id, step_id, event_type, payload,
            created_at)
        SELECT v_instance, (v_ids->>(e->>'step_name'))::BIGINT, e->>'type', e->'payload',
               (e->>'at')::TIMESTAMPTZ
        FROM jsonb_array_elements(p->'events') e;
    END IF;
    FOR x IN SELECT jsonb_array_elements(coalesce(p->'dlq_new', '[]')) LOOP
        INSERT INTO workflows.workflow_dlq (instance_id, workflow_id, step_id, step_name,
            step_type, input, error, reason, created_at)
        VALUES (v_instance, x->>'workflow_id', (v_ids->>(x->>'step_name'))::BIGINT,
            x->>'step_name', x->>'step_type', nullif(x->'input', 'null'), x->>'error',
            x->>'reason', (x->>'created_at')::TIMESTAMPTZ)
        RETURNING id INTO v_id;
        v_dlq_ids := v_dlq_ids || to_jsonb(v_id);
    END LOOP;
    IF p ? 'dlq_removed' THEN
        DELETE FROM workflows.workflow_dlq
        WHERE id IN (SELECT jsonb_array_elements_text(p->'dlq_removed')::BIGINT);
    END IF;
    IF p ? 'decisions' THEN
        INSERT INTO workflows.workflow_human_decisions (instance_id, step_id, decided_by,
            decision, comment, decided_at)
        SELECT v_instance, (v_ids->>(e->>'step_name'))::BIGINT, e->>'decided_by',
               e->>'decision', e->>'comment', (e->>'decided_at')::TIMESTAMPTZ
        FROM jsonb_array_elements(p->'decisions') e
        ON CONFLICT (step_id, decided_by) DO NOTHING;
    END IF;
    IF (p->>'cancel_done')::BOOLEAN THEN
        DELETE FROM workflows.workflow_cancel_requests WHERE instance_id = v_instance;
    ELSIF p ? 'cancel_request' THEN
        x := p->'cancel_request';
        INSERT INTO workflows.workflow_cancel_requests (instance_id, requested_by, cancel_type,
            reason)
        VALUES (v_instance, x->>'requested_by', x->>'cancel_type', x->>'reason')
        ON CONFLICT (instance_id) DO UPDATE
        SET requested_by = EXCLUDED.requested_by, cancel_type = EXCLUDED.cancel_type,
            reason = EXCLUDED.reason;
    END IF;
    IF (p->>'notify')::BOOLEAN THEN
        PERFORM pg_notify('floxy_queue', '');
    END IF;
    RETURN jsonb_build_object('step_ids', v_ids, 'dlq_ids', v_dlq_ids, 'queue_ids', v_queue_ids);
END
$$;
