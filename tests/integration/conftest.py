"""Real processes on 127.0.0.1 with free ports. (`backend`, the echo server, comes from the
project's own pytest plugin, krakend_mitm.pytest_plugin.)"""

import json

import pytest

from krakend_mitm.processes import GatewayProcess, free_port, gateway_command


@pytest.fixture
def start_gateway(tmp_path):
    """start_gateway(config_dict_or_path, port=None, debug=False, sets=()) -> a running GatewayProcess."""
    started = []

    def start(config, port=None, debug=False, sets=(), expect_failure=False):
        port = port or free_port()
        if isinstance(config, dict):
            path = tmp_path / f"krakend-{len(started)}.json"
            path.write_text(json.dumps(config))
            config = str(path)
        gateway = GatewayProcess(gateway_command(config, port, debug=debug, sets=tuple(sets)), port)
        started.append(gateway)
        if expect_failure:
            return gateway
        return gateway.start()

    yield start
    for gateway in started:
        gateway.stop()
