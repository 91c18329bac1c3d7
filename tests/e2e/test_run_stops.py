"""`floxyctl run`: a step whose handler started is compensated when a stop meets its call.

Deterministic: the failing sibling waits in bash for the other task to have started (the
ledger), so the stop always meets a running call; nothing depends on a sleep being long enough.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BLOCKS = {
    "parallel": """
      - type: parallel
        name: blk
        tasks:
          - {name: ta, on_failure: u}
          - {name: tb}
""",
    "fork-all": """
      - type: fork
        name: blk
        branches:
          - [{name: ta, on_failure: u}]
          - [{name: tb}]
        join: {name: blk_join, strategy: all}
""",
}

TB = """
  - name: tb
    exec: |
      until grep -q "^ta started" "$LEDGER"; do sleep 0.01; done
      echo "tb failed $$" >> "$LEDGER"
      exit 1
  - name: u
    exec: |
      pid=$(grep "^ta started" "$LEDGER" | cut -d' ' -f3)
      state=gone
      if [ "$pid" != http ]; then  # a zombie runs nothing: only a running process is alive
        run=$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null || true)
        if [ -n "$run" ] && [ "$run" != Z ]; then state=alive; fi
      fi
      echo "u for=$FLOXY_STEP_NAME ta=$state" >> "$LEDGER"
      echo '{}'
"""


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_a_sibling_failure_compensates_the_task_it_interrupted(run_flow, ledger, block):
    r = run_flow(
        f"""
handlers:
  - name: ta
    exec: |
      echo "ta started $$" >> "$LEDGER"
      sleep 30
      echo '{{}}'
{TB}
flows:
  - name: stop
    max_retries: 0
    steps:
{BLOCKS[block]}
""",
        timeout=30,
    )
    assert r.code == 1, r.describe()
    assert r.elapsed < 10, r.describe()
    assert ledger.calls("u") == ["u for=ta ta=gone"], ledger.lines()
    ta = r.step("ta")
    assert ta["status"] == "rolled_back", r.describe()
    assert ta["error"].startswith("interrupted: "), r.describe()
    assert r.step("tb")["status"] == "rolled_back" and r.step("tb")["error"]
    assert [e["step"] for e in r.events("step_interrupted")] == ["ta"]
    assert len(r.events("workflow_failed")) == 1


class _Held(BaseHTTPRequestHandler):
    """Answers after tb failed: the result arrives after the stop.

    "After" needs care. Answering as soon as tb wrote its line raced with the engine (seen in CI
    under load): the answer could come before the engine had collected tb's exit, and ta then
    rightly completed before the stop (and was compensated as a completed step). Nothing outside
    an in-memory run shows when the engine applied tb's failure, so the server waits until tb's
    process is gone and then gives the engine half a second to apply its exit status."""

    ledger: Path

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.ledger.open("a") as f:
            f.write("ta started http\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines = self.ledger.read_text().splitlines()
            failed = [line.split()[2] for line in lines if line.startswith("tb failed")]
            if failed and not Path(f"/proc/{failed[0]}").exists():  # reaped by the engine
                time.sleep(0.5)
                break
            time.sleep(0.01)
        body = b'{"charged": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def held_server(ledger) -> Iterator[str]:
    handler = type("Held", (_Held,), {"ledger": Path(str(ledger))})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/charge"
    httpd.shutdown()
    httpd.server_close()


def test_an_http_result_after_the_sibling_failed_is_compensated(run_flow, ledger, held_server):
    r = run_flow(
        f"""
handlers:
  - name: ta
    type: http
    exec: {held_server}
{TB}
flows:
  - name: stop
    max_retries: 0
    steps:
{BLOCKS["parallel"]}
""",
        timeout=30,
    )
    assert r.code == 1, r.describe()
    assert ledger.calls("u") == ["u for=ta ta=gone"], ledger.lines()
    assert r.step("ta")["status"] == "rolled_back", r.describe()
    (ended,) = r.events("interrupted_call_ended")
    assert ended["step"] == "ta" and ended["payload"]["result"] == "completed"
    # the compensation was queued only once the call had ended
    kinds = [(e["type"], e["payload"].get("reason")) for e in r.events() if e["step"] == "ta"]
    assert kinds.index(("interrupted_call_ended", None)) < kinds.index(
        ("step_started", "compensation")
    ), kinds


def test_status_output_tells_interrupted_failed_and_rolled_back_apart(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: ta
    exec: |
      echo "ta started $$" >> "$LEDGER"
      sleep 30
      echo '{}'
  - name: tb
    exec: |
      until grep -q "^ta started" "$LEDGER"; do sleep 0.01; done
      exit 1
flows:
  - name: stop
    max_retries: 0
    steps:
      - type: parallel
        name: blk
        tasks: [ta, tb]
""",
        json_output=False,
        timeout=30,
    )
    assert r.code == 1, r.describe()
    lines = {ln.split()[1]: ln for ln in r.stdout.splitlines() if ln.startswith("  ")}
    assert "interrupted, nothing to undo" in lines["ta"], r.stdout
    assert "error: interrupted: " in lines["ta"], r.stdout
    assert "failed, nothing to undo" in lines["tb"], r.stdout
    assert "error: script exited with code 1" in lines["tb"]
