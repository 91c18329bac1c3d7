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

I, S = InstanceStatus, StepStatus

INSTANCE_TRANSITIONS: dict[InstanceStatus, frozenset[InstanceStatus]] = {
    I.PENDING: frozenset({I.RUNNING, I.CANCELLED, I.ABORTED}),
    I.RUNNING: frozenset(
        {I.COMPLETED, I.FAILED, I.ROLLING_BACK, I.CANCELLING, I.CANCELLED, I.ABORTED, I.DLQ}
    ),
    I.ROLLING_BACK: frozenset({I.FAILED, I.DLQ, I.CANCELLING, I.ABORTED}),
    I.CANCELLING: frozenset({I.CANCELLED, I.FAILED, I.ABORTED}),
    I.DLQ: frozenset({I.RUNNING, I.CANCELLING, I.CANCELLED, I.ABORTED, I.FAILED}),
    I.COMPLETED: frozenset(),
    I.FAILED: frozenset(),
    I.CANCELLED: frozenset(),
    I.ABORTED: frozenset(),
}
"""Legal instance transitions. Unlike the reference, a terminal instance never changes again."""

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.PAUSED, S.FAILED, S.COMPLETED}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.FAILED, S.PENDING, S.PAUSED, S.SKIPPED, S.WAITING_DECISION}
    ),
    S.FAILED: frozenset({S.RUNNING, S.PENDING, S.COMPENSATION, S.ROLLED_BACK, S.SKIPPED, S.PAUSED}),
    S.COMPLETED: frozenset({S.COMPENSATION, S.ROLLED_BACK}),
    S.COMPENSATION: frozenset({S.COMPENSATION, S.ROLLED_BACK, S.FAILED}),
    S.WAITING_DECISION: frozenset({S.COMPLETED, S.REJECTED, S.SKIPPED, S.CONFIRMED}),
    S.CONFIRMED: frozenset({S.COMPLETED}),
    S.PAUSED: frozenset({S.PENDING, S.SKIPPED}),
    S.SKIPPED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.REJECTED: frozenset(),
}
"""Legal step transitions; the engine asserts every change against this table."""

del I, S


def can_transition_step(old: StepStatus, new: StepStatus) -> bool:
    return old == new or new in STEP_TRANSITIONS[old]


def can_transition_instance(old: InstanceStatus, new: InstanceStatus) -> bool:
    return old == new or new in INSTANCE_TRANSITIONS[old]
