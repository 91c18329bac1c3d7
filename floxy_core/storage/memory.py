"""A thread-safe in-memory `Store`: what `floxyctl run` and the unit tests use.

Each transaction works on a copy of one instance's records and swaps it in only when the
decision returned normally, so a decision that raises changes nothing (atomic state changes).
"""

from __future__ import annotations

import copy
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from floxy_core.engine.state import HookCall, InstanceState, Transition
from floxy_core.errors import ConflictError, KeyTaken, NotFoundError
from floxy_core.model import (
    JSON,
    CallLog,
    DLQRecord,
    Event,
    Instance,
    JoinState,
    ListedInstance,
    QueueItem,
    StepRecord,
    WorkflowDefinition,
)
from floxy_core.records import replace
from floxy_core.status import ACTIVE_INSTANCE_STATUSES, InstanceStatus, StepStatus

T = TypeVar("T")


class _Journaled(Transition):
    """A transition over the store's own step rows and queue items that can be undone.

    Copying every record of an instance for each transaction made a step's cost grow with the
    instance; instead the first change to a row or queue item in a transaction saves its fields,
    and `undo` puts them back when the decision raises (atomic state changes). Joins, the
    instance and the small lists are still copied: the engine edits join lists in place.
    """

    def __init__(self, state: InstanceState, now: float, rng: random.Random) -> None:
        working = InstanceState(
            definition=state.definition,
            instance=copy.copy(state.instance),
            steps=state.steps,
            joins={
                name: JoinState(
                    j.instance_id,
                    j.join_step,
                    list(j.waiting_for),
                    j.strategy,
                    list(j.completed),
                    list(j.failed),
                    j.is_ready,
                )
                for name, j in state.joins.items()
            },
            queue=list(state.queue),
            decisions=dict(state.decisions),
            dlq=list(state.dlq),
            cancel_request=state.cancel_request,
        )
        super().__init__(working, now, rng)
        self._saved: dict[int, tuple[StepRecord | QueueItem, dict[str, Any]]] = {}
        self._replaced: list[tuple[str, StepRecord | None]] = []

    def _save(self, target: StepRecord | QueueItem) -> None:
        if id(target) not in self._saved:
            self._saved[id(target)] = (target, dict(target.__dict__))

    def create_step(
        self, name: str, data: JSON, status: StepStatus = StepStatus.PENDING
    ) -> StepRecord:
        self._replaced.append((name, self.state.steps.get(name)))
        return super().create_step(name, data, status)

    def update_step(self, row: StepRecord, status: StepStatus | None = None, **fields: Any) -> None:
        self._save(row)
        super().update_step(row, status, **fields)

    def touch_queue(self, item: QueueItem, **fields: Any) -> None:
        self._save(item)
        super().touch_queue(item, **fields)

    def undo(self) -> None:
        """Put back every row and queue item as it was before this transaction."""
        for target, fields in self._saved.values():
            target.__dict__.clear()
            target.__dict__.update(fields)
        steps = self.state.steps
        for name, previous in reversed(self._replaced):
            if previous is None:
                steps.pop(name, None)
            else:
                steps[name] = previous


class MemoryStore:
    def __init__(self, *, seed: int | None = None) -> None:
        self._lock = threading.RLock()
        self._work_ready = threading.Condition(self._lock)
        self._rng = random.Random(seed)
        self._definitions: dict[str, WorkflowDefinition] = {}
        self._registered: dict[str, float] = {}
        self._states: dict[int, InstanceState] = {}
        self._start_keys: dict[str, tuple[int, str]] = {}
        self._events: dict[int, list[Event]] = {}
        self._queued: set[int] = set()
        self._by_status: dict[int, dict[StepStatus, dict[str, StepRecord]]] = {}
        """Per instance, its rows by status, kept at commit, so a front end that follows a run
        reads the few rows it looks for, not the whole instance, on every change."""
        self._logs: dict[int, list[CallLog]] = {}
        self._ids = {"instance": 0, "step": 0, "queue": 0, "event": 0, "dlq": 0, "log": 0}

    def _next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    # -- definitions ------------------------------------------------------------------------

    def save_definition(self, definition: WorkflowDefinition) -> bool:
        """Register a definition; identical content is a no-op, changed content is refused."""
        with self._lock:
            existing = self._definitions.get(definition.id)
            if existing is not None:
                if existing.content_hash != definition.content_hash:
                    raise ConflictError(definition.conflict_message(existing))
                return False
            self._definitions[definition.id] = definition
            self._registered[definition.id] = time.time()
            return True

    def list_definitions(self) -> list[tuple[str, str, int, datetime]]:
        """(id, name, version, registered at), by name, newest version first."""
        with self._lock:
            found = sorted(self._definitions.values(), key=lambda d: (d.name, -d.version))
            return [
                (d.id, d.name, d.version, datetime.fromtimestamp(self._registered[d.id], UTC))
                for d in found
            ]

    def get_definition(self, workflow_id: str) -> WorkflowDefinition:
        with self._lock:
            found = self._definitions.get(workflow_id)
            if found is None:
                latest = [d for d in self._definitions.values() if d.name == workflow_id]
                if latest:
                    return max(latest, key=lambda d: d.version)
                raise NotFoundError(f"workflow definition {workflow_id!r} not found")
            return found

    # -- transactions -----------------------------------------------------------------------

    def create_instance(
        self,
        workflow_id: str,
        data: JSON,
        now: float,
        decide: Callable[[Transition], None],
        retry_of: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, list[HookCall]]:
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._start_keys:
                raise KeyTaken(idempotency_key, *self._start_keys[idempotency_key])
            definition = self.get_definition(workflow_id)
            instance = Instance(
                id=self._ids["instance"] + 1,
                workflow_id=definition.id,
                status=InstanceStatus.PENDING,
                input=data,
                created_at=now,
                updated_at=now,
                retry_of=retry_of,
            )
            state = InstanceState(definition=definition, instance=instance)
            tx = _Journaled(state, now, self._rng)
            decide(tx)
            self._ids["instance"] = instance.id
            self._states[instance.id] = state
            self._events[instance.id] = []
            self._commit(tx)
            if idempotency_key is not None:
                self._start_keys[idempotency_key] = (instance.id, definition.id)
            return instance.id, tx.committed_hooks()

    def transact(
        self, instance_id: int, now: float, decide: Callable[[Transition], T]
    ) -> tuple[T, list[HookCall]]:
        with self._lock:
            tx = _Journaled(self._state(instance_id), now, self._rng)
            result = self._decide(tx, lambda: decide(tx))
            self._commit(tx)
            return result, tx.committed_hooks()

    def claim(
        self,
        now: float,
        aging_rate: float,
        decide: Callable[[Transition, QueueItem], T],
    ) -> tuple[bool, T | None, list[HookCall]]:
        """Take the due queue item with the highest effective priority and decide about it.

        Returns (claimed, decision result, hooks); `claimed` is False when nothing was due.
        """
        with self._lock:
            best: tuple[tuple[float, float, int], InstanceState, QueueItem] | None = None
            for instance_id in list(self._queued):
                state = self._states[instance_id]
                for item in state.queue:
                    if item.scheduled_at > now:
                        continue
                    if item.attempted_at is not None and (item.lease_until or 0.0) > now:
                        continue
                    effective = float(item.priority)
                    if aging_rate > 0:
                        waited = max(0.0, now - item.scheduled_at)
                        effective = min(100.0, item.priority + math.floor(waited * aging_rate))
                    key = (-effective, item.scheduled_at, item.id)
                    if best is None or key < best[0]:
                        best = (key, state, item)
            if best is None:
                return False, None, []
            _, state, item = best
            tx = _Journaled(state, now, self._rng)
            result = self._decide(tx, lambda: decide(tx, item))
            self._commit(tx)
            return True, result, tx.committed_hooks()

    @staticmethod
    def _decide(tx: _Journaled, decide: Callable[[], T]) -> T:
        try:
            return decide()
        except BaseException:
            tx.undo()
            raise

    def _state(self, instance_id: int) -> InstanceState:
        state = self._states.get(instance_id)
        if state is None:
            raise NotFoundError(f"instance {instance_id} not found")
        return state

    def _commit(self, tx: Transition) -> None:
        state = tx.state
        for row in tx.new_steps:
            row.id = self._next_id("step")
        for item in tx.new_queue:
            item.id = self._next_id("queue")
        for record in tx.new_dlq:
            record.id = self._next_id("dlq")
        events = self._events[state.instance.id]
        for event in tx.events:
            events.append(
                Event(
                    event.instance_id,
                    event.type,
                    event.step_name,
                    event.payload,
                    event.at,
                    self._next_id("event"),
                )
            )
        if tx.new_logs:
            logs = self._logs.setdefault(state.instance.id, [])
            logs.extend(replace(log, id=self._next_id("log")) for log in tx.new_logs)
        if tx.cancel_request_done:
            state.cancel_request = None
        index = self._by_status.setdefault(state.instance.id, {})
        for row in (*tx.new_steps, *tx.dirty_steps.values()):
            self._index(index, row)
        self._states[state.instance.id] = state
        if state.queue:
            self._queued.add(state.instance.id)
        else:
            self._queued.discard(state.instance.id)
        if tx.new_queue or tx.dirty_queue:
            self._work_ready.notify_all()

    @staticmethod
    def _index(index: dict[StepStatus, dict[str, StepRecord]], row: StepRecord) -> None:
        for status, rows in index.items():
            if status is not row.status and rows.get(row.step_name) is not None:
                del rows[row.step_name]
        index.setdefault(row.status, {})[row.step_name] = row

    def wait_for_work(self, timeout: float) -> None:
        """Block until new queue items are committed or `timeout` seconds pass."""
        with self._lock:
            self._work_ready.wait(timeout)

    def wake(self) -> None:
        with self._lock:
            self._work_ready.notify_all()

    def next_due(self) -> float | None:
        """When the earliest unclaimed queue item becomes due (None: nothing queued)."""
        with self._lock:
            times = [
                q.scheduled_at
                for i in self._queued
                for q in self._states[i].queue
                if q.attempted_at is None
            ]
            return min(times) if times else None

    def renew_lease(self, instance_id: int, item_id: int, worker: str, until: float) -> bool:
        with self._lock:
            state = self._states.get(instance_id)
            for item in state.queue if state else []:
                if item.id == item_id and item.attempted_by == worker:
                    item.lease_until = until
                    return True
            return False

    def release_claim(self, instance_id: int, item_id: int, worker: str) -> bool:
        """Give a claimed item back to the queue at once (graceful shutdown)."""
        with self._lock:
            state = self._states.get(instance_id)
            if state is None:
                return False
            for item in state.queue:
                if item.id == item_id and item.attempted_by == worker:
                    item.attempted_at = item.attempted_by = item.lease_until = None
                    row = state.steps.get(item.step_name)
                    if row is not None and row.status is StepStatus.RUNNING:
                        row.status = StepStatus.PENDING  # nothing runs it until claimed again
                        self._index(self._by_status[instance_id], row)
                    self._work_ready.notify_all()
                    return True
            return False

    def attempt_current(self, instance_id: int, item_id: int) -> bool:
        """Whether a claimed item still stands: its step was not stopped (an interrupted call
        keeps its item until it ends) or taken over."""
        with self._lock:
            state = self._states.get(instance_id)
            for item in state.queue if state else []:
                if item.id == item_id:
                    row = state.steps.get(item.step_name) if state else None
                    return row is None or row.status is not StepStatus.INTERRUPTED
            return False

    # -- reads ------------------------------------------------------------------------------

    def get_instance(self, instance_id: int) -> Instance:
        with self._lock:
            return copy.copy(self._state(instance_id).instance)

    def retries_of(self, instance_id: int) -> list[int]:
        with self._lock:
            return sorted(i for i, s in self._states.items() if s.instance.retry_of == instance_id)

    def get_steps(self, instance_id: int, *statuses: StepStatus) -> list[StepRecord]:
        """Every row in creation order, or only the rows in `statuses` (by id)."""
        with self._lock:
            state = self._state(instance_id)
            if not statuses:
                return [copy.copy(r) for r in state.steps.values()]
            index = self._by_status.get(instance_id, {})
            found = [r for s in set(statuses) for r in index.get(s, {}).values()]
            return [copy.copy(r) for r in sorted(found, key=lambda r: r.id)]

    def get_events(self, instance_id: int) -> list[Event]:
        with self._lock:
            self._state(instance_id)
            return list(self._events[instance_id])

    def get_logs(
        self, instance_id: int, step_name: str | None = None, after_id: int = 0
    ) -> list[CallLog]:
        with self._lock:
            self._state(instance_id)
            return [
                log
                for log in self._logs.get(instance_id, [])
                if log.id > after_id and step_name in (None, log.step_name)
            ]

    def get_dlq(self, instance_id: int | None = None) -> list[DLQRecord]:
        with self._lock:
            states = [self._state(instance_id)] if instance_id else self._states.values()
            return [copy.copy(r) for s in states for r in s.dlq]

    def find_dlq(self, dlq_id: int) -> DLQRecord:
        with self._lock:
            for state in self._states.values():
                for record in state.dlq:
                    if record.id == dlq_id:
                        return record
            raise NotFoundError(f"DLQ record {dlq_id} not found")

    def list_instances(self) -> list[Instance]:
        with self._lock:
            return [copy.copy(s.instance) for s in self._states.values()]

    def list_instances_page(
        self,
        *,
        status: str | None = None,
        workflow_ids: Sequence[str] | None = None,
        since: datetime | timedelta | None = None,
        until: datetime | timedelta | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[ListedInstance], bool]:
        """As `PostgresStore.list_instances_page`; a timedelta bound counts back from now."""
        now = time.time()

        def bound(value: datetime | timedelta | None) -> float | None:
            if isinstance(value, timedelta):
                return now - value.total_seconds()
            return None if value is None else value.timestamp()

        low, high = bound(since), bound(until)
        with self._lock:
            listed = [
                self._listed(iid, state)
                for iid, state in self._states.items()
                if (workflow_ids is None or state.instance.workflow_id in workflow_ids)
                and (low is None or state.instance.created_at >= low)
                and (high is None or state.instance.created_at < high)
            ]
        listed = [x for x in listed if status is None or x.shown == status]
        listed.sort(key=lambda x: (x.instance.created_at, x.instance.id), reverse=True)
        page = listed[offset : offset + limit + 1]
        return page[:limit], len(page) > limit

    def _listed(self, instance_id: int, state: InstanceState) -> ListedInstance:
        waiting: tuple[str, ...] = ()
        if state.instance.status is InstanceStatus.RUNNING:
            rows = self._by_status.get(instance_id, {}).get(StepStatus.WAITING_DECISION, {})
            waiting = tuple(r.step_name for r in sorted(rows.values(), key=lambda r: r.id))
        shown = "waiting" if waiting else state.instance.status.value
        return ListedInstance(copy.copy(state.instance), shown, waiting)

    def listing_stats(self) -> dict[str, int]:
        """The counts `floxyctl status` shows, as `PostgresStore.listing_stats` counts them."""
        with self._lock:
            listed = [self._listed(iid, state) for iid, state in self._states.items()]
        shown = [x.shown for x in listed]
        moving = ("running", "rolling_back", "cancelling")
        return {
            "total": len(listed),
            "completed": shown.count("completed"),
            "failed": shown.count("failed"),
            "running": sum(shown.count(s) for s in moving),
            "waiting": shown.count("waiting"),
            "pending": shown.count("pending"),
            "active": sum(1 for x in listed if x.instance.status.value in ACTIVE_INSTANCE_STATUSES),
        }

    def delete_dlq(self, dlq_id: int) -> None:
        """Forget a DLQ record that was dealt with by hand."""
        with self._lock:
            for state in self._states.values():
                for record in state.dlq:
                    if record.id == dlq_id:
                        state.dlq.remove(record)
                        return
            raise NotFoundError(f"DLQ record {dlq_id} not found")
