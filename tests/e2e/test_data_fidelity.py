"""Data byte for byte (DECISIONS.md), on both stores, through real bash handlers.

Memory: a real `floxyctl run --output json`. PostgreSQL: the same file's handlers driven by an
in-process `Runtime` on a real database (what floxyd does), then a real `floxyctl inspect
--output json`. Both documents must be valid JSON (no `Infinity`, no lone surrogates) and hold
the same values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from floxy_core.handlers.registry import build_handlers, close_handlers
from floxy_core.runtime import Runtime
from floxy_core.spec import load_workflow_file
from floxy_core.storage.postgres import PostgresStore
from tests.pgcluster import Cluster

FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))
TERMINAL = {"completed", "failed", "cancelled", "aborted", "dlq"}


def strict_json(text: str) -> Any:
    """JSON as a strict reader sees it: no NaN/Infinity, numbers as exact decimals."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the output is not JSON")

    text.encode("utf-8")  # a lone surrogate would not encode
    return json.loads(text, parse_constant=refuse, parse_float=Decimal)


def floxyctl(*args: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOXY_", "PG"))}
    env["NO_COLOR"] = "1"
    if dsn is not None:
        env["FLOXY_DSN"] = dsn
    return subprocess.run(
        [FLOXYCTL, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


Runner = Callable[[str], dict[str, Any]]


@pytest.fixture(params=["memory", "postgres"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    """Run a one-flow YAML file to its end on the store under test; the JSON report."""
    files = iter(range(1000))

    def write(text: str) -> Path:
        path = tmp_path / f"flow{next(files)}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    if request.param == "memory":

        def in_memory(text: str) -> dict[str, Any]:
            result = floxyctl("run", "-f", str(write(text)), "--output", "json")
            assert "Traceback" not in result.stderr
            assert result.returncode in (0, 1), result.stderr
            doc: dict[str, Any] = strict_json(result.stdout)
            return doc

        yield in_memory
        return

    cluster: Cluster = request.getfixturevalue("pg_cluster")
    dsn = cluster.create_database()
    store = PostgresStore(dsn, max_size=2)

    def on_postgres(text: str) -> dict[str, Any]:
        file = load_workflow_file(write(text))
        handlers = build_handlers(file)
        runtime = Runtime(store, handlers)
        try:
            definition = file.flows[0]
            runtime.register(definition)
            instance_id = runtime.start_instance(definition.id, {})
            deadline = time.monotonic() + 60
            while store.get_instance(instance_id).status.value not in TERMINAL:
                assert time.monotonic() < deadline, store.get_steps(instance_id)
                if not runtime.run_once("test-worker"):
                    time.sleep(0.02)
        finally:
            close_handlers(handlers)
        result = floxyctl("inspect", str(instance_id), "--output", "json", dsn=dsn)
        assert result.returncode == 0, result.stderr
        doc: dict[str, Any] = strict_json(result.stdout)
        return doc

    try:
        yield on_postgres
    finally:
        store.close()
        cluster.drop_database(dsn)


def emit_then_echo(output: str, *, calls: Path | None = None, max_retries: int = 0) -> str:
    """Step `emit` prints `output` (printf format); step `echo` prints its `$INPUT` back."""
    count = f'echo call >> "{calls}"\n          ' if calls else ""
    return f"""\
    handlers:
      - name: emit
        exec: |
          {count}printf '{output}'
      - name: echo
        exec: |
          printf '%s' "$INPUT"
    flows:
      - name: data
        steps:
          - {{name: emit, handler: emit, max_retries: {max_retries}}}
          - {{name: echo, handler: echo, max_retries: 0}}
    """


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["name"] == name)


def exact(value: Any) -> Decimal:
    return Decimal(str(value))


def test_a_number_past_float_range_reaches_the_next_step_exactly(run: Runner) -> None:
    doc = run(emit_then_echo('{"x": 1e400, "tiny": 1e-400, "long": 0.1000000000000000000001}'))
    assert doc["status"] == "completed", doc
    # `echo` parsed its $INPUT back: it was valid JSON with the exact numbers
    for where in (step(doc, "echo")["input"], doc["output"]):
        assert exact(where["x"]) == Decimal("1e400")
        assert exact(where["tiny"]) == Decimal("1e-400")
        assert exact(where["long"]) == Decimal("0.1000000000000000000001")


def test_integers_beyond_2_to_the_53_are_exact(run: Runner) -> None:
    doc = run(emit_then_echo('{"a": 9007199254740993, "b": -123456789012345678901234567890}'))
    assert doc["status"] == "completed", doc
    assert doc["output"] == {"a": 9007199254740993, "b": -123456789012345678901234567890}


def test_a_lone_surrogate_becomes_u_fffd_and_pairs_join(run: Runner) -> None:
    doc = run(emit_then_echo('{"s": "a\\\\ud800b", "rocket": "\\\\ud83d\\\\ude80"}'))
    assert doc["status"] == "completed", doc
    assert doc["output"] == {"s": "a\ufffdb", "rocket": "\U0001f680"}


def test_invalid_utf8_in_output_becomes_u_fffd_and_the_step_succeeds(run: Runner) -> None:
    doc = run(emit_then_echo('{"s": "caf\\351 \\377"}'))
    assert doc["status"] == "completed", doc
    assert doc["output"] == {"s": "caf\ufffd \ufffd"}


def test_a_nul_character_is_refused_with_its_path_and_retried_like_a_failure(
    run: Runner, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    doc = run(emit_then_echo('{"items": [{"name": "a\\\\u0000b"}]}', calls=calls, max_retries=2))
    assert doc["status"] == "failed", doc
    error = step(doc, "emit")["error"]
    assert "$.items[0].name" in error and "NUL" in error, error
    assert calls.read_text().count("call") == 3  # max_retries + 1, then it stops
    assert not any(s["name"] == "echo" for s in doc["steps"])


def test_an_empty_input_file_is_an_error_but_no_input_is_an_empty_object(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "handlers:\n  - {name: echo, exec: 'printf %s \"$INPUT\"'}\n"
        "flows:\n  - {name: f, steps: [echo]}\n"
    )
    empty = tmp_path / "empty.json"
    empty.write_text("")
    result = floxyctl("run", "-f", str(path), "-i", str(empty))
    assert result.returncode == 2
    assert "empty.json is empty" in result.stderr and "Traceback" not in result.stderr
    result = floxyctl("run", "-f", str(path), "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"] == {}


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": {"b": "x\\u0000"}}', "$.a.b"),
        ('{"k\\u0000": 1}', '$["k\\u0000"]'),
        ('{"s": "\\udc00"}', "$.s"),
        ('{"n": 1e200000}', "$.n"),
    ],
)
def test_input_the_stores_cannot_keep_is_exit_2_naming_the_path(
    tmp_path: Path, text: str, path: str
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "handlers:\n  - {name: a, exec: \"echo '{}'\"}\nflows:\n  - {name: f, steps: [a]}\n"
    )
    data = tmp_path / "in.json"
    data.write_text(text)
    result = floxyctl("run", "-f", str(flow), "-i", str(data))
    assert result.returncode == 2, result.stdout
    assert path in result.stderr and "Traceback" not in result.stderr, result.stderr
