"""The saga state machine: every decision is a function of an `InstanceState` and an input.

Decisions mutate the state only through a `Transition`; the caller (a store, inside its
transaction) persists what the transition recorded and fires its hooks after commit.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from typing import Any

from floxy_core.durations import RETRY_AFTER_CAP_MS
from floxy_core.engine import joins, rollback
from floxy_core.engine.retry import backoff_ms
from floxy_core.engine.state import Transition
from floxy_core.errors import ConditionError, ConflictError, NotFoundError
from floxy_core.graph import graph_of
from floxy_core.model import (
    JSON,
    RETRY_PRIORITY,
    CancelRequest,
    DLQRecord,
    HumanDecision,
    JoinStrategy,
    LifecycleEvent,
    QueueItem,
    StepDefinition,
    StepRecord,
    StepType,
)
from floxy_core.records import field, record
from floxy_core.status import InstanceStatus, StepStatus

ACTIVE_STEP = (
    StepStatus.PENDING,
    StepStatus.RUNNING,
    StepStatus.WAITING_DECISION,
    StepStatus.PAUSED,
)
UNFINISHED_STEP = (*ACTIVE_STEP, StepStatus.COMPENSATION)
DLQ_REASON = "dlq enabled: rollback/compensation skipped"


@record(frozen=True)
class EngineConfig:
    aging_rate: float = 0.5
    """Priority points gained per second of waiting (0 disables aging)."""
    lease_ms: int = 30_000
    lost_call_margin_ms: int = 4_000
    """How long past its `timeout` a lost worker's call may still run: the bash guard's slack
    (2 s) and kill delay (1 s), and a second to spare (docs/floxyd.md "Leases")."""
    missing_handler_cooldown_ms: int = 1_000
    missing_handler_jitter: float = 0.2
    missing_handler_log_every_ms: int = 5_000


def hold_s(config: EngineConfig, timeout_ms: int | None) -> float:
    """How long a claim holds its step past its last renewal: the lease, plus, for a step with
    a `timeout`, the grace a frozen or cut-off worker's call needs to have surely ended, so that
    nobody re-runs or compensates the step while it may still run."""
    grace = timeout_ms + config.lost_call_margin_ms if timeout_ms else 0
    return (config.lease_ms + grace) / 1000.0


@record(frozen=True)
class Work:
    """One handler call the runtime must make, outside any transaction."""

    item_id: int
    worker: str
    instance_id: int
    workflow_id: str
    step_name: str
    handler: str
    input: JSON
    idempotency_key: str
    retry_count: int
    compensation: bool
    timeout_ms: int | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@record(frozen=True)
class Outcome:
    """What a handler call produced: `output` on success, `error` on failure."""

    output: JSON = None
    error: str | None = None
    retryable: bool = True
    retry_after_ms: int | None = None
    """The callee asked to wait this long (HTTP Retry-After); honoured within the step's cap."""

    @property
    def ok(self) -> bool:
        return self.error is None


class Engine:
    """Decisions over one instance at a time. Holds only configuration and log throttling."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._skip_logged: dict[str, float] = {}

    # -- start ------------------------------------------------------------------------------

    def start(self, tx: Transition) -> None:
        """A fresh `pending` instance starts running at its first step."""
        tx.set_instance(InstanceStatus.RUNNING)
        tx.event("workflow_started", workflow_id=tx.instance.workflow_id)
        tx.hook(LifecycleEvent.WORKFLOW_STARTED)
        self._schedule(tx, tx.definition.start, tx.instance.input)

    def restart(
        self,
        tx: Transition,
        retry_of: int,
        requested_by: str,
        kept: tuple[str, list[StepRecord]] | None = None,
    ) -> None:
        """A retry of instance `retry_of` starts: at the first step, or (`kept`: a savepoint and
        the old rows up to it) right after that savepoint, the earlier steps copied as they
        ended, keys and outputs included, since their effects are the ones the old instance
        kept and now belong to this one."""
        tx.set_instance(InstanceStatus.RUNNING)
        details: dict[str, JSON] = {"retry_of": retry_of, "requested_by": requested_by}
        if kept is not None:
            details.update({"from": "savepoint", "savepoint": kept[0]})
        tx.event("workflow_started", workflow_id=tx.instance.workflow_id, **details)
        tx.hook(LifecycleEvent.WORKFLOW_STARTED)
        if kept is None:
            self._schedule(tx, tx.definition.start, tx.instance.input)
            return
        *before, savepoint = kept[1]
        for old in before:
            row = tx.create_step(old.step_name, old.input, old.status)
            tx.update_step(
                row,
                output=old.output,
                error=old.error,
                retry_count=old.retry_count,
                idempotency_key=old.idempotency_key,
                started_at=old.started_at,
                completed_at=old.completed_at,
            )
        row = tx.create_step(savepoint.step_name, savepoint.input)
        tx.update_step(row, idempotency_key=savepoint.idempotency_key)
        self._complete(tx, row, savepoint.output)

    # -- claim ------------------------------------------------------------------------------

    def claim(
        self, tx: Transition, item: QueueItem, worker: str, handlers: Collection[str] | None
    ) -> Work | None:
        """Decide what a claimed queue item means; `Work` when a handler must be called.

        `handlers` lists the handlers this process has (None: all of them); a task whose handler
        is missing is released for another worker (distributed mode).
        """
        inst = tx.instance
        row = tx.state.steps.get(item.step_name)
        if row is None or inst.status.terminal or inst.status is InstanceStatus.DLQ:
            tx.remove_queue(item)
            return None
        definition = tx.defn(row.step_name)
        if row.status is StepStatus.COMPENSATION:
            comp = graph_of(tx.definition).compensation_of(definition.name)
            if comp is None or comp.handler is None:
                tx.remove_queue(item)
                rollback.compensation_result(tx, row, None)
                return None
            if not self._has_handler(tx, item, comp.handler, handlers, "comp"):
                return None
            return self._lease(
                tx,
                item,
                worker,
                row,
                comp.handler,
                compensation=True,
                timeout_ms=comp.timeout_ms or definition.timeout_ms,
                metadata={**comp.metadata, "reason": "compensation"},
            )
        if row.status is StepStatus.INTERRUPTED:
            # The worker that held the interrupted call let go of it (lease lost, handed back):
            # the call is over for the engine, with an unknown outcome.
            tx.remove_queue(item)
            tx.event("interrupted_call_lost", row.step_name, worker=item.attempted_by)
            self._call_ended(tx, row)
            return None
        if inst.status is not InstanceStatus.RUNNING:
            tx.remove_queue(item)
            return None
        if definition.type is StepType.HUMAN:
            self._human_due(tx, item, row)
            return None
        if row.status not in (StepStatus.PENDING, StepStatus.FAILED, StepStatus.RUNNING):
            tx.remove_queue(item)
            return None
        if definition.type is not StepType.TASK:
            tx.remove_queue(item)
            self._mark_running(tx, row)
            self._run_builtin(tx, row)
            return None
        assert definition.handler is not None
        if not self._has_handler(tx, item, definition.handler, handlers, "task"):
            return None
        if row.status is StepStatus.RUNNING and definition.no_idempotent:
            tx.remove_queue(item)
            self._fail(
                tx,
                row,
                "not re-run: the worker running this no_idempotent step was lost",
                retryable=False,
            )
            return None
        self._mark_running(tx, row)
        return self._lease(
            tx,
            item,
            worker,
            row,
            definition.handler,
            compensation=False,
            timeout_ms=definition.timeout_ms,
            metadata=dict(definition.metadata),
        )

    def chain(
        self, tx: Transition, worker: str, handlers: Collection[str]
    ) -> tuple[Work, QueueItem] | None:
        """The next call `worker` can make at once, claimed in this same transaction.

        The instance is locked already, so its due, unclaimed queue items (what this transaction
        queued first) need no claim transaction: steps that need no handler (condition,
        savepoint, fork, join, human) run here, and the first task or compensation whose handler
        the worker has is claimed for it. The worker that finished a step thus goes on with the
        same instance without a wake-up in between. Other workers still claim the remaining
        branches of a fan-out from the queue; delayed steps and handlers the worker lacks wait
        there as usual.
        """
        for _ in range(64):  # bounded: each round consumes one queued item
            # what this transaction queued first (no id before the commit), then the rest
            # snapshots, filtered lazily: the first ready item usually ends the round, so a wide
            # fan-out's queue is not walked on every step
            queued = itertools.chain(
                tuple(tx.new_queue), (i for i in tuple(tx.state.queue) if i.id)
            )
            ready = (i for i in queued if i.scheduled_at <= tx.now and i.attempted_by is None)
            for item in ready:
                row = tx.state.steps.get(item.step_name)
                if row is None:
                    continue
                definition = tx.defn(row.step_name)
                if row.status is StepStatus.COMPENSATION:
                    comp = graph_of(tx.definition).compensation_of(definition.name)
                    handler = comp.handler if comp is not None else None
                elif definition.type is StepType.TASK and row.status is not StepStatus.INTERRUPTED:
                    handler = definition.handler
                else:
                    self.claim(tx, item, worker, handlers)  # runs it here; may queue more
                    break
                if handler is None or handler not in handlers:
                    continue
                work = self.claim(tx, item, worker, handlers)
                if work is not None:
                    return work, item
            else:
                return None
        return None

    def _lease(
        self,
        tx: Transition,
        item: QueueItem,
        worker: str,
        row: StepRecord,
        handler: str,
        *,
        compensation: bool,
        timeout_ms: int | None,
        metadata: Mapping[str, Any],
    ) -> Work:
        """Hold the item for `worker` for one lease and describe the call to make."""
        tx.touch_queue(
            item,
            attempted_at=tx.now,
            attempted_by=worker,
            lease_until=tx.now + hold_s(self.config, timeout_ms),
        )
        return Work(
            item_id=item.id,
            worker=worker,
            instance_id=tx.instance.id,
            workflow_id=tx.instance.workflow_id,
            step_name=row.step_name,
            handler=handler,
            input=row.input,
            idempotency_key=row.idempotency_key,
            retry_count=row.compensation_retry_count if compensation else row.retry_count,
            compensation=compensation,
            timeout_ms=timeout_ms,
            metadata=metadata,
        )

    def _has_handler(
        self,
        tx: Transition,
        item: QueueItem,
        handler: str,
        handlers: Collection[str] | None,
        kind: str,
    ) -> bool:
        if handlers is None or handler in handlers:
            return True
        cfg = self.config
        cooldown = cfg.missing_handler_cooldown_ms / 1000.0
        jitter = cooldown * cfg.missing_handler_jitter
        delay = max(0.001, cooldown + tx.rng.uniform(-jitter, jitter))
        tx.touch_queue(
            item,
            attempted_at=None,
            attempted_by=None,
            lease_until=None,
            scheduled_at=max(item.scheduled_at, tx.now + delay),
        )
        key = f"{kind}-skip:{item.instance_id}:{item.step_name}"
        last = self._skip_logged.get(key)
        if last is None or tx.now - last >= cfg.missing_handler_log_every_ms / 1000.0:
            self._skip_logged[key] = tx.now
            what = "compensation handler" if kind == "comp" else "handler"
            tx.event(
                "step_skipped_missing_handler",
                item.step_name,
                message=f"no local {what} registered; rescheduled",
                handler=handler,
            )
        return False

    def _mark_running(self, tx: Transition, row: StepRecord) -> None:
        tx.update_step(
            row,
            StepStatus.RUNNING,
            started_at=row.started_at if row.started_at is not None else tx.now,
        )
        tx.event("step_started", row.step_name, step_type=row.step_type.value)
        tx.hook(LifecycleEvent.STEP_STARTED, step_name=row.step_name, retry_count=row.retry_count)

    # -- results ----------------------------------------------------------------------------

    def apply(self, tx: Transition, work: Work, outcome: Outcome) -> bool:
        """Record a handler call's outcome. False when the attempt was stale and was ignored."""
        item = next((q for q in tx.state.queue if q.id == work.item_id), None)
        if item is None or item.attempted_by != work.worker:
            return False
        tx.remove_queue(item)
        row = tx.state.steps[work.step_name]
        if work.compensation:
            if row.status is not StepStatus.COMPENSATION:
                return False
            rollback.compensation_result(tx, row, outcome.error)
            return True
        if row.status is StepStatus.INTERRUPTED:
            # A call a stop interrupted has ended: its result changes nothing (the step counts as
            # started, outcome unknown), but a compensation of it may start from now on.
            ended = "completed" if outcome.ok else "failed"
            tx.event("interrupted_call_ended", row.step_name, result=ended, error=outcome.error)
            if outcome.ok:
                tx.update_step(row, output=outcome.output)
            self._call_ended(tx, row)
            return True
        if row.status is not StepStatus.RUNNING:
            return False
        if outcome.ok:
            self._complete(tx, row, outcome.output)
        else:
            assert outcome.error is not None
            self._fail(
                tx,
                row,
                outcome.error,
                retryable=outcome.retryable,
                retry_after_ms=outcome.retry_after_ms,
            )
        return True

    def _complete(
        self,
        tx: Transition,
        row: StepRecord,
        output: JSON,
        branch: bool = True,
        **details: JSON,
    ) -> None:
        """Success: record it, start successors, feed joins, finish the instance if done."""
        definition = tx.defn(row.step_name)
        tx.update_step(row, StepStatus.COMPLETED, output=output, error=None, completed_at=tx.now)
        tx.event("step_completed", row.step_name, step_type=row.step_type.value, **details)
        tx.hook(LifecycleEvent.STEP_COMPLETED, step_name=row.step_name, output=output)
        if definition.type in (StepType.FORK, StepType.PARALLEL):
            tx.event("fork_started", row.step_name, parallel_steps=list(definition.parallel))
            joins.create_join_state(tx, definition)
            for start in definition.parallel:
                self._schedule(tx, start, row.input)
            return
        if definition.type is StepType.CONDITION:
            successors = list(definition.next) if branch else [definition.else_step or ""]
        else:
            successors = [n for n in definition.next if tx.defn(n).type is not StepType.JOIN]
        successors = [s for s in successors if s]
        for name in successors:
            self._schedule(tx, name, output)
        if not successors:
            if not joins.branch_finished(tx, row, success=True):
                tx.set_instance(output=output)
            self._maybe_complete(tx)

    def _schedule(self, tx: Transition, name: str, data: JSON) -> None:
        definition = tx.defn(name)
        if tx.instance.status is InstanceStatus.DLQ:
            tx.create_step(name, data, StepStatus.PAUSED)
            return
        existing = tx.state.steps.get(name)
        if existing is not None:
            return
        tx.create_step(name, data)
        tx.enqueue(name, definition.delay_ms, definition.priority)

    def _maybe_complete(self, tx: Transition) -> None:
        if tx.instance.status is not InstanceStatus.RUNNING:
            return
        if tx.state.queue or any(tx.rows(*UNFINISHED_STEP)):
            return
        tx.set_instance(InstanceStatus.COMPLETED, error=None)
        tx.event("workflow_completed", workflow_id=tx.instance.workflow_id)
        tx.hook(LifecycleEvent.WORKFLOW_COMPLETED, output=tx.instance.output)

    def _fail(
        self,
        tx: Transition,
        row: StepRecord,
        error: str,
        *,
        retryable: bool,
        retry_after_ms: int | None = None,
    ) -> None:
        """A failed attempt: retry it, or fail the step for good."""
        definition = tx.defn(row.step_name)
        may_retry = (
            retryable
            and not definition.no_idempotent
            and row.retry_count < definition.max_retries
            and tx.instance.status is InstanceStatus.RUNNING
        )
        if may_retry:
            count = row.retry_count + 1
            tx.update_step(row, StepStatus.FAILED, retry_count=count, error=error)
            tx.event("step_retry", row.step_name, retry_count=count, error=error)
            tx.hook(
                LifecycleEvent.STEP_RETRIED, step_name=row.step_name, retry_count=count, error=error
            )
            delay = backoff_ms(definition, count, tx.rng)
            if retry_after_ms is not None:
                cap = definition.retry_max_delay_ms
                delay = min(max(delay, retry_after_ms), RETRY_AFTER_CAP_MS if cap is None else cap)
            tx.enqueue(row.step_name, delay, RETRY_PRIORITY)
            return
        tx.update_step(
            row,
            StepStatus.FAILED,
            retry_count=row.retry_count + 1,
            error=error,
            completed_at=tx.now,
        )
        tx.hook(LifecycleEvent.STEP_FAILED, step_name=row.step_name, error=error)
        if tx.definition.dlq_enabled or tx.instance.status is InstanceStatus.DLQ:
            self._enter_dlq(tx, row, error)
            return
        tx.event("step_failed", row.step_name, step_type=row.step_type.value, error=error)
        chain = graph_of(tx.definition).enclosing_blocks(row.step_name)
        race = next((b for b in chain if _join_strategy(tx, b[0].name) is JoinStrategy.ANY), None)
        if race is not None:
            # Only this branch of an `any` block failed; the join fails when every branch did.
            self._stop_branch(tx, *race)
            joins.branch_finished(tx, row, success=False, within=race)
            self._maybe_complete(tx)
            return
        tx.set_instance(InstanceStatus.ROLLING_BACK, error=error)
        self._stop_active(tx, "Skipped due to workflow failure", reason="workflow_failed")
        rollback.begin(tx, row, to_savepoint=True)

    def _enter_dlq(self, tx: Transition, row: StepRecord, error: str) -> None:
        """Pause the instance; a join keeps waiting for this branch until it is requeued."""
        tx.update_step(row, StepStatus.PAUSED)
        tx.event(
            "step_failed", row.step_name, step_type=row.step_type.value, error=error, reason="dlq"
        )
        tx.add_dlq(row, error, DLQ_REASON)
        waiting = [r for r in tx.rows(StepStatus.FAILED) if tx.queue_of(r.step_name)]
        for other in [*tx.rows(StepStatus.PENDING), *waiting]:
            tx.update_step(other, StepStatus.PAUSED)
        running = {r.step_name for r in tx.rows(StepStatus.RUNNING)}
        for item in list(tx.state.queue):
            if item.step_name not in running:
                tx.remove_queue(item)
        if tx.instance.status is not InstanceStatus.DLQ:
            tx.set_instance(InstanceStatus.DLQ, error=error)
            tx.hook(LifecycleEvent.WORKFLOW_PAUSED, error=error)

    def _stop_branch(self, tx: Transition, block: StepDefinition, branch: str) -> None:
        """Stop what still runs in one branch of `block` (nested blocks inside it included)."""
        message = f"Skipped: branch {branch!r} of {block.name!r} failed"
        graph = graph_of(tx.definition)
        for other in list(tx.rows(*ACTIVE_STEP, StepStatus.FAILED)):
            if (block, branch) in graph.enclosing_blocks(other.step_name):
                self._stop_step(tx, other, message, reason="branch_failed")

    def _stop_active(self, tx: Transition, message: str, *, reason: str) -> None:
        """Nothing else starts for this instance (compensations aside): see `_stop_step`."""
        for other in list(tx.rows(*ACTIVE_STEP, StepStatus.FAILED)):
            self._stop_step(tx, other, message, reason=reason)
        for item in list(tx.state.queue):
            row = tx.state.steps.get(item.step_name)
            compensating = row is not None and row.status is StepStatus.COMPENSATION
            if not compensating and not _call_under_way(row, item):
                tx.remove_queue(item)

    def _stop_step(self, tx: Transition, row: StepRecord, message: str, *, reason: str) -> None:
        """A stop met this step. A handler that never started makes it `skipped`; a started call
        makes it `interrupted`, and its queue item stays with the worker that holds it until the
        call has ended (so a rollback compensates it only then); a step that failed, waiting for
        a retry or paused in the DLQ, stays `failed`, to be compensated."""
        queued = tx.queue_of(row.step_name)
        started = row.step_type is StepType.TASK and row.started_at is not None
        if row.status is StepStatus.FAILED or (row.status is StepStatus.PAUSED and row.error):
            if not queued and row.status is StepStatus.FAILED:
                return  # failed for good earlier (an `any` branch): nothing to stop
            tx.update_step(row, StepStatus.FAILED, completed_at=tx.now)
            tx.event("step_failed", row.step_name, reason=reason, message=message, error=row.error)
        elif started and row.status in (StepStatus.RUNNING, StepStatus.PENDING):
            tx.update_step(
                row,
                StepStatus.INTERRUPTED,
                error=f"{rollback.INTERRUPTED_PREFIX}{message}",
                completed_at=tx.now,
            )
            tx.event("step_interrupted", row.step_name, reason=reason, message=message)
        else:
            tx.update_step(row, StepStatus.SKIPPED, error=row.error or message, completed_at=tx.now)
            tx.event("step_failed", row.step_name, reason=reason, message=message)
        for item in queued:
            if not _call_under_way(row, item):
                tx.remove_queue(item)

    def _call_ended(self, tx: Transition, row: StepRecord) -> None:
        """An interrupted call is over: a rollback under way may now compensate it."""
        if tx.instance.status in (InstanceStatus.ROLLING_BACK, InstanceStatus.CANCELLING):
            rollback.call_ended(tx, row)
        else:
            self._maybe_complete(tx)

    # -- built-in step kinds ----------------------------------------------------------------

    def _run_builtin(self, tx: Transition, row: StepRecord) -> None:
        definition = tx.defn(row.step_name)
        if definition.type is StepType.CONDITION:
            assert definition.condition is not None
            try:
                from floxy_core.conditions import evaluate_condition  # only flows with one

                result = evaluate_condition(definition.condition, row.input)
            except ConditionError as exc:
                message = f"evaluate condition: {exc}"
                tx.event("condition_check", row.step_name, error=message)
                self._fail(tx, row, message, retryable=False)
                return
            tx.event("condition_check", row.step_name, result=result)
            self._complete(tx, row, row.input, branch=result)
        elif definition.type in (StepType.FORK, StepType.PARALLEL):
            output = {"status": "forked", "parallel_steps": list(definition.parallel)}
            self._complete(tx, row, output)
        elif definition.type is StepType.JOIN:
            self._run_join(tx, row)
        else:
            self._complete(tx, row, row.input)

    def _run_join(self, tx: Transition, row: StepRecord) -> None:
        state = tx.state.joins.get(row.step_name)
        if state is None:
            self._fail(tx, row, "join has no state", retryable=False)
            return
        tx.event(
            "join_check",
            row.step_name,
            waiting_for=list(state.waiting_for),
            completed=list(state.completed),
            failed=list(state.failed),
            is_ready=state.is_ready,
        )
        output = joins.join_output(tx, state)
        if state.strategy is JoinStrategy.ALL and state.failed:
            message = f"join failed: {len(state.failed)} steps failed"
        elif state.strategy is JoinStrategy.ANY and not state.completed:
            message = f"join failed: all {len(state.failed)} branches failed"
        else:
            tx.event("join_completed", row.step_name, **output)
            self._complete(tx, row, output)
            return
        tx.update_step(row, output={**output, "status": "failed"})
        self._fail(tx, row, message, retryable=False)

    # -- human steps ------------------------------------------------------------------------

    def _human_due(self, tx: Transition, item: QueueItem, row: StepRecord) -> None:
        definition = tx.defn(row.step_name)
        if row.status is StepStatus.PENDING:
            tx.update_step(row, StepStatus.RUNNING, started_at=tx.now)
            tx.update_step(row, StepStatus.WAITING_DECISION)
            tx.event(
                "step_started",
                row.step_name,
                step_type=row.step_type.value,
                reason="waiting_for_human_decision",
            )
            tx.hook(LifecycleEvent.STEP_WAITING_DECISION, step_name=row.step_name)
            if definition.timeout_ms:
                delay = definition.timeout_ms / 1000.0
                tx.touch_queue(item, scheduled_at=tx.now + delay, attempted_at=None)
            else:
                tx.remove_queue(item)
            return
        tx.remove_queue(item)
        if row.status is StepStatus.WAITING_DECISION:
            self.decide(tx, row.step_name, "rejected", "floxy", "decision timeout expired")

    def decide(
        self,
        tx: Transition,
        step_name: str | None,
        decision: str,
        decided_by: str,
        comment: str | None = None,
    ) -> StepRecord:
        """A human confirmed (continue once) or rejected (abort) a waiting step."""
        if decision not in ("confirmed", "rejected"):
            raise ConflictError(f"decision must be confirmed or rejected, got {decision!r}")
        humans = [r for r in tx.state.steps.values() if r.step_type is StepType.HUMAN]
        if step_name is not None:
            humans = [r for r in humans if r.step_name == step_name]
        if not humans:
            raise NotFoundError(
                f"instance {tx.instance.id} has no human step"
                + (f" named {step_name!r}" if step_name else "")
            )
        row = humans[-1]
        if row.status is not StepStatus.WAITING_DECISION:
            raise ConflictError(
                f"step {row.step_name!r} is not waiting for a decision (status: {row.status})"
            )
        tx.add_decision(
            HumanDecision(tx.instance.id, row.step_name, decision, decided_by, comment, tx.now)
        )
        tx.remove_queue_of(row.step_name)
        tx.hook(
            LifecycleEvent.HUMAN_DECIDED,
            step_name=row.step_name,
            decision=decision,
            decided_by=decided_by,
        )
        if decision == "confirmed":
            tx.update_step(row, StepStatus.CONFIRMED)
            self._complete(
                tx, row, row.input, decision=decision, decided_by=decided_by, comment=comment
            )
            return row
        tx.update_step(row, StepStatus.REJECTED, completed_at=tx.now)
        tx.event(
            "step_failed",
            row.step_name,
            decision=decision,
            decided_by=decided_by,
            comment=comment,
        )
        suffix = f": {comment}" if comment else ""
        error = f"step {row.step_name!r} was rejected by {decided_by}{suffix}"
        self._stop_active(tx, "Stopped due to human rejection", reason="workflow_stopped")
        for item in list(tx.state.queue):
            tx.remove_queue(item)  # an aborted instance awaits no call
        tx.set_instance(InstanceStatus.ABORTED, error=error)
        tx.event("workflow_aborted", requested_by=decided_by, reason=error)
        tx.hook(LifecycleEvent.WORKFLOW_ABORTED, error=error)
        return row

    # -- cancel, abort, DLQ requeue ---------------------------------------------------------

    def stop(self, tx: Transition, kind: str, requested_by: str, reason: str) -> None:
        """Cancel (compensate completed steps, end `cancelled`) or abort (end `aborted`)."""
        inst = tx.instance
        if inst.status.terminal:
            raise ConflictError(f"workflow {inst.id} is already in terminal state: {inst.status}")
        if kind == "cancel" and inst.status is InstanceStatus.CANCELLING:
            raise ConflictError(f"workflow {inst.id} is already being cancelled")
        if kind == "cancel" and inst.status is InstanceStatus.ROLLING_BACK:
            raise ConflictError(
                f"workflow {inst.id} is rolling back after a failure; a cancel changes nothing "
                "of that rollback (the instance ends failed; abort stops the rollback)"
            )
        tx.event(
            "cancellation_started" if kind == "cancel" else "abort_started",
            requested_by=requested_by,
            reason=reason,
            cancel_type=kind,
        )
        self._stop_active(tx, f"Stopped due to workflow {kind}", reason="workflow_stopped")
        for paused in [r for r in tx.state.dlq if r.reason != rollback.COMPENSATION_EXHAUSTED]:
            tx.remove_dlq(paused)  # nothing is left to requeue
        if kind == "abort":
            for row in list(tx.rows(StepStatus.COMPENSATION)):
                if row.compensation_retry_count or tx.queue_of(row.step_name):
                    # its compensation started (or is under way, now interrupted): never completed
                    message = "compensation interrupted by an abort"
                    tx.update_step(
                        row,
                        StepStatus.INTERRUPTED,
                        error=f"{row.error}; {message}" if row.error else message,
                    )
                    tx.event(
                        "step_interrupted",
                        row.step_name,
                        reason="workflow_stopped",
                        message=message,
                        compensation=True,
                    )
                else:
                    # not compensated after all: the step is left as its call left it
                    tx.update_step(row, rollback.before_compensation(row))
            for item in list(tx.state.queue):
                tx.remove_queue(item)
            error = f"Aborted by {requested_by}: {reason}"
            tx.set_instance(InstanceStatus.ABORTED, error=error)
            tx.event("workflow_aborted", requested_by=requested_by, reason=reason)
            tx.hook(LifecycleEvent.WORKFLOW_ABORTED, error=error)
            return
        tx.state.cancel_request = CancelRequest(inst.id, kind, requested_by, reason, tx.now)
        tx.set_instance(InstanceStatus.CANCELLING, error=f"Cancelled by {requested_by}: {reason}")
        rollback.begin(tx, None, to_savepoint=False)

    def requeue(self, tx: Transition, record: DLQRecord, new_input: JSON = None) -> None:
        """Resume a DLQ-paused instance at the failed step (optionally with new input)."""
        inst = tx.instance
        if record.reason == rollback.COMPENSATION_EXHAUSTED:
            raise ConflictError(
                f"DLQ record {record.id} is a failed compensation of a finished instance; "
                "fix the side effect by hand and delete the record"
            )
        if inst.status is not InstanceStatus.DLQ:
            raise ConflictError(
                f"instance {inst.id} is not paused in the DLQ (status: {inst.status})"
            )
        row = tx.state.steps[record.step_name]
        if row.status is not StepStatus.PAUSED:
            raise ConflictError(
                f"DLQ record {record.id} is stale: step {row.step_name!r} is {row.status} "
                "(it was resumed with another record of the same instance)"
            )
        data = new_input if new_input is not None else record.input
        tx.update_step(
            row,
            StepStatus.PENDING,
            input=data,
            error=None,
            retry_count=0,
            compensation_retry_count=0,
            completed_at=None,
        )
        tx.remove_dlq(record)
        tx.set_instance(InstanceStatus.RUNNING, error=None)
        tx.event("dlq_requeued", row.step_name, dlq_id=record.id, new_input=new_input is not None)
        for paused in [r for r in tx.state.dlq if r.reason == DLQ_REASON]:
            # a sibling paused in the DLQ resumes with this one: its record is done as well
            sibling = tx.state.steps.get(paused.step_name)
            if sibling is not None and sibling.status is StepStatus.PAUSED:
                tx.update_step(sibling, error=None, retry_count=0)
                tx.event("dlq_requeued", paused.step_name, dlq_id=paused.id, new_input=False)
            tx.remove_dlq(paused)
        for other in list(tx.rows(StepStatus.PAUSED, StepStatus.PENDING)):
            tx.update_step(other, StepStatus.PENDING)
            if not tx.queue_of(other.step_name):
                definition = tx.defn(other.step_name)
                tx.enqueue(other.step_name, 0, definition.priority)
        for waiting in tx.rows(StepStatus.WAITING_DECISION):
            # a human step's timeout item was dropped with the DLQ pause: its deadline stands
            human = tx.defn(waiting.step_name)
            if human.timeout_ms and not tx.queue_of(waiting.step_name):
                started = waiting.started_at if waiting.started_at is not None else tx.now
                left_ms = round((started - tx.now) * 1000) + human.timeout_ms
                tx.enqueue(waiting.step_name, max(0, left_ms), human.priority)
        tx.hook(LifecycleEvent.WORKFLOW_RESUMED, step_name=row.step_name)


def _call_under_way(row: StepRecord | None, item: QueueItem) -> bool:
    """An interrupted call whose worker still holds it: its end is awaited, not dropped."""
    interrupted = row is not None and row.status is StepStatus.INTERRUPTED
    return interrupted and item.attempted_by is not None


def _join_strategy(tx: Transition, block: str) -> JoinStrategy | None:
    join = graph_of(tx.definition).join_of(block)
    return join.join_strategy if join else None
