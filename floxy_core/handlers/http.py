"""The HTTP handler: POSTs the step to a URL and takes the JSON response as the step output.

Contract (spec §15.2, with the changes the port makes on purpose):

* Always ``POST <url>`` with ``{"metadata": {...}, "data": <input>}``. ``metadata`` starts with
  the engine's fields (instance, workflow, step, idempotency key, retry count) and then the step
  metadata (``exec``, ``reason: compensation``...), which wins on a clash as it did in the
  reference, where it was all the server saw. The same engine fields travel as ``X-Floxy-*``
  headers so that a server can deduplicate without parsing the body.
* The call is bounded by the step timeout, else ``default_timeout_s``: the handler's own
  ``timeout`` from the YAML, else the reference's fixed 30 s. The bound is a wall-clock deadline
  for the whole call (connect, TLS, sending, headers, body, redirects): every socket operation
  waits at most what is left of it (`_DeadlineBackend`), so a server trickling its headers a
  byte at a time cannot hold a worker past the timeout.
* Credentials stay with their origin: ``${NAME}`` in the URL is replaced from the environment at
  call time (an unset name fails the call); the expanded URL is used for the request only. The
  URL is shown (errors, ``-D`` output, ``metadata.exec`` in the body) with its password masked,
  and an ``Authorization`` header never follows a redirect to another origin.
* Errors say whether a retry may help: a 4xx other than 408/425/429 is the server refusing the
  request, so it is not retried; transport errors, timeouts and 5xx are. 429/503 carry the parsed
  ``Retry-After`` on `HttpStatusError` for the engine's back-off.
* The response body is read as a stream and abandoned at ``max_body_bytes``, so a runaway server
  cannot exhaust memory.
* Redirects are followed, as Go's default client did.
* The call's log (``ctx.capture``) holds the response's status line and the body read, as
  "stdout": what an operator looks at when a call went wrong; stderr stays empty.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from floxy_core import __version__, values
from floxy_core.errors import HandlerError, HandlerTimeout, UnstorableValue
from floxy_core.model import JSON, TLSConfig
from floxy_core.ports import StepContext
from floxy_core.secrets import redact

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_TIMEOUT_S", "HttpHandler", "HttpStatusError"]

_MIB = 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 16 * _MIB
DEFAULT_TIMEOUT_S = 30.0
"""The limit of a call when neither the step nor the handler sets a `timeout` (as the reference)."""

_BODY_PREVIEW = 500
"""How much of a response body an error message quotes."""

_ERROR_BODY_READ = 4096
"""How much of a non-2xx body is read: only its start is ever shown."""

_DEBUG_PREVIEW = 4096

_RETRYABLE_4XX = frozenset({408, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})


class HttpStatusError(HandlerError):
    """The server answered with a status outside 2xx.

    `retry_after_s` is the server's ``Retry-After`` (429/503 only) in seconds from now, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after_s: float | None = None,
        retryable: bool = True,
        body: str = "",
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s
        self.body = body


def _is_retryable_status(status: int) -> bool:
    return not (400 <= status < 500 and status not in _RETRYABLE_4XX)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date); None if unusable.

    A date in the past gives 0: the server allows a retry now.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""`${NAME}` in a URL: replaced from the environment at call time, never stored expanded."""


def url_references(url: str) -> list[str]:
    """The environment variables a URL refers to with `${NAME}`."""
    return _REFERENCE.findall(url)


def _expand(url: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`url` with its references replaced, and the values put in (kept out of messages)."""
    values: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HandlerError(
                f"the URL {redact(url)} refers to ${{{name}}}, which is not set in the "
                "environment of this process",
                retryable=False,
            )
        values.append(env[name])
        return env[name]

    return _REFERENCE.sub(value, url), values


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _preview(body: bytes, limit: int = _BODY_PREVIEW) -> str:
    return body.decode("utf-8", errors="replace")[:limit]


def _format_size(n: int) -> str:
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


def _no_password() -> str:
    """Refuse an encrypted key: OpenSSL would otherwise prompt on the terminal."""
    raise ValueError("the private key is encrypted; floxy cannot supply a password")


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The client `SSLContext` for `tls`; any load problem is a `HandlerError` naming the file."""
    import ssl

    import httpx

    if tls.ca_file:
        try:
            with open(tls.ca_file, "rb") as f:
                pem = f.read()
        except OSError as exc:
            raise HandlerError(
                f"failed to read CA certificate {tls.ca_file}: {exc.strerror or exc}",
                retryable=False,
            ) from exc
        try:
            # Only this bundle is trusted: the system roots are replaced, as in the reference.
            context = ssl.create_default_context(cadata=pem.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise HandlerError(
                f"failed to parse CA certificate {tls.ca_file}: {exc}", retryable=False
            ) from exc
    else:
        context = httpx.create_ssl_context()
    if tls.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.key_file and not tls.cert_file:
        raise HandlerError(
            f"failed to load client certificate: key_file {tls.key_file} given without cert_file",
            retryable=False,
        )
    if tls.cert_file:
        for path in (tls.cert_file, tls.key_file):
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise HandlerError(
                    f"failed to load client certificate {path}: {exc.strerror or exc}",
                    retryable=False,
                ) from exc
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file or None, password=_no_password)
        except (ssl.SSLError, ValueError, OSError) as exc:
            files = tls.cert_file if not tls.key_file else f"{tls.cert_file} (key {tls.key_file})"
            raise HandlerError(
                f"failed to load client certificate {files}: {exc}", retryable=False
            ) from exc
    return context


class HttpHandler:
    """A `Handler` calling a web service; see the module docstring for the contract.

    One `httpx.Client` per handler keeps a connection pool across calls; the client is safe to
    share between worker threads. Call `close` when the handler is no longer needed.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        tls: TLSConfig | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        debug_log: Callable[[str], None] | None = None,
    ) -> None:
        # Imported here: the CLI loads every handler module, most runs never make an HTTP call.
        import httpx

        self.name = name
        self.url = url.strip()
        self.default_timeout_s = default_timeout_s
        self.max_body_bytes = max_body_bytes
        self._debug_log = debug_log
        self._shown_url = redact(self.url)
        try:
            # `${NAME}` is checked after expansion, per call; here it stands for a plain word.
            parsed = httpx.URL(_REFERENCE.sub("x", self.url))
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise HandlerError(f"invalid URL {self._shown_url!r}: {exc}", retryable=False) from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise HandlerError(
                f"invalid URL {self._shown_url!r}: expected http:// or https:// with a host",
                retryable=False,
            )
        # http:// ignores TLS, so a broken global TLS block cannot break a plain-HTTP handler.
        verify: ssl.SSLContext | bool = True
        if tls is not None and parsed.scheme == "https":
            verify = _ssl_context(tls)
        self._client: httpx.Client = httpx.Client(
            verify=verify,
            follow_redirects=True,
            headers={"User-Agent": f"floxy/{__version__}"},
            event_hooks={"request": [_strip_foreign_authorization]},
        )
        _honour_deadline(self._client)

    def __repr__(self) -> str:
        return f"HttpHandler({self.name!r}, {self._shown_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> HttpHandler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __call__(self, ctx: StepContext, data: JSON) -> JSON:
        """POST the step and return the response JSON.

        Interruption is checked before sending only. httpx's sync API has no way to abort a
        request from another thread (closing a pooled socket under it is unsafe), and once the
        request is sent the server may already be acting on it, so dropping the answer would
        lose information; the request stays bounded by its timeout.
        """
        import httpx

        if ctx.interrupt.is_set():
            raise HandlerError("HTTP request not sent: instance cancelled", retryable=False)
        url, values = _expand(self.url, os.environ) if "${" in self.url else (self.url, [])
        body = self._request_body(ctx, data)
        debug = self._debug_log if ctx.debug else None
        if debug is not None:
            debug(
                f"[DEBUG] handler '{self.name}' request: POST {self._shown_url} "
                f"{body.decode('utf-8')}"
            )
        timeout = ctx.timeout_s if ctx.timeout_s is not None and ctx.timeout_s > 0 else None
        if timeout is None:
            timeout = self.default_timeout_s
        deadline = time.monotonic() + timeout
        # Bytes throughout: a non-ASCII step name goes out as UTF-8 (as Go does) instead of failing.
        headers = {
            b"Content-Type": b"application/json",
            b"X-Floxy-Instance-ID": str(ctx.instance_id).encode("ascii"),
            b"X-Floxy-Step-Name": ctx.step_name.encode("utf-8"),
            b"X-Floxy-Idempotency-Key": ctx.idempotency_key.encode("utf-8"),
            b"X-Floxy-Retry-Count": str(ctx.retry_count).encode("ascii"),
        }
        _deadline.at = deadline
        try:
            with self._client.stream(
                "POST",
                url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(timeout),
                extensions={"floxy_origin": _origin(httpx.URL(url))},
            ) as response:
                status = response.status_code
                ok = 200 <= status < 300
                # The call's log (floxy_core.capture): the status line, then the body read.
                ctx.capture.exit_code = status
                reason = response.reason_phrase or ""
                ctx.capture.write("stdout", f"{response.http_version} {status} {reason}\n")
                content = self._read_body(response, ok=ok, deadline=deadline, timeout=timeout)
                ctx.capture.write("stdout", content)
                retry_after = response.headers.get("Retry-After")
        except httpx.TimeoutException as exc:
            raise HandlerTimeout(
                f"HTTP request to {self._shown_url} timed out after {timeout:g}s"
            ) from exc
        except httpx.HTTPError as exc:  # connection refused, TLS failure, protocol error...
            text = redact(str(exc))
            if not text or any(v and v in text for v in values):  # never show what ${NAME} held
                text = type(exc).__name__
            raise HandlerError(f"HTTP request to {self._shown_url} failed: {text}") from exc
        finally:
            _deadline.at = None
        if debug is not None:
            debug(
                f"[DEBUG] handler '{self.name}' response: HTTP {status} "
                f"{_preview(content, _DEBUG_PREVIEW)}"
            )
        if not ok:
            raise self._status_error(status, content, retry_after)
        return self._parse(content)

    def _request_body(self, ctx: StepContext, data: JSON) -> bytes:
        metadata: dict[str, Any] = {
            "instance_id": ctx.instance_id,
            "workflow_id": ctx.workflow_id,
            "step_name": ctx.step_name,
            "idempotency_key": ctx.idempotency_key,
            "retry_count": ctx.retry_count,
        }
        metadata.update(_plain(ctx.metadata))
        if isinstance(metadata.get("exec"), str):  # a definition stored before masking existed
            metadata["exec"] = redact(metadata["exec"])
        try:
            text = values.dumps({"metadata": metadata, "data": data})
        except (TypeError, ValueError) as exc:
            raise HandlerError(
                f"cannot encode the HTTP request body as JSON: {exc}", retryable=False
            ) from exc
        return text.encode("utf-8")

    def _read_body(
        self, response: httpx.Response, *, ok: bool, deadline: float, timeout: float
    ) -> bytes:
        """The body, stopping at the size cap (2xx) or at the part an error message shows."""
        limit = self.max_body_bytes if ok else _ERROR_BODY_READ
        declared = response.headers.get("Content-Length", "")
        if ok and declared.isdigit() and int(declared) > limit:
            raise self._too_big()
        buf = bytearray()
        for chunk in response.iter_bytes():
            buf += chunk
            if len(buf) > limit:
                if ok:
                    raise self._too_big()
                break
            # httpx times each socket read; this bounds a server trickling bytes forever.
            if time.monotonic() > deadline:
                raise HandlerTimeout(
                    f"HTTP request to {self._shown_url} timed out after {timeout:g}s"
                )
        return bytes(buf)

    def _too_big(self) -> HandlerError:
        return HandlerError(
            f"HTTP response from {self._shown_url} exceeds "
            f"{_format_size(self.max_body_bytes)} limit"
        )

    def _status_error(
        self, status: int, content: bytes, retry_after: str | None
    ) -> HttpStatusError:
        text = _preview(content)
        return HttpStatusError(
            f"HTTP {status} from {self._shown_url}: {text}",
            status=status,
            retry_after_s=parse_retry_after(retry_after)
            if status in _RETRY_AFTER_STATUSES
            else None,
            retryable=_is_retryable_status(status),
            body=text,
        )

    def _parse(self, content: bytes) -> JSON:
        if not content.strip():
            raise HandlerError(f"HTTP response from {self._shown_url} is empty")
        try:  # invalid UTF-8 becomes U+FFFD, as in the reference (values.py)
            return values.loads(content, lenient=True)
        except ValueError as exc:  # JSONDecodeError
            raise HandlerError(
                f"HTTP response from {self._shown_url} is not valid JSON: {exc}\n"
                f"Response: {_preview(content)}"
            ) from exc
        except UnstorableValue as exc:
            raise HandlerError(
                f"HTTP response from {self._shown_url} cannot be stored: {exc}"
            ) from exc


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Step metadata as plain dicts/lists: the model may hold read-only mapping views."""
    return {str(k): _plain_value(v) for k, v in metadata.items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _plain(value)
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


# -- the wall-clock deadline ---------------------------------------------------------------------


class _Deadline(threading.local):
    """`time.monotonic()` by which the calling thread's HTTP call must end; None outside one.

    httpx's sync client does every socket operation in the calling thread, so a thread-local is
    exactly "the call this socket operation serves".
    """

    at: float | None = None


_deadline = _Deadline()


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout` cut to what is left of the call's deadline; `expired` once nothing is left."""
    at = _deadline.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the call's deadline has passed")
    return left if timeout is None else min(timeout, left)


def _honour_deadline(client: httpx.Client) -> None:
    """Make every socket of `client` (proxies from the environment included) honour `_deadline`.

    httpx times each socket operation separately, so a server sending one header byte per
    second never trips a 2 s timeout. httpcore's pools take a network backend for exactly this
    kind of wrapping, but httpx does not expose it: the backend of each pool httpx built is
    replaced, which keeps httpx's TLS and proxy set-up exactly as it is.
    """
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is None and transport is not None:
            raise HandlerError(f"unsupported httpx transport {type(transport).__name__}")
        if pool is not None:
            if not hasattr(pool, "_network_backend"):
                raise HandlerError(f"unsupported httpcore pool {type(pool).__name__}")
            pool._network_backend = _network_classes()[1](pool._network_backend)


@functools.cache
def _network_classes() -> tuple[type[Any], type[Any]]:
    """The deadline-honouring stream and backend, built once httpcore is imported."""
    import httpcore

    class Stream(httpcore.NetworkStream):
        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self,
            ssl_context: ssl.SSLContext,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(self._inner.start_tls(ssl_context, server_hostname, left))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self, inner: httpcore.NetworkBackend) -> None:
            self._inner = inner

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.NetworkStream:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: Any = None
        ) -> httpcore.NetworkStream:
            left = _left(timeout, httpcore.ConnectTimeout)
            return Stream(self._inner.connect_unix_socket(path, left, socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return Stream, Backend


def _strip_foreign_authorization(request: httpx.Request) -> None:
    """No `Authorization` to another origin than the handler's URL, whatever redirects say.

    httpx drops it on a cross-origin redirect already; this holds whatever httpx version runs.
    """
    import httpx

    origin = request.extensions.get("floxy_origin")
    if origin is not None and _origin(httpx.URL(str(request.url))) != origin:
        request.headers.pop("Authorization", None)
