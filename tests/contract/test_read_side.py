"""The Store port's read side (what `floxyctl status`, `workflows` and `dlq delete` use), the
same on both stores: pages of instances with filters, the counts, definitions, DLQ clean-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from floxy_core.builder import Builder, Options
from floxy_core.errors import NotFoundError


def test_pages_filters_and_counts(harness: Any) -> None:
    h = harness(["ok", "bad"])
    h.handlers.failing("bad")
    done = h.run(Builder("done").step("ok").build())
    broken = h.run(Builder("broken").step("bad", options=Options(max_retries=0)).build())
    waiting = h.run(Builder("gate").step("ok").wait_human_confirm("approve").build())
    store = h.store

    page, more = store.list_instances_page()
    assert [(x.instance.id, x.shown) for x in page] == [
        (waiting, "waiting"),
        (broken, "failed"),
        (done, "completed"),
    ]
    assert not more and page[0].waiting == ("approve",)
    assert [x.instance.id for x in store.list_instances_page(status="waiting")[0]] == [waiting]
    assert store.list_instances_page(status="running")[0] == []
    assert [x.instance.id for x in store.list_instances_page(workflow_ids=["done-v1"])[0]] == [done]
    first, more = store.list_instances_page(limit=2)
    assert [x.instance.id for x in first] == [waiting, broken] and more
    last, more = store.list_instances_page(limit=2, offset=2)
    assert [x.instance.id for x in last] == [done] and not more
    assert len(store.list_instances_page(since=timedelta(hours=1))[0]) == 3
    assert store.list_instances_page(until=timedelta(hours=1))[0] == []

    assert store.listing_stats() == {
        "total": 3,
        "completed": 1,
        "failed": 1,
        "running": 0,
        "waiting": 1,
        "pending": 0,
        "active": 1,
    }
    if hasattr(store, "active_instances"):  # floxyd's statistics, PostgreSQL only
        from floxyd.stats import take_snapshot

        snapshot = take_snapshot(store)
        assert snapshot.counts["running"] == 1 and "waiting" not in snapshot.counts
        assert [a.id for a in snapshot.active] == [waiting]


def test_definitions_by_name_newest_version_first(harness: Any) -> None:
    h = harness(["ok"])
    for name, version in (("b", 1), ("a", 1), ("a", 2)):
        h.store.save_definition(Builder(name, version=version).step("ok").build())
    assert [(i, n, v) for i, n, v, _ in h.store.list_definitions()] == [
        ("a-v2", "a", 2),
        ("a-v1", "a", 1),
        ("b-v1", "b", 1),
    ]


def test_a_dlq_record_is_deleted_once(harness: Any) -> None:
    h = harness(["bad"])
    h.handlers.failing("bad")
    parked = h.run(Builder("p", dlq=True).step("bad", options=Options(max_retries=0)).build())
    (record,) = h.store.get_dlq(parked)
    h.store.delete_dlq(record.id)
    assert h.store.get_dlq(parked) == []
    with pytest.raises(NotFoundError, match=f"DLQ record {record.id} not found"):
        h.store.delete_dlq(record.id)
