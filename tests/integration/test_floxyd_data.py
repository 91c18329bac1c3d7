"""floxyd with poison handler output (issue 13): nothing loops, exact values are kept.

On today's main a result PostgreSQL refuses (`\\u0000`, a lone surrogate, `1e400` written as
`Infinity`) was taken for an outage: the handler ran again every lease, forever, with
`retry_count` stuck at 0. Now a refused value is a failed attempt retried `max_retries` times,
and the values PostgreSQL can keep arrive exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from floxy_core.storage.postgres.store import PostgresStore
from tests.integration.test_floxyd import (  # noqa: F401 - fixtures
    Daemon,
    floxyd,
    start,
    steps,
    store,
    wait_status,
    write_yaml,
)

FLOW = """\
handlers:
  - name: nul
    exec: |
      echo call >> "{calls}"
      printf '%s' '{{"items": [{{"name": "a\\u0000b"}}]}}'
  - name: odd
    exec: |
      printf '%s' '{{"x": 1e400, "big": 123456789012345678901234567890, "s": "\\ud800", "b": "'
      printf '\\377"}}'
  - name: echo
    exec: printf '%s' "$INPUT"
flows:
  - name: poison
    steps:
      - {{name: emit, handler: nul, max_retries: 2}}
  - name: exact
    steps:
      - {{name: emit, handler: odd, max_retries: 0}}
      - {{name: again, handler: echo, max_retries: 0}}
"""


def test_poison_output_fails_after_max_retries_and_exact_values_survive(
    tmp_path: Path,
    pg_dsn: str,
    store: PostgresStore,  # noqa: F811 - the fixture imported above
    floxyd: Callable[..., Daemon],  # noqa: F811
) -> None:
    calls = tmp_path / "calls"
    floxyd(write_yaml(tmp_path, FLOW.format(calls=calls)), pg_dsn, FLOXY_LEASE="2s")

    poisoned = start(store, "poison-v1")
    assert wait_status(store, poisoned, timeout=60) == "failed"
    row = steps(store, poisoned)["emit"]
    assert row.error is not None and "$.items[0].name" in row.error and "NUL" in row.error
    assert calls.read_text().count("call") == 3  # max_retries + 1, not one per lease forever

    exact = start(store, "exact-v1")
    assert wait_status(store, exact, timeout=60) == "completed"
    out = steps(store, exact)["again"].output
    assert Decimal(str(out["x"])) == Decimal("1e400")
    assert out["big"] == 123456789012345678901234567890
    assert out["s"] == "\ufffd" and out["b"] == "\ufffd"
