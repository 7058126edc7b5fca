"""Spec §14-§18 and the KeyStore: JWK Set parsing rules, downloads against a real local HTTP(S)
server, caching, rotation, unknown-id storms, outages, garbage, slow servers, url_map, TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
import threading
import time

import pytest

from jwt_testkit import (
    FakeClock,
    bearer,
    b64,
    ec_key,
    jwks_server,  # noqa: F401 - fixture
    make_ca_and_server_cert,
    mint,
    private_jwk,
    public_jwk,
    remote_validator,
    rsa_key,
)
from krakend_mitm.auth import FetchError, FetchResponse, KeyStore, parse_validator, EndpointValidator
from krakend_mitm.auth.jwks import JWKSetError, parse_jwk_set

RSA1 = rsa_key("store-1")
RSA2 = rsa_key("store-2")
K1 = public_jwk(RSA1, "k1")
K2 = public_jwk(RSA2, "k2")
CLAIMS = {"sub": "u", "exp": 4102444800}
T1 = mint(CLAIMS, RSA1, kid="k1")
T2 = mint(CLAIMS, RSA2, kid="k2")


def random_kid_token() -> str:
    kid = "".join(random.choices(string.ascii_letters, k=12))
    return mint(CLAIMS, RSA1, kid=kid)


# ---------------------------------------------------------------------------------------------
# JWK Set parsing (go-jose rules)


def doc(*keys, **extra) -> bytes:
    return json.dumps({"keys": list(keys), **extra}).encode()


@pytest.mark.parametrize(
    "body,message",
    [
        (b'{"keys": []}', "no Keys has been found"),
        (b"{}", "no Keys has been found"),
        (b'{"keys": null}', "no Keys has been found"),
        (b"null", "no Keys has been found"),
        (b"[]", "json: cannot unmarshal array into Go value of type jose.JSONWebKeySet"),
        (b'{"keys": {}}', "json: cannot unmarshal object into Go struct field JSONWebKeySet.keys of type []jose.JSONWebKey"),
        (b"<html>", "invalid character '<' looking for beginning of value"),
        (b"", "EOF"),
        (doc(K1, {"kty": "xyz"}), "go-jose/go-jose: unknown json web key type 'xyz'"),
        (doc(K1, {"kty": "OKP", "crv": "X25519", "x": b64(b"x" * 32)}), "go-jose/go-jose: unknown curve X25519'"),
        (doc({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}), "go-jose/go-jose: unsupported elliptic curve 'secp256k1'"),
        (doc({"kty": "EC", "crv": "P-256", "x": b64(b"\1" * 32)}), "go-jose/go-jose: invalid EC key, missing x/y values"),
        (doc({"kty": "EC", "crv": "P-256", "x": b64(b"\1" * 31), "y": b64(b"\1" * 32)}),
         "go-jose/go-jose: invalid EC public key, wrong length for x"),
        (doc({"kty": "EC", "crv": "P-256", "x": b64(b"\1" * 32), "y": b64(b"\1" * 32)}),
         "go-jose/go-jose: invalid EC key, X/Y are not on declared curve"),
        (doc({"kty": "RSA", "e": "AQAB"}), "go-jose/go-jose: invalid RSA key, missing n/e values"),
        (doc({**K1, "d": "AQAB"}), "go-jose/go-jose: invalid RSA private key, missing values"),
        (doc({"kty": "oct"}), "go-jose/go-jose: invalid OCT (symmetric) key, missing k value"),
        (doc({**K1, "kid": 5}), "json: cannot unmarshal number into Go value of type string"),
        (doc({**K1, "x5t": b64(b"short")}), "go-jose/go-jose: invalid JWK, x5t header is of incorrect size"),
        (doc({**K1, "x5t#S256": b64(b"\0" * 20)}), "go-jose/go-jose: invalid JWK, x5t#S256 header is of incorrect size"),
        (doc({**K1, "n": "!!!"}), "illegal base64 data at input byte 0"),
        (b'{"keys": [{"kty": "RSA", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', "json: duplicate key 'kty' in object"),
        (doc(5), "json: cannot unmarshal number into Go value of type jose.rawJSONWebKey"),
        (doc(None), "go-jose/go-jose: unknown json web key type ''"),
    ],
)
def test_invalid_sets(body, message):
    with pytest.raises(JWKSetError) as info:
        parse_jwk_set(body)
    assert info.value.message == message


def test_valid_set_details():
    entries = parse_jwk_set(doc(K1, K2) + b" trailing data is ignored by json.Decoder")
    assert [e.kid for e in entries] == ["k1", "k2"]
    assert parse_jwk_set(json.dumps({"Keys": [K1]}).encode())[0].kid == "k1"  # Go matches names case-insensitively
    padded = dict(K1, n=K1["n"] + "=" * (-len(K1["n"]) % 4))
    assert parse_jwk_set(doc(padded))[0].error is None
    private = parse_jwk_set(doc(private_jwk(RSA1, "p")))[0]
    assert private.error == "go-jose/go-jose: unsupported key type/format"
    e_one = parse_jwk_set(doc(dict(K1, e="AQ")))[0]  # go-jose parses e=1, Go's rsa refuses it when verifying
    assert e_one.error == "go-jose/go-jose: error in cryptographic primitive"
    hex_x5t = parse_jwk_set(doc(dict(K1, x5t=b64(("ab" * 20).encode()))))[0]
    assert hex_x5t.x5t == bytes.fromhex("ab" * 20)


def test_x5c_must_match_the_key(tmp_path):
    import base64

    from cryptography.hazmat.primitives import serialization

    tls = make_ca_and_server_cert(tmp_path)
    from cryptography import x509

    pem = (tmp_path / "server.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    x5c = [base64.b64encode(der).decode()]
    ec_pub = public_jwk(ec_key("P-256", "other"), "e")
    with pytest.raises(JWKSetError, match="public keys in key and x5c fields do not match"):
        parse_jwk_set(doc(dict(ec_pub, x5c=x5c)))
    from jwt.algorithms import ECAlgorithm

    matching = ECAlgorithm.to_jwk(cert.public_key(), as_dict=True)
    import hashlib

    ok = parse_jwk_set(doc(dict(matching, kid="c", x5c=x5c, x5t=b64(hashlib.sha1(der).digest()))))[0]
    assert ok.error is None
    with pytest.raises(JWKSetError, match="x5c thumbprint does not match x5t value"):
        parse_jwk_set(doc(dict(matching, x5c=x5c, x5t=b64(b"\0" * 20))))
    with pytest.raises(JWKSetError, match="'oct' \\(symmetric\\) key with cert chain"):
        parse_jwk_set(doc({"kty": "oct", "k": "AAAA", "x5c": x5c}))
    assert tls["ca"]


# ---------------------------------------------------------------------------------------------
# downloads and caching


def test_startup_download_then_cache(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url(), cache=False)  # always cached anyway
        store.start()
        store.start()  # idempotent: no second timer
        for _ in range(20):
            assert (await validator.authenticate(bearer(T1))).status == 200
        store.stop()
        store.stop()

    asyncio.run(main())
    assert server.count() == 1
    assert server.user_agents == ["KrakenD Version 2.13.8"]


def test_endpoints_share_one_set_per_url(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        v1 = remote_validator(store, server.url(), endpoint="/a", cache_duration=600)
        v2 = remote_validator(store, server.url(), endpoint="/b", cache_duration=60)
        store.start()
        assert (await v1.authenticate(bearer(T1))).status == 200
        assert (await v2.authenticate(bearer(T1))).status == 200
        status = store.status()
        store.stop()
        return status

    status = asyncio.run(main())
    assert server.count() == 1
    assert len(status) == 1 and status[0]["refresh_every_seconds"] == 60 and status[0]["keys"] == ["k1"]


def test_rotation_new_kid_works_at_once(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url())
        store.start()
        assert (await validator.authenticate(bearer(T1))).status == 200
        server.set_keys([K1, K2])
        assert (await validator.authenticate(bearer(T2))).status == 200
        server.set_keys([K2])
        await store.refresh()
        removed = await validator.authenticate(bearer(T1))
        store.stop()
        return removed

    removed = asyncio.run(main())
    assert server.count() == 4  # warm-up, k2 miss, refresh, k1 miss (now unknown)
    # a key removed from the JWKS stops validating at the next download (KrakenD keeps it up to cache_duration)
    assert removed.status == 401 and removed.message == "Unable to validate the token: no Keys have been found"


@pytest.mark.parametrize("concurrent", [True, False])
def test_unknown_kid_storm_is_rate_limited(jwks_server, concurrent):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url())
        store.start()
        assert (await validator.authenticate(bearer(T1))).status == 200
        tokens = [random_kid_token() for _ in range(50)]
        if concurrent:
            verdicts = await asyncio.gather(*(validator.authenticate(bearer(t)) for t in tokens))
        else:
            verdicts = [await validator.authenticate(bearer(t)) for t in tokens]
        store.stop()
        return verdicts

    verdicts = asyncio.run(main())
    assert all(v.status == 401 and v.message == "Unable to validate the token: no Keys have been found" for v in verdicts)
    assert server.count() - 1 <= 5  # 50 random kids: at most 5 downloads


def test_idle_url_downloads_at_once_on_unknown_kid(jwks_server):
    server = jwks_server([K1])
    clock = FakeClock()

    async def main():
        store = KeyStore(clock=clock)
        validator = remote_validator(store, server.url())
        assert (await validator.authenticate(bearer(T1))).status == 200  # first download (no start())
        for _ in range(10):
            await validator.authenticate(bearer(random_kid_token()))
        exhausted = server.count()
        server.set_keys([K1, K2])
        assert (await validator.authenticate(bearer(T2))).status == 401  # rate limited: no download
        assert server.count() == exhausted
        clock.advance(10)
        verdict = await validator.authenticate(bearer(T2))
        store.stop()
        return exhausted, verdict

    exhausted, verdict = asyncio.run(main())
    assert exhausted == 4  # the first download plus a burst of 3
    assert verdict.status == 200 and server.count() == exhausted + 1


def test_failed_jwk_key_cooldown_is_per_kid(jwks_server):
    server = jwks_server([K1])
    clock = FakeClock()

    async def main():
        store = KeyStore(clock=clock, refetch_burst=100)
        validator = remote_validator(store, server.url(), clock=clock, failed_jwk_key_cooldown="10s")
        assert (await validator.authenticate(bearer(T1))).status == 200
        unknown = random_kid_token()
        for _ in range(5):
            assert (await validator.authenticate(bearer(unknown))).status == 401
        within = server.count()
        clock.advance(10)
        await validator.authenticate(bearer(unknown))
        store.stop()
        return within

    within = asyncio.run(main())
    assert within == 2  # one download for the first miss, none while the id cools down
    assert server.count() == 3


def test_outage_after_warm_up(jwks_server, caplog):
    caplog.set_level(logging.INFO)
    server = jwks_server([K1])
    url = server.url()

    async def main():
        store = KeyStore()
        validator = remote_validator(store, url)
        store.start()
        assert (await validator.authenticate(bearer(T1))).status == 200
        server.close()
        await store.refresh()
        cached = await validator.authenticate(bearer(T1))
        unknown = await validator.authenticate(bearer(T2))
        store.stop()
        return cached, unknown

    cached, unknown = asyncio.run(main())
    assert cached.status == 200
    assert unknown.status == 401
    port = url.split(":")[2].split("/")[0]
    assert unknown.message == f'Unable to validate the token: Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'
    assert "download failed" in caplog.text and "keeping the 1 key(s)" in caplog.text


def test_unreachable_without_warm_up_fails_closed():
    async def main():
        store = KeyStore()
        validator = remote_validator(store, "http://127.0.0.1:9/keys")
        verdict = await validator.authenticate(bearer(T1))
        store.stop()
        return verdict

    verdict = asyncio.run(main())
    assert verdict.status == 401 and "connect: connection refused" in verdict.message


@pytest.mark.parametrize(
    "body,ctype,status,expected",
    [
        (doc(K1), "text/plain", 200, "Unable to validate the token: should have a JSON content type for JWKS endpoint"),
        (doc(K1), None, 200, "Unable to validate the token: should have a JSON content type for JWKS endpoint"),
        (doc(K1), "Application/JSON", 200, "Unable to validate the token: should have a JSON content type for JWKS endpoint"),
        (doc(K1), "application/jwk-set+json", 200, None),
        (doc(K1), "application/json; charset=utf-8", 200, None),
        (doc(K1), "application/json", 500, None),  # the HTTP status is not checked
        (b"<html>oops</html>", "text/html", 200, "Unable to validate the token: should have a JSON content type for JWKS endpoint"),
        (b'{"keys": [', "application/json", 200, "Unable to validate the token: unexpected end of JSON input"),
        (b'{"errorCode":"E011004"}', "application/json", 400, "Unable to validate the token: no Keys has been found"),
        (doc(), "application/json", 200, "Unable to validate the token: no Keys has been found"),
        (doc(K1, {"kty": "xyz"}), "application/json", 200, "Unable to validate the token: go-jose/go-jose: unknown json web key type 'xyz'"),
    ],
)
def test_jwks_responses(jwks_server, body, ctype, status, expected):
    server = jwks_server()
    server.set_body(body, ctype, status)

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url())
        verdict = await validator.authenticate(bearer(T1))
        store.stop()
        return verdict

    verdict = asyncio.run(main())
    if expected is None:
        assert verdict.status == 200
    else:
        assert (verdict.status, verdict.message) == (401, expected)


def test_garbage_after_warm_up_keeps_the_last_good_set(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url())
        store.start()
        assert (await validator.authenticate(bearer(T1))).status == 200
        for body, ctype in ((b"garbage", "application/json"), (b"<html>", "text/html"), (doc(), "application/json"),
                            (doc({"kty": "xyz"}), "application/json")):
            server.set_body(body, ctype)
            assert (await store.refresh()) == {server.url(): False}
            assert (await validator.authenticate(bearer(T1))).status == 200
        server.set_keys([K1, K2])
        assert (await store.refresh()) == {server.url(): True}
        verdict = await validator.authenticate(bearer(T2))
        store.stop()
        return verdict

    assert asyncio.run(main()).status == 200


def test_oversized_response(jwks_server):
    server = jwks_server([K1])
    server.set_body(json.dumps({"keys": [K1], "padding": "x" * 5000}).encode())

    async def main():
        store = KeyStore(max_body_bytes=2000)
        validator = remote_validator(store, server.url())
        verdict = await validator.authenticate(bearer(T1))
        store.stop()
        return verdict

    verdict = asyncio.run(main())
    assert verdict.status == 401 and verdict.reason_id == "jwks_too_large"


def test_slow_jwks_does_not_delay_cached_kids(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        validator = remote_validator(store, server.url())
        store.start()
        assert (await validator.authenticate(bearer(T1))).status == 200
        server.delay = 3.0
        server.started.clear()
        slow = asyncio.ensure_future(store.refresh())
        unknown = asyncio.ensure_future(validator.authenticate(bearer(T2)))  # waits for the slow download
        await asyncio.get_running_loop().run_in_executor(None, server.started.wait, 5)
        began = time.monotonic()
        verdicts = await asyncio.gather(*(validator.authenticate(bearer(T1)) for _ in range(50)))
        cached_elapsed = time.monotonic() - began
        assert not slow.done()
        await slow
        slow_elapsed = time.monotonic() - began
        late = await unknown
        store.stop()
        return verdicts, cached_elapsed, slow_elapsed, late

    verdicts, cached_elapsed, slow_elapsed, late = asyncio.run(main())
    assert all(v.status == 200 for v in verdicts)
    assert cached_elapsed < 0.5, cached_elapsed
    assert slow_elapsed > 2.0
    assert late.status == 401  # k2 is still not published; it shared the slow download
    assert server.count() == 2


def test_hanging_jwks_times_out(jwks_server):
    server = jwks_server([K1])
    server.hold = threading.Event()

    async def main():
        store = KeyStore(fetch_timeout=0.3)
        validator = remote_validator(store, server.url())
        began = time.monotonic()
        verdict = await validator.authenticate(bearer(T1))
        elapsed = time.monotonic() - began
        store.stop()
        return verdict, elapsed

    verdict, elapsed = asyncio.run(main())
    server.hold.set()
    assert verdict.status == 401 and verdict.reason_id == "jwks_timeout"
    assert elapsed < 2


def test_max_staleness(jwks_server):
    server = jwks_server([K1])
    clock = FakeClock()

    async def main():
        store = KeyStore(clock=clock, max_staleness=3600)
        validator = remote_validator(store, server.url())
        assert (await validator.authenticate(bearer(T1))).status == 200
        server.set_body(b"oops", "text/plain")
        clock.advance(3000)
        fresh_enough = await validator.authenticate(bearer(T1))
        clock.advance(700)
        stale = await validator.authenticate(bearer(T1))  # triggers a download, which fails
        server.set_keys([K1])
        server.content_type = "application/json"
        clock.advance(10)
        recovered = await validator.authenticate(bearer(T1))
        store.stop()
        return fresh_enough, stale, recovered

    fresh_enough, stale, recovered = asyncio.run(main())
    assert fresh_enough.status == 200
    assert stale.status == 401 and stale.reason_id == "jwks_stale"
    assert recovered.status == 200


# ---------------------------------------------------------------------------------------------
# the refresh timer (fake clock and sleep)


class ScriptedFetch:
    def __init__(self, script):
        self.script = list(script)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.calls += 1
            step = self.script.pop(0) if self.script else "ok"
        if step == "ok":
            return FetchResponse(200, "application/json", doc(K1))
        raise FetchError(f'Get "{request.url}": boom')


def test_refresh_timer_and_backoff():
    clock = FakeClock()
    fetch = ScriptedFetch(["ok", "fail", "fail", "fail", "ok"])
    delays: list[float] = []

    async def main():
        done = asyncio.Event()

        async def sleep(seconds):
            delays.append(seconds)
            clock.advance(seconds)
            if len(delays) >= 5:
                done.set()
                await asyncio.Event().wait()  # park the timer
            await asyncio.sleep(0)

        store = KeyStore(fetch=fetch, clock=clock, sleep=sleep, retry_base=2, retry_max=300)
        remote_validator(store, "https://idp.example/keys", cache_duration=120)
        store.start()
        await asyncio.wait_for(done.wait(), 5)
        status = store.status()[0]
        store.stop()
        return status

    status = asyncio.run(main())
    assert fetch.calls == 5
    assert delays == [120, 2, 4, 8, 120]
    assert status["failures"] == 0 and status["downloads"] == 5


def test_backoff_is_capped_by_cache_duration_and_retry_max():
    clock = FakeClock()
    store = KeyStore(fetch=ScriptedFetch([]), clock=clock, retry_base=2, retry_max=30)
    handle = store.handle("https://idp/keys", cache_duration=900)
    remote = handle._remote
    remote.failures = 10
    assert remote.next_delay() == 30
    remote.cache_duration = 5
    assert remote.next_delay() == 5
    remote.failures = 0
    remote.cache_duration = 10 * 86400  # longer than the staleness bound: refresh at half of it
    assert remote.period == store.max_staleness / 2


def test_reload_adopts_sets_and_never_duplicates_timers(jwks_server):
    server = jwks_server([K1])

    async def main():
        old = KeyStore()
        remote_validator(old, server.url())
        old.start()
        await old.refresh()
        new = KeyStore()
        validator = remote_validator(new, server.url())
        new.adopt(old)
        old.stop()
        timers_old = [r._timer for r in old._sets.values()]
        verdict = await validator.authenticate(bearer(T1))  # served from the adopted set
        new.stop()
        return verdict, timers_old

    verdict, timers_old = asyncio.run(main())
    assert verdict.status == 200
    assert timers_old == [None]
    assert server.count() <= 2  # old warm-up (+ the explicit refresh, possibly shared); none for the new store


def test_handle_registered_after_start_gets_a_timer(jwks_server):
    server = jwks_server([K1])

    async def main():
        store = KeyStore()
        store.start()
        remote_validator(store, server.url())
        remote = next(iter(store._sets.values()))
        started = remote.started
        await store.refresh()
        store.stop()
        return started, remote.started

    assert asyncio.run(main()) == (True, False)


# ---------------------------------------------------------------------------------------------
# url_map


def test_url_map_to_loopback_http(jwks_server):
    server = jwks_server([K1])
    base = f"http://127.0.0.1:{server.port}"

    async def main():
        store = KeyStore(url_map=[f"https://api.descope.com={base}"])
        spec = parse_validator({"auth/validator": {"alg": "RS256", "cache": True,
                                                   "jwk_url": "https://api.descope.com/keys"}})
        assert spec.broken is None  # the original https URL passes KrakenD's check
        validator = EndpointValidator(spec, store, endpoint_path="/d")
        verdict = await validator.authenticate(bearer(T1))
        store.stop()
        return verdict

    verdict = asyncio.run(main())
    assert verdict.status == 200
    assert verdict.details["key_source"] == f"{base}/keys (mapped from https://api.descope.com/keys)"
    assert server.count() == 1


def test_url_map_to_remote_http_is_refused():
    store = KeyStore(url_map=["https://api.descope.com=http://mock.example:4000"])
    spec = parse_validator({"auth/validator": {"alg": "RS256", "jwk_url": "https://api.descope.com/v2/keys/P1"}})
    validator = EndpointValidator(spec, store, endpoint_path="/d")
    verdict = asyncio.run(validator.authenticate(bearer(T1)))
    assert verdict.status == 401 and verdict.reason_id == "jwk_url_map_insecure"
    insecure_ok = parse_validator({"auth/validator": {"alg": "RS256", "disable_jwk_security": True,
                                                      "jwk_url": "https://api.descope.com/v2/keys/P1"}})
    assert store.check_mapped_url(insecure_ok.jwk_url, insecure_allowed=True) is None


def test_url_map_parsing():
    store = KeyStore(url_map=["https://a.com=http://127.0.0.1:1", "https://a.com/v2=http://127.0.0.1:2/x"])
    assert store.map_url("https://a.com/v2/keys") == "http://127.0.0.1:2/x/keys"  # longest prefix wins
    assert store.map_url("https://a.com/v1/keys") == "http://127.0.0.1:1/v1/keys"
    assert store.map_url("https://b.com/keys") == "https://b.com/keys"
    with pytest.raises(ValueError):
        KeyStore(url_map=["no-equals-sign"])


def test_unsupported_scheme():
    spec = parse_validator({"auth/validator": {"alg": "RS256", "disable_jwk_security": True}})
    verdict = asyncio.run(EndpointValidator(spec, KeyStore(), endpoint_path="/e").authenticate(bearer(T1)))
    assert verdict.message == 'Unable to validate the token: Get "": unsupported protocol scheme ""'


# ---------------------------------------------------------------------------------------------
# TLS (spec §18)


@pytest.fixture
def tls_server(tmp_path, jwks_server):
    material = make_ca_and_server_cert(tmp_path)
    server = jwks_server([K1], tls_context=material["context"])
    return server, material


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize(
    "config,status,message",
    [
        ({}, 401, "x509: certificate signed by unknown authority"),
        ({"jwk_local_ca": "CA"}, 200, None),
        ({"disable_jwk_security": True}, 200, None),
        ({"jwk_local_ca": "CA", "jwk_fingerprints": ["LEAF"]}, 200, None),
        ({"jwk_local_ca": "CA", "jwk_fingerprints": ["CA_PIN"]}, 200, None),  # any certificate of the chain
        ({"jwk_local_ca": "CA", "jwk_fingerprints": ["A" * 43 + "="]}, 401, "JWK client did not find a pinned key"),
        ({"disable_jwk_security": True, "jwk_fingerprints": ["A" * 43 + "="]}, 401, "JWK client did not find a pinned key"),
    ],
)
def test_tls_options(tls_server, config, status, message):
    server, material = tls_server
    cfg = {"alg": "RS256", "jwk_url": server.url(), "cache": True}
    for key, value in config.items():
        if key == "jwk_local_ca":
            value = material["ca"]
        if key == "jwk_fingerprints":
            value = [{"LEAF": material["leaf_pin"], "CA_PIN": material["ca_pin"]}.get(v, v) for v in value]
        cfg[key] = value

    async def main():
        store = KeyStore()
        spec = parse_validator({"auth/validator": cfg})
        verdict = await EndpointValidator(spec, store, endpoint_path="/tls").authenticate(bearer(T1))
        store.stop()
        return verdict

    verdict = asyncio.run(main())
    assert verdict.status == status, verdict.message
    if message:
        assert message in verdict.message and verdict.message.startswith(f'Unable to validate the token: Get "{server.url()}": ')
