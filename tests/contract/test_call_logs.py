"""Each handler call's stdout and stderr are kept with its step, bounded per call (DECISIONS.md
"Operating (API, UI, logs)"), on both stores alike."""

from __future__ import annotations

from typing import Any

import pytest

from floxy_core.builder import Builder
from floxy_core.capture import LOG_LIMIT
from floxy_core.errors import NotFoundError
from floxy_core.handlers.bash import BashHandler
from floxy_core.ports import StepContext
from floxy_core.status import InstanceStatus


def _bash(h: Any, name: str, script: str) -> None:
    h.runtime.handlers[name] = BashHandler(name, script)


def test_a_bash_step_keeps_its_stdout_and_stderr(harness: Any) -> None:
    h = harness(["after"])
    _bash(h, "sh", "echo to-stderr >&2; echo '{\"a\": 1}'")
    flow = Builder("logs", max_retries=0).step("sh").step("after").build()
    instance = h.run(flow)
    assert h.status(instance) is InstanceStatus.COMPLETED

    logs = h.store.get_logs(instance)
    assert [log.step_name for log in logs] == ["sh", "after"]
    sh = logs[0]
    assert (sh.stdout, sh.stderr) == ('{"a": 1}\n', "to-stderr\n")
    assert (sh.outcome, sh.exit_code, sh.retry_count, sh.compensation) == ("completed", 0, 0, False)
    assert (sh.handler, sh.truncated) == ("sh", False)
    assert sh.started_at <= sh.ended_at
    # a Python handler that reports nothing has an empty log of its call
    assert (logs[1].stdout, logs[1].stderr, logs[1].outcome) == ("", "", "completed")
    assert h.store.get_logs(instance, "after") == [logs[1]]
    assert h.store.get_logs(instance, after_id=sh.id) == [logs[1]]
    assert h.store.get_logs(instance, "missing") == []


def test_a_failed_then_retried_step_has_one_log_per_call(harness: Any) -> None:
    h = harness([])
    _bash(
        h,
        "flaky",
        'echo "try $FLOXY_RETRY_COUNT" >&2\n'
        'if [ "$FLOXY_RETRY_COUNT" = 0 ]; then echo partial; exit 3; fi\n'
        "echo '{}'",
    )
    instance = h.run(Builder("retried", max_retries=1).step("flaky").build())
    assert h.status(instance) is InstanceStatus.COMPLETED

    logs = h.store.get_logs(instance, "flaky")
    assert [(g.retry_count, g.outcome, g.exit_code) for g in logs] == [
        (0, "failed", 3),
        (1, "completed", 0),
    ]
    assert [(g.stdout, g.stderr) for g in logs] == [("partial\n", "try 0\n"), ("{}\n", "try 1\n")]
    assert logs[0].id < logs[1].id


def test_a_compensation_call_is_logged_as_one(harness: Any) -> None:
    h = harness(["pay"])
    _bash(h, "undo", "echo undoing >&2; echo '{}'")
    h.handlers.failing("pay")
    flow = (
        Builder("comp", max_retries=0)
        .step("reserve", "sh")
        .on_failure("release", "undo")
        .step("pay")
        .build()
    )
    _bash(h, "sh", "echo '{}'")
    instance = h.run(flow)
    assert h.status(instance) is InstanceStatus.FAILED

    logs = h.store.get_logs(instance)
    assert [(g.step_name, g.handler, g.compensation, g.outcome) for g in logs] == [
        ("reserve", "sh", False, "completed"),
        ("pay", "pay", False, "failed"),
        ("reserve", "undo", True, "completed"),
    ]
    assert logs[2].stderr == "undoing\n"


def test_each_stream_keeps_its_last_256_kib_behind_a_marker(harness: Any) -> None:
    h = harness([])
    big = 300 * 1024
    _bash(
        h,
        "spew",
        f"head -c {big} /dev/zero | tr '\\0' e >&2; printf 'E' >&2\n"
        f"printf '{{\"s\": \"'; head -c {big} /dev/zero | tr '\\0' o; printf '\"}}'",
    )
    instance = h.run(Builder("spew", max_retries=0).step("spew").build())
    assert h.status(instance) is InstanceStatus.COMPLETED
    assert len(h.steps(instance)["spew"].output["s"]) == big  # the result is whole

    (log,) = h.store.get_logs(instance)
    assert log.truncated
    err_marker = f"[floxy: {big + 1 - LOG_LIMIT} earlier bytes cut]\n"
    assert log.stderr.startswith(err_marker)
    assert log.stderr[len(err_marker) :] == "e" * (LOG_LIMIT - 1) + "E"
    out_total = len('{"s": "') + big + len('"}')
    out_marker = f"[floxy: {out_total - LOG_LIMIT} earlier bytes cut]\n"
    assert log.stdout.startswith(out_marker)
    assert log.stdout[len(out_marker) :] == "o" * (LOG_LIMIT - 2) + '"}'


def test_a_result_refused_by_fencing_keeps_its_log_marked_refused(harness: Any) -> None:
    h = harness(["slow"])
    lease_s = h.runtime.engine.config.lease_ms / 1000.0
    calls: list[int] = []

    def slow(ctx: StepContext, data: Any) -> Any:
        calls.append(ctx.retry_count)
        ctx.capture.write("stdout", f"call {len(calls)}\n")
        if len(calls) == 1:
            h.clock.t += lease_s + 1  # the lease runs out while the handler works
        return {}

    h.handlers.add("slow", slow)
    instance = h.run(Builder("fenced", max_retries=0).step("slow").build())
    assert h.status(instance) is InstanceStatus.COMPLETED

    logs = h.store.get_logs(instance)
    assert [(g.outcome, g.stdout) for g in logs] == [
        ("refused", "call 1\n"),
        ("completed", "call 2\n"),
    ]


def test_the_logs_of_an_unknown_instance_are_not_found(harness: Any) -> None:
    h = harness([])
    with pytest.raises(NotFoundError):
        h.store.get_logs(424242)
