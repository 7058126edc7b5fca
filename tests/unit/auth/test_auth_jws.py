"""Spec §4.5, §5, §7, §16, §20: parsing as go-jose does, the alg check, the gateway's header rules,
signature verification and key/alg pairing, key identification strategies."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from jwt_testkit import (
    HMAC_SECRET,
    b64,
    bearer,
    ec_key,
    ed_key,
    jwks_server,  # noqa: F401 - fixture
    local_validator,
    mint,
    private_jwk,
    public_jwk,
    remote_validator,
    rsa_key,
    run,
    sign,
)
from krakend_mitm.auth import KeyStore
from krakend_mitm.auth.jws import JWSError, parse_jws

RSA = rsa_key("rsa-jws")
EC = ec_key("P-256", "jws")
CLAIMS = {"sub": "u1", "exp": 4102444800}
CRYPTO = "Unable to validate the token: go-jose/go-jose: error in cryptographic primitive"


@pytest.fixture
def rs(tmp_path):
    return local_validator(tmp_path, [public_jwk(RSA, "k1")])


@pytest.fixture
def es(tmp_path):
    return local_validator(tmp_path, [public_jwk(EC, "k1")], alg="ES256")


def status(validator, tok):
    return run(validator.authenticate(bearer(tok)))


GOOD = mint(CLAIMS, RSA)
H, P, S = GOOD.split(".")


# ---------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    "variant",
    [
        GOOD,
        H + "\n." + P + "\t." + S,
        " " + GOOD + " ",
        H + "." + P[:10] + "\u00a0" + P[10:] + "." + S,  # NO-BREAK SPACE is Unicode whitespace
        H + "." + P + "." + S[:5] + "\u2003\u3000" + S[5:],
        H + "=" * (-len(H) % 4) + "." + P + "=" * (-len(P) % 4) + "." + S + "=" * (-len(S) % 4),  # padding is optional
    ],
)
def test_accepted_spellings(rs, variant):
    assert status(rs, variant).status == 200


def test_token_signed_over_padded_segments_fails(rs):
    hdr = b64(json.dumps({"alg": "RS256", "kid": "k1"})) + "=="
    pay = b64(json.dumps(CLAIMS)) + "="
    hdr_fixed = hdr if len(hdr.rstrip("=")) % 4 else hdr.rstrip("=")
    signing = f"{hdr_fixed}.{pay}".encode()
    tok = f"{hdr_fixed}.{pay}.{b64(sign('RS256', signing, RSA))}"
    if "=" not in tok.split(".")[0] + tok.split(".")[1]:
        pytest.skip("segments happen to need no padding")
    verdict = status(rs, tok)
    assert verdict.status == 401 and verdict.message == CRYPTO


@pytest.mark.parametrize(
    "tok,message",
    [
        ("a.bad.token", "illegal base64 data at input byte 0"),  # 'a' alone is not base64 (length 1)
        ("abc.def", "go-jose/go-jose: compact JWS format must have three parts"),
        (GOOD + ".x", "go-jose/go-jose: compact JWS format must have three parts"),
        ("x", "go-jose/go-jose: compact JWS format must have three parts"),
        (H + "." + P + "." + S[:-5] + "?" + S[-4:], None),
        (H[:-3] + "!" + H[-2:] + "." + P + "." + S, f"illegal base64 data at input byte {len(H) - 3}"),
        (b64("not json") + "." + P + "." + S, None),
        (b64("{") + "." + P + "." + S, "unexpected end of JSON input"),
        (b64("{}x") + "." + P + "." + S, "invalid character 'x' after top-level value"),
        (b64("[1]") + "." + P + "." + S, "json: cannot unmarshal array into Go value of type jose.rawHeader"),
        (b64('{"alg":5}') + "." + P + "." + S, None),
        (b64('{"alg":"RS256","kid":1}') + "." + P + "." + S, None),
        ("\udca0" + GOOD, None),  # a raw 0xA0 byte is not whitespace
    ],
)
def test_malformed_tokens(rs, tok, message):
    verdict = status(rs, tok)
    assert verdict.status == 401
    assert verdict.message.startswith("Unable to validate the token: ")
    if message is not None:
        assert verdict.message == "Unable to validate the token: " + message


def test_a_bad_token_row_of_krakend_ce(rs):
    verdict = run(rs.authenticate([("Authorization", "bearer a.bad.token")]))
    assert verdict.status == 401 and verdict.details["check"] == "parse"


def test_duplicate_key_in_header(rs):
    raw = b'{"alg":"RS256","kid":"k1","kid":"k1"}'
    tok = mint(CLAIMS, RSA, raw_header=raw)
    verdict = status(rs, tok)
    assert verdict.status == 401
    assert verdict.reason_id == "header_duplicate_key"
    assert verdict.message == "Unable to validate the token: json: duplicate key 'kid' in object"


def test_duplicate_key_in_payload(rs):
    tok = mint(b'{"sub":"a","exp":4102444800,"sub":"b"}', RSA)
    verdict = status(rs, tok)
    assert verdict.status == 401 and verdict.message == "Unable to validate the token: json: duplicate key 'sub' in object"
    assert verdict.details["signature_verified"] is True


def test_nested_duplicate_keys_follow_go_last_wins(rs):
    tok = mint(b'{"sub":"a","exp":4102444800,"t":{"r":1,"r":2}}', RSA)
    verdict = status(rs, tok)
    assert verdict.status == 200 and verdict.claims["t"] == {"r": 2.0}


def test_non_canonical_base64_is_refused(rs):
    # "AB" decodes like "AA" in Go (unused bits ignored); a token must have one spelling only
    hdr = b64(json.dumps({"alg": "RS256", "kid": "k1"}))
    pay = b64(json.dumps(CLAIMS))
    last = pay[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(pay) % 4 == 0:
        pytest.skip("payload has no unused bits")
    tampered = pay[:-1] + alphabet[alphabet.index(last) + 1]
    signing = f"{hdr}.{pay}".encode()
    tok = f"{hdr}.{tampered}.{b64(sign('RS256', signing, RSA))}"
    verdict = status(rs, tok)
    assert verdict.status == 401 and verdict.reason_id == "token_base64_noncanonical"
    padded = f"{hdr}.{tampered}{'=' * (-len(tampered) % 4)}.{b64(sign('RS256', signing, RSA))}"
    assert status(rs, padded).reason_id == "token_base64_noncanonical"


# ---------------------------------------------------------------------------------------------
# JWS JSON serialization


def json_serialization(general: bool, extra_sig: bool = False, unprotected: dict | None = None) -> str:
    prot = b64(json.dumps({"alg": "RS256", "kid": "k1"}))
    pay = b64(json.dumps(CLAIMS))
    sig = b64(sign("RS256", f"{prot}.{pay}".encode(), RSA))
    entry = {"protected": prot, "signature": sig}
    if unprotected is not None:
        entry["header"] = unprotected
    if general:
        sigs = [entry] + ([entry] if extra_sig else [])
        return json.dumps({"payload": pay, "signatures": sigs}, indent=1)
    return json.dumps({"payload": pay, **entry}, indent=1)


def test_flattened_json_serialization(rs):
    assert status(rs, json_serialization(False)).status == 200


def test_general_json_serialization(rs):
    assert status(rs, json_serialization(True)).status == 200


def test_json_serialization_with_two_signatures(rs):
    verdict = status(rs, json_serialization(True, extra_sig=True))
    assert verdict.message == "Unable to validate the token: go-jose/go-jose: too many signatures in payload; expecting only one"


def test_json_serialization_with_unprotected_header(rs):
    verdict = status(rs, json_serialization(False, unprotected={"x": "y"}))
    assert verdict.status == 401 and verdict.reason_id == "header_unprotected"


def test_json_serialization_without_payload(rs):
    verdict = status(rs, json.dumps({"protected": H, "signature": S}))
    assert verdict.message == "Unable to validate the token: go-jose/go-jose: missing payload in JWS message"


# ---------------------------------------------------------------------------------------------
# alg (checklist row 8)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "kid": "k1"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "rs256", "kid": "k1"},
        {"alg": "RS384", "kid": "k1"},
        {"kid": "k1"},
        {"alg": None, "kid": "k1"},
        {"alg": "RS256 ", "kid": "k1"},
    ],
)
def test_alg_mismatch_makes_no_jwks_request(jwks_server, header):
    server = jwks_server([public_jwk(RSA, "k1")])
    store = KeyStore()
    validator = remote_validator(store, server.url())
    tok = mint(CLAIMS, HMAC_SECRET, alg="HS256", header=header)
    verdict = run(validator.authenticate(bearer(tok)))
    assert verdict.status == 401
    assert verdict.message == "Unable to validate the token: algorithm is invalid"
    assert server.count() == 0
    store.stop()


# ---------------------------------------------------------------------------------------------
# the gateway's header rules (§20)


@pytest.mark.parametrize(
    "extra,reason",
    [
        ({"crit": ["b64"], "b64": True}, "header_crit"),
        ({"crit": ["exp"], "exp": 1}, "header_crit"),
        ({"jku": "https://evil.example/keys"}, "header_embedded_key"),
        ({"x5u": "https://evil.example/cert"}, "header_embedded_key"),
        ({"jwk": public_jwk(RSA)}, "header_embedded_key"),
        ({"x5c": []}, "header_embedded_key"),
        ({"zip": "DEF"}, "header_zip"),
        ({"b64": True}, "header_b64"),
    ],
)
def test_stricter_header_rules(rs, extra, reason, caplog):
    caplog.set_level(logging.INFO)
    tok = mint(CLAIMS, RSA, header={"alg": "RS256", "kid": "k1", **extra})
    verdict = status(rs, tok)
    assert verdict.status == 401 and verdict.reason_id == reason
    assert verdict.message.startswith(f"Token rejected by the gateway ({reason}): ")
    assert f"[ENDPOINT: /test][JWTValidator] Token rejected by the gateway ({reason})" in caplog.text


@pytest.mark.parametrize("extra", [{"typ": "nonsense"}, {"cty": "whatever"}, {"x5t": "abc"}, {"custom": {"a": 1}}])
def test_other_header_members_are_not_checked(rs, extra):
    assert status(rs, mint(CLAIMS, RSA, header={"alg": "RS256", "kid": "k1", **extra})).status == 200


# ---------------------------------------------------------------------------------------------
# signatures and keys (§7)


def test_tampered_payload_and_signature(rs):
    other = b64(json.dumps({"sub": "admin", "exp": 4102444800}))
    assert status(rs, f"{H}.{other}.{S}").message == CRYPTO
    flipped = S[:10] + ("A" if S[10] != "A" else "B") + S[11:]
    assert status(rs, f"{H}.{P}.{flipped}").message == CRYPTO


@pytest.mark.parametrize(
    "alg,private",
    [
        ("HS256", HMAC_SECRET), ("HS384", HMAC_SECRET * 2), ("HS512", HMAC_SECRET * 2),
        ("RS256", RSA), ("RS384", RSA), ("RS512", RSA),
        ("PS256", RSA), ("PS384", RSA), ("PS512", RSA),
        ("ES256", ec_key("P-256")), ("ES384", ec_key("P-384")), ("ES512", ec_key("P-521")),
        ("EdDSA", ed_key()),
    ],
)
def test_every_algorithm(tmp_path, alg, private):
    validator = local_validator(tmp_path, [public_jwk(private, "k1")], alg=alg)
    assert status(validator, mint(CLAIMS, private, alg=alg)).status == 200


def test_hmac_keys_of_any_length(tmp_path):
    validator = local_validator(tmp_path, [public_jwk(b"abc", "k1")], alg="HS256")
    assert status(validator, mint(CLAIMS, b"abc", alg="HS256")).status == 200


def test_empty_hmac_key_is_refused(tmp_path):
    validator = local_validator(tmp_path, [{"kty": "oct", "k": "", "kid": "k1"}], alg="HS256")
    verdict = status(validator, mint(CLAIMS, b"", alg="HS256"))
    assert verdict.status == 401 and verdict.reason_id == "hmac_key_empty"


def test_pss_salt_length_is_detected(tmp_path):
    validator = local_validator(tmp_path, [public_jwk(RSA, "k1")], alg="PS256")
    hdr = b64(json.dumps({"alg": "PS256", "kid": "k1"}))
    pay = b64(json.dumps(CLAIMS))
    for salt in (0, 20, 32, 64):
        sig = RSA.sign(f"{hdr}.{pay}".encode(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt),
                       hashes.SHA256())
        assert status(validator, f"{hdr}.{pay}.{b64(sig)}").status == 200, salt


def test_es_signature_must_be_raw_r_s(es):
    hdr = b64(json.dumps({"alg": "ES256", "kid": "k1"}))
    pay = b64(json.dumps(CLAIMS))
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    der = EC.sign(f"{hdr}.{pay}".encode(), _ec.ECDSA(hashes.SHA256()))
    assert status(es, f"{hdr}.{pay}.{b64(der)}").message == CRYPTO
    assert status(es, mint(CLAIMS, EC, alg="ES256")).status == 200


@pytest.mark.parametrize(
    "key,alg,private",
    [
        (public_jwk(RSA, "k1"), "ES256", EC),  # RSA key, ES token
        (public_jwk(EC, "k1"), "RS256", RSA),  # EC key, RS token
        (public_jwk(HMAC_SECRET, "k1"), "RS256", RSA),  # oct key, RS token
        (public_jwk(ec_key("P-384"), "k1"), "ES256", EC),  # curve of another alg
        (public_jwk(ed_key(), "k1"), "ES256", EC),
        (public_jwk(RSA, "k1"), "EdDSA", ed_key()),
    ],
)
def test_key_type_must_match_alg(tmp_path, key, alg, private):
    validator = local_validator(tmp_path, [key], alg=alg)
    assert status(validator, mint(CLAIMS, private, alg=alg)).message == CRYPTO


def test_hmac_with_the_rsa_public_key_is_not_accepted(tmp_path):
    # the classic alg confusion: HS256 keyed with the RSA public key; the key set has an RSA key
    from cryptography.hazmat.primitives import serialization

    pem = RSA.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    validator = local_validator(tmp_path, [public_jwk(RSA, "k1")], alg="HS256")
    assert status(validator, mint(CLAIMS, pem, alg="HS256")).message == CRYPTO


@pytest.mark.parametrize("private", [RSA, EC, ed_key()])
def test_private_key_jwks_are_unusable(tmp_path, private):
    alg = {type(RSA): "RS256", type(EC): "ES256"}.get(type(private), "EdDSA")
    validator = local_validator(tmp_path, [private_jwk(private, "k1")], alg=alg)
    verdict = status(validator, mint(CLAIMS, private, alg=alg))
    assert verdict.status == 401
    assert verdict.message == "Unable to validate the token: go-jose/go-jose: unsupported key type/format"


def test_jwk_alg_use_and_key_ops_are_ignored(tmp_path):
    key = public_jwk(RSA, "k1", alg="RS512", use="enc", key_ops=["encrypt"])
    validator = local_validator(tmp_path, [key])
    assert status(validator, GOOD).status == 200


# ---------------------------------------------------------------------------------------------
# key identification (§16)


def x5t_of(data: bytes, n: int) -> str:
    return base64.urlsafe_b64encode(data[:n]).rstrip(b"=").decode()


THUMB1 = hashlib.sha1(b"cert").digest()
THUMB256 = hashlib.sha256(b"cert").digest()


@pytest.mark.parametrize(
    "strategy,jwk_extra,header_extra,ok",
    [
        ("kid", {}, {}, True),
        ("x5t", {"x5t": b64(THUMB1)}, {"x5t": b64(THUMB1)}, True),
        ("x5t", {"x5t": b64(THUMB1.hex())}, {"x5t": b64(THUMB1)}, True),  # hex form in the JWK
        ("x5t", {"x5t": b64(THUMB1)}, {"x5t": b64(THUMB1) + "="}, False),  # header value compared verbatim
        ("x5t", {"x5t": b64(THUMB1)}, {}, False),  # falls back to the kid "k1"
        ("x5t#S256", {"x5t#S256": b64(THUMB256)}, {"x5t#S256": b64(THUMB256)}, True),
        ("kid_x5t", {"x5t": b64(THUMB1)}, {"x5t": b64(THUMB1)}, True),
    ],
)
def test_key_identify_strategy(tmp_path, strategy, jwk_extra, header_extra, ok):
    validator = local_validator(tmp_path, [public_jwk(RSA, "k1", **jwk_extra)], key_identify_strategy=strategy)
    tok = mint(CLAIMS, RSA, header={"alg": "RS256", "kid": "k1", **header_extra})
    verdict = status(validator, tok)
    assert (verdict.status == 200) == ok, verdict.message


def test_kid_less_token_matches_kid_less_key(tmp_path):
    validator = local_validator(tmp_path, [public_jwk(RSA)])
    assert status(validator, mint(CLAIMS, RSA, kid=None)).status == 200


def test_kid_less_token_with_only_kid_keys_is_unknown(tmp_path):
    validator = local_validator(tmp_path, [public_jwk(RSA, "k1")])
    verdict = status(validator, mint(CLAIMS, RSA, kid=None))
    assert verdict.status == 401 and verdict.message == 'Unable to validate the token: Get "": unsupported protocol scheme ""'


def test_duplicate_kids_last_wins(tmp_path):
    other = rsa_key("rsa-other")
    validator = local_validator(tmp_path, [public_jwk(RSA, "k1"), public_jwk(other, "k1")])
    assert status(validator, mint(CLAIMS, other)).status == 200
    assert status(validator, GOOD).message == CRYPTO


def test_parse_jws_signing_input_is_reencoded():
    parsed = parse_jws(H + "=" * (-len(H) % 4) + "." + P + "." + S)
    assert parsed.signing_input == f"{H}.{P}".encode()
    with pytest.raises(JWSError):
        parse_jws("")
