"""`floxyctl run` end to end: rollback, compensations, savepoints, sibling stop, DLQ, timeouts."""

from __future__ import annotations

import json

from tests.e2e.conftest import pid_alive, wait_until

# A step handler and a compensation handler that record every call in the ledger:
#   step:  "<step> in=<input>"
#   comp:  "undo_<x> for=$FLOXY_STEP_NAME comp=$FLOXY_COMPENSATION in=<input>"


def _step(name: str, out: str = ". + {{done_{n}: true}}") -> str:
    jq = out.format(n=name)
    return f"""
  - name: {name}
    exec: |
      echo "{name} in=$INPUT" >> "$LEDGER"
      jq -c '{jq}' <<<"$INPUT"
"""


def _comp(name: str) -> str:
    return f"""
  - name: {name}
    exec: |
      echo "{name} for=$FLOXY_STEP_NAME comp=${{FLOXY_COMPENSATION-unset}} in=$INPUT" >> "$LEDGER"
      echo '{{"undone": "{name}"}}'
"""


FAIL = """
  - name: fail
    exec: |
      echo "fail in=$INPUT" >> "$LEDGER"
      echo "fail: out of stock" >&2
      exit 1
"""


def _ledger_input(line: str) -> object:
    return json.loads(line.split(" in=", 1)[1])


def _names(lines: list[str]) -> list[str]:
    return [ln.split()[0] for ln in lines]


def test_compensations_run_in_reverse_order_with_each_step_input(run_flow, ledger):
    handlers = "".join(_step(s) for s in ("s1", "s2", "s3")) + FAIL
    handlers += "".join(_comp(c) for c in ("undo_s1", "undo_s2", "undo_s3", "undo_fail"))
    r = run_flow(
        "handlers:"
        + handlers
        + """
flows:
  - name: saga
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: s2, on_failure: undo_s2}
      - {name: s3, on_failure: undo_s3}
      - {name: fail, on_failure: undo_fail, max_retries: 0}
""",
        input={"order": 1},
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    lines = ledger.lines()
    assert _names(lines) == ["s1", "s2", "s3", "fail", "undo_fail", "undo_s3", "undo_s2", "undo_s1"]
    comps = {ln.split()[0]: ln for ln in lines if ln.startswith("undo_")}
    for step in ("s1", "s2", "s3", "fail"):
        line = comps[f"undo_{step}"]
        assert f"for={step} " in line, line
        assert "comp=true" in line, line
        # a compensation receives the input of the step it undoes
        assert _ledger_input(line) == r.step(step)["input"], line
    assert _ledger_input(comps["undo_s1"]) == {"order": 1}
    assert _ledger_input(comps["undo_s3"]) == {"order": 1, "done_s1": True, "done_s2": True}
    # the failed step keeps its error text; completed steps end rolled back
    assert "out of stock" in (r.step("fail")["error"] or "")
    assert "out of stock" in r.doc["error"]
    for step in ("s1", "s2", "s3"):
        assert r.step(step)["status"] == "rolled_back", r.describe()
    assert r.doc["dlq"] == []


def test_steps_without_on_failure_are_rolled_back_without_a_call(run_flow, ledger):
    handlers = "".join(_step(s) for s in ("s1", "s2")) + FAIL + _comp("undo_s1")
    r = run_flow(
        "handlers:"
        + handlers
        + """
flows:
  - name: saga
    steps:
      - {name: s1, on_failure: undo_s1}
      - s2
      - {name: fail, max_retries: 0}
"""
    )
    assert r.code == 1, r.describe()
    assert _names(ledger.lines()) == ["s1", "s2", "fail", "undo_s1"]
    assert r.step("s2")["status"] == "rolled_back"
    assert r.step("s1")["status"] == "rolled_back"
    assert "out of stock" in (r.step("fail")["error"] or "")


def test_savepoint_stops_the_rollback(run_flow, ledger):
    handlers = "".join(_step(s) for s in ("s1", "s2", "s3")) + FAIL
    handlers += "".join(_comp(c) for c in ("undo_s1", "undo_s2", "undo_s3"))
    r = run_flow(
        "handlers:"
        + handlers
        + """
flows:
  - name: saga
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: s2, on_failure: undo_s2}
      - {type: savepoint, name: safe}
      - {name: s3, on_failure: undo_s3}
      - {name: fail, max_retries: 0}
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert _names(ledger.lines()) == ["s1", "s2", "s3", "fail", "undo_s3"]
    assert r.step("s1")["status"] == "completed"
    assert r.step("s2")["status"] == "completed"
    assert r.step("safe")["status"] == "completed"
    assert r.step("s3")["status"] == "rolled_back"


def test_rollback_compensates_only_the_executed_branch(run_flow, ledger):
    handlers = "".join(_step(s) for s in ("pre", "yes1", "no1")) + FAIL
    handlers += "".join(_comp(c) for c in ("undo_pre", "undo_yes1", "undo_no1"))
    flow = """
flows:
  - name: branchy
    steps:
      - {name: pre, on_failure: undo_pre}
      - type: condition
        name: which
        expr: "{{ eq .go \\"yes\\" }}"
        else:
          - {name: no1, on_failure: undo_no1}
          - {name: fail_no, handler: fail, max_retries: 0}
      - {name: yes1, on_failure: undo_yes1}
      - {name: fail_yes, handler: fail, max_retries: 0}
"""
    r = run_flow("handlers:" + handlers + flow, input={"go": "yes"})
    assert r.code == 1, r.describe()
    assert _names(ledger.lines()) == ["pre", "yes1", "fail", "undo_yes1", "undo_pre"]
    assert not r.has_step("no1")

    ledger.path.unlink()
    r = run_flow("handlers:" + handlers + flow, input={"go": "no"})
    assert r.code == 1, r.describe()
    assert _names(ledger.lines()) == ["pre", "no1", "fail", "undo_no1", "undo_pre"]
    assert not r.has_step("yes1")


PARALLEL_SAGA = (
    "handlers:"
    + "".join(_step(s) for s in ("pre", "ta", "tb"))
    + FAIL
    + "".join(_comp(c) for c in ("undo_pre", "undo_ta", "undo_tb"))
)


def test_failure_after_a_join_compensates_the_parallel_tasks(run_flow, ledger):
    r = run_flow(
        PARALLEL_SAGA
        + """
flows:
  - name: par_saga
    steps:
      - {name: pre, on_failure: undo_pre}
      - type: parallel
        name: both
        tasks:
          - {name: ta, on_failure: undo_ta}
          - {name: tb, on_failure: undo_tb}
      - {name: fail, max_retries: 0}
""",
        input={"x": 1},
    )
    assert r.code == 1, r.describe()
    names = _names(ledger.lines())
    undo = [n for n in names if n.startswith("undo_")]
    assert sorted(undo) == ["undo_pre", "undo_ta", "undo_tb"], ledger.lines()
    # the branch tasks are undone before the step that preceded the parallel
    assert undo[-1] == "undo_pre", undo
    assert r.step("ta")["status"] == "rolled_back"
    assert r.step("tb")["status"] == "rolled_back"
    assert r.step("pre")["status"] == "rolled_back"
    for line in ledger.lines():
        if line.startswith(("undo_ta", "undo_tb")):
            assert _ledger_input(line) == {"x": 1, "done_pre": True}, line


def test_failure_inside_a_branch_compensates_completed_siblings(run_flow, ledger):
    r = run_flow(
        PARALLEL_SAGA
        + """
  - name: slow_fail
    exec: |
      sleep 0.3
      echo "slow_fail in=$INPUT" >> "$LEDGER"
      echo "branch broke" >&2
      exit 1
flows:
  - name: par_saga
    steps:
      - {name: pre, on_failure: undo_pre}
      - type: parallel
        name: both
        tasks:
          - {name: ta, on_failure: undo_ta}
          - {name: slow_fail, max_retries: 0}
      - tb
""",
        input={"x": 2},
    )
    assert r.code == 1, r.describe()
    names = _names(ledger.lines())
    assert names[0] == "pre"
    assert names.index("ta") < names.index("slow_fail")
    assert [n for n in names if n.startswith("undo_")] == ["undo_ta", "undo_pre"], names
    assert "tb" not in names
    assert r.step("ta")["status"] == "rolled_back"
    assert "branch broke" in (r.step("slow_fail")["error"] or "")


def test_sibling_stop_interrupts_a_running_branch(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: quick_fail
    exec: |
      sleep 0.2
      echo "quick_fail" >> "$LEDGER"
      echo "branch broke" >&2
      exit 1
  - name: sleeper
    exec: |
      echo "sleeper started $$" >> "$LEDGER"
      sleep 5
      echo "sleeper finished" >> "$LEDGER"
      echo '{}'
  - name: after
    exec: |
      echo "after" >> "$LEDGER"
      echo '{}'
flows:
  - name: stop_siblings
    steps:
      - type: fork
        name: f
        branches:
          - [{name: quick_fail, max_retries: 0}]
          - [{name: sleeper, max_retries: 0}, after]
""",
        timeout=20,
    )
    assert r.code == 1, r.describe()
    assert r.elapsed < 4.0, r.describe()
    assert r.status == "failed"
    # sleeper's handler started (0.2 s before the failure): interrupted, then rolled back
    assert r.step("sleeper")["status"] == "rolled_back", r.describe()
    assert r.step("quick_fail")["status"] in {"failed", "rolled_back"}
    assert "branch broke" in (r.step("quick_fail")["error"] or "")
    assert "sleeper finished" not in ledger.lines()
    assert not r.has_step("after") or r.step("after")["status"] == "skipped"
    assert ledger.calls("after") == []
    # the interrupted bash process is gone
    started = ledger.calls("sleeper")
    assert started, ledger.lines()
    pid = int(started[0].split()[2])
    assert wait_until(lambda: not pid_alive(pid), timeout=3.0), f"sleeper pid {pid} still alive"


def test_sibling_stop_skips_pending_steps_of_a_parallel(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: quick_fail
    exec: |
      echo "quick_fail" >> "$LEDGER"
      exit 1
  - name: sleeper
    exec: |
      echo "sleeper started" >> "$LEDGER"
      sleep 5
      echo '{}'
flows:
  - name: stop_siblings
    steps:
      - type: parallel
        name: p
        tasks:
          - {name: quick_fail, max_retries: 0}
          - {name: sleeper, max_retries: 0}
          - {name: late, handler: sleeper, delay: 4s, max_retries: 0}
""",
        timeout=20,
    )
    assert r.code == 1, r.describe()
    assert r.elapsed < 4.0, r.describe()
    # sleeper is `skipped` only if its handler had not started when quick_fail failed
    started = "sleeper started" in ledger.lines()
    allowed = {"rolled_back"} if started else {"skipped", "rolled_back"}
    assert r.step("sleeper")["status"] in allowed, r.describe()
    assert r.step("late")["status"] == "skipped", r.describe()
    assert len(ledger.calls("sleeper")) <= 1  # `late` never started


def test_dlq_flow_pauses_instead_of_rolling_back(run_flow, ledger):
    r = run_flow(
        "handlers:"
        + _step("s1")
        + _comp("undo_s1")
        + """
  - name: fail
    exec: |
      echo "fail $FLOXY_RETRY_COUNT" >> "$LEDGER"
      echo "warehouse db refused" >&2
      exit 1
"""
        + _step("never")
        + """
flows:
  - name: dlq_flow
    dlq: true
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: fail, max_retries: 1, retry_delay: 10ms}
      - never
"""
    )
    assert r.code == 4, r.describe()
    assert r.status == "dlq"
    assert _names(ledger.lines()) == ["s1", "fail", "fail"]
    assert r.step("s1")["status"] == "completed"
    assert r.step("fail")["status"] == "paused"
    assert "warehouse db refused" in (r.step("fail")["error"] or "")
    assert "warehouse db refused" in (r.doc["error"] or "")
    assert len(r.doc["dlq"]) == 1, r.doc["dlq"]
    # the documented shape of the --output json document
    assert set(r.doc) == {
        "instance_id",
        "workflow_id",
        "status",
        "input",
        "output",
        "error",
        "steps",
        "events",
        "dlq",
        "retry_of",
        "retried_as",
    }
    assert r.doc["retry_of"] is None and r.doc["retried_as"] == []
    assert r.doc["workflow_id"] == "dlq_flow-v1"
    step_keys = {
        "name",
        "type",
        "status",
        "retry_count",
        "compensation_retry_count",
        "input",
        "output",
        "error",
        "started_at",
        "completed_at",
    }
    assert all(set(s) == step_keys for s in r.doc["steps"]), r.doc["steps"]
    assert [s["name"] for s in r.doc["steps"]] == ["s1", "fail"]  # in order of creation
    assert all(set(e) == {"type", "step", "payload", "at"} for e in r.doc["events"])
    assert set(r.doc["dlq"][0]) == {"id", "step", "error", "reason"}
    rec = r.doc["dlq"][0]
    assert rec["step"] == "fail"
    assert "warehouse db refused" in rec["error"]
    assert not r.has_step("never")


def test_compensation_exhaustion_goes_to_the_dlq(run_flow, ledger):
    r = run_flow(
        "handlers:"
        + _step("s1")
        + _step("s2")
        + _comp("undo_s1")
        + """
  - name: undo_s2
    exec: |
      echo "undo_s2 retry=$FLOXY_RETRY_COUNT for=$FLOXY_STEP_NAME" >> "$LEDGER"
      echo "refund api down" >&2
      exit 1
"""
        + FAIL
        + """
flows:
  - name: comp_dlq
    steps:
      - {name: s1, on_failure: undo_s1}
      - name: s2
        on_failure: {handler: undo_s2, max_retries: 1, retry_delay: 10ms}
      - {name: fail, max_retries: 0}
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    names = _names(ledger.lines())
    assert names[:3] == ["s1", "s2", "fail"]
    assert ledger.calls("undo_s2") == [
        "undo_s2 retry=0 for=s2",
        "undo_s2 retry=1 for=s2",
    ], ledger.lines()
    # the rollback goes on with the next step after the exhausted compensation
    assert names.count("undo_s1") == 1
    assert names.index("undo_s1") > max(i for i, n in enumerate(names) if n == "undo_s2")
    assert r.step("s2")["status"] == "failed"
    recs = [d for d in r.doc["dlq"] if d["step"] == "s2"]
    assert len(recs) == 1, r.doc["dlq"]
    assert recs[0]["reason"] == "compensation max retries exceeded"


def test_timeout_kills_the_process_group_and_fails_fast(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: hang
    exec: |
      trap '' TERM INT HUP
      sleep 5 &
      echo "hang $$ $!" >> "$LEDGER"
      wait || true
      wait || true
      echo '{}'
flows:
  - name: to
    steps:
      - name: hang
        timeout: 300ms
        max_retries: 0
""",
        timeout=20,
    )
    assert r.code == 1, r.describe()
    assert r.elapsed < 3.0, r.describe()
    assert r.status == "failed"
    assert "timeout" in r.doc["error"].lower() or "timed out" in r.doc["error"].lower(), r.doc
    line = ledger.calls("hang")
    assert len(line) == 1
    shell_pid, child_pid = (int(x) for x in line[0].split()[1:3])
    assert wait_until(lambda: not pid_alive(child_pid), timeout=2.0), "grandchild sleep survived"
    assert wait_until(lambda: not pid_alive(shell_pid), timeout=2.0), "bash survived"


def test_timeout_is_retried_like_any_failure(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: slow_then_fast
    exec: |
      echo "try $FLOXY_RETRY_COUNT" >> "$LEDGER"
      if [ "$FLOXY_RETRY_COUNT" = 0 ]; then sleep 5; fi
      echo '{"ok": true}'
flows:
  - name: to
    steps:
      - name: slow_then_fast
        timeout: 300ms
        max_retries: 1
        retry_delay: 10ms
""",
        timeout=20,
    )
    assert r.code == 0, r.describe()
    assert r.elapsed < 3.0, r.describe()
    assert ledger.lines() == ["try 0", "try 1"]
    assert r.output == {"ok": True}


def test_compensation_mapping_timeout_bounds_each_call(run_flow, ledger):
    r = run_flow(
        "handlers:"
        + _step("s1")
        + """
  - name: hang_undo
    exec: |
      echo "hang_undo $FLOXY_RETRY_COUNT" >> "$LEDGER"
      sleep 5
      echo '{}'
"""
        + FAIL
        + """
flows:
  - name: comp_timeout
    steps:
      - name: s1
        on_failure: {handler: hang_undo, max_retries: 1, timeout: 200ms, retry_delay: 10ms}
      - {name: fail, max_retries: 0}
""",
        timeout=20,
    )
    assert r.code == 1, r.describe()
    assert r.elapsed < 4.0, r.describe()
    assert ledger.calls("hang_undo") == ["hang_undo 0", "hang_undo 1"]
    assert [d["reason"] for d in r.doc["dlq"]] == ["compensation max retries exceeded"]
    assert r.doc["dlq"][0]["step"] == "s1"


def test_compensations_run_one_at_a_time(run_flow, ledger):
    """With several workers, each compensation finishes before the next one starts."""
    comp = """
  - name: {n}
    exec: |
      echo "{n} start" >> "$LEDGER"
      sleep 0.15
      echo "{n} end" >> "$LEDGER"
      echo '{{}}'
"""
    r = run_flow(
        "handlers:"
        + "".join(_step(s) for s in ("s1", "s2", "s3"))
        + FAIL
        + "".join(comp.format(n=f"undo_{s}") for s in ("s1", "s2", "s3"))
        + """
flows:
  - name: saga
    steps:
      - {name: s1, on_failure: undo_s1}
      - {name: s2, on_failure: undo_s2}
      - {name: s3, on_failure: undo_s3}
      - {name: fail, max_retries: 0}
""",
        "--workers",
        "4",
    )
    assert r.code == 1, r.describe()
    undo = [ln for ln in ledger.lines() if ln.startswith("undo_")]
    assert undo == [
        "undo_s3 start",
        "undo_s3 end",
        "undo_s2 start",
        "undo_s2 end",
        "undo_s1 start",
        "undo_s1 end",
    ]


NESTED = """
handlers:
  - name: ok
    exec: |
      case "$FLOXY_STEP_NAME" in i2) sleep 0.15 ;; o2) sleep 0.6 ;; esac
      echo "ok $FLOXY_STEP_NAME" >> "$LEDGER"
      jq -c --arg n "$FLOXY_STEP_NAME" '{($n): true}' <<<"$INPUT"
  - name: undo
    exec: |
      echo "undo $FLOXY_STEP_NAME comp=$FLOXY_COMPENSATION" >> "$LEDGER"
      echo '{}'
  - name: bad
    exec: |
      sleep 0.2
      echo "bad $FLOXY_STEP_NAME" >> "$LEDGER"
      exit 1
"""


def test_nested_forks_are_compensated_in_reverse_completion_order(run_flow, ledger):
    r = run_flow(
        NESTED
        + """
flows:
  - name: nest
    steps:
      - type: fork
        name: outer
        branches:
          - - type: fork
              name: inner
              branches:
                - [{name: i1, handler: ok, on_failure: undo}]
                - [{name: i2, handler: ok, on_failure: undo}]
            - {name: after_inner, handler: ok, on_failure: undo}
          - [{name: o2, handler: ok, on_failure: undo}]
      - {name: last, handler: bad, max_retries: 0}
"""
    )
    assert r.code == 1, r.describe()
    # staggered so that the completion order is i1, i2, after_inner, o2
    done = [ln.split()[1] for ln in ledger.calls("ok")]
    assert done == ["i1", "i2", "after_inner", "o2"], ledger.lines()
    undone = [ln.split()[1] for ln in ledger.calls("undo")]
    assert undone == ["o2", "after_inner", "i2", "i1"], ledger.lines()
    assert all(ln.endswith("comp=true") for ln in ledger.calls("undo"))
    assert all(s["status"] == "rolled_back" for s in r.doc["steps"]), r.describe()


def test_a_failed_parallel_task_runs_its_own_compensation_first(run_flow, ledger):
    """`b` fails only once `t` has completed (a sleep would not hold on a loaded machine; a `t`
    that never started is skipped, not compensated, and this test is about the order)."""
    r = run_flow(
        NESTED
        + """
  - name: bad_after_t
    exec: |
      until grep -q "^ok t$" "$LEDGER"; do sleep 0.01; done
      echo "bad $FLOXY_STEP_NAME" >> "$LEDGER"
      exit 1
flows:
  - name: par
    steps:
      - {name: pre, handler: ok, on_failure: undo}
      - type: parallel
        name: p
        tasks:
          - {name: b, handler: bad_after_t, max_retries: 0, on_failure: undo}
          - {name: t, handler: ok, on_failure: undo}
"""
    )
    assert r.code == 1, r.describe()
    assert [ln.split()[1] for ln in ledger.calls("undo")] == ["b", "t", "pre"], ledger.lines()
