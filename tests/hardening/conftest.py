"""Session fixtures of the hardening suites: ONE attack gateway (real mitmdump) with every attack
endpoint and the backend-fault endpoints, its JWKS server, an echo backend with hit counters and a
misbehaving backend. Suites that need other gateway options (staleness, config reload) start their
own, once per module."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hardening_corpus import attack_config, corpus_keys
from hardening_kit import FaultBackend, KeyServer, closed_port

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, free_port, gateway_command


class AttackEnv(SimpleNamespace):
    def backend_hits(self, prefix: str) -> dict[str, int]:
        with self.backend._lock:
            return {path: n for path, n in self.backend.hits.items() if path.startswith(prefix)}

    def total_backend_hits(self) -> int:
        with self.backend._lock:
            return sum(self.backend.hits.values())


@pytest.fixture(scope="session")
def attack_env(tmp_path_factory):
    keys = corpus_keys()
    jwks = KeyServer()
    for path, key_set in keys.key_sets().items():
        jwks.set_keys(path, key_set)
    backend = EchoServer().start()
    faults = FaultBackend()
    port = free_port()
    config = attack_config(port, jwks.url(""), backend.url, faults.url, closed_port())
    config_path = tmp_path_factory.mktemp("attack") / "attack.json"
    config_path.write_text(json.dumps(config, indent=1))
    gateway = GatewayProcess(gateway_command(str(config_path), port), port).start()
    env = AttackEnv(gateway=gateway, port=port, jwks=jwks, backend=backend, faults=faults, keys=keys,
                    config=config, sent_tokens=[])
    try:
        yield env
    finally:
        gateway.stop()
        jwks.close()
        backend.stop()
        faults.close()

