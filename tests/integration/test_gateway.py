"""A real mitmdump with the addon, real backends, real sockets (spec §2–§6 end to end)."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from krakend_mitm.processes import GatewayProcess, free_port, gateway_command, mitm_executable

PROJECT = Path(__file__).resolve().parents[2]


def basic_config(backend_url, port=8080, **extra):
    config = {
        "version": 3,
        "port": port,
        "extra_config": {"router": {"return_error_msg": True}},
        "endpoints": [
            {"endpoint": "/users/{id}", "input_headers": ["X-Tenant"], "input_query_strings": ["q"],
             "backend": [{"host": [backend_url], "url_pattern": "/accounts/{id}", "allow": ["path", "query", "headers"]}]},
            {"endpoint": "/raw/{id}", "output_encoding": "no-op",
             "backend": [{"host": [backend_url], "url_pattern": "/status/{id}"}]},
            {"endpoint": "/slow", "timeout": "300ms", "backend": [{"host": [backend_url], "url_pattern": "/slow/2000"}]},
            {"endpoint": "/down", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/x"}]},
            {"endpoint": "/failing", "backend": [{"host": [backend_url], "url_pattern": "/status/404"}]},
        ],
    }
    config.update(extra)
    return config


def test_routes_to_the_backend_with_krakend_headers(backend, start_gateway):
    gateway = start_gateway(basic_config(backend.url))
    response = requests.get(f"{gateway.url}/users/42?q=1&z=2", headers={"X-Tenant": "t1", "X-Other": "no"})
    assert response.status_code == 200
    body = response.json()
    assert body["path"] == "/accounts/42" and body["query"] == {"q": ["1"]}
    assert body["headers"]["X-Tenant"] == ["t1"] and "X-Other" not in body["headers"]
    assert body["headers"]["User-Agent"] == ["KrakenD Version 2.13.8"]
    assert body["headers"]["X-Forwarded-For"] == ["127.0.0.1"]
    assert body["headers"]["X-Forwarded-Host"] == [f"127.0.0.1:{gateway.port}"]
    assert response.headers["X-Krakend"] == "Version 2.13.8"
    assert response.headers["X-Krakend-Completed"] == "true"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert backend.hits["/accounts/42"] == 1


@pytest.mark.parametrize("method,path,status,body", [
    ("GET", "/nope", 404, b"404 page not found"),
    ("DELETE", "/users/1", 405, b"405 method not allowed"),
    ("GET", "/users/4%3f2", 400, b"error: encoded url params"),
])
def test_gateway_answers_itself_and_never_reaches_the_placeholder(backend, start_gateway, method, path, status, body):
    gateway = start_gateway(basic_config(backend.url))
    response = requests.request(method, gateway.url + path, allow_redirects=False)
    assert (response.status_code, response.content) == (status, body)
    assert sum(backend.hits.values()) == 0


def test_redirect_then_follow(backend, start_gateway):
    gateway = start_gateway(basic_config(backend.url))
    response = requests.get(f"{gateway.url}/Users/7", allow_redirects=False)
    assert response.status_code == 301 and response.headers["Location"] == "/users/7"
    assert "X-Krakend" not in response.headers


def test_no_op_passes_status_and_headers(backend, start_gateway):
    gateway = start_gateway(basic_config(backend.url))
    response = requests.get(f"{gateway.url}/raw/418")
    assert response.status_code == 418 and response.json() == {"status": 418}
    assert response.headers["X-Krakend-Completed"] == "false" and "Cache-Control" not in response.headers


@pytest.mark.parametrize("path,text", [
    ("/slow", "context deadline exceeded"),
    ("/down", "connection refused"),
    ("/failing", "invalid status code 404 [GET /status/404]"),
])
def test_backend_failures_are_500_with_the_error_text(backend, start_gateway, path, text):
    gateway = start_gateway(basic_config(backend.url))
    started = time.monotonic()
    response = requests.get(gateway.url + path)
    assert response.status_code == 500 and text in response.text
    assert response.headers["X-Krakend-Completed"] == "false"
    assert time.monotonic() - started < 1.5  # the 300 ms endpoint timeout, not the 2 s backend


def test_seed_style_self_backend_is_served_internally(start_gateway):
    port = free_port()
    config = {"version": 3, "port": port, "endpoints": [
        {"endpoint": "/health-proxy", "backend": [{"host": [f"http://localhost:{port}"], "url_pattern": "/__health"}]}]}
    gateway = start_gateway(config, port=port)
    response = requests.get(f"{gateway.url}/health-proxy")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.headers["X-Krakend-Completed"] == "true"


@pytest.mark.parametrize("document,text", [
    ({"version": 2, "endpoints": []}, "unsupported version: 2 (want: 3)"),
    ({"version": 3, "endpoints": [{"endpoint": "/a", "backend": []}]},
     "ignoring the ' /a' endpoint, since it has 0 backends defined!"),
    ({"version": 3, "endpoints": [{"endpoint": "/a", "backend": [{"url_pattern": "/{x}"}]}]}, "undefined output param 'x'"),
    ({"version": 3, "endpoints": [{"endpoint": "/a/{x}", "backend": [{"url_pattern": "/"}]},
                                  {"endpoint": "/a/{y}", "backend": [{"url_pattern": "/"}]}]},
     "':y' in new path '/a/:y' conflicts with existing wildcard ':x' in existing prefix '/a/:x'"),
])
def test_invalid_config_exits_non_zero(start_gateway, document, text):
    gateway = start_gateway(document, expect_failure=True)
    returncode = run_until_exit(gateway)
    assert returncode not in (0, None)
    assert text in gateway.log() and "(at " in gateway.log()
    assert "listening at" not in gateway.log()


def run_until_exit(gateway, timeout=30):
    """Start the process and wait for it to end. (mitmproxy 12 may accept a connection while the script
    loads; the gateway must still exit, and never serves.)"""
    try:
        gateway.start(timeout=timeout)
    except Exception:
        pass
    return gateway.process.wait(timeout)


def test_misspelt_option_is_reported(backend, start_gateway, tmp_path):
    gateway = start_gateway(basic_config(backend.url), sets=["krakend_debgu=true"], expect_failure=True)
    assert run_until_exit(gateway) not in (0, None)
    assert "unknown option krakend_debgu; did you mean krakend_debug?" in gateway.log()


def test_hot_reload_keeps_last_good_config(backend, start_gateway, tmp_path):
    path = tmp_path / "live.json"
    path.write_text(json.dumps(basic_config(backend.url)))
    gateway = start_gateway(str(path))
    assert requests.get(f"{gateway.url}/users/1").status_code == 200

    broken = basic_config(backend.url)
    broken["version"] = 9
    path.write_text(json.dumps(broken))
    wait_for_log(gateway, "config reload failed")
    assert requests.get(f"{gateway.url}/users/1").status_code == 200  # last good config still serves

    fixed = basic_config(backend.url)
    fixed["endpoints"][0]["endpoint"] = "/people/{id}"
    path.write_text(json.dumps(fixed))
    wait_for_log(gateway, "changed, reloaded")
    assert requests.get(f"{gateway.url}/people/1").status_code == 200
    assert requests.get(f"{gateway.url}/users/1").status_code == 404


def wait_for_log(gateway, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in gateway.log():
            return
        time.sleep(0.1)  # polling the log file for the watcher's line
    raise AssertionError(f"{text!r} not logged:\n{gateway.log()}")


def test_plain_mitmdump_interface_with_addon_gateway_py(backend, tmp_path):
    """The documented interface: mitmdump -s addon/gateway.py --mode reverse:<placeholder> --set krakend_config=…"""
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(basic_config(backend.url)))
    port = free_port()
    # no connection_strategy here: the addon must set lazy itself; the placeholder port is closed
    command = [mitm_executable(), "-s", str(PROJECT / "addon" / "gateway.py"), "--mode", "reverse:http://127.0.0.1:1",
               "--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", f"krakend_config={path}"]
    with GatewayProcess(command, port) as gateway:
        assert requests.get(f"{gateway.url}/users/5").json()["path"] == "/accounts/5"


def test_unsupported_namespaces_are_listed_once(backend, start_gateway):
    config = basic_config(backend.url)
    config["extra_config"]["qos/ratelimit/router"] = {"max_rate": 5}
    gateway = start_gateway(config)
    assert gateway.log().count("extra_config.qos/ratelimit/router: not supported, ignored") == 1


def test_check_command(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 3, "endpoints": [
        {"endpoint": "/a", "backend": [{"url_pattern": "/{nope}"}]},
        {"endpoint": "/b/*c", "backend": [{"url_pattern": "/"}]}]}))
    completed = subprocess.run(["krakend-mitm", "check", "-c", str(bad)], capture_output=True, text=True,
                               env={**os.environ, "PATH": os.path.dirname(os.sys.executable) + ":" + os.environ["PATH"]})
    assert completed.returncode == 1
    assert "endpoints[0].backend[0].url_pattern: undefined output param 'nope'" in completed.stdout
    assert "endpoints[1].endpoint: ignoring the ' /b/*c' endpoint, since it is invalid!!!" in completed.stdout


def test_mitmweb_runs_the_gateway_too(backend, tmp_path):
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(basic_config(backend.url)))
    port = free_port()
    command = gateway_command(str(path), port, web=True, sets=("web_open_browser=false", f"web_port={free_port()}"))
    assert command[0].endswith("mitmweb") and "web_host=127.0.0.1" in command
    with GatewayProcess(command, port) as gateway:
        assert requests.get(f"{gateway.url}/users/3").json()["path"] == "/accounts/3"
