"""Exit codes of floxyctl (documented in --help and docs/cli.md)."""

from __future__ import annotations

OK = 0
FAILED = 1
USAGE = 2
TIMEOUT = 3
PAUSED = 4
STOPPED = 5
SCHEMA = 6
"""A read command found the database schema missing or older than floxyctl."""
INTERRUPTED = 130
BROKEN_PIPE = 141

EPILOG = (
    "Exit codes: 0 completed · 1 failed (rolled back) · 2 bad usage, YAML or input · "
    "3 completion timeout · 4 paused (DLQ or waiting for a human decision) · "
    "5 cancelled or aborted."
)
