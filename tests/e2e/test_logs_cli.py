"""`floxyctl logs` end to end: a real floxyctl against a real PostgreSQL, the steps run by an
in-process worker on the same database (what floxyd would do)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from floxy_core.handlers.bash import BashHandler
from floxy_core.runtime import Runtime
from floxy_core.storage.postgres import PostgresStore
from tests.e2e.test_db_cli import (
    FLOXYCTL,
    drive,
    floxyctl,
    ok,
    registered_database,
    start,
    usage_error,
)
from tests.pgcluster import Cluster

GREET = "echo greeting >&2; echo '{\"greeted\": true}'"
FLAKY = (
    'echo "try $FLOXY_RETRY_COUNT" >&2\n'
    'if [ "$FLOXY_RETRY_COUNT" = 0 ]; then echo half; exit 3; fi\n'
    "echo '{}'"
)
FLOWS = f"""\
handlers:
  - name: greet
    exec: {json.dumps(GREET)}
  - name: flaky
    exec: {json.dumps(FLAKY)}
flows:
  - name: chatty
    steps:
      - greet
      - {{name: flaky, handler: flaky, max_retries: 1, retry_delay: 10ms}}
"""


@pytest.fixture(scope="module")
def db(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from registered_database(pg_cluster, tmp_path_factory, FLOWS)


@pytest.fixture(scope="module")
def worker(db: str) -> Iterator[Runtime]:
    store = PostgresStore(db, max_size=4)
    handlers = {"greet": BashHandler("greet", GREET), "flaky": BashHandler("flaky", FLAKY)}
    try:
        yield Runtime(store, handlers, workers=1, poll_interval=0.05)
    finally:
        store.close()


def _drive(runtime: Runtime, instance_id: int) -> None:
    drive(runtime, instance_id, lambda: runtime.store.get_instance(instance_id).status.terminal)


def test_logs_prints_each_call_with_a_header_and_its_streams(db: str, worker: Runtime) -> None:
    instance_id = start(db, "chatty-v1")
    _drive(worker, instance_id)

    doc = json.loads(ok("logs", str(instance_id), "--output", "json", dsn=db))
    assert doc["instance_id"] == instance_id and doc["step"] is None
    calls = [(g["step_name"], g["retry_count"], g["outcome"], g["exit_code"]) for g in doc["logs"]]
    assert calls == [
        ("greet", 0, "completed", 0),
        ("flaky", 0, "failed", 3),
        ("flaky", 1, "completed", 0),
    ]
    greet = doc["logs"][0]
    assert (greet["stdout"], greet["stderr"]) == ('{"greeted": true}\n', "greeting\n")
    assert greet["compensation"] is False and greet["truncated"] is False
    assert greet["started_at"].endswith("Z")

    text = ok("logs", str(instance_id), "flaky", dsn=db)
    headers = [line for line in text.splitlines() if line.startswith("==> ")]
    assert len(headers) == 2
    first = headers[0].split(" · ")
    assert first[0] == "==> flaky" and first[1] == "attempt 1"
    assert first[2].endswith("Z") and first[3] == "failed, exit 3"
    assert headers[1].split(" · ")[1:4:2] == ["attempt 2", "completed, exit 0"]
    assert "--- stdout\nhalf\n--- stderr\ntry 0\n==> flaky" in text
    assert "greeting" not in text  # another step's call


def test_logs_follow_prints_calls_as_they_end_until_the_instance_ends(
    db: str, worker: Runtime
) -> None:
    instance_id = start(db, "chatty-v1")
    env = {**os.environ, "FLOXY_DSN": db, "NO_COLOR": "1"}
    follower = subprocess.Popen(
        [FLOXYCTL, "logs", str(instance_id), "--follow", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _drive(worker, instance_id)
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(g["step_name"], g["retry_count"]) for g in lines] == [
        ("greet", 0),
        ("flaky", 0),
        ("flaky", 1),
    ]
    assert len({g["id"] for g in lines}) == 3


def test_logs_of_an_unknown_or_bad_instance_is_a_clear_error(db: str) -> None:
    assert "instance 987654 not found" in usage_error(floxyctl("logs", "987654", dsn=db))
    assert 'invalid instance ID: "x"' in usage_error(floxyctl("logs", "x", dsn=db))
