"""The `krakend-mitm` command as a user types it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from krakend_mitm.processes import free_port

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
CONFIGS = sorted(p for p in (PROJECT / "configs").rglob("*") if p.suffix in (".json", ".yaml", ".yml"))


def cli(*args, timeout=120):
    return subprocess.run([str(BIN / "krakend-mitm"), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_passes_check(config):
    completed = cli("check", "-c", str(config))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.strip() == "Syntax OK!"


def test_descope_demo_runs_offline_and_exits_zero():
    completed = cli("demo", "--port", str(free_port()), "--mock-port", str(free_port()))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "7 of 7 steps as KrakenD answers" in completed.stdout
    assert "[ENDPOINT: /descope-protected][JWTValidator] Unable to validate the token: Token not found" in completed.stdout
    assert "[FAIL]" not in completed.stdout


def test_routing_demo_runs_offline_and_exits_zero():
    completed = cli("demo", "--routing", "--port", str(free_port()))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "8 of 8 steps as KrakenD answers" in completed.stdout


def test_embedded_descope_config_is_configs_descope_json():
    import json
    from krakend_mitm.demo import EMBEDDED_DESCOPE_CONFIG
    assert json.loads((PROJECT / "configs" / "descope.json").read_text()) == EMBEDDED_DESCOPE_CONFIG


def test_demo_names_a_busy_port():
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        completed = cli("demo", "--port", str(port), "--mock-port", str(free_port()))
    assert completed.returncode == 2 and f"port {port} (gateway) is busy" in completed.stderr


def test_run_serves_the_config(tmp_path):
    port = free_port()
    config = tmp_path / "krakend.json"
    config.write_text('{"version": 3, "listen_ip": "127.0.0.1", "endpoints": []}')
    process = subprocess.Popen([str(BIN / "krakend-mitm"), "run", "-c", str(config), "-p", str(port), "-d"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                response = requests.get(f"http://127.0.0.1:{port}/__debug/x", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)  # polling until mitmdump listens
        assert response.status_code == 200 and response.json() == {"message": "pong"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def test_run_refuses_an_invalid_config(tmp_path):
    config = tmp_path / "krakend.json"
    config.write_text('{"version": 3, "endpoints": [{"endpoint": "/a", "backend": []}]}')
    completed = cli("run", "-c", str(config))
    assert completed.returncode == 1
    assert "ignoring the ' /a' endpoint, since it has 0 backends defined! (at endpoints[0].backend)" in completed.stderr
