"""Small helpers the test modules share: a free local port, polling with a deadline, and the
context a handler is called with."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    import pytest  # here, so that the benchmarks can use this module's free_port without pytest

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def step_context(**overrides: Any) -> Any:
    """A handler's `StepContext` for instance 1 of `f-v1`, step `s`; `overrides` replace fields."""
    from floxy_core.ports import StepContext

    fields: dict[str, Any] = {
        "instance_id": 1,
        "workflow_id": "f-v1",
        "step_name": "s",
        "idempotency_key": "k",
        "retry_count": 0,
    }
    fields.update(overrides)
    return StepContext(**fields)
