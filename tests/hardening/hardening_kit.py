"""Shared pieces of the hardening suites (tests/hardening) and of scripts/soak.py / scripts/fuzz_long.py:

* `KeyServer`: a threaded JWKS server on 127.0.0.1 with one behaviour per path (keys, raw body,
  content type, status, delay, redirect, drip), hit counters, optional TLS;
* `FaultBackend`: a backend that refuses nothing but misbehaves per path (reset mid-response, slow,
  malformed JSON, close without answer);
* `send()`: a raw HTTP/1.1 client, so tests control every header byte (several `Authorization`
  fields, tabs, non-UTF-8 bytes) and never depend on what `requests` would normalise;
* `wait_for_log()`: bounded waits on a gateway's log (no sleeps for readiness).

No fixed token blobs: tokens are minted when the corpus is built (hardening_corpus.py).
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "auth"))

import jwt_testkit  # noqa: E402,F401  (re-exported for the suites)

LOOPBACK = "127.0.0.1"


# =============================================================================================
# JWKS server


@dataclass
class Route:
    body: bytes = b'{"keys":[]}'
    content_type: str | None = "application/json"
    status: int = 200
    delay: float = 0.0
    location: str | None = None  # answer a 302 to this location
    content_encoding: str | None = None
    drip: float = 0.0  # seconds between single body bytes (a slow-loris IdP)


class KeyServer:
    """JWK sets by path. `set_keys(path, jwks)` / `set(path, **route fields)` may be called at any time."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, port: int = 0):
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.closing = threading.Event()
        self.connections: set[socket.socket] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections.add(self.connection)

            def finish(self) -> None:
                with server.lock:
                    server.connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    route = server.routes.get(path)
                if route is None:
                    route = Route(b'{"error":"no such key set"}', status=404)
                if route.delay and server.closing.wait(route.delay):
                    return
                try:
                    if route.location is not None:
                        self.send_response(302)
                        self.send_header("Location", route.location)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(route.status)
                    if route.content_type is not None:
                        self.send_header("Content-Type", route.content_type)
                    if route.content_encoding:
                        self.send_header("Content-Encoding", route.content_encoding)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if route.drip:
                        for i in range(len(route.body)):
                            if server.closing.wait(route.drip):
                                return
                            self.wfile.write(route.body[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(route.body)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.allow_reuse_address = True
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls_context is not None else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}{path}"

    def set_keys(self, path: str, keys: list[dict], **route: Any) -> None:
        self.set(path, body=json.dumps({"keys": keys}).encode(), **route)

    def set(self, path: str, **route: Any) -> None:
        with self.lock:
            self.routes[path] = Route(**route)

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.get(path, 0)

    def close(self) -> None:
        """Down for real: the listener and every open keep-alive connection."""
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def gzip_bomb(size: int) -> bytes:
    """A gzip body that inflates to `size` bytes of JSON whitespace inside a valid-looking set."""
    return gzip.compress(b'{"keys":[' + b" " * size + b"]}", compresslevel=9)


# =============================================================================================
# a misbehaving backend


class FaultBackend:
    """Paths: /reset (headers, half the body, then a TCP reset), /malformed (200 application/json with
    a broken body), /slow/<ms> (answers after <ms>), /close (closes without answering), anything else
    200 {"ok": true}. Counts requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.closing = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reset(self) -> None:
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                with backend.lock:
                    backend.hits[path] = backend.hits.get(path, 0) + 1
                try:
                    if path == "/reset":
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        self.wfile.write(b'{"partial": "' + b"x" * 100)
                        self._reset()
                    elif path == "/close":
                        self._reset()
                    elif path == "/malformed":
                        self._answer(200, b'{"a": 1, "b": [1, 2,')
                    elif path.startswith("/slow/"):
                        if backend.closing.wait(int(path.rsplit("/", 1)[1]) / 1000):
                            return
                        self._answer(200, b'{"slow": true}')
                    else:
                        self._answer(200, b'{"ok": true}')
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.get(path, 0)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A port nothing listens on (bound and released; connections are refused)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# =============================================================================================
# raw HTTP client


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    seconds: float = 0.0

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class ConnectionDropped(Exception):
    """The server closed the connection without a complete HTTP response."""


def _encode(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def send(port: int, path: str, headers: list[tuple[str, str | bytes]] = (), *, method: str = "GET",
         timeout: float = 15.0, host: str = LOOPBACK) -> Response:
    """One request on a fresh connection, headers written exactly as given (order, case, bytes)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    lines += [_encode(k) + b": " + _encode(v) for k, v in headers]
    lines += [b"Connection: close", b"", b""]
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines))
        data = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        raise ConnectionDropped(f"incomplete response ({len(data)} bytes): {bytes(data[:200])!r}")
    first, *rest = head.decode("latin-1").split("\r\n")
    _version, status, *reason = first.split(" ", 2)
    parsed = [tuple(part.strip() for part in line.split(":", 1)) for line in rest if ":" in line]
    response = Response(int(status), reason[0] if reason else "", parsed, body, time.monotonic() - started)  # type: ignore[arg-type]
    length = response.header("Content-Length")
    if length is not None and length.isdigit():
        response.body = body[: int(length)]
    return response


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


# =============================================================================================
# gateway log


def log_size(gateway: Any) -> int:
    return len(gateway.log())


def wait_for_log(gateway: Any, text: str, *, since: int = 0, timeout: float = 10.0) -> str:
    """Wait until `text` appears in the gateway log after offset `since`; returns that part of the log."""
    deadline = time.monotonic() + timeout
    while True:
        part = gateway.log()[since:]
        if text in part:
            return part
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout} s; log tail:\n{part[-3000:]}")
        time.sleep(0.02)  # log polling interval


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate()` until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)
