"""A small real HTTP backend for the demo and for tests: it echoes what the gateway sent.

Routes:
  /status/<code>          answers <code> with a JSON body
  /slow/<ms>              the echo after <ms> milliseconds
  /redirect/<code>?to=/x  a redirect with that status
  /array                  a top-level JSON array
  /gzip                   the echo, gzip-encoded when the client accepts it
  anything else           200 {"method", "path", "query", "headers", "body", "id"}
It binds to 127.0.0.1 only and counts requests per path.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # one write per response and no Nagle: otherwise delayed ACKs add ~40 ms on keep-alive connections
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: "EchoServer"

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: bytes, content_type: str = "application/json",
              extra: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in extra:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        body = self._body()
        url = urlsplit(self.path)
        self.server.record(url.path, self)
        parts = url.path.strip("/").split("/")
        echo = {
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query, keep_blank_values=True),
            "headers": {k: self.headers.get_all(k) for k in dict.fromkeys(self.headers.keys())},
            "body": body.decode("utf-8", "replace"),
            "id": parts[-1] if parts else "",
        }
        if parts[0] == "status" and len(parts) > 1 and parts[1].isdigit():
            self._send(int(parts[1]), json.dumps({"status": int(parts[1])}).encode())
        elif parts[0] == "slow" and len(parts) > 1 and parts[1].isdigit():
            time.sleep(int(parts[1]) / 1000)
            self._send(200, json.dumps(echo).encode())
        elif parts[0] == "redirect" and len(parts) > 1 and parts[1].isdigit():
            target = parse_qs(url.query).get("to", ["/echo"])[0]
            self._send(int(parts[1]), b"", "text/plain", [("Location", target)])
        elif parts[0] == "array":
            self._send(200, json.dumps([{"i": 1}, {"i": 2}]).encode())
        elif parts[0] == "gzip" and "gzip" in self.headers.get("Accept-Encoding", ""):
            self._send(200, gzip.compress(json.dumps(echo).encode()), extra=[("Content-Encoding", "gzip")])
        else:
            self._send(200, json.dumps(echo).encode(), extra=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.hits: Counter[str] = Counter()
        self.last: dict | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, path: str, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.hits[path] += 1
            self.last = {"path": path, "headers": dict(handler.headers.items())}

    def start(self) -> "EchoServer":
        self._thread = threading.Thread(target=self.serve_forever, name="echo-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
