"""The mock Descope as the gateway sees it: tokens, rotation, outage, slow IdP, SDK test vectors.
Uses the project's own pytest plugin fixtures, as a user's test would."""

import concurrent.futures
import json
import time
from pathlib import Path

import pytest
import requests

SDK_TOKENS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "descope" / "sdk_test_tokens.json"


def protected_config(project_id, alg="RS256", **validator_extra):
    validator = {"alg": alg, "jwk_url": f"https://api.descope.com/v2/keys/{project_id}", "cache": True, **validator_extra}
    return {"version": 3, "port": 8080, "endpoints": [
        {"endpoint": "/p", "backend": [{"url_pattern": "/__health", "host": ["http://localhost:8080"]}],
         "extra_config": {"auth/validator": validator}}]}


def call(gateway, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{gateway.url}/p", headers=headers, timeout=10).status_code


def test_access_key_exchange_then_gateway(krakend_gateway, mock_descope):
    gateway = krakend_gateway(protected_config(mock_descope.project_id), descope=mock_descope)
    exchanged = requests.post(f"{mock_descope.base_url}/v1/auth/accesskey/exchange",
                              headers={"Authorization": f"Bearer {mock_descope.project_id}:{mock_descope.default_access_key}"},
                              json={"loginOptions": {}}).json()
    assert call(gateway) == 401
    assert call(gateway, exchanged["sessionJwt"]) == 200
    assert mock_descope.stats()["counters"]["jwks_v2"] == 1


def test_rotation_is_picked_up_at_once(krakend_gateway, mock_descope):
    gateway = krakend_gateway(protected_config(mock_descope.project_id), descope=mock_descope)
    assert call(gateway, mock_descope.mint("session")) == 200
    mock_descope.rotate("rotate")
    assert call(gateway, mock_descope.mint("session")) == 200  # new kid: one refetch, then 200


def test_outage_keeps_cached_keys_and_lets_nothing_new_in(krakend_gateway, mock_descope):
    gateway = krakend_gateway(protected_config(mock_descope.project_id), descope=mock_descope)
    old_key_token = mock_descope.mint("session")
    assert call(gateway, old_key_token) == 200
    mock_descope.fault("status:503", target="jwks")
    mock_descope.rotate("rotate")
    assert call(gateway, old_key_token) == 200  # the cached key keeps validating
    assert call(gateway, mock_descope.mint("session")) == 401  # the new key cannot be fetched: fail closed
    mock_descope.clear_faults()


def test_slow_idp_does_not_delay_cached_keys(krakend_gateway, mock_descope):
    gateway = krakend_gateway(protected_config(mock_descope.project_id), descope=mock_descope)
    cached = mock_descope.mint("session")
    assert call(gateway, cached) == 200
    mock_descope.fault("slow", target="jwks", delay_ms=3000)
    unknown = mock_descope.mint("session", header={"kid": "not-published-yet"})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(call, gateway, unknown)
        deadline = time.monotonic() + 5
        while mock_descope.stats()["counters"].get("jwks_v2", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the gateway's refetch reached the slow mock
        started = time.monotonic()
        assert call(gateway, cached) == 200
        assert time.monotonic() - started < 0.5
        assert slow.result() == 401
    mock_descope.clear_faults()


@pytest.mark.parametrize("name,status", [
    ("VALID_SESSION_TOKEN", 200),
    ("VALID_REFRESH_TOKEN", 401),  # drn DSR: the gateway's Descope rule
    ("EXPIRED_SESSION_TOKEN", 401),
])
def test_descope_python_sdk_tokens_through_the_gateway(krakend_gateway, name, status):
    if not SDK_TOKENS.exists():
        pytest.skip(f"{SDK_TOKENS} is absent: ../shared/vectors is not beside the project")
    from krakend_mitm.descope.mock import MockDescope

    data = json.loads(SDK_TOKENS.read_text())["python_sdk"]
    with MockDescope({"alg": "ES256", "extra_jwks": [data["public_key"]]}, port=0) as mock:
        gateway = krakend_gateway(protected_config(mock.project_id, alg="ES384"), descope=mock)
        assert call(gateway, data["tokens"][name]) == status
