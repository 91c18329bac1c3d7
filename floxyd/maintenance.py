"""pg_partman maintenance: new daily partitions ahead, old ones dropped after the retention.

Every daemon schedules it (at start-up, then every interval); an advisory lock taken with
`pg_try_advisory_lock` makes sure only one of them runs it at a time, the others skip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("floxyd.maintenance")

LOCK_KEY = 0x466C6F78794D  # "FloxyM": distinct from the migration lock
EXTENSION_SCHEMA_SQL = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = %(name)s
"""
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(%(key)s)"
UNLOCK_SQL = "SELECT pg_advisory_unlock(%(key)s)"


def run_maintenance(dsn: str, *, connect_timeout: float = 10.0) -> str:
    """Run `run_maintenance()` once if no other daemon is; returns `done` or `skipped`."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        dsn, autocommit=True, connect_timeout=max(2, round(connect_timeout))
    ) as conn:
        row = conn.execute(TRY_LOCK_SQL, {"key": LOCK_KEY}).fetchone()
        if row is None or not row[0]:
            return "skipped"
        try:
            schema = conn.execute(EXTENSION_SCHEMA_SQL, {"name": "pg_partman"}).fetchone()
            if schema is None:
                raise RuntimeError("the pg_partman extension is not installed in this database")
            conn.execute(
                sql.SQL("SELECT {}.run_maintenance()").format(sql.Identifier(str(schema[0])))
            )
            return "done"
        finally:
            conn.execute(UNLOCK_SQL, {"key": LOCK_KEY})


class Maintenance:
    """A thread running partition maintenance now and then every `interval` seconds."""

    def __init__(
        self, dsn: str, interval: float, *, on_error: Callable[[], None] = lambda: None
    ) -> None:
        self._dsn = dsn
        self._interval = interval
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floxyd-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> None:
        started = time.monotonic()
        try:
            result = run_maintenance(self._dsn)
        except Exception as exc:
            self._on_error()
            log.warning("partition maintenance failed (will retry next time): %s", exc)
            return
        if result == "skipped":
            log.info("partition maintenance skipped: another daemon is running it")
        else:
            log.info("partition maintenance done in %.1fs", time.monotonic() - started)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            if self._stop.wait(self._interval):
                return
