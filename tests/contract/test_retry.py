"""Retry of an ended instance (DECISIONS.md "Instances and definitions"), on both stores: a new
instance of the same definition linked to the old one, from the start or after the savepoint the
old one kept; the old instance stays as it ended."""

from __future__ import annotations

from typing import Any

import pytest

from floxy_core.builder import Builder
from floxy_core.errors import ConflictError, InputError
from floxy_core.status import InstanceStatus, StepStatus

S = StepStatus
I = InstanceStatus  # noqa: E741


def _saga() -> Any:
    return (
        Builder("order", max_retries=0)
        .step("reserve")
        .on_failure("release")
        .save_point("reserved")
        .step("charge")
        .on_failure("refund")
        .step("ship")
        .build()
    )


def _harness(harness: Any) -> Any:
    return harness(["reserve", "release", "charge", "refund", "ship"])


def test_a_retry_from_the_start_is_a_new_linked_instance_with_the_old_input(harness: Any) -> None:
    h = _harness(harness)
    h.handlers.failing("ship", times=1)  # the first call fails, a later one succeeds
    old = h.run(_saga(), {"order": 7})
    assert h.status(old) is I.FAILED
    before = h.steps(old)

    new = h.runtime.retry(old, requested_by="ops")

    h.drain()
    assert new != old and h.status(new) is I.COMPLETED
    assert h.store.get_instance(new).retry_of == old
    assert h.store.get_instance(new).input == {"order": 7}
    assert h.store.retries_of(old) == [new]
    started = h.events(new, "workflow_started")
    assert len(started) == 1
    assert started[0].payload["retry_of"] == old and started[0].payload["requested_by"] == "ops"
    # the old instance is the record of what happened: untouched
    assert h.status(old) is I.FAILED
    assert {n: r.status for n, r in h.steps(old).items()} == {
        n: r.status for n, r in before.items()
    }
    calls = [c.step for c in h.handlers.calls if not c.compensation]
    assert calls == ["reserve", "charge", "ship", "reserve", "charge", "ship"]


def test_a_retry_takes_a_new_input(harness: Any) -> None:
    h = _harness(harness)
    h.handlers.failing("ship", times=1)
    old = h.run(_saga(), {"order": 7})
    new = h.runtime.retry(old, {"order": 8})
    h.drain()
    assert h.store.get_instance(new).input == {"order": 8}
    assert h.handlers.calls[-1].input["order"] == 8


def test_a_retry_from_the_savepoint_reuses_the_steps_before_it(harness: Any) -> None:
    h = _harness(harness)
    h.handlers.failing("ship", times=1)
    old = h.run(_saga(), {"order": 7})
    assert h.handlers.order(compensation=True) == ["charge"]  # reserve is kept by the savepoint
    kept = h.steps(old)

    new = h.runtime.retry(old, start_from="savepoint")

    h.drain()
    assert h.status(new) is I.COMPLETED
    rows = h.steps(new)
    assert rows["reserve"].status is S.COMPLETED
    assert rows["reserve"].output == kept["reserve"].output
    assert rows["reserve"].idempotency_key == kept["reserve"].idempotency_key
    assert rows["reserved"].status is S.COMPLETED
    calls = [c.step for c in h.handlers.calls if not c.compensation]
    assert calls == ["reserve", "charge", "ship", "charge", "ship"]  # reserve is not called again
    assert h.handlers.calls[-2].input == kept["reserved"].output
    started = h.events(new, "workflow_started")[0].payload
    assert started["from"] == "savepoint" and started["savepoint"] == "reserved"


def test_a_retry_from_the_savepoint_owns_the_reused_steps_when_cancelled(harness: Any) -> None:
    h = harness(["reserve", "release", "charge", "refund"])
    h.handlers.failing("charge", times=1)
    wf = (
        Builder("o", max_retries=0)
        .step("reserve")
        .on_failure("release")
        .save_point("sp")
        .step("charge")
        .on_failure("refund")
        .wait_human_confirm("ok")
        .build()
    )
    old = h.run(wf)
    new = h.runtime.retry(old, start_from="savepoint")
    h.drain()
    assert h.steps(new)["ok"].status is S.WAITING_DECISION
    h.runtime.cancel(new, "ops", "no")
    h.drain()
    assert h.status(new) is I.CANCELLED
    # the retry took over reserve's effect, so its cancel undoes it as well
    assert h.handlers.order(compensation=True) == ["charge", "charge", "reserve"]


def test_a_cancelled_instance_kept_no_savepoint(harness: Any) -> None:
    h = harness(["reserve", "release", "charge", "refund", "ship"])
    wf = (
        Builder("o")
        .step("reserve")
        .on_failure("release")
        .save_point("sp")
        .wait_human_confirm("ok")
        .step("ship")
        .build()
    )
    old = h.run(wf)
    h.runtime.cancel(old, "ops", "no")
    h.drain()
    with pytest.raises(ConflictError, match=r"kept no savepoint.*a cancel compensates every step"):
        h.runtime.retry(old, start_from="savepoint")
    new = h.runtime.retry(old)
    h.drain()
    assert h.steps(new)["ok"].status is S.WAITING_DECISION


def test_only_an_ended_unsuccessful_instance_is_retried(harness: Any) -> None:
    h = _harness(harness)
    done = h.run(_saga())
    assert h.status(done) is I.COMPLETED
    with pytest.raises(ConflictError, match="is completed: only a failed, cancelled or aborted"):
        h.runtime.retry(done)
    wf = Builder("w").wait_human_confirm("ok").build()
    waiting = h.run(wf)
    with pytest.raises(ConflictError, match="is running"):
        h.runtime.retry(waiting)
    h.runtime.abort(waiting, "ops", "stop")
    h.drain()
    assert h.status(h.runtime.retry(waiting)) is I.RUNNING


def test_a_retry_from_the_savepoint_takes_no_new_input(harness: Any) -> None:
    h = _harness(harness)
    h.handlers.failing("ship")
    old = h.run(_saga())
    with pytest.raises(InputError, match="a new input applies only to a retry from the start"):
        h.runtime.retry(old, {"x": 1}, start_from="savepoint")
    with pytest.raises(InputError, match="expected start or savepoint"):
        h.runtime.retry(old, start_from="middle")
