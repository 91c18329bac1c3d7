"""The core decides, the shell acts: the engine and model never import I/O libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "floxy_core"
PURE = [
    ROOT / "engine",
    ROOT / "model.py",
    ROOT / "status.py",
    ROOT / "builder.py",
    ROOT / "graph.py",
    ROOT / "conditions.py",
    ROOT / "errors.py",
    ROOT / "durations.py",
]
FORBIDDEN = {
    "psycopg",
    "psycopg_pool",
    "httpx",
    "typer",
    "rich",
    "subprocess",
    "socket",
    "floxyctl",
    "floxyd",
    "floxy_core.storage",
    "floxy_core.handlers",
    "floxy_core.runtime",
}


def _files() -> list[Path]:
    found: list[Path] = []
    for path in PURE:
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_import_no_io(path: Path) -> None:
    bad = {
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_check_sees_imports() -> None:
    assert "floxy_core.engine.state" in _imports(ROOT / "engine" / "decisions.py")


ENGINE_DECIDES = ["decisions.py", "joins.py", "rollback.py"]


@pytest.mark.parametrize("name", ENGINE_DECIDES)
def test_the_engine_asks_the_graph_not_the_builder(name: str) -> None:
    """The shape of a flow lives in `graph.py`; `builder.py` is the user-facing construction
    API, and the engine's decisions must not depend on it."""
    imports = {i for i in _imports(ROOT / "engine" / name) if i.startswith("floxy_core")}
    assert "floxy_core.builder" not in imports
    assert "floxy_core.graph" in imports
    others = {i for i in imports if not i.startswith("floxy_core.engine")}
    assert others <= {
        "floxy_core.model",
        "floxy_core.graph",
        "floxy_core.status",
        "floxy_core.errors",
        "floxy_core.records",
        "floxy_core.conditions",
        "floxy_core.durations",
    }


def test_the_public_api_is_lazy_and_complete() -> None:
    """`import floxy_core` loads nothing else; every name of `__all__` resolves."""
    import subprocess
    import sys

    code = (
        "import sys, floxy_core as f\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('floxy_core.'))\n"
        "assert loaded == [], loaded\n"
        "assert sorted(set(f.__all__) - {'__version__'}) == sorted(f._HOMES), 'all vs homes'\n"
        "for name in f.__all__: getattr(f, name)\n"
        "assert 'floxy_core.runtime' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _module_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports when it is loaded (not under TYPE_CHECKING, not
    inside a function: those are deferred on purpose)."""
    repo = ROOT.parent
    modules: dict[str, Path] = {}
    for package in ("floxy_core", "floxyctl", "floxyd"):
        for path in (repo / package).rglob("*.py"):
            name = ".".join(path.relative_to(repo).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found.update(alias.name for alias in sub.names)
                elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                    found.add(sub.module)
                    found.update(f"{sub.module}.{alias.name}" for alias in sub.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_imports_itself_back() -> None:
    """No import circles among floxy's modules as they load."""
    graph = _module_graph()
    assert "floxy_core.engine.state" in graph["floxy_core.engine.decisions"]
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
