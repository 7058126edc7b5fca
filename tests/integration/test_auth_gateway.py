"""auth/validator end to end: a real mitmdump, a real backend and a real JWKS HTTP server."""

import concurrent.futures
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "auth"))
from jwt_testkit import JWKSServer, future, mint, public_jwk, rsa_key  # noqa: E402

from krakend_mitm.processes import free_port  # noqa: E402

PROJECT_ID = "P2AbCdEfGhIjKlMnOpQrStUvWxYz"
DESCOPE_JWKS = f"https://api.descope.com/v2/keys/{PROJECT_ID}"


@pytest.fixture
def keys():
    return {"k1": rsa_key("k1"), "k2": rsa_key("k2")}


@pytest.fixture
def jwks(keys):
    server = JWKSServer([public_jwk(keys["k1"], "k1")])
    yield server
    server.close()


def seed_config(port, **validator_extra):
    """configs/descope.json's shape: the gateway's own /__health as backend, Descope's JWKS URL."""
    validator = {"alg": "RS256", "jwk_url": DESCOPE_JWKS, "cache": True, **validator_extra}
    return {"version": 3, "port": port, "endpoints": [
        {"endpoint": "/descope-protected", "method": "GET",
         "backend": [{"url_pattern": "/__health", "host": [f"http://localhost:{port}"]}],
         "extra_config": {"auth/validator": validator}},
        {"endpoint": "/admin", "backend": [{"url_pattern": "/__health", "host": [f"http://localhost:{port}"]}],
         "extra_config": {"auth/validator": {**validator, "roles": ["admin"],
                                             "roles_key": f"tenants.T1.roles", "roles_key_is_nested": True}}},
    ]}


def session_token(key, kid="k1", **claims):
    payload = {"sub": "U1", "iss": PROJECT_ID, "drn": "DS", "amr": ["email"], "iat": int(time.time()),
               "exp": future(600), **claims}
    return mint(payload, key, "RS256", kid)


def start_seed(start_gateway, jwks, **validator_extra):
    port = free_port()
    mapping = f"jwk_url_map=https://api.descope.com={jwks.url('')}"
    return start_gateway(seed_config(port, **validator_extra), port=port, sets=[mapping])


def get(gateway, path="/descope-protected", token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(gateway.url + path, headers=headers, **kw)


def test_seed_scenario_401_without_token_200_with_one(start_gateway, jwks, keys):
    gateway = start_seed(start_gateway, jwks)
    response = get(gateway)
    assert response.status_code == 401 and response.content == b""
    assert "WWW-Authenticate" not in response.headers and "X-Krakend" not in response.headers
    assert "[ENDPOINT: /descope-protected][JWTValidator] Unable to validate the token: Token not found" in gateway.log()
    response = get(gateway, token=session_token(keys["k1"]))
    assert response.status_code == 200 and response.json()["status"] == "ok"
    for _ in range(5):
        assert get(gateway, token=session_token(keys["k1"])).status_code == 200
    assert jwks.count() == 1  # fetched once at start-up, never per request
    assert "KrakenD Version 2.13.8" in jwks.user_agents[0]


def test_tenant_roles_and_the_descope_refresh_token_rule(start_gateway, jwks, keys):
    gateway = start_seed(start_gateway, jwks)
    admin = session_token(keys["k1"], tenants={"T1": {"roles": ["admin"]}})
    viewer = session_token(keys["k1"], tenants={"T1": {"roles": ["viewer"]}})
    assert get(gateway, "/admin", admin).status_code == 200
    assert get(gateway, "/admin", viewer).status_code == 403
    refresh = session_token(keys["k1"], drn="DSR")
    assert get(gateway, token=refresh).status_code == 401
    assert "descope_refresh_token" in gateway.log()


def test_rotation_new_kid_works_at_once(start_gateway, jwks, keys):
    gateway = start_seed(start_gateway, jwks)
    assert get(gateway, token=session_token(keys["k1"])).status_code == 200
    jwks.set_keys([public_jwk(keys["k1"], "k1"), public_jwk(keys["k2"], "k2")])
    assert get(gateway, token=session_token(keys["k2"], kid="k2")).status_code == 200
    assert jwks.count() == 2


def test_unknown_kid_storm_is_rate_limited(start_gateway, jwks, keys):
    gateway = start_seed(start_gateway, jwks)
    assert get(gateway, token=session_token(keys["k1"])).status_code == 200
    before = jwks.count()
    tokens = [session_token(keys["k2"], kid=uuid.uuid4().hex) for _ in range(50)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda t: get(gateway, token=t).status_code, tokens))
    assert statuses == [401] * 50
    assert jwks.count() - before <= 5
    assert get(gateway, token=session_token(keys["k1"])).status_code == 200


@pytest.mark.parametrize("body,content_type,status", [
    (b"<html>down</html>", "text/html", 503),
    (b"{not json", "application/json", 200),
    (b'{"keys": []}', "application/json", 200),
])
def test_outage_after_warm_up_keeps_cached_keys(start_gateway, jwks, keys, body, content_type, status):
    gateway = start_seed(start_gateway, jwks)
    assert get(gateway, token=session_token(keys["k1"])).status_code == 200
    jwks.set_body(body, content_type, status)
    assert get(gateway, token=session_token(keys["k1"])).status_code == 200  # last good set keeps validating
    assert get(gateway, token=session_token(keys["k2"], kid="k2")).status_code == 401  # nothing new gets in


@pytest.mark.parametrize("body,content_type", [
    (b"garbage", "application/json"),
    (b'{"keys": []}', "text/plain"),
    (b'{"keys": [' + b'{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"x"},' * 120_000 + b"{}]}", "application/json"),
])
def test_a_bad_jwks_from_the_start_lets_nothing_through(start_gateway, jwks, keys, body, content_type):
    jwks.set_body(body, content_type)
    gateway = start_seed(start_gateway, jwks)
    assert get(gateway, token=session_token(keys["k1"])).status_code == 401
    assert get(gateway).status_code == 401


def test_slow_jwks_does_not_delay_cached_kids(start_gateway, jwks, keys):
    gateway = start_seed(start_gateway, jwks)
    good = session_token(keys["k1"])
    assert get(gateway, token=good).status_code == 200
    jwks.delay = 3.0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(get, gateway, token=session_token(keys["k2"], kid="unknown-kid"))
        assert jwks.started.wait(5)
        started = time.monotonic()
        assert get(gateway, token=good).status_code == 200
        assert time.monotonic() - started < 0.5
        assert slow.result().status_code == 401


def test_rejected_flows_never_reach_the_backend(start_gateway, jwks, keys, backend):
    port = free_port()
    config = {"version": 3, "port": port, "endpoints": [{
        "endpoint": "/p", "input_headers": ["X-User"],
        "backend": [{"host": [backend.url], "url_pattern": "/echo/{JWT.sub}"}],
        "extra_config": {"auth/validator": {"alg": "RS256", "jwk_url": jwks.url(), "disable_jwk_security": True,
                                            "cache": True, "propagate_claims": [["sub", "X-User"]]}}}]}
    gateway = start_gateway(config, port=port)
    assert requests.get(f"{gateway.url}/p", headers={"Authorization": "Bearer a.bad.token"}).status_code == 401
    assert sum(backend.hits.values()) == 0
    token = session_token(keys["k1"], sub="alice")
    body = requests.get(f"{gateway.url}/p", headers={"Authorization": f"Bearer {token}", "X-User": "mallory"}).json()
    assert body["path"] == "/echo/alice" and body["headers"]["X-User"] == ["alice"]
