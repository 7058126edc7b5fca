"""Spec §4: where the token comes from (table rows of §4 and checklist rows 1-6)."""

from __future__ import annotations

import pytest

from jwt_testkit import ec_key, future, local_validator, mint, public_jwk, run
from krakend_mitm.auth.jws import cookie_value, extract_token

KEY = ec_key("P-256", "extract")


def token(sub: str = "u1") -> str:
    return mint({"sub": sub, "exp": future()}, KEY, alg="ES256", kid="e1")


@pytest.fixture
def validator(tmp_path):
    def make(**cfg):
        return local_validator(tmp_path, [public_jwk(KEY, "e1")], alg="ES256", **cfg)
    return make


def sub_of(verdict):
    return verdict.claims["sub"] if verdict.claims else None


T = token("header")
C = token("cookie")


@pytest.mark.parametrize(
    "headers,status,sub",
    [
        ([], 401, None),  # no header, no cookie
        ([("Authorization", f"Bearer {T}")], 200, "header"),
        ([("Authorization", f"bearer {T}")], 200, "header"),
        ([("Authorization", f"BEARER {T}")], 200, "header"),
        ([("Authorization", f"BeArEr {T}")], 200, "header"),
        ([("authorization", f"Bearer {T}")], 200, "header"),  # header name is case-insensitive
        ([("Authorization", T)], 200, "header"),  # no scheme required
        ([("Authorization", f"Bearer  {T}")], 200, "header"),  # two spaces: whitespace is stripped
        ([("Authorization", "Bearer " + T[:20] + "\n " + T[20:])], 200, "header"),
        ([("Authorization", "Basic dXNlcjpwYXNz"), ("Cookie", f"access_token={C}")], 401, None),
        ([("Authorization", "Bearer"), ("Cookie", f"access_token={C}")], 401, None),
        ([("Authorization", "Bearer "), ("Cookie", f"access_token={C}")], 401, None),  # trimmed to "Bearer"
        ([("Authorization", ""), ("Cookie", f"access_token={C}")], 200, "cookie"),
        ([("Authorization", "  "), ("Cookie", f"access_token={C}")], 200, "cookie"),
        ([("Authorization", f"Bearer {T}"), ("Cookie", f"access_token={C}")], 200, "header"),
        ([("Cookie", f"access_token={C}")], 200, "cookie"),
        ([("Cookie", f'access_token="{C}"')], 200, "cookie"),  # quoted cookie value
        ([("Cookie", f"other=1; access_token={C}; x=2")], 200, "cookie"),
        ([("Cookie", "other=1"), ("Cookie", f"access_token={C}")], 200, "cookie"),
        ([("Cookie", f"DS={C}")], 401, None),  # default cookie_key is access_token
        ([("Authorization", f"Bearer {T}"), ("Authorization", "Bearer garbage")], 200, "header"),  # first wins
        ([("Authorization", "Bearer garbage"), ("Authorization", f"Bearer {T}")], 401, None),
        ([("X-Access-Token", T)], 401, None),
    ],
)
def test_extraction_table(validator, headers, status, sub):
    verdict = run(validator().authenticate(headers))
    assert verdict.status == status, verdict.message
    assert sub_of(verdict) == sub
    if not headers:
        assert verdict.message == "Unable to validate the token: Token not found"


def test_custom_cookie_key(validator):
    v = validator(cookie_key="DS")
    assert run(v.authenticate([("Cookie", f"DS={C}")])).status == 200
    assert run(v.authenticate([("Cookie", f"access_token={C}")])).status == 401


def test_custom_auth_header_name(validator):
    v = validator(auth_header_name="X-Custom-Auth")
    assert run(v.authenticate([("Authorization", f"Bearer {T}")])).status == 401  # checklist row 5
    assert run(v.authenticate([("x-custom-auth", f"Bearer {T}")])).status == 200


def test_query_string_is_never_used(validator):
    # the validator only sees headers: ?access_token= cannot reach it
    assert run(validator().authenticate([("Host", f"example.com?access_token={T}")])).status == 401


def test_token_source_is_reported(validator):
    verdict = run(validator().authenticate([("Cookie", f"access_token={C}")]))
    assert verdict.details["token_source"] == "cookie:access_token"


@pytest.mark.parametrize(
    "cookies,expected",
    [
        (["a=1; b=2"], "2"),
        (['b="quoted"'], "quoted"),
        (["b=has space"], None),  # invalid cookie bytes: skipped, like Go
        (["b=x\\y", "b=ok"], "ok"),
        (["b="], ""),
        ([" b = v "], None),  # the value keeps its leading space: invalid
    ],
)
def test_cookie_parsing(cookies, expected):
    assert cookie_value([("Cookie", c) for c in cookies], "b") == expected


def test_bearer_needs_more_than_seven_characters():
    assert extract_token([("Authorization", "Bearer x")]).token == "x"
    assert extract_token([("Authorization", "Bearer")]).token == "Bearer"
    assert extract_token([("Authorization", "Bearerx")]).token == "Bearerx"
