-- A step whose started call a stop met is `interrupted` (see floxy_core/status.py): neither
-- failed nor skipped, and compensated by a rollback once the call has ended.
ALTER TABLE workflows.workflow_steps DROP CONSTRAINT workflow_steps_status_check;
ALTER TABLE workflows.workflow_steps ADD CONSTRAINT workflow_steps_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'interrupted',
                      'compensation', 'rolled_back', 'waiting_decision', 'confirmed', 'rejected',
                      'paused'));
