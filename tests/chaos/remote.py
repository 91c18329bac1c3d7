"""The chaos run's HTTP service: plays the same failure plan as `work.sh`, for `http` handlers.

It runs in the driver process, so its ledger lines are on the driver's clock. A daemon names
itself in the URL (`/call/${CHAOS_INC}`, expanded by the HTTP handler from the daemon's
environment), so each line lands in the ledger of the daemon incarnation that made the call, as
`work.sh`'s do. Like a real service, it finishes a call whatever becomes of the client: a
SIGKILLed or frozen daemon's request runs to its planned end, which is what "a compensation
starts only after the call it undoes has ended" has to cope with.

A planned failure takes one of the shapes a broken service gives, all of which a retry may cure:
HTTP 500, HTTP 503 with `Retry-After: 0`, a 200 whose body is not JSON, a 200 with an empty
body, or the connection closed without an answer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAILURES = ("500", "503", "garbage", "empty", "hangup")


def plan_of(data: Any) -> dict[str, Any]:
    """The plan in a step's input: its own, or after a join the first branch output's."""
    if isinstance(data, dict):
        if isinstance(data.get("plan"), dict):
            return data["plan"]
        outputs = data.get("outputs")
        if isinstance(outputs, dict):
            for value in outputs.values():
                if isinstance(value, dict) and isinstance(value.get("plan"), dict):
                    return value["plan"]
    return {}


def pause_of(plan: dict[str, Any], key: str) -> float:
    """Seconds a call takes: the plan's `slow` entry, `slow_comp` for compensations, `sleep`."""
    slow = plan.get("slow") or {}
    if key in slow:
        return float(slow[key])
    if key.startswith("comp:") and plan.get("slow_comp") is not None:
        return float(plan["slow_comp"])
    return float(plan.get("sleep", 0.1))


class Remote:
    """A threaded local HTTP server whose calls write the daemons' ledgers."""

    def __init__(self, ledger_of: Callable[[str], Path | None]) -> None:
        self.ledger_of = ledger_of
        """Incarnation name (`slot-gen`) → its HTTP ledger file."""
        self.calls = 0
        self.unknown = 0
        """Requests naming no known daemon incarnation (a bug of the run, reported)."""
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _line(self, ledger: Path, phase: str, call: str, meta: dict[str, Any], comp: bool) -> None:
        text = (
            f"{time.time():.6f} {phase} {call} {meta.get('instance_id')} {meta.get('step_name')} "
            f"{meta.get('idempotency_key')} {meta.get('retry_count')} "
            f"{'true' if comp else 'false'} 0\n"
        )
        with self._lock, ledger.open("a") as out:
            out.write(text)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        remote = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                ledger = remote.ledger_of(self.path.rsplit("/", 1)[-1])
                if ledger is None:
                    remote.unknown += 1
                    self._answer(404, b'{"error": "unknown daemon"}')
                    return
                meta = body.get("metadata") or {}
                comp = meta.get("reason") == "compensation"
                step = str(meta.get("step_name"))
                key = f"comp:{step}" if comp else step
                plan = plan_of(body.get("data"))
                attempt = int(meta.get("retry_count") or 0)
                call = f"h{next(remote._ids)}"
                remote.calls += 1
                remote._line(ledger, "start", call, meta, comp)
                time.sleep(pause_of(plan, key))
                if attempt < int((plan.get("fail") or {}).get(key, 0)):
                    remote._line(ledger, "fail", call, meta, comp)
                    self._fail(FAILURES[(int(meta.get("instance_id") or 0) + attempt) % 5])
                    return
                remote._line(ledger, "ok", call, meta, comp)
                output = {
                    "plan": plan,
                    "route": plan.get("route", 0),
                    "step": step,
                    "key": meta.get("idempotency_key"),
                    "attempt": attempt,
                    "call": call,
                    "comp": comp,
                }
                self._answer(200, json.dumps(output).encode())

            def _fail(self, how: str) -> None:
                if how == "500":
                    self._answer(500, b'{"error": "planned failure"}')
                elif how == "503":
                    self._answer(503, b"busy", {"Retry-After": "0"})
                elif how == "garbage":
                    self._answer(200, b"<html>not json</html>")
                elif how == "empty":
                    self._answer(200, b"")
                else:
                    self.close_connection = True
                    self.connection.close()

            def _answer(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the daemon that asked is gone (killed): the call still happened

        return Handler
