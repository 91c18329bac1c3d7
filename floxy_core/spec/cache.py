"""A cache of validated workflow documents, keyed by the file's bytes (like `.pyc` files).

Parsing YAML with positions and validating it against the JSON Schema costs more than the rest
of `floxyctl run` together; a file that passed once is not checked again until its bytes, its
location, floxy or the schema change. The cache lives in `$FLOXY_CACHE_DIR`, else
`$XDG_CACHE_HOME/floxy`, else `~/.cache/floxy`; `FLOXY_NO_CACHE=1` turns it off. Any problem
with the cache (unwritable, corrupt) just means loading the slow way.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from floxy_core.errors import SpecError
from floxy_core.resources import schema_path
from floxy_core.spec.loader import Document


def _directory() -> Path | None:
    if os.environ.get("FLOXY_NO_CACHE"):
        return None
    explicit = os.environ.get("FLOXY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "floxy"


def _key(raw: bytes, name: str, require_handlers: bool) -> str:
    from floxy_core import __version__

    schema = schema_path().stat()
    digest = hashlib.sha256(raw)
    for part in (
        os.path.abspath(name),
        str(require_handlers),
        __version__,
        f"{schema.st_mtime_ns}:{schema.st_size}",
    ):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def lookup(raw: bytes, name: str, require_handlers: bool) -> Document | None:
    directory = _directory()
    if directory is None:
        return None
    try:
        entry = json.loads((directory / (_key(raw, name, require_handlers) + ".json")).read_bytes())
        warnings = tuple(SpecError(**w) for w in entry["warnings"])
        return Document(name, entry["data"], warnings)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(raw: bytes, name: str, require_handlers: bool, document: Document) -> None:
    directory = _directory()
    if directory is None:
        return
    entry = {"data": document.data, "warnings": [w.to_json() for w in document.warnings]}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / (_key(raw, name, require_handlers) + ".json")
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            json.dump(entry, f, separators=(",", ":"))
        os.replace(f.name, target)
    except (OSError, TypeError, ValueError):
        return
