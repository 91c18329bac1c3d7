"""Wake-ups for idle workers: LISTEN on the queue channel that `floxy_apply` and
`release_claim` NOTIFY when there is work another worker could take.

Package-internal. Polling stays the fallback: a lost connection only delays wake-ups until the
next poll, and the listener reconnects.
"""

from __future__ import annotations

import threading

from floxy_core.logs import get_logger

log = get_logger("floxy.postgres")
CHANNEL = "floxy_queue"


class QueueListener:
    """A daemon thread, started on the first `wait`, that wakes every waiter on a notification."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._work = threading.Condition()
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:  # it notices within its one-second poll
            self._listener.join(2.0)

    def _listen(self) -> None:
        """LISTEN for new queue rows; polling remains the fallback if this connection fails."""
        import psycopg

        while not self._closed.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            with self._work:
                                self._work.notify_all()
            except psycopg.Error as exc:
                log.warning(
                    "queue listener lost its connection (%s); polling until it is back", exc
                )
                self._closed.wait(2.0)

    def wait(self, timeout: float) -> None:
        """Until a notification, a `wake`, or `timeout` seconds."""
        if self._listener is None:
            with self._work:
                if self._listener is None:
                    self._listener = threading.Thread(
                        target=self._listen, name="floxy-listen", daemon=True
                    )
                    self._listener.start()
        with self._work:
            self._work.wait(timeout)

    def wake(self) -> None:
        with self._work:
            self._work.notify_all()
