"""pytest fixtures for your own integration tests (registered through the `pytest11` entry point).

    def test_protected(krakend_gateway, mock_descope):
        gateway = krakend_gateway("krakend.json", descope=mock_descope)
        assert requests.get(gateway.url + "/descope-protected").status_code == 401

Every fixture starts real processes on free 127.0.0.1 ports, waits until they answer (never a fixed
sleep) and stops them when the test ends.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import pytest

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, config_on_port, free_port, gateway_command, read_config_document

DESCOPE_API = "https://api.descope.com"


@dataclass
class RunningGateway:
    url: str
    port: int
    config_path: str
    process: GatewayProcess

    def log(self) -> str:
        """Everything the gateway logged so far."""
        return self.process.log()

    def log_lines(self) -> list[str]:
        return self.log().splitlines()


def _load(config: str | os.PathLike | dict) -> dict:
    if isinstance(config, dict):
        return json.loads(json.dumps(config))
    return read_config_document(os.fspath(config))


def start_gateway(config: str | os.PathLike | dict, *, descope: Any = None, jwk_url_map: dict | None = None,
                  debug: bool = False, sets: tuple[str, ...] = (), port: int | None = None,
                  workdir: str | None = None) -> RunningGateway:
    port = port or free_port()
    document = config_on_port(_load(config), port)
    fd, path = tempfile.mkstemp(prefix="krakend-", suffix=".json", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f)
    mapping = dict(jwk_url_map or {})
    if descope is not None:
        mapping.setdefault(DESCOPE_API, descope.base_url)
    all_sets = tuple(sets) + tuple(f"jwk_url_map={prefix}={target}" for prefix, target in mapping.items())
    process = GatewayProcess(gateway_command(path, port, debug=debug, sets=all_sets), port).start()
    return RunningGateway(url=process.url, port=port, config_path=path, process=process)


@pytest.fixture
def krakend_gateway(tmp_path):
    """A factory: `krakend_gateway(config, descope=None, jwk_url_map=None, debug=False, sets=())`.
    `config` is a path (JSON/YAML) or a dict. With `descope=mock_descope`, the config's
    `https://api.descope.com` JWKS URLs point at the mock."""
    started: list[RunningGateway] = []

    def start(config, **kwargs) -> RunningGateway:
        gateway = start_gateway(config, workdir=str(tmp_path), **kwargs)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.process.stop()


@pytest.fixture
def backend():
    """An echo backend on 127.0.0.1: every request is answered with what it received, as JSON."""
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture
def mock_descope():
    """A local mock Descope on a free port (JWKS, access-key exchange, refresh, minting), with its
    Python controls: `mint()`, `exchange()`, `rotate()`, `fault()`, `set_clock()`, `stats()`, `reset()`."""
    from krakend_mitm.descope.mock import MockDescope

    mock = MockDescope(port=0).start()
    yield mock
    mock.stop()
