"""Descope token helpers and the mock's pure parts: decoding, keys, signing, claim shapes, config, faults, key ring.
No server here (see tests/integration/test_mock_descope.py)."""

from __future__ import annotations

import json

import jwt
import pytest

from krakend_mitm.descope import errors
from krakend_mitm.descope.claims import Identity, Issue, access_key_claims, refresh_claims, session_claims
from krakend_mitm.descope.config import (DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_TENANT_ID, DEFAULT_USER_ID,
                                         MockConfigError, TenantGrant, from_dict, load_config)
from krakend_mitm.descope.faults import FaultBoard, FaultError, bent_body, padded_json, parse_fault
from krakend_mitm.descope.keyring import KeyRing, KeyRingError
from krakend_mitm.descope.mock import Dispatcher, Request
from krakend_mitm.descope.state import MockState, bearer_pair
from krakend_mitm.descope.tokens import (SigningKey, TokenFormatError, assemble_raw, b64url, b64url_json,
                                         decode_unverified, encode_jws, expand_permissions, issuer_for, redact_tokens,
                                         rfc3339, token_summary)

_KEYS: dict[str, SigningKey] = {}


def key(alg: str = "ES256", kid: str = "k1") -> SigningKey:
    """Keys are generated once per test run: RSA generation is the slow part."""
    name = f"{alg}:{kid}"
    if name not in _KEYS:
        _KEYS[name] = SigningKey.generate(alg, kid=kid)
    return _KEYS[name]


def segment_json(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(__import__("base64").urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---------------------------------------------------------------------------------------------
# decoding


def test_decode_returns_header_and_claims_only():
    token = encode_jws({"sub": "U1", "drn": "DS"}, key())
    decoded = decode_unverified(token)
    assert decoded.header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    assert decoded.claims == {"drn": "DS", "sub": "U1"}
    assert set(decoded.as_dict()) == {"header", "claims"}
    assert token.split(".")[2] not in json.dumps(decoded.as_dict())


def test_decode_accepts_bearer_prefix_and_whitespace():
    token = encode_jws({"sub": "U1"}, key())
    assert decode_unverified(f"  Bearer {token}\n").claims == {"sub": "U1"}


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("abc", "3 dot-separated segments, this has 1"),
    ("a.b.c.d.e", "encrypted JWE"),
    ("!!!.e30.", "header segment is not base64url"),
    (f"{b64url(b'not json')}.e30.", "header segment is not JSON"),
    (f"{b64url_json([1, 2])}.e30.", "header is not a JSON object"),
    (f"{b64url_json({'alg': 'RS256'})}.{b64url(b'{nope')}.", "claims segment is not JSON"),
    (f"{b64url_json({'alg': 'RS256'})}.{b64url(bytes([0xff, 0xfe]))}.", "claims segment is not JSON"),
])
def test_decode_errors_say_what_is_wrong(text, message):
    with pytest.raises(TokenFormatError, match=message):
        decode_unverified(text)


def test_decode_keeps_non_object_claims():
    token = f"{b64url_json({'alg': 'none'})}.{b64url_json([1, 2])}."
    assert decode_unverified(token).claims == [1, 2]


def test_summary_names_kid_and_sub_never_the_token():
    token = encode_jws({"sub": "U1", "drn": "DSR"}, key())
    summary = token_summary(token)
    assert summary == "alg=ES256 kid=k1 sub=U1 drn=DSR"
    assert token_summary("garbage").startswith("<undecodable token")
    redacted = redact_tokens(f"GET /x?t={token} done")
    assert token not in redacted and "kid=k1" in redacted


# ---------------------------------------------------------------------------------------------
# keys and signing


@pytest.mark.parametrize("alg, kty, members", [
    ("RS256", "RSA", {"n", "e"}), ("RS384", "RSA", {"n", "e"}),
    ("ES256", "EC", {"crv", "x", "y"}), ("ES384", "EC", {"crv", "x", "y"}),
])
def test_jwk_shape_and_signature_per_alg(alg, kty, members):
    signing_key = key(alg)
    jwk = signing_key.public_jwk()
    assert set(jwk) == {"kty", "alg", "use", "kid"} | members
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == (kty, alg, "sig", "k1")
    assert "d" in signing_key.private_jwk() and "key_ops" not in signing_key.private_jwk()
    token = encode_jws({"sub": "U1"}, signing_key)
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "U1"}
    if alg.startswith("ES"):  # raw r||s, not DER
        assert len(jwt.utils.base64url_decode(token.split(".")[2])) == {"ES256": 64, "ES384": 96}[alg]


def test_key_from_pem_round_trip_and_mismatches(tmp_path):
    original = key("ES256")
    path = tmp_path / "k.pem"
    path.write_text(original.private_pem())
    loaded = SigningKey.from_file(path, "ES256", kid="k1")
    assert loaded.public_jwk() == original.public_jwk()
    with pytest.raises(ValueError, match="needs an RSA private key"):
        SigningKey.from_file(path, "RS256")
    with pytest.raises(ValueError, match="curve secp384r1"):
        SigningKey.from_file(path, "ES384")
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        SigningKey.from_pem("nope", "ES256")
    with pytest.raises(ValueError, match="cannot read key file"):
        SigningKey.from_file(tmp_path / "missing.pem", "ES256")
    with pytest.raises(ValueError, match="unsupported alg"):
        SigningKey.generate("HS256")


def test_generated_kids_look_like_descope_kids():
    kid = SigningKey.generate("ES256").kid
    assert len(kid) == 27 and kid.isalnum()


def test_encode_sorts_claims_and_uses_compact_json():
    token = encode_jws({"sub": "U1", "amr": ["email"], "tenants": {"b": {"z": 1, "a": 2}}}, key())
    payload = jwt.utils.base64url_decode(token.split(".")[1]).decode()
    assert payload == '{"amr":["email"],"sub":"U1","tenants":{"b":{"a":2,"z":1}}}'
    assert jwt.utils.base64url_decode(token.split(".")[0]).decode() == '{"alg":"ES256","kid":"k1","typ":"JWT"}'
    assert "=" not in token


def test_header_overrides_add_replace_and_remove():
    token = encode_jws({"sub": "U1"}, key(), {"kid": None, "typ": None, "x5u": "https://evil"})
    assert segment_json(token, 0) == {"alg": "ES256", "x5u": "https://evil"}
    token = encode_jws({"sub": "U1"}, key(), {"kid": "other"})
    assert segment_json(token, 0)["kid"] == "other"


def test_relabelled_alg_keeps_the_real_signature():
    token = encode_jws({"sub": "U1"}, key("ES256"), {"alg": "HS256"})
    assert segment_json(token, 0) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    signing_input, signature = token.rsplit(".", 1)
    algorithm = jwt.get_algorithm_by_name("ES256")
    assert algorithm.verify(signing_input.encode(), key("ES256").public_key, jwt.utils.base64url_decode(signature))


def test_alg_none_token_has_empty_signature_and_optional_kid():
    token = encode_jws({"sub": "U1"}, None, kid="k9")
    assert token.endswith(".")
    assert segment_json(token, 0) == {"alg": "none", "kid": "k9", "typ": "JWT"}


def test_assemble_raw_segments():
    base = encode_jws({"sub": "U1"}, key())
    parts = base.split(".")
    assert assemble_raw({"signature": "AAAA"}, base) == f"{parts[0]}.{parts[1]}.AAAA"
    assert assemble_raw({"payload": {"sub": "x"}}, base).split(".")[1] == b64url_json({"sub": "x"})
    assert assemble_raw({"segments": ["a", "b"]}, base) == "a.b"


def test_issuer_forms():
    base = "https://api.descope.com/"
    assert issuer_for("bare", "P1", base) == "P1"
    assert issuer_for("url", "P1", base) == "https://api.descope.com/P1"
    assert issuer_for("v1apps", "P1", base) == "https://api.descope.com/v1/apps/P1"
    assert issuer_for("custom", "P1", base, "https://auth.example.com") == "https://auth.example.com"
    with pytest.raises(ValueError, match="needs issuer_custom"):
        issuer_for("custom", "P1", base)
    with pytest.raises(ValueError, match="unknown issuer mode"):
        issuer_for("odd", "P1", base)


def test_permission_expansion_and_rfc3339():
    role_map = {"a": ["read", "write"], "b": ["write", "delete"]}
    assert expand_permissions(["a", "b", "missing"], role_map) == ["read", "write", "delete"]
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


# ---------------------------------------------------------------------------------------------
# claim shapes (descope.md §2, §3, §4.3, §10.3)


def config_with(**template):
    return from_dict({"template": template, "roles": {"viewer": ["read"], "admin": ["read", "write"]}})


WHO = Identity(sub="U1", amr=["email", "totp"], roles=["viewer"], tenants={"T1": TenantGrant(roles=["admin"])},
               custom_claims={"plan": "gold"}, nsec={"email": "u@example.com"})
ISSUE = Issue(iat=1000, ttl=600, issuer="P1")


def test_session_claims_default_schema():
    claims = session_claims(config_with(), WHO, ISSUE)
    assert claims == {
        "amr": ["email", "totp"], "drn": "DS", "iat": 1000, "exp": 1600, "iss": "P1", "sub": "U1",
        "rexp": rfc3339(1000 + 2419200), "roles": ["viewer"], "permissions": ["read"],
        "tenants": {"T1": {"roles": ["admin"], "permissions": ["read", "write"]}},
        "nsec": {"email": "u@example.com"}, "plan": "gold"}


def test_session_claims_tenant_only_and_none_schemas():
    tenant_only = session_claims(config_with(auth_schema="tenantOnly"), WHO, ISSUE)
    assert (tenant_only["roles"], tenant_only["permissions"]) == (["admin"], ["read", "write"])
    assert tenant_only["dct"] == "T1"
    assert "tenants" not in tenant_only
    none = session_claims(config_with(authSchema="none"), WHO, ISSUE)
    assert not {"roles", "permissions", "tenants", "dct"} & set(none)


def test_template_switches():
    config = config_with(override_subject_claim=True, subject="templated", add_jti_claim=True, rexp=False,
                         exclude_permission_claim=True, auto_tenant_claim=True, claims={"static": 1, "plan": "x"},
                         aud="my-api")
    claims = session_claims(config, WHO, ISSUE)
    assert (claims["sub"], claims["dsub"]) == ("templated", "U1")
    assert len(claims["jti"]) == 32 and "rexp" not in claims
    assert "permissions" not in claims and "permissions" not in claims["tenants"]["T1"]
    assert claims["dct"] == "T1"  # auto_tenant_claim on a single-tenant user
    assert (claims["static"], claims["plan"], claims["aud"]) == (1, "gold", "my-api")  # user claims win


@pytest.mark.parametrize("policy, expected", [("delete", {}), ("nil", {"roles": None, "permissions": None,
                                                                       "tenants": {"T9": {"roles": None,
                                                                                          "permissions": None}}})])
def test_empty_claim_policy(policy, expected):
    who = Identity(sub="U2", tenants={"T9": TenantGrant()})
    claims = session_claims(config_with(empty_claim_policy=policy), who, ISSUE)
    authorization = {name: claims[name] for name in ("roles", "permissions", "tenants") if name in claims}
    if policy == "delete":
        assert authorization == {"tenants": {"T9": {}}}
    else:
        assert authorization == expected


def test_refresh_and_access_key_claims():
    config = config_with()
    assert refresh_claims(config, WHO, Issue(iat=5, ttl=10, issuer="P1", selected_tenant="T1")) == {
        "drn": "DSR", "iat": 5, "exp": 15, "iss": "P1", "sub": "U1", "dct": "T1", "plan": "gold"}
    key_who = Identity(sub="K1", roles=["admin"], custom_claims={"svc": "a"}, nsec={"c": 1})
    claims = access_key_claims(config, key_who, Issue(iat=100, ttl=600, issuer="P1"), expire_time=300)
    assert claims["exp"] == 300 and claims["drn"] == "DS" and claims["svc"] == "a" and claims["nsec"] == {"c": 1}
    assert "amr" not in claims and claims["permissions"] == ["read", "write"]
    no_drn = from_dict({"emit_drn_on_access_keys": False})
    assert "drn" not in access_key_claims(no_drn, key_who, ISSUE)


# ---------------------------------------------------------------------------------------------
# config


def test_defaults():
    config = load_config()
    assert config.project_id == DEFAULT_PROJECT_ID and len(DEFAULT_PROJECT_ID) == 28
    assert config.default_user.id == DEFAULT_USER_ID
    assert config.default_access_key.cleartext == DEFAULT_ACCESS_KEY
    assert config.default_user.tenants[DEFAULT_TENANT_ID].roles == ["admin"]
    assert (config.host, config.port, config.alg, config.max_published) == ("127.0.0.1", 0, "RS256", 12)
    assert (config.ttl.session, config.ttl.refresh, config.ttl.access_key) == (600, 2419200, 600)


def test_yaml_file_and_relative_key_files(tmp_path):
    (tmp_path / "k.pem").write_text(key("ES384").private_pem())
    (tmp_path / "mock.yaml").write_text(
        "project_id: P2Test\nalg: ES384\nkeys:\n  - {kid: seeded, private_key_file: k.pem}\n"
        "listen: 'localhost:0'\nttl: {session: 60}\nusers:\n  - id: U9\n    tenants: [{tenantId: T1, roleNames: [a]}]\n"
        "access_keys:\n  - {id: K9, cleartext: secret9, permitted_ips: ['10.0.0.0/8']}\n")
    config = load_config(tmp_path / "mock.yaml")
    assert (config.project_id, config.alg, config.ttl.session, config.host) == ("P2Test", "ES384", 60, "127.0.0.1")
    assert config.users[0].tenants["T1"].roles == ["a"]
    ring = KeyRing(config)
    assert ring.active.kid == "seeded" and ring.active.public_jwk() == {**key("ES384").public_jwk(), "kid": "seeded"}


@pytest.mark.parametrize("data, message", [
    ({"nope": 1}, "unknown key"),
    ({"listen": "0.0.0.0:4000"}, "loopback only"),
    ({"listen": "nonsense"}, "host:port"),
    ({"tls": True}, "not supported"),
    ({"alg": "HS256"}, "alg"),
    ({"issuer_mode": "custom"}, "needs issuer_custom"),
    ({"project_id": "P:1"}, "must not contain"),
    ({"ttl": {"session": "1m"}}, "ttl.session"),
    ({"users": [{"roles": ["a"]}]}, r"users\[0\].id"),
    ({"access_keys": [{"id": "K", "cleartext": "a:b"}]}, "must not contain ':'"),
    ({"access_keys": [{"id": "K", "cleartext": "a", "permitted_ips": ["x"]}]}, "not an IP"),
    ({"access_keys": [{"id": "K", "cleartext": "a", "status": "gone"}]}, "status"),
    ({"template": {"auth_schema": "weird"}}, "auth_schema"),
    ({"template": {"bogus": 1}}, "template: unknown"),
])
def test_config_errors_name_the_key(data, message):
    with pytest.raises(MockConfigError, match=message):
        from_dict(data)


def test_config_file_errors(tmp_path):
    with pytest.raises(MockConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(MockConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1")
    with pytest.raises(MockConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


# ---------------------------------------------------------------------------------------------
# faults


def test_parse_fault_modes_and_aliases():
    assert parse_fault({"mode": "down"}).describe()["mode"] == "status:503"
    assert parse_fault({"mode": "garbage", "target": "exchange"}).mode == "invalid_json"
    assert parse_fault({"mode": "slow"}).delay_ms == 1000
    assert parse_fault({"mode": "status_valid:500"}).status == 500


@pytest.mark.parametrize("spec, message", [
    ({"mode": "nope"}, "unknown mode"), ({}, "mode is required"), ({"mode": "status:abc"}, "needs an HTTP status"),
    ({"mode": "slow:3"}, "takes no"), ({"mode": "empty_keys", "target": "exchange"}, "only applies to the jwks"),
    ({"mode": "slow", "target": "x"}, "unknown target"), ({"mode": "slow", "count": 0}, "count"),
    ({"mode": "slow", "delay_ms": -1}, "delay_ms"),
])
def test_parse_fault_errors(spec, message):
    with pytest.raises(FaultError, match=message):
        parse_fault(spec)


def test_fault_board_counts_targets_and_wildcard():
    board = FaultBoard()
    board.set(parse_fault({"mode": "status:500", "count": 2}))
    board.set(parse_fault({"mode": "empty_keys", "target": "*"}))
    assert board.take("jwks").status == 500
    assert board.take("jwks").status == 500
    assert board.take("jwks").mode == "empty_keys"  # the specific one is used up; "*" remains
    assert board.take("exchange") is None  # a JWKS-only mode does not touch other targets
    board.set_rate_limit("exchange", 1, 7)
    assert board.take_rate_limit("exchange") == 7 and board.take_rate_limit("exchange") is None
    cleared = board.clear()
    assert [fault.mode for fault in cleared] == ["empty_keys"] and board.take("jwks") is None


def test_spent_hang_is_still_released_by_clear():
    board = FaultBoard()
    board.set(parse_fault({"mode": "hang", "count": 1}))
    fault = board.take("jwks")
    assert not fault.cleared.is_set()
    board.clear("jwks")
    assert fault.cleared.is_set()


def test_body_bending():
    fault = parse_fault({"mode": "huge_body", "size_bytes": 1000})
    assert len(padded_json(b'{"keys": []}', 1000)) > 1000
    assert json.loads(padded_json(b"[1]", 10)) == [1]
    body, content_type, headers = bent_body("wrong_content_type", b"{}", fault)
    assert (body, content_type, headers) == (b"{}", "text/plain; charset=utf-8", [])
    assert bent_body("truncated_json", b'{"keys": []}', fault)[0] == b'{"keys'


# ---------------------------------------------------------------------------------------------
# key ring


def ring(**config) -> KeyRing:
    return KeyRing(from_dict({"alg": "ES256", **config}))


def test_rotation_states():
    keys = ring(max_published=2)
    first = keys.active.kid
    keys.rotate("prepublish")
    summary = keys.summary()
    assert summary["active_kid"] == first and summary["prepublished_kid"] in summary["published_kids"]
    summary = keys.rotate("activate")
    assert summary["active_kid"] != first and summary["published_kids"][1] == first
    for _ in range(3):
        keys.rotate("rotate")
    assert len(keys.published()) == 3  # active + max_published older keys
    assert keys.find(first) is not None and keys.find_published(first) is None
    assert keys.state_of(keys.find(first)) == "retired"
    with pytest.raises(KeyRingError, match="no prepublished key"):
        keys.rotate("activate")
    with pytest.raises(KeyRingError, match="not published"):
        keys.rotate("unpublish", "nope")
    with pytest.raises(KeyRingError, match="unknown rotate mode"):
        keys.rotate("spin")


def test_rotate_and_revoke_and_restore():
    keys = ring()
    first = keys.active.kid
    keys.rotate("rotate")
    keys.rotate("rotate_and_revoke")
    assert [key.kid for key in keys.published()] == [keys.active.kid] and keys.active.kid != first
    keys.restore()
    assert [key.kid for key in keys.published()] == [first]


def test_unpublish_active_keeps_signing():
    keys = ring()
    active = keys.active
    keys.rotate("unpublish", active.kid)
    assert keys.published() == [] and keys.active is active
    assert keys.describe()["keys"][0]["state"] in ("retired", "active_unpublished", "unpublished")


# ---------------------------------------------------------------------------------------------
# state and dispatcher without HTTP


def test_bearer_pair_splits_at_first_colon():
    assert bearer_pair("bearer P1:key:mgmt") == ("P1", "key:mgmt")
    with pytest.raises(errors.DescopeError) as missing:
        bearer_pair(None)
    assert (missing.value.status, missing.value.code) == (400, "E011002")
    with pytest.raises(errors.DescopeError) as scheme:
        bearer_pair("Basic abc")
    assert (scheme.value.status, scheme.value.code) == (401, "E011003")
    with pytest.raises(errors.DescopeError):
        bearer_pair("Bearer nocolon")


def test_control_routes_refuse_non_loopback_clients():
    state = MockState(from_dict({"alg": "ES256"}))
    dispatcher = Dispatcher(state)
    request = Request("GET", "/__mock/stats", {}, {}, b"", "192.0.2.10")
    counter, reply = dispatcher.serve(request)
    assert (counter, reply.status, json.loads(reply.body)["errorCode"]) == ("control", 403, "E011003")
    counter, reply = dispatcher.serve(Request("GET", "/__mock/stats", {}, {}, b"", "127.0.0.1"))
    assert reply.status == 200


def test_injected_clock_drives_minting():
    state = MockState(from_dict({"alg": "ES256"}), clock=lambda: 1_000_000.9)
    claims = state.mint({})["claims"]
    assert (claims["iat"], claims["exp"]) == (1_000_000, 1_000_600)
    state.set_clock(-100)
    assert state.mint({"kind": "refresh"})["claims"]["iat"] == 999_900
