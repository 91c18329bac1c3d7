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
INSERT INTO workflows.workflow_instances (workflow_id, status, input, created_at, updated_at,
                                         retry_of)
VALUES (%(workflow_id)s, 'pending', %(input)s, coalesce(%(now)s::timestamptz, clock_timestamp()),
        coalesce(%(now)s::timestamptz, clock_timestamp()), %(retry_of)s)
RETURNING id, created_at;

-- name: claim_start_key
-- migrations_pro/011: in the start's transaction; no row back when another start holds the key
-- (the INSERT waits for a concurrent start's commit, so the key then names a committed instance).
INSERT INTO workflows.workflow_start_keys (key, workflow_id, instance_id)
VALUES (%(key)s, %(workflow_id)s, %(id)s)
ON CONFLICT (key) DO NOTHING
RETURNING instance_id;

-- name: find_start_key
SELECT instance_id, workflow_id FROM workflows.workflow_start_keys WHERE key = %(key)s;

-- name: lock_load
-- migrations_pro/004: lock the instance (its partition key if known, else NULL), then load it.
-- The second column is the database's clock once the lock is held: the engine's `now`
-- (`now` is NULL but in the store's `clock="caller"` mode).
SELECT l, extract(epoch FROM coalesce(%(now)s::timestamptz, clock_timestamp()))::float8
FROM workflows.floxy_lock_load(%(id)s, %(created)s, coalesce(%(now)s::timestamptz, clock_timestamp())) AS l;

-- name: claim
-- migrations_pro/004: the due row of highest effective priority, its instance locked and loaded;
-- due times, expired leases and aging are judged by the database's clock, and the second column
-- is that clock once the row is held: the engine's `now`.
SELECT c, extract(epoch FROM coalesce(%(now)s::timestamptz, clock_timestamp()))::float8
FROM workflows.floxy_claim(coalesce(%(now)s::timestamptz, clock_timestamp()), %(rate)s) AS c;

-- name: apply
-- migrations_pro/004: every write of one engine decision.
SELECT workflows.floxy_apply(%(doc)s::jsonb);

-- name: delete_dlq
DELETE FROM workflows.workflow_dlq WHERE id = %(id)s;

-- name: queue_item_exists
-- An interrupted call keeps its queue row (held by its worker) until it ends: not current.
SELECT 1 FROM workflows.workflow_queue q
WHERE q.id = %(id)s
  AND NOT EXISTS (SELECT 1 FROM workflows.workflow_steps s
                  WHERE s.id = q.step_id AND s.status = 'interrupted');

-- name: renew_lease
-- By the database's clock; a lease that already ran out is not renewed (another worker may be
-- taking the step over): its holder must stop.
UPDATE workflows.workflow_queue
-- (`until` is NULL but in the store's `clock="caller"` mode, which trusts it.)
SET lease_until = coalesce(%(until)s::timestamptz,
                           clock_timestamp() + make_interval(secs => %(seconds)s::float8))
WHERE id = %(id)s AND attempted_by = %(worker)s
  AND (%(until)s::timestamptz IS NOT NULL OR lease_until >= clock_timestamp());

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
-- The earliest due time, and how far it is from the database's clock (negative: due).
SELECT extract(epoch FROM min(scheduled_at))::float8,
       extract(epoch FROM min(scheduled_at) - clock_timestamp())::float8
FROM workflows.workflow_queue WHERE attempted_at IS NULL;

-- name: get_instance
SELECT id, workflow_id, status, input, output, error, created_at, updated_at, started_at,
       completed_at, retry_of
FROM workflows.workflow_instances WHERE id = %(id)s;

-- name: list_instances
SELECT id, workflow_id, status, input, output, error, created_at, updated_at, started_at,
       completed_at, retry_of
FROM workflows.workflow_instances
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow_id)s::text IS NULL OR workflow_id = %(workflow_id)s)
ORDER BY created_at DESC, id DESC LIMIT %(limit)s;

-- name: list_instances_page
-- floxyctl status: one page of instances, newest first. `shown` is the status, or `waiting`
-- for a running instance whose human step waits for a decision (`waiting` names those steps);
-- the `status` filter compares `shown`. A bound is a time, or seconds before the database's
-- clock; the caller asks for one row more than a page to learn whether another page follows.
WITH bounds AS (
    SELECT coalesce(%(since)s::timestamptz,
                    clock_timestamp() - make_interval(secs => %(since_ago)s::float8)) AS since,
           coalesce(%(until)s::timestamptz,
                    clock_timestamp() - make_interval(secs => %(until_ago)s::float8)) AS until
), listed AS (
    SELECT i.id, i.workflow_id, i.status, i.input, i.output, i.error, i.created_at,
           i.updated_at, i.started_at, i.completed_at, i.retry_of, w.names AS waiting,
           CASE WHEN w.names IS NULL THEN i.status ELSE 'waiting' END AS shown
    FROM workflows.workflow_instances i
    CROSS JOIN bounds b
    LEFT JOIN LATERAL (
        SELECT array_agg(s.step_name ORDER BY s.created_at, s.id) AS names
        FROM workflows.workflow_steps s
        WHERE s.instance_id = i.id AND s.status = 'waiting_decision'
    ) w ON i.status = 'running'
    WHERE (%(status)s::text IS NULL
           OR i.status = CASE WHEN %(status)s::text = 'waiting' THEN 'running'
                              ELSE %(status)s::text END)
      AND (%(workflow_ids)s::text[] IS NULL OR i.workflow_id = ANY(%(workflow_ids)s::text[]))
      AND (b.since IS NULL OR i.created_at >= b.since)
      AND (b.until IS NULL OR i.created_at < b.until)
)
SELECT id, workflow_id, status, input, output, error, created_at, updated_at, started_at,
       completed_at, retry_of, waiting, shown
FROM listed
WHERE %(status)s::text IS NULL OR shown = %(status)s::text
ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: listing_stats
-- floxyctl status and floxyd's statistics: instance counts, with `waiting` (running, a human step
-- waiting for a decision) counted apart from `running`, as the listing shows them.
WITH counted AS (
    SELECT i.status,
           i.status = 'running' AND EXISTS (
               SELECT 1 FROM workflows.workflow_steps s
               WHERE s.instance_id = i.id AND s.status = 'waiting_decision') AS waiting
    FROM workflows.workflow_instances i
)
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status IN ('running', 'rolling_back', 'cancelling')
                        AND NOT waiting) AS running,
       count(*) FILTER (WHERE waiting) AS waiting,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = ANY(%(active)s::text[])) AS active
FROM counted;

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

-- name: state_steps
-- migrations_pro/007: step rows of one instance in the state document's shape, by name or all.
SELECT workflows.floxy_steps(%(id)s, %(created)s, %(now)s, %(names)s::text[]);

-- name: abort_counts
-- migrations_pro/008: aborts per workflow since the install, whoever aborted (floxyd's metrics).
SELECT workflow_id, aborted FROM workflows.workflow_abort_counts ORDER BY workflow_id;

-- name: retries_of
SELECT id FROM workflows.workflow_instances WHERE retry_of = %(id)s ORDER BY id;

-- name: insert_step_logs
-- migrations_pro/010: the call logs of one decision, sent after `apply` in its batch (or alone,
-- for a result refused by fencing); the number written.
WITH written AS (
    INSERT INTO workflows.workflow_step_logs (instance_id, step_name, handler, retry_count,
                                              compensation, started_at, ended_at, outcome,
                                              exit_code, stdout, stderr, truncated, created_at)
    SELECT l.instance_id, l.step_name, l.handler, l.retry_count, l.compensation,
           to_timestamp(l.started_at), to_timestamp(l.ended_at), l.outcome, l.exit_code,
           l.stdout, l.stderr, l.truncated, coalesce(%(now)s::timestamptz, clock_timestamp())
    FROM jsonb_to_recordset(%(logs)s::jsonb) AS l(
        instance_id BIGINT, step_name TEXT, handler TEXT, retry_count INTEGER,
        compensation BOOLEAN, started_at FLOAT8, ended_at FLOAT8, outcome TEXT,
        exit_code INTEGER, stdout TEXT, stderr TEXT, truncated BOOLEAN)
    RETURNING 1
)
SELECT count(*) FROM written;

-- name: get_logs
-- The call logs of one instance in the order they were written, of one step if named, after
-- the log `after_id` (a follower's last).
SELECT id, instance_id, step_name, handler, retry_count, compensation,
       extract(epoch FROM started_at)::float8, extract(epoch FROM ended_at)::float8, outcome,
       exit_code, stdout, stderr, truncated
FROM workflows.workflow_step_logs
WHERE instance_id = %(id)s AND id > %(after_id)s
  AND (%(step)s::text IS NULL OR step_name = %(step)s)
ORDER BY id;

-- name: queue_gauges
-- floxyd's /metrics: steps ready to claim (unclaimed or lease expired), leased, due later, and
-- the wait of the oldest ready one, all on the database's clock.
WITH now AS (SELECT clock_timestamp() AS t)
SELECT count(*) FILTER (WHERE q.scheduled_at <= now.t
                          AND (q.attempted_at IS NULL OR q.lease_until < now.t)) AS ready,
       count(*) FILTER (WHERE q.attempted_at IS NOT NULL AND q.lease_until >= now.t) AS leased,
       count(*) FILTER (WHERE q.attempted_at IS NULL AND q.scheduled_at > now.t) AS scheduled,
       coalesce(extract(epoch FROM now.t - min(q.scheduled_at) FILTER (
           WHERE q.scheduled_at <= now.t
             AND (q.attempted_at IS NULL OR q.lease_until < now.t))), 0)::float8 AS oldest_ready_age
FROM workflows.workflow_queue q RIGHT JOIN now ON true
GROUP BY now.t;

-- name: active_instance_counts
-- floxyd's /metrics: instances not finished yet, by status (`statuses`: status.py's list).
SELECT status, count(*) FROM workflows.workflow_instances
WHERE status = ANY(%(statuses)s::text[]) GROUP BY status;

-- name: active_instances
-- floxyd's periodic stats: the oldest unfinished instances with their step counts and the
-- steps under way; the database's clock gives their age.
SELECT i.id, i.workflow_id, i.status,
       extract(epoch FROM clock_timestamp() - i.created_at)::float8 AS runtime_s,
       count(s.id) AS total_steps,
       count(s.id) FILTER (WHERE s.status = 'completed') AS completed_steps,
       count(s.id) FILTER (WHERE s.status = 'rolled_back') AS rolled_back_steps,
       string_agg(s.step_name, ', ' ORDER BY s.id)
           FILTER (WHERE s.status IN ('running', 'compensation', 'waiting_decision'))
           AS current_steps
FROM workflows.workflow_instances i
LEFT JOIN workflows.workflow_steps s ON s.instance_id = i.id
WHERE i.status = ANY(%(statuses)s::text[])
GROUP BY i.id, i.workflow_id, i.status, i.created_at
ORDER BY i.created_at, i.id
LIMIT %(limit)s;

-- name: scrape_timeout
-- Bounds every statement of the scrape's transaction (floxyd's /metrics).
SELECT set_config('statement_timeout', %(ms)s, true);
