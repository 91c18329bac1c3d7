"""The HTTP handler against real HTTP(S) servers on 127.0.0.1 (spec §15.2); no mocks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import floxy_core
from floxy_core.errors import HandlerError, HandlerTimeout, ValidationError
from floxy_core.handlers.http import HttpHandler, HttpStatusError, parse_retry_after
from floxy_core.handlers.registry import build_handlers, close_handlers
from floxy_core.model import TLSConfig
from floxy_core.ports import Handler, StepContext
from floxy_core.spec import load_workflow_file

# --- a small recording server ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]


Respond = Callable[["_RequestHandler", "Server"], None]


class _HTTPServer(ThreadingHTTPServer):
    owner: Server

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, size cap) makes writes fail; that is expected."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is observable
    timeout = 5  # an idle keep-alive connection cannot hold up the server's shutdown
    server: _HTTPServer
    received: Received

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received = Received(
            self.command, self.path, dict(self.headers.items()), body, self.client_address
        )
        with owner.lock:
            owner.requests.append(self.received)
        owner.respond(self, owner)

    do_GET = do_POST

    def reply(self, status: int, body: bytes | str, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    """A threaded HTTP(S) server on 127.0.0.1 recording every request it gets."""

    def __init__(self, respond: Respond, context: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        """Set at teardown: frees responders that hold a request open."""
        self.httpd = _HTTPServer(("127.0.0.1", 0), _RequestHandler)
        self.httpd.owner = self
        scheme = "http"
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the request threads
        self._thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(respond: Respond, context: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(respond, context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def handlers() -> Iterator[Callable[..., HttpHandler]]:
    """Builds handlers and closes them, before the servers (fixture order) so no socket leaks."""
    made: list[HttpHandler] = []

    def make(url: str, **kwargs: Any) -> HttpHandler:
        made.append(HttpHandler("h", url, **kwargs))
        return made[-1]

    yield make
    for handler in made:
        handler.close()


def ctx(**overrides: Any) -> StepContext:
    values: dict[str, Any] = {
        "instance_id": 42,
        "workflow_id": "flow-v1",
        "step_name": "charge",
        "idempotency_key": "0b8e3c1e-1111-4222-8333-944455556666",
        "retry_count": 2,
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return StepContext(**values)


def status(code: int, body: str = "", headers: dict[str, str] | None = None) -> Respond:
    return lambda h, _server: h.reply(code, body, headers)


def fails(handler: HttpHandler, **ctx_overrides: Any) -> HandlerError:
    with pytest.raises(HandlerError) as info:
        handler(ctx(**ctx_overrides), {"x": 1})
    return info.value


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- success -----------------------------------------------------------------------------------


def test_the_call_log_holds_the_status_line_and_the_body(serve: Any, handlers: Any) -> None:
    ok_server = serve(status(200, '{"charged": true}'))
    step = ctx()
    assert handlers(ok_server.url)(step, {}) == {"charged": True}
    assert step.capture.stdout.text() == 'HTTP/1.1 200 OK\n{"charged": true}'
    assert (step.capture.exit_code, step.capture.stderr.text()) == (200, "")

    failing = serve(status(503, "card service down"))
    step = ctx()
    with pytest.raises(HandlerError):
        handlers(failing.url)(step, {})
    assert step.capture.stdout.text() == "HTTP/1.1 503 Service Unavailable\ncard service down"
    assert step.capture.exit_code == 503


def test_success_sends_the_documented_request(serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"charged": true, "amount": 12.5}'))
    handler = handlers(server.url)
    assert isinstance(handler, Handler)
    step = ctx(metadata={"exec": server.url, "owner": "billing"})
    assert handler(step, {"order": 7, "items": ["a", "é"]}) == {"charged": True, "amount": 12.5}

    [got] = server.requests
    assert (got.method, got.path) == ("POST", "/hook")
    body = json.loads(got.body)
    assert list(body) == ["metadata", "data"]
    assert body == {
        "metadata": {
            "instance_id": 42,
            "workflow_id": "flow-v1",
            "step_name": "charge",
            "idempotency_key": "0b8e3c1e-1111-4222-8333-944455556666",
            "retry_count": 2,
            "exec": server.url,
            "owner": "billing",
        },
        "data": {"order": 7, "items": ["a", "é"]},
    }
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Floxy-Instance-ID"] == "42"
    assert got.headers["X-Floxy-Step-Name"] == "charge"
    assert got.headers["X-Floxy-Idempotency-Key"] == "0b8e3c1e-1111-4222-8333-944455556666"
    assert got.headers["X-Floxy-Retry-Count"] == "2"
    assert got.headers["User-Agent"] == f"floxy/{floxy_core.__version__}"


def test_compensation_metadata_and_non_ascii_step_name(serve: Any, handlers: Any) -> None:
    server = serve(status(200, "[1, 2]"))
    step = ctx(step_name="paiement-é", compensation=True, metadata={"reason": "compensation"})
    assert handlers(server.url)(step, None) == [1, 2]
    [got] = server.requests
    assert json.loads(got.body)["metadata"]["reason"] == "compensation"
    assert json.loads(got.body)["data"] is None
    # http.server decodes headers as Latin-1; the bytes on the wire are UTF-8.
    assert got.headers["X-Floxy-Step-Name"].encode("latin-1").decode() == "paiement-é"


def test_any_json_value_is_an_output(serve: Any, handlers: Any) -> None:
    server = serve(status(201, ' "done"\n'))
    assert handlers(server.url)(ctx(), {}) == "done"


def test_redirects_are_followed(serve: Any, handlers: Any) -> None:
    def respond(h: _RequestHandler, _server: Server) -> None:
        if h.path == "/hook":
            h.reply(307, "", {"Location": "/moved"})
        else:
            h.reply(200, '{"at": "moved"}')

    server = serve(respond)
    assert handlers(server.url)(ctx(), {}) == {"at": "moved"}
    assert [r.path for r in server.requests] == ["/hook", "/moved"]
    assert server.requests[1].body == server.requests[0].body  # 307 keeps method and body


def test_debug_log_shows_request_and_response(serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"ok": 1}'))
    lines: list[str] = []
    handler = handlers(server.url, debug_log=lines.append)
    handler(ctx(), {"secret": "no"})
    assert lines == []  # only when the step asks for it
    handler(ctx(debug=True), {"a": 1})
    assert len(lines) == 2
    assert lines[0].startswith(f"[DEBUG] handler 'h' request: POST {server.url} {{")
    assert '"data":{"a":1}' in lines[0]
    assert lines[1] == "[DEBUG] handler 'h' response: HTTP 200 {\"ok\": 1}"


# --- status errors -----------------------------------------------------------------------------


def test_500_is_retryable_with_body_in_message(serve: Any, handlers: Any) -> None:
    server = serve(status(500, "database is down" + "x" * 2000))
    err = fails(handlers(server.url))
    assert isinstance(err, HttpStatusError)
    assert (err.status, err.retryable, err.retry_after_s) == (500, True, None)
    assert str(err).startswith(f"HTTP 500 from {server.url}: database is down")
    assert len(str(err)) == len(f"HTTP 500 from {server.url}: ") + 500


def test_404_is_not_retryable(serve: Any, handlers: Any) -> None:
    server = serve(status(404, "no such hook"))
    err = fails(handlers(server.url))
    assert isinstance(err, HttpStatusError)
    assert (err.status, err.retryable) == (404, False)
    assert str(err) == f"HTTP 404 from {server.url}: no such hook"


@pytest.mark.parametrize("code", [408, 425, 429, 502, 503])
def test_transient_statuses_are_retryable(code: int, serve: Any, handlers: Any) -> None:
    err = fails(handlers(serve(status(code, "later")).url))
    assert isinstance(err, HttpStatusError)
    assert (err.status, err.retryable) == (code, True)


def test_429_exposes_retry_after_seconds(serve: Any, handlers: Any) -> None:
    server = serve(status(429, "slow down", {"Retry-After": "7"}))
    err = fails(handlers(server.url))
    assert isinstance(err, HttpStatusError)
    assert (err.status, err.retryable, err.retry_after_s) == (429, True, 7.0)


def test_503_exposes_retry_after_http_date(serve: Any, handlers: Any) -> None:
    when = formatdate(time.time() + 120, usegmt=True)
    server = serve(status(503, "maintenance", {"Retry-After": when}))
    err = fails(handlers(server.url))
    assert isinstance(err, HttpStatusError)
    assert err.retry_after_s is not None
    assert 115 <= err.retry_after_s <= 121


def test_retry_after_is_ignored_on_other_statuses(serve: Any, handlers: Any) -> None:
    err = fails(handlers(serve(status(500, "", {"Retry-After": "7"})).url))
    assert isinstance(err, HttpStatusError)
    assert err.retry_after_s is None


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "-5", "nan", "inf", "soon", "Mon, 99 Foo 2020"):
        assert parse_retry_after(bad, now=now) is None, bad


# --- bad bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 204])
def test_empty_body(code: int, serve: Any, handlers: Any) -> None:
    server = serve(status(code, ""))
    err = fails(handlers(server.url))
    assert str(err) == f"HTTP response from {server.url} is empty"
    assert err.retryable is True


def test_non_json_body(serve: Any, handlers: Any) -> None:
    server = serve(status(200, "<html>oops</html>"))
    err = fails(handlers(server.url))
    message = str(err)
    assert message.startswith(f"HTTP response from {server.url} is not valid JSON: Expecting value")
    assert message.endswith("\nResponse: <html>oops</html>")


def test_nan_is_not_json(serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"v": NaN}'))
    assert "is not valid JSON: NaN is not valid JSON" in str(fails(handlers(server.url)))


def test_body_over_the_cap_with_content_length(serve: Any, handlers: Any) -> None:
    server = serve(status(200, json.dumps("x" * 2000)))
    err = fails(handlers(server.url, max_body_bytes=1024))
    assert str(err) == f"HTTP response from {server.url} exceeds 1 KiB limit"
    # Just under the cap is fine.
    assert handlers(server.url, max_body_bytes=2002)(ctx(), {}) == "x" * 2000


def test_endless_chunked_body_is_abandoned_at_the_cap(serve: Any, handlers: Any) -> None:
    total = 256 * 1024 * 1024
    sent: list[int] = []

    def respond(h: _RequestHandler, _server: Server) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"x" * 65536
        written = 0
        try:
            while written < total:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                written += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            h.close_connection = True
        sent.append(written)

    server = serve(respond)
    err = fails(handlers(server.url, max_body_bytes=100_000))
    assert str(err) == f"HTTP response from {server.url} exceeds 100000 bytes limit"
    server.close()  # waits for the responder to notice the client is gone
    assert sent and sent[0] < total  # the client stopped reading, it did not drain the stream


# --- transport errors and timeouts -------------------------------------------------------------


def test_connection_refused_is_retryable(handlers: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    err = fails(handlers(url))
    assert not isinstance(err, HttpStatusError)
    assert str(err).startswith(f"HTTP request to {url} failed: ")
    assert "refused" in str(err).lower()
    assert err.retryable is True


def test_timeout_from_the_step(serve: Any, handlers: Any) -> None:
    server = serve(lambda h, s: s.release.wait(5) and h.reply(200, "{}"))
    handler = handlers(server.url)
    start = time.monotonic()
    with pytest.raises(HandlerTimeout) as info:
        handler(ctx(timeout_s=0.3), {})
    elapsed = time.monotonic() - start
    assert str(info.value) == f"HTTP request to {server.url} timed out after 0.3s"
    assert info.value.retryable is True
    assert 0.25 <= elapsed < 2.0


def test_default_timeout_when_the_step_has_none(serve: Any, handlers: Any) -> None:
    server = serve(lambda h, s: s.release.wait(5) and h.reply(200, "{}"))
    handler = handlers(server.url, default_timeout_s=0.2)
    with pytest.raises(HandlerTimeout, match=r"timed out after 0\.2s$"):
        handler(ctx(timeout_s=None), {})


def test_trickling_body_is_bounded_by_the_total_timeout(serve: Any, handlers: Any) -> None:
    """Each byte arrives well within the read timeout, but the whole body never ends."""

    def respond(h: _RequestHandler, s: Server) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for _ in range(60):  # bounded, so a regression fails instead of hanging
                if s.release.wait(0.05):
                    break
                h.wfile.write(b"1\r\n \r\n")
                h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            h.close_connection = True

    server = serve(respond)
    start = time.monotonic()
    with pytest.raises(HandlerTimeout, match=r"timed out after 0\.4s$"):
        handlers(server.url)(ctx(timeout_s=0.4), {})
    assert time.monotonic() - start < 1.5


def test_interrupted_before_the_call_sends_nothing(serve: Any, handlers: Any) -> None:
    server = serve(status(200, "{}"))
    stop = threading.Event()
    stop.set()
    err = fails(handlers(server.url), interrupt=stop)
    assert err.retryable is False
    assert "cancelled" in str(err)
    assert server.requests == []


# --- connection pool ---------------------------------------------------------------------------


def test_calls_reuse_one_connection(serve: Any, handlers: Any) -> None:
    server = serve(status(200, "{}"))
    handler = handlers(server.url)
    for retry in range(3):
        handler(ctx(retry_count=retry), {})
    assert len(server.requests) == 3
    assert len({r.client for r in server.requests}) == 1


def test_concurrent_calls_from_worker_threads(serve: Any, handlers: Any) -> None:
    def echo_data(h: _RequestHandler, _server: Server) -> None:
        h.reply(200, json.dumps(json.loads(h.received.body)["data"]))

    server = serve(echo_data)
    handler = handlers(server.url)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            results[n] = handler(ctx(instance_id=n), {"n": n})
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert errors == []
    assert len(server.requests) == 8
    assert sorted(r.headers["X-Floxy-Instance-ID"] for r in server.requests) == [
        str(n) for n in range(8)
    ]
    assert results == {n: {"n": n} for n in range(8)}


# --- construction errors -----------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://", ""])
def test_bad_url_fails_at_construction(url: str) -> None:
    with pytest.raises(HandlerError, match="invalid URL") as info:
        HttpHandler("h", url)
    assert info.value.retryable is False


def test_password_is_hidden_in_messages(handlers: Any) -> None:
    port = closed_port()
    err = fails(handlers(f"http://user:hunter2@127.0.0.1:{port}/hook"))
    assert "hunter2" not in str(err)
    assert f"http://user:***@127.0.0.1:{port}/hook" in str(err)


# --- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A private CA, a server cert for 127.0.0.1 and a client cert, all signed by it."""
    assert shutil.which("openssl"), "the openssl CLI is needed (scripts/test.sh installs it)"
    d = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=floxy test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    for who, usage, san in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
        ("client", "clientAuth", ""),
    ):
        (d / f"{who}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nauthorityKeyIdentifier=keyid\n{san}"
        )
        _openssl("req", "-new", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN=floxy test {who}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext",
                 "-out", f"{who}.pem", cwd=d)  # fmt: skip
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:secret",
             "-out", "client-enc.key", cwd=d)  # fmt: skip
    return Certs(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "client-enc.key",
    )


def server_context(certs: Certs, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


def test_tls_private_ca_fails_without_ca_file(certs: Certs, serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"tls": true}'), server_context(certs))
    err = fails(handlers(server.url))
    assert str(err).startswith(f"HTTP request to {server.url} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in str(err)
    assert server.requests == []


def test_tls_works_with_ca_file(certs: Certs, serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"tls": true}'), server_context(certs))
    handler = handlers(server.url, tls=TLSConfig(ca_file=str(certs.ca)))
    assert handler(ctx(), {}) == {"tls": True}
    assert len(server.requests) == 1


def test_tls_works_with_skip_verify(certs: Certs, serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"tls": true}'), server_context(certs))
    assert handlers(server.url, tls=TLSConfig(skip_verify=True))(ctx(), {}) == {"tls": True}


def test_mutual_tls(certs: Certs, serve: Any, handlers: Any) -> None:
    server = serve(status(200, '{"mtls": true}'), server_context(certs, require_client_cert=True))
    without = handlers(server.url, tls=TLSConfig(ca_file=str(certs.ca)))
    assert str(fails(without)).startswith(f"HTTP request to {server.url} failed: ")
    tls = TLSConfig(
        ca_file=str(certs.ca), cert_file=str(certs.client_cert), key_file=str(certs.client_key)
    )
    assert handlers(server.url, tls=tls)(ctx(), {}) == {"mtls": True}
    assert len(server.requests) == 1


def test_tls_is_ignored_for_plain_http(serve: Any, handlers: Any, tmp_path: Path) -> None:
    server = serve(status(200, "{}"))
    broken = TLSConfig(ca_file=str(tmp_path / "missing.pem"))
    assert handlers(server.url, tls=broken)(ctx(), {}) == {}


def test_missing_ca_file_fails_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(HandlerError) as info:
        HttpHandler("h", "https://127.0.0.1/", tls=TLSConfig(ca_file=str(missing)))
    assert str(info.value) == f"failed to read CA certificate {missing}: No such file or directory"


def test_garbage_ca_file_fails_at_construction(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(HandlerError, match=f"^failed to parse CA certificate {garbage}: "):
        HttpHandler("h", "https://127.0.0.1/", tls=TLSConfig(ca_file=str(garbage)))


def test_client_certificate_errors_name_the_file(certs: Certs, tmp_path: Path) -> None:
    url = "https://127.0.0.1/"
    missing = tmp_path / "client.pem"
    cases = [
        (TLSConfig(cert_file=str(missing), key_file=str(certs.client_key)), f"{missing}: No such"),
        (TLSConfig(cert_file=str(certs.client_cert), key_file=str(missing)), f"{missing}: No such"),
        # A key that does not match the certificate.
        (
            TLSConfig(cert_file=str(certs.client_cert), key_file=str(certs.server_key)),
            f"{certs.client_cert} (key {certs.server_key}): ",
        ),
        # An encrypted key must fail, not prompt for a password on the terminal.
        (
            TLSConfig(cert_file=str(certs.client_cert), key_file=str(certs.client_key_encrypted)),
            f"{certs.client_cert} (key {certs.client_key_encrypted}): ",
        ),
        (TLSConfig(key_file=str(certs.client_key)), "key_file"),
    ]
    for tls, expected in cases:
        with pytest.raises(HandlerError) as info:
            HttpHandler("h", url, tls=tls)
        message = str(info.value)
        assert message.startswith("failed to load client certificate"), message
        assert expected in message, message
        assert info.value.retryable is False


# --- through the YAML path: handler `timeout`, per-handler `tls` ----------------------------------


def _yaml_handlers(tmp_path: Path, text: str) -> dict[str, Handler]:
    """Handlers as floxyctl and floxyd build them: loader, compiler, built-in plugin."""
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(text))
    return build_handlers(load_workflow_file(path))


@pytest.fixture
def yaml_handlers(tmp_path: Path) -> Iterator[Callable[[str], dict[str, Handler]]]:
    made: list[dict[str, Handler]] = []

    def make(text: str) -> dict[str, Handler]:
        made.append(_yaml_handlers(tmp_path, text))
        return made[-1]

    yield make
    for built in made:
        close_handlers(built)


def _slow(h: _RequestHandler, s: Server) -> None:
    """Answers after 5 s (or at teardown): only a timeout ends the call early."""
    if not s.release.wait(5):
        h.reply(200, "{}")


def test_timeout_order_step_then_handler_then_30s(serve: Any, yaml_handlers: Any) -> None:
    server = serve(_slow)
    built = yaml_handlers(f"""
        handlers:
          - {{name: own, exec: "{server.url}", timeout: 300ms}}
          - {{name: plain, exec: "{server.url}"}}
          - {{name: zero, type: http, exec: "{server.url}", timeout: 0}}
        flows:
          - {{name: f, steps: [own, plain, zero]}}
        """)
    # No step timeout: the handler's own.
    start = time.monotonic()
    with pytest.raises(HandlerTimeout, match=r"timed out after 0\.3s$"):
        built["own"](ctx(timeout_s=None), {})
    assert 0.25 <= time.monotonic() - start < 2.0
    # The step's timeout wins over the handler's, shorter or longer.
    with pytest.raises(HandlerTimeout, match=r"timed out after 0\.15s$"):
        built["own"](ctx(timeout_s=0.15), {})
    start = time.monotonic()
    with pytest.raises(HandlerTimeout, match=r"timed out after 0\.6s$"):
        built["own"](ctx(timeout_s=0.6), {})
    assert time.monotonic() - start >= 0.55
    # Neither: 30 s (not waited for here). `timeout: 0` means none, as for steps.
    assert built["plain"].default_timeout_s == 30.0
    assert built["zero"].default_timeout_s == 30.0


def test_handler_timeout_in_a_floxyctl_run(serve: Any, tmp_path: Path) -> None:
    server = serve(_slow)
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(f"""
        handlers:
          - {{name: slow, exec: "{server.url}", timeout: 200ms}}
        flows:
          - name: f
            steps:
              - {{name: by_handler, handler: slow, max_retries: 0}}
              - {{name: by_step, handler: slow, max_retries: 0, timeout: 100ms}}
          - name: g
            steps:
              - {{name: by_step, handler: slow, max_retries: 0, timeout: 100ms}}
        """)
    )
    floxyctl = str(Path(sys.executable).with_name("floxyctl"))
    env = {**os.environ, "FLOXY_NO_PLUGINS": "1"}
    for flow, expected in (("f", "0.2s"), ("g", "0.1s")):
        done = subprocess.run(
            [floxyctl, "run", "-f", str(path), "--flow", flow, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert json.loads(done.stdout)["error"] == (
            f"HTTP request to {server.url} timed out after {expected}"
        )


def test_handler_timeout_is_for_http_handlers_only(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        "handlers:\n  - {name: b, exec: ./b.sh, timeout: 1s}\nflows:\n  - {name: f, steps: [b]}\n"
    )
    with pytest.raises(ValidationError, match=r'handlers\[0\]\.timeout: unknown key "timeout"'):
        load_workflow_file(path)


@pytest.fixture(scope="module")
def other_ca(certs: Certs) -> Path:
    """A CA that did not sign the server certificate."""
    d = certs.ca.parent
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
             "-subj", "/CN=some other CA", cwd=d)  # fmt: skip
    return d / "other-ca.pem"


def test_handler_tls_replaces_the_top_level_block(
    certs: Certs, other_ca: Path, serve: Any, yaml_handlers: Any
) -> None:
    server = serve(status(200, '{"tls": true}'), server_context(certs))
    built = yaml_handlers(f"""
        tls:
          ca_file: {other_ca}
        handlers:
          - {{name: default, exec: "{server.url}"}}
          - name: own_ca
            exec: "{server.url}"
            tls: {{ca_file: {certs.ca}}}
          - name: skip
            exec: "{server.url}"
            tls: {{skip_verify: true}}
        flows:
          - {{name: f, steps: [default, own_ca, skip]}}
        """)
    err = fails(built["default"])  # the top-level block: the wrong CA
    assert "CERTIFICATE_VERIFY_FAILED" in str(err)
    assert built["own_ca"](ctx(), {}) == {"tls": True}
    assert built["skip"](ctx(), {}) == {"tls": True}
    assert len(server.requests) == 2


def test_handler_tls_is_not_merged_with_the_top_level_block(
    certs: Certs, serve: Any, yaml_handlers: Any
) -> None:
    """The top level has the client certificate; a handler block without one sends none."""
    server = serve(status(200, '{"mtls": true}'), server_context(certs, require_client_cert=True))
    built = yaml_handlers(f"""
        tls:
          ca_file: {certs.ca}
          cert_file: {certs.client_cert}
          key_file: {certs.client_key}
        handlers:
          - {{name: inherits, exec: "{server.url}"}}
          - name: replaces
            exec: "{server.url}"
            tls: {{ca_file: {certs.ca}}}
        flows:
          - {{name: f, steps: [inherits, replaces]}}
        """)
    assert built["inherits"](ctx(), {}) == {"mtls": True}
    err = fails(built["replaces"])
    assert str(err).startswith(f"HTTP request to {server.url} failed: ")
    assert len(server.requests) == 1
