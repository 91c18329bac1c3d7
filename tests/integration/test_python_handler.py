"""The built-in `python` handler type: `exec: package.module:function`, called in-process with
(context, input); build errors are reported before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from floxy_core.errors import HandlerError
from floxy_core.handlers.python import PythonHandler
from floxy_core.handlers.registry import HandlerBuildError, build_handlers
from floxy_core.ports import StepContext
from floxy_core.spec import load_workflow_file
from tests.support import step_context as _ctx

FLOXYCTL = str(Path(sys.executable).with_name("floxyctl"))

MODULE = """
import json, os
from floxy_core.errors import HandlerError

CALLS = os.environ.get("CALLS_FILE")
NOT_CALLABLE = 42


def _count(name):
    with open(CALLS, "a") as f:
        f.write(name + "\\n")


def score(ctx, data):
    _count("score")
    return {
        "score": data["amount"] * 2,
        "step": ctx.step_name,
        "workflow": ctx.workflow_id,
        "retry": ctx.retry_count,
        "compensation": ctx.compensation,
    }


def refund(ctx, data):
    _count(f"refund:{ctx.step_name}:{ctx.compensation}:{ctx.metadata.get('reason')}")
    return {"refunded": True}


def refuse(ctx, data):
    _count("refuse")
    raise HandlerError("amount too large", retryable=False)


def flaky(ctx, data):
    _count("flaky")
    if ctx.retry_count < 2:
        raise KeyError("not yet")
    return {"ok": ctx.retry_count}


class Scorer:
    @staticmethod
    def run(ctx, data):
        return {"static": True}


def one_arg(data):
    return data


async def coro(ctx, data):
    return data
"""

BROKEN = "raise RuntimeError('broken at import')\n"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with the handler modules, on PYTHONPATH and on sys.path (a fresh name each
    test, so no module is cached across tests)."""
    directory = tmp_path / "site"
    pkg = directory / "pyh" / "inner"
    pkg.mkdir(parents=True)
    (directory / "pyh" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "handlers.py").write_text(MODULE)
    (directory / "pyh_broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(directory))
    for name in [m for m in sys.modules if m.split(".")[0] in ("pyh", "pyh_broken")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("CALLS_FILE", str(tmp_path / "calls"))
    return directory


def _env(site: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOXY_")}
    env.update(
        PYTHONPATH=str(site), CALLS_FILE=str(tmp_path / "calls"), FLOXY_NO_PLUGINS="1", NO_COLOR="1"
    )
    return env


def _write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().split() if path.exists() else []


WORKFLOW = """
handlers:
  - name: score
    type: python
    exec: pyh.inner.handlers:score
  - name: refund
    type: python
    exec: pyh.inner.handlers:refund
  - name: refuse
    type: python
    exec: pyh.inner.handlers:refuse
  - name: flaky
    type: python
    exec: pyh.inner.handlers:flaky
flows:
  - name: ok
    steps:
      - name: score
        on_failure: refund
      - name: flaky
        retry_delay: 1ms
  - name: bad
    steps:
      - name: score
        on_failure: refund
      - refuse
"""


def test_floxyctl_runs_python_functions(site: Path, tmp_path: Path) -> None:
    wf = _write(tmp_path, WORKFLOW)
    result = subprocess.run(
        [FLOXYCTL, "run", "-f", str(wf), "--flow", "ok", "--output", "json"],
        env=_env(site, tmp_path), input='{"amount": 21}', capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["score"]["output"] == {
        "score": 42,
        "step": "score",
        "workflow": "ok-v1",
        "retry": 0,
        "compensation": False,
    }
    # Any other exception is a crash: logged, and retried like any failure.
    assert doc["output"] == {"ok": 2}
    assert _calls(tmp_path) == ["score", "flaky", "flaky", "flaky"]
    assert "handler 'flaky' crashed: KeyError: 'not yet'" in json.dumps(doc["events"])


def test_handler_error_not_retryable_fails_at_once_and_compensates(
    site: Path, tmp_path: Path
) -> None:
    wf = _write(tmp_path, WORKFLOW)
    result = subprocess.run(
        [FLOXYCTL, "run", "-f", str(wf), "--flow", "bad", "--output", "json"],
        env=_env(site, tmp_path), input='{"amount": 1}', capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["error"] == "amount too large"
    # The compensation of `score` is a python call too, with the compensation context.
    assert _calls(tmp_path) == ["score", "refuse", "refund:score:True:compensation"]


BAD_HANDLERS = """
handlers:
  - name: bad_format
    type: python
    exec: pyh.inner.handlers.score
  - name: no_module
    type: python
    exec: pyh.nosuch:score
  - name: no_attribute
    type: python
    exec: pyh.inner.handlers:nosuch
  - name: not_callable
    type: python
    exec: pyh.inner.handlers:NOT_CALLABLE
  - name: wrong_signature
    type: python
    exec: pyh.inner.handlers:one_arg
  - name: async_function
    type: python
    exec: pyh.inner.handlers:coro
  - name: import_fails
    type: python
    exec: pyh_broken:anything
flows:
  - name: f
    steps: [bad_format, no_module, no_attribute, not_callable, wrong_signature,
            async_function, import_fails]
"""


def test_a_bad_exec_format_is_reported_at_its_line(site: Path, tmp_path: Path) -> None:
    wf = _write(tmp_path, BAD_HANDLERS)
    result = subprocess.run(
        [FLOXYCTL, "validate", "-f", str(wf)],
        env=_env(site, tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{wf}:5:11: handlers[0].exec: invalid value ")
    assert "pyh.inner.handlers.score" in lines[0]
    assert lines[-1] == "1 error in 1 file"


def test_import_problems_are_build_errors(site: Path, tmp_path: Path) -> None:
    text = BAD_HANDLERS.replace("exec: pyh.inner.handlers.score", "exec: pyh.inner.handlers:score")
    wf = _write(tmp_path, text)
    env = _env(site, tmp_path)
    validate = subprocess.run(
        [FLOXYCTL, "validate", "-f", str(wf)], env=env, capture_output=True, text=True, timeout=60
    )
    run = subprocess.run(
        [FLOXYCTL, "run", "-f", str(wf)], env=env, capture_output=True, text=True, timeout=60
    )
    expected = [
        "failed to create handler 'no_module': cannot import module 'pyh.nosuch' for "
        "'pyh.nosuch:score': No module named 'pyh.nosuch' (is it installed or on PYTHONPATH?)",
        "failed to create handler 'no_attribute': module 'pyh.inner.handlers' has no attribute "
        "'nosuch' (exec 'pyh.inner.handlers:nosuch')",
        "failed to create handler 'not_callable': 'pyh.inner.handlers:NOT_CALLABLE' is not "
        "callable (it is int)",
        "failed to create handler 'wrong_signature': 'pyh.inner.handlers:one_arg' must accept "
        "two arguments (context, input); its signature is (data)",
        "failed to create handler 'async_function': 'pyh.inner.handlers:coro' is an async "
        "function; the python handler calls plain functions",
        "failed to create handler 'import_fails': importing module 'pyh_broken' failed: "
        "RuntimeError: broken at import",
    ]
    assert validate.returncode == 2
    assert run.returncode == 2
    lines = text.splitlines()
    for message in expected:
        name = message.split("'")[1]
        line = lines.index(f"  - name: {name}") + 1  # the error points at the declaration
        assert f"{wf}:{line}:5: handlers: {message}" in validate.stderr.splitlines()
        assert f"{wf}:{line}:5: handlers: {message}" in run.stderr.splitlines()
    assert run.stderr.splitlines()[-1] == f"floxyctl: error: {wf}: 6 errors; nothing was run"
    assert "Traceback" not in run.stderr + validate.stderr
    assert _calls(tmp_path) == []


def test_build_handlers_in_process(site: Path, tmp_path: Path) -> None:
    wf = load_workflow_file(_write(tmp_path, WORKFLOW))
    handlers = build_handlers(wf)
    assert isinstance(handlers["score"], PythonHandler)
    assert handlers["score"](_ctx(step_name="x"), {"amount": 1})["score"] == 2
    text = BAD_HANDLERS.replace("exec: pyh.inner.handlers.score", "exec: pyh.inner.handlers:score")
    with pytest.raises(HandlerBuildError) as info:
        build_handlers(load_workflow_file(_write(tmp_path, text, "bad.yaml")))
    assert len(info.value.problems) == 6


def test_dotted_attribute_and_private_copies(site: Path) -> None:
    handler = PythonHandler("h", "pyh.inner.handlers:Scorer.run")
    assert handler(_ctx(), None) == {"static": True}

    seen: list[Any] = []

    def mutate(ctx: StepContext, data: Any) -> Any:
        data["added"] = True
        seen.append(data)
        return data

    sys.modules["pyh.inner.handlers"].mutate = mutate  # type: ignore[attr-defined]
    handler = PythonHandler("h", "pyh.inner.handlers:mutate")
    original = {"a": [1]}
    result = handler(_ctx(), original)
    assert original == {"a": [1]}  # the stored input is not changed by the function
    result["a"].append(2)
    assert seen[0]["a"] == [1]  # nor is the function's object changed by the caller


def test_a_result_that_is_not_json_fails_the_attempt_naming_its_path(site: Path) -> None:
    module = sys.modules.get("pyh.inner.handlers") or __import__(
        "pyh.inner.handlers", fromlist=["x"]
    )
    module.bad_result = lambda ctx, data: {"when": object(), "ok": 1}
    module.nul_result = lambda ctx, data: {"items": [{"name": "a\x00b"}]}
    handler = PythonHandler("h", "pyh.inner.handlers:bad_result")
    with pytest.raises(HandlerError, match=r"cannot be stored: \$\.when: object is not a JSON"):
        handler(_ctx(), {})
    nul = PythonHandler("h", "pyh.inner.handlers:nul_result")
    with pytest.raises(HandlerError, match=r"\$\.items\[0\]\.name: string contains a NUL") as info:
        nul(_ctx(), {})
    assert info.value.retryable is True  # a failed attempt like any other, retried


def test_an_interrupted_step_does_not_call_the_function(site: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(HandlerError, match="cancelled"):
        PythonHandler("h", "pyh.inner.handlers:score")(_ctx(interrupt=stop), {"amount": 1})
    assert _calls(tmp_path) == []
