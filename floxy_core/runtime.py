"""The loop over the ports: claim → run the handler (no transaction open) → apply → fire hooks.

The runtime owns threads, the clock and handler calls; every decision is the engine's, taken
inside a store transaction.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from floxy_core import values
from floxy_core.capture import Capture
from floxy_core.durations import MAX_DURATION_MS
from floxy_core.engine import restart
from floxy_core.engine.decisions import Engine, Outcome, Work, hold_s
from floxy_core.engine.state import HookCall, Transition
from floxy_core.errors import (
    ConflictError,
    HandlerError,
    InputError,
    KeyTaken,
    NotFoundError,
    StoreError,
    StoreRejected,
    UnstorableValue,
)
from floxy_core.logs import get_logger
from floxy_core.model import JSON, CallLog, Instance, QueueItem, WorkflowDefinition
from floxy_core.ports import Clock, Handler, StepContext, Store
from floxy_core.records import record, replace

log = get_logger("floxy.runtime")

Hook = Callable[[str, Instance, Mapping[str, Any]], None]
"""A lifecycle hook: (hook name, instance after the change, details). Errors are logged only."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@record
class _Running:
    work: Work
    interrupt: threading.Event
    handback: threading.Event
    """Set at shutdown: once the interrupted call has ended, give the step back (no result)."""


_Claimed = tuple[Work, QueueItem] | None
"""A call a decision claimed, with the queue item it holds."""


_REJECTED = "the result could not be stored: "


def _retry_after_ms(seconds: object) -> int | None:
    """A `HandlerError.retry_after_s` in whole milliseconds, bounded (the engine caps it
    further); typed `float | None`, but a plugin's handler is not type-checked."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        return None
    return round(min(seconds * 1000, MAX_DURATION_MS))


def _committed(claimed: _Claimed) -> Work | None:
    """The claimed call with its item's id: a row inserted by the same transaction got its id
    only when it committed."""
    if claimed is None:
        return None
    work, item = claimed
    return work if work.item_id == item.id else replace(work, item_id=item.id)


def _call_log(
    work: Work, capture: Capture, started: float, ended: float, outcome: Outcome
) -> CallLog:
    return CallLog(
        instance_id=work.instance_id,
        step_name=work.step_name,
        handler=work.handler,
        retry_count=work.retry_count,
        compensation=work.compensation,
        started_at=started,
        ended_at=ended,
        outcome="completed" if outcome.ok else "failed",
        stdout=capture.stdout.text(),
        stderr=capture.stderr.text(),
        truncated=capture.truncated,
        exit_code=capture.exit_code,
    )


@record(frozen=True)
class Started:
    instance_id: int
    created: bool
    """False when an idempotency key named an instance started before."""


class Runtime:
    """Runs instances of registered workflows with a pool of worker threads."""

    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        *,
        engine: Engine | None = None,
        hooks: list[Hook] | None = None,
        start_guards: list[Callable[[str, JSON], None]] | None = None,
        workers: int = 3,
        poll_interval: float = 0.1,
        debug: bool = False,
        distributed: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.handlers = dict(handlers)
        self.engine = engine or Engine()
        self.hooks = list(hooks or [])
        self.start_guards = list(start_guards or [])
        """Called before an instance is created; raising refuses the start (plugin veto)."""
        self.workers = workers
        self.poll_interval = poll_interval
        self.debug = debug
        self.distributed = distributed
        self.clock: Clock = clock or SystemClock()
        self.hook_errors = 0
        self.changed = threading.Condition()
        self.generation = 0
        """Bumped after every committed change; front ends wait on `changed` for it to move."""
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._inflight = 0
        self._idle = threading.Condition()
        self._store_down_since: float | None = None
        self.on_store_error: Callable[[Exception], None] | None = None
        """Called for every failed store call of a worker (metrics); the worker keeps going."""
        self.on_call: Callable[[CallLog, str | None], None] | None = None
        """Called once a handler call's result is stored, with its log and the status its step
        then has (None: the instance no longer holds the step); floxyd logs it. Errors are
        logged only."""
        self._threads: list[threading.Thread] = []
        self._running: dict[int, _Running] = {}
        self._running_lock = threading.Lock()
        self._prefix = os.urandom(4).hex()

    # -- control ----------------------------------------------------------------------------

    def register(self, definition: WorkflowDefinition) -> bool:
        return self.store.save_definition(definition)

    def start_instance(
        self, workflow_id: str, data: JSON, *, idempotency_key: str | None = None
    ) -> int:
        """The id of a new instance, or of the one `idempotency_key` already started."""
        return self.launch(workflow_id, data, idempotency_key=idempotency_key).instance_id

    def launch(
        self, workflow_id: str, data: JSON, *, idempotency_key: str | None = None
    ) -> Started:
        """Start an instance. A repeated `idempotency_key` starts nothing and names the
        instance it started; one that started an instance of another workflow is `KeyTaken`."""
        try:
            for guard in self.start_guards:
                guard(workflow_id, data)
            instance_id, hooks = self.store.create_instance(
                workflow_id,
                data,
                self.clock.now(),
                self.engine.start,
                idempotency_key=idempotency_key,
            )
        except KeyTaken as taken:
            if taken.workflow_id != self.store.get_definition(workflow_id).id:  # a name, or not
                raise
            return Started(taken.instance_id, created=False)
        self._fire(hooks)
        return Started(instance_id, created=True)

    def transact(self, instance_id: int, decide: Callable[[Transition], Any]) -> Any:
        result, hooks = self.store.transact(instance_id, self.clock.now(), decide)
        self._fire(hooks)
        self._interrupt_stale()
        return result

    def cancel(self, instance_id: int, requested_by: str, reason: str) -> None:
        self.transact(instance_id, lambda tx: self.engine.stop(tx, "cancel", requested_by, reason))

    def abort(self, instance_id: int, requested_by: str, reason: str) -> None:
        self.transact(instance_id, lambda tx: self.engine.stop(tx, "abort", requested_by, reason))

    def decide(
        self,
        instance_id: int,
        step_name: str | None,
        decision: str,
        decided_by: str,
        comment: str | None = None,
    ) -> None:
        self.transact(
            instance_id,
            lambda tx: self.engine.decide(tx, step_name, decision, decided_by, comment),
        )

    def retry(
        self,
        instance_id: int,
        new_input: JSON = None,
        *,
        start_from: str = "start",
        requested_by: str = "floxy",
    ) -> int:
        """Start a new instance that retries a failed, cancelled or aborted one and return its
        id: from the first step with the old input (or `new_input`), or, with
        `start_from="savepoint"`, right after the savepoint the old instance kept, reusing the
        outputs of the steps before it."""
        old = self.store.get_instance(instance_id)
        restart.check_retriable(old)
        if start_from not in restart.FROM_CHOICES:
            raise InputError(f"retry from {start_from!r}: expected start or savepoint")
        kept = None
        if start_from == "savepoint":
            if new_input is not None:
                raise InputError(
                    "a retry from the savepoint reuses the outputs of the steps before it; "
                    "a new input applies only to a retry from the start"
                )
            definition = self.store.get_definition(old.workflow_id)
            kept = restart.kept_savepoint(definition, self.store.get_steps(instance_id))
            if kept is None:
                raise ConflictError(restart.no_savepoint_message(old))
        data = old.input if new_input is None else new_input
        if kept is None:
            for guard in self.start_guards:
                guard(old.workflow_id, data)
        new_id, hooks = self.store.create_instance(
            old.workflow_id,
            data,
            self.clock.now(),
            lambda tx: self.engine.restart(tx, instance_id, requested_by, kept),
            retry_of=instance_id,
        )
        self._fire(hooks)
        return new_id

    def requeue(self, dlq_id: int, new_input: JSON = None) -> int:
        record = self.store.find_dlq(dlq_id)

        def decide(tx: Transition) -> None:
            current = next((r for r in tx.state.dlq if r.id == dlq_id), record)
            self.engine.requeue(tx, current, new_input)

        self.transact(record.instance_id, decide)
        return record.instance_id

    # -- workers ----------------------------------------------------------------------------

    def run_once(self, worker: str) -> bool:
        """Claim and process one queue item (at most one handler call), so that a library user
        can step an instance and cancel between steps. False when nothing was due or while
        draining."""
        return self._run(worker, chain=False)

    def _run(self, worker: str, *, chain: bool) -> bool:
        with self._idle:
            if self._draining.is_set():
                return False
            self._inflight += 1
        try:
            return self._claim_and_run(worker, chain)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _claim_and_run(self, worker: str, chain: bool) -> bool:
        """With `chain` (the worker threads), go on with the instance the worker holds: the
        next step it can run at once is claimed in the same transaction (`Engine.chain`)."""
        names = set(self.handlers) if self.distributed else None

        def decide(tx: Transition, item: QueueItem) -> _Claimed:
            work = self.engine.claim(tx, item, worker, names)
            if work is None and chain:  # e.g. a step that needed no handler ran here
                return self.engine.chain(tx, worker, self.handlers.keys())
            return None if work is None else (work, item)

        asked = self.clock.now()
        claimed, result, hooks = self.store.claim(asked, self.engine.config.aging_rate, decide)
        if not claimed:
            return False
        work = _committed(result)
        self._fire(hooks)
        while work is not None:
            work, asked = self._execute(work, chain, asked)
        return True

    def _still_held(self, work: Work, asked: float) -> bool:
        """Whether the claim asked for at `asked` (`self.clock`) still holds, checked only
        when a third of the lease has gone by since: a worker frozen (SIGSTOP, a stalled VM)
        between its claim and the handler's start must not start a call another worker may
        already have taken over after the lease (the chaos run caught two calls at once)."""
        if self.clock.now() - asked < self.engine.config.lease_ms / 3000.0:
            return True
        held = self._renew(work)
        if held is False:
            log.warning(
                "%s (instance %s) lost its lease before its call started: not called here",
                work.step_name,
                work.instance_id,
            )
        return held is not False

    def _execute(self, work: Work, chain: bool, asked: float) -> tuple[Work | None, float]:
        """Call the handler and record its outcome; the next call chained to it, if any, and
        when its claim was asked for."""
        if not self._still_held(work, asked):
            return None, asked
        handler = self.handlers.get(work.handler)
        entry = _Running(work, threading.Event(), threading.Event())
        with self._running_lock:
            self._running[work.item_id] = entry
        capture = Capture()
        started, began = self.clock.now(), time.monotonic()
        try:
            outcome = self._call(handler, work, entry.interrupt, capture)
        finally:
            with self._running_lock:
                self._running.pop(work.item_id, None)
        if entry.handback.is_set():
            # The call has ended (its process group is gone): only now may another worker run
            # the step, so two calls of it never overlap.
            try:
                self.store.release_claim(work.instance_id, work.item_id, work.worker)
            except Exception as exc:
                log.warning("could not release %s (its lease will expire): %s", work.step_name, exc)
            return None, asked
        if entry.interrupt.is_set() and self._draining.is_set() and not outcome.ok:
            outcome = Outcome(
                error="not re-run: interrupted by a shutdown, the outcome of this no_idempotent "
                f"call is unknown ({outcome.error})",
                retryable=False,
            )
        call = _call_log(work, capture, started, started + time.monotonic() - began, outcome)
        asked = self.clock.now()
        return self._record(work, outcome, chain, call), asked

    def _record(self, work: Work, outcome: Outcome, chain: bool, call: CallLog) -> Work | None:
        """Apply a handler's outcome, retrying through a short store outage: dropping it would
        run the step again after the lease (or fail a no_idempotent step for nothing).

        The call's log is written in the same transaction; a result refused by fencing keeps its
        log, marked `refused`. In the same transaction the worker claims the next step of the
        instance when it can run it at once (`Engine.chain`); that call is returned, with the id
        its queue row got.
        """
        status: list[str | None] = [None]

        def decide(tx: Transition) -> _Claimed:
            item = next((i for i in tx.state.queue if i.id == work.item_id), None)
            if item is not None and item.lease_until is not None and item.lease_until < tx.now:
                # Fencing: the lease ran out, so another worker may take (or have taken) the
                # step over; this result is refused and the step's claim decides what follows.
                log.warning(
                    "result of %s (instance %s) refused: its lease ran out",
                    work.step_name,
                    work.instance_id,
                )
                tx.add_log(replace(call, outcome="refused"))
                status[0] = "refused"
                return None
            tx.add_log(call)
            self.engine.apply(tx, work, outcome)
            row = tx.state.steps.get(work.step_name)
            status[0] = None if row is None else row.status.value
            if not chain or self._draining.is_set() or self._stop.is_set():
                return None
            return self.engine.chain(tx, work.worker, self.handlers.keys())

        delay = 0.1
        deadline = time.monotonic() + self.engine.config.lease_ms / 1000.0
        while True:
            try:
                claimed = _committed(self.transact(work.instance_id, decide))
                self._called(call, status[0])
                return claimed
            except StoreRejected as exc:
                # The database refused the result's data: storing it again cannot help, and
                # dropping it would call the handler again after the lease. A failed attempt
                # instead (retried like any failure); if even that is refused, give up here.
                if outcome.error is not None and outcome.error.startswith(_REJECTED):
                    raise
                log.warning("the result of %s was refused by the store: %s", work.step_name, exc)
                outcome = Outcome(error=f"{_REJECTED}{values.text(str(exc))}")
                call = replace(call, outcome="failed")
            except StoreError as exc:
                if isinstance(exc, NotFoundError | ConflictError):
                    raise
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    raise
                self._store_failed(work.worker, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _called(self, call: CallLog, status: str | None) -> None:
        if self.on_call is not None:
            try:
                self.on_call(call, status)
            except Exception:
                log.exception("the call observer failed on %s", call.step_name)

    def _call(
        self, handler: Handler | None, work: Work, interrupt: threading.Event, capture: Capture
    ) -> Outcome:
        if handler is None:
            return Outcome(error=f"handler {work.handler!r} is not registered", retryable=False)
        ctx = StepContext(
            instance_id=work.instance_id,
            workflow_id=work.workflow_id,
            step_name=work.step_name,
            idempotency_key=work.idempotency_key,
            retry_count=work.retry_count,
            metadata=work.metadata,
            compensation=work.compensation,
            timeout_s=work.timeout_ms / 1000.0 if work.timeout_ms else None,
            debug=self.debug,
            interrupt=interrupt,
            capture=capture,
        )
        started = time.monotonic()
        try:
            output = handler(ctx, work.input)
        except HandlerError as exc:
            return Outcome(
                error=values.text(str(exc)),
                retryable=exc.retryable,
                retry_after_ms=_retry_after_ms(exc.retry_after_s),
            )
        except Exception as exc:  # a plugin's bug must not kill the worker
            log.exception("handler %r raised", work.handler)
            return Outcome(
                error=values.text(f"handler {work.handler!r} crashed: {type(exc).__name__}: {exc}")
            )
        elapsed = time.monotonic() - started
        if ctx.timeout_s is not None and elapsed > ctx.timeout_s:
            # A handler that ignores ctx.timeout_s still must not succeed past its deadline.
            return Outcome(
                error=f"handler {work.handler!r} exceeded its timeout of {ctx.timeout_s:g}s "
                f"(took {elapsed:.2f}s)"
            )
        try:  # both stores alike: what PostgreSQL could not keep fails the attempt here
            return Outcome(output=values.storable(output))
        except UnstorableValue as exc:
            return Outcome(
                error=f"handler {work.handler!r} returned a value that cannot be stored: {exc}"
            )

    def start(self) -> None:
        """Start the worker threads and the watcher that interrupts stopped instances."""
        self._stop.clear()
        self._draining.clear()
        for index in range(self.workers):
            name = f"{self._prefix}-w{index + 1}"
            thread = threading.Thread(target=self._worker, args=(name,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        watcher = threading.Thread(target=self._watch, name="floxy-watcher", daemon=True)
        watcher.start()
        self._threads.append(watcher)

    def drain(self, timeout: float) -> bool:
        """Stop claiming; True when every claimed step finished within `timeout` seconds."""
        self._draining.set()
        self.store.wake()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.2))
        return True

    def stop(self, grace: float = 0.0, timeout: float = 5.0) -> None:
        """Stop claiming, give running steps `grace` seconds, then interrupt the rest.

        An interrupted call of a step that may run again is handed back for another worker once
        it has ended (its worker thread releases the claim). A `no_idempotent` step's outcome is
        unknown: it is failed (and so compensated), never handed back to be called again.
        """
        if not self.drain(grace):
            with self._running_lock:
                running = list(self._running.values())
            once = [r for r in running if self._called_once(r.work)]
            back = [r for r in running if r not in once]
            if back:
                log.info(
                    "grace period over: releasing %s for another worker",
                    ", ".join(f"{r.work.step_name} (instance {r.work.instance_id})" for r in back),
                )
            if once:
                log.info(
                    "grace period over: failing %s (no_idempotent: its outcome is unknown)",
                    ", ".join(f"{r.work.step_name} (instance {r.work.instance_id})" for r in once),
                )
            for entry in running:
                if entry not in once:
                    entry.handback.set()
                entry.interrupt.set()
        self._stop.set()
        self.store.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _called_once(self, work: Work) -> bool:
        """Whether the step of `work` may be called only once (`no_idempotent`)."""
        try:
            step = self.store.get_definition(work.workflow_id).steps.get(work.step_name)
        except Exception:  # unknown: the safe answer
            return True
        return step is None or step.no_idempotent

    def _worker(self, name: str) -> None:
        while not self._stop.is_set():
            try:
                busy = self._run(name, chain=True)
                if not busy and not self._stop.is_set():
                    self.store.wait_for_work(self._idle_wait())
                self._store_recovered()
            except Exception as exc:
                self._store_failed(name, exc)
                self._stop.wait(self.poll_interval)

    def _store_failed(self, worker: str, exc: Exception) -> None:
        if self.on_store_error is not None:
            self.on_store_error(exc)
        now = time.monotonic()
        first = self._store_down_since is None
        if first:
            self._store_down_since = now
            # One line for the operator (a database restart is no crash); the stack at debug.
            log.error("worker %s: %s; workers keep retrying", worker, exc)
            log.debug("store failure", exc_info=exc)

    def _store_recovered(self) -> None:
        if self._store_down_since is not None:
            self._store_down_since = None
            log.warning("store reachable again; workers resumed")

    def _idle_wait(self) -> float:
        due = self.store.next_due()
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.0, due - self.clock.now()))

    def _watch(self) -> None:
        """Every 100 ms interrupt stopped steps; every third of a lease renew running leases."""
        renew_every = self.engine.config.lease_ms / 3000.0
        last_renew = time.monotonic()
        while not self._stop.wait(0.1):
            self._interrupt_stale()
            if time.monotonic() - last_renew >= renew_every:
                last_renew = time.monotonic()
                self._renew_leases()

    def _renew_leases(self) -> None:
        """Extend the claim of every running call; a call whose lease ran out or was taken
        over is interrupted (its result would be refused)."""
        with self._running_lock:
            running = list(self._running.values())
        for entry in running:
            work = entry.work
            if self._renew(work) is False and not entry.interrupt.is_set():
                log.warning(
                    "%s (instance %s) lost its lease: interrupting the call",
                    work.step_name,
                    work.instance_id,
                )
                entry.interrupt.set()

    def _renew(self, work: Work) -> bool | None:
        """Extend `work`'s claim: whether it still held, None when the store could not say
        (the claim may lapse; said once by the workers already)."""
        until = self.clock.now() + hold_s(self.engine.config, work.timeout_ms)
        try:
            return self.store.renew_lease(work.instance_id, work.item_id, work.worker, until)
        except Exception as exc:
            log.warning("could not renew the lease of %s: %s", work.step_name, exc)
            log.debug("lease renewal failure", exc_info=exc)
            return None

    def _interrupt_stale(self) -> None:
        """Interrupt handler calls whose step was stopped (cancel, abort, sibling failure)."""
        with self._running_lock:
            running = list(self._running.values())
        for entry in running:
            if entry.interrupt.is_set():
                continue
            try:
                current = self.store.attempt_current(entry.work.instance_id, entry.work.item_id)
            except Exception as exc:
                log.warning(
                    "could not check whether %s is still current: %s", entry.work.step_name, exc
                )
                log.debug("attempt check failure", exc_info=exc)
                continue
            if not current:
                entry.interrupt.set()

    # -- hooks ------------------------------------------------------------------------------

    def _fire(self, hooks: list[HookCall]) -> None:
        if self.hooks:
            for call in hooks:
                assert call.instance is not None
                for hook in self.hooks:
                    try:
                        hook(call.name, call.instance, call.kwargs)
                    except Exception:
                        self.hook_errors += 1
                        log.exception("lifecycle hook failed on %s", call.name)
        with self.changed:
            self.generation += 1
            self.changed.notify_all()
