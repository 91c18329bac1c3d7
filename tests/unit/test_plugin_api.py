"""The plugin seam: one leaf module for plugin authors, the old import paths as re-exports, and
no import circle between the manager, the hookspecs and the handler registry."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "floxy_core"
SEAM = {
    "floxy_core.plugin_api": ROOT / "plugin_api.py",
    "floxy_core.plugins": ROOT / "plugins.py",
    "floxy_core.hookspecs": ROOT / "hookspecs.py",
    "floxy_core.handlers.builtin": ROOT / "handlers" / "builtin.py",
    "floxy_core.handlers.registry": ROOT / "handlers" / "registry.py",
}


def _imports(path: Path) -> set[str]:
    """Every module the file imports, at the top, in a function or under TYPE_CHECKING."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_plugin_api_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from floxy_core.plugin_api import BuildContext, HandlerSpec, HandlerType\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    heavy = {
        "pluggy",
        "jsonschema",
        "httpx",
        "psycopg",
        "importlib.metadata",
        "floxy_core.plugins",
        "floxy_core.hookspecs",
        "floxy_core.runtime",
        "floxy_core.builder",
    }
    assert not heavy & loaded
    prefixes = ("floxy_core.engine", "floxy_core.storage", "floxy_core.handlers", "floxy_core.spec")
    assert not [m for m in loaded if m.startswith(prefixes)]


def test_the_markers_are_made_on_first_use_and_shared() -> None:
    import pluggy

    from floxy_core import plugin_api, plugins

    assert isinstance(plugin_api.hookimpl, pluggy.HookimplMarker)
    assert plugins.hookimpl is plugin_api.hookimpl
    assert plugins.hookspec is plugin_api.hookspec
    with pytest.raises(AttributeError):
        plugin_api.hookwrapper  # noqa: B018


def test_the_old_import_paths_still_work() -> None:
    from floxy_core import plugin_api
    from floxy_core.handlers import registry
    from floxy_core.plugins import BuildContext, HandlerType

    assert HandlerType is plugin_api.HandlerType
    assert BuildContext is plugin_api.BuildContext is registry.BuildContext
    assert registry.HandlerFactory is plugin_api.HandlerFactory
    assert registry.DebugLog is plugin_api.DebugLog


@pytest.mark.parametrize("module", sorted(SEAM))
def test_the_seam_has_no_import_circle(module: str) -> None:
    """plugin_api imports no other seam module; hookspecs, builtin and registry import
    plugin_api, never the manager; only the manager imports (lazily) hookspecs and builtin."""
    allowed = {
        "floxy_core.plugin_api": set(),
        "floxy_core.hookspecs": {"floxy_core.plugin_api"},
        "floxy_core.handlers.builtin": {"floxy_core.plugin_api"},
        "floxy_core.handlers.registry": {"floxy_core.plugin_api", "floxy_core.handlers.builtin"},
        "floxy_core.plugins": {
            "floxy_core.plugin_api",
            "floxy_core.hookspecs",
            "floxy_core.handlers.builtin",
        },
    }[module]
    imported = _imports(SEAM[module])
    seam = {m for m in SEAM if m != module and m in imported}
    assert seam <= allowed, f"{module} imports {sorted(seam - allowed)}"
    engine = {"floxy_core.runtime", "floxy_core.engine", "floxy_core.storage"}
    assert not {m for m in imported if any(m == e or m.startswith(e + ".") for e in engine)}
