"""What every floxyctl command shares, without typer: errors, plugins, logging, Ctrl-C."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from floxyctl import exits

T = TypeVar("T")


def fail(message: str, code: int = exits.USAGE) -> NoReturn:
    """Print one clear line on stderr and exit with a documented code."""
    print(f"floxyctl: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def usage_error(message: str, command_path: str = "floxyctl") -> NoReturn:
    """A command line floxyctl cannot take: the one error line, naming the help to read."""
    fail(f"{message} (see {command_path} --help)")


def given_once(
    argument: T | None, option: T | None, *, what: str, metavar: str, flag: str, command: str
) -> T:
    """A value a command takes either as its argument or with an option (`run FILE` or
    `run -f FILE`, `cancel ID` or `cancel -o ID`): exactly one of the two."""
    if argument is not None and option is not None:
        usage_error(f"the {what} is given twice, as {metavar} and with {flag}", command)
    value = argument if argument is not None else option
    if value is None:
        usage_error(f"missing the {what}: {command} {metavar} (or {flag} {metavar})", command)
    return value


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def print_warnings(warnings: Iterable[object]) -> None:
    """Problems that do not stop a file from loading, one line each on stderr."""
    for warning in warnings:
        print(f"floxyctl: warning: {warning}", file=sys.stderr)


def refuse(file: object, errors: Sequence[object], nothing_was: str) -> NoReturn:
    """Every error of `file` on its own line, then one summary, and exit 2."""
    for error in errors:
        print(str(error), file=sys.stderr)
    fail(f"{file}: {plural(len(errors), 'error')}; nothing was {nothing_was}")


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
        if _Plugins.loaded.manager is not None:
            from floxy_core.logs import configure_now

            configure_now()  # a plugin may log through `logging` directly, under "floxy."
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


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Ctrl-C and a reader that goes away (`floxyctl ... | head`) end a command quietly, with
    130 and 141 (as SIGINT and SIGPIPE end other tools), never with a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        print("floxyctl: interrupted", file=sys.stderr)
        raise SystemExit(exits.INTERRUPTED) from None
    except BrokenPipeError:
        # What is still buffered has nowhere to go; the interpreter's last flush must not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(exits.BROKEN_PIPE) from None


def guard_command(callback: Callable[..., Any]) -> Callable[..., Any]:
    """`callback` run inside `guarded()`: typer would turn a broken pipe into exit 1 and Ctrl-C
    into a silent 130."""

    @functools.wraps(callback)
    def command(*args: Any, **kwargs: Any) -> Any:
        with guarded():
            return callback(*args, **kwargs)

    return command


def run_command(command: Callable[[], object], *, skip_teardown: bool = False) -> None:
    """Run the parsed command line with logging set up, inside `guarded()`.

    With `skip_teardown` (for `run`, which stops its runtime and closes its handlers itself) the
    process leaves with `os._exit` once its output is flushed: finalising the 150 modules a run
    imports would add about 7 ms, a sixth of a three-step run. Not when a third-party plugin or
    a `type: python` handler's module is loaded, or a non-daemon thread still runs: their exit
    handlers and work must not be cut off.
    """
    from floxy_core.logs import configure_on_first_use

    configure_on_first_use(_setup_logging)
    try:
        with guarded():
            try:
                command()
            finally:
                sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
    except SystemExit as done:
        if skip_teardown and isinstance(done.code, int | None) and _nothing_left_to_run():
            _exit_now(done.code or 0)
        raise


def _nothing_left_to_run() -> bool:
    import threading

    third_party = _Plugins.loaded is not None and _Plugins.loaded.manager is not None
    python = sys.modules.get("floxy_core.handlers.python")
    user_code = python is not None and bool(getattr(python, "USER_MODULES", ()))
    main = threading.main_thread()
    return (
        not third_party
        and not user_code
        and all(t.daemon or t is main for t in threading.enumerate())
    )


def _exit_now(code: int) -> NoReturn:
    """`sys.exit(code)` without the teardown. A stdout that cannot be flushed gives 141 for a
    reader that went away, else 120 as CPython gives."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = exits.BROKEN_PIPE
    except (OSError, ValueError):
        code = 120
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
