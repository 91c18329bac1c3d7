"""What a decision sees (`InstanceState`) and what it records (`Transition`).

A store loads an instance's records under its lock, the engine mutates them only through a
`Transition`, and the store persists exactly what the transition marked: changed and new steps,
joins and queue items, the instance, new events and DLQ records. The engine never performs I/O,
so the same decisions drive the in-memory and the PostgreSQL store.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Mapping
from typing import Any

from floxy_core.model import (
    JSON,
    CallLog,
    CancelRequest,
    DLQRecord,
    Event,
    HumanDecision,
    Instance,
    JoinState,
    LifecycleEvent,
    QueueItem,
    StepDefinition,
    StepRecord,
    WorkflowDefinition,
)
from floxy_core.records import field, record, replace
from floxy_core.status import (
    InstanceStatus,
    StepStatus,
    can_transition_instance,
    can_transition_step,
)


@record
class InstanceState:
    """An instance with everything a decision about it may need."""

    definition: WorkflowDefinition
    instance: Instance
    steps: dict[str, StepRecord] = field(default_factory=dict)
    """By step name, in creation order."""
    joins: dict[str, JoinState] = field(default_factory=dict)
    queue: list[QueueItem] = field(default_factory=list)
    decisions: dict[str, HumanDecision] = field(default_factory=dict)
    dlq: list[DLQRecord] = field(default_factory=list)
    cancel_request: CancelRequest | None = None


@record(frozen=True)
class HookCall:
    """A lifecycle hook to fire after the transition is committed."""

    name: str
    kwargs: Mapping[str, Any]
    instance: Instance | None = None
    """The instance as committed; filled in by `Transition.committed_hooks`."""


class IllegalTransition(AssertionError):
    """A bug in the engine: a status change the transition table does not allow."""


class Transition:
    """The mutations of one atomic state change, applied to `state` and remembered for the store."""

    def __init__(self, state: InstanceState, now: float, rng: random.Random) -> None:
        self.state = state
        self.now = now
        self.rng = rng
        self.instance_dirty = False
        self.new_steps: list[StepRecord] = []
        self.dirty_steps: dict[str, StepRecord] = {}
        self.dirty_joins: dict[str, JoinState] = {}
        self.new_queue: list[QueueItem] = []
        self.dirty_queue: list[QueueItem] = []
        self.removed_queue: list[QueueItem] = []
        self.events: list[Event] = []
        self.new_dlq: list[DLQRecord] = []
        self.removed_dlq: list[DLQRecord] = []
        self.new_decisions: list[HumanDecision] = []
        self.cancel_request_done = False
        self.hooks: list[HookCall] = []
        self.new_logs: list[CallLog] = []
        """Handler output to keep, written with the rest (not a state change: not `changed`)."""

    # -- reading ------------------------------------------------------------------------------

    @property
    def instance(self) -> Instance:
        return self.state.instance

    @property
    def definition(self) -> WorkflowDefinition:
        return self.state.definition

    def defn(self, name: str) -> StepDefinition:
        return self.state.definition.steps[name]

    def rows(self, *statuses: StepStatus) -> Iterator[StepRecord]:
        return (r for r in self.state.steps.values() if not statuses or r.status in statuses)

    def queue_of(self, step_name: str) -> list[QueueItem]:
        return [q for q in self.state.queue if q.step_name == step_name]

    @property
    def changed(self) -> bool:
        return bool(
            self.instance_dirty
            or self.new_steps
            or self.dirty_steps
            or self.dirty_joins
            or self.new_queue
            or self.dirty_queue
            or self.removed_queue
            or self.events
            or self.new_dlq
            or self.removed_dlq
            or self.new_decisions
            or self.cancel_request_done
        )

    # -- instance -----------------------------------------------------------------------------

    def set_instance(self, status: InstanceStatus | None = None, **fields: Any) -> None:
        inst = self.state.instance
        if status is not None:
            if not can_transition_instance(inst.status, status):
                raise IllegalTransition(f"instance {inst.id}: {inst.status} -> {status}")
            inst.status = status
            if status is InstanceStatus.RUNNING and inst.started_at is None:
                inst.started_at = self.now
            if status.terminal:
                inst.completed_at = self.now
        for key, value in fields.items():
            setattr(inst, key, value)
        inst.updated_at = self.now
        self.instance_dirty = True

    # -- steps --------------------------------------------------------------------------------

    def new_key(self) -> str:
        return uuid4_text(self.rng.getrandbits(128))

    def create_step(
        self, name: str, data: JSON, status: StepStatus = StepStatus.PENDING
    ) -> StepRecord:
        definition = self.defn(name)
        row = StepRecord(
            id=0,
            instance_id=self.instance.id,
            step_name=name,
            step_type=definition.type,
            status=status,
            input=data,
            idempotency_key=self.new_key(),
            max_retries=definition.max_retries,
            created_at=self.now,
        )
        self.state.steps[name] = row
        self.new_steps.append(row)
        return row

    def update_step(self, row: StepRecord, status: StepStatus | None = None, **fields: Any) -> None:
        if status is not None:
            if not can_transition_step(row.status, status):
                raise IllegalTransition(f"step {row.step_name}: {row.status} -> {status}")
            row.status = status
        for key, value in fields.items():
            setattr(row, key, value)
        if row not in self.new_steps:
            self.dirty_steps[row.step_name] = row

    # -- queue --------------------------------------------------------------------------------

    def enqueue(self, step_name: str, delay_ms: int, priority: int) -> QueueItem:
        item = QueueItem(
            id=0,
            instance_id=self.instance.id,
            step_name=step_name,
            scheduled_at=self.now + delay_ms / 1000.0,
            priority=priority,
        )
        self.state.queue.append(item)
        self.new_queue.append(item)
        return item

    def remove_queue(self, item: QueueItem) -> None:
        if item in self.state.queue:
            self.state.queue.remove(item)
        if item in self.new_queue:
            self.new_queue.remove(item)
        else:
            self.removed_queue.append(item)

    def remove_queue_of(self, step_name: str) -> None:
        for item in self.queue_of(step_name):
            self.remove_queue(item)

    def touch_queue(self, item: QueueItem, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(item, key, value)
        if item not in self.new_queue and item not in self.dirty_queue:
            self.dirty_queue.append(item)

    # -- joins, events, DLQ, decisions, hooks -------------------------------------------------

    def touch_join(self, join: JoinState) -> None:
        self.state.joins[join.join_step] = join
        self.dirty_joins[join.join_step] = join

    def event(self, type_: str, step_name: str | None = None, **payload: JSON) -> None:
        if step_name is not None:
            payload = {"step_name": step_name, **payload}
        self.events.append(Event(self.instance.id, type_, step_name, payload, self.now))

    def add_dlq(self, row: StepRecord, error: str | None, reason: str) -> DLQRecord:
        record = DLQRecord(
            id=0,
            instance_id=self.instance.id,
            workflow_id=self.instance.workflow_id,
            step_name=row.step_name,
            step_type=row.step_type,
            input=row.input,
            error=error,
            reason=reason,
            created_at=self.now,
        )
        self.state.dlq.append(record)
        self.new_dlq.append(record)
        return record

    def remove_dlq(self, record: DLQRecord) -> None:
        self.state.dlq.remove(record)
        self.removed_dlq.append(record)

    def add_decision(self, decision: HumanDecision) -> None:
        self.state.decisions[decision.step_name] = decision
        self.new_decisions.append(decision)

    def add_log(self, log: CallLog) -> None:
        self.new_logs.append(log)

    def hook(self, event: LifecycleEvent, **kwargs: Any) -> None:
        self.hooks.append(HookCall(event, kwargs))

    def committed_hooks(self) -> list[HookCall]:
        """The hooks with a snapshot of the committed instance, so firing them needs no read."""
        if not self.hooks:
            return []
        snapshot = copy.copy(self.state.instance)
        return [replace(h, instance=snapshot) for h in self.hooks]


def uuid4_text(bits: int) -> str:
    """`str(uuid.UUID(int=bits, version=4))` without importing uuid, which loads `platform`
    (1.5 ms of `floxyctl run`)."""
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    bits = (bits & ~(0xF000 << 64)) | (4 << 76)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
