"""What every floxyctl command shares, without typer: errors, plugins, logging, Ctrl-C."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from floxyctl import exits


def fail(message: str, code: int = exits.USAGE) -> NoReturn:
    """Print one clear line on stderr and exit with a documented code."""
    print(f"floxyctl: error: {message}", file=sys.stderr)
    raise SystemExit(code)


class _Plugins:
    no_plugins = False
    loaded: Any = None


def set_no_plugins(value: bool) -> None:
    _Plugins.no_plugins = value


def plugins() -> Any:
    """The loaded plugins (built-ins plus installed ones), loaded once per process."""
    if _Plugins.loaded is None:
        from floxy_core.errors import FloxyError
        from floxy_core.plugins import load_plugins

        try:
            _Plugins.loaded = load_plugins(no_plugins=_Plugins.no_plugins)
        except FloxyError as exc:
            fail(str(exc))
    return _Plugins.loaded


def _setup_logging() -> None:
    """Library warnings as one line each on stderr; the traceback only with FLOXY_DEBUG set."""
    import logging

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = f"floxyctl: {record.levelname.lower()}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                if os.environ.get("FLOXY_DEBUG"):
                    return text + "\n" + self.formatException(record.exc_info)
                error = record.exc_info[1]
                text += f": {type(error).__name__}: {error}"
            return text

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    root = logging.getLogger("floxy")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    root.propagate = False


def run_command(command: Callable[[], object], *, skip_teardown: bool = False) -> None:
    """Run the parsed command line with logging set up; Ctrl-C outside `run`'s own handling
    exits 130 with one line instead of a traceback.

    With `skip_teardown` (for `run`, which stops its runtime and closes its handlers itself) the
    process leaves with `os._exit` once its output is flushed: finalising the 150 modules a run
    imports would add about 7 ms, a tenth of a three-step run.
    """
    from floxy_core.logs import configure_on_first_use

    configure_on_first_use(_setup_logging)
    try:
        command()
    except KeyboardInterrupt:
        print("floxyctl: interrupted", file=sys.stderr)
        sys.exit(exits.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`floxyctl ... | head`): stop quietly, as SIGPIPE stops other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _exit_now(exits.BROKEN_PIPE)
    except SystemExit as done:
        if skip_teardown and isinstance(done.code, int | None):
            _exit_now(done.code or 0)
        raise


def _exit_now(code: int) -> NoReturn:
    """`sys.exit(code)` minus the teardown; like CPython, 120 when the output cannot be flushed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = 120
    os._exit(code)
