"""HTTP handler hardening against real local servers (issue 13): a wall-clock deadline for the
whole call, `${NAME}` references expanded at call time and never shown."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from floxy_core.errors import HandlerError, HandlerTimeout
from floxy_core.handlers.http import HttpHandler
from tests.support import step_context as ctx

TRICKLE_FOR_S = 15.0
"""How long the slow server keeps trickling: far past the timeout, short enough for old code."""


@contextlib.contextmanager
def trickling_server(head: bytes, every_s: float = 0.2) -> Iterator[int]:
    """Accepts, reads the request, sends `head`, then one more header byte every `every_s`."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                conn.sendall(head)
                end = time.monotonic() + TRICKLE_FOR_S
                while not stop.is_set() and time.monotonic() < end:
                    conn.sendall(b"x")
                    stop.wait(every_s)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: ", id="headers"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            id="body",
        ),
    ],
)
def test_a_trickling_server_cannot_outlast_the_timeout(head: bytes) -> None:
    """Each byte arrives well within the per-read timeout; the call as a whole must still end
    at its 2 s deadline (it took 20 s and more: as long as the server cared to trickle)."""
    with trickling_server(head) as port, HttpHandler("h", f"http://127.0.0.1:{port}/") as h:
        started = time.monotonic()
        with pytest.raises(HandlerTimeout, match="timed out after 2s"):
            h(ctx(timeout_s=2.0), {})
        elapsed = time.monotonic() - started
    assert elapsed < 2.0 + 1.5, f"the call took {elapsed:.1f}s with a 2s timeout"


def test_two_trickling_calls_in_parallel_each_end_at_their_deadline() -> None:
    """Two worker threads of one daemon share the handler (and its pool): each has its own."""
    took: dict[float, float] = {}
    with (
        trickling_server(b"HTTP/1.1 200 OK\r\nX-Slow: ") as port,
        HttpHandler("h", f"http://127.0.0.1:{port}/") as h,
    ):

        def call(timeout: float) -> None:
            started = time.monotonic()
            with contextlib.suppress(HandlerTimeout):
                h(ctx(timeout_s=timeout), {})
            took[timeout] = time.monotonic() - started

        threads = [threading.Thread(target=call, args=(t,)) for t in (1.0, 3.0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TRICKLE_FOR_S + 5)
    assert took[1.0] < 1.0 + 1.5 and 3.0 <= took[3.0] < 3.0 + 1.5, took


class _JsonServer:
    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append({"path": self.path, "body": json.loads(body)})
                reply = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_url_references_are_expanded_at_call_time_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = _JsonServer()
    try:
        url = "http://svc:${SEC_TEST_TOKEN}@127.0.0.1:" + str(server.port) + "/${SEC_TEST_PATH}"
        lines: list[str] = []
        handler = HttpHandler("h", url, debug_log=lines.append)
        meta = {"exec": url}
        with pytest.raises(HandlerError, match=r"\$\{SEC_TEST_TOKEN\}, which is not set") as info:
            handler(ctx(metadata=meta), {})
        assert not info.value.retryable
        monkeypatch.setenv("SEC_TEST_TOKEN", "tok-123")
        monkeypatch.setenv("SEC_TEST_PATH", "orders")
        assert handler(ctx(metadata=meta, debug=True), {}) == {"ok": True}
        monkeypatch.setenv("SEC_TEST_PATH", "refunds")  # read per call, not at start-up
        assert handler(ctx(metadata=meta), {}) == {"ok": True}
        assert [b["path"] for b in server.bodies] == ["/orders", "/refunds"]
        assert "tok-123" not in json.dumps(server.bodies)
        assert server.bodies[0]["body"]["metadata"]["exec"] == url.replace(
            "${SEC_TEST_TOKEN}", "***"
        )
        assert lines and not [line for line in lines if "tok-123" in line], lines
        assert "tok-123" not in repr(handler)
        handler.close()
    finally:
        server.close()
