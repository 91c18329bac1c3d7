"""A cache of validated workflow documents, one entry per file path (like `.pyc` files).

Parsing YAML with positions and validating it against the JSON Schema costs more than the rest
of `floxyctl run` together; a file that passed once is not checked again until its bytes, its
location, floxy or the schema change, nor while the script files and `${NAME}` variables its
`exec` values refer to stay as they were (`exec_facts`). An entry keeps the file's bytes and is
used only when they are equal to the file's: exact without a cryptographic hash (importing
hashlib loads OpenSSL, about 3 ms), and editing a file replaces its entry instead of adding
one. The cache lives in `$FLOXY_CACHE_DIR`, else `$XDG_CACHE_HOME/floxy`, else `~/.cache/floxy`;
`FLOXY_NO_CACHE=1` turns it off. Any problem with the cache (unwritable, corrupt) just means
loading the slow way.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from floxy_core.errors import SpecError
from floxy_core.resources import schema_path
from floxy_core.spec.document import Document, PathT, Pos

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}` in an HTTP handler's URL (floxy_core/handlers/http.py expands it at call time)."""


def script_file(text: str) -> bool:
    """Whether a bash `exec` is surely meant as a script file (as the bash handler decides)."""
    return (
        bool(text)
        and not any(c.isspace() for c in text)
        and (text.endswith(".sh") or text.startswith(("./", "../", "/")))
    )


def script_exists(text: str, base: str) -> bool:
    """Whether the script file exists relative to the YAML file's directory or the cwd."""
    return any(os.path.isfile(os.path.join(root, text)) for root in (base, os.getcwd()))


def url_references(text: str) -> list[str]:
    return _REFERENCE.findall(text)


def exec_facts(data: Any, name: str) -> list[list[Any]]:
    """The outside facts the loader's `exec` checks depend on, as they are now."""
    base = os.path.dirname(os.path.abspath(name)) if name else "."
    facts: list[list[Any]] = []
    handlers = data.get("handlers") if isinstance(data, dict) else None
    for handler in handlers if isinstance(handlers, list) else ():
        text = handler.get("exec") if isinstance(handler, dict) else None
        if not isinstance(text, str):
            continue
        text = text.strip()
        if script_file(text):
            facts.append(["file", text, script_exists(text, base)])
        facts.extend(["env", ref, ref in os.environ] for ref in url_references(text))
    return facts


def _directory() -> Path | None:
    if os.environ.get("FLOXY_NO_CACHE"):
        return None
    explicit = os.environ.get("FLOXY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "floxy"


def _entry_path(directory: Path, name: str, require_handlers: bool) -> Path:
    where = f"{os.path.abspath(name)}\0{require_handlers}".encode()
    return directory / f"{zlib.crc32(where):08x}.json"


def _identity(raw: bytes, name: str, require_handlers: bool) -> dict[str, Any]:
    """What must be equal for an entry to be used."""
    from floxy_core import __version__

    schema = schema_path().stat()
    return {
        "path": os.path.abspath(name),
        "require_handlers": require_handlers,
        "floxy": __version__,
        "schema": f"{schema.st_mtime_ns}:{schema.st_size}",
        "source": raw.decode("utf-8", "surrogateescape"),
    }


def lookup(raw: bytes, name: str, require_handlers: bool) -> Document | None:
    directory = _directory()
    if directory is None:
        return None
    try:
        entry = json.loads(_entry_path(directory, name, require_handlers).read_bytes())
        if entry["identity"] != _identity(raw, name, require_handlers):
            return None
        if entry["exec_facts"] != exec_facts(entry["data"], name):
            return None
        warnings = tuple(SpecError(**w) for w in entry["warnings"])
        positions: dict[PathT, Pos] = {
            ("handlers", i): (line, col) for i, line, col in entry["handlers_at"]
        }
        return Document(name, entry["data"], warnings, positions)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(raw: bytes, name: str, require_handlers: bool, document: Document) -> None:
    directory = _directory()
    if directory is None:
        return
    import tempfile

    entry = {
        "identity": _identity(raw, name, require_handlers),
        "data": document.data,
        "exec_facts": exec_facts(document.data, name),
        "warnings": [w.to_json() for w in document.warnings],
        # Where each handler is declared: build errors point there (see HandlerBuildError).
        "handlers_at": [
            [i, *document.where(("handlers", i))]
            for i in range(len(document.data.get("handlers") or []))
        ],
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = _entry_path(directory, name, require_handlers)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            json.dump(entry, f, separators=(",", ":"))
        os.replace(f.name, target)
    except (OSError, TypeError, ValueError):
        return
