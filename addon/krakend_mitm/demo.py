"""`krakend-mitm demo`: the Descope scenario end to end, offline, on a real gateway.

`demo` starts the mock Descope (port 4000) and a gateway on the Descope config (`configs/descope.json`,
port 8080) with `jwk_url_map` pointing `https://api.descope.com` at the mock, then replays the scenario
step by step. `demo --routing` shows routing instead, against a local echo backend. Each exits 0 only if
every step matched what KrakenD answers, and stops everything it started.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import (
    GatewayProcess, GatewayStartError, config_on_port, free_port, gateway_command, mitmweb_warning, port_is_free,
)

DESCOPE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "descope.json"
# The same document, for installs without the checkout's configs/ (a test keeps the two equal).
EMBEDDED_DESCOPE_CONFIG = {
    "$schema": "https://www.krakend.io/schema/krakend.json",
    "version": 3,
    "name": "Descope-protected API",
    "port": 8080,
    "timeout": "3s",
    "endpoints": [
        {
            "endpoint": "/descope-protected",
            "method": "GET",
            "backend": [{"url_pattern": "/__health", "host": ["http://localhost:8080"]}],
            "extra_config": {"auth/validator": {
                "alg": "RS256", "jwk_url": "https://api.descope.com/v2/keys/P2AbCdEfGhIjKlMnOpQrStUvWxYz",
                "cache": True, "cache_duration": 900}},
        },
        {
            "endpoint": "/descope-admin",
            "method": "GET",
            "backend": [{"url_pattern": "/__health", "host": ["http://localhost:8080"]}],
            "extra_config": {"auth/validator": {
                "alg": "RS256", "jwk_url": "https://api.descope.com/v2/keys/P2AbCdEfGhIjKlMnOpQrStUvWxYz",
                "cache": True, "cache_duration": 900, "roles": ["admin"], "roles_key": "roles"}},
        },
    ],
}


def descope_config() -> dict:
    if DESCOPE_CONFIG.exists():
        return json.loads(DESCOPE_CONFIG.read_text())
    return EMBEDDED_DESCOPE_CONFIG


def demo_config(backend_url: str, port: int) -> dict:
    return {
        "version": 3,
        "port": port,
        "timeout": "2s",
        "cache_ttl": "300s",
        "extra_config": {"router": {"return_error_msg": True}},
        "endpoints": [
            {
                "endpoint": "/users/{id}",
                "input_headers": ["X-Tenant"],
                "backend": [{"host": [backend_url], "url_pattern": "/accounts/{id}", "allow": ["id", "path", "headers"]}],
            },
            {
                "endpoint": "/users/{id}/raw",
                "output_encoding": "no-op",
                "backend": [{"host": [backend_url], "url_pattern": "/accounts/{id}"}],
            },
            {"endpoint": "/broken", "backend": [{"host": [backend_url], "url_pattern": "/status/503"}]},
        ],
    }


@dataclass
class Step:
    title: str
    method: str
    path: str
    expect_status: int
    check: Callable[[http.client.HTTPResponse, bytes], str | None] | None = None
    headers: dict | None = None


def _json_field(name: str, expected) -> Callable:
    def check(_response, body: bytes) -> str | None:
        value = json.loads(body).get(name)
        return None if value == expected else f"{name} is {value!r}, expected {expected!r}"
    return check


def _header(name: str, expected: str) -> Callable:
    def check(response, _body) -> str | None:
        value = response.getheader(name)
        return None if value == expected else f"{name} is {value!r}, expected {expected!r}"
    return check


STEPS = [
    Step("health check", "GET", "/__health", 200, _json_field("status", "ok")),
    Step("routed endpoint: url_pattern, allow filter, X-Tenant forwarded", "GET", "/users/42", 200,
         _json_field("path", "/accounts/42"), {"X-Tenant": "acme", "X-Secret": "not forwarded"}),
    Step("no-op endpoint passes the backend response through", "GET", "/users/42/raw", 200,
         _header("X-Krakend-Completed", "false")),
    Step("backend failure -> 500 with the error text (return_error_msg)", "GET", "/broken", 500),
    Step("unknown path -> 404", "GET", "/nope", 404),
    Step("wrong method -> 405 with Allow", "POST", "/users/42", 405, _header("Allow", "GET")),
    Step("wrong case -> 301 to the canonical path", "GET", "/Users/42", 301, _header("Location", "/users/42")),
    Step("encoded '?' in a parameter -> 400", "GET", "/users/4%3f2", 400),
]


def run_routing_demo(port: int = 8080, web: bool = False, out=sys.stdout) -> int:
    if not port_is_free(port):
        print(f"demo: port {port} is busy; pick another with --port", file=sys.stderr)
        return 2
    backend = EchoServer().start()
    workdir = tempfile.mkdtemp(prefix="krakend-mitm-demo-")
    config_path = os.path.join(workdir, "krakend.json")
    with open(config_path, "w") as f:
        json.dump(demo_config(backend.url, port), f, indent=2)
    sets = ("web_open_browser=false", f"web_port={free_port()}") if web else ()
    gateway = GatewayProcess(gateway_command(config_path, port, web=web, sets=sets), port)
    banner = f"gateway on http://127.0.0.1:{port}, backend on {backend.url}, config {config_path}"
    try:
        return _run_steps(gateway, banner, lambda: (_run_step(step, port, out) for step in STEPS), web, out)
    finally:
        backend.stop()


def _run_steps(gateway: GatewayProcess, banner: str, steps: Callable, web: bool, out) -> int:
    """Start the gateway, run the steps (each yields True when it went as KrakenD answers), print
    the tally; with mitmweb, keep it running for a look at the flows. Always stops the gateway."""
    try:
        gateway.start()
        print(banner + "\n", file=out)
        results = list(steps())
        failures = results.count(False)
        print(f"\n{len(results) - failures} of {len(results)} steps as KrakenD answers", file=out)
        if web and not failures:
            print(f"mitmweb keeps running (log: {gateway.log_path}); press Ctrl-C to stop", file=out)
            try:
                gateway.process.wait()
            except KeyboardInterrupt:
                pass
        return 1 if failures else 0
    except GatewayStartError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        gateway.stop()


def _run_step(step: Step, port: int, out) -> bool:
    return _show(step, *_send("127.0.0.1", port, step.method, step.path, step.headers), out)


def _send(host: str, port: int, method: str, path: str, headers: dict | None, body: bytes | None = None):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def _show(step: Step, response, body: bytes, out) -> bool:
    problem = None if response.status == step.expect_status else f"status {response.status}, expected {step.expect_status}"
    if problem is None and step.check is not None:
        problem = step.check(response, body)
    mark = "ok  " if problem is None else "FAIL"
    print(f"[{mark}] {step.method} {step.path} -> {response.status}   {step.title}", file=out)
    shown = body[:300].decode("utf-8", "replace")
    if shown:
        print(f"       {shown}", file=out)
    if problem:
        print(f"       {problem}", file=out)
    return problem is None


# --------------------------------------------------------------------------- the Descope scenario


def short(token: str) -> str:
    """Show a token the way the demo prints it: recognisable, never whole."""
    return f"{token[:24]}…({len(token)} chars)"


def run_descope_demo(port: int = 8080, mock_port: int = 4000, web: bool = False, out=sys.stdout) -> int:
    from krakend_mitm.descope.mock import MockDescope

    for name, wanted in (("gateway", port), ("mock Descope", mock_port)):
        if not port_is_free(wanted):
            print(f"demo: port {wanted} ({name}) is busy; pick another with "
                  f"{'--port' if name == 'gateway' else '--mock-port'}", file=sys.stderr)
            return 2
    mock = MockDescope(port=mock_port).start()
    workdir = tempfile.mkdtemp(prefix="krakend-mitm-demo-")
    config_path = os.path.join(workdir, "descope.json")
    with open(config_path, "w") as f:
        json.dump(config_on_port(descope_config(), port), f, indent=2)
    sets = (f"jwk_url_map=https://api.descope.com={mock.base_url}",)
    if web and (warning := mitmweb_warning()):
        print(warning, file=sys.stderr)
    if web:
        sets += ("web_open_browser=false", f"web_port={free_port()}")
    gateway = GatewayProcess(gateway_command(config_path, port, web=web, sets=sets), port)
    banner = (f"mock Descope on {mock.base_url} (project {mock.project_id}); gateway on http://127.0.0.1:{port} "
              f"with jwk_url_map https://api.descope.com={mock.base_url}")
    try:
        return _run_steps(gateway, banner, lambda: _descope_steps(gateway, mock, port, out), web, out)
    finally:
        mock.stop()


def _descope_steps(gateway: GatewayProcess, mock, port: int, out):
    yield _run_step(Step("the gateway is up", "GET", "/__health", 200, _json_field("status", "ok")), port, out)
    yield _run_step(Step("no token -> 401", "GET", "/descope-protected", 401), port, out)
    line = _wait_for_log_line(gateway, "[ENDPOINT: /descope-protected][JWTValidator]")
    print(f"       gateway log: {line or '(no line)'}", file=out)
    yield line is not None and "Token not found" in line

    exchange_path = "/v1/auth/accesskey/exchange"
    credential = f"{mock.project_id}:{mock.default_access_key}"
    response, body = _send("127.0.0.1", mock.port, "POST", exchange_path,
                           {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}, b"{}")
    session_jwt = json.loads(body).get("sessionJwt", "") if response.status == 200 else ""
    print(f"[{'ok  ' if session_jwt else 'FAIL'}] POST {mock.base_url}{exchange_path} -> {response.status}   "
          f"access-key exchange (Bearer <project>:<access key>)", file=out)
    print(f"       sessionJwt: {short(session_jwt) if session_jwt else body[:200]!r}", file=out)
    yield bool(session_jwt)
    bearer = {"Authorization": f"Bearer {session_jwt}"}
    yield _run_step(Step("the same request with the sessionJwt -> 200", "GET", "/descope-protected", 200,
                         _json_field("status", "ok"), bearer), port, out)
    viewer = mock.mint("session")  # the mock's default user: role viewer
    yield _run_step(Step("role-protected endpoint, user session without the admin role -> 403", "GET",
                         "/descope-admin", 403, None, {"Authorization": f"Bearer {viewer}"}), port, out)
    yield _run_step(Step("role-protected endpoint, access-key token with the admin role -> 200", "GET",
                         "/descope-admin", 200, _json_field("status", "ok"), bearer), port, out)


def _wait_for_log_line(gateway: GatewayProcess, marker: str, timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in gateway.log().splitlines():
            if marker in line:
                return line.strip()
        time.sleep(0.05)  # the gateway writes its log asynchronously
    return None
