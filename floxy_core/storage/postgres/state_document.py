"""The state document: what `floxy_state` and `floxy_claim` send, and what `floxy_apply` takes.

Package-internal. The engine's records travel between this store and the SQL functions of
migrations_pro/004_transition_functions.sql (and 007_bounded_state.sql's
`floxy_state`) as one JSON document each way. Both sides must agree on it, so it is named here:

- **state** (`floxy_state`, `floxy_lock_load`, and `floxy_claim`'s `state`): a JSON array —
  workflow_id, status, input, output, error, created_at (verbatim, the partition key),
  updated_at, started_at, completed_at (epoch seconds), steps, joins, queue, decisions, dlq,
  cancel request (or null), and since 007 a 16th element, true when `steps` is the whole
  instance (else the rest is read by name through `floxy_steps`).
- **apply** (`floxy_apply`): a JSON object of only what the `Transition` marked — instance_id,
  instance_created, step_ids (name → id of the stored steps it refers to), new_steps, steps,
  instance, joins, queue_removed, queue, queue_new, events, dlq_new, dlq_removed, decisions,
  cancel_done / cancel_request, notify; it answers the ids it gave: step_ids, dlq_ids, queue_ids.
- **call logs** (`insert_step_logs`, migration 010): a JSON array of the `CallLog` rows, sent in
  the same batch.

Timestamps are epoch seconds on the way in and ISO 8601 on the way out, except the created_at
partition keys, which go back exactly as the server wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from floxy_core import values
from floxy_core.engine.state import InstanceState, Transition
from floxy_core.errors import StoreRejected
from floxy_core.model import (
    CancelRequest,
    DLQRecord,
    HumanDecision,
    Instance,
    JoinState,
    JoinStrategy,
    QueueItem,
    StepRecord,
    StepType,
    WorkflowDefinition,
)
from floxy_core.status import InstanceStatus, StepStatus


def epoch(value: Any) -> float | None:
    """Seconds since the epoch from a row's datetime or a state document's number."""
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def micro(now: float) -> float:
    """The engine's clock at PostgreSQL's resolution: a time it writes and reads back (a due
    time, say) then compares equal to the `now` it was derived from."""
    return round(now, 6)


def iso(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


def timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass
class Keys:
    """Partition keys of the rows loaded in this transaction, kept exact for pruned updates."""

    instance_created: datetime
    steps_created: dict[str, str] = field(default_factory=dict)
    """Exactly as the server wrote them."""
    step_ids: dict[str, int] = field(default_factory=dict)
    had_cancel_request: bool = False


class Steps(dict[str, StepRecord]):
    """The step rows of one instance, as `InstanceState.steps`, read from the database only as
    far as a decision looks.

    The state document of a long instance holds only the rows its queue and decisions refer to
    (migration 007), so a step's cost does not grow with the instance. A name not loaded yet is
    looked up in the same transaction (its absence is remembered); after a few such misses, or
    on any walk over all rows, the rest is read at once and the rows are put in creation order,
    keeping the objects the decision already holds.
    """

    _MISSES_BEFORE_ALL = 8

    def __init__(
        self,
        rows: list[StepRecord],
        whole: bool,
        fetch: Callable[[list[str] | None], list[StepRecord]],
    ) -> None:
        super().__init__((row.step_name, row) for row in rows)
        self._whole = whole
        self._fetch = fetch
        self._absent: set[str] = set()
        self._misses = 0

    def _find(self, name: str) -> StepRecord | None:
        found = dict.get(self, name)
        if found is not None or self._whole or name in self._absent:
            return found
        self._misses += 1
        if self._misses > self._MISSES_BEFORE_ALL:
            self._load_all()
            return dict.get(self, name)
        for row in self._fetch([name]):
            dict.setdefault(self, row.step_name, row)
        found = dict.get(self, name)
        if found is None:
            self._absent.add(name)
        return found

    def _load_all(self) -> None:
        if self._whole:
            return
        self._whole = True
        ordered = {row.step_name: dict.get(self, row.step_name) or row for row in self._fetch(None)}
        for name, row in dict.items(self):  # created by this transaction: last
            ordered.setdefault(name, row)
        dict.clear(self)
        dict.update(self, ordered)

    def get(self, name: str, default: Any = None) -> Any:
        found = self._find(name)
        return default if found is None else found

    def __getitem__(self, name: str) -> StepRecord:
        found = self._find(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load_all()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._load_all()
        return dict.keys(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)


def decode_claim(claimed: dict[str, Any]) -> tuple[int, int, list[Any]]:
    """`floxy_claim`'s answer: the instance, the queue row it leased and the state document."""
    return int(claimed["instance_id"]), int(claimed["item_id"]), claimed["state"]


def decode_state(
    doc: list[Any],
    instance_id: int,
    definition_of: Callable[[str], WorkflowDefinition],
    fetch_steps: Callable[[datetime, list[str] | None], list[dict[str, Any]]],
) -> tuple[InstanceState, Keys]:
    """The instance's records from the document `floxy_state` builds on the server.

    `fetch_steps(created, names)` reads more step objects (those named, or all: None) in the
    same transaction, when the document's step list is not the whole instance."""
    (workflow_id, status, data, output, error, created_raw, updated, started, completed) = doc[:9]
    steps_raw, joins_raw, queue_raw, decisions_raw, dlq_raw, cancel_raw = doc[9:15]
    whole = bool(doc[15]) if len(doc) > 15 else True
    created = timestamp(created_raw)
    assert created is not None
    definition = definition_of(workflow_id)
    keys = Keys(instance_created=created)
    instance = Instance(
        id=instance_id,
        workflow_id=workflow_id,
        status=InstanceStatus(status),
        input=data,
        output=output,
        error=error,
        created_at=created.timestamp(),
        updated_at=epoch(updated) or 0.0,
        started_at=epoch(started),
        completed_at=epoch(completed),
    )
    names: dict[int, str] = {}

    def step(s: dict[str, Any]) -> StepRecord:
        keys.steps_created[s["step_name"]] = s["created_at"]
        keys.step_ids[s["step_name"]] = s["id"]
        names[s["id"]] = s["step_name"]
        return StepRecord(
            id=s["id"],
            instance_id=instance_id,
            step_name=s["step_name"],
            step_type=StepType(s["step_type"]),
            status=StepStatus(s["status"]),
            input=s["input"],
            idempotency_key=s["idempotency_key"],
            max_retries=s["max_retries"],
            created_at=float(s["created_epoch"]),
            output=s["output"],
            error=s["error"],
            retry_count=s["retry_count"],
            compensation_retry_count=s["compensation_retry_count"],
            started_at=epoch(s["started_at"]),
            completed_at=epoch(s["completed_at"]),
        )

    def fetch(wanted: list[str] | None) -> list[StepRecord]:
        return [step(s) for s in fetch_steps(created, wanted)]

    state = InstanceState(
        definition=definition,
        instance=instance,
        steps=Steps([step(s) for s in steps_raw], whole, fetch),
    )
    for j in joins_raw:
        state.joins[j["join_step"]] = JoinState(
            instance_id,
            j["join_step"],
            list(j["waiting_for"]),
            JoinStrategy(j["strategy"]),
            list(j["completed"]),
            list(j["failed"]),
            bool(j["is_ready"]),
        )
    for item in queue_raw:
        state.queue.append(
            QueueItem(
                id=item["id"],
                instance_id=instance_id,
                step_name=names.get(item["step_id"], ""),
                scheduled_at=epoch(item["scheduled_at"]) or 0.0,
                priority=item["priority"],
                attempted_at=epoch(item["attempted_at"]),
                attempted_by=item["attempted_by"],
                lease_until=epoch(item["lease_until"]),
            )
        )
    for d in decisions_raw:
        name = names.get(d["step_id"])
        if name is not None:
            state.decisions[name] = HumanDecision(
                instance_id,
                name,
                d["decision"],
                d["decided_by"],
                d["comment"],
                epoch(d["decided_at"]) or 0.0,
            )
    for x in dlq_raw:
        state.dlq.append(
            DLQRecord(
                id=x["id"],
                instance_id=instance_id,
                workflow_id=workflow_id,
                step_name=x["step_name"],
                step_type=StepType(x["step_type"]),
                input=x["input"],
                error=x["error"],
                reason=x["reason"],
                created_at=epoch(x["created_at"]) or 0.0,
            )
        )
    if cancel_raw is not None:
        keys.had_cancel_request = True
        state.cancel_request = CancelRequest(
            instance_id,
            cancel_raw["cancel_type"],
            cancel_raw["requested_by"],
            cancel_raw["reason"] or "",
            epoch(cancel_raw["created_at"]) or 0.0,
        )
    return state, keys


def encode_apply(tx: Transition, keys: Keys) -> str | None:
    """The `floxy_apply` document of exactly what `tx` marked, as JSON text (None: nothing to
    write). Refused with `StoreRejected` before the write if a value cannot be encoded."""
    if not tx.changed and tx.state.cancel_request is None:
        return None
    inst = tx.instance
    doc: dict[str, Any] = {
        "instance_id": inst.id,
        "instance_created": keys.instance_created.isoformat(),
        "step_ids": referenced_ids(tx, keys),
    }
    if tx.new_steps:
        doc["new_steps"] = [step_doc(row) for row in tx.new_steps]
    if tx.dirty_steps:
        doc["steps"] = [
            step_doc(row, keys.steps_created[row.step_name]) for row in tx.dirty_steps.values()
        ]
    if tx.instance_dirty:
        doc["instance"] = {
            "status": inst.status.value,
            "output": inst.output,
            "error": inst.error,
            "started_at": iso(inst.started_at),
            "completed_at": iso(inst.completed_at),
            "updated_at": iso(inst.updated_at),
        }
    if tx.dirty_joins:
        doc["joins"] = [
            {
                "join_step": join.join_step,
                "waiting_for": join.waiting_for,
                "completed": join.completed,
                "failed": join.failed,
                "strategy": join.strategy.value,
                "is_ready": join.is_ready,
                "now": iso(tx.now),
            }
            for join in tx.dirty_joins.values()
        ]
    if tx.removed_queue:
        doc["queue_removed"] = [item.id for item in tx.removed_queue]
    if tx.dirty_queue:
        doc["queue"] = [queue_doc(item) for item in tx.dirty_queue]
    if tx.new_queue:
        doc["queue_new"] = [queue_doc(item) for item in tx.new_queue]
    if tx.events:
        doc["events"] = [
            {
                "step_name": event.step_name,
                "type": event.type,
                "payload": dict(event.payload),
                "at": iso(event.at),
            }
            for event in tx.events
        ]
    if tx.new_dlq:
        doc["dlq_new"] = [
            {
                "workflow_id": record.workflow_id,
                "step_name": record.step_name,
                "step_type": record.step_type.value,
                "input": record.input,
                "error": record.error,
                "reason": record.reason,
                "created_at": iso(record.created_at),
            }
            for record in tx.new_dlq
        ]
    if tx.removed_dlq:
        doc["dlq_removed"] = [record.id for record in tx.removed_dlq]
    if tx.new_decisions:
        doc["decisions"] = [
            {
                "step_name": decision.step_name,
                "decided_by": decision.decided_by,
                "decision": decision.decision,
                "comment": decision.comment,
                "decided_at": iso(decision.decided_at),
            }
            for decision in tx.new_decisions
        ]
    request = tx.state.cancel_request
    if inst.status.terminal and (keys.had_cancel_request or request is not None):
        doc["cancel_done"] = True
    elif request is not None and not keys.had_cancel_request:
        doc["cancel_request"] = {
            "requested_by": request.requested_by,
            "cancel_type": request.cancel_type,
            "reason": request.reason,
        }
    # only work another worker could take: not the lease a claim just wrote
    doc["notify"] = any(i.attempted_by is None for i in [*tx.new_queue, *tx.dirty_queue])
    try:
        return values.dumps(doc)
    except (TypeError, ValueError) as exc:  # caught before the write, never retried as is
        raise StoreRejected(f"cannot encode the write as JSON: {exc}") from exc


def assign_ids(tx: Transition, ids: dict[str, Any]) -> None:
    """Give the records `tx` created the ids `floxy_apply` answered."""
    for step in tx.new_steps:
        step.id = int(ids["step_ids"][step.step_name])
    for record, new_id in zip(tx.new_dlq, ids["dlq_ids"], strict=True):
        record.id = int(new_id)
    for item, new_id in zip(tx.new_queue, ids["queue_ids"], strict=True):
        item.id = int(new_id)


def encode_logs(tx: Transition) -> str | None:
    """The rows of `insert_step_logs` (migration 010) for the call logs of `tx`, as JSON text
    (None: it has none). The texts were made storable (no NUL) by `floxy_core.capture`."""
    if not tx.new_logs:
        return None
    rows = [
        {
            "instance_id": log.instance_id,
            "step_name": log.step_name,
            "handler": log.handler,
            "retry_count": log.retry_count,
            "compensation": log.compensation,
            "started_at": micro(log.started_at),
            "ended_at": micro(log.ended_at),
            "outcome": log.outcome,
            "exit_code": log.exit_code,
            "stdout": log.stdout,
            "stderr": log.stderr,
            "truncated": log.truncated,
        }
        for log in tx.new_logs
    ]
    try:
        return values.dumps(rows)
    except (TypeError, ValueError) as exc:
        raise StoreRejected(f"cannot encode the call logs as JSON: {exc}") from exc


def referenced_ids(tx: Transition, keys: Keys) -> dict[str, int]:
    """Ids of the stored steps this transaction's writes refer to by name (queue rows,
    events, DLQ records, decisions): not the whole instance's, which grows with it."""
    new = {row.step_name for row in tx.new_steps}
    named = {
        *(item.step_name for item in tx.new_queue),
        *(event.step_name for event in tx.events if event.step_name is not None),
        *(record.step_name for record in tx.new_dlq),
        *(decision.step_name for decision in tx.new_decisions),
    } - new
    for name in named - keys.step_ids.keys():
        tx.state.steps.get(name)  # not loaded yet: read it (and its id) now
    return {name: keys.step_ids[name] for name in named if name in keys.step_ids}


def queue_doc(item: QueueItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "step_name": item.step_name,
        "scheduled_at": iso(item.scheduled_at),
        "priority": item.priority,
        "attempted_at": iso(item.attempted_at),
        "attempted_by": item.attempted_by,
        "lease_until": iso(item.lease_until),
    }


def step_doc(row: StepRecord, created: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "step_name": row.step_name,
        "step_type": row.step_type.value,
        "status": row.status.value,
        "input": row.input,
        "output": row.output,
        "error": row.error,
        "retry_count": row.retry_count,
        "max_retries": row.max_retries,
        "compensation_retry_count": row.compensation_retry_count,
        "idempotency_key": row.idempotency_key,
        "started_at": iso(row.started_at),
        "completed_at": iso(row.completed_at),
        "created_at": created or iso(row.created_at),
    }
