"""Loggers that import `logging` only when something is logged.

A clean `floxyctl run` logs nothing, and importing `logging` would cost it about 5 ms of its
start-up. A front end that wants its own format registers it with `configure_on_first_use`; it
runs before the first record of any floxy logger, or when `configure_now` is called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

_pending: list[Callable[[], None]] = []
_lock = threading.Lock()


def configure_on_first_use(setup: Callable[[], None]) -> None:
    with _lock:
        _pending.append(setup)


def configure_now() -> None:
    """Run the registered set-ups; a thread that logs meanwhile waits for them to finish."""
    if _pending:
        with _lock:
            while _pending:
                _pending[0]()
                del _pending[0]


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import logging

        configure_now()
        return getattr(logging.getLogger(self._name), attribute)


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)`, created when first used."""
    return cast("logging.Logger", _LazyLogger(name))
