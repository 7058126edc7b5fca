"""Spec §22: the conformance checklist, one test per row, end to end through EndpointValidator
(with a real local JWKS server where the row is about downloads); plus the Verdict contract and
the rejection log lines (§5, issue 3)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string

import pytest

from jwt_testkit import (
    bearer,
    b64,
    ec_key,
    jwks_server,  # noqa: F401 - fixture
    local_validator,
    mint,
    public_jwk,
    remote_validator,
    rsa_key,
    run,
)
from krakend_mitm.auth import EndpointValidator, KeyStore, parse_validator
from krakend_mitm.errors import ConfigError

RSA = rsa_key("checklist")
KEY = public_jwk(RSA, "k1")
CLAIMS = {"sub": "u1", "exp": 4102444800, "roles": ["role_a"]}
TOKEN = mint(CLAIMS, RSA)
INVALID = "Unable to validate the token: "


@pytest.fixture
def make(tmp_path):
    def build(**cfg):
        return local_validator(tmp_path, [KEY], **cfg)
    return build


def auth(validator, headers):
    return run(validator.authenticate(headers))


def tok(claims=None, **kw):
    return mint(CLAIMS if claims is None else claims, RSA, **kw)


def test_row_01_no_token(make):
    verdict = auth(make(), [])
    assert (verdict.status, verdict.message) == (401, INVALID + "Token not found")
    assert verdict.propagate == () and verdict.claims is None


@pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "BEARER ", "BeArEr ", ""])
def test_row_02_bearer_variants_and_bare_token(make, scheme):
    assert auth(make(), [("Authorization", scheme + TOKEN)]).status == 200


def test_row_03_other_scheme_never_falls_back_to_cookie(make):
    v = make()
    assert auth(v, [("Authorization", "Basic dXNlcjpwYXNz"), ("Cookie", f"access_token={TOKEN}")]).status == 401
    assert auth(v, [("Authorization", ""), ("Cookie", f"access_token={TOKEN}")]).status == 200


def test_row_04_cookies(make):
    assert auth(make(), [("Cookie", f"access_token={TOKEN}")]).status == 200
    assert auth(make(cookie_key="DS"), [("Cookie", f"DS={TOKEN}")]).status == 200
    other = tok({**CLAIMS, "sub": "cookie"})
    verdict = auth(make(), [("Authorization", f"Bearer {TOKEN}"), ("Cookie", f"access_token={other}")])
    assert verdict.claims["sub"] == "u1"


def test_row_05_custom_header_name(make):
    assert auth(make(auth_header_name="X-Custom-Auth"), bearer(TOKEN)).status == 401


def test_row_06_whitespace_and_padding(make):
    h, p, s = TOKEN.split(".")
    for variant in (h + "\n." + p + "\r\n." + s, "Bearer  " + TOKEN,
                    h + "=" * (-len(h) % 4) + "." + p + "=" * (-len(p) % 4) + "." + s + "=" * (-len(s) % 4)):
        assert auth(make(), [("Authorization", variant)]).status == 200


@pytest.mark.parametrize("value", ["a.bad.token", "onlyone.two", TOKEN + ".four"])
def test_row_07_malformed(make, value):
    assert auth(make(), bearer(value)).status == 401


@pytest.mark.parametrize("header", [{"alg": "none", "kid": "k1"}, {"alg": "HS256", "kid": "k1"},
                                    {"alg": "rs256", "kid": "k1"}])
def test_row_08_alg_mismatch_zero_jwks_requests(jwks_server, header):
    server = jwks_server([KEY])
    store = KeyStore()
    verdict = auth(remote_validator(store, server.url()), bearer(mint(CLAIMS, b"secret", alg="HS256", header=header)))
    store.stop()
    assert (verdict.status, verdict.message) == (401, INVALID + "algorithm is invalid")
    assert server.count() == 0


def test_row_09_unknown_kid(jwks_server):
    """KrakenD: one JWKS request per unknown-kid token (one per 10 s with the cooldown). Here: at
    most one per token, single-flight and rate-limited per URL; with the cooldown, none for the same
    kid within 10 s."""
    server = jwks_server([KEY])
    store = KeyStore()

    async def main():
        plain = remote_validator(store, server.url())
        cooled = remote_validator(store, server.url(), endpoint="/cool", failed_jwk_key_cooldown="10s")
        store.start()
        await store.refresh()
        base = server.count()
        unknown = mint(CLAIMS, RSA, kid="nope")
        first = await plain.authenticate(bearer(unknown))
        after_one = server.count() - base
        for _ in range(5):
            await cooled.authenticate(bearer(unknown))
        store.stop()
        return first, after_one, server.count() - base

    first, after_one, total = asyncio.run(main())
    assert (first.status, first.message) == (401, INVALID + "no Keys have been found")
    assert after_one == 1
    assert total <= 2  # the cooled endpoint downloaded at most once for the repeated kid


def test_row_10_tampered(make):
    h, p, s = TOKEN.split(".")
    forged = b64(json.dumps({**CLAIMS, "roles": ["admin"]}))
    assert auth(make(), bearer(f"{h}.{forged}.{s}")).status == 401
    assert auth(make(), bearer(f"{h}.{p}.{s[:-4]}AAAA")).status == 401


def test_row_11_time_claims(make):
    import time

    now = int(time.time())
    v = make()
    assert auth(v, bearer(tok({"exp": now - 30}))).status == 401
    assert auth(v, bearer(tok({"exp": now}))).status == 200  # within the 1 s leeway
    assert auth(v, bearer(tok({"sub": "no-exp"}))).status == 200
    assert auth(v, bearer(tok({"nbf": now + 30}))).status == 401
    assert auth(v, bearer(tok({"nbf": now}))).status == 200
    assert auth(v, bearer(tok({"iat": now + 30}))).status == 401
    assert auth(v, bearer(tok({"iat": now}))).status == 200


def test_row_12_issuer_and_claim_types(make):
    assert auth(make(issuer="https://a"), bearer(tok({"iss": "https://b"}))).status == 401
    for claims in ({"iss": 1}, {"sub": 1}, {"jti": 1}, {"exp": "4102444800"}):
        assert auth(make(), bearer(tok(claims))).status == 401, claims


def test_row_13_audience_all_of(make):
    v = make(audience=["a", "b"])
    assert auth(v, bearer(tok({"aud": "a"}))).status == 401
    assert auth(v, bearer(tok({"aud": ["a", "b", "c"]}))).status == 200
    assert auth(v, bearer(tok({"aud": [1]}))).status == 401


def test_row_14_duplicate_keys(make):
    assert auth(make(), bearer(mint(CLAIMS, RSA, raw_header=b'{"alg":"RS256","alg":"RS256","kid":"k1"}'))).status == 401
    assert auth(make(), bearer(mint(b'{"sub":"a","sub":"b"}', RSA))).status == 401


@pytest.mark.parametrize(
    "roles_claim,status",
    [(["x", "role_a"], 200), ("x role_a", 200), (["x"], 403), (None, 403), (5, 403)],
)
def test_row_15_roles(make, roles_claim, status):
    claims = {"sub": "u"} if roles_claim is None else {"sub": "u", "roles": roles_claim}
    assert auth(make(roles=["role_a"]), bearer(tok(claims))).status == status


def test_row_15_no_roles_configured_means_no_check(make):
    assert auth(make(roles=[], roles_key="whatever"), bearer(tok({"sub": "u"}))).status == 200


def test_row_16_dotted_roles_key(make):
    claims = {"realm": {"roles": ["role_a"]}}
    assert auth(make(roles=["role_a"], roles_key="realm.roles"), bearer(tok(claims))).status == 403
    assert auth(make(roles=["role_a"], roles_key="realm.roles", roles_key_is_nested=True), bearer(tok(claims))).status == 200


def test_row_17_scopes(make):
    claims = {"scope": "a b"}
    assert auth(make(scopes=["z"]), bearer(tok(claims))).status == 200  # no scopes_key: no check
    assert auth(make(scopes=["a", "z"], scopes_key="scope"), bearer(tok(claims))).status == 200
    assert auth(make(scopes=["a", "z"], scopes_key="scope", scopes_matcher="all"), bearer(tok(claims))).status == 403
    assert auth(make(scopes=["a"], scopes_key="scope"), bearer(tok({"scope": []}))).status == 403


def test_row_18_propagation(make):
    claims = {"sub": "u", "arr": ["a", "b"], "n": 42, "f": 1.5, "obj": {"b": 1, "a": "x"}}
    cfg = [["sub", "x-sub"], ["missing", "x-missing"], ["arr", "x-arr"], ["n", "x-n"], ["f", "x-f"], ["obj", "x-obj"]]
    verdict = auth(make(propagate_claims=cfg), [("Authorization", f"Bearer {tok(claims)}"), ("X-Sub", "spoofed")])
    got = dict(verdict.propagate)
    assert got == {"X-Sub": ("u",), "X-Missing": ("",), "X-Arr": ("a,b",), "X-N": ("42",), "X-F": ("1.500000",),
                   "X-Obj": ('{"a":"x","b":1}',)}
    preserved = auth(make(propagate_claims=cfg, propagate_claims_preserve_array=True), bearer(tok(claims)))
    assert dict(preserved.propagate)["X-Arr"] == ("a", "b")


@pytest.mark.parametrize("cfg", [{"alg": "RS256", "jwk_url": "http://idp/keys"},
                                 {"alg": "RS256", "jwk_url": "https://idp/keys", "audience": "x"}])
def test_row_19_broken_config(cfg, caplog):
    caplog.set_level(logging.WARNING)
    spec = parse_validator({"auth/validator": cfg})
    validator = EndpointValidator(spec, KeyStore(), endpoint_path="/r19")
    assert "[ENDPOINT: /r19][JWTValidator] Unable to parse the configuration: " in caplog.text
    for _ in range(3):
        assert auth(validator, bearer(TOKEN)).status == 401


def test_row_20_unknown_alg_refuses_to_start():
    with pytest.raises(ConfigError, match="JOSE: unknown algorithm XX256"):
        parse_validator({"auth/validator": {"alg": "XX256", "jwk_url": "https://idp/keys"}})


@pytest.mark.parametrize("ctype,status,expected", [("text/plain", 200, 401), ("application/jwk-set+json", 200, 200),
                                                   ("application/json", 500, 200)])
def test_row_21_jwks_content_type_and_status(jwks_server, ctype, status, expected):
    server = jwks_server()
    server.set_body(json.dumps({"keys": [KEY]}).encode(), ctype, status)
    store = KeyStore()
    verdict = auth(remote_validator(store, server.url()), bearer(TOKEN))
    store.stop()
    assert verdict.status == expected


def test_row_22_one_unknown_kty_fails_the_whole_set(jwks_server):
    server = jwks_server([KEY, {"kty": "xyz", "kid": "weird"}])
    store = KeyStore()
    v = remote_validator(store, server.url())
    verdicts = [auth(v, bearer(TOKEN)), auth(v, bearer(mint(CLAIMS, RSA, kid="weird")))]
    store.stop()
    assert all(x.status == 401 and "unknown json web key type 'xyz'" in x.message for x in verdicts)


@pytest.mark.parametrize("cache", [False, True])
def test_row_23_cache(jwks_server, cache):
    """KrakenD: `cache: false` downloads twice per request. This gateway always caches: one download
    at start-up, then none until the refresh timer (cache_duration)."""
    server = jwks_server([KEY])

    async def main():
        store = KeyStore()
        v = remote_validator(store, server.url(), cache=cache)
        store.start()
        results = [await v.authenticate(bearer(TOKEN)) for _ in range(10)]
        store.stop()
        return results

    assert all(r.status == 200 for r in asyncio.run(main()))
    assert server.count() == 1


# ---------------------------------------------------------------------------------------------
# Verdict contract and log lines


def test_success_verdict(make):
    verdict = auth(make(propagate_claims=[["sub", "x-user"]]), bearer(TOKEN))
    assert verdict.ok and verdict.status == 200 and verdict.message == "" and verdict.reason_id is None
    assert verdict.claims["sub"] == "u1"
    assert verdict.propagate == (("X-User", ("u1",)),)
    assert verdict.details["check"] == "passed"
    assert verdict.details["kid"] == "k1"
    assert verdict.details["key_source"].startswith("file:")
    assert verdict.details["header"] == {"alg": "RS256", "typ": "JWT", "kid": "k1"}


def test_rejections_log_at_info_without_the_token(make, caplog):
    caplog.set_level(logging.INFO)
    h, p, s = TOKEN.split(".")
    v = make(endpoint="/users/:id", roles=["admin"])
    auth(v, [])
    auth(v, bearer(f"{h}.{p}.{s[:-4]}AAAA"))
    auth(v, bearer(TOKEN))
    lines = [r for r in caplog.records if "[JWTValidator]" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO] * 3
    messages = [r.getMessage() for r in lines]
    assert messages[0] == "[ENDPOINT: /users/:id][JWTValidator] Unable to validate the token: Token not found"
    assert messages[1] == ("[ENDPOINT: /users/:id][JWTValidator] Unable to validate the token: "
                           "go-jose/go-jose: error in cryptographic primitive")
    assert messages[2] == "[ENDPOINT: /users/:id][JWTValidator] Token sent by client does not have sufficient roles"
    assert s not in caplog.text and p not in caplog.text


def test_operation_debug_logs_at_error_with_header_and_claims(make, caplog):
    caplog.set_level(logging.INFO)
    claims = {"sub": "u1", "iss": "https://idp", "exp": 1, "nsec": {"email": "secret@example.com"}, "roles": ["r"]}
    token = tok(claims)
    auth(make(operation_debug=True, endpoint="/dbg"), bearer(token))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0] == ("[ENDPOINT: /dbg][JWTValidator] Unable to validate the token: "
                         "go-jose/go-jose/jwt: validation failed, token is expired (exp)")
    assert '"kid":"k1"' in errors[1] and '"iss":"https://idp"' in errors[1] and '"roles":["r"]' in errors[1]
    assert "secret@example.com" not in caplog.text
    assert token.split(".")[2] not in caplog.text and token not in caplog.text


def test_success_is_not_logged(make, caplog):
    caplog.set_level(logging.INFO)
    auth(make(), bearer(TOKEN))
    assert "[JWTValidator]" not in caplog.text


def test_details_never_carry_token_or_signature(make):
    verdict = auth(make(roles=["nope"]), bearer(TOKEN))
    text = repr(verdict)
    assert TOKEN.split(".")[2] not in text and TOKEN not in text
    assert verdict.details["check"] == "roles" and verdict.details["claims"]["sub"] == "u1"


def test_panic_becomes_500(make):
    verdict = auth(make(roles=["a"]), bearer(tok({"roles": [1, "a"]})))
    assert verdict.status == 500
    assert verdict.message == "panic: interface conversion: interface {} is float64, not string"


def test_local_path_unknown_kid(tmp_path):
    without_url = local_validator(tmp_path, [KEY])
    verdict = auth(without_url, bearer(mint(CLAIMS, RSA, kid="other")))
    assert (verdict.status, verdict.message) == (401, INVALID + 'Get "": unsupported protocol scheme ""')
    with_url = local_validator(tmp_path, [KEY], jwk_url="https://idp/keys")
    assert auth(with_url, bearer(mint(CLAIMS, RSA, kid="other"))).status == 500


def test_concurrent_requests_share_nothing_mutable(make):
    v = make(propagate_claims=[["sub", "x-sub"]])

    async def main():
        tokens = [tok({"sub": "".join(random.choices(string.ascii_letters, k=8))}) for _ in range(30)]
        verdicts = await asyncio.gather(*(v.authenticate(bearer(t)) for t in tokens))
        return tokens, verdicts

    tokens, verdicts = asyncio.run(main())
    for t, verdict in zip(tokens, verdicts):
        sub = json.loads(__import__("base64").urlsafe_b64decode(t.split(".")[1] + "=="))["sub"]
        assert dict(verdict.propagate)["X-Sub"] == (sub,)


def test_describe(make):
    info = make(roles=["r"]).describe()
    assert info["alg"] == "RS256" and info["roles"] == ["r"] and info["keys"]["keys"] == ["k1"]


def test_es256_end_to_end(tmp_path):
    key = ec_key("P-256", "e2e")
    v = local_validator(tmp_path, [public_jwk(key, "e")], alg="ES256")
    assert auth(v, bearer(mint({"sub": "x"}, key, alg="ES256", kid="e"))).status == 200


def test_rejecter_hook(tmp_path):
    from krakend_mitm.auth import EndpointValidator as EV

    base = local_validator(tmp_path, [KEY], roles=["nope"])
    v = EV(base.spec, None, endpoint_path="/rej", rejecter=lambda claims: claims.get("sub") == "u1")
    verdict = auth(v, bearer(TOKEN))
    assert (verdict.status, verdict.message) == (401, "Token sent by client rejected")  # before roles
    other = EV(base.spec, None, endpoint_path="/rej", rejecter=lambda claims: False)
    assert auth(other, bearer(TOKEN)).status == 403
