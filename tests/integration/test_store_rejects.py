"""A result PostgreSQL refuses for a data reason fails the attempt; it is never an outage.

`values.storable` catches what the store cannot keep before the write; these tests switch that
check off to prove the second line: the real database refuses the write (SQLSTATE 22xxx), and
the runtime records a failed attempt, retried like any failure, instead of calling the handler
again every lease with `retry_count` stuck at 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from floxy_core import runtime as runtime_module
from floxy_core.builder import Builder, Options
from floxy_core.status import InstanceStatus
from floxy_core.storage.postgres import PostgresStore
from tests.contract.harness import Harness, harness


@pytest.fixture
def pg(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(runtime_module.values, "storable", lambda value, **_: value)
    store = PostgresStore(pg_dsn, seed=7, max_size=2)
    try:
        yield harness(["emit", "next"], store=store)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("result", "sqlstate_words"),
    [
        ({"s": "a\x00b"}, "Unicode escape"),
        ({"n": Decimal("1e200000")}, "numeric"),
    ],
)
def test_a_result_the_database_refuses_fails_the_attempt_and_is_retried(
    pg: Harness, result: Any, sqlstate_words: str
) -> None:
    pg.handlers.add("emit", lambda ctx, data: result)
    definition = (
        Builder("refused")
        .step("emit", options=Options(max_retries=2))
        .step("next", options=Options(max_retries=0))
        .build()
    )
    instance_id = pg.run(definition)
    assert pg.status(instance_id) is InstanceStatus.FAILED
    assert pg.handlers.order() == ["emit"] * 3  # max_retries + 1, then no more
    error = pg.steps(instance_id)["emit"].error or ""
    assert error.startswith("the result could not be stored: the database refused the data")
    assert sqlstate_words in error
