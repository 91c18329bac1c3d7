"""Every contract test runs against the in-memory store and against PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from floxy_core.storage.memory import MemoryStore
from tests.contract import harness as harness_module
from tests.pgcluster import Cluster


@pytest.fixture(params=["memory", "postgres"])
def store_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], Any]]:
    created: list[Any] = []
    if request.param == "memory":
        yield lambda: MemoryStore(seed=7)
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    dsns: list[str] = []

    def make() -> Any:
        from floxy_core.storage.postgres import PostgresStore

        dsn = cluster.create_database()
        dsns.append(dsn)
        store = PostgresStore(dsn, seed=7, max_size=4, clock="caller")  # the fake clock
        created.append(store)
        return store

    yield make
    for store in created:
        store.close()
    for dsn in dsns:
        cluster.drop_database(dsn)


@pytest.fixture
def harness(store_factory: Callable[[], Any]) -> Callable[..., harness_module.Harness]:
    def make(names: list[str], *, handlers: list[str] | None = None) -> harness_module.Harness:
        return harness_module.harness(names, handlers=handlers, store=store_factory())

    return make
