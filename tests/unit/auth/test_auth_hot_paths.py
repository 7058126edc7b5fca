"""The per-request shortcuts of the auth stage decide exactly as the long ways do: `peek_key` on key
set handles, the nesting-depth pre-check, the pre-split roles/scopes keys, the two-comparison time
check of the validator's common case."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from jwt_testkit import HMAC_SECRET, FakeClock, ServedKeys, bearer, local_validator, mint, public_jwk, rsa_key
from krakend_mitm.auth import EndpointValidator, _go
from krakend_mitm.auth import claims as claims_mod
from krakend_mitm.auth.claims import (
    ALLOW,
    RegisteredClaims,
    RolesCheck,
    ScopesCheck,
    decode_payload,
    nested_claim,
    validate_registered,
)
from krakend_mitm.auth.jwks import KeyStore, LocalKeySet, parse_jwk_set
from krakend_mitm.auth.jws import MAX_JSON_DEPTH, JWSError, parse_jws
from krakend_mitm.auth.token_cache import TokenCache

RSA = rsa_key("hot-1")
K1 = public_jwk(RSA, "k1")
URL = "https://idp.example/keys"



# ---------------------------------------------------------------------------------------------
# peek_key


def test_peek_key_answers_what_lookup_would_answer_at_once_and_nothing_else():
    clock = FakeClock()
    keys = ServedKeys(K1)
    store = KeyStore(fetch=keys, clock=clock, max_staleness=100, refetch_burst=1, refetch_interval=3600)
    handle = store.handle(URL)
    bucket = handle._remote._limiter

    async def main():
        assert handle.peek_key("k1") is None  # nothing downloaded yet: no download now either
        assert keys.calls == 0
        await store.refresh()
        found = handle.peek_key("k1")
        looked_up = (await handle.lookup("k1")).key
        tokens = bucket._tokens
        unknown = handle.peek_key("nope")
        assert keys.calls == 1 and bucket._tokens == tokens  # no download, no rate-limit token taken
        clock.advance(101)  # older than max_staleness: lookup has to answer (jwks_stale or a download)
        stale = handle.peek_key("k1")
        assert keys.calls == 1
        return found, looked_up, unknown, stale

    found, looked_up, unknown, stale = asyncio.run(main())
    assert found is not None and found is looked_up
    assert unknown is None and stale is None
    store.stop()


def test_peek_key_uses_the_handles_key_identify_strategy():
    keys = ServedKeys({**K1, "x5t": "dGh1bWJwcmludC0yMC1ieXRlcyE"})
    store = KeyStore(fetch=keys)
    by_kid = store.handle(URL)
    by_x5t = store.handle(URL, strategy="x5t")
    asyncio.run(store.refresh())
    assert by_kid.peek_key("k1") is by_x5t.peek_key("dGh1bWJwcmludC0yMC1ieXRlcyE") is not None
    assert by_x5t.peek_key("k1") is None
    store.stop()


def test_local_key_set_peek_key():
    entries = parse_jwk_set(json.dumps({"keys": [K1]}))
    local = LocalKeySet(entries, strategy="kid", path="keys.json")
    assert local.peek_key("k1") is entries[0]
    assert local.peek_key("other") is None
    assert asyncio.run(local.lookup("k1")).key is entries[0]


# ---------------------------------------------------------------------------------------------
# nesting-depth pre-check


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("raw", [b'{"a":[1,{"b":2}]}', "[[[]]]", nested(MAX_JSON_DEPTH).encode(),
                                 b'{"s":"' + b"[" * 50 + b'"}'])
def test_raw_nesting_exceeds_agrees_with_the_walk(raw):
    value = _go.go_json_loads(raw)[0]
    for limit in (1, 2, 3, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH):
        assert _go.raw_nesting_exceeds(raw, value, limit) == _go.nesting_exceeds(value, limit)


def test_few_brackets_skip_the_walk(monkeypatch):
    def walk(value, limit):
        raise AssertionError("walked")

    monkeypatch.setattr(_go, "nesting_exceeds", walk)
    raw = nested(MAX_JSON_DEPTH).encode()
    assert _go.raw_nesting_exceeds(raw, _go.go_json_loads(raw)[0], MAX_JSON_DEPTH) is False
    claims, _ = decode_payload(b'{"sub":"a","roles":["x"],"tenants":{"T1":{"roles":[]}}}')
    assert claims["sub"] == "a"


def test_brackets_in_strings_fall_through_to_the_walk(monkeypatch):
    calls = []
    real = _go.nesting_exceeds

    def walk(value, limit):
        calls.append(limit)
        return real(value, limit)

    monkeypatch.setattr(_go, "nesting_exceeds", walk)
    raw = json.dumps({"sub": "{" * 40 + "[" * 40}).encode()
    claims, _ = decode_payload(raw)  # many brackets, but all in a string: walked, and accepted
    assert claims["sub"].startswith("{{{") and calls == [MAX_JSON_DEPTH]


@pytest.mark.parametrize("depth,ok", [(MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False)])
def test_real_nesting_is_still_refused(depth, ok):
    payload = ('{"a":' + nested(depth - 1) + "}").encode()
    if ok:
        decode_payload(payload)
    else:
        with pytest.raises(claims_mod.ClaimsError) as err:
            decode_payload(payload)
        assert err.value.reason_id == "token_json_depth"
    token = mint({"sub": "x"}, HMAC_SECRET, alg="HS256", header={"alg": "HS256", "x": json.loads(nested(depth - 1))})
    if ok:
        parse_jws(token)
    else:
        with pytest.raises(JWSError) as jws_err:
            parse_jws(token)
        assert jws_err.value.reason_id == "token_json_depth"


# ---------------------------------------------------------------------------------------------
# roles / scopes keys split once


def reference_nested_claim(path: str, claims: dict):
    """krakend-jose `getNestedClaim` as this package had it before the keys were pre-split."""
    keys = path.split(".")
    current = claims
    for key in keys[:-1]:
        if not isinstance(current, dict) or key not in current:
            return path, None
        current = current[key]
        if not isinstance(current, dict):
            return path, None
    return keys[-1], current if isinstance(current, dict) else None


class CountingKey(str):
    splits = 0

    def split(self, *args, **kwargs):
        CountingKey.splits += 1
        return super().split(*args, **kwargs)


CLAIM_SETS = [
    {"tenants": {"T1": {"roles": ["admin"], "permissions": ["read", "write"]}}},
    {"tenants": {"T1": {"roles": "user admin", "permissions": "read write"}}},
    {"tenants": {"T1": {"roles": ["user"], "permissions": []}}},
    {"tenants": {"T1": []}},
    {"tenants": {"T2": {"roles": ["admin"]}}},
    {"tenants": "T1"},
    {"tenants.T1.roles": ["admin"], "tenants.T1.permissions": ["write"]},
    {"tenants": {"T1": {"roles": [1], "permissions": [None]}}},
    {},
]


def test_nested_roles_key_is_split_once():
    CountingKey.splits = 0
    check = RolesCheck(("admin",), CountingKey("tenants.T1.roles"), True)
    splits = CountingKey.splits
    decisions = [check(claims) for claims in CLAIM_SETS * 3]
    assert CountingKey.splits == splits <= 1
    assert [d.status for d in decisions[:len(CLAIM_SETS)]] == [200, 200, 403, 403, 403, 403, 403, 500, 403]


def test_dotted_scopes_key_is_split_once_and_matches_the_path_lookup():
    CountingKey.splits = 0
    check = ScopesCheck(("write",), CountingKey("tenants.T1.permissions"), "any")
    splits = CountingKey.splits
    decisions = [check(claims) for claims in CLAIM_SETS * 3]
    assert CountingKey.splits == splits <= 1
    for claims, decision in zip(CLAIM_SETS, decisions):
        key, container = reference_nested_claim("tenants.T1.permissions", claims)
        assert nested_claim("tenants.T1.permissions", claims) == (key, container)
        value = container.get(key) if container is not None else None
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            assert decision.status == 500
        else:
            given = value if isinstance(value, list) else value.split(" ") if isinstance(value, str) else []
            assert (decision is ALLOW) == ("write" in given)


@pytest.mark.parametrize("key", ["scope", "a.b", "http.x.y", "a..b", ".a", "a."])
def test_scopes_any_key_shape(key):
    check = ScopesCheck(("s",), key, "all")
    claims = {"scope": "s", "a.b": "s", "a": {"b": "s", "": {"b": "s"}, "": "s"}, "": {"a": "s"},
              "http": {"x": {"y": "s"}}}
    last, container = reference_nested_claim(key, claims) if "." in key else (key, claims)
    expected = container is not None and last in container and "s" in str(container[last]).split(" ")
    assert (check(claims).status == 200) == expected


# ---------------------------------------------------------------------------------------------
# the time claims in two comparisons


@pytest.mark.parametrize("times", [
    {}, {"exp": 100}, {"nbf": 100}, {"iat": 100}, {"nbf": 90, "iat": 100, "exp": 110},
    {"nbf": 100, "iat": 90, "exp": 110}, {"exp": 90, "nbf": 100}, {"exp": -(1 << 63)},
])
@pytest.mark.parametrize("leeway", [1.0, 5.0])
def test_time_bounds_match_validate_registered(times, leeway):
    reg = RegisteredClaims(**times)
    for tenth in range(700, 1300):
        now = tenth / 10
        slow = validate_registered(reg, issuer="", audience=(), leeway=leeway, now=now) is None
        fast = now + leeway >= reg.not_before and now - leeway <= reg.expires
        assert fast == slow, (times, leeway, now)


def test_registered_claims_bounds_are_not_part_of_equality():
    assert RegisteredClaims(exp=5) == RegisteredClaims(exp=5)
    assert RegisteredClaims(nbf=3, iat=7).not_before == 7
    assert RegisteredClaims().not_before == float("-inf") and RegisteredClaims().expires == float("inf")
    assert "not_before" not in repr(RegisteredClaims())


@pytest.mark.parametrize("config", [
    {}, {"issuer": "P2x"}, {"issuer": "other"}, {"audience": ["a1"]}, {"audience": ["a2"]},
    {"roles": ["admin"]}, {"roles": ["nobody"]}, {"roles": ["admin"], "roles_key": "tenants.T1.roles",
                                                  "roles_key_is_nested": True},
    {"scopes": ["read"], "scopes_key": "permissions"}, {"scopes": ["write"], "scopes_key": "permissions"},
    {"propagate_claims": [["sub", "x-user"]]},
])
@pytest.mark.parametrize("offset", [-700, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 700])
def test_a_hit_decides_as_the_full_path(tmp_path, config, offset):
    """Same verdict (status, message, reason id, check, claims, propagation) from the cached path and
    its common-case shortcut as from a validator that takes every step the long way (no token
    cache; a rejecter turns the shortcut off), around every time boundary."""
    clock = FakeClock(1_700_000_000.0)
    claims = {"sub": "U1", "iss": "P2x", "aud": ["a1"], "iat": 1_700_000_000, "nbf": 1_700_000_000,
              "exp": 1_700_000_600, "roles": ["admin"], "permissions": ["read"],
              "tenants": {"T1": {"roles": ["admin"]}}}
    token = mint(claims, HMAC_SECRET, alg="HS256")
    key = public_jwk(HMAC_SECRET, "k1")
    cached = local_validator(tmp_path, [key], clock=clock, alg="HS256", **config)
    cached.token_cache = TokenCache(4)
    # no token cache, and a rejecter that rejects nothing: every check takes the long way
    plain = EndpointValidator(cached.spec, None, endpoint_path="/test", clock=clock, rejecter=lambda c: False)

    async def main():
        await cached.authenticate(bearer(token))  # fills the cache (at the start of the window)
        clock.now = 1_700_000_000.0 + (600 if offset > 0 else 0) + offset
        return await cached.authenticate(bearer(token)), await plain.authenticate(bearer(token))

    hit, full = asyncio.run(main())
    assert hit.details.get("token_cache") == "hit" and "token_cache" not in full.details
    assert (hit.status, hit.message, hit.reason_id, hit.claims, hit.propagate) == (
        full.status, full.message, full.reason_id, full.claims, full.propagate)
    assert {k: v for k, v in hit.details.items() if k != "token_cache"} == full.details


def test_hit_details_keep_their_order(tmp_path):
    token = mint({"sub": "U1", "exp": int(time.time()) + 60}, HMAC_SECRET, alg="HS256")
    v = local_validator(tmp_path, [public_jwk(HMAC_SECRET, "k1")], alg="HS256")
    v.token_cache = TokenCache(4)
    asyncio.run(v.authenticate(bearer(token)))
    hit = asyncio.run(v.authenticate(bearer(token)))
    assert list(hit.details) == ["check", "token_source", "header", "token_cache", "kid", "key_source",
                                 "signature_verified", "claims"]
    assert hit.details["check"] == "passed" and hit.ok
