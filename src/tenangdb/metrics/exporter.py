"""The HTTP side of `tenangdb exporter`: /metrics from the state file, /healthz, basic auth, TLS.

The state file is read at each scrape, so the exporter never holds stale values and needs no
restart after a run. Threads serve requests so one slow client cannot stall a scrape; the TLS
handshake happens in the request's thread for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tenangdb.errors import ConfigError, TenangDBError
from tenangdb.logs import UNAUTHORIZED, security_event
from tenangdb.metrics.exposition import CONTENT_TYPE, render
from tenangdb.metrics.state import StateCorrupted, StateFile, empty

log = logging.getLogger("tenangdb.exporter")


class ExporterFailed(TenangDBError):
    exit_code = 1


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BasicAuth:
    """Checks `Authorization: Basic` in constant time: both halves are always compared, as
    fixed-length digests, so neither a wrong username nor a near-miss password answers faster."""

    def __init__(self, username: str, password: str) -> None:
        self._user = _digest(username.encode())
        self._kind = "plain"
        if password.startswith("sha256:"):
            self._kind, self._expected = "sha256", bytes.fromhex(password[7:])
        elif password.startswith(("$2a$", "$2b$", "$2y$")):
            try:
                import bcrypt
            except ImportError:
                raise ConfigError("metrics.basic_auth.password is a bcrypt hash but the bcrypt package is "
                                  "not installed; use sha256:<hex> or install bcrypt") from None
            self._bcrypt = bcrypt
            self._kind, self._hash = "bcrypt", password.encode()
            # bcrypt is slow by design; a scrape every few seconds should not pay it each time.
            self._known_good: bytes | None = None
            self._lock = threading.Lock()
        else:
            self._expected = _digest(password.encode())

    def check(self, header: str | None) -> bool:
        given_user, given_password = b"", b""
        if header and header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True)
                given_user, _, given_password = decoded.partition(b":")
            except (binascii.Error, ValueError):
                pass
        user_ok = hmac.compare_digest(_digest(given_user), self._user)
        return self._password_ok(given_password) & user_ok

    def _password_ok(self, given: bytes) -> bool:
        if self._kind != "bcrypt":
            return hmac.compare_digest(_digest(given), self._expected)
        digest = _digest(given)
        known = self._known_good
        if known is not None and hmac.compare_digest(digest, known):
            return True
        try:
            ok = self._bcrypt.checkpw(given, self._hash)
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                self._known_good = digest
        return ok


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, *, tls: ssl.SSLContext | None, ipv6: bool) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        log.debug("request from %s ended with an error", client_address[0], exc_info=True)


_INDEX = (b"<html><head><title>TenangDB Exporter</title></head><body><h1>TenangDB Exporter</h1><ul>"
          b'<li><a href="/metrics">/metrics</a></li><li><a href="/health">/health</a></li>'
          b'<li><a href="/ready">/ready</a></li><li><a href="/healthz">/healthz</a></li></ul></body></html>\n')


class RefusedLogins:
    """A security event for refused metrics logins: one line per peer per `every` seconds,
    with how many were refused since; never what was tried. A scanner must not flood the log,
    and one attempt must not go unseen."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._peers: dict[str, tuple[float, int]] = {}

    def note(self, peer: str, had_credentials: bool) -> None:
        now = time.monotonic()
        with self._lock:
            last, count = self._peers.get(peer, (float("-inf"), 0))
            if now - last < self.every:
                self._peers[peer] = (last, count + 1)
                return
            self._peers[peer] = (now, 0)
            if len(self._peers) > 4096:  # forget the quiet ones
                self._peers = {p: v for p, v in self._peers.items() if now - v[0] < self.every}
        more = f" (and {count} more since the last report)" if count else ""
        security_event(log, "metrics_login_refused", UNAUTHORIZED, "metrics request from %s refused: %s%s", peer,
                       "wrong credentials" if had_credentials else "no credentials", more, level=logging.WARNING)


def make_handler(state: StateFile, metrics_path: str, auth: BasicAuth | None, duration_form: str = "histogram"):
    refused = RefusedLogins()
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a client that stops talking releases its thread

        def version_string(self) -> str:
            return "tenangdb-exporter"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            # The original exporter's probes, answered as it did (its Kubernetes manifests and
            # compose file point at them); unauthenticated like /healthz, and they reveal no metric.
            if path == "/health":
                try:
                    state.read()
                except StateCorrupted:
                    self._send(503, b"UNHEALTHY: Cannot load metrics")
                    return
                self._send(200, b'{"status":"healthy","service":"tenangdb-exporter"}', "application/json")
                return
            if path == "/ready":
                self._send(200, b'{"status":"ready","service":"tenangdb-exporter"}', "application/json")
                return
            if path == "/":
                self._send(200, _INDEX.replace(b"/metrics", metrics_path.encode()), "text/html; charset=utf-8")
                return
            if path == "/healthz":
                # Unauthenticated on purpose (liveness probes); it reveals no metric.
                try:
                    state.read()
                except StateCorrupted as exc:
                    self._send(503, f"unhealthy: the metrics state file cannot be read: {exc}\n".encode())
                    return
                self._send(200, b"ok\n")
                return
            if path != metrics_path:
                self._send(404, b"not found\n")
                return
            if auth is not None and not auth.check(self.headers.get("Authorization")):
                refused.note(self.client_address[0], "Authorization" in self.headers)
                self._send(401, b"unauthorized\n",
                           headers={"WWW-Authenticate": 'Basic realm="tenangdb", charset="UTF-8"'})
                return
            try:
                current, readable = state.read(), True
            except StateCorrupted as exc:
                log.warning("metrics state file %s is corrupted (%s); serving empty metrics until the next "
                            "run rebuilds it", state.path, exc)
                current, readable = empty(), False
            self._send(200, render(current, running=state.is_running(), state_readable=readable,
                                   duration_form=duration_form), CONTENT_TYPE)

        do_HEAD = do_GET

        def _not_allowed(self) -> None:
            self._send(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    return Handler


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"metrics.tls_cert/tls_key: {exc.filename}: no such file") from None
    except PermissionError as exc:
        raise ConfigError(f"metrics.tls_cert/tls_key: {exc.filename}: not readable by this user") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"metrics.tls_cert/tls_key: cannot load the certificate and key: "
                          f"{getattr(exc, 'reason', None) or exc}") from None
    return context


def serve(state: StateFile, listen: str, port: int, metrics_path: str, auth: BasicAuth | None,
          tls: ssl.SSLContext | None, duration_form: str = "histogram") -> _Server:
    """Bind and return the server (the caller runs serve_forever); a bind failure is one line."""
    host = listen.strip("[]")
    try:
        return _Server((host, port), make_handler(state, metrics_path, auth, duration_form), tls=tls, ipv6=":" in host)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ExporterFailed(f"cannot listen on {where}: the address is already in use "
                                 "(another exporter? set metrics.port or --port)") from None
        if exc.errno == errno.EACCES:
            raise ExporterFailed(f"cannot listen on {where}: permission denied") from None
        raise ExporterFailed(f"cannot listen on {where}: {exc.strerror or exc}") from None
