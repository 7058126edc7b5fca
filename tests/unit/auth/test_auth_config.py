"""Spec §2, §3, §15: decoding `auth/validator`, defaults, broken configs, fatal errors, `check` paths."""

from __future__ import annotations

import json
import logging

import pytest

from jwt_testkit import bearer, ec_key, local_validator, public_jwk, run
from krakend_mitm.auth import (
    EndpointValidator,
    KeyStore,
    collect_problems,
    collect_root_problems,
    parse_root_validator,
    parse_validator,
)
from krakend_mitm.auth.config import INSECURE_MESSAGE
from krakend_mitm.errors import ConfigError

BASE = {"alg": "RS256", "jwk_url": "https://idp.example.com/keys"}
PREFIX = "endpoints[2].extra_config"


def spec_of(cfg, **kw):
    return parse_validator({"auth/validator": cfg}, path=PREFIX, **kw)


def test_no_validator_returns_none():
    assert parse_validator({"qos/ratelimit/router": {}}) is None
    assert parse_validator(None) is None
    assert collect_problems({}) == []


def test_defaults():
    spec = spec_of(dict(BASE))
    assert spec.broken is None and not spec.fail_closed
    assert spec.roles_key == "roles"
    assert spec.cookie_key == "access_token"
    assert spec.auth_header_name == "Authorization"
    assert spec.scopes_key == ""
    assert spec.scopes_matcher == "any"
    assert spec.cache is False
    assert spec.cache_duration == 900
    assert spec.leeway == 1.0
    assert spec.key_identify_strategy == "kid"
    assert spec.failed_jwk_key_cooldown is None
    assert spec.path == f"{PREFIX}.auth/validator"


def test_legacy_namespace_is_accepted_and_new_one_wins():
    legacy = "github.com/devopsfaith/krakend-jose/validator"
    spec = parse_validator({legacy: dict(BASE)})
    assert spec.namespace == legacy and spec.alg == "RS256"
    both = parse_validator({legacy: {"alg": "HS256", "jwk_url": "https://x"}, "auth/validator": dict(BASE)})
    assert both.namespace == "auth/validator" and both.alg == "RS256"
    assert any(p.severity == "warning" and p.path == legacy for p in both.problems)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("audience", "x", "json: cannot unmarshal string into Go struct field SignatureConfig.audience of type []string"),
        ("leeway", 5, "json: cannot unmarshal number into Go struct field SignatureConfig.leeway of type string"),
        ("cache_duration", -5, "json: cannot unmarshal number -5 into Go struct field SignatureConfig.cache_duration of type uint32"),
        ("cache_duration", 1.5, "json: cannot unmarshal number 1.5 into Go struct field SignatureConfig.cache_duration of type uint32"),
        ("cache", "true", "json: cannot unmarshal string into Go struct field SignatureConfig.cache of type bool"),
        ("roles", [1], "json: cannot unmarshal number into Go struct field SignatureConfig.roles of type string"),
        ("propagate_claims", ["sub"], "json: cannot unmarshal string into Go struct field SignatureConfig.propagate_claims of type []string"),
        ("cipher_suites", [70000], "json: cannot unmarshal number 70000 into Go struct field SignatureConfig.cipher_suites of type uint16"),
        ("cypher_key", "!!", "illegal base64 data at input byte 0"),
    ],
)
def test_wrong_json_type_breaks_the_validator(key, value, message, caplog):
    cfg = dict(BASE, **{key: value})
    spec = spec_of(cfg)
    assert spec.broken == message
    assert spec.fail_closed
    problems = collect_problems({"auth/validator": cfg}, path=PREFIX)
    assert any(p.severity == "broken" and p.message == message and p.path.startswith(f"{PREFIX}.auth/validator.{key}")
               for p in problems)
    caplog.set_level(logging.DEBUG)
    validator = EndpointValidator(spec, None, endpoint_path="/test/:id")
    assert f"[ENDPOINT: /test/:id][JWTValidator] Unable to parse the configuration: {message}" in caplog.text
    verdict = run(validator.authenticate(bearer("anything")))
    assert verdict.status == 401


def test_first_type_error_in_sorted_key_order_is_reported():
    spec = spec_of(dict(BASE, roles="x", audience="y"))
    assert "audience" in spec.broken  # Go re-marshals the map: members are decoded in sorted order


def test_validator_that_is_not_an_object():
    spec = parse_validator({"auth/validator": True})
    assert spec.broken == "json: cannot unmarshal bool into Go value of type jose.SignatureConfig"


@pytest.mark.parametrize("cfg", [{}, {"alg": "RS256", "jwk_url": "http://idp/keys"}, {"alg": "RS256"}])
def test_insecure_jwk_url_breaks_the_validator(cfg):
    spec = parse_validator({"auth/validator": cfg})
    assert spec.broken == INSECURE_MESSAGE
    assert run(EndpointValidator(spec, None, endpoint_path="/x").authenticate([])).status == 401


def test_insecure_check_applies_with_local_path_too(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"keys": [public_jwk(ec_key(), "e")]}))
    spec = parse_validator({"auth/validator": {"alg": "ES256", "jwk_local_path": str(path)}})
    assert spec.broken == INSECURE_MESSAGE
    ok = parse_validator({"auth/validator": {"alg": "ES256", "jwk_local_path": str(path), "disable_jwk_security": True}})
    assert ok.broken is None and len(ok.local_keys) == 1


def test_http_url_allowed_with_disable_jwk_security():
    spec = parse_validator({"auth/validator": {"alg": "RS256", "jwk_url": "http://idp/keys", "disable_jwk_security": True}})
    assert spec.broken is None


def test_case_insensitive_member_names_like_go():
    spec = parse_validator({"auth/validator": dict(BASE, ALG="HS256")})
    # "ALG" sorts before "alg": the exact name is decoded last and wins
    assert spec.alg == "RS256"
    only_upper = parse_validator({"auth/validator": {"ALG": "HS256", "Jwk_Url": "https://x/keys"}})
    assert only_upper.alg == "HS256" and only_upper.jwk_url == "https://x/keys"
    assert any("case-insensitively" in p.message for p in only_upper.problems)


def test_unknown_keys_are_ignored_with_a_warning():
    problems = collect_problems({"auth/validator": dict(BASE, **{"jwk-url": "x", "propagate-claims": []})}, path=PREFIX)
    warned = {p.path: p.message for p in problems if p.severity == "warning"}
    assert "did you mean jwk_url" in warned[f"{PREFIX}.auth/validator.jwk-url"]
    assert "did you mean propagate_claims" in warned[f"{PREFIX}.auth/validator.propagate-claims"]


@pytest.mark.parametrize(
    "cfg,path,message",
    [
        ({"alg": "RS257"}, "alg", "JOSE: unknown algorithm RS257"),
        ({"alg": ""}, "alg", "JOSE: unknown algorithm "),
        ({"alg": "rs256"}, "alg", "JOSE: unknown algorithm rs256"),
        ({"jwk_fingerprints": ["AAAA", "not base64!"]}, "jwk_fingerprints[1]",
         "decoding fingerprint #1: illegal base64 data at input byte 3"),
        ({"jwk_fingerprints": ["x" * 43]}, "jwk_fingerprints[0]",
         "decoding fingerprint #0: illegal base64 data at input byte 40"),
        ({"jwk_local_ca": "/nonexistent/ca.pem"}, "jwk_local_ca", "open /nonexistent/ca.pem: no such file or directory"),
        ({"roles_key_is_nested": True, "roles_key": "a.b"}, "roles_key",
         "runtime error: slice bounds out of range [:4] with length 3"),
    ],
)
def test_fatal_problems_raise_config_error(cfg, path, message, caplog):
    caplog.set_level(logging.CRITICAL)
    with pytest.raises(ConfigError) as info:
        spec_of(dict(BASE, **cfg), endpoint_path="/e")
    assert info.value.path == f"{PREFIX}.auth/validator.{path}"
    assert info.value.message.startswith(message)
    assert "[ENDPOINT: /e][JWTValidator] Unable to create the validator: " + message in caplog.text


def test_nested_roles_key_of_four_characters_is_fine():
    assert spec_of(dict(BASE, roles_key_is_nested=True, roles_key="a.bc")).nested_roles


def test_cache_with_local_path_is_fatal(tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"keys": [public_jwk(ec_key(), "e")]}))
    with pytest.raises(ConfigError, match="cache could not be used with jwk_local_path") as info:
        spec_of(dict(BASE, jwk_local_path=str(path), cache=True))
    assert info.value.path.endswith(".cache")


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such file or directory"),
        ("{not json", "invalid character 'n' looking for beginning of object key string"),
        (json.dumps({"keys": [{"kty": "xyz"}]}), "go-jose/go-jose: unknown json web key type 'xyz'"),
    ],
)
def test_unusable_local_file_is_fatal(tmp_path, content, message):
    path = tmp_path / "k.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        spec_of(dict(BASE, jwk_local_path=str(path)))
    assert info.value.path.endswith(".jwk_local_path")


def test_relative_local_path_uses_base_dir(tmp_path):
    (tmp_path / "k.json").write_text(json.dumps({"keys": [public_jwk(ec_key(), "e")]}))
    spec = spec_of(dict(BASE, jwk_local_path="k.json"), base_dir=str(tmp_path))
    assert len(spec.local_keys) == 1


def test_broken_config_does_not_raise_fatal_errors_but_reports_them_as_latent():
    cfg = {"alg": "NOPE", "jwk_url": "http://insecure"}
    spec = parse_validator({"auth/validator": cfg})  # no exception: KrakenD never builds it
    assert spec.broken == INSECURE_MESSAGE
    severities = {p.path.rsplit(".", 1)[-1]: p.severity for p in collect_problems({"auth/validator": cfg})}
    assert severities["alg"] == "latent" and severities["jwk_url"] == "broken"


@pytest.mark.parametrize("key,value", [("secret_url", "base64key://smGbjm71Nxd1Ig5FS0wj9SlbzAIrnolCz9bQQ6uAhl4="),
                                       ("cypher_key", "AAAA")])
def test_unimplemented_keys_fail_closed(key, value, caplog):
    spec = spec_of(dict(BASE, **{key: value}))
    assert spec.fail_closed and spec.unsupported
    problems = collect_problems({"auth/validator": dict(BASE, **{key: value})}, path=PREFIX)
    assert any(p.severity == "unsupported" and p.path == f"{PREFIX}.auth/validator.{key}" for p in problems)
    validator = EndpointValidator(spec, KeyStore(), endpoint_path="/k")
    verdict = run(validator.authenticate(bearer("x.y.z")))
    assert verdict.status == 401 and verdict.reason_id == "config_unsupported"


@pytest.mark.parametrize(
    "leeway,expected", [(None, 1.0), ("", 1.0), ("junk", 1.0), ("500ms", 1.0), ("-3s", 1.0), ("1500ms", 1.5),
                        ("2s", 2.0), ("1m", 60.0)],
)
def test_leeway(leeway, expected):
    cfg = dict(BASE)
    if leeway is not None:
        cfg["leeway"] = leeway
    assert spec_of(cfg).leeway == expected


@pytest.mark.parametrize("value,expected", [(None, None), ("10s", 10.0), ("junk", None), ("500ms", None), ("1m", 60.0)])
def test_failed_jwk_key_cooldown(value, expected):
    cfg = dict(BASE)
    if value is not None:
        cfg["failed_jwk_key_cooldown"] = value
    assert spec_of(cfg).failed_jwk_key_cooldown == expected


@pytest.mark.parametrize("value,expected", [("kid", "kid"), ("x5t", "x5t"), ("x5t#S256", "x5t#S256"),
                                            ("kid_x5t", "kid_x5t"), ("", "kid"), ("nope", "kid")])
def test_key_identify_strategy(value, expected):
    assert spec_of(dict(BASE, key_identify_strategy=value)).key_identify_strategy == expected


@pytest.mark.parametrize("value,expected", [("all", "all"), ("any", "any"), ("ALL", "any"), ("", "any")])
def test_scopes_matcher(value, expected):
    assert spec_of(dict(BASE, scopes_matcher=value)).scopes_matcher == expected


def test_cache_duration_zero_means_900():
    assert spec_of(dict(BASE, cache_duration=0)).cache_duration == 900
    assert spec_of(dict(BASE, cache_duration=60)).cache_duration == 60


def test_nsec_roles_key_is_a_warning():
    problems = collect_problems({"auth/validator": dict(BASE, roles_key="nsec.roles")})
    assert any(p.severity == "warning" and "nsec" in p.message for p in problems)


def test_startup_debug_lines(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    local_validator(tmp_path, [public_jwk(ec_key(), "e")], endpoint="/a/:id", alg="ES256",
                    roles_key="realm.roles", roles_key_is_nested=True, scopes=["a", "b"], scopes_key="scope",
                    scopes_matcher="all", operation_debug=True)
    text = caplog.text
    assert "[ENDPOINT: /a/:id][JWTValidator] Roles will be matched against the nested key: 'realm.roles'" in text
    assert ("[ENDPOINT: /a/:id][JWTValidator] Constraint added: tokens must contain a claim 'scope' "
            "with all these scopes: [a b]") in text
    assert "[ENDPOINT: /a/:id][JWTValidator] Validator enabled for this endpoint. Operation debug is enabled" in text
    caplog.clear()
    local_validator(tmp_path, [public_jwk(ec_key(), "e")], endpoint="/b", alg="ES256", scopes=["a"])
    assert "[ENDPOINT: /b][JWTValidator] Roles will be matched against the key: 'roles'" in caplog.text
    assert "[ENDPOINT: /b][JWTValidator] No scope validation required" in caplog.text
    assert "[ENDPOINT: /b][JWTValidator] Validator enabled for this endpoint" in caplog.text
    caplog.clear()
    local_validator(tmp_path, [public_jwk(ec_key(), "e")], endpoint="/c", alg="ES256", scopes=["a"], scopes_key="s")
    assert "with any of these scopes: [a]" in caplog.text


def test_root_shared_cache_duration(caplog):
    caplog.set_level(logging.INFO)
    assert parse_root_validator({}) is None
    root = parse_root_validator({"auth/validator": {}})
    assert root.shared_cache_duration == 900
    assert "[SERVICE: JOSE] Empty shared_cache_duration, using default (15m)" in caplog.text
    assert parse_root_validator({"auth/validator": {"shared_cache_duration": 60}}).shared_cache_duration == 60
    problems = collect_root_problems({"auth/validator": {"shared_cache_duration": "x"}})
    assert problems and problems[0].path == "extra_config.auth/validator.shared_cache_duration"
