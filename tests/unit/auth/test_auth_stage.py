"""The drop-in AuthStage over a config loaded by krakend_mitm.config (duck-typed)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from jwt_testkit import bearer, jwks_server, mint, public_jwk, rsa_key  # noqa: F401 - fixture
from krakend_mitm.auth import AuthStage, check_problems
from krakend_mitm.errors import ConfigError

RSA = rsa_key("stage")
TOKEN = mint({"sub": "1234567890qwertyuio", "exp": 4102444800, "http://example.com/custom": "foobar"}, RSA)


def endpoint(path: str, validator=None) -> dict:
    ep = {"endpoint": path, "backend": [{"host": ["http://127.0.0.1:8080"], "url_pattern": "/x"}]}
    if validator is not None:
        ep["extra_config"] = {"auth/validator": validator}
    return ep


def load(tmp_path, endpoints, root=None):
    config_mod = pytest.importorskip("krakend_mitm.config")
    doc = {"version": 3, "endpoints": endpoints}
    if root is not None:
        doc["extra_config"] = {"auth/validator": root}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(doc))
    return config_mod.load(str(path))


def test_stage_builds_validators_and_serves(tmp_path, jwks_server):
    server = jwks_server([public_jwk(RSA, "k1")])
    config = load(tmp_path, [
        endpoint("/open"),
        endpoint("/users/{id}", {"alg": "RS256", "jwk_url": "https://idp.example.com/keys", "cache": True}),
        endpoint("/broken", {"alg": "RS256", "jwk_url": "http://idp.example.com/keys"}),
    ], root={})
    stage = AuthStage(config, jwk_url_map=[f"https://idp.example.com=http://127.0.0.1:{server.port}"])
    assert sorted(stage.validators) == [1, 2]
    lines = dict((text, level) for level, text in stage.startup_lines)
    assert lines["[SERVICE: JOSE] Empty shared_cache_duration, using default (15m)"] == logging.INFO
    assert lines["[ENDPOINT: /open][JWTValidator] Validator disabled for this endpoint"] == logging.INFO
    assert lines["[ENDPOINT: /users/:id][JWTValidator] Validator enabled for this endpoint"] == logging.DEBUG
    assert lines["[ENDPOINT: /broken][JWTValidator] Unable to parse the configuration: "
                 "JWK client is using an insecure connection to the JWK service"] == logging.WARNING

    async def main():
        stage.start()
        good = await stage.validators[1].authenticate(bearer(TOKEN))
        broken = await stage.validators[2].authenticate(bearer(TOKEN))
        values = stage.validators[1].url_values(good)
        stage.stop()
        return good, broken, values

    good, broken, values = asyncio.run(main())
    assert good.status == 200 and broken.status == 401
    assert values["JWT.sub"] == "1234567890qwertyuio"
    assert values["JWT.http://example.com/custom"] == "foobar"
    assert server.count() == 1


def test_stage_reload_adopts_keys(tmp_path, jwks_server):
    server = jwks_server([public_jwk(RSA, "k1")])
    config = load(tmp_path, [endpoint("/a", {"alg": "RS256", "jwk_url": server.url(), "disable_jwk_security": True})])

    async def main():
        old = AuthStage(config)
        old.start()
        await old.keystore.refresh()
        new = AuthStage(config)
        new.adopt(old)
        old.stop()
        verdict = await new.validators[0].authenticate(bearer(TOKEN))
        new.stop()
        return verdict

    assert asyncio.run(main()).status == 200
    assert server.count() == 1  # the old stage's warm-up and refresh shared one download


def test_stage_refuses_what_krakend_refuses(tmp_path, caplog):
    caplog.set_level(logging.CRITICAL)
    config = load(tmp_path, [endpoint("/a", {"alg": "RS257", "jwk_url": "https://idp/keys"})])
    with pytest.raises(ConfigError) as info:
        AuthStage(config)
    assert info.value.path == "endpoints[0].extra_config.auth/validator.alg"
    assert "[ENDPOINT: /a][JWTValidator] Unable to create the validator: JOSE: unknown algorithm RS257" in caplog.text


def test_check_problems(tmp_path):
    config = load(tmp_path, [
        endpoint("/a"),
        endpoint("/b", {"alg": "RS257", "jwk_url": "https://idp/keys", "jwk-url": "typo"}),
        endpoint("/c", {"alg": "RS256", "jwk_url": "https://idp/keys", "audience": "x"}),
    ], root={"shared_cache_duration": "x"})
    problems = {(p.path, p.message) for p in check_problems(config)}
    assert ("endpoints[1].extra_config.auth/validator.alg", "JOSE: unknown algorithm RS257") in problems
    assert any(path == "endpoints[2].extra_config.auth/validator.audience" and "every request" in msg
               for path, msg in problems)
    assert "extra_config.auth/validator.shared_cache_duration" not in {path for path, _ in problems}  # a warning
    with_warnings = {p.path for p in check_problems(config, include_warnings=True)}
    assert "endpoints[1].extra_config.auth/validator.jwk-url" in with_warnings
    assert "extra_config.auth/validator.shared_cache_duration" in with_warnings
