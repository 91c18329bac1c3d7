"""An idempotency key given to a start names one instance, however often and however
concurrently the start is repeated; the same on both stores."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from floxy_core.builder import Builder
from floxy_core.errors import KeyTaken


def test_a_repeated_key_starts_nothing(harness: Any) -> None:
    h = harness(["ok"])
    flow = Builder("keyed").step("ok").build()
    h.runtime.register(flow)
    first = h.runtime.launch(flow.id, {"n": 1}, idempotency_key="order-7")
    again = h.runtime.launch("keyed", {"n": 2}, idempotency_key="order-7")  # by name
    other = h.runtime.launch(flow.id, {"n": 3}, idempotency_key="order-8")
    plain = h.runtime.start_instance(flow.id, {"n": 4})
    assert first.created and not again.created and other.created
    assert again.instance_id == first.instance_id
    assert len({first.instance_id, other.instance_id, plain}) == 3
    assert h.store.get_instance(first.instance_id).input == {"n": 1}
    page, _ = h.store.list_instances_page()
    assert len(page) == 3


def test_a_key_of_another_workflow_is_refused(harness: Any) -> None:
    h = harness(["ok"])
    a, b = Builder("a").step("ok").build(), Builder("b").step("ok").build()
    h.runtime.register(a)
    h.runtime.register(b)
    started = h.runtime.start_instance(a.id, {}, idempotency_key="k")
    with pytest.raises(KeyTaken, match=f"'k' already started instance {started} of a-v1"):
        h.runtime.launch(b.id, {}, idempotency_key="k")


def test_concurrent_starts_with_one_key_create_one_instance(harness: Any) -> None:
    h = harness(["ok"])
    flow = Builder("race").step("ok").build()
    h.runtime.register(flow)
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        results.append(h.runtime.launch(flow.id, {}, idempotency_key="once"))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert len({r.instance_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(h.store.list_instances_page()[0]) == 1
