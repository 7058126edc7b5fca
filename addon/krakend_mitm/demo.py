"""`krakend-mitm demo`: a real gateway on an embedded config, against a local echo backend, offline.

It starts both, sends one request per routing behaviour, prints what came back next to what KrakenD
answers, and exits 0 only if every step matched. Everything it started is stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, GatewayStartError, free_port, gateway_command, port_is_free


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


def run_demo(port: int = 8080, web: bool = False, out=sys.stdout) -> int:
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
    try:
        gateway.start()
        print(f"gateway on http://127.0.0.1:{port}, backend on {backend.url}, config {config_path}\n", file=out)
        failures = sum(not _run_step(step, port, out) for step in STEPS)
        print(f"\n{len(STEPS) - failures} of {len(STEPS)} steps as KrakenD answers", file=out)
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
        backend.stop()


def _run_step(step: Step, port: int, out) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(step.method, step.path, headers=step.headers or {})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
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
