"""The PostgreSQL `Store`: the same port as the in-memory store, durable and multi-process.

Each decision runs in one transaction: the instance row is locked (`FOR UPDATE`), its records
are loaded with a single query, the engine decides, and exactly what the `Transition` recorded
is written back. Claims take a due queue row with `FOR UPDATE SKIP LOCKED` and never wait for an
instance lock (another worker holding it means: try another row), so claims cannot deadlock
with result transactions. No transaction is open while a handler runs; the claimed row carries a
lease that another worker may take over once it expires.

Every time this store compares or writes is the database's clock (`clock_timestamp()` once the
rows are locked), never the caller's `now`: daemons whose clocks disagree behave as if they
agreed (DECISIONS.md "Instances and definitions"). Only `clock="caller"` (one process driving a
fake clock in deterministic tests) makes the store use the `now` it is given.

What crosses to and from the SQL functions (the state document and the `floxy_apply`
document) is encoded and decoded in `state_document.py`; the LISTEN/NOTIFY wake-ups live in
`listener.py`. This module holds the port's methods and their transactions.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from floxy_core import records, values
from floxy_core.engine.state import HookCall, InstanceState, Transition
from floxy_core.errors import (
    ConflictError,
    KeyTaken,
    NotFoundError,
    StoreError,
    StoreRejected,
)
from floxy_core.model import (
    JSON,
    CallLog,
    DLQRecord,
    Event,
    Instance,
    ListedInstance,
    QueueItem,
    StepRecord,
    StepType,
    WorkflowDefinition,
)
from floxy_core.status import ACTIVE_INSTANCE_STATUSES, InstanceStatus, StepStatus
from floxy_core.storage.postgres.listener import CHANNEL, QueueListener
from floxy_core.storage.postgres.sql import q
from floxy_core.storage.postgres.state_document import (
    Keys,
    assign_ids,
    decode_claim,
    decode_state,
    encode_apply,
    encode_logs,
    epoch,
    iso,
    micro,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

T = TypeVar("T")
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_DATA_SQLSTATE_CLASSES = {"22", "54"}
"""Data exception (a value out of range, an untranslatable character) and program limit
exceeded (nesting, sizes): the same write would fail again, so it is not an outage."""


def _json(value: JSON) -> Any:
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(value, dumps=values.dumps)


def _exact_json(conn: psycopg.Connection[Any]) -> None:
    """JSON read back keeps numbers exact (`values.loads`), as it went in."""
    from psycopg.types.json import set_json_loads

    set_json_loads(values.loads, conn)


@records.record(frozen=True)
class Gauges:
    """What floxyd's /metrics reads from the database at each scrape (its clock throughout)."""

    ready: int
    leased: int
    scheduled: int
    oldest_ready_age_s: float
    active: dict[str, int]
    """Unfinished instances by status, every status of `ACTIVE_INSTANCE_STATUSES` present."""
    aborted: dict[str, int]
    """Aborts per workflow since the install (migration 008), whichever process aborted."""


@records.record(frozen=True)
class ActiveInstance:
    """An unfinished instance as floxyd's periodic stats show it."""

    id: int
    workflow_id: str
    status: str
    runtime_s: float
    total_steps: int
    completed_steps: int
    rolled_back_steps: int
    current_step: str

    @property
    def progress(self) -> str:
        return f"{self.completed_steps}/{self.total_steps}"


class _CreatedAt:
    """Instance id → created_at (immutable), so a lock finds its row in one partition.

    Bounded: the oldest half is forgotten when full; a miss costs one partition-wide probe.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._map: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def get(self, instance_id: int) -> datetime | None:
        return self._map.get(instance_id)

    def put(self, instance_id: int, created: datetime) -> None:
        with self._lock:
            if len(self._map) >= self._limit:
                for key in list(self._map)[: self._limit // 2]:
                    del self._map[key]
            self._map[instance_id] = created


class _KeyRace(Exception):
    """The start key belongs to a committed start: this transaction rolls back. A repeated key
    is found here, in the start's own transaction, so a first start costs no extra query."""


class _Unit:
    """One engine transaction in two round trips: `BEGIN; <lock and load>`, then
    `<every write>; COMMIT`, as simple-query batches with parameters bound client-side.

    psycopg would send BEGIN and COMMIT as round trips of their own; its pipeline mode saves
    them but costs more client CPU than the round trips do.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg import ClientCursor

        self.conn = conn
        self.cur: psycopg.ClientCursor[Any] = ClientCursor(conn)

    def begin(self, sql: str, params: dict[str, Any]) -> Any:
        """Start the transaction with `sql`; the row it returned."""
        self.cur.execute("BEGIN; " + sql.rstrip(";"), params)
        self.cur.nextset()
        return self.cur.fetchone()

    def commit(self, sql: str | None = None, params: dict[str, Any] | None = None) -> Any:
        """Run `sql` (the writes) and COMMIT in one batch; the single value `sql` returned."""
        if sql is None:
            self.cur.execute("COMMIT")
            return None
        self.cur.execute(sql.rstrip(";") + "; COMMIT", params)
        row = self.cur.fetchone()
        return None if row is None else row[0]


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        seed: int | None = None,
        connect_timeout: float = 10.0,
        clock: Literal["database", "caller"] = "database",
    ) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self._caller_clock = clock == "caller"
        self.pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=connect_timeout,
            name="floxy",
            configure=_exact_json,
            # JIT compiles the partition-wide load query for ~0.7 s; our queries are tiny. Custom
            # plans of the prepared hot-path statements would re-plan across every daily
            # partition on each call; generic plans prune at execution time instead.
            # Autocommit: the hot path writes BEGIN and COMMIT into its own batches (`_Unit`).
            kwargs={
                "options": "-c jit=off -c plan_cache_mode=force_generic_plan",
                "autocommit": True,
            },
        )
        self.pool.open(wait=True, timeout=connect_timeout)
        self._rng = random.Random(seed)
        self._definitions: dict[str, WorkflowDefinition] = {}
        self._created = _CreatedAt()
        self._listener = QueueListener(dsn)

    def close(self) -> None:
        self._listener.close()
        self.pool.close()

    def _now(self, now: float) -> datetime | None:
        """The `now` parameter of a statement: NULL (the database's clock) unless the caller's
        clock was asked for."""
        return datetime.fromtimestamp(micro(now), UTC) if self._caller_clock else None

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            yield conn

    # -- definitions ------------------------------------------------------------------------

    def save_definition(self, definition: WorkflowDefinition) -> bool:
        params = {
            "id": definition.id,
            "name": definition.name,
            "version": definition.version,
            "definition": _json(definition.to_json()),
            "content_hash": definition.content_hash,
        }
        with self._conn() as conn:
            inserted = conn.execute(q("insert_definition"), params).fetchone()
            if inserted is None:
                row = conn.execute(q("definition_by_id"), {"id": definition.id}).fetchone()
                if row is not None and row[3] != definition.content_hash:
                    old = WorkflowDefinition.from_json(row[0], row[1], row[2])
                    raise ConflictError(definition.conflict_message(old))
        self._definitions[definition.id] = definition
        return inserted is not None

    def get_definition(self, workflow_id: str) -> WorkflowDefinition:
        cached = self._definitions.get(workflow_id)
        if cached is not None:
            return cached
        with self._conn() as conn:
            row = conn.execute(q("definition_by_id"), {"id": workflow_id}).fetchone()
            if row is None:
                row = conn.execute(q("latest_definition_by_name"), {"name": workflow_id}).fetchone()
        if row is None:
            raise NotFoundError(f"workflow definition {workflow_id!r} not found")
        definition = WorkflowDefinition.from_json(row[0], int(row[1]), row[2])
        self._definitions[definition.id] = definition
        return definition

    def list_definitions(self) -> list[tuple[str, str, int, datetime]]:
        with self._conn() as conn:
            rows = conn.execute(q("list_definitions")).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    # -- transactions -----------------------------------------------------------------------

    def _retrying(self, fn: Callable[[], T]) -> T:
        import psycopg

        for attempt in range(5):
            try:
                return fn()
            except psycopg.Error as exc:
                if exc.sqlstate in _RETRYABLE_SQLSTATES and attempt < 4:
                    continue
                if exc.sqlstate is not None and exc.sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
                    raise StoreRejected(f"the database refused the data: {exc}") from exc
                if isinstance(exc, psycopg.OperationalError):
                    raise StoreError(f"database unavailable: {exc}") from exc
                raise
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _unit(self) -> Iterator[_Unit]:
        """A transaction that does not commit (an error, or `decide` raised) is rolled back by
        the pool's connection context."""
        with self._conn() as conn:
            yield _Unit(conn)

    def create_instance(
        self,
        workflow_id: str,
        data: JSON,
        now: float,
        decide: Callable[[Transition], None],
        retry_of: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, list[HookCall]]:
        definition = self.get_definition(workflow_id)

        def run() -> tuple[int, list[HookCall]]:
            with self._unit() as unit:
                row = unit.begin(
                    q("insert_instance"),
                    {
                        "workflow_id": definition.id,
                        "input": _json(data),
                        "now": self._now(now),
                        "retry_of": retry_of,
                    },
                )
                assert row is not None
                created = row[1]
                if idempotency_key is not None:
                    params = {"key": idempotency_key, "workflow_id": definition.id, "id": row[0]}
                    unit.cur.execute(q("claim_start_key"), params)
                    if unit.cur.fetchone() is None:  # a start holding the key has committed
                        raise _KeyRace
                at = micro(created.timestamp())
                instance = Instance(
                    id=int(row[0]),
                    workflow_id=definition.id,
                    status=InstanceStatus.PENDING,
                    input=data,
                    created_at=at,
                    updated_at=at,
                    retry_of=retry_of,
                )
                state = InstanceState(definition=definition, instance=instance)
                tx = Transition(state, at, self._rng)
                decide(tx)
                self._finish(unit, tx, Keys(instance_created=created))
                self._created.put(instance.id, created)
                return instance.id, tx.committed_hooks()

        try:
            return self._retrying(run)
        except _KeyRace:
            assert idempotency_key is not None
            with self._conn() as conn:
                row = conn.execute(q("find_start_key"), {"key": idempotency_key}).fetchone()
            assert row is not None, "start keys are never deleted"
            raise KeyTaken(idempotency_key, int(row[0]), str(row[1])) from None

    def transact(
        self, instance_id: int, now: float, decide: Callable[[Transition], T]
    ) -> tuple[T, list[HookCall]]:
        """The transaction runs at the database's clock (`now` only with `clock="caller"`)."""

        def run() -> tuple[T, list[HookCall]]:
            with self._unit() as unit:
                row = unit.begin(
                    q("lock_load"),
                    {
                        "id": instance_id,
                        "created": self._created.get(instance_id),
                        "now": self._now(now),
                    },
                )
                if row is None or row[0] is None:
                    raise NotFoundError(f"instance {instance_id} not found")
                tx_now = micro(row[1])
                state, keys = self._state(unit, instance_id, row[0], tx_now)
                tx = Transition(state, tx_now, self._rng)
                result = decide(tx)
                self._finish(unit, tx, keys)
                return result, tx.committed_hooks()

        return self._retrying(run)

    def claim(
        self, now: float, aging_rate: float, decide: Callable[[Transition, QueueItem], T]
    ) -> tuple[bool, T | None, list[HookCall]]:
        """Due times, leases and aging are judged by the database's clock (`now` only with
        `clock="caller"`)."""

        def run() -> tuple[bool, T | None, list[HookCall]]:
            with self._unit() as unit:
                row = unit.begin(q("claim"), {"now": self._now(now), "rate": max(aging_rate, 0.0)})
                claimed = row[0] if row else None
                if claimed is None:
                    unit.commit()
                    return False, None, []
                instance_id, item_id, doc = decode_claim(claimed)
                tx_now = micro(row[1])
                state, keys = self._state(unit, instance_id, doc, tx_now)
                tx = Transition(state, tx_now, self._rng)
                item = next(i for i in state.queue if i.id == item_id)
                result = decide(tx, item)
                self._finish(unit, tx, keys)
                return True, result, tx.committed_hooks()

        return self._retrying(run)

    # -- loading and persisting -------------------------------------------------------------

    def _state(
        self, unit: _Unit, instance_id: int, doc: list[Any], now: float
    ) -> tuple[InstanceState, Keys]:
        """Decode the state document of `instance_id` within `unit`'s transaction."""

        def fetch(created: datetime, wanted: list[str] | None) -> list[dict[str, Any]]:
            params = {"id": instance_id, "created": created, "now": iso(now), "names": wanted}
            unit.cur.execute(q("state_steps"), params)
            found = unit.cur.fetchone()
            return (found[0] if found else None) or []

        state, keys = decode_state(doc, instance_id, self.get_definition, fetch)
        self._created.put(instance_id, keys.instance_created)
        return state, keys

    def _finish(self, unit: _Unit, tx: Transition, keys: Keys) -> None:
        """Commit every write of `tx` as one `floxy_apply` call, and its call logs in the same
        batch (no round trip of their own); give new records their ids."""
        rows = encode_logs(tx)
        logs = None if rows is None else {"logs": rows, "now": self._now(tx.now)}
        text = encode_apply(tx, keys)
        if text is None:
            if logs is None:
                unit.commit()
            else:
                unit.commit(q("insert_step_logs"), logs)
            return
        if logs is None:
            ids = unit.commit(q("apply"), {"doc": text})
        else:  # the first statement's value is the batch's: apply's ids
            batch = q("apply").rstrip(";") + ";\n" + q("insert_step_logs")
            ids = unit.commit(batch, {"doc": text, **logs})
        assign_ids(tx, ids)

    # -- waking and leases ------------------------------------------------------------------

    def wait_for_work(self, timeout: float) -> None:
        self._listener.wait(timeout)

    def wake(self) -> None:
        self._listener.wake()

    def next_due(self) -> float | None:
        """On the caller's clock (it only sizes an idle wait): the database says how far off."""
        with self._conn() as conn:
            row = conn.execute(q("next_due")).fetchone()
        if row is None or row[0] is None:
            return None
        return float(row[0]) if self._caller_clock else time.time() + float(row[1])

    def release_claim(self, instance_id: int, item_id: int, worker: str) -> bool:
        """Give a claimed item back to the queue at once (graceful shutdown)."""
        with self._conn() as conn:
            row = conn.execute(q("release_claim"), {"id": item_id, "worker": worker}).fetchone()
            conn.execute(f"NOTIFY {CHANNEL}")
            return bool(row and row[0])

    def attempt_current(self, instance_id: int, item_id: int) -> bool:
        with self._conn() as conn:
            return conn.execute(q("queue_item_exists"), {"id": item_id}).fetchone() is not None

    def renew_lease(self, instance_id: int, item_id: int, worker: str, until: float) -> bool:
        """`until` is on the caller's clock: only its distance from now is used, from the
        database's clock. False when the lease ran out or was taken over: the call must stop."""
        params = {
            "id": item_id,
            "worker": worker,
            "seconds": max(0.0, until - time.time()),
            "until": self._now(until),
        }
        with self._conn() as conn:
            cur = conn.execute(q("renew_lease"), params)
            return cur.rowcount > 0

    # -- reads ------------------------------------------------------------------------------

    @staticmethod
    def _instance(row: Any) -> Instance:
        return Instance(
            id=int(row[0]),
            workflow_id=row[1],
            status=InstanceStatus(row[2]),
            input=row[3],
            output=row[4],
            error=row[5],
            created_at=row[6].timestamp(),
            updated_at=row[7].timestamp(),
            started_at=epoch(row[8]),
            completed_at=epoch(row[9]),
            retry_of=row[10],
        )

    def get_instance(self, instance_id: int) -> Instance:
        with self._conn() as conn:
            row = conn.execute(q("get_instance"), {"id": instance_id}).fetchone()
        if row is None:
            raise NotFoundError(f"instance {instance_id} not found")
        return self._instance(row)

    def retries_of(self, instance_id: int) -> list[int]:
        with self._conn() as conn:
            rows = conn.execute(q("retries_of"), {"id": instance_id}).fetchall()
        return [int(r[0]) for r in rows]

    def list_instances(
        self, *, status: str | None = None, workflow_id: str | None = None, limit: int = 50
    ) -> list[Instance]:
        with self._conn() as conn:
            rows = conn.execute(
                q("list_instances"), {"status": status, "workflow_id": workflow_id, "limit": limit}
            ).fetchall()
        return [self._instance(r) for r in rows]

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
        """One page of instances, newest first, and whether more follow (`floxyctl status`).

        `status` is an instance status or `waiting` (running, a human step waiting for a
        decision; such an instance is listed as `waiting`, not `running`). `since` (inclusive)
        and `until` (exclusive) bound the creation time: a datetime, or a timedelta meaning that
        long before the database's clock.
        """
        params: dict[str, Any] = {
            "status": status,
            "workflow_ids": list(workflow_ids) if workflow_ids is not None else None,
            "limit": limit + 1,
            "offset": offset,
        }
        for key, bound in (("since", since), ("until", until)):
            ago = bound.total_seconds() if isinstance(bound, timedelta) else None
            params[key] = None if isinstance(bound, timedelta) else bound
            params[key + "_ago"] = ago
        with self._conn() as conn:
            rows = conn.execute(q("list_instances_page"), params).fetchall()
        listed = [ListedInstance(self._instance(r), r[12], tuple(r[11] or ())) for r in rows]
        return listed[:limit], len(listed) > limit

    def listing_stats(self) -> dict[str, int]:
        """Instance counts, with `waiting` instances counted apart from `running`."""
        with self._conn() as conn:
            cur = conn.execute(q("listing_stats"), {"active": list(ACTIVE_INSTANCE_STATUSES)})
            row = cur.fetchone()
            assert row is not None and cur.description is not None
            return {col.name: int(value) for col, value in zip(cur.description, row, strict=True)}

    def get_steps(self, instance_id: int, *statuses: StepStatus) -> list[StepRecord]:
        with self._conn() as conn:
            rows = conn.execute(q("get_steps"), {"id": instance_id}).fetchall()
        wanted = {s.value for s in statuses}
        return [
            StepRecord(
                id=int(r[0]),
                instance_id=int(r[1]),
                step_name=r[2],
                step_type=StepType(r[3]),
                status=StepStatus(r[4]),
                input=r[5],
                output=r[6],
                error=r[7],
                retry_count=r[8],
                max_retries=r[9],
                compensation_retry_count=r[10],
                idempotency_key=r[11],
                created_at=r[12].timestamp(),
                started_at=epoch(r[13]),
                completed_at=epoch(r[14]),
            )
            for r in rows
            if not wanted or r[4] in wanted
        ]

    def get_events(self, instance_id: int) -> list[Event]:
        with self._conn() as conn:
            rows = conn.execute(q("get_events"), {"id": instance_id}).fetchall()
        return [
            Event(
                int(r[1]),
                r[2],
                (r[3] or {}).get("step_name"),
                r[3] or {},
                r[4].timestamp(),
                int(r[0]),
            )
            for r in rows
        ]

    def get_logs(
        self, instance_id: int, step_name: str | None = None, after_id: int = 0
    ) -> list[CallLog]:
        params = {"id": instance_id, "step": step_name, "after_id": after_id}
        with self._conn() as conn:
            rows = conn.execute(q("get_logs"), params).fetchall()
        if not rows:
            self.get_instance(instance_id)  # an unknown instance is NotFoundError, as in memory
        return [
            CallLog(
                id=int(r[0]),
                instance_id=int(r[1]),
                step_name=r[2],
                handler=r[3],
                retry_count=r[4],
                compensation=r[5],
                started_at=r[6],
                ended_at=r[7],
                outcome=r[8],
                exit_code=r[9],
                stdout=r[10],
                stderr=r[11],
                truncated=r[12],
            )
            for r in rows
        ]

    @staticmethod
    def _dlq(r: Any) -> DLQRecord:
        return DLQRecord(
            id=int(r[0]),
            instance_id=int(r[1]),
            workflow_id=r[2],
            step_name=r[3],
            step_type=StepType(r[4]),
            input=r[5],
            error=r[6],
            reason=r[7],
            created_at=r[8].timestamp(),
        )

    def get_dlq(self, instance_id: int | None = None, limit: int = 1000) -> list[DLQRecord]:
        with self._conn() as conn:
            rows = conn.execute(
                q("get_dlq"), {"instance_id": instance_id, "limit": limit}
            ).fetchall()
        return [self._dlq(r) for r in rows]

    def find_dlq(self, dlq_id: int) -> DLQRecord:
        with self._conn() as conn:
            row = conn.execute(q("find_dlq"), {"id": dlq_id}).fetchone()
        if row is None:
            raise NotFoundError(f"DLQ record {dlq_id} not found")
        return self._dlq(row)

    def delete_dlq(self, dlq_id: int) -> None:
        """Forget a DLQ record that was dealt with by hand."""
        with self._conn() as conn:
            if conn.execute(q("delete_dlq"), {"id": dlq_id}).rowcount == 0:
                raise NotFoundError(f"DLQ record {dlq_id} not found")

    def gauges(self, timeout_s: float = 2.0) -> Gauges:
        """The scrape's reads in one short transaction, bounded by `timeout_s` (a pool that is
        busy or a database that hangs must not hold a scrape)."""
        statuses = list(ACTIVE_INSTANCE_STATUSES)
        with self.pool.connection(timeout=timeout_s) as conn, conn.transaction():
            conn.execute(q("scrape_timeout"), {"ms": str(round(timeout_s * 1000))})
            queue = conn.execute(q("queue_gauges")).fetchone()
            active = conn.execute(q("active_instance_counts"), {"statuses": statuses}).fetchall()
            aborts = conn.execute(q("abort_counts")).fetchall()
        ready, leased, scheduled, oldest = queue if queue is not None else (0, 0, 0, 0.0)
        by_status = {str(s): int(n) for s, n in active}
        return Gauges(
            ready=int(ready),
            leased=int(leased),
            scheduled=int(scheduled),
            oldest_ready_age_s=float(oldest),
            active={s: by_status.get(s, 0) for s in statuses},
            aborted={str(w): int(n) for w, n in aborts},
        )

    def active_instances(self, limit: int) -> list[ActiveInstance]:
        """The oldest unfinished instances, oldest first."""
        params = {"statuses": list(ACTIVE_INSTANCE_STATUSES), "limit": limit}
        with self._conn() as conn:
            rows = conn.execute(q("active_instances"), params).fetchall()
        return [
            ActiveInstance(
                id=int(r[0]),
                workflow_id=str(r[1]),
                status=str(r[2]),
                runtime_s=max(0.0, float(r[3])),
                total_steps=int(r[4]),
                completed_steps=int(r[5]),
                rolled_back_steps=int(r[6]),
                current_step=r[7] or "N/A",
            )
            for r in rows
        ]
