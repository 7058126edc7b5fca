"""Descope-shaped JWTs: decode without verifying, describe safely for logs, and the minting primitives the mock uses.

Decoding never verifies and never returns or prints the signature. Signing goes through PyJWT (`jwt.api_jws`) with
cryptography key objects; JWKs come from PyJWT's `to_jwk`. PyJWT and cryptography are imported where keys are used,
so `krakend-mitm token --decode` starts fast.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_ALGS = ("RS256", "RS384", "ES256", "ES384")
_EC_CURVE_NAMES = {"ES256": "secp256r1", "ES384": "secp384r1"}
_BASE62 = string.ascii_letters + string.digits
# Something that looks like a compact JWT, for redaction in logs and request records.
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


class TokenFormatError(ValueError):
    """The text is not a compact JWS with JSON header and claims."""


# ---------------------------------------------------------------------------------------------
# decoding (no verification)


@dataclass(frozen=True)
class DecodedToken:
    header: dict[str, Any]
    claims: Any  # a JSON object for any real token; kept as-is when a test token carries something else

    def as_dict(self) -> dict[str, Any]:
        return {"header": self.header, "claims": self.claims}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(compact_json(value))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _b64url_decode(segment: str, what: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment):
        raise TokenFormatError(f"the {what} segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenFormatError(f"the {what} segment is not valid base64url") from None


def _json_segment(segment: str, what: str) -> Any:
    raw = _b64url_decode(segment, what)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TokenFormatError(f"the {what} segment is not JSON") from None


def decode_unverified(token: str) -> DecodedToken:
    """Header and claims of a compact JWS, without checking anything but the encoding. Accepts a `Bearer ` prefix."""
    text = token.strip()
    if text.lower().startswith("bearer "):
        text = text[7:].strip()
    if not text:
        raise TokenFormatError("the token is empty")
    parts = text.split(".")
    if len(parts) == 5:
        raise TokenFormatError("this is an encrypted JWE (5 segments), not a signed JWT")
    if len(parts) != 3:
        raise TokenFormatError(f"a JWT has 3 dot-separated segments, this has {len(parts)}")
    header = _json_segment(parts[0], "header")
    if not isinstance(header, dict):
        raise TokenFormatError("the header is not a JSON object")
    return DecodedToken(header=header, claims=_json_segment(parts[1], "claims"))


def token_summary(token: str) -> str:
    """A log-safe description: alg, kid, sub, drn — never the token itself. Never raises."""
    try:
        decoded = decode_unverified(token)
    except TokenFormatError as e:
        return f"<undecodable token: {e}>"
    claims = decoded.claims if isinstance(decoded.claims, dict) else {}
    fields = {"alg": decoded.header.get("alg"), "kid": decoded.header.get("kid"),
              "sub": claims.get("sub"), "drn": claims.get("drn")}
    return " ".join(f"{name}={value}" for name, value in fields.items() if value is not None) or "<no alg/kid/sub>"


def redact_tokens(text: str) -> str:
    """Replace every JWT-looking substring with its summary (for request records)."""
    return JWT_PATTERN.sub(lambda m: f"<jwt {token_summary(m.group(0))}>", text)


# ---------------------------------------------------------------------------------------------
# keys


def new_kid() -> str:
    # Shaped like kids seen on Descope projects ("2Bt5WLccLUey1Dp7utptZb3Fx9K"): 27 base62 characters.
    return "2" + "".join(secrets.choice(_BASE62) for _ in range(26))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Any  # cryptography RSAPrivateKey / EllipticCurvePrivateKey

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None, rsa_bits: int = 2048) -> "SigningKey":
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        check_alg(alg)
        if alg.startswith("RS"):
            private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            private = ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())
        return cls(kid=kid or new_kid(), alg=alg, private_key=private)

    @classmethod
    def from_pem(cls, pem: bytes | str, alg: str, kid: str | None = None, source: str = "PEM") -> "SigningKey":
        from cryptography.hazmat.primitives import serialization

        check_alg(alg)
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: not an unencrypted PEM private key ({e})") from None
        _check_key_fits_alg(private, alg, source)
        return cls(kid=kid or new_kid(), alg=alg, private_key=private)

    @classmethod
    def from_file(cls, path: str | Path, alg: str, kid: str | None = None) -> "SigningKey":
        try:
            pem = Path(path).read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read key file {path}: {e.strerror}") from None
        return cls.from_pem(pem, alg, kid, source=str(path))

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """The JWK Descope publishes: kty, alg, use, kid and the public members (no key_ops)."""
        return self._jwk(self.public_key)

    def private_jwk(self) -> dict[str, Any]:
        return self._jwk(self.private_key)

    def _jwk(self, key: Any) -> dict[str, Any]:
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm

        converter = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        members = converter.to_jwk(key, as_dict=True)
        members.pop("key_ops", None)
        kty = members.pop("kty")
        return {"kty": kty, "alg": self.alg, "use": "sig", "kid": self.kid, **members}

    def private_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()


def check_alg(alg: str) -> None:
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"unsupported alg {alg!r}: use one of {', '.join(SUPPORTED_ALGS)}")


def _check_key_fits_alg(private: Any, alg: str, source: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if alg.startswith("RS"):
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError(f"{source}: alg {alg} needs an RSA private key")
        return
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != _EC_CURVE_NAMES[alg]:
        raise ValueError(f"{source}: alg {alg} needs an EC private key on curve {_EC_CURVE_NAMES[alg]}")


# ---------------------------------------------------------------------------------------------
# signing


def sorted_json_tree(value: Any) -> Any:
    """Descope's tokens come from Go maps, whose JSON keys are sorted at every level."""
    if isinstance(value, dict):
        return {key: sorted_json_tree(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json_tree(item) for item in value]
    return value


def encode_jws(claims: Any, key: SigningKey | None, header_overrides: dict[str, Any] | None = None,
               kid: str | None = None) -> str:
    """Compact JWS of `claims` (compact JSON, keys sorted), header {alg, kid, typ}.

    `key=None` gives an `alg: none` token with an empty signature. `header_overrides` replace header members
    verbatim; a None value removes the member. An overridden `alg` only relabels the header: the signature is
    still made with the key's own algorithm, which is what tests of algorithm confusion need.
    """
    alg = key.alg if key else "none"
    overrides = dict(header_overrides or {})
    label_alg = overrides.pop("alg", alg)
    headers: dict[str, Any] = {"kid": key.kid if key else kid}
    for name, value in overrides.items():
        if value is None and name != "typ":  # PyJWS drops a falsy typ itself; other members we drop here
            headers.pop(name, None)
        else:
            headers[name] = value
    if headers.get("kid") is None:
        headers.pop("kid", None)
    import jwt

    payload = compact_json(sorted_json_tree(claims))
    private = key.private_key if key else None
    if label_alg == alg:
        return jwt.api_jws.encode(payload, private, algorithm=alg, headers=headers)
    return _encode_relabelled(payload, headers, label_alg, key)


def _encode_relabelled(payload: bytes, headers: dict[str, Any], label_alg: Any, key: SigningKey | None) -> str:
    header = {"alg": label_alg, "typ": "JWT", **headers}
    if header.get("typ") is None:
        header.pop("typ")
    signing_input = f"{b64url(compact_json(sorted_json_tree(header)))}.{b64url(payload)}"
    signature = b""
    if key is not None:
        import jwt

        algorithm = jwt.get_algorithm_by_name(key.alg)
        signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_key))
    return f"{signing_input}.{b64url(signature)}"


def assemble_raw(segments: dict[str, Any], base_token: str) -> str:
    """A token from caller-supplied segments (strings taken verbatim, objects JSON-encoded), the missing ones
    taken from `base_token`; `{"segments": [...]}` joins any number of segments for malformed-token tests."""
    if "segments" in segments:
        return ".".join(str(part) for part in segments["segments"])
    base = base_token.split(".")
    names = ("header", "payload", "signature")
    parts = []
    for index, name in enumerate(names):
        value = segments.get(name, segments.get("claims") if name == "payload" else None)
        if value is None:
            parts.append(base[index])
        elif isinstance(value, str):
            parts.append(value)
        else:
            parts.append(b64url_json(value))
    return ".".join(parts)


# ---------------------------------------------------------------------------------------------
# claim helpers


ISSUER_MODES = ("bare", "url", "v1apps", "custom")


def issuer_for(mode: str, project_id: str, base: str, custom: str | None = None) -> str:
    """The `iss` value in one of the forms Descope uses (descope.md §5)."""
    base = base.rstrip("/")
    if mode == "bare":
        return project_id
    if mode == "url":
        return f"{base}/{project_id}"
    if mode == "v1apps":
        return f"{base}/v1/apps/{project_id}"
    if mode == "custom":
        if not custom:
            raise ValueError("issuer_mode custom needs issuer_custom")
        return custom
    raise ValueError(f"unknown issuer mode {mode!r}: use one of {', '.join(ISSUER_MODES)}")


def rfc3339(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand_permissions(roles: list[str], role_map: dict[str, list[str]]) -> list[str]:
    """Union of the roles' permissions, in first-seen order."""
    permissions: dict[str, None] = {}
    for role in roles:
        for permission in role_map.get(role, ()):
            permissions.setdefault(permission, None)
    return list(permissions)
