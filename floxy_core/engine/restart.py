"""Retry of an ended instance (DECISIONS.md, "Instances and definitions"): a new instance of the
same definition, linked to the old one, that starts over or resumes after the savepoint the old
one kept. The old instance is never touched: it stays the record of what happened."""

from __future__ import annotations

from collections.abc import Iterable

from floxy_core.errors import ConflictError
from floxy_core.graph import graph_of
from floxy_core.model import Instance, StepRecord, StepType, WorkflowDefinition
from floxy_core.status import InstanceStatus, StepStatus

RETRIABLE = frozenset({InstanceStatus.FAILED, InstanceStatus.CANCELLED, InstanceStatus.ABORTED})
FROM_CHOICES = ("start", "savepoint")
_UNDONE = frozenset({StepStatus.ROLLED_BACK, StepStatus.COMPENSATION})


def check_retriable(instance: Instance) -> None:
    if instance.status not in RETRIABLE:
        raise ConflictError(
            f"instance {instance.id} is {instance.status.value}: only a failed, cancelled or "
            "aborted instance can be retried"
        )


def kept_savepoint(
    definition: WorkflowDefinition, rows: Iterable[StepRecord]
) -> tuple[str, list[StepRecord]] | None:
    """The newest savepoint the instance completed whose earlier steps still stand (none was
    rolled back: a cancel undoes them all), with the rows of those steps and its own, last."""
    by_name = {r.step_name: r for r in rows}
    graph = graph_of(definition)
    best: tuple[float, str, list[StepRecord]] | None = None
    for name, step in definition.steps.items():
        row = by_name.get(name)
        if step.type is not StepType.SAVE_POINT or row is None:
            continue
        if row.status is not StepStatus.COMPLETED:
            continue
        after = graph.descendants(name)
        before = [r for n, r in by_name.items() if n != name and n not in after]
        if any(r.status in _UNDONE for r in before):
            continue
        done = row.completed_at or 0.0
        if best is None or done > best[0]:
            best = (done, name, [*before, row])
    return None if best is None else (best[1], best[2])


def no_savepoint_message(instance: Instance) -> str:
    how = (
        "a cancel compensates every step"
        if instance.status is InstanceStatus.CANCELLED
        else "none completed, or its rollback went past it"
    )
    return (
        f"instance {instance.id} kept no savepoint to resume from ({how}); retry it from the start"
    )
