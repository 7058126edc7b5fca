"""Stage 3 wiring: the config's `auth/validator` objects -> one validator per endpoint.

Placeholder until the validator lands: every protected endpoint fails closed (401).
"""

from __future__ import annotations

import logging

from krakend_mitm.config import GatewayConfig


class _FailClosed:
    def __init__(self, router_path: str):
        self.router_path = router_path

    async def authenticate(self, headers):
        from types import SimpleNamespace
        return SimpleNamespace(status=401, message="validator not available", reason_id="not_implemented",
                               details={}, propagate=(), claims=None)

    def url_values(self, verdict):
        return {}


class AuthStage:
    def __init__(self, config: GatewayConfig, *, jwk_url_map=(), max_staleness: float = 86400.0):
        self.validators = {}
        self.startup_lines: list[tuple[int, str]] = []
        for endpoint in config.endpoints:
            if endpoint.validator is None:
                self.startup_lines.append((logging.DEBUG, f"[ENDPOINT: {endpoint.router_path}][JWTValidator] Validator disabled for this endpoint"))
                continue
            self.validators[endpoint.index] = _FailClosed(endpoint.router_path)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def check_problems(config: GatewayConfig) -> list:
    return []
