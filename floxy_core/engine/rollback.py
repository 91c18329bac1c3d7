"""Rollback: which started steps to compensate, in what order, and when the rollback ends.

Compensations run one at a time, the failing step first, then newest completion first. The set
to compensate is every step whose handler started (completed, failed, interrupted) downstream of
the nearest savepoint (all of them for a cancel), so a condition branch that never ran has
nothing to undo, nested forks are covered once, and steps after a join include the branch steps
before it. No compensation starts while an interrupted call it may undo is still under way.
"""

from __future__ import annotations

from floxy_core.engine.retry import backoff_ms
from floxy_core.engine.state import Transition
from floxy_core.graph import graph_of
from floxy_core.model import COMPENSATION_PRIORITY, LifecycleEvent, StepRecord
from floxy_core.status import InstanceStatus, StepStatus

COMPENSATION_EXHAUSTED = "compensation max retries exceeded"
INTERRUPTED_PREFIX = "interrupted: "
"""Starts the error of an `interrupted` step (how an abort tells what a step was before its
compensation was due)."""


def nearest_savepoint(tx: Transition, step_name: str) -> str | None:
    """Walk back from `step_name` to the closest savepoint that completed (only savepoints are
    visited, not the steps between them)."""
    for savepoint in graph_of(tx.definition).savepoints_above(step_name):
        row = tx.state.steps.get(savepoint)
        if row is not None and row.status is StepStatus.COMPLETED:
            return savepoint
    return None


def begin(tx: Transition, failed: StepRecord | None, *, to_savepoint: bool) -> None:
    """Mark what must be undone, then start the first compensation (or finish at once)."""
    scope: frozenset[str] | None = None
    if failed is not None and to_savepoint:
        savepoint = nearest_savepoint(tx, failed.step_name)
        if savepoint is not None:
            scope = graph_of(tx.definition).descendants(savepoint)
            tx.event("rollback_started", failed.step_name, savepoint=savepoint)
    started = (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.INTERRUPTED)
    candidates = [
        r
        for r in tx.rows(*started)
        if (scope is None or r.step_name in scope)
        and not tx.queue_of(r.step_name)  # an interrupted call under way: see call_ended
        and not r.compensation_retry_count  # a compensation that ran out of retries
    ]
    if failed is not None and failed.status is StepStatus.FAILED and failed not in candidates:
        candidates.append(failed)
    for row in candidates:
        _mark(tx, row)
    advance(tx)


def call_ended(tx: Transition, row: StepRecord) -> None:
    """An interrupted call of a step to roll back has ended: it is compensated like the rest."""
    _mark(tx, row)
    advance(tx)


def _mark(tx: Transition, row: StepRecord) -> None:
    if graph_of(tx.definition).compensation_of(row.step_name) is None:
        tx.update_step(row, StepStatus.ROLLED_BACK)
        tx.event(
            "step_completed",
            row.step_name,
            step_type=row.step_type.value,
            reason="rolled_back_no_compensation",
        )
    else:
        tx.update_step(row, StepStatus.COMPENSATION, compensation_retry_count=0)


def before_compensation(row: StepRecord) -> StepStatus:
    """What a step marked for compensation was, for an abort that leaves it uncompensated."""
    if row.error is None:
        return StepStatus.COMPLETED
    if row.error.startswith(INTERRUPTED_PREFIX):
        return StepStatus.INTERRUPTED
    return StepStatus.FAILED


def _order_key(tx: Transition, row: StepRecord) -> tuple[bool, float, int]:
    """The step that failed the instance first, then newest end of call first (an interrupted
    call ends with the stop); ids break same-instant ties."""
    failing = row.error is not None and row.error == tx.instance.error
    return (failing, round(row.completed_at or 0.0, 6), row.id)


def advance(tx: Transition) -> None:
    """Start the next compensation unless one is under way or an interrupted call has not
    ended yet (its effect may still land); finish when none is left."""
    waiting = list(tx.rows(StepStatus.COMPENSATION))
    if any(tx.queue_of(r.step_name) for r in waiting):
        return
    if any(tx.queue_of(r.step_name) for r in tx.rows(StepStatus.INTERRUPTED)):
        return
    if waiting:
        row = max(waiting, key=lambda r: _order_key(tx, r))
        tx.enqueue(row.step_name, 0, COMPENSATION_PRIORITY)
        comp = graph_of(tx.definition).compensation_of(row.step_name)
        tx.event(
            "step_started",
            row.step_name,
            step_type=row.step_type.value,
            retry_count=row.compensation_retry_count,
            reason="compensation",
        )
        tx.hook(
            LifecycleEvent.COMPENSATION_STARTED,
            step_name=row.step_name,
            compensation=comp.name if comp else None,
        )
        return
    finish(tx)


def finish(tx: Transition) -> None:
    inst = tx.instance
    if inst.status is InstanceStatus.ROLLING_BACK:
        tx.set_instance(InstanceStatus.FAILED)
        tx.event("workflow_failed", workflow_id=inst.workflow_id, error=inst.error)
        tx.hook(LifecycleEvent.WORKFLOW_FAILED, error=inst.error)
    elif inst.status is InstanceStatus.CANCELLING:
        tx.set_instance(InstanceStatus.CANCELLED)
        request = tx.state.cancel_request
        tx.event(
            "workflow_cancelled",
            requested_by=request.requested_by if request else None,
            reason=request.reason if request else None,
        )
        tx.hook(LifecycleEvent.WORKFLOW_CANCELLED, error=inst.error)


def compensation_result(tx: Transition, row: StepRecord, error: str | None) -> None:
    """Apply the outcome of one compensation attempt (`error` None means it succeeded)."""
    comp = graph_of(tx.definition).compensation_of(row.step_name)
    if error is None or comp is None:
        tx.update_step(row, StepStatus.ROLLED_BACK)
        tx.event(
            "step_completed",
            row.step_name,
            step_type=row.step_type.value,
            retry_count=row.compensation_retry_count,
            reason="compensation_success",
        )
        tx.hook(LifecycleEvent.COMPENSATION_FINISHED, step_name=row.step_name, error=None)
        advance(tx)
        return
    count = row.compensation_retry_count + 1
    if count <= (0 if comp.no_idempotent else comp.max_retries):
        tx.update_step(row, compensation_retry_count=count)
        tx.event(
            "step_failed",
            row.step_name,
            step_type=row.step_type.value,
            error=error,
            retry_count=count,
            reason="compensation_retry",
        )
        tx.enqueue(row.step_name, backoff_ms(comp, count, tx.rng), COMPENSATION_PRIORITY)
        return
    message = f"compensation {comp.name!r} failed: {error}"
    tx.update_step(
        row,
        StepStatus.FAILED,
        compensation_retry_count=count,
        error=f"{row.error}; {message}" if row.error else message,
    )
    tx.event("step_failed", row.step_name, error=COMPENSATION_EXHAUSTED, cause=error)
    tx.add_dlq(row, error, COMPENSATION_EXHAUSTED)
    tx.hook(LifecycleEvent.COMPENSATION_FINISHED, step_name=row.step_name, error=error)
    advance(tx)
