"""What a stop (sibling failure, cancel, abort) does to a started call, on both stores.

Races are made deterministic: a handler does, while it runs, what another worker or an operator
would do at that moment (run the failing sibling, cancel, abort), so the stop meets the call.
"""

from __future__ import annotations

from typing import Any

import pytest

from floxy_core.builder import Builder, Compensation, Options, Task
from floxy_core.errors import ConflictError, HandlerError, NotFoundError
from floxy_core.ports import StepContext
from floxy_core.status import InstanceStatus, StepStatus

S = StepStatus
I = InstanceStatus  # noqa: E741


def _flow(kind: str) -> Any:
    """`ta` (compensated by `u`) beside `tb`, as a parallel or a fork with an all/any join."""
    if kind == "parallel":
        return (
            Builder("p", max_retries=0)
            .parallel("blk", Task("ta", on_failure=Compensation("u", "u")), Task("tb"))
            .build()
        )
    return (
        Builder("f", max_retries=0)
        .fork("blk", lambda b: b.step("ta").on_failure("u"), lambda b: b.step("tb"))
        .join("blk_join", kind.removeprefix("fork-"))
        .build()
    )


@pytest.mark.parametrize("kind", ["parallel", "fork-all"])
def test_a_result_that_arrives_after_a_sibling_failed_is_compensated(
    harness: Any, kind: str
) -> None:
    h = harness(["ta", "tb", "u"])
    h.handlers.failing("tb")
    seen: dict[str, Any] = {}

    def ta(ctx: StepContext, data: Any) -> Any:
        # tb fails while ta runs (another worker); ta's effect is done anyway
        while h.runtime.run_once("w2"):
            pass
        seen["interrupted"] = ctx.interrupt.is_set()
        seen["u_before_end"] = "u" in h.handlers.order(compensation=True)
        return {"done": True}

    h.handlers.add("ta", ta)
    iid = h.start(_flow(kind))
    h.runtime.run_once("w1")  # the block step queues both branches
    h.drain()
    rows = h.steps(iid)
    assert h.status(iid) is I.FAILED
    assert seen == {"interrupted": True, "u_before_end": False}
    assert h.handlers.order(compensation=True) == ["ta"]
    assert rows["ta"].status is S.ROLLED_BACK
    assert (rows["ta"].error or "").startswith("interrupted: ")
    assert rows["tb"].status is S.ROLLED_BACK and rows["tb"].error == "tb failed"
    assert [e.step_name for e in h.events(iid, "step_interrupted")] == ["ta"]
    (ended,) = h.events(iid, "interrupted_call_ended")
    assert ended.payload["result"] == "completed"
    assert len(h.events(iid, "workflow_failed")) == 1


@pytest.mark.parametrize("kind", ["fork-any", "fork-all"])
def test_cancel_while_a_handler_runs_compensates_it_after_the_call_ended(
    harness: Any, kind: str
) -> None:
    h = harness(["ta", "tb", "u"])
    order: list[str] = []

    def ta(ctx: StepContext, data: Any) -> Any:
        h.runtime.cancel(iid, "op", "stop it")
        assert ctx.interrupt.is_set()
        assert not h.handlers.order(compensation=True)  # u waits for this call to end
        order.append("ta ended")
        return {"done": True}

    def u(ctx: StepContext, data: Any) -> Any:
        order.append("u")
        return None

    h.handlers.add("ta", ta)
    h.handlers.add("u", u)
    iid = h.start(_flow(kind))
    h.drain()
    rows = h.steps(iid)
    assert h.status(iid) is I.CANCELLED
    assert order == ["ta ended", "u"]
    assert rows["ta"].status is S.ROLLED_BACK
    assert h.events(iid, "step_interrupted")[0].step_name == "ta"


def test_a_step_waiting_for_its_retry_is_compensated_on_cancel(harness: Any) -> None:
    h = harness(["a", "undo_a"])
    h.handlers.failing("a")
    wf = (
        Builder("r")
        .step("a", options=Options(max_retries=3, retry_delay_ms=60_000))
        .on_failure("undo_a")
        .build()
    )
    iid = h.start(wf)
    h.runtime.run_once("w1")
    assert h.steps(iid)["a"].status is S.FAILED and h.store.next_due() is not None
    h.runtime.cancel(iid, "op", "enough")
    h.drain()
    assert h.status(iid) is I.CANCELLED
    assert h.handlers.order(compensation=True) == ["a"]
    assert h.steps(iid)["a"].status is S.ROLLED_BACK
    assert h.handlers.order(compensation=False) == ["a"]  # the retry never ran


def test_a_lost_worker_of_an_interrupted_call_lets_the_rollback_go_on_after_its_lease(
    harness: Any,
) -> None:
    h = harness(["a", "undo_a"])
    wf = Builder("l").step("a").on_failure("undo_a").build()
    iid = h.start(wf)
    h.store.claim(h.clock.now(), 0.5, lambda tx, item: h.runtime.engine.claim(tx, item, "x", None))
    h.runtime.cancel(iid, "op", "stop")  # the call is under way on worker x, which then dies
    h.drain()
    assert h.steps(iid)["a"].status is S.INTERRUPTED
    assert h.status(iid) is I.CANCELLING
    assert not h.handlers.calls  # nothing ran before the lease expired
    h.clock.t += h.runtime.engine.config.lease_ms / 1000.0 + 1
    h.drain()
    assert h.status(iid) is I.CANCELLED
    assert h.handlers.order(compensation=True) == ["a"]
    assert h.events(iid, "interrupted_call_lost")


def _rollback_flow() -> Any:
    return (
        Builder("rb", max_retries=0)
        .step("a")
        .on_failure("undo_a")
        .save_point("sp")
        .step("b")
        .on_failure("undo_b")
        .step("c")
        .build()
    )


def test_cancel_during_a_failures_rollback_changes_nothing(harness: Any) -> None:
    h = harness(["a", "b", "c", "undo_a", "undo_b"])
    h.handlers.failing("c")
    refused: list[str] = []

    def undo_b(ctx: StepContext, data: Any) -> Any:
        with pytest.raises(ConflictError) as err:
            h.runtime.cancel(iid, "op", "too late")
        refused.append(str(err.value))
        assert not ctx.interrupt.is_set()
        return None

    h.handlers.add("undo_b", undo_b)
    iid = h.start(_rollback_flow())
    h.drain()
    assert refused and "rolling back" in refused[0]
    assert h.handlers.order(compensation=True) == ["b"]  # a is before the savepoint
    inst = h.store.get_instance(iid)
    assert inst.status is I.FAILED and inst.error == "c failed"
    assert len(h.events(iid, "workflow_failed")) == 1
    assert not h.events(iid, "workflow_cancelled")
    assert h.steps(iid)["a"].status is S.COMPLETED


def test_abort_during_a_rollback_stops_it_and_never_reports_the_compensation_completed(
    harness: Any,
) -> None:
    h = harness(["a", "b", "c", "undo_a", "undo_b"])
    h.handlers.failing("c")

    def undo_b(ctx: StepContext, data: Any) -> Any:
        h.runtime.abort(iid, "op", "now")
        assert ctx.interrupt.is_set()
        return None  # the late result of an aborted compensation counts for nothing

    h.handlers.add("undo_b", undo_b)
    iid = h.start(_rollback_flow())
    h.drain()
    rows = h.steps(iid)
    assert h.status(iid) is I.ABORTED
    assert rows["b"].status is S.INTERRUPTED
    assert "compensation interrupted" in (rows["b"].error or "")
    assert rows["a"].status is S.COMPLETED
    assert h.handlers.order(compensation=True) == ["b"]


def test_abort_leaves_an_interrupted_step_interrupted(harness: Any) -> None:
    h = harness(["ta", "tb", "u"])

    def ta(ctx: StepContext, data: Any) -> Any:
        h.runtime.abort(iid, "op", "now")
        return {"late": True}

    h.handlers.add("ta", ta)
    iid = h.start(_flow("parallel"))
    h.drain()
    rows = h.steps(iid)
    assert h.status(iid) is I.ABORTED
    assert rows["ta"].status is S.INTERRUPTED and rows["ta"].output is None
    assert rows["tb"].status in (S.SKIPPED, S.INTERRUPTED)
    assert not h.handlers.order(compensation=True)


def test_a_no_idempotent_compensation_is_called_once(harness: Any) -> None:
    h = harness(["a", "b", "undo_a"])
    h.handlers.failing("b")
    h.handlers.failing("undo_a")
    wf = (
        Builder("ni")  # the default max_retries (3) applies to the compensation too
        .step("a")
        .on_failure("undo_a", options=Options(no_idempotent=True))
        .step("b", options=Options(max_retries=0))
        .build()
    )
    iid = h.run(wf)
    assert h.handlers.order(compensation=True) == ["a"]
    (record,) = h.store.get_dlq(iid)
    assert record.reason == "compensation max retries exceeded"
    assert h.status(iid) is I.FAILED


def test_compensation_calls_are_numbered_from_zero_and_bounded(harness: Any) -> None:
    h = harness(["a", "b", "undo_a"])
    h.handlers.failing("b")
    h.handlers.failing("undo_a")
    wf = (
        Builder("nm", max_retries=0)
        .step("a")
        .on_failure("undo_a", options=Options(max_retries=2))
        .step("b")
        .build()
    )
    h.run(wf)
    counts = [c.retry_count for c in h.handlers.calls if c.compensation]
    assert counts == [0, 1, 2]


def test_run_once_runs_one_step_so_a_library_user_can_cancel_between_steps(harness: Any) -> None:
    h = harness(["a", "b", "c", "undo_a"])
    wf = Builder("one").step("a").on_failure("undo_a").step("b").step("c").build()
    iid = h.start(wf)
    assert h.runtime.run_once("w1")
    assert h.handlers.order() == ["a"]
    h.runtime.cancel(iid, "lib", "between steps")
    h.drain()
    assert h.status(iid) is I.CANCELLED
    assert h.handlers.order(compensation=False) == ["a"]
    assert h.handlers.order(compensation=True) == ["a"]


def test_a_human_timeout_survives_a_dlq_requeue(harness: Any) -> None:
    h = harness(["x"])
    h.handlers.failing("x", times=1)
    wf = (
        Builder("hd", max_retries=0, dlq=True)
        .fork(
            "f",
            lambda b: b.wait_human_confirm("ok", timeout_ms=10_000),
            lambda b: b.step("x"),
        )
        .join("j")
        .build()
    )
    iid = h.start(wf)
    h.drain()
    assert h.status(iid) is I.DLQ
    (record,) = h.store.get_dlq(iid)
    h.runtime.requeue(record.id)
    h.drain()  # jumps the clock to each due item: the human step's deadline included
    assert h.status(iid) is I.ABORTED
    assert h.steps(iid)["ok"].status is S.REJECTED
    assert "timeout" in (h.store.get_instance(iid).error or "")


def test_requeue_resumes_sibling_dlq_records_and_a_stale_one_is_a_clear_error(
    harness: Any,
) -> None:
    h = harness(["x", "y", "after"])
    h.handlers.failing("y", times=1)

    def x(ctx: StepContext, data: Any) -> Any:
        if len(h.handlers.order()) == 1:  # first call: y fails meanwhile, then x fails too
            h.runtime.run_once("w2")
            raise HandlerError("x failed")
        return {"x": True}

    h.handlers.add("x", x)
    wf = (
        Builder("sib", max_retries=0, dlq=True)
        .fork("f", lambda b: b.step("x"), lambda b: b.step("y"))
        .join("j")
        .step("after")
        .build()
    )
    iid = h.run(wf)
    assert h.status(iid) is I.DLQ
    records = sorted(h.store.get_dlq(iid), key=lambda r: r.id)
    assert [r.step_name for r in records] == ["y", "x"]
    h.runtime.requeue(records[0].id)
    assert not h.store.get_dlq(iid)  # y resumes with x: its record is done
    h.drain()
    assert h.status(iid) is I.COMPLETED
    with pytest.raises(NotFoundError):
        h.runtime.requeue(records[1].id)
    assert len(h.events(iid, "dlq_requeued")) == 2


@pytest.mark.parametrize("kind", ["cancel", "abort"])
def test_dlq_records_of_a_stopped_instance_are_removed(harness: Any, kind: str) -> None:
    h = harness(["a", "b", "undo_a"])
    h.handlers.failing("b")
    wf = Builder("ds", max_retries=0, dlq=True).step("a").on_failure("undo_a").step("b").build()
    iid = h.run(wf)
    assert h.status(iid) is I.DLQ and h.store.get_dlq(iid)
    getattr(h.runtime, kind)(iid, "op", "give up")
    h.drain()
    assert not h.store.get_dlq(iid)
    if kind == "cancel":
        assert h.status(iid) is I.CANCELLED
        # b's handler ran (and failed): it is compensated like a, failing step first
        assert h.handlers.order(compensation=True) == ["a"]
        assert h.steps(iid)["b"].status is S.ROLLED_BACK
    else:
        assert h.status(iid) is I.ABORTED


def test_a_worker_frozen_between_its_claim_and_the_call_does_not_call_a_step_taken_over(
    harness: Any,
) -> None:
    """The long chaos run's overlap: a daemon SIGSTOPped just after claiming a step woke up
    after another daemon had taken the step over (its lease had run out) and started a second
    call of it beside the first."""
    h = harness(["a"])
    lease_s = h.runtime.engine.config.lease_ms / 1000.0
    frozen: list[bool] = []

    def freeze(name: str, instance: Any, kwargs: Any) -> None:
        if name.endswith("step_started") and not frozen:
            frozen.append(True)
            h.clock.t += lease_s + 1  # w1 is frozen past its lease ...
            assert h.runtime.run_once("w2")  # ... and w2 takes the step over and runs it

    h.runtime.hooks.append(freeze)
    iid = h.start(Builder("fz").step("a").build())
    assert h.runtime.run_once("w1")
    h.drain()
    assert frozen
    assert len(h.handlers.calls) == 1, h.handlers.calls
    assert h.status(iid) is I.COMPLETED
