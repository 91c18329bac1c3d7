"""The bash handler against real bash and real subprocesses (spec §15.1, DECISIONS.md)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from floxy_core.errors import HandlerError, HandlerTimeout
from floxy_core.handlers.bash import BashHandler, is_inline_script
from floxy_core.ports import Handler, StepContext

SCRIPTS = Path(__file__).parent / "scripts"

DUMP_ENV = (
    'env -0 | jq -Rs \'split("\\u0000") | map(select(length > 0) | index("=") as $i'
    " | {key: .[:$i], value: .[$i+1:]}) | from_entries'"
)
"""Inline script printing the child's whole environment as one JSON object."""


def ctx(**overrides: Any) -> StepContext:
    values: dict[str, Any] = {
        "instance_id": 42,
        "workflow_id": "flow-v1",
        "step_name": "build",
        "idempotency_key": "0b8e3c1e-1111-4222-8333-944455556666",
        "retry_count": 2,
    }
    values.update(overrides)
    return StepContext(**values)


def run(exec: str, data: Any = None, *, base_dir: Path | str = ".", **ctx_overrides: Any) -> Any:
    return BashHandler("h", exec, base_dir=str(base_dir))(ctx(**ctx_overrides), data)


def fails(exec: str, data: Any = None, *, base_dir: Path | str = ".", **kw: Any) -> HandlerError:
    with pytest.raises(HandlerError) as info:
        run(exec, data, base_dir=base_dir, **kw)
    return info.value


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie counts as gone: containers may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, within_s: float = 2.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)


# --- modes -------------------------------------------------------------------------------------


def test_satisfies_handler_protocol() -> None:
    handler = BashHandler("greet", "echo '{}'")
    assert isinstance(handler, Handler)
    assert handler.name == "greet"


def test_inline_single_line() -> None:
    assert is_inline_script("echo '{\"ok\": true}'", ".")
    assert run("echo '{\"ok\": true}'") == {"ok": True}


def test_inline_multi_line() -> None:
    script = """
        a=2
        b=3
        echo "{\\"sum\\": $((a + b))}"
    """
    assert run(script) == {"sum": 5}


def test_inline_runs_in_the_callers_directory_with_stdin_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in the reference: where the user started the command, not the YAML file's directory.
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    assert run("jq -n --arg d \"$PWD\" '$d'", base_dir=tmp_path) == str(caller)
    # `cat` would block forever on a terminal or an inherited pipe; /dev/null gives EOF at once.
    assert "script produced no output" in str(fails("cat", timeout_s=5))


def test_file_script_without_execute_bit_relative_to_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = SCRIPTS / "echo_input.sh"
    assert not os.access(script, os.X_OK)
    assert not is_inline_script("echo_input.sh", str(SCRIPTS))
    monkeypatch.chdir(tmp_path)
    out = run("echo_input.sh", {"a": 1}, base_dir=SCRIPTS)
    # The script is found next to the YAML file but runs where the caller is; no `set -e` is
    # injected in file mode.
    assert out == {"input": '{"a":1}', "pwd": str(tmp_path), "step": "build", "after_false": True}


def test_workdir_is_relative_to_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "order.json").write_text('{"id": 7}')
    handler = BashHandler("h", "cat ./order.json", base_dir=str(tmp_path), workdir="data")
    assert handler(ctx(), {}) == {"id": 7}
    absolute = BashHandler("h", "jq -n --arg d \"$PWD\" '$d'", workdir=str(tmp_path))
    assert absolute(ctx(), {}) == str(tmp_path)
    missing = BashHandler("h", "echo 1", base_dir=str(tmp_path), workdir="nope")
    with pytest.raises(HandlerError, match=r"workdir .*nope is not a directory") as info:
        missing(ctx(), {})
    assert info.value.retryable is False


def test_file_script_falls_back_to_process_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(SCRIPTS)
    out = run("echo_input.sh", {}, base_dir=tmp_path)
    assert out["after_false"] is True
    assert out["pwd"] == str(SCRIPTS)


def test_missing_path_looking_script_is_a_clear_error(tmp_path: Path) -> None:
    for exec in ("./deploy.sh", "deploy.sh", "/nonexistent/deploy"):
        assert not is_inline_script(exec, str(tmp_path))
    err = fails("./deploy.sh", base_dir=tmp_path)
    assert str(err) == f"script file not found: {tmp_path / 'deploy.sh'}"
    assert err.retryable is False


def test_script_file_removed_after_construction(tmp_path: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text("echo '[1]'\n")
    handler = BashHandler("h", "step.sh", base_dir=str(tmp_path))
    assert handler(ctx(), None) == [1]
    script.unlink()
    with pytest.raises(HandlerError, match=r"^script file not found: .*step\.sh$"):
        handler(ctx(), None)


def test_inline_runs_with_set_e() -> None:
    err = fails("false\necho '{}'")
    assert str(err) == "script exited with code 1"
    assert str(fails("false; echo '{}'")) == "script exited with code 1"


# --- environment -------------------------------------------------------------------------------


def test_input_and_upper_cased_fields() -> None:
    data = {
        "name": "bob smith",
        "count": 3,
        "ratio": 1.5,
        "flag": True,
        "nested": {"a": 1, "b": [1, "x"]},
        "items": [1, 2],
        "nothing": None,
        "MixedCase": "m",
    }
    # Fields become variables the script names (here in a comment; see test_bash_hardening.py).
    env = run(DUMP_ENV + " # $NAME $COUNT $RATIO $FLAG $NESTED $ITEMS $NOTHING $MIXEDCASE", data)
    assert env["INPUT"] == json.dumps(data, separators=(",", ":"))
    assert env["NAME"] == "bob smith"
    assert env["COUNT"] == "3"
    assert env["RATIO"] == "1.5"
    assert env["FLAG"] == "true"
    assert env["NESTED"] == '{"a":1,"b":[1,"x"]}'
    assert env["ITEMS"] == "[1,2]"
    assert env["NOTHING"] == "null"
    assert env["MIXEDCASE"] == "m"


def test_non_object_input_sets_only_input() -> None:
    env = run(DUMP_ENV, [1, 2])
    assert env["INPUT"] == "[1,2]"
    assert run(DUMP_ENV, None)["INPUT"] == "null"


def test_input_cannot_override_protected_or_parent_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_PARENT_VAR", "from-parent")
    for name in ("IFS", "BASH_ENV", "ENV", "LD_PRELOAD", "SHELLOPTS", "PS4"):
        monkeypatch.delenv(name, raising=False)
    data = {
        "path": "/evil",
        "home": "/evil",
        "ifs": "x",
        "bash_env": "/evil.sh",
        "env": "/evil.sh",
        "ld_preload": "/evil.so",
        "ld_library_path": "/evil",
        "floxy_step_name": "evil",
        "floxy_compensation": "true",
        "input": "evil",
        "my_parent_var": "evil",
        "shellopts": "xtrace",
        "ps4": "$(echo evil >&2)",
        "bash_func_f%%": "() { :; }",
        "BASH_FUNC_g": "() { :; }",
    }
    names = " ".join(k.upper() for k in data)  # named by the script: only the guards keep them out
    env = run(f"{DUMP_ENV} # {names}", data)
    assert env["PATH"] == os.environ["PATH"]
    assert env.get("HOME") == os.environ.get("HOME")
    assert env["MY_PARENT_VAR"] == "from-parent"
    assert env["FLOXY_STEP_NAME"] == "build"
    assert env["INPUT"] == json.dumps(data, separators=(",", ":"))
    for name in (
        "IFS",
        "BASH_ENV",
        "ENV",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "FLOXY_COMPENSATION",
        "SHELLOPTS",
        "PS4",
        "BASH_FUNC_F%%",
        "BASH_FUNC_G",
    ):
        assert name not in env, name


def test_invalid_names_not_exported() -> None:
    data = {"my-var": 1, "1abc": 2, "with space": 3, "ünï": 4, "": 5, "ok_name": 6, "_x9": 7}
    env = run(DUMP_ENV + " # OK_NAME _X9 MY VAR 1ABC WITH SPACE", data)
    assert env["OK_NAME"] == "6"
    assert env["_X9"] == "7"
    for name in ("MY-VAR", "1ABC", "WITH SPACE", "ÜNÏ", ""):
        assert name not in env, name


def test_parent_bash_env_is_not_sourced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc = tmp_path / "rc.sh"
    rc.write_text("echo polluted\n")
    monkeypatch.setenv("BASH_ENV", str(rc))
    monkeypatch.setenv("ENV", str(rc))
    env = run(DUMP_ENV, {})
    assert "BASH_ENV" not in env
    assert "ENV" not in env


def test_floxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOXY_STEP_NAME", "from-parent")
    monkeypatch.setenv("FLOXY_COMPENSATION", "true")
    env = run(DUMP_ENV, {})
    assert env["FLOXY_INSTANCE_ID"] == "42"
    assert env["FLOXY_WORKFLOW_ID"] == "flow-v1"
    assert env["FLOXY_STEP_NAME"] == "build"
    assert env["FLOXY_IDEMPOTENCY_KEY"] == "0b8e3c1e-1111-4222-8333-944455556666"
    assert env["FLOXY_RETRY_COUNT"] == "2"
    assert env["FLOXY_DEBUG"] == "false"
    assert "FLOXY_COMPENSATION" not in env

    env = run(DUMP_ENV, {}, compensation=True, debug=True, retry_count=0)
    assert env["FLOXY_COMPENSATION"] == "true"
    assert env["FLOXY_DEBUG"] == "true"
    assert env["FLOXY_RETRY_COUNT"] == "0"


# --- output ------------------------------------------------------------------------------------


def test_pretty_printed_multi_line_json() -> None:
    assert run("jq -n '{a: 1, b: [1, 2], c: {d: null}}'") == {"a": 1, "b": [1, 2], "c": {"d": None}}
    assert run("echo '  \"just a string\"  '") == "just a string"
    assert run("echo 7") == 7


def test_non_json_output() -> None:
    message = str(fails("echo hello world"))
    assert message.startswith("script output is not valid JSON: ")
    assert message.endswith("\nOutput: hello world\n")


def test_long_non_json_output_is_cut_to_500_chars() -> None:
    message = str(fails("head -c 2000 /dev/zero | tr '\\0' x"))
    assert message.endswith("\nOutput: " + "x" * 500)


def test_two_json_values_fail() -> None:
    message = str(fails("echo '{}'; echo '{}'"))
    assert message.startswith("script output is not valid JSON: Extra data")
    assert "not valid JSON" in str(fails("echo '{} trailing'"))
    assert "not valid JSON" in str(fails("echo NaN"))


def test_empty_output() -> None:
    assert str(fails("true")) == "script produced no output"
    assert str(fails("printf '  \\n\\t\\n'")) == "script produced no output"


def test_non_zero_exit_reports_stderr() -> None:
    err = fails("echo '{}'; echo first >&2; echo boom >&2; exit 3")
    assert str(err) == "script exited with code 3\nStderr: first\nboom"
    assert err.stderr == "first\nboom\n"
    assert err.retryable is True
    assert str(fails("exit 4")) == "script exited with code 4"


def test_stderr_tail_in_message_is_limited() -> None:
    err = fails("head -c 5000 /dev/zero | tr '\\0' e >&2; echo END >&2; exit 1")
    tail = str(err).split("\nStderr: ", 1)[1]
    assert len(tail) == 2000
    assert tail.endswith("eeeEND")


def test_non_utf8_output_is_replaced_as_in_the_reference() -> None:
    assert run("printf '\"a\\xff\\xfeb\"'") == "a\ufffd\ufffdb"


def test_stdout_over_cap_kills_the_script() -> None:
    handler = BashHandler("h", "yes '\"x\"'", max_output_bytes=1024)
    started = time.monotonic()
    with pytest.raises(HandlerError) as info:
        handler(ctx(timeout_s=10), None)
    assert str(info.value) == "script output exceeds 1 KiB limit"
    assert time.monotonic() - started < 5


def test_stdout_at_cap_is_accepted() -> None:
    handler = BashHandler(
        "h", "printf '\"%s\"' \"$(head -c 1022 /dev/zero | tr '\\0' a)\"", max_output_bytes=1024
    )
    assert handler(ctx(), None) == "a" * 1022


def test_stderr_over_cap_keeps_the_tail_behind_a_marker() -> None:
    handler = BashHandler(
        "h", "head -c 5000 /dev/zero | tr '\\0' e >&2; echo TAIL >&2; exit 2", max_stderr_bytes=1024
    )
    with pytest.raises(HandlerError) as info:
        handler(ctx(), None)
    assert str(info.value).startswith("script exited with code 2")
    marker = "[floxy: 3981 earlier bytes of stderr cut]\n"
    assert info.value.stderr == marker + "e" * 1019 + "TAIL\n"

    ok = BashHandler("h", "head -c 5000 /dev/zero >&2; echo '{}'", max_stderr_bytes=1024)
    assert ok(ctx(), None) == {}


# --- stopping ----------------------------------------------------------------------------------


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 100 & echo $! > {pidfile}\nsleep 100 | cat"
    started = time.monotonic()
    err = fails(script, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert isinstance(err, HandlerTimeout)
    assert str(err) == "script timed out after 0.5s"
    assert err.retryable is True
    assert 0.45 < elapsed < 2
    grandchild = int(pidfile.read_text())
    assert wait_gone(grandchild), f"background sleep {grandchild} survived the timeout"


def test_interrupt_stops_the_script_quickly(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    context = ctx()
    set_at: list[float] = []

    def cancel() -> None:
        time.sleep(0.3)
        set_at.append(time.monotonic())
        context.interrupt.set()

    threading.Thread(target=cancel, daemon=True).start()
    with pytest.raises(HandlerError) as info:
        BashHandler("h", f"sleep 100 & echo $! > {pidfile}; wait")(context, {})
    latency = time.monotonic() - set_at[0]
    assert str(info.value) == "script interrupted: instance cancelled"
    assert not isinstance(info.value, HandlerTimeout)
    assert info.value.retryable is False
    assert latency < 0.25
    assert wait_gone(int(pidfile.read_text()))


def test_already_interrupted_does_not_start(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    context = ctx()
    context.interrupt.set()
    with pytest.raises(HandlerError, match="interrupted"):
        BashHandler("h", f"touch {marker}; echo '{{}}'")(context, None)
    assert not marker.exists()


def test_background_process_holding_stdout_does_not_block_result(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    try:
        assert run(f"sleep 30 & echo $! > {pidfile}; echo '{{}}'", timeout_s=10) == {}
        assert time.monotonic() - started < 2
    finally:
        os.kill(int(pidfile.read_text()), 9)


# --- debug -------------------------------------------------------------------------------------


def test_debug_log() -> None:
    lines: list[str] = []
    handler = BashHandler(
        "dbg", "echo warn1 >&2; echo warn2 >&2; echo '[1]'", debug_log=lines.append
    )
    assert handler(ctx(debug=False), {"a": 1}) == [1]
    assert lines == []
    handler(ctx(debug=True), {"a": 1})
    assert lines == [
        "[DEBUG] handler 'dbg' input: {\"a\":1}",
        "[DEBUG] handler 'dbg' output: [1]",
        "[DEBUG] handler 'dbg' stderr: warn1",
        "[DEBUG] handler 'dbg' stderr: warn2",
    ]
