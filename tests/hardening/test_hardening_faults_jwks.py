"""A misbehaving identity provider, through one real mitmdump started with
`--set jwks_max_staleness=3s` (refresh period 1.5 s): each fault asserts what is accepted, what is
rejected, and that the gateway keeps serving.

Faults: down at start-up then up; up then down (within and beyond the staleness bound); slow;
garbage; oversized (plain and gzip bomb) and too many keys; wrong content type; a redirect loop;
TLS with an untrusted certificate.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest

from hardening_corpus import compact
from hardening_kit import KeyServer, bearer, closed_port, gzip_bomb, log_size, send, wait_for_log, wait_until
from jwt_testkit import make_ca_and_server_cert, public_jwk, rsa_key

from krakend_mitm.auth.jwks import MAX_JWKS_BYTES, MAX_JWKS_KEYS
from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, free_port, gateway_command

A_PATHS = ("/slow", "/garbage", "/oversized", "/ctype", "/loop", "/redirect", "/target", "/toomany")


class Env:
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jwks-faults")
    e = Env()
    e.k1, e.k2 = rsa_key("hardening-k1"), rsa_key("hardening-k2")
    e.jwk1, e.jwk2 = public_jwk(e.k1, "k1"), public_jwk(e.k2, "k2")
    e.a = KeyServer()
    for path in A_PATHS:
        e.a.set_keys(path, [e.jwk1])
    e.a.set("/loop", location="/loop")
    e.a.set("/redirect", location="/target")
    e.flaky = KeyServer()
    e.flaky.set_keys("/keys", [e.jwk1])
    e.startdown_port = closed_port()
    e.startdown = None
    tls = make_ca_and_server_cert(tmp)
    e.tls = KeyServer(tls_context=tls["context"])
    e.tls.set_keys("/keys", [e.jwk1])
    e.backend = EchoServer().start()
    urls = {
        "/f/startdown": (f"http://127.0.0.1:{e.startdown_port}/keys", {}),
        "/f/flaky": (e.flaky.url("/keys"), {}),
        "/f/tls-untrusted": (e.tls.url("/keys"), {"disable_jwk_security": False}),
        "/f/tls-ca": (e.tls.url("/keys"), {"disable_jwk_security": False, "jwk_local_ca": tls["ca"]}),
        "/f/tls-insecure": (e.tls.url("/keys"), {}),
        **{f"/f{path}": (e.a.url(path), {}) for path in A_PATHS if path != "/target"},
    }
    endpoints = []
    for endpoint, (url, extra) in urls.items():
        validator = {"alg": "RS256", "jwk_url": url, "disable_jwk_security": True, "cache": True, **extra}
        endpoints.append({"endpoint": endpoint, "backend": [{"host": [e.backend.url], "url_pattern": "/hit" + endpoint}],
                          "extra_config": {"auth/validator": validator}})
    e.port = free_port()
    path = tmp / "jwks-faults.json"
    path.write_text(json.dumps({"version": 3, "port": e.port, "endpoints": endpoints}))
    e.gateway = GatewayProcess(gateway_command(str(path), e.port, sets=("jwks_max_staleness=3s",)), e.port).start()
    try:
        yield e
    finally:
        e.gateway.stop()
        for server in (e.a, e.flaky, e.tls, e.startdown):
            if server is not None:
                server.close()
        e.backend.stop()


def token(e, kid="k1"):
    now = int(time.time())
    key = e.k1 if kid == "k1" else e.k2
    return compact({"alg": "RS256", "kid": kid}, {"sub": "u", "iat": now, "exp": now + 600}, key)


def status(e, endpoint, kid="k1"):
    return send(e.port, endpoint, bearer(token(e, kid))).status


def backend_hits(e, endpoint):
    with e.backend._lock:
        return e.backend.hits.get("/hit" + endpoint, 0)


def assert_up(e):
    assert e.gateway.process.poll() is None, e.gateway.log()[-3000:]
    assert send(e.port, "/__health").status == 200
    assert "Traceback" not in e.gateway.log(), e.gateway.log()[-3000:]


def test_down_at_start_up_then_up(env):
    e = env
    hits = backend_hits(e, "/f/startdown")
    assert status(e, "/f/startdown") == 401  # nothing was ever downloaded: nothing gets in
    assert "connection refused" in e.gateway.log()
    assert backend_hits(e, "/f/startdown") == hits
    e.startdown = KeyServer(port=e.startdown_port)
    e.startdown.set_keys("/keys", [e.jwk1])
    assert status(e, "/f/startdown") == 200  # the next request downloads the set
    assert status(e, "/f/startdown", "k2") == 401
    assert backend_hits(e, "/f/startdown") == hits + 1
    assert_up(e)


def test_up_then_down_within_and_beyond_the_staleness_bound(env):
    e = env
    assert status(e, "/f/flaky") == 200
    port = e.flaky.port
    e.flaky.close()
    down_at = time.monotonic()
    assert status(e, "/f/flaky") == 200  # within jwks_max_staleness: the last good set validates
    assert status(e, "/f/flaky", "k2") == 401  # nothing new gets in
    since = log_size(e.gateway)
    wait_for_log(e.gateway, f"127.0.0.1:{port}/keys: download failed", since=since, timeout=10)
    part = wait_for_log(e.gateway, "now too old to use", since=since, timeout=10)
    assert "127.0.0.1:%d" % port in part
    since = log_size(e.gateway)
    assert status(e, "/f/flaky") == 401  # beyond the bound: fail closed
    stale_after = time.monotonic() - down_at
    wait_for_log(e.gateway, "jwks_stale", since=since, timeout=5)
    assert stale_after >= 1.0, "keys went stale before half the refresh period"
    assert_up(e)
    # the IdP comes back: the next download restores service
    e.flaky = KeyServer(port=port)
    e.flaky.set_keys("/keys", [e.jwk1, e.jwk2])
    wait_until(lambda: status(e, "/f/flaky") == 200, timeout=10, interval=0.2, what="recovery")
    assert status(e, "/f/flaky", "k2") == 200
    assert_up(e)


def test_slow_idp_never_delays_cached_keys(env):
    e = env
    assert status(e, "/f/slow") == 200
    e.a.set_keys("/slow", [e.jwk1, e.jwk2], delay=2.0)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            rotated = pool.submit(status, e, "/f/slow", "k2")  # unknown kid: waits for the slow download
            started = time.monotonic()
            fast = [pool.submit(status, e, "/f/slow") for _ in range(3)]
            assert [f.result() for f in fast] == [200] * 3
            assert time.monotonic() - started < 1.5, "a cached key waited for the slow IdP"
            assert rotated.result(timeout=20) == 200  # the new key arrives with the slow download
    finally:
        e.a.set_keys("/slow", [e.jwk1, e.jwk2])
    assert_up(e)


def test_garbage_keeps_the_last_good_set_and_recovers(env):
    e = env
    assert status(e, "/f/garbage") == 200
    since = log_size(e.gateway)
    e.a.set("/garbage", body=b'{"keys": [' + json.dumps(e.jwk2).encode() + b", garbage")
    assert status(e, "/f/garbage", "k2") == 401
    wait_for_log(e.gateway, "invalid character", since=since)
    assert status(e, "/f/garbage") == 200
    e.a.set("/garbage", body=b"<html>502 Bad Gateway</html>", content_type="text/html", status=502)
    assert status(e, "/f/garbage") == 200
    e.a.set_keys("/garbage", [e.jwk1, e.jwk2])
    wait_until(lambda: status(e, "/f/garbage", "k2") == 200, timeout=12, interval=0.3, what="recovery")
    assert_up(e)


def test_oversized_sets_and_too_many_keys_are_refused(env):
    e = env
    assert status(e, "/f/oversized") == 200
    since = log_size(e.gateway)
    huge = json.dumps({"keys": [e.jwk1, e.jwk2], "padding": "x" * (MAX_JWKS_BYTES + 10)}).encode()
    e.a.set("/oversized", body=huge)
    assert status(e, "/f/oversized", "k2") == 401
    wait_for_log(e.gateway, "jwks_too_large", since=since)
    assert status(e, "/f/oversized") == 200  # the last good set still validates
    since = log_size(e.gateway)
    e.a.set("/oversized", body=gzip_bomb(64 * 1024 * 1024), content_encoding="gzip")
    assert status(e, "/f/oversized", "k2") == 401
    wait_for_log(e.gateway, "jwks_too_large", since=since)
    e.a.set_keys("/oversized", [e.jwk1])
    # key count: one over the limit is refused as a whole, the limit itself is fine
    assert status(e, "/f/toomany") == 200
    copies = [dict(e.jwk1, kid=f"copy{i}") for i in range(MAX_JWKS_KEYS)]
    since = log_size(e.gateway)
    e.a.set_keys("/toomany", copies + [e.jwk2])
    assert status(e, "/f/toomany", "k2") == 401
    wait_for_log(e.gateway, "jwks_too_many_keys", since=since)
    e.a.set_keys("/toomany", copies[:-1] + [e.jwk2])
    wait_until(lambda: status(e, "/f/toomany", "k2") == 200, timeout=12, interval=0.3, what="a set at the limit")
    assert_up(e)


def test_wrong_content_type_is_refused_as_krakend_does(env):
    e = env
    assert status(e, "/f/ctype") == 200
    since = log_size(e.gateway)
    e.a.set_keys("/ctype", [e.jwk1, e.jwk2], content_type="text/plain")
    assert status(e, "/f/ctype", "k2") == 401
    wait_for_log(e.gateway, "should have a JSON content type for JWKS endpoint", since=since)
    e.a.set_keys("/ctype", [e.jwk1, e.jwk2], content_type="application/jwk-set+json")
    wait_until(lambda: status(e, "/f/ctype", "k2") == 200, timeout=12, interval=0.3, what="jwk-set+json accepted")
    assert_up(e)


def test_redirects_are_followed_but_a_loop_fails_closed(env):
    e = env
    assert status(e, "/f/redirect") == 200  # spec (descope.md §10.5 redirect): followed
    assert status(e, "/f/loop") == 401
    assert "redirects" in e.gateway.log().lower()
    assert e.a.count("/loop") >= 11
    assert_up(e)


def test_tls_failure_fails_closed(env):
    e = env
    assert status(e, "/f/tls-untrusted") == 401
    assert "certificate signed by unknown authority" in e.gateway.log()
    assert status(e, "/f/tls-ca") == 200  # the same server, trusted through jwk_local_ca
    assert status(e, "/f/tls-insecure") == 200  # disable_jwk_security turns verification off (KrakenD)
    assert backend_hits(e, "/f/tls-untrusted") == 0
    assert_up(e)
