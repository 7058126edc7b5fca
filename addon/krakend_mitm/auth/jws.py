"""Token extraction and JWS handling as krakend-jose + go-jose v3 do it (spec §4, §5, §7, §20).

* `extract_token(headers, header_name, cookie_key)`: first value of the header, `Bearer ` stripping,
  cookie fallback only when the header is absent or empty, Go's cookie parsing.
* `parse_jws(token)`: every Unicode space removed, compact or JWS JSON serialization (flattened or
  general), base64url with optional `=` padding, signing input re-encoded without padding, duplicate
  member names and wrongly typed `alg`/`kid`/`crit` rejected.
* `header_policy(parsed)`: the gateway's stricter header rules (reason ids of spec §20).
* `verify_signature(parsed, alg, key)`: PyJWT algorithm objects with go-jose's key/alg pairing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import jwt.algorithms as _pyjwt_alg
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from krakend_mitm.auth import _go
from krakend_mitm.auth.jwks import MSG_CRYPTO, MSG_UNSUPPORTED_KEY, JWKEntry

ALGORITHMS = ("EdDSA", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
              "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")

MSG_TOKEN_NOT_FOUND = "Token not found"
MSG_ALG_INVALID = "algorithm is invalid"
MSG_THREE_PARTS = "go-jose/go-jose: compact JWS format must have three parts"

# Limits (SECURITY.md "Limits"). KrakenD has neither; both are refusals of the gateway's own.
MAX_TOKEN_LENGTH = 16 * 1024
"""Longest token (characters, after `Bearer ` is stripped, before any parsing) the gateway looks at.
16 KiB is twice the 8 KiB header buffers common in front of gateways (nginx, many CDNs) and the
per-header limit of AWS ALB, so a longer token could not reach production anyway; Descope session
tokens are 1-3 KiB, browser cookies are capped at 4 KiB. Reason id `token_too_large`."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects accepted in a token's header or payload (Go allows 10000).
Real claims nest 3-4 levels (`tenants.<id>.roles`); the bound keeps every later step that walks
claims (logging, `propagate_claims`, `{JWT.x}` rendering, mitmweb metadata) far from Python's
recursion limit. Reason id `token_json_depth`."""


class JWSError(ValueError):
    """A token go-jose refuses. `message` is go-jose's text (without `Unable to validate the
    token: `); `reason_id` is set when the refusal is one of the gateway's own (§20)."""

    def __init__(self, message: str, reason_id: str | None = None, *, gateway_only: bool = False):
        super().__init__(message)
        self.message = message
        self.reason_id = reason_id
        self.gateway_only = gateway_only  # True: KrakenD would not refuse this token here


# =============================================================================================
# extraction


def _first_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


_COOKIE_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _valid_cookie_value_char(c: str) -> bool:
    o = ord(c)
    return 0x20 < o < 0x7F and c not in '";\\'


def cookie_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """Go's `(*http.Request).Cookie(name)`: the first valid cookie of that name in any Cookie
    header; surrounding double quotes are removed; cookies with invalid bytes are skipped."""
    for key, line in headers:
        if key.lower() != "cookie":
            continue
        for part in line.strip(" \t").split(";"):
            part = part.strip(" \t")
            if not part:
                continue
            cname, _, value = part.partition("=")
            cname = cname.strip(" \t")
            if cname != name or not cname or any(c not in _COOKIE_NAME_CHARS for c in cname):
                continue
            if len(value) > 1 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            if all(_valid_cookie_value_char(c) for c in value):
                return value
    return None


@dataclass(frozen=True)
class Extracted:
    token: str
    source: str  # "header:<Name>" or "cookie:<name>"


def extract_token(headers: Iterable[tuple[str, str]], header_name: str = "Authorization",
                  cookie_key: str = "access_token") -> Extracted | None:
    """The token of a request, or None when there is none (spec §4)."""
    headers = list(headers)
    raw = _first_header(headers, header_name or "Authorization")
    if raw is not None:
        raw = raw.strip(" \t")  # HTTP/1.1 field values are trimmed
        if raw:
            if len(raw.encode("utf-8", "surrogateescape")) > 7 and raw[:7].lower() == "bearer ":
                raw = raw[7:]
            return Extracted(raw, f"header:{header_name or 'Authorization'}")
    value = cookie_value(headers, cookie_key or "access_token")
    if value is None:
        return None
    return Extracted(value, f"cookie:{cookie_key or 'access_token'}")


# =============================================================================================
# parsing


@dataclass(frozen=True)
class ParsedJWS:
    header: dict  # the protected header
    payload: bytes
    signature: bytes
    signing_input: bytes
    serialization: str  # "compact" | "flattened" | "general"
    unprotected: dict | None = None
    signature_count: int = 1

    @property
    def alg(self) -> str:
        value = self.header.get("alg")
        if value is None and self.unprotected:
            value = self.unprotected.get("alg")
        return value if isinstance(value, str) else ""

    def merged(self, name: str) -> Any:
        if name in self.header and self.header[name] is not None:
            return self.header[name]
        if self.unprotected:
            return self.unprotected.get(name)
        return None


def _decode_segment(segment: str) -> bytes:
    try:
        data = _go.jose_b64decode(segment)
    except _go.GoBase64Error as err:
        raise JWSError(str(err)) from None
    core = segment.rstrip("=")
    if len(core) % 4 and _go.b64url_nopad(data) != core:
        # Go decodes non-zero unused bits silently; the same token then has several spellings
        raise JWSError("a token segment is not canonical base64url (non-zero unused bits)",
                       "token_base64_noncanonical", gateway_only=True)
    return data


def _depth_error() -> JWSError:
    return JWSError(f"the token's JSON nests deeper than {MAX_JSON_DEPTH} levels", "token_json_depth",
                    gateway_only=True)


def _load_json(raw: bytes | str) -> tuple[Any, Any]:
    try:
        value, members = _go.go_json_loads(raw)
    except _go.GoJSONError as err:
        if str(err) == "exceeded max depth":
            raise _depth_error() from None
        raise JWSError(str(err)) from None
    if _go.raw_nesting_exceeds(raw, value, MAX_JSON_DEPTH):
        raise _depth_error()
    return value, members


def _parse_header(raw: bytes) -> dict:
    header, _members = _load_json(raw)
    if header is None:
        return {}
    if not isinstance(header, dict):
        raise JWSError(f"json: cannot unmarshal {_go.go_kind(header)} into Go value of type jose.rawHeader")
    dup = _go.duplicate_key(header)
    if dup:
        raise JWSError(f"json: duplicate key '{dup}' in object", "header_duplicate_key")
    _sanitize_header(header)
    return header


def _sanitize_header(header: dict) -> None:
    """go-jose `rawHeader.sanitized()`: typed members must have their type."""
    for name, what in (("alg", "algorithm"), ("kid", "key ID"), ("nonce", "nonce")):
        value = header.get(name)
        if value is not None and not isinstance(value, str):
            raise JWSError(
                f"failed to unmarshal {what}: json: cannot unmarshal {_go.go_kind(value)} into Go value of type string: "
                f"{_go.go_json_dumps(value)!r}"
            )
    x5c = header.get("x5c")
    if x5c is not None and (not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c)):
        raise JWSError("failed to unmarshal x5c header: json: cannot unmarshal into Go value of type []string")
    jwk = header.get("jwk")
    if jwk is not None and not isinstance(jwk, dict):
        raise JWSError(f"failed to unmarshal JWK: json: cannot unmarshal {_go.go_kind(jwk)} into Go value of type jose.rawJSONWebKey")


def parse_jws(token: str) -> ParsedJWS:
    """go-jose v3 `jwt.ParseSigned` (no verification). A token longer than MAX_TOKEN_LENGTH is
    refused before anything else (reason id `token_too_large`)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise JWSError(f"the token is longer than {MAX_TOKEN_LENGTH} characters ({len(token)})", "token_too_large",
                       gateway_only=True)
    text = _go.strip_go_whitespace(token)
    if text.startswith("{"):
        return _parse_json_serialization(text)
    parts = text.split(".")
    if len(parts) != 3:
        raise JWSError(MSG_THREE_PARTS)
    raw_header = _decode_segment(parts[0])
    payload = _decode_segment(parts[1])
    signature = _decode_segment(parts[2])
    header = _parse_header(raw_header) if raw_header else {}
    signing_input = (_go.b64url_nopad(raw_header) + "." + _go.b64url_nopad(payload)).encode("ascii")
    return ParsedJWS(header, payload, signature, signing_input, "compact")


def _json_bytes(obj: dict, name: str) -> bytes | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise JWSError(f"json: cannot unmarshal {_go.go_kind(value)} into Go value of type string")
    if value == "":
        return b""
    return _decode_segment(value)


def _parse_json_serialization(text: str) -> ParsedJWS:
    doc, _members = _load_json(text)
    if not isinstance(doc, dict):
        raise JWSError(f"json: cannot unmarshal {_go.go_kind(doc)} into Go value of type jose.rawJSONWebSignature")
    dup = _go.duplicate_key(doc)
    if dup:
        raise JWSError(f"json: duplicate key '{dup}' in object")
    payload = _json_bytes(doc, "payload")
    signatures = doc.get("signatures")
    if signatures is not None and not isinstance(signatures, list):
        raise JWSError(f"json: cannot unmarshal {_go.go_kind(signatures)} into Go value of type []jose.rawSignatureInfo")
    if payload is None:
        raise JWSError("go-jose/go-jose: missing payload in JWS message")
    if signatures:
        entries = signatures
        serialization = "general"
    else:
        entries = [doc]
        serialization = "flattened"
    parsed_sigs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise JWSError(f"json: cannot unmarshal {_go.go_kind(entry)} into Go value of type jose.rawSignatureInfo")
        dup = _go.duplicate_key(entry)
        if dup:
            raise JWSError(f"json: duplicate key '{dup}' in object")
        raw_protected = _json_bytes(entry, "protected")
        unprotected = entry.get("header")
        if unprotected is not None and not isinstance(unprotected, dict):
            raise JWSError(f"json: cannot unmarshal {_go.go_kind(unprotected)} into Go value of type jose.rawHeader")
        if isinstance(unprotected, dict):
            dup = _go.duplicate_key(unprotected)
            if dup:
                raise JWSError(f"json: duplicate key '{dup}' in object", "header_duplicate_key")
            if unprotected.get("nonce") not in (None, ""):
                raise JWSError("go-jose/go-jose: Nonce parameter included in unprotected header")
            _sanitize_header(unprotected)
        header = _parse_header(raw_protected) if raw_protected else {}
        signature = _json_bytes(entry, "signature") or b""
        protected_b64 = _go.b64url_nopad(raw_protected) if raw_protected is not None else ""
        signing_input = (protected_b64 + "." + _go.b64url_nopad(payload)).encode("ascii")
        parsed_sigs.append((header, unprotected, signature, signing_input))
    header, unprotected, signature, signing_input = parsed_sigs[0]
    return ParsedJWS(header, payload, signature, signing_input, serialization,
                     unprotected=unprotected, signature_count=len(parsed_sigs))


# =============================================================================================
# the gateway's stricter header rules (spec §20)

_EMBEDDED_KEY_MEMBERS = ("jku", "x5u", "jwk", "x5c")


def header_policy(parsed: ParsedJWS) -> tuple[str, str] | None:
    """(reason_id, detail) for a header the gateway refuses although KrakenD might accept it."""
    if parsed.unprotected:
        return ("header_unprotected",
                f"JWS JSON serialization with unprotected header members {sorted(parsed.unprotected)} "
                "(not covered by the signature)")
    header = parsed.header
    if "crit" in header:
        return "header_crit", f"the header lists critical extensions ({_go.go_json_dumps(header['crit'])[:100]})"
    present = [name for name in _EMBEDDED_KEY_MEMBERS if name in header]
    if present:
        return "header_embedded_key", f"the header carries {', '.join(present)}; keys come only from the configured key set"
    if "zip" in header:
        return "header_zip", "compressed (zip) JWS payloads are not accepted"
    if "b64" in header:
        return "header_b64", "the b64 header parameter (RFC 7797 unencoded payload) is not accepted"
    return None


# =============================================================================================
# key ids (spec §16)


def token_key_id(parsed: ParsedJWS, strategy: str) -> str:
    kid = parsed.merged("kid")
    kid = kid if isinstance(kid, str) else ""
    if strategy in ("x5t", "kid_x5t"):
        x5t = parsed.merged("x5t")
        part = x5t if isinstance(x5t, str) else kid
        return part if strategy == "x5t" else kid + part
    if strategy == "x5t#S256":
        x5t = parsed.merged("x5t#S256")
        return x5t if isinstance(x5t, str) else kid
    return kid


# =============================================================================================
# signature verification (spec §7)


class _PSSAutoSalt(_pyjwt_alg.RSAPSSAlgorithm):
    """RSASSA-PSS verification with the salt length detected from the signature, as go-jose does
    (`rsa.PSSSaltLengthAuto`). PyJWT insists on a salt as long as the hash."""

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        try:
            key.verify(sig, msg, padding.PSS(mgf=padding.MGF1(self.hash_alg()), salt_length=padding.PSS.AUTO),
                       self.hash_alg())
            return True
        except Exception:  # noqa: BLE001 - InvalidSignature and malformed input alike
            return False


_A = _pyjwt_alg
_VERIFIERS: dict[str, tuple[Any, Any, Any]] = {
    # alg: (PyJWT algorithm object, key class, EC curve class or None)
    "HS256": (_A.HMACAlgorithm(_A.HMACAlgorithm.SHA256), bytes, None),
    "HS384": (_A.HMACAlgorithm(_A.HMACAlgorithm.SHA384), bytes, None),
    "HS512": (_A.HMACAlgorithm(_A.HMACAlgorithm.SHA512), bytes, None),
    "RS256": (_A.RSAAlgorithm(_A.RSAAlgorithm.SHA256), rsa.RSAPublicKey, None),
    "RS384": (_A.RSAAlgorithm(_A.RSAAlgorithm.SHA384), rsa.RSAPublicKey, None),
    "RS512": (_A.RSAAlgorithm(_A.RSAAlgorithm.SHA512), rsa.RSAPublicKey, None),
    "PS256": (_PSSAutoSalt(_PSSAutoSalt.SHA256), rsa.RSAPublicKey, None),
    "PS384": (_PSSAutoSalt(_PSSAutoSalt.SHA384), rsa.RSAPublicKey, None),
    "PS512": (_PSSAutoSalt(_PSSAutoSalt.SHA512), rsa.RSAPublicKey, None),
    "ES256": (_A.ECAlgorithm(_A.ECAlgorithm.SHA256), ec.EllipticCurvePublicKey, ec.SECP256R1),
    "ES384": (_A.ECAlgorithm(_A.ECAlgorithm.SHA384), ec.EllipticCurvePublicKey, ec.SECP384R1),
    "ES512": (_A.ECAlgorithm(_A.ECAlgorithm.SHA512), ec.EllipticCurvePublicKey, ec.SECP521R1),
    "EdDSA": (_A.OKPAlgorithm(), ed25519.Ed25519PublicKey, None),
}


def verify_signature(parsed: ParsedJWS, alg: str, key: JWKEntry) -> None:
    """go-jose `JSONWebSignature.Verify` with the configured `alg`; raises JWSError.

    Key and alg must pair up (RSA -> RS*/PS*, EC -> ES* on the alg's curve, Ed25519 -> EdDSA,
    oct -> HS*); any mismatch or bad signature is `error in cryptographic primitive`. An EC key on
    another curve than the alg's is refused too (go-jose would try r||s of the alg's size on the
    key's curve, which no honest signer produces)."""
    if key.error:
        raise JWSError(key.error, key.reason_id, gateway_only=key.reason_id is not None)
    if parsed.signature_count > 1:
        raise JWSError("go-jose/go-jose: too many signatures in payload; expecting only one")
    verifier = _VERIFIERS.get(alg)
    if verifier is None:
        raise JWSError(MSG_CRYPTO)
    algorithm, key_class, curve = verifier
    material = key.key
    if not isinstance(material, key_class) or (curve is not None and not isinstance(material.curve, curve)):
        raise JWSError(MSG_CRYPTO)
    try:
        ok = algorithm.verify(parsed.signing_input, material, parsed.signature)
    except Exception:  # noqa: BLE001 - malformed signatures raise in some primitives
        ok = False
    if not ok:
        raise JWSError(MSG_CRYPTO)


__all__ = [
    "ALGORITHMS", "Extracted", "JWSError", "MAX_JSON_DEPTH", "MAX_TOKEN_LENGTH", "ParsedJWS", "MSG_ALG_INVALID", "MSG_CRYPTO", "MSG_TOKEN_NOT_FOUND",
    "MSG_UNSUPPORTED_KEY", "cookie_value", "extract_token", "header_policy", "parse_jws", "token_key_id",
    "verify_signature",
]
