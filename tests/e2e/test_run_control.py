"""`floxyctl run` end to end: human decisions, Ctrl-C, command-line errors, completion timeout."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.e2e.conftest import pid_alive, wait_until

HUMAN = """
handlers:
  - name: prepare
    exec: |
      echo "prepare" >> "$LEDGER"
      jq -c '{refund: "RF-1", amount: .amount}' <<<"$INPUT"
  - name: pay
    exec: |
      echo "pay $INPUT" >> "$LEDGER"
      jq -c '. + {paid: true}' <<<"$INPUT"
  - name: undo_prepare
    exec: |
      echo "undo_prepare" >> "$LEDGER"
      echo '{}'
flows:
  - name: approval
    steps:
      - {name: prepare, on_failure: undo_prepare}
      - {type: human, name: approve}
      - pay
"""


def test_human_confirm_continues_once_with_the_human_step_input(run_flow, ledger):
    r = run_flow(HUMAN, "--decide", "approve=confirm", input={"amount": 120})
    assert r.code == 0, r.describe()
    assert r.status == "completed"
    pays = ledger.calls("pay")
    assert len(pays) == 1, ledger.lines()
    expected = {"refund": "RF-1", "amount": 120}
    assert json.loads(pays[0].split(" ", 1)[1]) == expected
    assert r.step("approve")["input"] == expected
    assert r.step("pay")["input"] == expected
    assert r.output == {"refund": "RF-1", "amount": 120, "paid": True}
    assert len(r.steps_named("pay")) == 1


def test_human_reject_aborts_without_compensation(run_flow, ledger):
    r = run_flow(HUMAN, "--decide", "approve=reject", input={"amount": 120})
    assert r.code == 5, r.describe()
    assert r.status == "aborted"
    assert r.step("approve")["status"] == "rejected"
    assert ledger.lines() == ["prepare"]
    assert r.step("prepare")["status"] == "completed"
    assert not r.has_step("pay")


def test_human_step_without_decision_and_no_terminal_pauses(run_flow, ledger):
    r = run_flow(HUMAN, timeout=20)
    assert r.code == 4, r.describe()
    assert r.elapsed < 5, r.describe()
    assert r.step("approve")["status"] == "waiting_decision"
    assert ledger.lines() == ["prepare"]
    assert not r.has_step("pay")


def test_decide_with_a_bad_value_is_a_usage_error(run_flow):
    r = run_flow(HUMAN, "--decide", "approve=maybe")
    assert r.code == 2, r.describe()
    assert "Traceback" not in r.stderr


CANCEL = """
handlers:
  - name: s1
    exec: |
      echo "s1" >> "$LEDGER"
      echo '{"s1": true}'
  - name: s2
    exec: |
      echo "s2" >> "$LEDGER"
      jq -c '. + {s2: true}' <<<"$INPUT"
  - name: slow
    exec: |
      echo "slow started $$" >> "$LEDGER"
      sleep 10
      echo "slow finished" >> "$LEDGER"
      echo '{}'
  - name: never
    exec: |
      echo "never" >> "$LEDGER"
      echo '{}'
  - name: undo_s1
    exec: |
      echo "undo_s1 for=$FLOXY_STEP_NAME comp=$FLOXY_COMPENSATION in=$INPUT" >> "$LEDGER"
      echo '{}'
  - name: undo_s2
    exec: |
      echo "undo_s2 for=$FLOXY_STEP_NAME comp=$FLOXY_COMPENSATION in=$INPUT" >> "$LEDGER"
      echo '{}'
flows:
  - name: cancellable
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: s2, on_failure: undo_s2}
      - {name: slow, max_retries: 0}
      - never
"""


def test_ctrl_c_cancels_and_compensates_completed_steps(spawn_flow, ledger):
    flow = spawn_flow(CANCEL)
    lines = ledger.wait_for(lambda ls: any(ln.startswith("slow started") for ln in ls))
    slow_pid = int(next(ln for ln in lines if ln.startswith("slow started")).split()[2])
    flow.send_signal(signal.SIGINT)
    r = flow.finish(timeout=20)
    assert r.code == 5, r.describe()
    assert r.elapsed < 8, r.describe()
    assert r.status == "cancelled", r.describe()
    names = [ln.split()[0] for ln in ledger.lines()]
    assert names == ["s1", "s2", "slow", "undo_s2", "undo_s1"], ledger.lines()
    undo_s2 = ledger.calls("undo_s2")[0]
    assert "for=s2 comp=true" in undo_s2
    assert json.loads(undo_s2.split(" in=", 1)[1]) == {"s1": True}
    # slow's handler started: interrupted, then rolled back (it has no on_failure to call)
    assert r.step("slow")["status"] == "rolled_back"
    assert r.step("slow")["error"].startswith("interrupted: ")
    assert r.step("s1")["status"] == "rolled_back"
    assert r.step("s2")["status"] == "rolled_back"
    assert not r.has_step("never")
    assert wait_until(lambda: not pid_alive(slow_pid), timeout=3.0), "slow handler survived"


def test_second_ctrl_c_during_the_rollback_aborts(spawn_flow, ledger):
    flow = spawn_flow(
        CANCEL.replace(
            "  - name: undo_s2\n    exec: |\n",
            '  - name: undo_s2\n    exec: |\n      echo "undo_s2 started" >> "$LEDGER"\n'
            "      sleep 5\n",
        )
    )
    ledger.wait_for(lambda ls: any(ln.startswith("slow started") for ln in ls))
    flow.send_signal(signal.SIGINT)
    ledger.wait_for(lambda ls: "undo_s2 started" in ls)
    flow.send_signal(signal.SIGINT)
    r = flow.finish(timeout=20)
    assert r.code == 5, r.describe()
    assert r.elapsed < 4.5, r.describe()
    assert r.status == "aborted", r.describe()
    assert ledger.calls("undo_s1") == [], ledger.lines()
    # s1 was never undone: it must not claim to be rolled back
    assert r.step("s1")["status"] != "rolled_back", r.describe()


# --------------------------------------------------------------------------------------------
# Command-line errors

TWO_FLOWS = """
handlers:
  - name: a
    exec: |
      echo '"from a"'
  - name: b
    exec: |
      echo '"from b"'
flows:
  - name: first
    steps: [a]
  - name: second
    steps: [b]
"""


def test_flow_flag_is_required_when_the_file_has_two_flows(run_flow):
    r = run_flow(TWO_FLOWS)
    assert r.code == 2, r.describe()
    assert "--flow" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == ""


@pytest.mark.parametrize(("flag", "expected"), [("second", "from b"), ("first-v1", "from a")])
def test_flow_flag_picks_the_flow(run_flow, flag, expected):
    r = run_flow(TWO_FLOWS, "--flow", flag)
    assert r.code == 0, r.describe()
    assert r.output == expected


def test_unknown_flow_is_a_usage_error(run_flow):
    r = run_flow(TWO_FLOWS, "--flow", "third")
    assert r.code == 2, r.describe()
    assert "third" in r.stderr
    assert "Traceback" not in r.stderr


ONE = """
handlers:
  - name: a
    exec: |
      echo '{}'
flows:
  - name: one
    steps: [a]
"""


@pytest.mark.parametrize(
    "args",
    [
        ("--completion-timeout", "soon"),
        ("--completion-timeout", "-1s"),
        ("--worker-interval", "10 parsecs"),
        ("--workers", "0"),
        ("--output", "yaml"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else a,
)
def test_bad_flags_are_usage_errors(run_flow, ledger, args):
    r = run_flow(ONE, *args)
    assert r.code == 2, r.describe()
    assert "Traceback" not in r.stderr
    assert r.stderr.strip(), "no message"


def test_missing_yaml_file_is_a_usage_error(run_flow, tmp_path):
    r = run_flow(ONE, "-f", str(tmp_path / "missing.yaml"))
    assert r.code == 2, r.describe()
    assert "Traceback" not in r.stderr


def test_unknown_handler_is_rejected_before_running(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: a
    exec: |
      echo "a" >> "$LEDGER"
      echo '{}'
flows:
  - name: one
    steps: [a, ghost]
"""
    )
    assert r.code == 2, r.describe()
    assert "ghost" in r.stderr
    assert ledger.lines() == []


def test_completion_timeout_exits_3(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: first
    exec: |
      echo "first" >> "$LEDGER"
      echo '{}'
  - name: undo_first
    exec: |
      echo "undo_first" >> "$LEDGER"
      echo '{}'
  - name: sleepy
    exec: |
      echo "sleepy $$" >> "$LEDGER"
      sleep 5
      echo '{}'
flows:
  - name: slow
    steps:
      - {name: first, on_failure: undo_first}
      - {name: sleepy, max_retries: 2}
""",
        "--completion-timeout",
        "400ms",
        timeout=20,
    )
    assert r.code == 3, r.describe()
    assert r.elapsed < 3.0, r.describe()
    assert "Traceback" not in r.stderr
    assert "timed out" in r.stderr.lower(), r.stderr
    line = ledger.calls("sleepy")
    assert len(line) == 1
    pid = int(line[0].split()[1])
    assert wait_until(lambda: not pid_alive(pid), timeout=3.0), "handler left running after exit"
    # Giving up waiting is not a step failure: nothing is failed or rolled back, and the
    # document shows the instance as it was when floxyctl stopped waiting ("instance is running").
    assert r.doc is not None, r.describe()
    assert r.status == "running", r.describe()
    assert r.step("first")["status"] == "completed", r.describe()
    assert r.step("sleepy")["status"] == "running", r.describe()
    assert r.events("step_failed") == [], r.events("step_failed")
    assert ledger.calls("undo_first") == []


def test_human_step_first_in_the_flow_passes_the_flow_input_on(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: pay
    exec: |
      echo "pay $INPUT" >> "$LEDGER"
      jq -c '. + {paid: true}' <<<"$INPUT"
flows:
  - name: approval
    steps:
      - {type: human, name: approve}
      - pay
""",
        "--decide",
        "approve=confirm",
        input={"amount": 7},
    )
    assert r.code == 0, r.describe()
    assert r.output == {"amount": 7, "paid": True}
    assert len(ledger.calls("pay")) == 1


def test_ctrl_c_during_a_parallel_stops_the_tasks_and_compensates(spawn_flow, ledger):
    flow = spawn_flow(
        """
handlers:
  - name: s1
    exec: |
      echo "s1" >> "$LEDGER"
      echo '{}'
  - name: quick
    exec: |
      echo "quick" >> "$LEDGER"
      echo '{}'
  - name: slow
    exec: |
      echo "slow started" >> "$LEDGER"
      sleep 10
      echo '{}'
  - name: undo
    exec: |
      echo "undo for=$FLOXY_STEP_NAME" >> "$LEDGER"
      echo '{}'
flows:
  - name: par_cancel
    steps:
      - {name: s1, on_failure: undo}
      - type: parallel
        name: p
        tasks:
          - {name: quick, on_failure: undo}
          - {name: slow, max_retries: 0}
"""
    )
    ledger.wait_for(lambda ls: "slow started" in ls and "quick" in ls)
    # quick's handler has run: compensated whether its result came before the cancel or after
    flow.send_signal(signal.SIGINT)
    r = flow.finish(timeout=20)
    assert r.code == 5, r.describe()
    assert r.elapsed < 8, r.describe()
    assert r.status == "cancelled", r.describe()
    assert r.step("quick")["status"] == "rolled_back", r.describe()
    assert r.step("slow")["status"] == "rolled_back"  # started: interrupted, nothing to call
    undos = ledger.calls("undo")
    assert undos == ["undo for=quick", "undo for=s1"], ledger.lines()


def test_ctrl_c_while_waiting_for_a_retry_cancels_at_once(spawn_flow, ledger):
    flow = spawn_flow(
        """
handlers:
  - name: s1
    exec: |
      echo "s1" >> "$LEDGER"
      echo '{}'
  - name: undo_s1
    exec: |
      echo "undo_s1 for=$FLOXY_STEP_NAME" >> "$LEDGER"
      echo '{}'
  - name: flaky
    exec: |
      echo "flaky $FLOXY_RETRY_COUNT" >> "$LEDGER"
      exit 1
flows:
  - name: waiting
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: flaky, max_retries: 2, retry_delay: 10s}
"""
    )
    ledger.wait_for(lambda ls: "flaky 0" in ls)
    sent = time.monotonic()
    flow.send_signal(signal.SIGINT)
    r = flow.finish(timeout=20)
    assert time.monotonic() - sent < 3.0, r.describe()
    assert r.code == 5, r.describe()
    assert r.status == "cancelled"
    assert ledger.lines() == ["s1", "flaky 0", "undo_s1 for=s1"]
    assert r.step("flaky")["status"] == "rolled_back"  # it failed once: started, so rolled back


def test_text_output_uses_the_same_exit_codes(run_flow):
    r = run_flow(
        """
handlers:
  - name: bad
    exec: |
      echo "kaputt" >&2
      exit 1
flows:
  - name: text
    steps: [{name: bad, max_retries: 0}]
""",
        json_output=False,
    )
    assert r.code == 1
    assert "kaputt" in r.stdout + r.stderr


def test_human_step_inside_a_fork_branch(run_flow, ledger):
    yaml_text = """
handlers:
  - name: ok
    exec: |
      echo "ok $FLOXY_STEP_NAME $INPUT" >> "$LEDGER"
      jq -c --arg n "$FLOXY_STEP_NAME" '. + {($n): true}' <<<"$INPUT"
flows:
  - name: human_fork
    steps:
      - {name: a, handler: ok}
      - type: fork
        name: f
        branches:
          - [{type: human, name: approve}, {name: x, handler: ok}]
          - [{name: y, handler: ok}]
      - {name: z, handler: ok}
"""
    r = run_flow(yaml_text)
    assert r.code == 4, r.describe()
    assert r.step("approve")["status"] == "waiting_decision"
    assert not r.has_step("z")

    ledger.path.unlink()
    r = run_flow(yaml_text, "--decide", "approve=confirm")
    assert r.code == 0, r.describe()
    assert r.step("x")["input"] == {"a": True}  # the human step's input, passed on
    assert sorted(r.output["completed"]) == ["x", "y"]
    assert r.output["z"] is True
    assert [ln.split()[1] for ln in ledger.lines()].count("z") == 1


def test_the_most_workers_allowed_run(run_flow):
    r = run_flow(ONE, "-w", "256")
    assert r.code == 0, r.describe()
    assert r.status == "completed"


# --------------------------------------------------------------------------------------------
# Reference compatibility: what the reference silently accepted runs unchanged

UNKNOWN_STRATEGY = """
handlers:
  - name: flaky
    exec: |
      echo "flaky $FLOXY_RETRY_COUNT" >> "$LEDGER"
      [ "$FLOXY_RETRY_COUNT" -ge 2 ] || exit 1
      echo '{"ok": true}'
flows:
  - name: lenient
    steps:
      - {name: flaky, max_retries: 3, retry_delay: 100, retry_strategy: backoff}
"""


def test_unknown_retry_strategy_runs_as_fixed_with_a_warning(run_flow, ledger):
    r = run_flow(UNKNOWN_STRATEGY)
    assert r.code == 0, r.describe()
    assert r.output == {"ok": True}
    assert ledger.lines() == ["flaky 0", "flaky 1", "flaky 2"]
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert warnings == [
        f"floxyctl: warning: {r.yaml_path}:11:73: flows[0].steps[0].retry_strategy: "
        'unknown retry_strategy "backoff" is treated as fixed '
        "(expected fixed, linear or exponential)"
    ], r.stderr
    assert r.step("flaky")["retry_count"] == 2


EMPTY_EXPR = """
handlers:
  - name: big
    exec: |
      echo "big" >> "$LEDGER"
      echo '{}'
  - name: small
    exec: |
      echo "small" >> "$LEDGER"
      echo '{}'
flows:
  - name: reference_condition
    steps:
      - type: condition
        name: check
        expr: ""
        condition: "{{ gt .amount 100 }}"
        else: [small]
      - big
"""


@pytest.mark.parametrize(("amount", "ran"), [(500, "big"), (5, "small")])
def test_an_empty_expr_uses_the_condition_key(run_flow, ledger, amount, ran):
    r = run_flow(EMPTY_EXPR, input={"amount": amount})
    assert r.code == 0, r.describe()
    assert ledger.lines() == [ran]
    assert "warning" not in r.stderr
