"""`floxyctl retry`, end to end: a real floxyctl against a real PostgreSQL, steps run by an
in-process worker on the same database (what floxyd would do)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from floxy_core.errors import HandlerError
from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.test_db_cli import Py, as_json, drive, floxyctl, ok, registered_database, usage_error
from tests.pgcluster import Cluster

FLOWS = """\
handlers:
  - {name: reserve, exec: "echo '{}'"}
  - {name: release, exec: "echo '{}'"}
  - {name: ship, exec: "echo '{}'"}
flows:
  - name: order
    max_retries: 0
    steps:
      - {name: reserve, handler: reserve, on_failure: release}
      - {type: savepoint, name: reserved}
      - {name: ship, handler: ship}
"""


@pytest.fixture(scope="module")
def db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from registered_database(pg_cluster, tmp_path_factory, FLOWS)


class Shop:
    """The order flow's handlers; `ship` fails while `broken`."""

    def __init__(self, store: PostgresStore) -> None:
        self.broken = True
        self.calls: list[str] = []
        self.runtime = Runtime(
            store,
            {
                "reserve": Py("reserve", self._step("reserve")),
                "release": Py("release", self._step("release")),
                "ship": Py("ship", self._step("ship")),
            },
        )

    def _step(self, name: str) -> Any:
        def call(ctx: StepContext, data: Any) -> Any:
            self.calls.append(name)
            if name == "ship" and self.broken:
                raise HandlerError("carrier down")
            return {**(data or {}), name: True}

        return call

    def settle(self, instance_id: int) -> None:
        store = self.runtime.store
        drive(self.runtime, instance_id, lambda: store.get_instance(instance_id).status.terminal)


@pytest.fixture
def shop(db: str) -> Iterator[Shop]:
    store = PostgresStore(db, max_size=2)
    try:
        yield Shop(store)
    finally:
        store.close()


def _failed_order(db: str, shop: Shop) -> int:
    old = int(
        json.loads(ok("start", "-o", "order", "--output", "json", dsn=db, stdin='{"n": 1}'))[
            "instance_id"
        ]
    )
    shop.settle(old)
    assert as_json("inspect", str(old), dsn=db)["status"] == "failed"
    return old


def test_retry_from_the_savepoint_resumes_after_it(db: str, shop: Shop) -> None:
    old = _failed_order(db, shop)
    assert shop.calls == ["reserve", "ship"]  # reserve is kept: the savepoint stops the rollback

    doc = as_json("retry", str(old), "--from", "savepoint", dsn=db)
    new = int(doc["instance_id"])
    assert doc == {"instance_id": new, "retry_of": old, "from": "savepoint"}
    shop.broken = False
    shop.settle(new)

    assert shop.calls == ["reserve", "ship", "ship"]
    report = as_json("inspect", str(new), dsn=db)
    assert report["status"] == "completed" and report["retry_of"] == old
    assert report["output"] == {"n": 1, "reserve": True, "ship": True}
    assert as_json("inspect", str(old), dsn=db)["retried_as"] == [new]
    text = ok("inspect", str(old), dsn=db)
    assert f"Retried as instance {new}." in text
    assert f"Retry of instance {old}." in ok("inspect", str(new), dsn=db)


def test_retry_from_the_start_with_a_new_input(db: str, shop: Shop, tmp_path: Path) -> None:
    old = _failed_order(db, shop)
    data = tmp_path / "input.json"
    data.write_text('{"n": 2}')
    out = ok("retry", str(old), "-i", str(data), dsn=db)
    new = int(out.rsplit(" ", 1)[1])
    assert out.strip() == f"Instance {old} retried (from start) as instance {new}"
    shop.broken = False
    shop.settle(new)
    report = as_json("inspect", str(new), dsn=db)
    assert report["input"] == {"n": 2} and report["status"] == "completed"
    assert shop.calls == ["reserve", "ship", "reserve", "ship"]


def test_retry_refusals_are_one_line(db: str, shop: Shop, tmp_path: Path) -> None:
    old = _failed_order(db, shop)
    line = usage_error(floxyctl("retry", str(old), "--from", "middle", dsn=db))
    assert line == 'floxyctl: error: invalid --from: "middle" (expected start or savepoint)'
    data = tmp_path / "input.json"
    data.write_text("{}")
    line = usage_error(floxyctl("retry", str(old), "-i", str(data), "--from", "savepoint", dsn=db))
    assert "a new input applies only to a retry from the start" in line
    new = int(as_json("retry", str(old), dsn=db)["instance_id"])
    shop.broken = False
    shop.settle(new)
    line = usage_error(floxyctl("retry", str(new), dsn=db))
    assert line.endswith(
        f"instance {new} is completed: only a failed, cancelled or aborted instance can be retried"
    )
    assert usage_error(floxyctl("retry", "999999", dsn=db)).endswith("instance 999999 not found")
