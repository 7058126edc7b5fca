"""Spec §8-§12 and descope.md §9: registered claims, roles, scopes, propagation, `{JWT.x}`, Descope rules."""

from __future__ import annotations

import logging

import pytest

from jwt_testkit import HMAC_SECRET, FakeClock, bearer, local_validator, mint, public_jwk, run
from krakend_mitm.auth import claim_for_url, render_claim, render_claim_for_url, render_claim_values
from krakend_mitm.auth.claims import (
    Propagator,
    RolesCheck,
    ScopesCheck,
    decode_payload,
    go_int64,
)

NOW = 1_700_000_000.0
P = "Unable to validate the token: go-jose/go-jose/jwt: validation "


@pytest.fixture
def make(tmp_path):
    def build(clock=None, **cfg):
        cfg.setdefault("alg", "HS256")
        return local_validator(tmp_path, [public_jwk(HMAC_SECRET, "k1")], clock=clock or FakeClock(NOW), **cfg)
    return build


def check(validator, claims):
    return run(validator.authenticate(bearer(mint(claims, HMAC_SECRET, alg="HS256"))))


# ---------------------------------------------------------------------------------------------
# §8 registered claims and leeway (checklist rows 11-13)


@pytest.mark.parametrize(
    "claims,leeway,status,message",
    [
        ({}, None, 200, ""),  # no exp: never expires
        ({"exp": NOW - 0.5}, None, 200, ""),  # within the 1 s default leeway
        ({"exp": NOW - 1}, None, 200, ""),  # now - leeway == exp: still valid
        ({"exp": NOW - 2}, None, 401, P + "failed, token is expired (exp)"),
        ({"exp": NOW - 2}, "3s", 200, ""),
        ({"exp": NOW - 1}, "500ms", 200, ""),  # leeway never below 1 s
        ({"exp": NOW - 2}, "1500ms", 401, P + "failed, token is expired (exp)"),  # 1.5 s, not rounded
        # exp is truncated toward zero to whole seconds: ...998.1 -> ...998, so now - 1 s > exp
        ({"exp": NOW - 1.9}, None, 401, P + "failed, token is expired (exp)"),
        ({"exp": NOW - 0.9}, None, 200, ""),
        ({"exp": None}, None, 200, ""),  # null counts as absent
        ({"nbf": NOW + 2}, None, 401, P + "failed, token not valid yet (nbf)"),
        ({"nbf": NOW + 1}, None, 200, ""),
        ({"nbf": NOW + 2}, "5s", 200, ""),
        ({"iat": NOW + 2}, None, 401, P + "field, token issued in the future (iat)"),
        ({"iat": NOW + 1}, None, 200, ""),
        ({"iat": NOW - 100}, None, 200, ""),
        ({"exp": NOW - 5, "nbf": NOW + 5}, None, 401, P + "failed, token not valid yet (nbf)"),  # nbf before exp
        ({"exp": 1e30}, None, 401, P + "failed, token is expired (exp)"),  # Go's int64 conversion overflows
    ],
)
def test_time_claims(make, claims, leeway, status, message):
    cfg = {"leeway": leeway} if leeway else {}
    verdict = check(make(**cfg), claims)
    assert (verdict.status, verdict.message) == (status, message)


def test_sub_second_clock(make):
    validator = make(clock=FakeClock(NOW + 1.5))
    assert check(validator, {"exp": NOW}).status == 401  # now - 1 = NOW + 0.5 > NOW
    validator = make(clock=FakeClock(NOW + 0.999))
    assert check(validator, {"exp": NOW}).status == 200


@pytest.mark.parametrize(
    "claims,issuer,audience,status,message",
    [
        ({"iss": "https://idp"}, "https://idp", None, 200, ""),
        ({"iss": "https://idp/"}, "https://idp", None, 401, P + "failed, invalid issuer claim (iss)"),
        ({}, "https://idp", None, 401, P + "failed, invalid issuer claim (iss)"),
        ({"aud": "a"}, None, ["a", "b"], 401, P + "failed, invalid audience claim (aud)"),
        ({"aud": ["a", "b", "c"]}, None, ["a", "b"], 200, ""),
        ({"aud": "a"}, None, ["a"], 200, ""),
        ({"aud": [1]}, None, ["a"], 401, "Unable to validate the token: go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"),
        ({"aud": [1]}, None, None, 401, "Unable to validate the token: go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"),
        ({"aud": "anything"}, None, None, 200, ""),  # aud is ignored when no audience is configured
        ({"aud": None}, None, None, 401, "Unable to validate the token: go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"),
        ({"iss": "x", "aud": "zzz", "exp": NOW - 10}, "y", ["a"], 401, P + "failed, invalid issuer claim (iss)"),  # order
        ({"aud": "zzz", "exp": NOW - 10}, None, ["a"], 401, P + "failed, invalid audience claim (aud)"),
    ],
)
def test_issuer_and_audience(make, claims, issuer, audience, status, message):
    cfg = {}
    if issuer:
        cfg["issuer"] = issuer
    if audience:
        cfg["audience"] = audience
    verdict = check(make(**cfg), claims)
    assert (verdict.status, verdict.message) == (status, message)


@pytest.mark.parametrize(
    "claims,message,reason",
    [
        ({"iss": 5}, "json: cannot unmarshal number into Go value of type string", None),
        ({"sub": 12345}, "json: cannot unmarshal number into Go value of type string", None),
        ({"jti": True}, "json: cannot unmarshal bool into Go value of type string", None),
        ({"sub": {"a": 1}}, "json: cannot unmarshal object into Go value of type string", None),
        ({"exp": "1760000000"}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", "claim_time_type"),
        ({"nbf": "1"}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", "claim_time_type"),
        ({"iat": "1"}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", "claim_time_type"),
        ({"exp": True}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", None),
        ({"exp": [1]}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", None),
        # an aborting decoder error wins over an earlier plain type error, as in Go
        ({"sub": 1, "exp": "2"}, "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate", "claim_time_type"),
    ],
)
def test_registered_claim_types_even_when_not_configured(make, claims, message, reason, caplog):
    caplog.set_level(logging.INFO)
    verdict = check(make(), claims)
    assert verdict.status == 401
    assert verdict.message == "Unable to validate the token: " + message
    assert verdict.reason_id == reason
    if reason:
        assert f"[reason: {reason}]" in caplog.text


@pytest.mark.parametrize("payload", [b"[1]", b'"x"', b"5"])
def test_payload_must_be_an_object(make, payload):
    verdict = run(make().authenticate(bearer(mint(payload, HMAC_SECRET, alg="HS256"))))
    assert verdict.status == 401 and "into Go value of type jwt.Claims" in verdict.message


def test_null_payload_is_empty_claims(make):
    verdict = run(make().authenticate(bearer(mint(b"null", HMAC_SECRET, alg="HS256"))))
    assert verdict.status == 200 and verdict.claims == {}


def test_numbers_are_floats_like_go():
    claims, reg = decode_payload(b'{"n": 1, "big": 12345678901234567890, "exp": 1700000000.9}')
    assert claims["n"] == 1.0 and isinstance(claims["n"], float)
    assert claims["big"] == float(12345678901234567890)
    assert reg.exp == 1700000000
    assert go_int64(-1.9) == -1 and go_int64(1e300) == -(1 << 63)


# ---------------------------------------------------------------------------------------------
# §9 roles (checklist rows 15-16)


ROLES = ["role_a", "role_c"]


@pytest.mark.parametrize(
    "claims,config,status",
    [
        ({"roles": ["role_x", "role_c"]}, {}, 200),  # any-of
        ({"roles": "role_x role_a"}, {}, 200),  # space-separated string
        ({"roles": "role_x,role_a"}, {}, 403),  # commas are not separators
        ({"roles": "role_x  role_a"}, {}, 200),  # double space gives an empty element, still matches
        ({"roles": ["role_y"]}, {}, 403),
        ({}, {}, 403),  # missing
        ({"roles": 5}, {}, 403),  # other type
        ({"roles": []}, {}, 403),
        ({"roles": ["ROLE_A"]}, {}, 403),  # case-sensitive
        ({"roles": ["role_y"]}, {"roles": []}, 200),  # no check without roles
        ({"roles": ["role_a", 1]}, {}, 200),  # match reached before the number
        ({"roles": [1, "role_a"]}, {}, 500),  # a number reached first: KrakenD panics
        ({"roles": ["role_x", None]}, {}, 500),
        ({"groups": ["role_a"]}, {"roles_key": "groups"}, 200),
        ({"realm_access": {"roles": ["role_a"]}}, {"roles_key": "realm_access.roles"}, 403),  # literal name
        ({"realm_access.roles": ["role_a"]}, {"roles_key": "realm_access.roles"}, 200),
        ({"realm_access": {"roles": ["role_a"]}}, {"roles_key": "realm_access.roles", "roles_key_is_nested": True}, 200),
        ({"realm_access": [{"roles": ["role_a"]}]}, {"roles_key": "realm_access.roles", "roles_key_is_nested": True}, 403),
        ({"realm_access": {"roles": "role_a"}}, {"roles_key": "realm_access.roles", "roles_key_is_nested": True}, 200),
        ({"https://x.io/roles": ["role_a"]}, {"roles_key": "https://x.io/roles", "roles_key_is_nested": True}, 200),
        # Descope tenant roles
        ({"tenants": {"T1": {"roles": ["role_a"]}}}, {"roles_key": "tenants.T1.roles", "roles_key_is_nested": True}, 200),
        ({"tenants": {"T2": {"roles": ["role_a"]}}}, {"roles_key": "tenants.T1.roles", "roles_key_is_nested": True}, 403),
        ({"tenants": {"T1": {}}}, {"roles_key": "tenants.T1.roles", "roles_key_is_nested": True}, 403),
    ],
)
def test_roles(make, claims, config, status):
    cfg = {"roles": ROLES, **config}
    verdict = check(make(**cfg), claims)
    assert verdict.status == status, verdict.message
    if status == 403:
        assert verdict.message == "Token sent by client does not have sufficient roles"
    if status == 500:
        assert verdict.message.startswith("panic: interface conversion: interface {} is ")


def test_expired_token_lacking_roles_is_401(make):
    assert check(make(roles=ROLES), {"exp": NOW - 100}).status == 401


def test_roles_checked_before_scopes(make):
    verdict = check(make(roles=ROLES, scopes=["s"], scopes_key="scope"), {"roles": ["x"], "scope": "y"})
    assert verdict.status == 403 and verdict.message == "Token sent by client does not have sufficient roles"


# ---------------------------------------------------------------------------------------------
# §10 scopes (checklist row 17)


@pytest.mark.parametrize(
    "claims,config,status",
    [
        ({"scope": "a b"}, {"scopes": ["a", "z"], "scopes_key": "scope"}, 200),  # any (default)
        ({"scope": "a b"}, {"scopes": ["a", "z"], "scopes_key": "scope", "scopes_matcher": "all"}, 403),
        ({"scope": "a b z"}, {"scopes": ["a", "z"], "scopes_key": "scope", "scopes_matcher": "all"}, 200),
        ({"scope": ["a", "b"]}, {"scopes": ["b"], "scopes_key": "scope"}, 200),
        ({"scope": []}, {"scopes": ["b"], "scopes_key": "scope"}, 403),
        ({"scope": 5}, {"scopes": ["b"], "scopes_key": "scope"}, 403),
        ({}, {"scopes": ["b"], "scopes_key": "scope"}, 403),
        ({"scope": "x"}, {"scopes": ["b"]}, 200),  # no scopes_key: no check
        ({"scope": "x"}, {"scopes_key": "scope"}, 200),  # no scopes: no check
        ({"scope": ["b", 1]}, {"scopes": ["b"], "scopes_key": "scope"}, 500),  # any non-string element panics
        ({"a": {"b": "s1"}}, {"scopes": ["s1"], "scopes_key": "a.b"}, 200),  # always a path
        ({"a.b": "s1"}, {"scopes": ["s1"], "scopes_key": "a.b"}, 403),
        ({"a": "x"}, {"scopes": ["s1"], "scopes_key": "a.b"}, 403),
        ({"permissions": ["read", "write"]}, {"scopes": ["write"], "scopes_key": "permissions"}, 200),
    ],
)
def test_scopes(make, claims, config, status):
    verdict = check(make(**config), claims)
    assert verdict.status == status, verdict.message
    if status == 403:
        assert verdict.message == "Token sent by client does not have the required scopes"


def test_compiled_checks_directly():
    assert RolesCheck((), "roles", False)({}).status == 200
    assert ScopesCheck(("a",), "", "any")({}).status == 200
    assert not ScopesCheck(("a",), "", "any").active


# ---------------------------------------------------------------------------------------------
# §11 propagation (checklist row 18)


@pytest.mark.parametrize(
    "value,single,multi",
    [
        ("abc", "abc", ("abc",)),
        (42.0, "42", ("42",)),
        (-42.0, "-42", ("-42",)),
        (0.0, "0", ("0",)),
        (1000001.0, "1000001", ("1000001",)),
        (1651529725.0, "1651529725", ("1651529725",)),
        (4.0000001, "4", ("4",)),
        (-42.42, "-42.420000", ("-42.420000",)),
        (4.000001, "4.000001", ("4.000001",)),
        (2.5, "2.500000", ("2.500000",)),
        (["one", "two"], "one,two", ("one", "two")),
        (["item 1", "item-2", 1.0, -2.0, 2.99, -3.01], "item 1,item-2,1,-2,2.99,-3.01",
         ("item 1", "item-2", "1", "-2", "2.99", "-3.01")),
        ([], "", ()),
        ({"b": "foo", "a": 1.0, "c": ["one", "two"]}, '{"a":1,"b":"foo","c":["one","two"]}',
         ('{"a":1,"b":"foo","c":["one","two"]}',)),
        ({"x": "<>&"}, '{"x":"\\u003c\\u003e\\u0026"}', ('{"x":"\\u003c\\u003e\\u0026"}',)),
        ({"t": 1e-7, "u": 1e21, "v": 0.5}, '{"t":1e-7,"u":1e+21,"v":0.5}', None),
        (True, "true", ("true",)),
        (False, "false", ("false",)),
        (None, "null", ("null",)),
        ([1000000.0, 1234567.0, 1651529725.0, 123456.0], "1e+06,1.234567e+06,1.651529725e+09,123456", None),
        ([0.00001, True, None], "1e-05,true,<nil>", None),
        ([{"b": "foo", "a": 1.0}, ["a", "b"]], "map[a:1 b:foo],[a b]", None),
    ],
)
def test_rendering(value, single, multi):
    assert render_claim(value) == single
    if multi is not None:
        assert render_claim_values(value) == multi


def test_propagation_end_to_end(make):
    cfg = {"propagate_claims": [["sub", "x-krakend-sub"], ["missing", "X-Missing"], ["roles", "x-roles"],
                                ["n", "x-n"], ["f", "x-f"], ["obj", "x-obj"], ["a.b", "x-nested"],
                                ["http://example.com/custom", "x-custom"]]}
    claims = {"sub": "u1", "roles": ["a", "b"], "n": 42, "f": 2.5, "obj": {"z": 1, "y": "w"}, "a": {"b": "deep"},
              "http://example.com/custom": "foobar"}
    verdict = check(make(**cfg), claims)
    assert verdict.status == 200
    assert dict(verdict.propagate) == {
        "X-Krakend-Sub": ("u1",), "X-Missing": ("",), "X-Roles": ("a,b",), "X-N": ("42",), "X-F": ("2.500000",),
        "X-Obj": ('{"y":"w","z":1}',), "X-Nested": ("deep",), "X-Custom": ("foobar",),
    }


def test_propagation_preserve_array(make):
    cfg = {"propagate_claims": [["roles", "x-roles"], ["none", "x-none"], ["empty", "x-empty"]],
           "propagate_claims_preserve_array": True}
    verdict = check(make(**cfg), {"roles": ["a", "b"], "empty": []})
    assert dict(verdict.propagate) == {"X-Roles": ("a", "b"), "X-None": ("",), "X-Empty": ()}


def test_propagation_only_after_all_checks(make):
    verdict = check(make(roles=["r"], propagate_claims=[["sub", "x-sub"]]), {"sub": "u"})
    assert verdict.status == 403 and verdict.propagate == ()


def test_malformed_tuples(caplog):
    caplog.set_level(logging.WARNING)
    prop = Propagator((("a", "b", "c"), ("sub", "x-sub")), False, "/p")
    assert prop({"sub": "s"}) == (("X-Sub", ("s",)),)
    assert "invalid number of claims" not in caplog.text  # only when the last tuple is malformed
    prop = Propagator((("sub", "x-sub"), ("a", "b", "c")), False, "/p")
    assert prop({"sub": "s"}) == (("X-Sub", ("s",)),)
    assert "[ENDPOINT: /p][PropagateHeaders] invalid number of claims to propagate: [a b c]" in caplog.text


def test_last_tuple_for_a_header_wins():
    prop = Propagator((("a", "x-h"), ("b", "X-H")), False)
    assert prop({"a": "1", "b": "2"}) == (("X-H", ("2",)),)


# ---------------------------------------------------------------------------------------------
# §12 {JWT.<claim>}


def test_claims_for_url():
    claims = {"sub": "1234567890qwertyuio", "http://example.com/custom": "foobar", "n": 7.0, "a": {"b": 1}}
    assert claim_for_url(claims, "sub") == "1234567890qwertyuio"
    assert claim_for_url(claims, "http://example.com/custom") == "foobar"
    assert claim_for_url(claims, "n") == "7"
    assert claim_for_url(claims, "a.b") is None  # literal top-level names only: placeholder stays
    assert claim_for_url(claims, "missing") is None
    assert claim_for_url(None, "sub") is None
    assert render_claim_for_url("a/b c") == "a/b c"  # unescaped


# ---------------------------------------------------------------------------------------------
# Descope rules (descope.md §9)


@pytest.mark.parametrize(
    "claims,status,reason",
    [
        ({"drn": "DS"}, 200, None),
        ({"drn": "DSR"}, 401, "descope_refresh_token"),
        ({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, 401, "descope_dpop_bound"),
        ({"cnf": {"x5t#S256": "abc"}}, 200, None),
        ({"drn": "dsr"}, 200, None),
    ],
)
def test_descope_rules(make, claims, status, reason, caplog):
    caplog.set_level(logging.INFO)
    verdict = check(make(), claims)
    assert (verdict.status, verdict.reason_id) == (status, reason)
    if reason:
        assert verdict.message.startswith(f"Token sent by client rejected ({reason})")
        assert f"[ENDPOINT: /test][JWTValidator] Token sent by client rejected ({reason})" in caplog.text
