"""Instance and step statuses, with the one table of transitions the engine may perform."""

from __future__ import annotations

from enum import StrEnum


class InstanceStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    ABORTED = "aborted"
    DLQ = "dlq"

    @property
    def terminal(self) -> bool:
        """Finished for good: nothing runs for it any more (DLQ is paused, not terminal)."""
        return self in _TERMINAL_INSTANCE


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Stopped before its handler (or its kind of step) started: nothing to undo."""
    INTERRUPTED = "interrupted"
    """A stop (sibling failure, cancel, abort, timeout of the instance) met its started call: its
    outcome counts as unknown, so a rollback compensates it once the call has ended."""
    COMPENSATION = "compensation"
    ROLLED_BACK = "rolled_back"
    WAITING_DECISION = "waiting_decision"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    PAUSED = "paused"


_TERMINAL_INSTANCE = frozenset(
    {
        InstanceStatus.COMPLETED,
        InstanceStatus.FAILED,
        InstanceStatus.CANCELLED,
        InstanceStatus.ABORTED,
    }
)

ACTIVE_INSTANCE_STATUSES: tuple[str, ...] = tuple(
    s.value for s in InstanceStatus if s not in _TERMINAL_INSTANCE
)
"""Instances not finished yet (paused in the DLQ included): the one list of "active" that the
gauges, the stats and their SQL (as a parameter) use."""

_I, _S = InstanceStatus, StepStatus

INSTANCE_TRANSITIONS: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    _I.PENDING: frozenset({_I.RUNNING, _I.CANCELLED, _I.ABORTED}),
    _I.RUNNING: frozenset(
        {_I.COMPLETED, _I.FAILED, _I.ROLLING_BACK, _I.CANCELLING, _I.CANCELLED, _I.ABORTED, _I.DLQ}
    ),
    _I.ROLLING_BACK: frozenset({_I.FAILED, _I.DLQ, _I.ABORTED}),
    _I.CANCELLING: frozenset({_I.CANCELLED, _I.FAILED, _I.ABORTED}),
    _I.DLQ: frozenset({_I.RUNNING, _I.CANCELLING, _I.CANCELLED, _I.ABORTED, _I.FAILED}),
    _I.COMPLETED: frozenset(),
    _I.FAILED: frozenset(),
    _I.CANCELLED: frozenset(),
    _I.ABORTED: frozenset(),
}
"""Legal instance transitions. Unlike the reference, a terminal instance never changes again."""

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    _S.PENDING: frozenset(
        {_S.RUNNING, _S.SKIPPED, _S.PAUSED, _S.FAILED, _S.COMPLETED, _S.INTERRUPTED}
    ),
    _S.RUNNING: frozenset(
        {_S.COMPLETED, _S.FAILED, _S.PENDING, _S.PAUSED, _S.INTERRUPTED, _S.WAITING_DECISION}
    ),
    _S.FAILED: frozenset({_S.RUNNING, _S.PENDING, _S.COMPENSATION, _S.ROLLED_BACK, _S.PAUSED}),
    _S.COMPLETED: frozenset({_S.COMPENSATION, _S.ROLLED_BACK}),
    _S.INTERRUPTED: frozenset({_S.COMPENSATION, _S.ROLLED_BACK}),
    _S.COMPENSATION: frozenset(
        {_S.COMPENSATION, _S.ROLLED_BACK, _S.FAILED, _S.COMPLETED, _S.INTERRUPTED}
    ),
    _S.WAITING_DECISION: frozenset({_S.COMPLETED, _S.REJECTED, _S.SKIPPED, _S.CONFIRMED}),
    _S.CONFIRMED: frozenset({_S.COMPLETED}),
    _S.PAUSED: frozenset({_S.PENDING, _S.SKIPPED, _S.FAILED}),
    _S.SKIPPED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.REJECTED: frozenset(),
}
"""Legal step transitions; the engine asserts every change against this table."""

del _I, _S


def can_transition_step(old: StepStatus, new: StepStatus) -> bool:
    return old == new or new in STEP_TRANSITIONS[old]


def can_transition_instance(old: InstanceStatus, new: InstanceStatus) -> bool:
    return old == new or new in INSTANCE_TRANSITIONS[old]
