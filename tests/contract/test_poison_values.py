"""Poison values never loop (issue 13), on both stores alike.

A handler result the stores cannot keep fails the attempt with its JSON path and is retried like
any failure, so a handler is called at most `max_retries + 1` times; what they can keep (after
the replacements DECISIONS.md names) reaches the next step exactly. Waits a callee asks for are
bounded: `Retry-After: 1e20` parks a step for an hour, not forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from floxy_core.builder import Builder, Options
from floxy_core.durations import RETRY_AFTER_CAP_MS
from floxy_core.handlers.http import HttpHandler
from floxy_core.status import InstanceStatus, StepStatus
from tests.contract.harness import Harness

Make = Callable[..., Harness]


def flow(max_retries: int = 2, **options: Any) -> Any:
    return (
        Builder("poison")
        .step("emit", options=Options(max_retries=max_retries, **options))
        .step("next", options=Options(max_retries=0))
        .build()
    )


@pytest.mark.parametrize(
    ("result", "path", "what"),
    [
        ({"items": [{"name": "a\x00b"}]}, "$.items[0].name", "NUL"),
        ({"k\x00": 1}, '$["k\\u0000"]', "NUL"),
        ({"x": float("nan")}, "$.x", "not a JSON number"),
        ({"x": float("inf")}, "$.x", "not a JSON number"),
        ({"x": Decimal("1e200000")}, "$.x", "too large"),
        ({"when": object()}, "$.when", "not a JSON value"),
    ],
)
def test_an_unstorable_result_fails_the_attempt_and_is_retried_a_bounded_number_of_times(
    harness: Make, result: Any, path: str, what: str
) -> None:
    h = harness(["emit", "next"])
    h.handlers.add("emit", lambda ctx, data: result)
    instance_id = h.run(flow(max_retries=2))
    assert h.status(instance_id) is InstanceStatus.FAILED
    emit = h.steps(instance_id)["emit"]
    assert emit.status in (StepStatus.FAILED, StepStatus.ROLLED_BACK)
    assert emit.error is not None and path in emit.error and what in emit.error, emit.error
    assert h.handlers.order() == ["emit"] * 3  # max_retries + 1 calls, never `next`


def test_what_the_stores_can_keep_reaches_the_next_step_exactly(harness: Make) -> None:
    h = harness(["emit", "next"])
    sent = {
        "huge": Decimal("1E+400"),
        "tiny": Decimal("1E-400"),
        "int": 2**70 + 1,
        "text": "a\ud800b",
        "pair": "\ud83d\ude80",
    }
    h.handlers.add("emit", lambda ctx, data: sent)
    instance_id = h.run(flow())
    assert h.status(instance_id) is InstanceStatus.COMPLETED
    received = h.handlers.calls[-1].input
    assert {k: received[k] for k in ("huge", "tiny", "int")} == {
        "huge": Decimal("1e400"),
        "tiny": Decimal("1e-400"),
        "int": 2**70 + 1,
    }
    assert received["text"] == "a\ufffdb" and received["pair"] == "\U0001f680"
    assert h.store.get_instance(instance_id).output == {**received, "next": True}


def test_an_error_message_the_store_cannot_keep_is_made_storable(harness: Make) -> None:
    from floxy_core.errors import HandlerError

    def fail(ctx: Any, data: Any) -> Any:
        raise HandlerError("bad\x00 byte and \udc00 half", retryable=False)

    h = harness(["emit", "next"])
    h.handlers.add("emit", fail)
    instance_id = h.run(flow())
    assert h.status(instance_id) is InstanceStatus.FAILED
    assert h.steps(instance_id)["emit"].error == "bad\ufffd byte and \ufffd half"


@pytest.fixture
def unavailable() -> Iterator[str]:
    """An HTTP server that answers every POST `503` with `Retry-After: 1e20`."""

    class Reply(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b'{"error": "busy"}'
            self.send_response(503)
            self.send_header("Retry-After", "1e20")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/busy"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("max_delay_ms", "waited_ms"), [(None, RETRY_AFTER_CAP_MS), (5000, 5000)])
def test_retry_after_is_capped_even_without_retry_max_delay(
    harness: Make, unavailable: str, max_delay_ms: int | None, waited_ms: int
) -> None:
    h = harness(["emit", "next"])
    http = HttpHandler("emit", unavailable)
    try:
        h.handlers.add("emit", http)
        definition = flow(max_retries=1, retry_max_delay_ms=max_delay_ms)
        instance_id = h.start(definition)
        started = h.clock.now()
        assert h.runtime.run_once("w1")
        due = h.store.next_due()
        assert due is not None and abs(due - started - waited_ms / 1000) < 1.0
        h.drain()
    finally:
        http.close()
    assert h.status(instance_id) is InstanceStatus.FAILED
    assert h.handlers.order() == ["emit", "emit"]
