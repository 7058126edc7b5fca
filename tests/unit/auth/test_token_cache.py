"""The verified-token cache (issue 6): what a hit may skip (parsing and the signature check) and
what it must not (key lookup, time claims, per-endpoint checks). Remote key sets use an in-memory
fetch function, so a key rotation is a refresh away and nothing sleeps."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from jwt_testkit import FakeClock, ServedKeys, b64, bearer, ec_key, mint, public_jwk, rsa_key
from krakend_mitm.auth import EndpointValidator, KeyStore, parse_validator
from krakend_mitm.auth import validator as validator_module
from krakend_mitm.auth.token_cache import TokenCache, VerifiedToken

K1 = rsa_key("cache-k1")
K2 = rsa_key("cache-k2")
URL = "https://idp.example/keys"
INVALID = "Unable to validate the token: "



@pytest.fixture(autouse=True, params=["lookup", "peek_key"])
def key_access(request, monkeypatch):
    """Every test twice: key sets as they are (with the synchronous `peek_key(key_id)` the validator
    uses when a key set offers it), and with key set handles that only have `await lookup()`."""
    if request.param == "lookup":
        from krakend_mitm.auth import jwks

        for cls in (jwks.KeySetHandle, jwks._EndpointKeys, jwks.LocalKeySet):
            monkeypatch.delattr(cls, "peek_key")
    return request.param


@pytest.fixture
def verifications(monkeypatch):
    """How many real signature checks ran."""
    count = {"n": 0}
    real = validator_module.verify_signature

    def counting(parsed, alg, key):
        count["n"] += 1
        return real(parsed, alg, key)

    monkeypatch.setattr(validator_module, "verify_signature", counting)
    return count


def validator(store, cache, *, endpoint="/e", clock=time.time, **config):
    cfg = {"alg": "RS256", "jwk_url": URL, "cache": True, **config}
    spec = parse_validator({"auth/validator": cfg}, path="endpoints[0].extra_config", endpoint_path=endpoint)
    return EndpointValidator(spec, store, endpoint_path=endpoint, clock=clock, log_startup=False, token_cache=cache)


def session(key=K1, kid="k1", **claims):
    return mint({"sub": "U1", "iss": "P2x", "exp": int(time.time()) + 600, **claims}, key, kid=kid)


def run(coro):
    return asyncio.run(coro)


def test_a_repeated_token_is_verified_once_and_still_checked(verifications):
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session(roles=["user"])

    async def main():
        await store.refresh()
        v = validator(store, cache, issuer="P2x", roles=["user"])
        return [await v.authenticate(bearer(token)) for _ in range(5)]

    verdicts = run(main())
    assert [v.status for v in verdicts] == [200] * 5
    assert verifications["n"] == 1
    assert "token_cache" not in verdicts[0].details and verdicts[1].details["token_cache"] == "hit"
    assert verdicts[4].details["signature_verified"] is True and verdicts[4].details["kid"] == "k1"
    assert verdicts[4].claims == verdicts[0].claims and verdicts[4].details["check"] == "passed"
    assert cache.stats()["hits"] == 4 and len(cache) == 1


def test_rotation_a_removed_key_rejects_the_cached_token_and_drops_it(verifications):
    keys = ServedKeys(public_jwk(K1, "k1"))
    store = KeyStore(fetch=keys, refetch_burst=0, refetch_interval=3600)
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        v = validator(store, cache)
        first = await v.authenticate(bearer(token))
        second = await v.authenticate(bearer(token))
        keys.keys = [public_jwk(K2, "k2")]  # the IdP rotated k1 out
        await store.refresh()
        after = await v.authenticate(bearer(token))
        return first, second, after

    first, second, after = run(main())
    assert (first.status, second.status) == (200, 200) and second.details["token_cache"] == "hit"
    assert (after.status, after.message) == (401, INVALID + "no Keys have been found")
    assert token not in cache
    assert verifications["n"] == 1


def test_a_key_replaced_under_the_same_kid_is_verified_again_and_fails(verifications):
    keys = ServedKeys(public_jwk(K1, "k1"))
    store = KeyStore(fetch=keys)
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        v = validator(store, cache)
        first = await v.authenticate(bearer(token))
        keys.keys = [public_jwk(K2, "k1")]  # same kid, other key material
        await store.refresh()
        return first, await v.authenticate(bearer(token))

    first, after = run(main())
    assert first.status == 200
    assert (after.status, after.message) == (401, INVALID + "go-jose/go-jose: error in cryptographic primitive")
    assert token not in cache
    assert verifications["n"] == 2


def test_a_redownloaded_identical_key_is_a_new_object_verified_once_more(verifications):
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        v = validator(store, cache)
        out = [await v.authenticate(bearer(token)) for _ in range(2)]
        await store.refresh()  # the same JWKS again: new key objects
        out += [await v.authenticate(bearer(token)) for _ in range(2)]
        return out

    assert [v.status for v in run(main())] == [200] * 4
    assert verifications["n"] == 2  # once per key object, not once per request


def test_expiry_is_evaluated_on_every_hit(verifications):
    clock = FakeClock(float(int(time.time())))
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = mint({"sub": "U1", "exp": int(clock.now) + 60}, K1)

    async def main():
        await store.refresh()
        v = validator(store, cache, clock=clock)
        out = [await v.authenticate(bearer(token)), await v.authenticate(bearer(token))]
        clock.advance(60.5)  # within the 1 s leeway
        out.append(await v.authenticate(bearer(token)))
        clock.advance(2)
        out.append(await v.authenticate(bearer(token)))
        return out

    verdicts = run(main())
    assert [v.status for v in verdicts] == [200, 200, 200, 401]
    assert verdicts[3].details["token_cache"] == "hit" and verdicts[3].details["check"] == "exp"
    assert verdicts[3].message == INVALID + "go-jose/go-jose/jwt: validation failed, token is expired (exp)"
    assert verifications["n"] == 1


def test_not_before_is_evaluated_on_every_hit():
    clock = FakeClock(float(int(time.time())))
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = mint({"sub": "U1", "nbf": int(clock.now) + 30}, K1)

    async def main():
        await store.refresh()
        v = validator(store, cache, clock=clock)
        early = await v.authenticate(bearer(token))
        clock.advance(31)
        return early, await v.authenticate(bearer(token))

    early, later = run(main())
    assert (early.status, early.details["check"]) == (401, "nbf")
    assert later.status == 200 and later.details["token_cache"] == "hit"


def test_another_endpoints_roles_scopes_and_issuer_apply_on_a_hit(verifications):
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session(roles=["user"], permissions=["read"])

    async def main():
        await store.refresh()
        open_ = validator(store, cache, endpoint="/open")
        admin = validator(store, cache, endpoint="/admin", roles=["admin"])
        users = validator(store, cache, endpoint="/users", roles=["user"])
        writers = validator(store, cache, endpoint="/write", scopes=["write"], scopes_key="permissions")
        other_idp = validator(store, cache, endpoint="/other", issuer="P2other")
        propagating = validator(store, cache, endpoint="/prop", propagate_claims=[["sub", "x-user"]])
        return [await e.authenticate(bearer(token))
                for e in (open_, admin, users, writers, other_idp, propagating)]

    open_, admin, users, writers, other_idp, propagating = run(main())
    assert open_.status == 200 and "token_cache" not in open_.details
    assert (admin.status, admin.message, admin.details["token_cache"]) == (
        403, "Token sent by client does not have sufficient roles", "hit")
    assert users.status == 200
    assert (writers.status, writers.message) == (403, "Token sent by client does not have the required scopes")
    assert (other_idp.status, other_idp.details["check"]) == (401, "iss")
    assert propagating.status == 200 and propagating.propagate == (("X-User", ("U1",)),)
    assert verifications["n"] == 1


def test_another_endpoints_alg_refuses_a_cached_token():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        rs = validator(store, cache)
        es = validator(store, cache, endpoint="/es", alg="ES256")
        return await rs.authenticate(bearer(token)), await es.authenticate(bearer(token))

    rs, es = run(main())
    assert rs.status == 200
    assert (es.status, es.message) == (401, INVALID + "algorithm is invalid")


def test_another_endpoints_key_set_verifies_for_itself(verifications):
    """The same token on an endpoint with a different JWKS (where k1 is another key) never
    borrows the other set's verification."""
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    other = KeyStore(fetch=ServedKeys(public_jwk(K2, "k1")))
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        await other.refresh()
        a = validator(store, cache)
        b = validator(other, cache, endpoint="/b")
        return [await a.authenticate(bearer(token)), await b.authenticate(bearer(token)),
                await a.authenticate(bearer(token))]

    first, on_b, again = run(main())
    assert first.status == 200
    assert (on_b.status, on_b.message) == (401, INVALID + "go-jose/go-jose: error in cryptographic primitive")
    assert again.status == 200 and verifications["n"] == 3


def test_the_descope_rules_apply_on_a_hit():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    refresh_token = session(drn="DSR")

    async def main():
        await store.refresh()
        v = validator(store, cache)
        return [await v.authenticate(bearer(refresh_token)) for _ in range(2)]

    for verdict in run(main()):
        assert verdict.status == 401 and verdict.reason_id == "descope_refresh_token"


def test_a_tampered_token_never_hits_and_is_never_cached(verifications):
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session(roles=["user"])
    h, p, s = token.split(".")
    forged_payload = f"{h}.{b64(json.dumps({'sub': 'U1', 'roles': ['admin']}))}.{s}"
    forged_signature = f"{h}.{p}.{s[:-4]}AAAA"
    resigned = mint({"sub": "U1", "roles": ["admin"]}, K2)  # signed with a key not in the set

    async def main():
        await store.refresh()
        v = validator(store, cache, roles=["admin"])
        ok = validator(store, cache, endpoint="/ok")
        assert (await ok.authenticate(bearer(token))).status == 200
        out = []
        for forged in (forged_payload, forged_signature, resigned) * 2:
            out.append(await v.authenticate(bearer(forged)))
        return out

    verdicts = run(main())
    assert all(v.status == 401 and "token_cache" not in v.details for v in verdicts)
    assert verdicts[0].message == INVALID + "go-jose/go-jose: error in cryptographic primitive"
    assert len(cache) == 1 and token in cache
    assert verifications["n"] == 1 + 6  # every forged request was checked


def test_a_whitespace_variant_is_another_token():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session()
    h, p, s = token.split(".")

    async def main():
        await store.refresh()
        v = validator(store, cache)
        return [await v.authenticate([("Authorization", value)])
                for value in (f"Bearer {token}", f"Bearer {h}\n.{p}.{s}", f"bearer {token}")]

    verdicts = run(main())
    assert [v.status for v in verdicts] == [200, 200, 200]
    assert [v.details.get("token_cache") for v in verdicts] == [None, None, "hit"]
    assert len(cache) == 2


def test_the_kid_cooldown_yields_to_a_cached_key(key_access):
    """A kid whose lookup failed is in cooldown; once the key set holds it again (here: a refresh
    brings k1 back), a key set that can tell at once (`peek_key`) serves it despite the cooldown:
    the cooldown spares the IdP downloads, and a cached key needs none. A handle with only
    `lookup` cannot tell without possibly downloading, so there the cooldown still refuses."""
    keys = ServedKeys(public_jwk(K1, "k1"))
    store = KeyStore(fetch=keys, refetch_burst=0, refetch_interval=3600)
    cache = TokenCache(100)
    token = session()

    async def main():
        await store.refresh()
        v = validator(store, cache, failed_jwk_key_cooldown="10s")
        assert (await v.authenticate(bearer(token))).status == 200
        keys.keys = [public_jwk(K2, "k2")]
        await store.refresh()
        gone = await v.authenticate(bearer(token))  # a real download (the burst) did not find k1
        downloads = keys.calls
        keys.keys = [public_jwk(K1, "k1")]
        await store.refresh()
        back = await v.authenticate(bearer(token))
        return v, gone, downloads, back

    v, gone, downloads, back = run(main())
    assert (gone.status, gone.message) == (401, INVALID + "no Keys have been found")
    assert "k1" in v._failed_ids
    if key_access == "peek_key":
        assert back.status == 200 and back.details["kid"] == "k1"
    else:
        assert (back.status, back.message) == (401, INVALID + "no Keys have been found")
    assert keys.calls == downloads + 1  # only the refresh: the cooldown never asked the IdP


def test_the_kid_cooldown_yields_to_a_cached_key_without_a_token_cache(key_access, verifications):
    keys = ServedKeys(public_jwk(K1, "k1"))
    clock = FakeClock(float(int(time.time())))
    store = KeyStore(fetch=keys, clock=clock, refetch_burst=1, refetch_interval=3600)
    unknown = session(key=K2, kid="k2")

    async def main():
        await store.refresh()
        v = validator(store, None, clock=clock, failed_jwk_key_cooldown="60s")
        missing = await v.authenticate(bearer(unknown))  # downloads (the burst), k2 is not there
        keys.keys = [public_jwk(K1, "k1"), public_jwk(K2, "k2")]
        await store.refresh()  # e.g. the refresh timer: now the set holds k2
        clock.advance(5)
        return missing, await v.authenticate(bearer(unknown))

    missing, later = run(main())
    assert (missing.status, missing.message) == (401, INVALID + "no Keys have been found")
    if key_access == "peek_key":
        assert later.status == 200 and verifications["n"] == 1
    else:
        assert (later.status, later.message) == (401, INVALID + "no Keys have been found")
        assert verifications["n"] == 0


def test_a_rate_limited_miss_does_not_start_the_kid_cooldown():
    """The unknown-id rate limit refusing a download is not a failed lookup of that id: the IdP was
    not asked. Recording it would refuse a key rotated in during an unknown-kid storm for the whole
    cooldown, even after the next allowed download finds it."""
    keys = ServedKeys(public_jwk(K1, "k1"))
    clock = FakeClock(float(int(time.time())))
    store = KeyStore(fetch=keys, clock=clock, refetch_burst=1, refetch_interval=10)
    storm = session(kid="random-1")
    rotated = session(key=K2, kid="k2")

    async def main():
        v = validator(store, TokenCache(10), clock=clock, failed_jwk_key_cooldown="60s")
        await store.refresh()  # the warm-up
        drained = await v.authenticate(bearer(storm))  # takes the only download token, a real miss
        limited = await v.authenticate(bearer(rotated))  # no token left: not downloaded, not asked
        failed = dict(v._failed_ids)
        keys.keys = [public_jwk(K1, "k1"), public_jwk(K2, "k2")]  # the IdP rotates k2 in
        clock.advance(10)  # one download token again; well within the 60 s cooldown
        return drained, limited, failed, await v.authenticate(bearer(rotated))

    drained, limited, failed, found = run(main())
    assert (drained.status, limited.status) == (401, 401)
    assert limited.message == INVALID + "no Keys have been found" and limited.reason_id is None
    assert "random-1" in failed and "k2" not in failed
    assert found.status == 200 and found.details["kid"] == "k2"
    assert keys.calls == 3  # warm-up, the storm's download, the one that found k2


def test_failures_are_not_cached():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    unknown_kid = session(kid="nope")
    wrong_key = session(key=K2)
    bad_payload = mint(b'{"sub":"a","sub":"b"}', K1)

    async def main():
        await store.refresh()
        v = validator(store, cache)
        return [await v.authenticate(bearer(t)) for t in (unknown_kid, wrong_key, bad_payload)]

    assert [v.status for v in run(main())] == [401, 401, 401]
    assert len(cache) == 0


def test_bounded_lru():
    cache = TokenCache(capacity=3)
    entries = {f"t{i}": VerifiedToken({"alg": "RS256"}, {}, {}, None, None, "RS256", object()) for i in range(5)}
    for name in ("t0", "t1", "t2"):
        cache.put(name, entries[name])
    assert cache.get("t0") is entries["t0"]  # t0 is now the most recently used
    cache.put("t3", entries["t3"])
    cache.put("t4", entries["t4"])
    assert len(cache) == 3
    assert "t1" not in cache and "t2" not in cache
    assert all(name in cache for name in ("t0", "t3", "t4"))
    assert cache.stats()["evictions"] == 2
    with pytest.raises(ValueError):
        TokenCache(capacity=0)


def test_the_validator_keeps_the_cache_bounded():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(capacity=4)
    tokens = [session(sub=f"U{i}") for i in range(10)]

    async def main():
        await store.refresh()
        v = validator(store, cache)
        return [await v.authenticate(bearer(t)) for t in tokens]

    assert all(v.status == 200 for v in run(main()))
    assert len(cache) == 4 and all(t in cache for t in tokens[-4:])


def test_verified_pairs_are_bounded_and_identity_based():
    a, b = object(), object()
    entry = VerifiedToken({}, {}, {}, None, None, "RS256", a)
    assert entry.verified_with("RS256", a) and not entry.verified_with("RS384", a)
    assert not entry.verified_with("RS256", b)
    older = VerifiedToken({}, {}, {}, None, None, "RS256", b)
    newer = VerifiedToken({}, {}, {}, None, None, "RS256", a)
    newer.inherit(older)
    assert newer.verified_with("RS256", a) and newer.verified_with("RS256", b)
    many = VerifiedToken({}, {}, {}, None, None, "RS256", object())
    for _ in range(10):
        nxt = VerifiedToken({}, {}, {}, None, None, "RS256", object())
        nxt.inherit(many)
        many = nxt
    assert len(many.verified) == 4


def test_no_cache_verifies_every_time(verifications):
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    token = session()

    async def main():
        await store.refresh()
        v = validator(store, None)
        return [await v.authenticate(bearer(token)) for _ in range(3)]

    assert [v.status for v in run(main())] == [200] * 3
    assert verifications["n"] == 3


def test_no_cache_unless_given_one_and_validators_given_one_share_it(tmp_path):
    key = ec_key("P-256", "shared")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(key, "e1")]}))
    spec = parse_validator({"auth/validator": {"alg": "ES256", "jwk_local_path": str(path),
                                                "disable_jwk_security": True}}, path="x",
                           endpoint_path="/a")
    token = mint({"sub": "x"}, key, alg="ES256", kid="e1")
    alone = EndpointValidator(spec, None, endpoint_path="/alone", log_startup=False)
    assert alone.token_cache is None  # no process-wide cache
    assert [run(alone.authenticate(bearer(token))).details.get("token_cache") for _ in range(2)] == [None, None]
    cache = TokenCache(10)
    a = EndpointValidator(spec, None, endpoint_path="/a", log_startup=False, token_cache=cache)
    b = EndpointValidator(spec, None, endpoint_path="/b", log_startup=False, token_cache=cache)
    first = run(a.authenticate(bearer(token)))
    assert first.status == 200
    # the same spec, so the same key objects: the other endpoint's first request is already a hit
    assert run(b.authenticate(bearer(token))).details["token_cache"] == "hit"


def test_adopt_takes_over_the_entries_within_capacity():
    def entry():
        return VerifiedToken({"alg": "RS256"}, {}, {}, None, None, "RS256", object())

    old = TokenCache(10)
    for name in ("t0", "t1", "t2", "t3"):
        old.put(name, entry())
    old.get("t0")  # most recently used
    new = TokenCache(2)
    mine = entry()
    new.put("t1", mine)
    new.adopt(old)
    assert len(new) == 2 and "t0" in new and "t3" in new  # the two most recent of old
    new.adopt(new)  # a no-op
    assert len(new) == 2 and len(old) == 4
    keep = TokenCache(10)
    keep.put("t1", mine)
    keep.adopt(old)
    assert keep.get("t1") is mine  # an entry of its own wins over the adopted one


def test_url_values_are_rendered_once_per_cached_token():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    cache = TokenCache(100)
    token = session(tenants={"T1": {"roles": ["admin"]}}, n=42)

    async def main():
        await store.refresh()
        v = validator(store, cache)
        first = await v.authenticate(bearer(token))
        second = await v.authenticate(bearer(token))
        return v, first, second

    v, first, second = run(main())
    values = v.url_values(second)
    assert values is v.url_values(first)
    assert values["JWT.sub"] == "U1" and values["JWT.n"] == "42"
    assert values["JWT.tenants"] == '{"T1":{"roles":["admin"]}}'
    uncached = validator(store, None)
    assert uncached.url_values(run(uncached.authenticate(bearer(token)))) == values


@pytest.mark.parametrize("headers", [
    [],
    [("Authorization", "Bearer abc")],
    [("authorization", "bearer abc"), ("Authorization", "Bearer other")],
    [("AUTHORIZATION", "  BeArEr   abc\t")],
    [("Authorization", ""), ("Cookie", "access_token=fromcookie")],
    [("Authorization", " \t "), ("Authorization", "Bearer second")],
    [("Cookie", "a=1; access_token=\"quoted\"")],
    [("Authorization", "Basic dXNlcjpwYXNz")],
    [("Authorization", "Bearer")],
    [("Authorization", "bearer x")],
    [("X-Other", "Bearer abc"), ("Authorization", "tok")],
])
@pytest.mark.parametrize("config", [{}, {"auth_header_name": "X-Token", "cookie_key": "DS"}])
def test_the_fast_extraction_matches_extract_token(headers, config):
    from krakend_mitm.auth.jws import extract_token

    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    v = validator(store, None, **config)
    spec = v.spec
    expected = extract_token(headers, spec.auth_header_name, spec.cookie_key)
    assert v._extract(headers) == (None if expected is None else (expected.token, expected.source))
    assert v._extract(iter(headers)) == v._extract(headers)
    renamed = [("X-TOKEN" if k.lower() == "authorization" else k, val.replace("access_token", "DS"))
               for k, val in headers]
    expected = extract_token(renamed, spec.auth_header_name, spec.cookie_key)
    assert v._extract(renamed) == (None if expected is None else (expected.token, expected.source))


def test_url_values_for_named_claims_only():
    store = KeyStore(fetch=ServedKeys(public_jwk(K1, "k1")))
    token = session(tenants={"T1": {"roles": ["admin"]}}, n=42)

    async def main():
        await store.refresh()
        v = validator(store, TokenCache(10))
        return v, await v.authenticate(bearer(token))

    v, verdict = run(main())
    assert v.url_values(verdict, ("sub", "n", "missing")) == {"JWT.sub": "U1", "JWT.n": "42"}
    assert v.url_values(verdict, ()) == {}
    assert v.url_values(verdict)["JWT.sub"] == "U1"
