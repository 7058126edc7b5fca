"""The mock Descope as a real HTTP server on 127.0.0.1 (port 0), and the `token` / `mock-descope` commands.

Readiness never needs a sleep: MockDescope.start() returns once bound; the CLI server prints a ready line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest
import requests

from krakend_mitm.descope import (DEFAULT_ACCESS_KEY, DEFAULT_ACCESS_KEY_ID, DEFAULT_PROJECT_ID, DEFAULT_TENANT_ID,
                                  DEFAULT_USER_ID, DescopeError, MockConfigError, MockDescope, decode_unverified)
from krakend_mitm.descope import commands
from krakend_mitm.descope.tokens import SigningKey

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SDK_TOKENS = SHARED / "vectors" / "descope" / "sdk_test_tokens.json"
T1, T2 = "T2Tenant0000000000000000001", "T2Tenant0000000000000000002"

CUSTOM = {
    "project_id": "P2CustomProject00000000000000",
    "roles": {"viewer": ["read"], "admin": ["read", "write"], "ops": ["deploy"]},
    "users": [{"id": "U2First", "roles": ["viewer"], "tenants": {T1: ["admin"], T2: ["viewer"]},
               "custom_claims": {"plan": "gold"}}],
    "access_keys": [
        {"id": "K2Main", "cleartext": "main-secret", "roles": ["ops"], "tenants": {T1: ["viewer"], T2: ["admin"]},
         "custom_claims": {"svc": "billing"}},
        {"id": "K2Inactive", "cleartext": "inactive-secret", "status": "inactive"},
        {"id": "K2Expired", "cleartext": "expired-secret", "expire_time": 1000},
        {"id": "K2Fenced", "cleartext": "fenced-secret", "permitted_ips": ["10.0.0.0/8"]},
        {"id": "K2Local", "cleartext": "local-secret", "permitted_ips": ["127.0.0.0/8", "::1"]},
    ],
}


@pytest.fixture(scope="module")
def server():
    with MockDescope() as mock:
        yield mock


@pytest.fixture(scope="module")
def custom_server():
    with MockDescope(CUSTOM) as mock:
        yield mock


@pytest.fixture
def mock(server):
    yield server
    server.reset(keys=True)


@pytest.fixture
def custom(custom_server):
    yield custom_server
    custom_server.reset(keys=True)


def claims_of(token: str) -> dict:
    return decode_unverified(token).claims


def verify(mock: MockDescope, token: str, alg: str | None = None) -> dict:
    """Verify with PyJWT against the JWKS the mock serves right now."""
    document = requests.get(mock.jwks_url, timeout=5).json()
    kid = decode_unverified(token).header["kid"]
    jwk = next(item for item in document["keys"] if item["kid"] == kid)
    return jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[alg or jwk["alg"]], options={"verify_aud": False})


def post(mock: MockDescope, path: str, **kwargs) -> requests.Response:
    return requests.post(mock.base_url + path, timeout=5, **kwargs)


def exchange(mock: MockDescope, credential: str, headers: dict | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {credential}", **(headers or {})}
    return post(mock, "/v1/auth/accesskey/exchange", headers=headers, **kwargs)


def assert_descope_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"errorCode", "errorDescription", "errorMessage"}
    assert body["errorCode"] == code
    return body


# ---------------------------------------------------------------------------------------------
# Python controls and lifecycle


def test_start_exposes_addresses_and_defaults(mock):
    assert mock.base_url == f"http://127.0.0.1:{mock.port}" and mock.port > 0
    assert mock.project_id == DEFAULT_PROJECT_ID
    assert mock.jwks_url == f"{mock.base_url}/v2/keys/{DEFAULT_PROJECT_ID}"
    assert mock.default_access_key == DEFAULT_ACCESS_KEY and mock.default_user_id == DEFAULT_USER_ID
    info = requests.get(mock.base_url + "/__mock/info", timeout=5).json()
    assert info["default_access_key"] == {"id": DEFAULT_ACCESS_KEY_ID, "cleartext": DEFAULT_ACCESS_KEY}
    assert mock.start() is mock  # starting twice is harmless


def test_context_manager_stops_and_frees_the_port():
    with MockDescope({"alg": "ES256"}, project_id="P2Other") as other:
        port = other.port
        assert requests.get(other.jwks_url, timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v2/keys/P2Other", timeout=2)
    with pytest.raises(RuntimeError, match="not started"):
        _ = other.base_url


def test_python_exchange_and_errors(mock):
    answer = mock.exchange(login_options={"customClaims": {"k": "v"}, "selectedTenant": DEFAULT_TENANT_ID})
    claims = verify(mock, answer["sessionJwt"])
    assert answer["keyId"] == claims["sub"] == DEFAULT_ACCESS_KEY_ID
    assert (claims["nsec"], claims["dct"]) == ({"k": "v"}, DEFAULT_TENANT_ID)
    with pytest.raises(DescopeError) as failure:
        mock.exchange("wrong")
    assert (failure.value.status, failure.value.code) == (401, "E011003")


# ---------------------------------------------------------------------------------------------
# JWKS and discovery


def test_jwks_v2_v1_and_well_known(mock):
    v2 = requests.get(mock.jwks_url, timeout=5)
    assert v2.status_code == 200 and v2.headers["Content-Type"] == "application/json"
    keys = v2.json()["keys"]
    assert len(keys) == 1 and set(keys[0]) == {"kty", "alg", "use", "kid", "n", "e"}
    assert (keys[0]["kty"], keys[0]["alg"], keys[0]["use"], keys[0]["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert keys[0]["kid"] == mock.keys()["active_kid"]
    v1 = requests.get(f"{mock.base_url}/v1/keys/{mock.project_id}", timeout=5).json()
    assert v1 == keys
    well_known = requests.get(f"{mock.base_url}/{mock.project_id}/.well-known/jwks.json", timeout=5).json()
    assert well_known == {"keys": keys}
    assert requests.get(mock.jwks_url + "?certs=true", timeout=5).json() == {"keys": keys}
    assert requests.head(mock.jwks_url, timeout=5).status_code == 200


def test_openid_configuration_both_paths(mock):
    for path in (f"/{mock.project_id}/.well-known/openid-configuration",
                 f"/v1/apps/{mock.project_id}/.well-known/openid-configuration"):
        document = requests.get(mock.base_url + path, timeout=5).json()
        assert document["issuer"] == mock.project_id
        assert document["jwks_uri"] == f"{mock.base_url}/{mock.project_id}/.well-known/jwks.json"
        assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    counters = mock.counters()
    assert counters["openid_config"] == 2


@pytest.mark.parametrize("path", ["/v2/keys/{bad}", "/v1/keys/{bad}", "/{bad}/.well-known/jwks.json",
                                  "/{bad}/.well-known/openid-configuration"])
def test_unknown_project_is_a_descope_400(mock, path):
    response = requests.get(mock.base_url + path.format(bad="P2Unknown"), timeout=5)
    assert "P2Unknown" in assert_descope_error(response, 400, "E011004")["errorMessage"]


def test_unknown_route_and_wrong_method(mock):
    assert_descope_error(requests.get(mock.base_url + "/v1/nothing", timeout=5), 404, "E011001")
    response = requests.delete(mock.jwks_url, timeout=5)
    assert_descope_error(response, 405, "E011001")
    assert response.headers["Allow"] == "GET"
    assert_descope_error(requests.get(mock.base_url + "/v1/auth/refresh", timeout=5), 405, "E011001")


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES256", "ES384"])
def test_each_alg_signs_tokens_the_served_jwks_verifies(alg):
    with MockDescope({"alg": alg}) as mock:
        token = mock.mint(roles=["admin"])
        assert decode_unverified(token).header == {"alg": alg, "kid": mock.keys()["active_kid"], "typ": "JWT"}
        assert verify(mock, token, alg)["roles"] == ["admin"]
        assert requests.get(mock.jwks_url, timeout=5).json()["keys"][0]["alg"] == alg


def test_keys_seeded_from_pem_files_are_reproducible(tmp_path):
    seed = SigningKey.generate("ES256")
    (tmp_path / "signer.pem").write_text(seed.private_pem())
    (tmp_path / "mock.json").write_text(json.dumps({"alg": "ES256", "keys": [{"kid": "fixed-kid",
                                                                              "private_key_file": "signer.pem"}]}))
    with MockDescope(tmp_path / "mock.json") as first, MockDescope(tmp_path / "mock.json") as second:
        assert requests.get(first.jwks_url, timeout=5).json() == requests.get(second.jwks_url, timeout=5).json()
        assert first.keys()["active_kid"] == "fixed-kid"
        assert verify(second, first.mint())["sub"] == DEFAULT_USER_ID  # same key, whichever mock signs


# ---------------------------------------------------------------------------------------------
# access-key exchange


def test_exchange_carries_the_keys_authorization_and_login_options(custom):
    response = exchange(custom, f"{custom.project_id}:main-secret",
                        json={"loginOptions": {"customClaims": {"env": "ci"}, "selectedTenant": T2}})
    assert response.status_code == 200 and set(response.json()) == {"keyId", "sessionJwt", "expiration"}
    answer = response.json()
    claims = verify(custom, answer["sessionJwt"])
    assert answer["keyId"] == claims["sub"] == "K2Main" and answer["expiration"] == claims["exp"]
    assert claims["exp"] - claims["iat"] == 600
    assert (claims["roles"], claims["permissions"]) == (["ops"], ["deploy"])
    assert claims["tenants"] == {T1: {"roles": ["viewer"], "permissions": ["read"]},
                                 T2: {"roles": ["admin"], "permissions": ["read", "write"]}}
    assert (claims["svc"], claims["nsec"], claims["dct"], claims["drn"]) == ("billing", {"env": "ci"}, T2, "DS")
    assert claims["iss"] == custom.project_id and "refreshJwt" not in answer and "Set-Cookie" not in response.headers


def test_exchange_accepts_sdk_variants(custom):
    assert exchange(custom, f"{custom.project_id}:main-secret:management-key").status_code == 200
    lower = post(custom, "/v1/auth/accesskey/exchange", headers={"Authorization": f"bearer {custom.project_id}:"
                                                                                   "main-secret"}, data=b"")
    assert lower.status_code == 200
    assert exchange(custom, f"{custom.project_id}:main-secret", json={"loginOptions": {}}).status_code == 200
    assert exchange(custom, f"{custom.project_id}:local-secret").status_code == 200


@pytest.mark.parametrize("credential, body, status, code, message", [
    ("{pid}:wrong-secret", None, 401, "E011003", "Invalid access key"),
    ("P2WrongProject:main-secret", None, 401, "E011003", "project"),
    ("{pid}:inactive-secret", None, 401, "E011003", "not active"),
    ("{pid}:expired-secret", None, 401, "E011003", "expired"),
    ("{pid}:fenced-secret", None, 403, "E011003", "not permitted"),
    ("{pid}", None, 401, "E011003", "<projectId>:<secret>"),
    ("{pid}:main-secret", b"{not json", 400, "E011001", "not valid JSON"),
    ("{pid}:main-secret", b'{"loginOptions": []}', 400, "E011004", "loginOptions"),
    ("{pid}:main-secret", b'{"loginOptions": {"selectedTenant": "T9"}}', 400, "E011004", "selectedTenant"),
    ("{pid}:main-secret", b'{"loginOptions": {"customClaims": "x"}}', 400, "E011004", "customClaims"),
])
def test_exchange_errors(custom, credential, body, status, code, message):
    response = exchange(custom, credential.format(pid=custom.project_id), data=body,
                        headers={"Content-Type": "application/json"})
    assert message in assert_descope_error(response, status, code)["errorMessage"]
    assert custom.counters()["exchange_fail"] == 1


def test_exchange_without_credentials(custom):
    assert_descope_error(post(custom, "/v1/auth/accesskey/exchange"), 400, "E011002")
    basic = post(custom, "/v1/auth/accesskey/exchange", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_descope_error(basic, 401, "E011003")


def test_access_key_expiry_caps_the_token(custom):
    custom.config.access_keys.append(type(custom.config.access_keys[0])(
        id="K2Soon", cleartext="soon-secret", expire_time=custom.now() + 100))
    try:
        answer = exchange(custom, f"{custom.project_id}:soon-secret").json()
        assert answer["expiration"] == claims_of(answer["sessionJwt"])["exp"] <= custom.now() + 100
    finally:
        custom.config.access_keys.pop()


# ---------------------------------------------------------------------------------------------
# refresh, try-refresh, logout, tenant selection


def refresh_with(mock: MockDescope, token: str | None, path: str = "/v1/auth/refresh", cookie: bool = False,
                 **kwargs) -> requests.Response:
    if cookie:
        return post(mock, path, cookies={"DSR": token}, json={}, **kwargs)
    headers = {"Authorization": f"Bearer {mock.project_id}:{token}"} if token else {}
    return post(mock, path, headers=headers, json={}, **kwargs)


def test_refresh_returns_a_jwt_response(custom):
    refresh = custom.mint("refresh", sub="U2First")
    response = refresh_with(custom, refresh)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"sessionJwt", "cookiePath", "cookieMaxAge", "cookieExpiration", "sessionExpiration", "user", "firstSeen",
            "claims", "cookieName", "sessionCookieName"} <= set(body)
    assert "refreshJwt" not in body  # no rotation by default
    session = verify(custom, body["sessionJwt"])
    assert (session["sub"], session["drn"], session["plan"]) == ("U2First", "DS", "gold")
    assert session["rexp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims_of(refresh)["exp"]))
    assert body["sessionExpiration"] == session["exp"] and body["claims"] == session
    assert body["user"]["userId"] == "U2First"
    assert refresh_with(custom, refresh, cookie=True).status_code == 200
    assert custom.counters()["refresh_ok"] == 2


def test_refresh_rejections(custom):
    good = custom.mint("refresh", sub="U2First")
    cases = {
        "session token": (custom.mint(sub="U2First"), "drn is not DSR"),
        "expired": (custom.mint("refresh", ttl=-5), "expired"),
        "unpublished key": (custom.mint("refresh", sign_with="unpublished"), "unknown signing key"),
        "bad signature": (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "Invalid refresh token"),
        "garbage": ("not-a-jwt", "Invalid refresh token"),
        "alg none": (custom.mint("refresh", sign_with="none"), "Invalid refresh token"),
    }
    for name, (token, message) in cases.items():
        response = refresh_with(custom, token)
        assert message in assert_descope_error(response, 401, "E011003")["errorMessage"], name
    wrong_project = post(custom, "/v1/auth/refresh", headers={"Authorization": f"Bearer P2Nope:{good}"})
    assert_descope_error(wrong_project, 401, "E011003")
    assert_descope_error(refresh_with(custom, None), 400, "E011002")
    assert_descope_error(post(custom, "/v1/auth/refresh", cookies={"DSR": good}, data=b"{x"), 400, "E011001")
    assert custom.counters()["refresh_fail"] == len(cases) + 3


def test_refresh_rotation_and_cookie_mode():
    with MockDescope({"alg": "ES256", "refresh_rotation": True, "cookie_mode": True}) as mock:
        first = mock.mint("refresh")
        response = refresh_with(mock, first)
        assert response.status_code == 200
        assert "sessionJwt" not in response.json() and "refreshJwt" not in response.json()
        cookies = response.headers["Set-Cookie"]
        assert "DS=" in cookies and "DSR=" in cookies and "HttpOnly" in cookies
        second = response.cookies["DSR"]
        assert claims_of(response.cookies["DS"])["drn"] == "DS" and claims_of(second)["drn"] == "DSR"
        assert_descope_error(refresh_with(mock, first), 401, "E064001")  # rotated away
        assert refresh_with(mock, second, cookie=True).status_code == 200


def test_rotation_in_body_mode():
    with MockDescope({"alg": "ES256", "refresh_rotation": True}) as mock:
        body = refresh_with(mock, mock.mint("refresh")).json()
        assert claims_of(body["refreshJwt"])["drn"] == "DSR" and claims_of(body["sessionJwt"])["drn"] == "DS"


def test_try_refresh(custom):
    assert refresh_with(custom, None, "/v1/auth/try-refresh").json() == {}
    assert refresh_with(custom, "garbage", "/v1/auth/try-refresh").json() == {}
    answer = refresh_with(custom, custom.mint("refresh"), "/v1/auth/try-refresh")
    assert answer.status_code == 200 and "sessionJwt" in answer.json()
    assert (custom.counters()["refresh_fail"], custom.counters()["refresh_ok"]) == (2, 1)


def test_logout_and_logoutall_revoke(custom):
    first = custom.mint("refresh", sub="U2First")
    other = custom.mint("refresh", sub="U2First", iat=custom.now() - 10)
    assert refresh_with(custom, first, "/v1/auth/logout").json() == {}
    assert_descope_error(refresh_with(custom, first), 401, "E064001")
    assert refresh_with(custom, other).status_code == 200  # only that refresh token
    assert refresh_with(custom, other, "/v1/auth/logoutall").status_code == 200
    assert_descope_error(refresh_with(custom, custom.mint("refresh", sub="U2First", iat=custom.now() - 5)),
                         401, "E064001")
    assert_descope_error(refresh_with(custom, None, "/v1/auth/logout"), 400, "E011002")
    assert custom.counters()["logout"] == 3
    custom.reset()
    assert refresh_with(custom, other).status_code == 200  # reset clears revocations


def test_tenant_select(custom):
    refresh = custom.mint("refresh", sub="U2First")
    response = post(custom, "/v1/auth/tenant/select", headers={"Authorization": f"Bearer {custom.project_id}:"
                                                                                f"{refresh}"}, json={"tenant": T2})
    assert response.status_code == 200
    session, new_refresh = claims_of(response.json()["sessionJwt"]), response.json()["refreshJwt"]
    assert session["dct"] == T2 and claims_of(new_refresh)["dct"] == T2
    assert claims_of(refresh_with(custom, new_refresh).json()["sessionJwt"])["dct"] == T2
    not_member = post(custom, "/v1/auth/tenant/select", cookies={"DSR": refresh}, json={"tenant": "T9"})
    assert_descope_error(not_member, 400, "E011004")
    assert_descope_error(post(custom, "/v1/auth/tenant/select", cookies={"DSR": refresh}, json={}), 400, "E011002")


# ---------------------------------------------------------------------------------------------
# token shapes


def test_default_session_token_shape(mock):
    claims = verify(mock, mock.mint())
    assert claims["exp"] - claims["iat"] == 600 and abs(claims["iat"] - time.time()) < 5
    assert {key: claims[key] for key in ("amr", "drn", "iss", "sub", "roles", "permissions")} == {
        "amr": ["email"], "drn": "DS", "iss": DEFAULT_PROJECT_ID, "sub": DEFAULT_USER_ID, "roles": ["viewer"],
        "permissions": ["read"]}
    assert claims["tenants"] == {DEFAULT_TENANT_ID: {"roles": ["admin"], "permissions": ["read", "write"]}}
    assert "rexp" in claims and "aud" not in claims and "nbf" not in claims
    assert list(claims) == sorted(claims)


@pytest.mark.parametrize("mode, expected", [
    ("bare", "{pid}"), ("url", "{base}/{pid}"), ("v1apps", "{base}/v1/apps/{pid}"),
])
def test_issuer_forms_per_mint_and_config(mock, mode, expected):
    want = expected.format(pid=mock.project_id, base=mock.base_url)
    assert claims_of(mock.mint(issuer_mode=mode))["iss"] == want
    with MockDescope({"alg": "ES256", "issuer_mode": mode, "issuer_base": "https://api.descope.com"}) as other:
        form = expected.format(pid=other.project_id, base="https://api.descope.com")
        assert claims_of(other.mint())["iss"] == claims_of(other.exchange()["sessionJwt"])["iss"] == form
        document = requests.get(f"{other.base_url}/{other.project_id}/.well-known/openid-configuration",
                                timeout=5).json()
        assert document["issuer"] == form


def test_custom_issuer(mock):
    with MockDescope({"alg": "ES256", "issuer_mode": "custom", "issuer_custom": "https://auth.example.com"}) as other:
        assert claims_of(other.mint())["iss"] == "https://auth.example.com"
    assert claims_of(mock.mint(issuer="literal"))["iss"] == "literal"


@pytest.mark.parametrize("schema", ["default", "tenantOnly", "none"])
def test_auth_schemas(schema):
    config = {"alg": "ES256", "template": {"auth_schema": schema},
              "users": [{"id": "U1", "roles": ["viewer"], "tenants": {T1: ["admin"]}}]}
    with MockDescope(config) as mock:
        claims = claims_of(mock.mint())
        session_via_refresh = claims_of(refresh_with(mock, mock.mint("refresh")).json()["sessionJwt"])
    for shaped in (claims, session_via_refresh):
        if schema == "default":
            assert shaped["roles"] == ["viewer"] and T1 in shaped["tenants"] and "dct" not in shaped
        elif schema == "tenantOnly":
            assert (shaped["roles"], shaped["permissions"], shaped["dct"]) == (["admin"], ["read", "write"], T1)
            assert "tenants" not in shaped
        else:
            assert not {"roles", "permissions", "tenants"} & set(shaped)


def test_template_static_claims_audience_and_lifetimes():
    config = {"alg": "ES256", "ttl": {"session": 60, "refresh": 120, "access_key": 30},
              "template": {"claims": {"org": "acme"}, "aud": ["api"], "add_jti_claim": True}}
    with MockDescope(config) as mock:
        session, refresh = claims_of(mock.mint()), claims_of(mock.mint("refresh"))
        access = claims_of(mock.exchange()["sessionJwt"])
    assert (session["exp"] - session["iat"], refresh["exp"] - refresh["iat"], access["exp"] - access["iat"]) == \
        (60, 120, 30)
    assert (session["org"], session["aud"], len(session["jti"])) == ("acme", ["api"], 32)


def test_mint_control_over_http(mock):
    def mint(**body):
        return requests.post(mock.base_url + "/__mock/token", json=body, timeout=5)

    answer = mint(kind="session", sub="U2Someone", roles=["admin"], tenants={"T1": ["viewer"]},
                  claims={"extra": True}, remove=["amr", "rexp"], ttl=30, iat=1_700_000_000, nsec={"n": 1},
                  selected_tenant="T1").json()
    claims = answer["claims"]
    assert answer["kid"] == mock.keys()["active_kid"] and answer["header"]["alg"] == "RS256"
    assert (claims["sub"], claims["roles"], claims["permissions"], claims["extra"]) == \
        ("U2Someone", ["admin"], ["read", "write"], True)
    assert (claims["iat"], claims["exp"], claims["nsec"], claims["dct"]) == (1_700_000_000, 1_700_000_030, {"n": 1},
                                                                             "T1")
    assert "amr" not in claims and "rexp" not in claims
    assert claims_of(mint(kind="refresh").json()["jwt"])["drn"] == "DSR"
    access = claims_of(mint(kind="access_key").json()["jwt"])
    assert access["sub"] == DEFAULT_ACCESS_KEY_ID and access["client"] == "mock-service"
    assert mint(permissions=["only"]).json()["claims"]["permissions"] == ["only"]


def test_mint_signers_and_headers(mock):
    active = mock.keys()["active_kid"]
    unpublished = mock.mint(sign_with="unpublished")
    assert decode_unverified(unpublished).header["kid"] == mock.keys()["unpublished_kid"] != active
    with pytest.raises(StopIteration):
        verify(mock, unpublished)  # its kid is not in the JWKS
    none = mock.mint(sign_with="none")
    assert decode_unverified(none).header["alg"] == "none" and none.endswith(".")
    relabelled = mock.mint(header={"alg": "HS256"})
    assert decode_unverified(relabelled).header["alg"] == "HS256"
    with pytest.raises(jwt.InvalidTokenError):
        verify(mock, relabelled, "RS256")
    assert "kid" not in decode_unverified(mock.mint(header={"kid": None})).header
    old = active
    mock.rotate("rotate")
    by_kid = mock.mint(sign_with=old)
    assert decode_unverified(by_kid).header["kid"] == old and verify(mock, by_kid)["sub"] == DEFAULT_USER_ID
    raw = mock.mint(raw={"signature": "AAAA"})
    assert raw.endswith(".AAAA")


@pytest.mark.parametrize("body, message", [
    ({"kind": "id_token"}, "kind"), ({"bogus": 1}, "unknown field"), ({"project_id": "P2Nope"}, "unknown project"),
    ({"sign_with": "missing-kid"}, "no key with kid"), ({"ttl": "10"}, "ttl"), ({"roles": "admin"}, "roles"),
    ({"issuer_mode": "odd"}, "issuer_mode"), ({"claims": []}, "claims"), ({"tenants": 5}, "tenants"),
])
def test_mint_rejects_bad_requests(mock, body, message):
    response = requests.post(mock.base_url + "/__mock/token", json=body, timeout=5)
    assert message in assert_descope_error(response, 400, "E011004")["errorMessage"]


def test_control_endpoints_reject_malformed_json(mock):
    for path in ("/__mock/token", "/__mock/rotate", "/__mock/fault", "/__mock/clock", "/__mock/reset"):
        assert_descope_error(requests.post(mock.base_url + path, data=b"{nope", timeout=5), 400, "E011001")
    assert_descope_error(requests.post(mock.base_url + "/__mock/rotate", json=[1], timeout=5), 400, "E011004")


# ---------------------------------------------------------------------------------------------
# rotation


def published_kids(mock: MockDescope) -> list[str]:
    return [key["kid"] for key in requests.get(mock.jwks_url, timeout=5).json()["keys"]]


def test_rotate_keeps_old_keys_published(mock):
    old_token = mock.mint()
    old = mock.keys()["active_kid"]
    summary = requests.post(mock.base_url + "/__mock/rotate", json={"mode": "rotate"}, timeout=5).json()
    new = summary["active_kid"]
    assert new != old and published_kids(mock) == [new, old]
    assert decode_unverified(mock.mint()).header["kid"] == new
    assert verify(mock, old_token)["sub"] == DEFAULT_USER_ID


def test_prepublish_then_activate(mock):
    old = mock.keys()["active_kid"]
    summary = mock.rotate("prepublish")
    upcoming = summary["prepublished_kid"]
    assert summary["active_kid"] == old and published_kids(mock) == [old, upcoming]
    assert decode_unverified(mock.mint()).header["kid"] == old
    assert mock.rotate("activate")["active_kid"] == upcoming
    assert decode_unverified(mock.mint()).header["kid"] == upcoming and published_kids(mock) == [upcoming, old]
    response = requests.post(mock.base_url + "/__mock/rotate", json={"mode": "activate"}, timeout=5)
    assert "prepublish" in assert_descope_error(response, 400, "E011004")["errorMessage"]


def test_rotate_and_revoke_and_unpublish(mock):
    old_token = mock.mint()
    mock.rotate("rotate")
    summary = mock.rotate("rotate_and_revoke")
    assert published_kids(mock) == [summary["active_kid"]]
    with pytest.raises(StopIteration):
        verify(mock, old_token)
    mock.rotate("rotate")
    previous = published_kids(mock)[1]
    assert mock.rotate("unpublish", previous)["published_kids"] == [mock.keys()["active_kid"]]
    response = requests.post(mock.base_url + "/__mock/rotate", json={"mode": "unpublish", "kid": "nope"}, timeout=5)
    assert_descope_error(response, 400, "E011004")
    assert_descope_error(requests.post(mock.base_url + "/__mock/rotate", json={"mode": "spin"}, timeout=5),
                         400, "E011004")


def test_max_published_and_reset_restores_keys():
    with MockDescope({"alg": "ES256", "max_published": 2}) as mock:
        initial = mock.keys()["active_kid"]
        for _ in range(4):
            mock.rotate()
        assert len(published_kids(mock)) == 3 and initial not in published_kids(mock)
        states = {key["kid"]: key["state"] for key in mock.keys()["keys"]}
        assert states[initial] == "retired" and "d" in mock.keys()["keys"][0]["private_jwk"]
        requests.post(mock.base_url + "/__mock/reset", json={"keys": True}, timeout=5)
        assert published_kids(mock) == [initial]


def test_keys_endpoint_lists_public_and_private_jwks(mock):
    document = requests.get(mock.base_url + "/__mock/keys", timeout=5).json()
    active = next(key for key in document["keys"] if key["state"] == "active")
    assert active["kid"] == document["active_kid"] and "d" in active["private_jwk"] and "d" not in active["public_jwk"]
    signing = jwt.PyJWK(active["private_jwk"]).key
    own = jwt.encode({"sub": "self-signed"}, signing, algorithm="RS256", headers={"kid": active["kid"]})
    assert verify(mock, own)["sub"] == "self-signed"


# ---------------------------------------------------------------------------------------------
# faults


def get_jwks(mock: MockDescope, **kwargs) -> requests.Response:
    return requests.get(mock.jwks_url, timeout=kwargs.pop("timeout", 5), **kwargs)


@pytest.mark.parametrize("mode, status", [("status:503", 503), ("down", 503), ("status:500", 500),
                                          ("status:404", 404)])
def test_status_faults(mock, mode, status):
    mock.fault(mode)
    response = get_jwks(mock)
    assert response.status_code == status and "errorCode" in response.json()


def test_status_valid_serves_keys_with_the_status(mock):
    mock.fault("status_valid:500")
    response = get_jwks(mock)
    assert response.status_code == 500 and response.json()["keys"][0]["kid"] == mock.keys()["active_kid"]


def test_slow_fault_delays_then_answers(mock):
    mock.fault("slow", delay_ms=400, count=1)
    started = time.monotonic()
    assert get_jwks(mock).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert get_jwks(mock).status_code == 200 and time.monotonic() - started < 0.4  # count=1: used up


def test_hang_blocks_until_cleared(mock):
    mock.fault("hang")
    with pytest.raises(requests.ReadTimeout):
        get_jwks(mock, timeout=0.3)
    mock.fault("hang", count=1)
    results = []
    waiter = threading.Thread(target=lambda: results.append(get_jwks(mock, timeout=10)))
    waiter.start()
    deadline = time.monotonic() + 5
    while mock.state.faults.describe()["faults"] and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # the request took the fault: it is now hanging
    assert not results
    mock.clear_faults()
    waiter.join(5)
    assert results and results[0].status_code == 200


def test_reset_fault_closes_the_connection(mock):
    mock.fault("reset", count=1)
    with pytest.raises(requests.ConnectionError):
        get_jwks(mock)
    assert get_jwks(mock).status_code == 200
    assert mock.stats()["requests"][-2]["status"] is None


@pytest.mark.parametrize("mode", ["invalid_json", "garbage", "truncated_json"])
def test_broken_json_faults(mock, mode):
    mock.fault(mode)
    response = get_jwks(mock)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()


def test_html_200_and_wrong_content_type(mock):
    mock.fault("html_200")
    response = get_jwks(mock)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    mock.fault("wrong_content_type")
    response = get_jwks(mock)
    assert response.headers["Content-Type"].startswith("text/plain") and response.json()["keys"]


@pytest.mark.parametrize("mode, check", [
    ("empty_keys", lambda doc, kid: doc == {"keys": []}),
    ("keys_not_list", lambda doc, kid: doc == {"keys": {}}),
    ("array_body", lambda doc, kid: isinstance(doc, list) and doc[0]["kid"] == kid),
    ("unknown_kty", lambda doc, kid: [k["kty"] for k in doc["keys"]] == ["RSA", "OKP"]
     and doc["keys"][1]["crv"] == "X25519"),
    ("private_member", lambda doc, kid: {"d", "p", "q"} <= set(doc["keys"][0])),
    ("dup_kid", lambda doc, kid: [k["kid"] for k in doc["keys"]] == [kid, kid]
     and doc["keys"][0]["n"] != doc["keys"][1]["n"]),
    ("oct_key", lambda doc, kid: doc["keys"][1]["kty"] == "oct" and doc["keys"][1]["kid"] == kid
     and doc["keys"][1]["k"]),
    ("use_enc", lambda doc, kid: doc["keys"][0]["use"] == "enc"),
    ("no_alg", lambda doc, kid: "alg" not in doc["keys"][0]),
    ("alg_mismatch", lambda doc, kid: doc["keys"][0]["alg"] == "RS512"),
])
def test_jwks_shape_faults(mock, mode, check):
    mock.fault(mode)
    response = get_jwks(mock)
    assert response.status_code == 200
    assert check(response.json(), mock.keys()["active_kid"])


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_rsa_1024_publishes_a_small_key_tokens_can_use(mock):
    answer = requests.post(mock.base_url + "/__mock/fault", json={"mode": "rsa_1024"}, timeout=5).json()
    small = answer["kid"]
    keys = get_jwks(mock).json()["keys"]
    assert [key["kid"] for key in keys][-1] == small
    token = mock.mint(sign_with=small)
    public = jwt.PyJWK(keys[-1]).key
    assert public.key_size == 1024 and jwt.decode(token, public, algorithms=["RS256"])["sub"] == DEFAULT_USER_ID


def test_huge_body_redirect_and_gzip(mock):
    mock.fault("huge_body", count=1)
    response = get_jwks(mock)
    assert len(response.content) > 5 * 1024 * 1024 and response.json()["keys"]
    mock.fault("redirect", count=1)
    response = get_jwks(mock)
    assert response.history[0].status_code == 302 and response.json()["keys"]
    mock.fault("gzip", count=1)
    response = get_jwks(mock)
    assert response.headers["Content-Encoding"] == "gzip" and response.json()["keys"]


def test_fault_count_target_and_clear_over_http(mock):
    fault = requests.post(mock.base_url + "/__mock/fault", json={"target": "jwks", "mode": "status:503", "count": 2},
                          timeout=5).json()["fault"]
    assert fault == {"target": "jwks", "mode": "status:503", "count": 2, "delay_ms": 0, "size_bytes": None}
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 200  # other targets unaffected
    assert [get_jwks(mock).status_code for _ in range(3)] == [503, 503, 200]
    requests.post(mock.base_url + "/__mock/fault", json={"target": "*", "mode": "status:500"}, timeout=5)
    assert get_jwks(mock).status_code == 500
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 500
    listed = requests.get(mock.base_url + "/__mock/fault", timeout=5).json()["faults"]
    assert [item["target"] for item in listed] == ["*"]
    cleared = requests.delete(mock.base_url + "/__mock/fault", timeout=5).json()["cleared"]
    assert len(cleared) == 1 and get_jwks(mock).status_code == 200


def test_faults_on_exchange_and_refresh(mock):
    mock.fault("status:503", target="exchange")
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 503
    assert mock.counters()["exchange_fail"] == 1
    mock.fault("invalid_json", target="refresh")
    response = refresh_with(mock, mock.mint("refresh"))
    with pytest.raises(ValueError):
        response.json()
    mock.fault("slow", target="exchange", delay_ms=200, count=1)
    started = time.monotonic()
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 200
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("body, message", [
    ({"mode": "empty_keys", "target": "exchange"}, "only applies to the jwks"),
    ({"mode": "explode"}, "unknown mode"), ({"mode": "slow", "target": "nowhere"}, "unknown target"),
])
def test_bad_fault_requests(mock, body, message):
    response = requests.post(mock.base_url + "/__mock/fault", json=body, timeout=5)
    assert message in assert_descope_error(response, 400, "E011004")["errorMessage"]


def test_rate_limit(mock):
    requests.post(mock.base_url + "/__mock/rate_limit", json={"target": "exchange", "count": 2, "retry_after": 7},
                  timeout=5)
    limited = exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}")
    body = assert_descope_error(limited, 429, "E130429")
    assert limited.headers["Retry-After"] == "7" and body["errorMessage"] == "API rate limit exceeded."
    assert body["errorDescription"] == "https://docs.descope.com/rate-limit"
    assert get_jwks(mock).status_code == 200  # other target
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 429
    assert exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").status_code == 200
    mock.rate_limit(1, target="jwks")
    assert get_jwks(mock).status_code == 429 and get_jwks(mock).status_code == 200


# ---------------------------------------------------------------------------------------------
# clock, counters, reset


def test_clock_offset_moves_iat_and_exp(mock):
    before = claims_of(mock.mint())
    answer = requests.post(mock.base_url + "/__mock/clock", json={"offset": 3600}, timeout=5).json()
    assert answer["offset"] == 3600
    shifted = claims_of(mock.mint())
    assert 3595 <= shifted["iat"] - before["iat"] <= 3605 and shifted["exp"] - shifted["iat"] == 600
    access = exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").json()
    assert access["expiration"] - before["iat"] >= 3600 + 600 - 5
    refresh = mock.mint("refresh", ttl=600)
    mock.set_clock(3600 + 601)  # the refresh token is now expired for the mock too
    assert "expired" in assert_descope_error(refresh_with(mock, refresh), 401, "E011003")["errorMessage"]
    assert requests.get(mock.base_url + "/__mock/clock", timeout=5).json()["offset"] == 4201
    assert_descope_error(requests.post(mock.base_url + "/__mock/clock", json={"offset": "soon"}, timeout=5),
                         400, "E011004")


def test_counters_and_request_log_never_hold_tokens(mock):
    get_jwks(mock)
    requests.get(f"{mock.base_url}/v1/keys/{mock.project_id}", timeout=5)
    requests.get(f"{mock.base_url}/{mock.project_id}/.well-known/jwks.json",
                 headers={"User-Agent": "KrakenD Version 2.13.8"}, timeout=5)
    session = exchange(mock, f"{mock.project_id}:{DEFAULT_ACCESS_KEY}").json()["sessionJwt"]
    exchange(mock, f"{mock.project_id}:bad")
    refresh = mock.mint("refresh")
    refresh_with(mock, refresh)
    refresh_with(mock, session)
    post(mock, "/v1/auth/logout", cookies={"DSR": refresh})
    requests.get(f"{mock.base_url}/v2/keys/{session}", timeout=5)  # a token in a path is redacted too
    stats = requests.get(mock.base_url + "/__mock/stats", timeout=5).json()
    counters = stats["counters"]
    assert {name: counters[name] for name in ("jwks_v2", "jwks_v1", "jwks_wellknown", "exchange_ok", "exchange_fail",
                                              "refresh_ok", "refresh_fail", "logout")} == {
        "jwks_v2": 2, "jwks_v1": 1, "jwks_wellknown": 1, "exchange_ok": 1, "exchange_fail": 1, "refresh_ok": 1,
        "refresh_fail": 1, "logout": 1}
    assert counters["control"] == 0  # the stats request itself is counted after it answers
    text = json.dumps(stats)
    for token in (session, refresh, DEFAULT_ACCESS_KEY):
        assert token not in text
    well_known = next(item for item in stats["requests"] if item["route"] == "jwks_wellknown")
    assert well_known["user_agent"] == "KrakenD Version 2.13.8" and well_known["status"] == 200
    assert {"time", "method", "path", "status", "headers"} <= set(well_known)
    assert requests.get(mock.base_url + "/__mock/stats?limit=2", timeout=5).json()["requests"][-1]["route"] == "control"
    assert len(mock.stats(limit=2)["requests"]) == 2


def test_reset_clears_counters_faults_clock(mock):
    get_jwks(mock)
    mock.fault("status:503")
    mock.rate_limit(5)
    mock.set_clock(100)
    requests.post(mock.base_url + "/__mock/reset", json={}, timeout=5)
    assert get_jwks(mock).status_code == 200
    assert mock.counters()["jwks_v2"] == 1 and mock.counters()["control"] == 0
    assert mock.state.clock_info()["offset"] == 0


def test_request_log_size_is_bounded():
    with MockDescope({"alg": "ES256", "request_log_size": 3}) as mock:
        for _ in range(5):
            get_jwks(mock)
        stats = mock.stats()
        assert len(stats["requests"]) == 3 and stats["counters"]["jwks_v2"] == 5


# ---------------------------------------------------------------------------------------------
# robustness


def raw_exchange(mock: MockDescope, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", mock.port), timeout=5) as connection:
        connection.sendall(payload)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_bad_http_never_crashes_the_server(mock):
    answer = raw_exchange(mock, b"NONSENSE\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0] and b'"errorCode"' in answer and b"Traceback" not in answer
    answer = raw_exchange(mock, b"POST /v1/auth/accesskey/exchange HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
                                b"Connection: close\r\n\r\n")
    assert b" 413 " in answer.split(b"\r\n")[0] and b"E011001" in answer
    answer = raw_exchange(mock, b"POST /v1/auth/accesskey/exchange HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                                b"Connection: close\r\n\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0]
    answer = raw_exchange(mock, b"POST /__mock/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert b" 200 " in answer.split(b"\r\n")[0] and b'"jwt"' in answer
    answer = raw_exchange(mock, b"POST /__mock/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\nzz\r\n")
    assert b" 400 " in answer.split(b"\r\n")[0]
    binary = post(mock, "/v1/auth/accesskey/exchange", data=bytes(range(256)),
                  headers={"Authorization": f"Bearer {mock.project_id}:{DEFAULT_ACCESS_KEY}"})
    assert_descope_error(binary, 400, "E011001")
    assert get_jwks(mock).status_code == 200


def test_keep_alive_connection_serves_several_requests(mock):
    with requests.Session() as session:
        statuses = [session.get(mock.jwks_url, timeout=5).status_code for _ in range(3)]
        statuses.append(session.post(mock.base_url + "/v1/auth/accesskey/exchange", data=b"{bad",
                                     headers={"Authorization": "Bearer x:y"}, timeout=5).status_code)
        statuses.append(session.get(mock.jwks_url, timeout=5).status_code)
    assert statuses == [200, 200, 200, 400, 200]


def test_stop_releases_a_hanging_request():
    mock = MockDescope({"alg": "ES256"}).start()
    mock.fault("hang")
    errors_seen = []

    def call():
        try:
            get_jwks(mock, timeout=10)
        except requests.RequestException as e:
            errors_seen.append(e)

    waiter = threading.Thread(target=call)
    waiter.start()
    deadline = time.monotonic() + 5
    while not mock.state.faults.describe()["faults"] and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    started = time.monotonic()
    mock.stop()
    waiter.join(5)
    assert not waiter.is_alive() and time.monotonic() - started < 3


def test_extra_jwks_publish_foreign_keys():
    foreign = SigningKey.generate("ES384", kid="sdk-fixture").public_jwk()
    with MockDescope({"alg": "ES256", "extra_jwks": [foreign]}) as mock:
        assert get_jwks(mock).json()["keys"][-1] == foreign


# ---------------------------------------------------------------------------------------------
# the `token` and `mock-descope` commands, as subprocesses


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DESCOPE_")}
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "krakend_mitm.descope.commands", *args], capture_output=True,
                          text=True, env=env or cli_env(), input=stdin, timeout=30)


def test_cli_mints_a_session_token(mock):
    result = run_cli("token", "--base-url", mock.base_url, "--roles", "admin,viewer", "--tenant", "T1:admin,ops",
                     "--tenant", "T2", "--claim", "plan=gold", "--claim", 'limits={"rps": 5}', "--claim", "n=3",
                     "--lifetime", "120", "--issuer-form", "url")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and result.stderr == ""
    claims = verify(mock, token)
    assert (claims["roles"], claims["permissions"]) == (["admin", "viewer"], ["read", "write"])
    assert claims["tenants"] == {"T1": {"roles": ["admin", "ops"], "permissions": ["read", "write"]},
                                 "T2": {"roles": [], "permissions": []}}
    assert (claims["plan"], claims["limits"], claims["n"]) == ("gold", {"rps": 5}, 3)
    assert claims["exp"] - claims["iat"] == 120 and claims["iss"] == f"{mock.base_url}/{mock.project_id}"


def test_cli_access_key_refresh_and_env_defaults(mock):
    env = cli_env(DESCOPE_BASE_URI=mock.base_url, DESCOPE_PROJECT_ID=mock.project_id)
    access = run_cli("token", "--access-key", "--permissions", "x,y", env=env)
    assert access.returncode == 0, access.stderr
    claims = verify(mock, access.stdout.strip())
    assert claims["sub"] == DEFAULT_ACCESS_KEY_ID and claims["permissions"] == ["x", "y"]
    refresh = run_cli("token", "--refresh", "--issuer-form", "v1apps", env=env)
    claims = verify(mock, refresh.stdout.strip())
    assert claims["drn"] == "DSR" and claims["iss"].endswith(f"/v1/apps/{mock.project_id}")
    wrong_project = run_cli("token", env=cli_env(DESCOPE_BASE_URI=mock.base_url, DESCOPE_PROJECT_ID="P2Else"))
    assert wrong_project.returncode == 1 and "unknown project 'P2Else'" in wrong_project.stderr


def test_cli_exchange_against_the_mock(custom):
    result = run_cli("token", "--exchange", "--base-url", custom.base_url, "--project", custom.project_id, "--key",
                     "main-secret", "--claim", "env=ci", "--selected-tenant", T1)
    assert result.returncode == 0, result.stderr
    claims = verify(custom, result.stdout.strip())
    assert (claims["sub"], claims["nsec"], claims["dct"]) == ("K2Main", {"env": "ci"}, T1)
    bad = run_cli("token", "--exchange", "--base-url", custom.base_url, "--project", custom.project_id, "--key", "x")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        f"token: {custom.base_url}/v1/auth/accesskey/exchange answered HTTP 401 E011003: Invalid access key"]


def test_cli_decode_works_offline_and_from_stdin(mock):
    token = mock.mint(roles=["admin"])
    result = run_cli("token", "--decode", token, env=cli_env(DESCOPE_BASE_URI="http://127.0.0.1:9"))
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert set(document) == {"header", "claims"} and document["claims"]["roles"] == ["admin"]
    assert token.split(".")[2] not in result.stdout and result.stdout.startswith("{\n  ")
    piped = run_cli("token", "--decode", "-", stdin=f"Bearer {token}\n")
    assert json.loads(piped.stdout) == document
    broken = run_cli("token", "--decode", "abc.def")
    assert broken.returncode == 1 and broken.stderr.strip() == \
        "token: cannot decode: a JWT has 3 dot-separated segments, this has 2"


def test_cli_errors_are_one_line_without_traceback(mock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = run_cli("token", "--base-url", f"http://127.0.0.1:{closed_port}")
    assert unreachable.returncode == 1 and unreachable.stdout == ""
    assert unreachable.stderr.strip() == (f"token: mock Descope not reachable at http://127.0.0.1:{closed_port} "
                                          "(connection refused); start one with `krakend-mitm mock-descope`")
    default_url = run_cli("token", env=cli_env(DESCOPE_BASE_URI=f"http://127.0.0.1:{closed_port}"))
    assert f"127.0.0.1:{closed_port}" in default_url.stderr
    usage = run_cli("token", "--exchange", "--roles", "a", "--base-url", mock.base_url)
    assert usage.returncode == 2 and "--roles do(es) not apply to --exchange" in usage.stderr
    for result in (unreachable, default_url, usage):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_in_process_usage_errors(mock, capsys):
    assert commands.main(["token", "--base-url", mock.base_url, "--claim", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert commands.main(["token", "--base-url", mock.base_url, "--tenant", ":a"]) == 2
    assert commands.main(["token", "--base-url", mock.base_url + "/v1/keys"]) == 1
    assert "has no /__mock/token" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        commands.main(["mock-descope", "--port", "70000"])
    assert usage.value.code == 2 and "not a port number" in capsys.readouterr().err
    assert commands.main(["mock-descope", "--port", "0", "--project", "P2:bad"]) == 2
    assert "project_id: must not contain" in capsys.readouterr().err
    with pytest.raises(MockConfigError):
        MockDescope(project_id="has space")


def start_cli_server(*args: str) -> tuple[subprocess.Popen, list[str]]:
    process = subprocess.Popen([sys.executable, "-m", "krakend_mitm.descope.commands", "mock-descope", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    lines = []
    for line in process.stdout:  # the ready line is the readiness signal
        lines.append(line.rstrip("\n"))
        if "ready on" in line:
            break
    return process, lines


def test_cli_mock_descope_serves_until_sigterm():
    process, lines = start_cli_server("--port", "0", "--project", "P2CliProject000000000000000")
    try:
        base = lines[-1].split("ready on ")[1].split()[0]
        banner = "\n".join(lines)
        assert "P2CliProject000000000000000" in banner and f"{base}/v2/keys/P2CliProject000000000000000" in banner
        assert DEFAULT_ACCESS_KEY in banner
        assert requests.get(f"{base}/v2/keys/P2CliProject000000000000000", timeout=5).status_code == 200
        token = run_cli("token", "--base-url", base, "--project", "P2CliProject000000000000000").stdout.strip()
        assert claims_of(token)["iss"] == "P2CliProject000000000000000"
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0 and "stopped" in out and "Traceback" not in err


def test_cli_mock_descope_busy_port_and_bad_config(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("mock-descope", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"mock-descope: cannot listen on 127.0.0.1:{port}: the port is busy (another "
                                     "process listens on it); pick another with --port")
    (tmp_path / "mock.yaml").write_text("listen: 0.0.0.0:4000\n")
    bad = run_cli("mock-descope", "--config", str(tmp_path / "mock.yaml"))
    assert bad.returncode == 2 and "loopback only" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------
# Descope SDK test tokens


def sdk_tokens() -> list[tuple[str, str, dict]]:
    if not SDK_TOKENS.is_file():
        return []
    data = json.loads(SDK_TOKENS.read_text())
    return [(f"{sdk}/{name}", token, data[sdk])
            for sdk in ("python_sdk", "go_sdk") for name, token in data[sdk]["tokens"].items()]


def require_sdk_tokens() -> None:
    if not SDK_TOKENS.is_file():
        pytest.skip(f"Descope SDK test tokens not available: {SDK_TOKENS} (expected ../shared beside the project root)")


@pytest.mark.parametrize("name, token, sdk", sdk_tokens() or [pytest.param(None, None, None, id="absent")])
def test_sdk_tokens_decode(name, token, sdk, capsys):
    require_sdk_tokens()
    assert commands.main(["token", "--decode", token]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["header"]["alg"] in ("ES384", "RS384") and "kid" in document["header"]
    assert isinstance(document["claims"].get("exp", document["claims"].get("nbf")), int)
    if "RS384" in name:  # 2022-era go-sdk fixtures: legacy claims only, no drn
        assert document["claims"]["cookieName"] == "DS" and "drn" not in document["claims"]
    else:
        assert document["claims"]["drn"] in ("DS", "DSR")
    if name == "python_sdk/VALID_SESSION_TOKEN":
        assert document["claims"]["exp"] == 2493061415 and document["claims"]["iss"] == document["header"]["kid"]
    if name == "python_sdk/EXPIRED_SESSION_TOKEN":
        assert document["claims"]["exp"] == 1659644298
    if name == "go_sdk/jwtTokenValid":
        assert (document["claims"]["aud"], document["claims"]["exp"]) == (["test"], 3659561430)


def test_sdk_token_decodes_through_the_subprocess_and_validates_via_the_mock():
    require_sdk_tokens()
    data = json.loads(SDK_TOKENS.read_text())["python_sdk"]
    token = data["tokens"]["VALID_SESSION_TOKEN"]
    result = run_cli("token", "--decode", token)
    assert result.returncode == 0 and json.loads(result.stdout)["claims"]["drn"] == "DS"
    with MockDescope({"alg": "ES256", "extra_jwks": [data["public_key"]]}) as mock:
        assert verify(mock, token)["sub"] == json.loads(result.stdout)["claims"]["sub"]
