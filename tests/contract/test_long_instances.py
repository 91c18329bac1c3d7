"""Instances longer than the PostgreSQL state document's whole-instance limit (64 steps,
migrations_pro/007): past it a transaction loads only the rows its queue and decisions refer to
and reads the others on demand. Both stores must decide exactly as for a short instance."""

from __future__ import annotations

from typing import Any

from floxy_core.builder import Builder
from floxy_core.status import InstanceStatus, StepStatus

S = StepStatus
I = InstanceStatus  # noqa: E741
PADDING = 70


def _padded(name: str, *, undo: bool = False, **options: Any) -> Builder:
    """A flow that starts with PADDING no-op steps (each with a compensation when `undo`)."""
    builder = Builder(name, **options)
    for i in range(PADDING):
        builder.step(f"p{i}", "pad")
        if undo:
            builder.on_failure(f"undo_p{i}", "undo_pad")
    return builder


def test_a_long_saga_rolls_back_to_its_savepoint(harness: Any) -> None:
    h = harness(["pad", "undo_pad", "a", "b", "c", "undo_a", "undo_b"])
    h.handlers.failing("c")
    wf = (
        _padded("long_sp", undo=True, max_retries=0)
        .save_point("sp")
        .step("a")
        .on_failure("undo_a")
        .step("b")
        .on_failure("undo_b")
        .step("c")
        .build()
    )
    iid = h.run(wf)
    assert h.status(iid) is I.FAILED
    assert h.handlers.order(compensation=True) == ["b", "a"]
    rows = h.steps(iid)
    assert {rows[f"p{i}"].status for i in range(PADDING)} == {S.COMPLETED}
    assert rows["a"].status is S.ROLLED_BACK and rows["b"].status is S.ROLLED_BACK
    assert list(rows)[:3] == ["p0", "p1", "p2"]


def test_a_long_saga_compensates_every_step_newest_first(harness: Any) -> None:
    h = harness(["pad", "undo_pad", "boom"])
    h.handlers.failing("boom")
    wf = _padded("long_all", undo=True, max_retries=0).step("z", "boom").build()
    iid = h.run(wf)
    assert h.status(iid) is I.FAILED
    assert h.handlers.order(compensation=True) == [f"p{i}" for i in reversed(range(PADDING))]
    assert {r.status for n, r in h.steps(iid).items() if n != "z"} == {S.ROLLED_BACK}
    # each pad completed, then compensated; z rolled back without a compensation
    assert len(h.events(iid, "step_completed")) == 2 * PADDING + 1


def test_a_wide_fork_joins_every_branch_output(harness: Any) -> None:
    h = harness(["pad", "after"])
    branches = [lambda b, i=i: b.step(f"b{i}", "pad") for i in range(PADDING)]
    wf = Builder("wide").fork("f", *branches).join("j").step("after").build()
    iid = h.run(wf, {"v": 1})
    assert h.status(iid) is I.COMPLETED
    rows = h.steps(iid)
    assert sorted(rows["j"].output["completed"]) == sorted(f"b{i}" for i in range(PADDING))
    assert rows["j"].output["outputs"]["b7"] == {"v": 1, "pad": True}
    assert rows["after"].status is S.COMPLETED


def test_a_human_step_after_a_long_prefix_takes_its_decision(harness: Any) -> None:
    h = harness(["pad", "b"])
    wf = _padded("long_h").wait_human_confirm("ok").step("b").build()
    iid = h.run(wf)
    assert h.steps(iid)["ok"].status is S.WAITING_DECISION
    h.runtime.decide(iid, "ok", "confirmed", "alice")
    h.drain()
    assert h.status(iid) is I.COMPLETED
    assert [c.handler for c in h.handlers.calls][-1] == "b"


def test_a_long_instance_paused_in_the_dlq_resumes(harness: Any) -> None:
    h = harness(["pad", "b", "c"])
    h.handlers.failing("b", times=1)
    wf = _padded("long_dlq", max_retries=0, dlq=True).step("b").step("c").build()
    iid = h.run(wf)
    assert h.status(iid) is I.DLQ
    (record,) = h.store.get_dlq(iid)
    h.runtime.requeue(record.id, {"fixed": True})
    h.drain()
    assert h.status(iid) is I.COMPLETED
    assert h.store.get_instance(iid).output == {"fixed": True, "b": True, "c": True}
