"""The bash handler: runs an inline script or a script file with the step input in the environment.

Contract (DECISIONS.md "Bash handler environment", which wins over the reference, spec §15.1):

* The script runs in the working directory of the process that runs it (``floxyctl run``'s
  caller, floxyd's own), as in the reference, or in the handler's ``workdir:`` (relative to the
  YAML file's directory).
* ``exec`` naming an existing file (relative to the YAML file's directory, else to the process cwd
  as the reference did) runs as ``bash <file>``; anything else is an inline script run with
  ``set -e`` — single-line too, fixing the reference quirk. A path-looking ``exec`` that names no
  file fails with ``script file not found`` instead of being run as a command.
* The child starts from the parent environment minus floxy's own settings and the database
  credentials (every ``FLOXY_*``, ``PGPASSWORD``, ``PG_PASSWORD``, ``PGPASSFILE``). ``INPUT``
  holds the input as compact JSON. A top-level field of an object input becomes an upper-cased
  variable only when the handler allows that name (`InputEnv`): by default a name the script
  itself spells out, so a field can never set a variable that only some program the script runs
  reads (``PYTHONWARNINGS``, ``PERL5OPT``, ``NODE_OPTIONS``...). A field never overrides what the
  parent has, nor anything that changes how bash itself runs.
* Stdout and stderr are read in large chunks, waking at most every ``_COALESCE_S`` while small
  writes trickle in, so a handler spewing to stderr costs floxy little CPU; stderr keeps its last
  ``max_stderr_bytes`` behind a marker saying how much was cut.
* Both streams are also reported to ``ctx.capture`` (kept with the step, bounded there).
* Stdout must be exactly one JSON value. The script runs in its own session so that a timeout or a
  cancel kills the whole process group, grandchildren included.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Collection

from floxy_core import values
from floxy_core.errors import HandlerError, HandlerTimeout, UnstorableValue
from floxy_core.model import JSON
from floxy_core.ports import StepContext

__all__ = ["BashHandler", "is_inline_script"]

_KIB = 1024
_MIB = 1024 * 1024

_SLICE_S = 0.05
"""How often a waiting handler looks at the interrupt event (cancel must act within ~100 ms)."""

_EXIT_GRACE_S = 0.1
"""After bash exits, how long to keep reading pipes a background process still holds open."""

_READ_CHUNK = _MIB
"""Reads take up to this much: what a pipe enlarged to `_PIPE_SIZE` can hold."""

_PIPE_SIZE = _MIB
"""Asked of the kernel for each pipe (Linux's default `pipe-max-size`), so that a pause of
`_COALESCE_S` throttles a handler only past 50 MiB/s."""

_COALESCE_S = 0.02
"""After a read that emptied a pipe, wait this long (for the exit only) before reading again:
a handler writing a few bytes at a time otherwise wakes floxy for each write."""

_OUTPUT_PREVIEW = 500
_STDERR_TAIL = 2000
DEFAULT_MAX_STDERR_BYTES = _MIB
"""How much of a call's stderr is kept: the tail, where errors are."""

_VALID_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCRIPT_READ_LIMIT = 4 * _MIB
"""How much of a script file is searched for the names it uses."""

_CREDENTIALS = frozenset({"PGPASSWORD", "PG_PASSWORD", "PGPASSFILE"})
"""libpq's credentials: never the handler's, whoever started floxy with them."""

InputEnv = bool | Collection[str]
"""`input_env` of a bash handler: True (default) exports the fields the script names, False
none, a list exactly the (upper-case) names listed."""

_PROTECTED_NAMES = frozenset(
    {
        # DECISIONS.md
        "INPUT",
        "PATH",
        "HOME",
        "IFS",
        "BASH_ENV",
        "ENV",
        "SHELL",
        # Also read by bash at start-up or while running: they would let input change how the
        # script runs (e.g. SHELLOPTS=xtrace with a PS4 holding a command substitution).
        "BASHOPTS",
        "SHELLOPTS",
        "PS4",
        "POSIXLY_CORRECT",
        "GLOBIGNORE",
        "CDPATH",
        "EXECIGNORE",
        "FUNCNEST",
        "TMOUT",
        # Read by the C library of every program the script starts.
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "GLIBC_TUNABLES",
    }
)
_PROTECTED_PREFIXES = ("FLOXY_", "LD_", "BASH_")


def _resolve_script(exec: str, base_dir: str) -> str | None:
    """Absolute path of the existing file `exec` names, or None when it names no file."""
    if not exec or "\n" in exec:
        return None
    if os.path.isabs(exec):
        return exec if os.path.isfile(exec) else None
    for root in (base_dir, os.getcwd()):
        candidate = os.path.join(root, exec)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def _looks_like_path(exec: str) -> bool:
    """True for an `exec` surely meant as a script file, so a missing file is an error."""
    if not exec or any(c.isspace() for c in exec):
        return False
    return exec.endswith(".sh") or exec.startswith(("./", "../", "/"))


def is_inline_script(exec: str, base_dir: str) -> bool:
    """Whether `exec` runs as an inline script (True) or as a script file (False)."""
    stripped = exec.strip()
    if _resolve_script(stripped, base_dir) is not None:
        return False
    return not _looks_like_path(stripped)


def _is_protected(name: str) -> bool:
    return name in _PROTECTED_NAMES or name.startswith(_PROTECTED_PREFIXES)


def _compact(value: JSON) -> str:
    return values.dumps(value)


def _field_value(value: JSON) -> str:
    """Strings as they are, everything else (null included) as compact JSON."""
    if isinstance(value, str):
        return value
    return _compact(value)


def _format_size(n: int) -> str:
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MiB"
    if n >= _KIB and n % _KIB == 0:
        return f"{n // _KIB} KiB"
    return f"{n} bytes"


class BashHandler:
    """A `Handler` running a bash script; see the module docstring for the contract."""

    def __init__(
        self,
        name: str,
        exec: str,
        *,
        base_dir: str = ".",
        workdir: str | None = None,
        max_output_bytes: int = 16 * _MIB,
        max_stderr_bytes: int = DEFAULT_MAX_STDERR_BYTES,
        input_env: InputEnv = True,
        debug_log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.exec = exec.strip()
        self.base_dir = os.path.abspath(base_dir)
        self.workdir = None if workdir is None else os.path.join(self.base_dir, workdir)
        """Where the script runs: `workdir:` (relative to the YAML file), else the process's own
        working directory, as in the reference."""
        self.max_output_bytes = max_output_bytes
        self.max_stderr_bytes = max_stderr_bytes
        self.input_env: bool | frozenset[str] = (
            input_env if isinstance(input_env, bool) else frozenset(input_env)
        )
        self._words_of: tuple[tuple[int, int], frozenset[str]] | None = None
        self._debug_log = debug_log
        # Resolved once: a PATH search per call would cost a few failed execve calls.
        self._bash = _which_bash()
        script = _resolve_script(self.exec, self.base_dir)
        self.inline = script is None and not _looks_like_path(self.exec)
        self.script_path: str | None = None
        if not self.inline:
            self.script_path = script or os.path.normpath(os.path.join(self.base_dir, self.exec))
        else:
            self._words_of = ((0, 0), frozenset(_WORD.findall(self.exec)))

    def __repr__(self) -> str:
        what = "inline" if self.inline else self.script_path
        return f"BashHandler({self.name!r}, {what})"

    def __call__(self, ctx: StepContext, data: JSON) -> JSON:
        if ctx.interrupt.is_set():
            raise HandlerError("script interrupted: instance cancelled", retryable=False)
        if self.inline:
            # `-e` is `set -e` without shifting the script's line numbers in bash's messages.
            argv = [self._bash, "-e", "-c", self.exec, self.name]
        else:
            assert self.script_path is not None
            if not os.path.isfile(self.script_path):
                raise HandlerError(f"script file not found: {self.script_path}", retryable=False)
            argv = [self._bash, self.script_path]

        input_json = _compact(data)
        debug = self._debug_log if ctx.debug else None
        if debug is not None:
            debug(f"[DEBUG] handler '{self.name}' input: {input_json}")

        returncode, out, err = self._run(argv, self._environment(ctx, data, input_json), ctx)
        ctx.capture.exit_code = returncode

        stderr = err.decode("utf-8", errors="replace")
        if debug is not None:
            debug(f"[DEBUG] handler '{self.name}' output: {out.decode('utf-8', 'replace').strip()}")
            for line in stderr.splitlines():
                debug(f"[DEBUG] handler '{self.name}' stderr: {line}")
        return self._result(returncode, out, stderr)

    def _environment(self, ctx: StepContext, data: JSON, input_json: str) -> dict[str, str]:
        """The child's environment: parent env without floxy's own, allowed input fields, engine
        vars."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLOXY_") and k not in _CREDENTIALS
        }
        # Nothing may run before the script.
        for name in ("BASH_ENV", "ENV"):
            env.pop(name, None)
        if isinstance(data, dict) and self.input_env is not False:
            allowed = self._allowed_names()
            for key, value in data.items():
                if not key.isascii():  # "ſ".upper() is "S": only ASCII names upper-case safely
                    continue
                name = key.upper()
                if name not in allowed or name in env or _is_protected(name):
                    continue
                if not _VALID_NAME.fullmatch(name):
                    continue
                text = _field_value(value)
                if "\0" not in text:  # not representable in an environment; INPUT still has it
                    env[name] = text
        env["INPUT"] = input_json
        env["FLOXY_INSTANCE_ID"] = str(ctx.instance_id)
        env["FLOXY_WORKFLOW_ID"] = ctx.workflow_id
        env["FLOXY_STEP_NAME"] = ctx.step_name
        env["FLOXY_IDEMPOTENCY_KEY"] = ctx.idempotency_key
        env["FLOXY_RETRY_COUNT"] = str(ctx.retry_count)
        env["FLOXY_DEBUG"] = "true" if ctx.debug else "false"
        if ctx.compensation:
            env["FLOXY_COMPENSATION"] = "true"
        return env

    def _allowed_names(self) -> Collection[str]:
        """The variable names input fields may set: listed, or the words of the script."""
        if not isinstance(self.input_env, bool):
            return self.input_env
        if self.script_path is None:
            assert self._words_of is not None
            return self._words_of[1]
        try:
            info = os.stat(self.script_path)
            key = (info.st_mtime_ns, info.st_size)
            if self._words_of is None or self._words_of[0] != key:
                with open(self.script_path, "rb") as f:
                    text = f.read(_SCRIPT_READ_LIMIT).decode("utf-8", errors="replace")
                self._words_of = (key, frozenset(_WORD.findall(text)))
        except OSError:
            return frozenset()  # bash reports the missing or unreadable file itself
        return self._words_of[1]

    def _run(
        self, argv: list[str], env: dict[str, str], ctx: StepContext
    ) -> tuple[int, bytes, bytes]:
        """Start the script in its own session and collect (exit code, stdout, stderr)."""
        try:
            proc = subprocess.Popen(
                _guarded(argv, ctx.timeout_s),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        except (UnicodeEncodeError, ValueError) as exc:
            raise HandlerError(
                f"cannot pass the step input to the script: {exc}", retryable=False
            ) from exc
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise HandlerError(
                    "cannot start script: the step input is too large to pass in the environment "
                    f"({exc.strerror})",
                    retryable=False,
                ) from exc
            if self.workdir is not None and not os.path.isdir(self.workdir):
                raise HandlerError(
                    f"cannot start script: workdir {self.workdir} is not a directory",
                    retryable=False,
                ) from exc
            raise HandlerError(f"cannot start script: {exc}") from exc
        try:
            return self._collect(proc, ctx)
        except BaseException:
            # Interrupted, timed out, over a cap, or an exception of ours: leave nothing behind,
            # and return only once the whole group is gone, so that a compensation never starts
            # while a process of the call it undoes still runs.
            _kill_group(proc)
            proc.wait()
            _await_group_exit(proc.pid)
            raise
        finally:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()

    def _collect(self, proc: subprocess.Popen[bytes], ctx: StepContext) -> tuple[int, bytes, bytes]:
        """Read both pipes until bash exits, without spinning; enforce caps, timeout, interrupt."""
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        for fd in (out_fd, err_fd):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        out, err = bytearray(), _Tail(self.max_stderr_bytes)
        scratch = bytearray(_READ_CHUNK)
        view = memoryview(scratch)
        cap = self.max_output_bytes
        poller = select.poll()
        poller.register(out_fd, select.POLLIN)
        poller.register(err_fd, select.POLLIN)
        open_pipes = 2
        exit_poller = select.poll()
        try:
            # Becomes readable when bash exits, so the loop sleeps in poll() for everything.
            pidfd = os.pidfd_open(proc.pid)
            poller.register(pidfd, select.POLLIN)
            exit_poller.register(pidfd, select.POLLIN)
        except (AttributeError, OSError):
            pidfd = -1
        timeout = ctx.timeout_s if ctx.timeout_s is not None and ctx.timeout_s > 0 else None
        deadline = None if timeout is None else time.monotonic() + timeout
        exited_at: float | None = None
        pause = False
        try:
            while True:
                now = time.monotonic()
                if ctx.interrupt.is_set():
                    _kill_group(proc)
                    raise HandlerError(
                        "script interrupted: instance cancelled",
                        retryable=False,
                        stderr=err.text(),
                    )
                if deadline is not None and now >= deadline:
                    _kill_group(proc)
                    raise HandlerTimeout(f"script timed out after {timeout:g}s", stderr=err.text())
                if exited_at is not None and (open_pipes == 0 or now - exited_at >= _EXIT_GRACE_S):
                    # Pipes still open after the grace belong to a background process the script
                    # left behind; the step's result does not wait for it.
                    break
                wait_s = _SLICE_S if deadline is None else min(_SLICE_S, deadline - now)
                if pause and exited_at is None and pidfd >= 0:
                    # Let small writes pile up in the pipe; the exit still wakes us at once.
                    pause_ms = max(1, int(min(_COALESCE_S, wait_s) * 1000))
                    if exit_poller.poll(pause_ms):
                        poller.unregister(pidfd)
                        exited_at = time.monotonic()
                pause = False
                if open_pipes == 0 and pidfd < 0:
                    try:
                        proc.wait(wait_s)
                    except subprocess.TimeoutExpired:
                        continue
                    exited_at = time.monotonic()
                    continue
                for fd, _event in poller.poll(max(1, int(wait_s * 1000))):
                    if fd == pidfd:
                        poller.unregister(pidfd)
                        exited_at = time.monotonic()
                        continue
                    n = os.readv(fd, [scratch])  # no 1 MiB allocation per read
                    if not n:
                        poller.unregister(fd)
                        open_pipes -= 1
                        continue
                    pause = pause or n < _READ_CHUNK
                    chunk = view[:n]
                    if fd == out_fd:
                        out += chunk
                        if len(out) > cap:
                            _kill_group(proc)
                            raise HandlerError(
                                f"script output exceeds {_format_size(cap)} limit",
                                stderr=err.text(),
                            )
                    else:
                        err.add(chunk)
                if pidfd < 0 and exited_at is None and open_pipes > 0 and proc.poll() is not None:
                    exited_at = time.monotonic()
        finally:
            if pidfd >= 0:
                os.close(pidfd)
            # Kept with the step whatever ended the call (floxy_core.capture bounds both).
            ctx.capture.write("stdout", out)
            ctx.capture.write("stderr", err.buf, cut_before=err.cut)
        return proc.wait(), bytes(out), err.value()

    def _result(self, returncode: int, out: bytes, stderr: str) -> JSON:
        """Turn a finished run into the step output, or the error the reference would give."""
        if returncode != 0:
            if returncode < 0:
                try:
                    signame = signal.Signals(-returncode).name
                except ValueError:
                    signame = str(-returncode)
                message = f"script killed by signal {signame}"
            else:
                message = f"script exited with code {returncode}"
            tail = stderr.rstrip()[-_STDERR_TAIL:]
            if tail:
                message += f"\nStderr: {tail}"
            raise HandlerError(message, stderr=stderr)
        # Invalid UTF-8 becomes U+FFFD, as in the reference (values.py).
        text = out.decode("utf-8", errors="replace")
        if not text.strip():
            raise HandlerError("script produced no output", stderr=stderr)
        try:
            return values.loads(text, lenient=True)
        except ValueError as exc:
            raise HandlerError(
                f"script output is not valid JSON: {exc}\nOutput: {text[:_OUTPUT_PREVIEW]}",
                stderr=stderr,
            ) from exc
        except UnstorableValue as exc:
            raise HandlerError(f"script output cannot be stored: {exc}", stderr=stderr) from exc


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the script's whole process group (it leads its own session), grandchildren too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


_GROUP_EXIT_WAIT_S = 5.0
"""How long a killed group may take to vanish; its members' exit is asynchronous to SIGKILL."""


def _await_group_exit(pgid: int) -> None:
    """Wait until no process of the group runs (the leader's exit does not mean the script's:
    the guard leads the group, and bash and its children die a moment later). A zombie counts
    as gone: it runs nothing, and who reaps it (here PID 1, whenever it likes) is not ours."""
    deadline = time.monotonic() + _GROUP_EXIT_WAIT_S
    delay = 0.001
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or no longer ours to wait for
            return
        if not _group_runs(pgid):
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _group_runs(pgid: int) -> bool:
    """Whether a process of the group is anything but a zombie (Linux `/proc`; elsewhere the
    group counts as running until `killpg` says it is gone)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


class _Tail:
    """The last `limit` bytes of a stream, trimmed in amortised O(1), with a marker when cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.cut = 0

    def add(self, chunk: bytes | memoryview) -> None:
        self.buf += chunk
        if len(self.buf) > 2 * self.limit:  # trim rarely: a spewing handler costs one copy per cap
            drop = len(self.buf) - self.limit
            del self.buf[:drop]
            self.cut += drop

    def value(self) -> bytes:
        extra = max(0, len(self.buf) - self.limit)
        cut = self.cut + extra
        if not cut:
            return bytes(self.buf)
        return f"[floxy: {cut} earlier bytes of stderr cut]\n".encode() + self.buf[extra:]

    def text(self) -> str:
        return self.value().decode("utf-8", errors="replace")


def _which_bash() -> str:
    """`shutil.which("bash") or "bash"`; shutil itself would cost `floxyctl run` 1.5 ms."""
    path = os.environ.get("PATH")
    if path is None:
        path = os.confstr("CS_PATH") or os.defpath
    for directory in path.split(os.pathsep) if path else ():
        candidate = os.path.join(directory or ".", "bash")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return "bash"


_GUARD_SLACK_S = 2.0
"""The guard's own deadline trails the step's timeout: normally this process enforces it."""


def _guarded(argv: list[str], timeout_s: float | None) -> list[str]:
    """`argv` behind a guard that kills the script's process group when this worker dies, and
    at the step's timeout even while the worker is frozen (SIGSTOP) and cannot enforce it.

    `setpriv --pdeathsig TERM` sets the Linux parent-death signal and execs GNU `timeout`, which
    leads the script's process group: on that signal (or its deadline) it signals the whole
    group, SIGKILL one second later. The parent is the thread that spawns, and it waits for the
    script, so the guard fires only when the worker process is gone. Two execs (~2 ms) instead of
    a `preexec_fn`, which would make subprocess fork the whole worker (~8 ms). Without either tool
    the script runs unguarded.
    """
    tools = _guard_tools()
    if tools is None:
        return argv
    setpriv, timeout = tools
    deadline = f"{timeout_s + _GUARD_SLACK_S:g}" if timeout_s is not None and timeout_s > 0 else "0"
    return [setpriv, "--pdeathsig", "TERM", timeout, "-k", "1", "-s", "KILL", deadline, *argv]


_GUARD: list[tuple[str, str] | None] = []


def _guard_tools() -> tuple[str, str] | None:
    """Paths of `setpriv` and `timeout` (looked up once; None when either is missing)."""
    if not _GUARD:
        found = [_which(name) for name in ("setpriv", "timeout")]
        _GUARD.append((found[0], found[1]) if found[0] and found[1] else None)
    return _GUARD[0]


def _which(name: str) -> str | None:
    for directory in (os.environ.get("PATH") or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None
