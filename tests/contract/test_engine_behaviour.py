"""Engine decisions on the in-memory store with Python handlers: no subprocesses, no threads."""

from __future__ import annotations

from typing import Any

import pytest

from floxy_core.builder import Builder, Compensation, Options, Task
from floxy_core.errors import ConflictError, DefinitionError
from floxy_core.status import InstanceStatus, StepStatus

S = StepStatus
I = InstanceStatus  # noqa: E741


def test_sequence_passes_each_output_to_the_next_step(harness: Any) -> None:
    h = harness(["a", "b", "c"])
    wf = Builder("seq").step("a").step("b").step("c").build()
    iid = h.run(wf, {"x": 1})
    assert h.status(iid) is I.COMPLETED
    assert [c.input for c in h.handlers.calls] == [
        {"x": 1},
        {"x": 1, "a": True},
        {"x": 1, "a": True, "b": True},
    ]
    assert h.store.get_instance(iid).output == {"x": 1, "a": True, "b": True, "c": True}
    types = [e.type for e in h.events(iid)]
    assert types[0] == "workflow_started" and types[-1] == "workflow_completed"


def test_retry_then_success_counts_attempts_and_keeps_the_idempotency_key(harness: Any) -> None:
    h = harness(["a"])
    h.handlers.failing("a", times=2)
    wf = Builder("r").step("a", options=Options(max_retries=3, retry_delay_ms=100)).build()
    iid = h.run(wf)
    assert h.status(iid) is I.COMPLETED
    assert [c.retry_count for c in h.handlers.calls] == [0, 1, 2]
    assert len({c.key for c in h.handlers.calls}) == 1
    assert [c.at - h.handlers.calls[0].at for c in h.handlers.calls] == pytest.approx(
        [0, 0.1, 0.2], abs=1e-3
    )
    assert len(h.events(iid, "step_retry")) == 2


def test_exhausted_retries_make_n_plus_one_calls_and_fail_the_instance(harness: Any) -> None:
    h = harness(["a"])
    h.handlers.failing("a")
    iid = h.run(Builder("r", max_retries=2).step("a").build())
    assert len(h.handlers.calls) == 3
    assert h.status(iid) is I.FAILED
    assert h.store.get_instance(iid).error == "a failed"
    assert h.steps(iid)["a"].error == "a failed"
    assert [e.type for e in h.events(iid)][-1] == "workflow_failed"


def test_no_idempotent_is_called_once_and_non_retryable_errors_are_not_retried(
    harness: Any,
) -> None:
    h = harness(["a", "b"])
    h.handlers.failing("a")
    iid = h.run(Builder("n").step("a", options=Options(no_idempotent=True)).build())
    assert len(h.handlers.calls) == 1 and h.status(iid) is I.FAILED
    h.handlers.failing("b", retryable=False)
    iid = h.run(Builder("m").step("b").build())
    assert [c.handler for c in h.handlers.calls].count("b") == 1
    assert h.status(iid) is I.FAILED


def test_compensations_run_in_reverse_order_with_each_step_input(harness: Any) -> None:
    h = harness(["a", "b", "c", "d", "undo_a", "undo_b", "undo_d"])
    h.handlers.failing("d")
    wf = (
        Builder("saga", max_retries=0)
        .step("a")
        .on_failure("undo_a")
        .step("b")
        .on_failure("undo_b")
        .step("c")
        .step("d")
        .on_failure("undo_d")
        .build()
    )
    iid = h.run(wf, {"o": 1})
    comps = [c for c in h.handlers.calls if c.compensation]
    assert [c.handler for c in comps] == ["undo_d", "undo_b", "undo_a"]
    assert [c.step for c in comps] == ["d", "b", "a"]
    assert comps[2].input == {"o": 1}
    assert comps[1].input == {"o": 1, "a": True}
    rows = h.steps(iid)
    assert {n: rows[n].status for n in "abcd"} == {
        "a": S.ROLLED_BACK,
        "b": S.ROLLED_BACK,
        "c": S.ROLLED_BACK,
        "d": S.ROLLED_BACK,
    }
    assert rows["d"].error == "d failed"
    assert h.status(iid) is I.FAILED


def test_savepoint_limits_the_rollback(harness: Any) -> None:
    h = harness(["a", "b", "c", "undo_a", "undo_b"])
    h.handlers.failing("c")
    wf = (
        Builder("sp", max_retries=0)
        .step("a")
        .on_failure("undo_a")
        .save_point("sp1")
        .step("b")
        .on_failure("undo_b")
        .step("c")
        .build()
    )
    iid = h.run(wf)
    assert h.handlers.order(compensation=True) == ["b"]
    rows = h.steps(iid)
    assert rows["a"].status is S.COMPLETED and rows["sp1"].status is S.COMPLETED
    assert h.status(iid) is I.FAILED


@pytest.mark.parametrize(("amount", "ran"), [(150, "big"), (50, "small")])
def test_condition_takes_one_branch_and_rollback_touches_only_it(
    harness: Any, amount: int, ran: str
) -> None:
    h = harness(["start", "big", "small", "boom", "undo_big", "undo_small", "undo_start"])
    h.handlers.failing("boom")
    wf = (
        Builder("cond", max_retries=0)
        .step("start")
        .on_failure("undo_start")
        .condition(
            "check",
            "{{ gt .amount 100 }}",
            lambda e: e.step("small").on_failure("undo_small").step("boom2", "boom"),
        )
        .step("big")
        .on_failure("undo_big")
        .step("boom")
        .build()
    )
    iid = h.run(wf, {"amount": amount})
    assert h.handlers.order(compensation=False)[:2] == ["start", ran]
    assert h.handlers.order(compensation=True) == [ran, "start"]
    other = "small" if ran == "big" else "big"
    assert other not in h.steps(iid)
    assert h.events(iid, "condition_check")[0].payload["result"] is (amount > 100)


def test_condition_false_without_else_completes_with_the_condition_input(harness: Any) -> None:
    h = harness(["a", "b"])
    wf = Builder("c").step("a").condition("c", '{{ eq .mode "go" }}').step("b").build()
    iid = h.run(wf, {"mode": "stop"})
    assert h.status(iid) is I.COMPLETED
    assert h.store.get_instance(iid).output == {"mode": "stop", "a": True}
    assert "b" not in h.steps(iid)


def test_condition_error_fails_at_once(harness: Any) -> None:
    h = harness(["a"])
    wf = Builder("c").step("a").condition("c", "{{ .missing }}").build()
    iid = h.run(wf)
    assert h.status(iid) is I.FAILED
    assert "evaluate condition" in (h.store.get_instance(iid).error or "")


def test_parallel_join_output_and_failure_after_join_compensates_branch_tasks(harness: Any) -> None:
    h = harness(["x", "y", "after", "boom", "undo_x", "undo_y"])
    h.handlers.failing("boom")
    wf = (
        Builder("par", max_retries=0)
        .parallel(
            "p",
            Task("x", on_failure=Compensation("undo_x", "undo_x")),
            Task("y", on_failure=Compensation("undo_y", "undo_y")),
        )
        .step("after")
        .step("boom")
        .build()
    )
    iid = h.run(wf, {"k": 1})
    after = next(c for c in h.handlers.calls if c.handler == "after")
    assert after.input["strategy"] == "all" and after.input["status"] == "success"
    assert sorted(after.input["completed"]) == ["x", "y"]
    assert after.input["outputs"]["x"] == {"k": 1, "x": True}
    assert sorted(h.handlers.order(compensation=True)) == ["x", "y"]
    assert h.status(iid) is I.FAILED


def test_branch_failure_stops_siblings_and_compensates_completed_ones(harness: Any) -> None:
    h = harness(["ok", "slow1", "slow2", "bad", "undo_ok"])
    h.handlers.failing("bad")
    wf = (
        Builder("fork", max_retries=0)
        .fork(
            "f",
            lambda b: b.step("ok").on_failure("undo_ok"),
            lambda b: b.step("bad"),
            lambda b: b.step("slow1").step("slow2"),
        )
        .join("j")
        .build()
    )
    iid = h.start(wf)
    for _ in range(4):  # fork, ok, bad → failure; slow1 is still pending
        h.runtime.run_once("w1")
    h.drain()
    rows = h.steps(iid)
    assert rows["bad"].status is S.ROLLED_BACK
    assert rows["slow1"].status is S.SKIPPED
    assert "slow2" not in rows
    assert h.handlers.order(compensation=True) == ["ok"]
    assert h.status(iid) is I.FAILED


def test_fork_any_continues_after_the_first_success(harness: Any) -> None:
    h = harness(["bad", "good", "next"])
    h.handlers.failing("bad")
    wf = (
        Builder("any", max_retries=0)
        .fork("f", lambda b: b.step("bad"), lambda b: b.step("good"))
        .join("j", "any")
        .step("next")
        .build()
    )
    iid = h.run(wf)
    assert h.status(iid) is I.COMPLETED
    nxt = next(c for c in h.handlers.calls if c.handler == "next")
    assert nxt.input["completed"] == ["good"] and nxt.input["failed"] == ["bad"]


def test_fork_any_fails_when_every_branch_failed(harness: Any) -> None:
    h = harness(["b1", "b2"])
    h.handlers.failing("b1")
    h.handlers.failing("b2")
    wf = (
        Builder("any", max_retries=0)
        .fork("f", lambda b: b.step("b1"), lambda b: b.step("b2"))
        .join("j", "any")
        .build()
    )
    iid = h.run(wf)
    assert h.status(iid) is I.FAILED
    assert "all 2 branches failed" in (h.store.get_instance(iid).error or "")


def test_fork_join_waits_for_the_branch_that_ran_through_a_condition(harness: Any) -> None:
    h = harness(["a", "t", "e", "z", "after"])
    wf = (
        Builder("fc")
        .fork(
            "f",
            lambda b: b.step("a"),
            lambda b: b.condition("c", "{{ .go }}", lambda e: e.step("e")).step("t"),
        )
        .join("j")
        .step("after")
        .build()
    )
    iid = h.run(wf, {"go": False})
    assert h.status(iid) is I.COMPLETED
    after = next(c for c in h.handlers.calls if c.handler == "after")
    assert sorted(after.input["completed"]) == ["a", "e"]


def test_dlq_mode_pauses_and_requeue_with_new_input_completes(harness: Any) -> None:
    h = harness(["a", "b", "c", "undo_a"])
    h.handlers.failing("b", times=1)
    wf = Builder("d", max_retries=0, dlq=True).step("a").on_failure("undo_a").step("b").step("c")
    iid = h.run(wf.build())
    assert h.status(iid) is I.DLQ
    rows = h.steps(iid)
    assert rows["b"].status is S.PAUSED and rows["a"].status is S.COMPLETED
    (record,) = h.store.get_dlq(iid)
    assert record.step_name == "b" and record.reason.startswith("dlq enabled")
    assert not h.handlers.order(compensation=True)
    h.runtime.requeue(record.id, {"fixed": True})
    h.drain()
    assert h.status(iid) is I.COMPLETED
    assert h.store.get_instance(iid).output == {"fixed": True, "b": True, "c": True}
    assert h.events(iid, "dlq_requeued")
    assert not h.store.get_dlq(iid)


def test_compensation_exhaustion_writes_a_dlq_record_and_goes_on(harness: Any) -> None:
    h = harness(["a", "b", "c", "undo_a", "undo_b"])
    h.handlers.failing("c")
    h.handlers.failing("undo_b")
    wf = (
        Builder("ce", max_retries=0)
        .step("a")
        .on_failure("undo_a")
        .step("b")
        .on_failure("undo_b", options=Options(max_retries=1))
        .step("c")
        .build()
    )
    iid = h.run(wf)
    assert h.handlers.order(compensation=True) == ["b", "b", "a"]
    rows = h.steps(iid)
    assert rows["b"].status is S.FAILED and rows["a"].status is S.ROLLED_BACK
    (record,) = h.store.get_dlq(iid)
    assert record.reason == "compensation max retries exceeded" and record.step_name == "b"
    assert h.status(iid) is I.FAILED
    with pytest.raises(ConflictError):
        h.runtime.requeue(record.id)


def test_human_confirm_continues_once_with_the_human_input(harness: Any) -> None:
    h = harness(["a", "b"])
    wf = Builder("h").step("a").wait_human_confirm("ok").step("b").build()
    iid = h.run(wf, {"v": 1})
    assert h.steps(iid)["ok"].status is S.WAITING_DECISION
    assert h.status(iid) is I.RUNNING
    h.runtime.decide(iid, "ok", "confirmed", "alice")
    h.drain()
    assert h.status(iid) is I.COMPLETED
    assert [c.handler for c in h.handlers.calls] == ["a", "b"]
    assert h.handlers.calls[1].input == {"v": 1, "a": True}
    with pytest.raises(ConflictError):
        h.runtime.decide(iid, "ok", "confirmed", "alice")


def test_human_reject_aborts_and_timeout_rejects(harness: Any) -> None:
    h = harness(["a", "b"])
    wf = Builder("h").step("a").wait_human_confirm("ok").step("b").build()
    iid = h.run(wf)
    h.runtime.decide(iid, None, "rejected", "bob", "too expensive")
    h.drain()
    assert h.status(iid) is I.ABORTED
    assert "bob" in (h.store.get_instance(iid).error or "")
    wf2 = Builder("h2").step("a").wait_human_confirm("ok", timeout_ms=5000).step("b").build()
    iid2 = h.run(wf2)
    assert h.status(iid2) is I.ABORTED
    assert h.steps(iid2)["ok"].status is S.REJECTED


def test_cancel_compensates_and_abort_does_not(harness: Any) -> None:
    h = harness(["a", "b", "undo_a"])
    wf = Builder("c").step("a").on_failure("undo_a").wait_human_confirm("wait").step("b").build()
    iid = h.run(wf)
    h.runtime.cancel(iid, "me", "changed my mind")
    h.drain()
    assert h.status(iid) is I.CANCELLED
    assert h.handlers.order(compensation=True) == ["a"]
    assert h.steps(iid)["wait"].status is S.SKIPPED
    with pytest.raises(ConflictError):
        h.runtime.cancel(iid, "me", "again")
    iid2 = h.run(wf)
    h.runtime.abort(iid2, "me", "stop")
    h.drain()
    assert h.status(iid2) is I.ABORTED
    assert h.handlers.order(compensation=True) == ["a"]
    assert h.steps(iid2)["a"].status is S.COMPLETED


def test_missing_handler_is_released_for_another_worker(harness: Any) -> None:
    h = harness(["a", "remote"], handlers=["a"])
    wf = Builder("dist").step("a").step("remote").build()
    iid = h.start(wf)
    for _ in range(5):
        h.runtime.run_once("w1")
    rows = h.steps(iid)
    assert rows["remote"].status is S.PENDING
    skipped = h.events(iid, "step_skipped_missing_handler")
    assert len(skipped) == 1 and skipped[0].step_name == "remote"
    due = h.store.next_due()
    assert due is not None and due > h.clock.t + 0.5


def test_a_stale_result_after_a_stop_is_ignored(harness: Any) -> None:
    h = harness(["a", "b"])
    wf = Builder("s").step("a").step("b").build()
    iid = h.start(wf)
    captured = {}

    def slow(ctx: object, data: object) -> object:
        captured["stopped"] = True
        h.runtime.abort(iid, "me", "now")
        return {"late": True}

    h.handlers.add("a", slow)
    h.drain()
    assert captured["stopped"]
    assert h.status(iid) is I.ABORTED
    assert h.steps(iid)["a"].status is S.INTERRUPTED  # started: never `skipped`, not completed
    assert "b" not in h.steps(iid)


def test_no_idempotent_step_is_not_rerun_after_a_lost_worker(harness: Any) -> None:
    h = harness(["a"])
    wf = Builder("n").step("a", options=Options(no_idempotent=True)).build()
    iid = h.start(wf)

    def lost(tx, item):  # the claim commits, then the worker "dies" before reporting
        return h.runtime.engine.claim(tx, item, "dead", None)

    h.store.claim(h.clock.now(), 0.5, lost)
    h.clock.t += 60
    h.drain()
    assert h.handlers.calls == []
    assert h.status(iid) is I.FAILED
    assert "no_idempotent" in (h.steps(iid)["a"].error or "")


def test_priority_and_aging_order_claims(harness: Any) -> None:
    h = harness(["low", "high"])
    low = Builder("low").step("low", options=Options(priority=10)).build()
    high = Builder("high").step("high", options=Options(priority=90)).build()
    h.start(low)
    h.start(high)
    h.runtime.run_once("w1")
    assert h.handlers.order() == ["high"]
    # a low-priority item that waited long enough overtakes a fresh high one
    h2 = harness(["low", "high"])
    h2.start(low)
    h2.clock.t += 200  # +100 points of aging, capped at 100
    h2.start(high)
    h2.runtime.run_once("w1")
    assert h2.handlers.order() == ["low"]


def test_handler_crash_becomes_a_failed_attempt(harness: Any) -> None:
    h = harness(["a"])

    def crash(ctx: object, data: object) -> object:
        raise RuntimeError("kaboom")

    h.handlers.add("a", crash)
    iid = h.run(Builder("c", max_retries=0).step("a").build())
    assert h.status(iid) is I.FAILED
    assert "kaboom" in (h.store.get_instance(iid).error or "")


def test_hooks_fire_after_commit_and_their_errors_do_not_stop_the_engine(harness: Any) -> None:
    h = harness(["a"])
    seen: list[str] = []

    def hook(name: str, instance: object, kwargs: object) -> None:
        seen.append(name)
        raise ValueError("bad plugin")

    h.runtime.hooks.append(hook)
    iid = h.run(Builder("k").step("a").build())
    assert h.status(iid) is I.COMPLETED
    assert seen[0] == "workflow_started" and seen[-1] == "workflow_completed"
    assert h.runtime.hook_errors == len(seen)


def test_retry_after_is_honoured_within_the_retry_cap(harness: Any) -> None:
    from floxy_core.handlers.http import HttpStatusError

    h = harness(["a", "b"])

    def limited(ctx: Any, data: Any) -> Any:
        if ctx.retry_count == 0:
            raise HttpStatusError("HTTP 429", status=429, retry_after_s=2.0)
        return {}

    h.handlers.add("a", limited)
    h.handlers.add("b", limited)
    h.run(Builder("ra").step("a", options=Options(retry_delay_ms=100)).build())
    first, second = h.handlers.calls
    assert second.at - first.at == pytest.approx(2.0, abs=1e-3)
    capped = Options(retry_delay_ms=100, retry_max_delay_ms=500)
    h.run(Builder("rb").step("b", options=capped).build())
    first, second = h.handlers.calls[2:]
    assert second.at - first.at == pytest.approx(0.5, abs=1e-3)


def test_any_handler_error_may_ask_for_a_retry_delay(harness: Any) -> None:
    """`retry_after_s` is a field of `HandlerError`, not something only the HTTP handler has."""
    from floxy_core.errors import HandlerError

    h = harness(["a"])

    def busy(ctx: Any, data: Any) -> Any:
        if ctx.retry_count == 0:
            raise HandlerError("busy", retry_after_s=1.5)
        return {}

    h.handlers.add("a", busy)
    h.run(Builder("rc").step("a", options=Options(retry_delay_ms=100)).build())
    first, second = h.handlers.calls
    assert second.at - first.at == pytest.approx(1.5, abs=1e-3)


def test_dlq_requeue_inside_a_parallel_block_resumes_the_join(harness: Any) -> None:
    h = harness(["x", "y", "after"])
    h.handlers.failing("y", times=1)
    wf = Builder("dp", max_retries=0, dlq=True).parallel("p", Task("x"), Task("y")).step("after")
    iid = h.run(wf.build(), {"k": 1})
    assert h.status(iid) is I.DLQ
    (record,) = h.store.get_dlq(iid)
    assert record.step_name == "y"
    h.runtime.requeue(record.id)
    h.drain()
    assert h.status(iid) is I.COMPLETED
    after = next(c for c in h.handlers.calls if c.handler == "after")
    assert sorted(after.input["completed"]) == ["x", "y"] and after.input["failed"] == []


def test_a_handler_that_overruns_its_timeout_fails_the_attempt(harness: Any) -> None:
    h = harness(["slow"])

    def slow(ctx: Any, data: Any) -> Any:
        import time

        time.sleep(0.05)
        return {}

    h.handlers.add("slow", slow)
    iid = h.run(Builder("t", max_retries=0).step("slow", options=Options(timeout_ms=10)).build())
    assert h.status(iid) is I.FAILED
    assert "exceeded its timeout" in (h.store.get_instance(iid).error or "")


def test_a_savepoint_inside_a_fork_branch_is_refused_when_built() -> None:
    builder = Builder("fs").fork(
        "f",
        lambda br: br.step("a").save_point("sp").step("b"),
        lambda br: br.step("other", "a"),
    )
    with pytest.raises(DefinitionError, match="savepoint 'sp' is inside a branch of fork 'f'"):
        builder.join("j").build()


def test_a_stopped_runtime_can_be_started_again(harness: Any) -> None:
    import time

    h = harness(["a"])
    wf = Builder("restart").step("a").build()
    h.runtime.start()
    h.runtime.stop()
    iid = h.start(wf)
    h.runtime.start()
    deadline = time.monotonic() + 20
    while not h.status(iid).terminal and time.monotonic() < deadline:
        time.sleep(0.02)
    h.runtime.stop()
    assert h.status(iid) is I.COMPLETED


def test_a_worker_goes_on_with_the_next_steps_of_the_instance_it_holds(harness: Any) -> None:
    h = harness(["a", "b", "c"])
    wf = Builder("chain").step("a").step("b").step("c").build()
    iid = h.start(wf)
    assert h.runtime._run("w1", chain=True)  # one claim: the rest follows in the results' tx
    assert h.status(iid) is I.COMPLETED
    assert h.handlers.order() == ["a", "b", "c"]
    completed = {e.step_name: e.at for e in h.events(iid, "step_completed")}
    started = {e.step_name: e.at for e in h.events(iid, "step_started")}
    assert started["b"] == completed["a"] and started["c"] == completed["b"]


def test_a_fork_runs_its_branches_from_the_worker_that_holds_the_instance(harness: Any) -> None:
    h = harness(["x", "y", "after"])
    wf = (
        Builder("fan")
        .fork("f", lambda b: b.step("x"), lambda b: b.step("y"))
        .join("f_join")
        .step("after")
        .build()
    )
    iid = h.start(wf)
    assert h.runtime._run("w1", chain=True)
    assert h.status(iid) is I.COMPLETED
    assert sorted(h.handlers.order()) == ["after", "x", "y"]


def test_delayed_steps_and_missing_handlers_wait_in_the_queue(harness: Any) -> None:
    h = harness(["a", "b", "remote"], handlers=["a", "b"])
    wf = Builder("wait").step("a").step("b", options=Options(delay_ms=1000)).step("remote").build()
    iid = h.start(wf)
    assert h.runtime._run("w1", chain=True)
    assert h.handlers.order() == ["a"]  # b is due in a second: not chained
    assert h.steps(iid)["b"].status is S.PENDING
    h.clock.t += 1.0
    assert h.runtime._run("w1", chain=True)
    assert h.handlers.order() == ["a", "b"]  # this worker lacks `remote`: left for another
    assert h.steps(iid)["remote"].status is S.PENDING
    assert not h.events(iid, "step_skipped_missing_handler")
