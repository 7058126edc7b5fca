"""The authenticate stage of the gateway: every endpoint's `auth/validator` -> one EndpointValidator,
all sharing the stage's KeyStore and its verified-token cache. Built once per config load (same
constructor, attributes and `check_problems`), duck-typed over the loaded config so this package
does not depend on it:

    config.endpoints[i].index / .router_path / .json_path ("endpoints[3]") / .validator
    config.root_validator (raw root `auth/validator` object or None)

`.validator` is the raw `auth/validator` value, and None only when the endpoint has no such
namespace: an endpoint whose validator is None is public. A namespace present with a JSON `null`
value is not "no validator" (KrakenD decodes `null` into its config struct as a no-op, exactly like
`{}`: the https check then fails and every request is answered 401), so it must arrive here as `{}`
(or any non-None value), never as None.
"""

from __future__ import annotations

import logging
from typing import Any

from krakend_mitm.errors import ConfigError
from krakend_mitm.auth.config import NAMESPACE, collect_problems, collect_root_problems, parse_root_validator, parse_validator
from krakend_mitm.auth.jwks import KeyStore
from krakend_mitm.auth.token_cache import DEFAULT_CAPACITY, TokenCache
from krakend_mitm.auth.validator import EndpointValidator

_CHECK_SEVERITIES = ("fatal", "broken", "unsupported", "latent")
_SUFFIX = {
    "broken": " (the validator is unusable: every request to this endpoint answers 401)",
    "unsupported": "",
    "latent": " (fatal once the rest of the validator configuration is valid)",
    "warning": " (warning)",
    "fatal": "",
}


def _extra(endpoint: Any) -> tuple[dict, str]:
    base = getattr(endpoint, "json_path", "") or f"endpoints[{endpoint.index}]"
    return {NAMESPACE: endpoint.validator}, f"{base}.extra_config"


class AuthStage:
    """Builds the validators; raises ConfigError (logged as KrakenD's `Unable to create the
    validator: <err>`) for a validator KrakenD would refuse to start with.

    The stage owns one KeyStore and one verified-token cache (`token_cache`, an LRU of
    `token_cache_capacity` tokens; 0 disables it), both shared by all of its validators."""

    def __init__(self, config: Any, *, jwk_url_map: tuple[str, ...] | list[str] = (),
                 max_staleness: float = 86400.0, keystore: KeyStore | None = None,
                 token_cache_capacity: int = DEFAULT_CAPACITY, **keystore_options: Any):
        self.keystore = keystore or KeyStore(url_map=tuple(jwk_url_map), max_staleness=max_staleness,
                                             **keystore_options)
        self.token_cache: TokenCache | None = TokenCache(token_cache_capacity) if token_cache_capacity else None
        self.validators: dict[int, EndpointValidator] = {}
        self.startup_lines: list[tuple[int, str]] = []
        root = getattr(config, "root_validator", None)
        if root is not None:
            spec = parse_root_validator({NAMESPACE: root}, log=False)
            if spec is not None and spec.defaulted:
                self.startup_lines.append((logging.INFO, "[SERVICE: JOSE] Empty shared_cache_duration, using default (15m)"))
        for endpoint in config.endpoints:
            if endpoint.validator is None:
                self.startup_lines.append(
                    (logging.INFO, f"[ENDPOINT: {endpoint.router_path}][JWTValidator] Validator disabled for this endpoint"))
                continue
            extra, path = _extra(endpoint)
            spec = parse_validator(extra, path=path, endpoint_path=endpoint.router_path)
            assert spec is not None
            validator = EndpointValidator(spec, self.keystore, endpoint_path=endpoint.router_path, log_startup=False,
                                          token_cache=self.token_cache)
            self.startup_lines += validator.startup_lines
            self.validators[endpoint.index] = validator

    def adopt(self, previous: "AuthStage") -> None:
        """Configuration reload: reuse the key sets the previous stage downloaded, and the tokens its
        cache holds (call before start). The adopted sets keep their key objects, so the cached
        proofs of tokens signed with them still count; any other entry is simply never hit."""
        self.keystore.adopt(previous.keystore)
        if self.token_cache is not None and previous.token_cache is not None:
            self.token_cache.adopt(previous.token_cache)

    def start(self) -> None:
        """Synchronously, inside the running event loop (mitmproxy `running`)."""
        self.keystore.start()

    def stop(self) -> None:
        """mitmproxy `done`, or the old stage of a reload."""
        self.keystore.stop()

    def status(self) -> list[dict]:
        return self.keystore.status()


def check_problems(config: Any, *, include_warnings: bool = False) -> list[ConfigError]:
    """Every validator problem of a loaded config, with JSON paths, for `krakend-mitm check`."""
    out: list[ConfigError] = []
    severities = _CHECK_SEVERITIES + (("warning",) if include_warnings else ())
    root = getattr(config, "root_validator", None)
    if root is not None:
        for problem in collect_root_problems({NAMESPACE: root}):
            if problem.severity in severities:
                out.append(ConfigError(problem.path, problem.message + _SUFFIX.get(problem.severity, "")))
    for endpoint in config.endpoints:
        if endpoint.validator is None:
            continue
        extra, path = _extra(endpoint)
        for problem in collect_problems(extra, path=path):
            if problem.severity in severities:
                out.append(ConfigError(problem.path, problem.message + _SUFFIX.get(problem.severity, "")))
    return out
