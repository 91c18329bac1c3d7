"""The options of `floxyctl run`, written once for typer and for the typer-free fast path.

Importing typer costs more than the rest of a three-step `run` (about 40 ms on our 2-core
machine), so `floxyctl run` with plain, valid arguments is parsed here and never loads typer.
Anything this parser is not sure of — `--help`, an unknown or malformed option, a value it would
have to convert in a way click might not — goes to typer, which owns every help text and usage
error; both paths then call the same `run_cmd.execute`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

MAX_WORKERS = 256
"""Upper bound of -w/--workers: each worker is a thread, and thousands of them only fail."""


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class Option(NamedTuple):
    """One option: its flags, help, default and how the fast path reads its value."""

    flags: tuple[str, ...]
    help: str
    default: Any = None
    kind: str = "str"  # str | path | int | flag | list | output
    envvar: str | None = None
    metavar: str | None = None


OPTIONS: dict[str, Option] = {
    "file": Option(("-f", "--file"), "Workflow YAML file.", kind="path"),
    "input_source": Option(
        ("-i", "--input"),
        "JSON input: a file, - for stdin, or the JSON itself ({...} or [...]). "
        "Default: stdin when it is not a terminal, else {}.",
        metavar="FILE|-|JSON",
    ),
    "flow": Option(("--flow",), "Flow to run (name or name-vN); required if the file has several."),
    "workers": Option(
        ("-w", "--workers"),
        f"Worker threads, 1 to {MAX_WORKERS}.",
        3,
        kind="int",
        envvar="FLOXY_WORKERS",
    ),
    "worker_interval": Option(
        ("--worker-interval",),
        "How often idle workers poll (e.g. 100ms).",
        "100ms",
        envvar="FLOXY_WORKER_INTERVAL",
    ),
    "completion_timeout": Option(
        ("--completion-timeout",), "Give up after this long (exit 3).", "10m"
    ),
    "status_check_interval": Option(
        ("--status-check-interval",), "Longest wait between status checks.", "500ms"
    ),
    "debug": Option(
        ("-D", "--debug"), "Log handler input, output and stderr to stderr.", False, kind="flag"
    ),
    "decide": Option(
        ("--decide",),
        "Answer a human step in advance (repeatable).",
        kind="list",
        metavar="STEP=confirm|reject",
    ),
    "output": Option(
        ("-o", "--output"),
        "text for people; json for programs (one document on stdout).",
        OutputFormat.text,
        kind="output",
    ),
}

RUN_DEFAULTS: dict[str, Any] = {name: o.default for name, o in OPTIONS.items() if name != "file"}
"""What `run` gets for an option not given (`file`, or FILE, is required)."""

NO_PLUGINS_ENV = "FLOXY_NO_PLUGINS"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def env_flag(environ: Mapping[str, str], name: str) -> bool | None:
    """A boolean environment variable as click reads it; None when click would refuse it."""
    value = environ.get(name, "").strip().lower()
    if not value or value in _FALSE:
        return False
    return True if value in _TRUE else None


def fast_run_args(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The keyword arguments of `run_cmd.execute` for `floxyctl run ARGV`, or None to let typer
    parse (and, where it must, refuse) the command line."""
    by_flag = {flag: name for name, option in OPTIONS.items() for flag in option.flags}
    given: dict[str, Any] = {}
    positional: Path | None = None
    args = list(argv)
    while args:
        token = args.pop(0)
        flag, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if not token.startswith("-"):  # FILE: once, and not besides -f (typer refuses those)
            if positional is not None:
                return None
            positional = _convert("path", token)
            if positional is None:
                return None
            continue
        name = by_flag.get(flag)
        if name is None:
            return None
        option = OPTIONS[name]
        if option.kind == "flag":
            if eq:
                return None
            given[name] = True
            continue
        if eq:
            raw = inline
        elif args and (args[0] == "-" or not args[0].startswith("-")):
            raw = args.pop(0)
        else:
            return None
        value = _convert(option.kind, raw)
        if value is None:
            return None
        if option.kind == "list":
            given.setdefault(name, []).append(value)
        else:
            given[name] = value
    if positional is not None:
        if "file" in given:
            return None
        given["file"] = positional
    if "file" not in given:
        return None
    for name, option in OPTIONS.items():
        raw_env = environ.get(option.envvar) if option.envvar else None
        if name not in given and raw_env:
            value = _convert(option.kind, raw_env)
            if value is None:
                return None
            given[name] = value
    no_plugins = env_flag(environ, NO_PLUGINS_ENV)
    if no_plugins is None:
        return None
    return {**RUN_DEFAULTS, **given, "no_plugins": no_plugins}


def _convert(kind: str, raw: str) -> Any:
    """The value click would produce, or None where the fast path leaves the call to typer."""
    if not raw or raw != raw.strip():
        return None
    if kind == "path":
        return Path(raw)
    if kind == "int":
        return int(raw) if raw.isascii() and raw.isdigit() else None
    if kind == "output":
        return OutputFormat(raw) if raw in OutputFormat.__members__ else None
    return raw
