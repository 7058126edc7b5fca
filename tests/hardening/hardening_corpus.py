"""The attack corpus, generated (nothing is a fixed blob that could expire): every case is a request
to one endpoint of the attack gateway, with the status the spec gives it.

    keys = CorpusKeys()                       # cached per process (RSA generation is slow)
    cases = build_corpus(keys, now=time.time())
    for case in cases: case.headers, case.endpoint, case.expect, case.why

`expect` is 401 for every attack. A few cases are KrakenD leniencies the spec keeps (padding,
whitespace, JWS JSON, no `exp`, float dates, 1024-bit keys, `use: enc`, ...): those expect 200, and the
backend must then see exactly that request (its `jti` is in the backend path). The gateway config the
corpus runs against is `attack_config()`.

Spec references: jwt-validator.md §4 (extraction), §5 (order/statuses), §7 (algorithms/keys), §8
(claims), §20 (stricter than KrakenD); descope.md §9 (Descope rules) and §10.5 (JWKS metadata faults).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import itertools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

import hardening_kit  # noqa: F401  (puts jwt_testkit on sys.path)
from jwt_testkit import HMAC_SECRET, b64, ec_key, ed_key, public_jwk, rsa_key, sign

ISSUER = "https://api.descope.example/P2hardeningProject"
AUDIENCE = ["api", "billing"]
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# The endpoints of the attack gateway: path -> (alg, JWKS path on the KeyServer, extra validator keys)
ENDPOINTS: dict[str, tuple[str, str, dict]] = {
    "/rs": ("RS256", "/main", {"issuer": ISSUER, "audience": AUDIENCE, "operation_debug": True}),
    "/hs": ("HS256", "/main", {}),  # an HS endpoint whose key set holds RSA keys: key confusion target
    "/es": ("ES256", "/es", {}),
    "/jwks/weak": ("RS256", "/weak", {}),
    "/jwks/enc": ("RS256", "/enc", {}),
    "/jwks/oct": ("RS256", "/oct", {}),
    "/jwks/broken-kty": ("RS256", "/broken-kty", {}),
    "/jwks/broken-curve": ("RS256", "/broken-curve", {}),
    "/jwks/private": ("RS256", "/private", {}),
}


def hit_prefix(endpoint: str) -> str:
    return "/hit" + endpoint + "/"


class CorpusKeys:
    """Every key the corpus signs with, and the JWK sets the KeyServer publishes."""

    def __init__(self) -> None:
        self.k1 = rsa_key("hardening-k1")
        self.k2 = rsa_key("hardening-k2")
        self.attacker = rsa_key("hardening-attacker")
        self.weak = rsa_key("hardening-weak", 1024)
        self.enc = rsa_key("hardening-enc")
        self.priv = rsa_key("hardening-priv")
        self.ec = ec_key("P-256", "hardening-e1")
        self.ec_attacker = ec_key("P-256", "hardening-e-attacker")
        self.ed = ed_key("hardening-ed")
        self.oct = HMAC_SECRET
        self._x5c: str | None = None

    def key_sets(self) -> dict[str, list[dict]]:
        from jwt_testkit import private_jwk

        return {
            "/main": [public_jwk(self.k1, "k1", alg="RS256", use="sig")],
            "/es": [public_jwk(self.ec, "e1", alg="ES256", use="sig")],
            "/weak": [public_jwk(self.weak, "weak")],
            "/enc": [public_jwk(self.enc, "enc", use="enc", alg="RSA-OAEP", key_ops=["encrypt"])],
            "/oct": [{"kty": "oct", "kid": "k1", "k": b64(self.oct)}, public_jwk(self.k2, "k2")],
            "/broken-kty": [public_jwk(self.k1, "k1"), {"kty": "xyz", "kid": "bad", "n": "AQAB"}],
            "/broken-curve": [public_jwk(self.k1, "k1"),
                              {"kty": "EC", "crv": "P-256", "kid": "bad", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)}],
            "/private": [public_jwk(self.k1, "k1"), private_jwk(self.priv, "priv")],
        }

    def attacker_cert_b64(self) -> str:
        if self._x5c is None:
            now = datetime.datetime.now(datetime.timezone.utc)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(self.attacker.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(days=1))
                    .not_valid_after(now + datetime.timedelta(days=1))
                    .sign(self.attacker, hashes.SHA256()))
            self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        return self._x5c


_KEYS: CorpusKeys | None = None


def corpus_keys() -> CorpusKeys:
    global _KEYS
    if _KEYS is None:
        _KEYS = CorpusKeys()
    return _KEYS


# =============================================================================================
# token building blocks


def js(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def seg(data: bytes | dict | list | str) -> str:
    if isinstance(data, (dict, list)):
        data = js(data)
    if isinstance(data, str):
        data = data.encode()
    return b64(data)


def rs_sign(key: Any, message: bytes, alg: str = "RS256") -> bytes:
    return sign(alg, message, key)


def compact(header: dict | bytes, payload: dict | bytes | list, key: Any = None, alg: str = "RS256",
            *, signature: bytes | None = None) -> str:
    """header.payload.signature; `key` signs with `alg` unless `signature` is given."""
    h = seg(header if not isinstance(header, bytes) else header)
    p = seg(payload)
    signing_input = f"{h}.{p}".encode()
    if signature is None:
        signature = sign_any(alg, signing_input, key) if key is not None else b""
    return f"{h}.{p}.{b64(signature)}"


def sign_any(alg: str, message: bytes, key: Any) -> bytes:
    if alg.startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        return hmac.new(key, message, digest).digest()
    return sign(alg, message, key)


def noncanonical(segment: str) -> str:
    """The same bytes with non-zero unused bits in the last character (Go decodes it silently)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rest = len(segment) % 4
    assert rest in (2, 3), "segment has no unused bits"
    value = alphabet.index(segment[-1])
    value = (value & ~0xF) | 0x5 if rest == 2 else (value & ~0x3) | 0x1
    return segment[:-1] + alphabet[value]


def std_b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@dataclass
class Case:
    id: str
    group: str
    endpoint: str
    headers: list[tuple[str, str | bytes]]
    expect: int
    why: str
    jti: str = ""
    reason: str | None = None  # a reason id that must be logged (the gateway's own refusals)
    tokens: list[str] = field(default_factory=list)  # every token the request carries (secrets scan)
    may_be_refused_by_http: bool = False  # mitmproxy may answer before the gateway (huge headers)

    @property
    def accepted(self) -> bool:
        return self.expect == 200

    def __repr__(self) -> str:  # tokens can be 1 MiB: keep failure reports readable
        return f"Case({self.id!r}, {self.endpoint}, expect={self.expect})"


class Corpus:
    def __init__(self, keys: CorpusKeys, now: float):
        self.keys = keys
        self.now = int(now)
        self.cases: list[Case] = []
        self._serial = itertools.count(1)

    # ---- helpers --------------------------------------------------------------------------

    def claims(self, jti: str, /, **overrides: Any) -> dict:
        claims = {"iss": ISSUER, "aud": list(AUDIENCE), "sub": "U2hardening", "drn": "DS", "amr": ["pwd"],
                  "iat": self.now - 5, "exp": self.now + 3600, "jti": jti}
        for name, value in overrides.items():
            if value is _DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def jti(self, case_id: str) -> str:
        return f"j{next(self._serial):04d}-{case_id}"[:60]

    def header(self, alg: str = "RS256", kid: str | None = "k1", **extra: Any) -> dict:
        h: dict = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            h["kid"] = kid
        h.update(extra)
        return h

    def valid(self, jti: str, endpoint: str = "/rs", /, **overrides: Any) -> str:
        k = self.keys
        if endpoint == "/es":
            return compact(self.header("ES256", "e1"), self.claims(jti, **overrides), k.ec, "ES256")
        return compact(self.header(), self.claims(jti, **overrides), k.k1)

    def add(self, case_id: str, group: str, token: str | None, expect: int, why: str, *, endpoint: str = "/rs",
            jti: str = "", headers: list | None = None, reason: str | None = None, tokens: list | None = None,
            may_be_refused_by_http: bool = False) -> None:
        if headers is None:
            headers = [("Authorization", f"Bearer {token}")]
        self.cases.append(Case(case_id, group, endpoint, headers, expect, why, jti, reason,
                               tokens if tokens is not None else ([token] if token else []),
                               may_be_refused_by_http))

    def signed(self, case_id: str, group: str, expect: int, why: str, *, header: dict | bytes | None = None,
               endpoint: str = "/rs", key: Any = None, alg: str = "RS256", reason: str | None = None,
               payload: dict | bytes | list | None = None, **claim_overrides: Any) -> None:
        """A token with a valid signature by the endpoint's real key unless `key`/`alg` say otherwise."""
        jti = self.jti(case_id)
        body = payload if payload is not None else self.claims(jti, **claim_overrides)
        token = compact(header if header is not None else self.header(alg), body, key or self.keys.k1, alg)
        self.add(case_id, group, token, expect, why, endpoint=endpoint, jti=jti, reason=reason)

    # ---- the cases -------------------------------------------------------------------------

    def build(self) -> list[Case]:
        self.controls()
        self.algorithms()
        self.signatures()
        self.headers()
        self.time_claims()
        self.issuer_audience()
        self.structure()
        self.sizes()
        self.transport()
        self.descope()
        self.jwks_side()
        ids = [c.id for c in self.cases]
        assert len(ids) == len(set(ids)), "duplicate case ids"
        return self.cases

    def controls(self) -> None:
        for endpoint in ("/rs", "/es"):
            jti = self.jti("control" + endpoint.replace("/", "-"))
            self.add("control" + endpoint.replace("/", "-"), "control", self.valid(jti, endpoint), 200,
                     "a valid token is accepted", endpoint=endpoint, jti=jti)

    def algorithms(self) -> None:
        k = self.keys
        for name in ("none", "None", "NONE", "nOnE"):
            jti = self.jti(f"alg-{name}")
            body = self.claims(jti)
            token = compact(self.header(name), body, signature=b"")
            self.add(f"alg-{name}-empty-signature", "alg", token, 401, "§5/§7: alg must equal the configured alg")
            h = seg(self.header(name))
            p = seg(body)
            real = b64(rs_sign(k.k1, f"{h}.{p}".encode()))
            self.add(f"alg-{name}-with-real-signature", "alg", f"{h}.{p}.{real}", 401, "§7 exact alg match")
        pem = k.k1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        pkcs1 = k.k1.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        der = k.k1.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        jwk_json = js(public_jwk(k.k1, "k1"))
        for form, secret in (("pem", pem), ("pem-pkcs1", pkcs1), ("der", der), ("jwk-json", jwk_json),
                             ("pem-stripped", pem.strip())):
            for endpoint in ("/rs", "/hs"):
                self.signed(f"hs256-with-rsa-public-{form}-on{endpoint.replace('/', '-')}", "alg", 401,
                            "§7 key<->alg pairing: an RSA key never verifies HS*; RS endpoints refuse HS256 first",
                            header=self.header("HS256"), key=secret, alg="HS256", endpoint=endpoint)
        for alg, key in (("RS384", k.k1), ("RS512", k.k1), ("PS256", k.k1), ("PS384", k.k1), ("PS512", k.k1),
                         ("ES256", k.ec), ("EdDSA", k.ed), ("HS256", HMAC_SECRET), ("HS512", HMAC_SECRET)):
            self.signed(f"other-alg-{alg}", "alg", 401, "§7 algorithms other than the configured one",
                        header=self.header(alg), key=key, alg=alg)
        for i, name in enumerate(("RS1", "ES256K", "HS1", "foo", "", "rs256", "RS256 ", " RS256", "RS256\u0000",
                                  "RS256\u200b", "RSA-OAEP", "dir")):
            jti = self.jti(f"unknown-alg-{i}")
            h = seg(self.header(name))
            p = seg(self.claims(jti))
            sig = b64(rs_sign(k.k1, f"{h}.{p}".encode()))
            self.add(f"unknown-alg-{i}-{name.strip() or 'empty'}".replace("\u0000", "nul").replace("\u200b", "zwsp"),
                     "alg", f"{h}.{p}.{sig}", 401, "§7 unknown algorithms")
        for i, value in enumerate((123, None, ["RS256"], {"alg": "RS256"}, True)):
            header = {"alg": value, "kid": "k1"}
            jti = self.jti(f"alg-type-{i}")
            h = seg(header)
            p = seg(self.claims(jti))
            sig = b64(rs_sign(k.k1, f"{h}.{p}".encode()))
            self.add(f"alg-wrong-type-{i}", "alg", f"{h}.{p}.{sig}", 401, "§5 alg missing or not a string")
        jti = self.jti("alg-missing")
        h = seg({"kid": "k1", "typ": "JWT"})
        p = seg(self.claims(jti))
        self.add("alg-missing", "alg", f"{h}.{p}.{b64(rs_sign(k.k1, f'{h}.{p}'.encode()))}", 401, "§5 alg missing")

    def signatures(self) -> None:
        k = self.keys
        jti = self.jti("sig")
        good = self.valid(jti)
        h, p, s = good.split(".")
        self.add("signature-empty", "signature", f"{h}.{p}.", 401, "§5 bad signature")
        self.add("signature-stripped", "signature", f"{h}.{p}", 401, "§5 compact JWS must have three parts")
        raw = base64.urlsafe_b64decode(s + "==")
        self.add("signature-truncated", "signature", f"{h}.{p}.{b64(raw[:-1])}", 401, "§5 bad signature")
        flipped = bytes([raw[0] ^ 1]) + raw[1:]
        self.add("signature-bit-flipped", "signature", f"{h}.{p}.{b64(flipped)}", 401, "§5 bad signature")
        self.add("signature-zero", "signature", f"{h}.{p}.{b64(bytes(len(raw)))}", 401, "§5 bad signature")
        tampered = seg(self.claims(jti, sub="admin", roles=["admin"]))
        self.add("payload-tampered", "signature", f"{h}.{tampered}.{s}", 401, "§5 bad signature")
        other = self.valid(self.jti("sig-other"))
        self.add("signature-from-another-token", "signature", f"{h}.{p}.{other.split('.')[2]}", 401, "§5 bad signature")
        self.signed("signature-by-unknown-key", "signature", 401, "§5 kid not in the key set",
                    header=self.header(kid="attacker"), key=k.attacker)
        self.signed("signature-same-kid-other-key", "signature", 401, "§5 bad signature (same kid, another key)",
                    key=k.attacker)
        self.signed("signature-same-kid-other-key-no-kid", "signature", 401, "§16 a kid-less token matches no key",
                    header=self.header(kid=None), key=k.attacker)
        self.signed("signature-valid-but-no-kid", "signature", 401,
                    "§16/§20 a kid-less token matches only a kid-less key; every key here has a kid",
                    header=self.header(kid=None))
        # ECDSA (ES256 endpoint)
        es = self.valid(self.jti("es"), "/es")
        eh, ep, es_sig = es.split(".")
        msg = f"{eh}.{ep}".encode()
        n = P256_ORDER.to_bytes(32, "big")
        for name, sig in (("r-s-zero", bytes(64)), ("r-s-order", n + n), ("r-zero", bytes(32) + base64.urlsafe_b64decode(es_sig + "==")[32:]),
                          ("s-zero", base64.urlsafe_b64decode(es_sig + "==")[:32] + bytes(32)),
                          ("short", bytes(8)), ("long", base64.urlsafe_b64decode(es_sig + "==") + b"\x00")):
            self.add(f"ecdsa-{name}", "signature", f"{eh}.{ep}.{b64(sig)}", 401,
                     "§7 CVE-2022-21449 psychic signatures / malformed r||s", endpoint="/es")
        der = k.ec.sign(msg, ec.ECDSA(hashes.SHA256()))
        self.add("ecdsa-der-signature", "signature", f"{eh}.{ep}.{b64(der)}", 401,
                 "§7 ES signatures are raw r||s, never DER", endpoint="/es")
        jti = self.jti("ecdsa-high-s")
        hs = seg(self.header("ES256", "e1"))
        ps = seg(self.claims(jti))
        r, s_ = decode_dss_signature(k.ec.sign(f"{hs}.{ps}".encode(), ec.ECDSA(hashes.SHA256())))
        high = r.to_bytes(32, "big") + (P256_ORDER - s_).to_bytes(32, "big")
        self.add("ecdsa-high-s-parity", "signature", f"{hs}.{ps}.{b64(high)}", 200,
                 "§7 Go's ecdsa.Verify accepts s and n-s alike (malleability, not a forgery): KrakenD accepts",
                 endpoint="/es", jti=jti)
        self.signed("ecdsa-other-key-same-kid", "signature", 401, "§5 bad signature", endpoint="/es",
                    header=self.header("ES256", "e1"), key=k.ec_attacker, alg="ES256")
        self.signed("es-token-with-rsa-kid", "signature", 401, "§7 key type must match the alg",
                    endpoint="/es", header=self.header("ES256", "k1"), key=k.ec, alg="ES256")
        self.signed("rsa-pss-on-rs256", "signature", 401, "§7 PS256 signature on an RS256 endpoint",
                    header=self.header("RS256"), key=k.k1, alg="PS256")

    def headers(self) -> None:
        k = self.keys
        for name, kid in (("traversal", "../../../../../etc/passwd"), ("traversal-encoded", "..%2F..%2Fkeys"),
                          ("sql", "k1' OR '1'='1' --"), ("sql-union", "x' UNION SELECT 'secret' --"),
                          ("very-long", "k" * 6000), ("nul", "k1\u0000"), ("bidi", "k1\u202e"),
                          ("space", "k1 "), ("url", "https://attacker.example/k1"), ("empty", "")):
            self.signed(f"kid-{name}-attacker-key", "header", 401, "§5 unknown kid (keys come only from the JWKS)",
                        header=self.header(kid=kid), key=k.attacker)
        for name, value in (("number", 1), ("array", ["k1"]), ("object", {"kid": "k1"})):
            self.signed(f"kid-{name}", "header", 401, "§5 kid must be a string", header=self.header(kid=value))
        attacker_jwk = public_jwk(k.attacker, "attacker")
        self.signed("jwk-embedded-attacker-key", "header", 401, "CVE-2018-0114: an embedded jwk is never trusted",
                    header=self.header(kid="attacker", jwk=attacker_jwk), key=k.attacker)
        self.signed("jwk-embedded-attacker-key-real-kid", "header", 401, "CVE-2018-0114 with the real kid",
                    header=self.header(jwk=public_jwk(k.attacker, "k1")), key=k.attacker)
        self.signed("jwk-embedded-real-signature", "header", 401, "§20 header_embedded_key (stricter than KrakenD)",
                    header=self.header(jwk=public_jwk(k.k1, "k1")), reason="header_embedded_key")
        for member, value in (("jku", "https://attacker.example/jwks.json"), ("jku", "http://127.0.0.1:1/keys"),
                              ("x5u", "https://attacker.example/cert.pem")):
            suffix = member + ("-loopback" if "127.0.0.1" in value else "")
            self.signed(f"{suffix}-attacker-signature", "header", 401, f"{member} is never fetched",
                        header=self.header(kid="attacker", **{member: value}), key=k.attacker)
            self.signed(f"{suffix}-real-signature", "header", 401, "§20 header_embedded_key (stricter than KrakenD)",
                        header=self.header(**{member: value}), reason="header_embedded_key")
        x5c = [k.attacker_cert_b64()]
        self.signed("x5c-attacker-cert", "header", 401, "x5c is never trusted", header=self.header(kid="attacker", x5c=x5c),
                    key=k.attacker)
        self.signed("x5c-attacker-cert-real-kid", "header", 401, "x5c is never trusted", header=self.header(x5c=x5c),
                    key=k.attacker)
        self.signed("x5c-real-signature", "header", 401, "§20 header_embedded_key (stricter than KrakenD)",
                    header=self.header(x5c=x5c), reason="header_embedded_key")
        self.signed("x5c-not-a-list", "header", 401, "§5 x5c must be a list of strings", header=self.header(x5c="abc"))
        for name, crit in (("unknown", ["exp"]), ("custom", ["http://example.com/ext"]), ("empty", []),
                           ("b64", ["b64"]), ("string", "b64")):
            extra = {"exp": self.now + 60, "http://example.com/ext": True} if name in ("unknown", "custom") else {}
            if name == "b64":
                extra = {"b64": True}
            self.signed(f"crit-{name}", "header", 401, "§5/§20 crit: KrakenD refuses unknown extensions, we refuse any",
                        header=self.header(crit=crit, **extra), reason="header_crit" if name != "string" else None)
        # RFC 7797 unencoded payload: sign over the raw payload
        jti = self.jti("b64-false")
        header = self.header(b64=False, crit=["b64"])
        body = js(self.claims(jti))
        h = seg(header)
        sig = rs_sign(k.k1, h.encode() + b"." + body)
        self.add("b64-false-unencoded-payload", "header", f"{h}.{seg(body)}.{b64(sig)}", 401, "§20 header_crit/b64")
        self.signed("b64-false-without-crit", "header", 401, "§20 header_b64 (stricter than KrakenD)",
                    header=self.header(b64=False), reason="header_b64")
        self.signed("b64-true-without-crit", "header", 401, "§20 header_b64 (stricter than KrakenD)",
                    header=self.header(b64=True), reason="header_b64")
        jti = self.jti("zip-deflate")
        deflated = zlib.compress(js(self.claims(jti)))[2:-4]
        token = compact(self.header(zip="DEF"), deflated, k.k1)
        self.add("zip-deflated-payload", "header", token, 401, "§20 header_zip", reason="header_zip")
        self.signed("zip-plain-payload", "header", 401, "§20 header_zip (stricter than KrakenD)",
                    header=self.header(zip="DEF"), reason="header_zip")
        inner = self.valid(self.jti("nested"))
        jti = self.jti("nested-jwt-cty")
        self.add("nested-jwt-cty", "header", compact(self.header(cty="JWT"), json.dumps(inner).encode(), k.k1), 401,
                 "§5 the payload must be a JSON object (no nested JWT)")
        self.signed("typ-jwe", "header", 200, "§7 typ/cty are not checked: KrakenD accepts, so do we",
                    header=self.header(typ="JWE"))

    def time_claims(self) -> None:
        now = self.now
        rows = [
            # (id, claim overrides, expected, why)
            ("exp-numeric-string", {"exp": str(now + 3600)}, 401, "§8/§20 numeric string date: claim_time_type"),
            ("nbf-numeric-string", {"nbf": str(now - 60)}, 401, "§8/§20 claim_time_type"),
            ("iat-numeric-string", {"iat": str(now - 60)}, 401, "§8/§20 claim_time_type"),
            ("exp-text", {"exp": "tomorrow"}, 401, "§8 NumericDate must be a number"),
            ("exp-iso-date", {"exp": "2999-01-01T00:00:00Z"}, 401, "§8 NumericDate must be a number"),
            ("exp-bool", {"exp": True}, 401, "§8 NumericDate must be a number"),
            ("exp-array", {"exp": [now + 3600]}, 401, "§8 NumericDate must be a number"),
            ("exp-object", {"exp": {"t": now + 3600}}, 401, "§8 NumericDate must be a number"),
            ("exp-past", {"exp": now - 120}, 401, "§8 expired beyond leeway"),
            ("exp-float-past", {"exp": now - 100.5}, 401, "§8 expired (floats are truncated)"),
            ("exp-negative", {"exp": -1}, 401, "§8 expired"),
            ("exp-zero", {"exp": 0}, 401, "§8 expired"),
            ("exp-huge-1e300", {"exp": 1e300}, 401, "§8 float64->int64 overflow is MinInt64 in Go: expired"),
            ("exp-int64-max", {"exp": 2**63 - 1}, 401, "§8 2^63-1 rounds to 2^63 as float64: overflow, expired"),
            ("nbf-future", {"nbf": now + 3600}, 401, "§8 not valid yet"),
            ("nbf-float-future", {"nbf": now + 3600.9}, 401, "§8 not valid yet"),
            ("iat-future", {"iat": now + 3600}, 401, "§8 issued in the future"),
            ("iat-huge-future", {"iat": 9e15}, 401, "§8 issued in the future"),
            # KrakenD verdicts that accept (parity, spec §8)
            ("exp-float-future-parity", {"exp": now + 3600.75}, 200, "§8 JSON numbers, truncated: accepted"),
            ("exp-far-future-parity", {"exp": 32503680000}, 200, "§8 any future exp is accepted"),
            ("exp-null-parity", {"exp": None}, 200, "§8 null counts as absent; a token without exp never expires"),
            ("exp-missing-parity", {"exp": _DROP}, 200,
             "§8/§20 exp is optional in KrakenD and no CE setting requires it: accepted"),
            ("nbf-null-parity", {"nbf": None}, 200, "§8 null counts as absent"),
            ("iat-null-parity", {"iat": None}, 200, "§8 null counts as absent"),
            ("nbf-negative-parity", {"nbf": -1}, 200, "§8 nbf in the past"),
            ("iat-negative-parity", {"iat": -1}, 200, "§8 iat in the past"),
            ("nbf-huge-parity", {"nbf": 1e300}, 200, "§8 overflow to MinInt64 puts nbf in the far past"),
            ("iat-float-parity", {"iat": now - 0.5}, 200, "§8 floats are accepted"),
        ]
        for case_id, overrides, expect, why in rows:
            reason = "claim_time_type" if "numeric-string" in case_id else None
            self.signed(case_id, "time", expect, why, reason=reason, **overrides)
        jti = self.jti("exp-1e400")
        body = js(self.claims(jti)).replace(b'"exp":%d' % (now + 3600), b'"exp":1e400')
        self.add("exp-1e400", "time", compact(self.header(), body, self.keys.k1), 401,
                 "§8 a number beyond float64 is a JSON error")

    def issuer_audience(self) -> None:
        rows = [
            ("iss-wrong", {"iss": "https://evil.example/P2hardeningProject"}, 401),
            ("iss-prefix-longer", {"iss": ISSUER + "Evil"}, 401),
            ("iss-prefix-shorter", {"iss": ISSUER[:-3]}, 401),
            ("iss-prefix-path", {"iss": ISSUER + "/extra"}, 401),
            ("iss-trailing-slash", {"iss": ISSUER + "/"}, 401),
            ("iss-case", {"iss": ISSUER.upper()}, 401),
            ("iss-leading-space", {"iss": " " + ISSUER}, 401),
            ("iss-missing", {"iss": _DROP}, 401),
            ("iss-null", {"iss": None}, 401),
            ("iss-number", {"iss": 1}, 401),
            ("iss-array", {"iss": [ISSUER]}, 401),
            ("aud-missing-one", {"aud": ["api"]}, 401),
            ("aud-missing-other", {"aud": ["billing"]}, 401),
            ("aud-string-one", {"aud": "api"}, 401),
            ("aud-missing", {"aud": _DROP}, 401),
            ("aud-empty", {"aud": []}, 401),
            ("aud-case", {"aud": ["API", "billing"]}, 401),
            ("aud-duplicate-one", {"aud": ["api", "api"]}, 401),
            ("aud-number", {"aud": [1, "api", "billing"]}, 401),
            ("aud-joined", {"aud": "api billing"}, 401),
            ("aud-superset-parity", {"aud": ["x", "billing", "api"]}, 200),
            ("sub-number", {"sub": 1}, 401),
            ("jti-number-no-issuer-check", {"jti": 7}, 401),
        ]
        for case_id, overrides, expect in rows:
            why = "§8 exact issuer, all-of audience, typed registered claims" if expect == 401 else \
                "§8 every configured audience present: extra audiences are fine"
            self.signed(case_id, "iss-aud", expect, why, **overrides)

    def structure(self) -> None:
        k = self.keys
        jti = self.jti("dup-header")
        body = seg(self.claims(jti))
        for name, raw in (("none-then-rs", b'{"alg":"none","alg":"RS256","kid":"k1"}'),
                          ("rs-then-none", b'{"alg":"RS256","alg":"none","kid":"k1"}'),
                          ("kid", b'{"alg":"RS256","kid":"attacker","kid":"k1"}'),
                          ("case-variant", b'{"alg":"RS256","ALG":"none","kid":"k1"}')):
            h = b64(raw)
            sig = b64(rs_sign(k.k1, f"{h}.{body}".encode()))
            expect = 200 if name == "case-variant" else 401
            why = ("§7 member names are case-sensitive: ALG is just another member" if expect == 200
                   else "§7/§20 duplicate header members: header_duplicate_key")
            self.add(f"duplicate-header-{name}", "structure", f"{h}.{body}.{sig}", expect, why,
                     jti=jti if expect == 200 else "", reason="header_duplicate_key" if expect == 401 else None)
        for name, raw in (("sub", b'{"sub":"user","sub":"admin","iss":"%s","aud":["api","billing"],"jti":"%s"}'),
                          ("iss", b'{"iss":"https://evil.example","iss":"%s","aud":["api","billing"],"jti":"%s"}'),
                          ("nested", b'{"iss":"%s","aud":["api","billing"],"jti":"%s","t":{"r":1,"r":2}}')):
            jti = self.jti(f"dup-payload-{name}")
            payload = raw % (ISSUER.encode(), jti.encode())
            if name == "nested":  # go-jose checks the top-level members only; nested ones: last wins
                self.add("duplicate-payload-nested-parity", "structure", compact(self.header(), payload, k.k1), 200,
                         "§7 only top-level duplicates are refused (go-jose's decoder); nested: last wins", jti=jti)
                continue
            self.add(f"duplicate-payload-{name}", "structure", compact(self.header(), payload, k.k1), 401,
                     "§7/§20 duplicate JSON members in the payload")
        for name, raw_header in (("not-json", b"not json"), ("array", b'["RS256"]'), ("string", b'"RS256"'),
                                 ("null", b"null"), ("number", b"1"), ("truncated", b'{"alg":"RS256"'),
                                 ("trailing-data", b'{"alg":"RS256","kid":"k1"} x'), ("bom", b'\xef\xbb\xbf{"alg":"RS256","kid":"k1"}'),
                                 ("invalid-utf8", b'{"alg":"RS256","kid":"k1\xff"}'), ("nan", b'{"alg":"RS256","kid":"k1","x":NaN}')):
            jti = self.jti(f"header-{name}")
            h = b64(raw_header)
            p = seg(self.claims(jti))
            sig = b64(rs_sign(k.k1, f"{h}.{p}".encode()))
            self.add(f"header-{name}", "structure", f"{h}.{p}.{sig}", 401, "§5 the header must be a JSON object")
        h = seg(self.header())
        for name, payload in (("array", b'[{"iss":"%s"}]' % ISSUER.encode()), ("string", b'"admin"'),
                              ("number", b"1"), ("null", b"null"), ("empty", b""), ("not-json", b"{iss:1}"),
                              ("true", b"true")):
            self.add(f"payload-{name}", "structure", compact(self.header(), payload, k.k1), 401,
                     "§5/§8 the payload must be a JSON object with the configured iss/aud")
        deep = b'{"iss":"%s","aud":["api","billing"],"x":' % ISSUER.encode() + b"[" * 200 + b"]" * 200 + b"}"
        self.add("payload-nesting-200", "structure", compact(self.header(), deep, k.k1), 401,
                 "token_json_depth: claims nest deeper than the gateway's limit", reason="token_json_depth")
        h_deep = b64(b'{"alg":"RS256","kid":"k1","x":' + b"[" * 600 + b"]" * 600 + b"}")
        jti = self.jti("header-deep")
        p = seg(self.claims(jti))
        self.add("header-nesting-600", "structure", f"{h_deep}.{p}.{b64(rs_sign(k.k1, f'{h_deep}.{p}'.encode()))}", 401,
                 "token_json_depth: header nests deeper than the gateway's limit", reason="token_json_depth")
        # base64 spelling
        jti = self.jti("b64")
        good = self.valid(jti)
        h, p, s = good.split(".")
        if len(p) % 4 in (0, 1):
            good = self.valid(jti, pad="x")
            h, p, s = good.split(".")
        self.add("noncanonical-base64-signature", "structure", f"{h}.{p}.{noncanonical(s)}", 401,
                 "token_base64_noncanonical (Go ignores unused bits; one token, one spelling)",
                 reason="token_base64_noncanonical")
        self.add("noncanonical-base64-payload", "structure", f"{h}.{noncanonical(p)}.{s}", 401,
                 "token_base64_noncanonical", reason="token_base64_noncanonical")
        std = std_b64(base64.urlsafe_b64decode(s + "=="))
        assert "+" in std or "/" in std
        self.add("plus-slash-signature", "structure", f"{h}.{p}.{std}", 401, "§4.5 base64url only: + and / are illegal")
        self.add("padding-inside-segment", "structure", f"{h}.{p[:8]}={p[8:]}.{s}", 401, "§4.5 = only at the end")
        self.add("percent-encoded-token", "structure", f"{h}.{p}.{s}".replace("-", "%2D").replace("_", "%5F"), 401,
                 "§4 no URL decoding of the header value")
        for name, pad in (("padded", True), ("over-padded", False)):
            jti2 = self.jti(name)
            t = self.valid(jti2, pad="xy")
            hh, pp, ss = t.split(".")
            fill = (lambda x: x + "=" * (-len(x) % 4)) if pad else (lambda x: x + "===")
            self.add(f"{name}-segments-parity", "structure", ".".join(fill(x) for x in (hh, pp, ss)), 200,
                     "§4.5/§20 go-jose trims trailing = before decoding: KrakenD accepts", jti=jti2)
        jti = self.jti("signed-padded")
        hh, pp = seg(self.header()), seg(self.claims(jti, pad="xy"))
        hh, pp = hh + "=" * (-len(hh) % 4), pp + "=" * (-len(pp) % 4)
        assert hh.endswith("=") or pp.endswith("=")
        sig = b64(rs_sign(k.k1, f"{hh}.{pp}".encode()))
        self.add("signed-over-padded-segments", "structure", f"{hh}.{pp}.{sig}", 401,
                 "§4.5 the signature covers the unpadded segments")
        # part counts
        self.add("one-part", "structure", h, 401, "§5 three parts")
        self.add("four-parts", "structure", f"{h}.{p}.{s}.{s}", 401, "§5 three parts")
        self.add("four-parts-empty-last", "structure", f"{h}.{p}.{s}.", 401, "§5 three parts")
        jwe_header = seg({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "k1"})
        self.add("five-parts-jwe", "structure", f"{jwe_header}.{b64(b'k' * 256)}.{b64(b'iv' * 6)}.{b64(b'ct')}.{b64(b't' * 16)}",
                 401, "§7 JWE is not supported")
        self.add("dots-only", "structure", "..", 401, "§5 three parts")
        self.add("a-bad-token", "structure", "a.bad.token", 401, "KrakenD CE spec jwt_2")
        self.add("empty-segments", "structure", f".{p}.{s}", 401, "§5 empty header")
        # JWS JSON serialization (§4.5, §20: KrakenD accepts it)
        jti = self.jti("jws-json")
        protected = seg(self.header())
        payload = seg(self.claims(jti))
        sig = b64(rs_sign(k.k1, f"{protected}.{payload}".encode()))
        flat = json.dumps({"protected": protected, "payload": payload, "signature": sig}, separators=(",", ":"))
        self.add("jws-json-flattened-parity", "structure", flat, 200, "§4.5/§20 JWS JSON serialization: accepted",
                 jti=jti)
        jti = self.jti("jws-json-general")
        payload = seg(self.claims(jti))
        sig = b64(rs_sign(k.k1, f"{protected}.{payload}".encode()))
        general = json.dumps({"payload": payload, "signatures": [{"protected": protected, "signature": sig}]},
                             separators=(",", ":"))
        self.add("jws-json-general-parity", "structure", general, 200, "§4.5 general serialization, one signature",
                 jti=jti)
        jti = self.jti("jws-json-two")
        payload = seg(self.claims(jti))
        sig = b64(rs_sign(k.k1, f"{protected}.{payload}".encode()))
        two = json.dumps({"payload": payload, "signatures": [{"protected": protected, "signature": sig},
                                                             {"protected": protected, "signature": sig}]},
                         separators=(",", ":"))
        self.add("jws-json-two-signatures", "structure", two, 401, "go-jose: too many signatures")
        jti = self.jti("jws-json-unprotected")
        bare = seg({"alg": "RS256"})
        payload = seg(self.claims(jti))
        sig = b64(rs_sign(k.k1, f"{bare}.{payload}".encode()))
        unprot = json.dumps({"protected": bare, "header": {"kid": "k1"}, "payload": payload, "signature": sig},
                            separators=(",", ":"))
        self.add("jws-json-unprotected-header", "structure", unprot, 401, "header_unprotected (stricter than KrakenD)",
                 reason="header_unprotected")
        unprot_alg = json.dumps({"header": {"alg": "none", "kid": "k1"}, "payload": payload, "signature": ""},
                                separators=(",", ":"))
        self.add("jws-json-unprotected-alg-none", "structure", unprot_alg, 401, "alg none in an unprotected header")
        tampered = json.dumps({"protected": protected, "payload": seg(self.claims(jti, sub="admin")), "signature": sig},
                              separators=(",", ":"))
        self.add("jws-json-tampered", "structure", tampered, 401, "§5 bad signature")
        self.add("jws-json-empty-signatures", "structure", '{"payload":"e30","signatures":[]}', 401, "no signature")
        self.add("jws-json-not-object", "structure", '["a","b"]', 401, "§5 not a JWS")
        self.add("json-object-not-jws", "structure", '{"alg":"none"}', 401, "missing payload")
        # whitespace inside the token (§4.5: removed before parsing, KrakenD accepts)
        for name, sep in (("spaces", " "), ("tabs", "\t"), ("nbsp-utf8", "\u00a0"), ("ideographic-space", "\u3000"),
                          ("line-separator", "\u2028")):
            jti2 = self.jti(f"ws-{name}")
            t = self.valid(jti2)
            hh, pp, ss = t.split(".")
            spaced = f"{hh[:10]}{sep}{hh[10:]}.{pp[:7]}{sep}{sep}{pp[7:]}.{ss[:20]}{sep}{ss[20:]}"
            self.add(f"whitespace-{name}-parity", "structure", spaced, 200,
                     "§4.5 every unicode.IsSpace rune is removed before parsing", jti=jti2,
                     headers=[("Authorization", ("Bearer " + spaced).encode("utf-8"))])
        jti2 = self.jti("ws-raw-a0")
        t = self.valid(jti2)
        hh, pp, ss = t.split(".")
        self.add("whitespace-raw-0xa0-byte", "structure", t, 401,
                 "§4.5 a raw 0xA0 byte is not valid UTF-8, hence not whitespace",
                 headers=[("Authorization", b"Bearer " + hh.encode() + b"\xa0." + pp.encode() + b"." + ss.encode())])
        jti2 = self.jti("ws-zwsp")
        t = self.valid(jti2)
        hh, pp, ss = t.split(".")
        self.add("zero-width-space-inside", "structure", t, 401, "U+200B is not unicode.IsSpace",
                 headers=[("Authorization", f"Bearer {hh}\u200b.{pp}.{ss}".encode("utf-8"))])

    def sized(self, jti: str, length: int) -> str:
        """A valid token of exactly `length` characters."""
        k = self.keys
        for extra in range(4):
            header = self.header(**({"x": "y" * extra} if extra else {}))
            h = seg(header)
            base = self.claims(jti, pad="")
            probe = compact(header, base, k.k1)
            need = length - len(probe)
            guess = max(0, int(need * 3 / 4) - 3)
            for n in range(guess, guess + 8):
                body = self.claims(jti, pad="x" * n)
                p = seg(body)
                total = len(h) + len(p) + 2 + len(probe.split(".")[2])
                if total == length:
                    token = compact(header, body, k.k1)
                    assert len(token) == length
                    return token
        raise AssertionError(f"cannot build a token of {length} characters")

    def sizes(self) -> None:
        from krakend_mitm.auth.jws import MAX_TOKEN_LENGTH

        jti = self.jti("size-at-limit")
        self.add("size-at-limit-parity", "size", self.sized(jti, MAX_TOKEN_LENGTH), 200,
                 f"a valid token of exactly {MAX_TOKEN_LENGTH} characters (the limit) is accepted", jti=jti)
        jti = self.jti("size-over-limit")
        self.add("size-16KiB-plus-one", "size", self.sized(jti, MAX_TOKEN_LENGTH + 1), 401,
                 "token_too_large: rejected before parsing", reason="token_too_large")
        jti = self.jti("size-64KiB")
        self.add("size-64KiB", "size", self.sized(jti, 64 * 1024), 401, "token_too_large", reason="token_too_large")
        jti = self.jti("size-1MiB")
        self.add("size-1MiB", "size", self.sized(jti, 1024 * 1024), 401,
                 "token_too_large, unless mitmproxy's HTTP limits answer first (never 2xx/5xx)",
                 may_be_refused_by_http=True)
        h, p, s = self.valid(self.jti("ws16")).split(".")
        spaced = f"{h}.{p}{' ' * MAX_TOKEN_LENGTH}.{s}"
        self.add("size-16KiB-whitespace", "size", spaced, 401, "the limit counts the raw value, whitespace included",
                 reason="token_too_large")

    def transport(self) -> None:
        def valid(name: str) -> tuple[str, str]:
            jti = self.jti(name)
            return jti, self.valid(jti)

        ok = [
            ("bearer-lowercase", lambda t: [("Authorization", f"bearer {t}")]),
            ("bearer-uppercase", lambda t: [("Authorization", f"BEARER {t}")]),
            ("bearer-mixed-case", lambda t: [("Authorization", f"BeArEr {t}")]),
            ("no-scheme", lambda t: [("Authorization", t)]),
            ("bearer-two-spaces", lambda t: [("Authorization", f"Bearer  {t}")]),
            ("bearer-leading-spaces", lambda t: [("Authorization", f"   Bearer {t}")]),
            ("bearer-trailing-spaces", lambda t: [("Authorization", f"Bearer {t}   ")]),
            ("header-name-lowercase", lambda t: [("authorization", f"Bearer {t}")]),
            ("two-authorization-first-valid", lambda t: [("Authorization", f"Bearer {t}"),
                                                         ("Authorization", "Bearer a.bad.token")]),
            ("empty-authorization-valid-cookie", lambda t: [("Authorization", ""), ("Cookie", f"access_token={t}")]),
            ("cookie-only", lambda t: [("Cookie", f"access_token={t}")]),
            ("cookie-quoted", lambda t: [("Cookie", f'access_token="{t}"')]),
            ("cookie-among-others", lambda t: [("Cookie", f"a=1; access_token={t}; b=2")]),
            ("header-valid-cookie-invalid", lambda t: [("Authorization", f"Bearer {t}"),
                                                       ("Cookie", "access_token=a.bad.token")]),
        ]
        for name, build in ok:
            jti, token = valid(name)
            self.add(f"transport-{name}-parity", "transport", token, 200, "§4 table (KrakenD's extraction)", jti=jti,
                     headers=build(token))
        bad = [
            ("bearer-tab", lambda t: [("Authorization", f"Bearer\t{t}")], "§4 only `Bearer ` + one ASCII space is stripped"),
            ("bearer-no-space", lambda t: [("Authorization", f"Bearer{t}")], "§4 the whole value is the token"),
            ("scheme-token", lambda t: [("Authorization", f"Token {t}")], "§4 the whole value is the token"),
            ("scheme-jwt", lambda t: [("Authorization", f"JWT {t}")], "§4 the whole value is the token"),
            ("bearer-twice", lambda t: [("Authorization", f"Bearer Bearer {t}")], "§4 stripped once"),
            ("bearer-comma-list", lambda t: [("Authorization", f"Bearer {t}, Bearer {t}")], "§4 one value"),
            ("two-authorization-first-invalid", lambda t: [("Authorization", "Bearer a.bad.token"),
                                                           ("Authorization", f"Bearer {t}")], "§4 first header only"),
            ("two-authorization-first-empty", lambda t: [("Authorization", "Bearer"),
                                                         ("Authorization", f"Bearer {t}")], "§4 first header only"),
            ("basic-with-valid-cookie", lambda t: [("Authorization", "Basic dXNlcjpwYXNz"),
                                                   ("Cookie", f"access_token={t}")], "§4 no cookie fallback"),
            ("bearer-only-with-valid-cookie", lambda t: [("Authorization", "Bearer"),
                                                         ("Cookie", f"access_token={t}")], "§4 `Bearer` is a token"),
            ("header-invalid-cookie-valid", lambda t: [("Authorization", "Bearer " + t[:-4]),
                                                       ("Cookie", f"access_token={t}")], "§4 a present header wins"),
            ("other-cookie-name", lambda t: [("Cookie", f"DS={t}")], "§4 default cookie_key is access_token"),
            ("cookie-name-case", lambda t: [("Cookie", f"Access_Token={t}")], "§4 cookie names are exact"),
            ("token-in-x-custom-header", lambda t: [("X-Auth-Token", t)], "§4 only auth_header_name"),
            ("proxy-authorization", lambda t: [("Proxy-Authorization", f"Bearer {t}")], "§4 only auth_header_name"),
        ]
        for name, build, why in bad:
            _jti, token = valid(name)
            self.add(f"transport-{name}", "transport", token, 401, why, headers=build(token))
        _jti, token = valid("query")
        self.cases.append(Case("transport-query-string-only", "transport", "/rs", [], 401,
                               "§4 no query-string extraction", tokens=[token]))
        self.cases[-1].query = f"?access_token={token}"  # type: ignore[attr-defined]
        self.add("transport-no-token", "transport", None, 401, "§5 Token not found", headers=[])

    def descope(self) -> None:
        self.signed("descope-refresh-token-dsr", "descope", 401, "descope.md §9 descope_refresh_token",
                    drn="DSR", reason="descope_refresh_token")
        jti = self.jti("dsr-cookie")
        token = self.valid(jti, drn="DSR")
        self.add("descope-refresh-token-in-cookie", "descope", token, 401, "descope.md §9 descope_refresh_token",
                 headers=[("Cookie", f"access_token={token}")], reason="descope_refresh_token")
        self.signed("descope-dpop-bound", "descope", 401, "descope.md §9 descope_dpop_bound",
                    cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, reason="descope_dpop_bound")
        self.signed("descope-access-key-session-parity", "descope", 200, "access-key session JWTs validate like sessions",
                    drn="DS", roles=["svc"], tenants={"T1": {"roles": ["admin"]}})
        self.signed("descope-nsec-admin-parity", "descope", 200, "nsec claims are plain claims (never authorise on them)",
                    nsec={"roles": ["admin"]})

    def jwks_side(self) -> None:
        k = self.keys
        self.signed("jwks-rsa-1024-parity", "jwks", 200, "descope.md §10.5 rsa_1024: KrakenD accepts small RSA keys",
                    endpoint="/jwks/weak", header=self.header(kid="weak"), key=k.weak)
        self.signed("jwks-use-enc-parity", "jwks", 200, "§7 / descope.md §10.5 use_enc: JWK use and alg are ignored",
                    endpoint="/jwks/enc", header=self.header(kid="enc"), key=k.enc)
        self.signed("jwks-oct-key-for-rs-token", "jwks", 401, "§7 an oct key never verifies RS256 (oct_key fault)",
                    endpoint="/jwks/oct", header=self.header(kid="k1"), key=k.k1)
        self.signed("jwks-oct-key-hs256-token", "jwks", 401, "§7 exact alg match before the key: HS256 on RS256",
                    endpoint="/jwks/oct", header=self.header("HS256", "k1"), key=k.oct, alg="HS256")
        self.signed("jwks-oct-set-rsa-kid-parity", "jwks", 200, "a set mixing oct and RSA keys: the kid selects",
                    endpoint="/jwks/oct", header=self.header(kid="k2"), key=k.k2)
        self.signed("jwks-unknown-kty-fails-whole-set", "jwks", 401, "§14 one unparsable key fails the whole set",
                    endpoint="/jwks/broken-kty")
        self.signed("jwks-off-curve-key-fails-whole-set", "jwks", 401, "§14 one unparsable key fails the whole set",
                    endpoint="/jwks/broken-curve")
        self.signed("jwks-private-key-member-unusable", "jwks", 401, "§5/§7 a JWK with private material is unusable",
                    endpoint="/jwks/private", header=self.header(kid="priv"), key=k.priv)
        self.signed("jwks-private-key-others-fine-parity", "jwks", 200,
                    "descope.md §10.5 private_member: only that key is unusable", endpoint="/jwks/private")
        self.signed("hs-endpoint-rsa-jwks-rs-token", "jwks", 401, "§7 alg mismatch on the HS endpoint",
                    endpoint="/hs")


class _Drop:
    def __repr__(self) -> str:
        return "<drop>"


_DROP = _Drop()


def build_corpus(keys: CorpusKeys | None = None, now: float | None = None) -> list[Case]:
    import time

    return Corpus(keys or corpus_keys(), time.time() if now is None else now).build()


def attack_config(port: int, jwks_base: str, backend_url: str, fault_url: str, refused_port: int) -> dict:
    """The attack gateway: one endpoint per key-set situation, each backend path carrying the
    token's jti, plus the backend-fault endpoints."""
    endpoints = []
    for path, (alg, jwks_path, extra) in ENDPOINTS.items():
        validator = {"alg": alg, "jwk_url": jwks_base + jwks_path, "disable_jwk_security": True, "cache": True,
                     **extra}
        endpoints.append({
            "endpoint": path, "method": "GET",
            "backend": [{"host": [backend_url], "url_pattern": hit_prefix(path) + "{JWT.jti}"}],
            "extra_config": {"auth/validator": validator},
        })
    for name, host, pattern, timeout in (
        ("refused", f"http://127.0.0.1:{refused_port}", "/x", None),
        ("reset", fault_url, "/reset", None),
        ("close", fault_url, "/close", None),
        ("slow", fault_url, "/slow/1500", "300ms"),
        ("malformed", fault_url, "/malformed", None),
        ("ok", fault_url, "/ok", None),
    ):
        endpoint = {"endpoint": f"/bf/{name}", "method": "GET", "backend": [{"host": [host], "url_pattern": pattern}]}
        if timeout:
            endpoint["timeout"] = timeout
        endpoints.append(endpoint)
    return {"version": 3, "port": port, "timeout": "3s", "endpoints": endpoints}
