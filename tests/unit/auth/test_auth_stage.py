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


def test_stage_owns_one_token_cache_shared_by_its_validators(tmp_path):
    config = load(tmp_path, [
        endpoint("/a", {"alg": "RS256", "jwk_url": "https://idp.example.com/keys"}),
        endpoint("/b", {"alg": "RS256", "jwk_url": "https://idp.example.com/keys", "roles": ["x"]}),
    ])
    stage = AuthStage(config)
    assert stage.token_cache is not None and stage.token_cache.capacity == 10_000
    assert all(v.token_cache is stage.token_cache for v in stage.validators.values())
    assert AuthStage(config).token_cache is not stage.token_cache  # no process-wide cache
    small = AuthStage(config, token_cache_capacity=5)
    assert small.token_cache.capacity == 5
    off = AuthStage(config, token_cache_capacity=0)
    assert off.token_cache is None and all(v.token_cache is None for v in off.validators.values())


def test_stage_reload_carries_the_verified_tokens_over(tmp_path, jwks_server):
    server = jwks_server([public_jwk(RSA, "k1")])
    config = load(tmp_path, [endpoint("/a", {"alg": "RS256", "jwk_url": server.url(), "disable_jwk_security": True})])

    async def main():
        old = AuthStage(config)
        old.start()
        await old.keystore.refresh()
        first = await old.validators[0].authenticate(bearer(TOKEN))
        new = AuthStage(config)
        new.adopt(old)
        old.stop()
        again = await new.validators[0].authenticate(bearer(TOKEN))
        new.stop()
        return old, new, first, again

    old, new, first, again = asyncio.run(main())
    assert first.status == 200 and "token_cache" not in first.details
    assert again.status == 200 and again.details["token_cache"] == "hit"  # the adopted key, the adopted proof
    assert new.token_cache is not old.token_cache and TOKEN in new.token_cache


def test_a_present_validator_never_makes_an_endpoint_public():
    """`auth/validator: null` decodes in KrakenD like `{}` (Go's json.Unmarshal of null into the config
    struct is a no-op): no https `jwk_url`, so every request is answered 401. The stage gets such a
    namespace as `{}` (see the module docstring); only None, an absent namespace, is public."""
    from types import SimpleNamespace

    config = SimpleNamespace(root_validator=None, endpoints=[
        SimpleNamespace(index=0, router_path="/null", json_path="endpoints[0]", validator={}),
        SimpleNamespace(index=1, router_path="/open", json_path="endpoints[1]", validator=None),
    ])
    stage = AuthStage(config)
    assert sorted(stage.validators) == [0]
    verdict = asyncio.run(stage.validators[0].authenticate(bearer(TOKEN)))
    assert (verdict.status, verdict.message) == (
        401, "Unable to parse the configuration: JWK client is using an insecure connection to the JWK service")
    problems = {(p.path, p.message.split(" (")[0]) for p in check_problems(config)}
    assert ("endpoints[0].extra_config.auth/validator.jwk_url",
            "JWK client is using an insecure connection to the JWK service") in problems


def test_a_null_validator_in_the_config_file_fails_closed(tmp_path):
    config = load(tmp_path, [endpoint("/null", None) | {"extra_config": {"auth/validator": None}}])
    stage = AuthStage(config)
    assert 0 in stage.validators
    assert asyncio.run(stage.validators[0].authenticate(bearer(TOKEN))).status == 401
