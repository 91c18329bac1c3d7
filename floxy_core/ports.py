"""The ports the engine talks through: handlers, the clock, and the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from floxy_core.capture import Capture
from floxy_core.model import (
    JSON,
    CallLog,
    DLQRecord,
    Event,
    Instance,
    QueueItem,
    StepRecord,
    WorkflowDefinition,
)
from floxy_core.records import field, record
from floxy_core.status import StepStatus

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from floxy_core.engine.state import HookCall, Transition
    from floxy_core.model import ListedInstance

T = TypeVar("T")


@record(frozen=True)
class StepContext:
    """What a handler may know about the call it serves."""

    instance_id: int
    workflow_id: str
    step_name: str
    """For a compensation: the name of the step being compensated (reference behaviour)."""
    idempotency_key: str
    retry_count: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    compensation: bool = False
    timeout_s: float | None = None
    debug: bool = False
    interrupt: threading.Event = field(default_factory=threading.Event)
    """Set when the instance is cancelled or aborted: the handler should stop at once."""
    capture: Capture = field(default_factory=Capture)
    """Where the handler reports what the call printed (kept bounded, `floxy_core.capture`)."""


@runtime_checkable
class Handler(Protocol):
    """Runs one step attempt. Returns the step output or raises `HandlerError`."""

    name: str

    def __call__(self, ctx: StepContext, data: JSON) -> JSON: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...


class Store(Protocol):
    """Persistence in engine words. Every method taking `decide` runs it in one transaction."""

    def save_definition(self, definition: WorkflowDefinition) -> bool: ...

    def get_definition(self, workflow_id: str) -> WorkflowDefinition: ...

    def create_instance(
        self,
        workflow_id: str,
        data: JSON,
        now: float,
        decide: Callable[[Transition], None],
        retry_of: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, list[HookCall]]:
        """A new instance; `KeyTaken` when `idempotency_key` already started one (checked in
        the same transaction, so two concurrent starts with one key create one instance)."""
        ...

    def transact(
        self, instance_id: int, now: float, decide: Callable[[Transition], T]
    ) -> tuple[T, list[HookCall]]: ...

    def claim(
        self, now: float, aging_rate: float, decide: Callable[[Transition, QueueItem], T]
    ) -> tuple[bool, T | None, list[HookCall]]: ...

    def attempt_current(self, instance_id: int, item_id: int) -> bool: ...

    def release_claim(self, instance_id: int, item_id: int, worker: str) -> bool: ...

    def renew_lease(self, instance_id: int, item_id: int, worker: str, until: float) -> bool: ...

    def wait_for_work(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def next_due(self) -> float | None: ...

    def get_instance(self, instance_id: int) -> Instance: ...

    # -- the read side front ends use (lists, counts, clean-up) ------------------------------

    def list_definitions(self) -> list[tuple[str, str, int, datetime]]:
        """(id, name, version, registered at), by name, newest version first."""
        ...

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
        """One page of instances, newest first, and whether more follow. `status` may be
        `waiting` (running, a human step waiting); a timedelta bound counts back from the
        store's clock."""
        ...

    def listing_stats(self) -> dict[str, int]:
        """total, completed, failed, running, waiting, pending, active."""
        ...

    def delete_dlq(self, dlq_id: int) -> None: ...

    def retries_of(self, instance_id: int) -> list[int]:
        """The instances that retry this one, oldest first."""
        ...

    def get_steps(self, instance_id: int, *statuses: StepStatus) -> list[StepRecord]:
        """The instance's rows; only those in `statuses` when some are given."""
        ...

    def get_events(self, instance_id: int) -> list[Event]: ...

    def get_dlq(self, instance_id: int | None = None) -> list[DLQRecord]: ...

    def find_dlq(self, dlq_id: int) -> DLQRecord: ...

    def get_logs(
        self, instance_id: int, step_name: str | None = None, after_id: int = 0
    ) -> list[CallLog]:
        """The instance's call logs in the order the calls ended, only `step_name`'s when
        given, only those stored after the log `after_id` (following a run)."""
        ...
