"""Loggers that import `logging` only when something is logged.

A clean `floxyctl run` logs nothing, and importing `logging` would cost it about 5 ms of its
start-up. A front end that wants its own format registers it with `configure_on_first_use`; it
runs just before the first record of any floxy logger.
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
    _pending.append(setup)


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import logging

        if _pending:
            with _lock:
                while _pending:
                    _pending.pop(0)()
        return getattr(logging.getLogger(self._name), attribute)


def get_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)`, created when first used."""
    return cast("logging.Logger", _LazyLogger(name))
