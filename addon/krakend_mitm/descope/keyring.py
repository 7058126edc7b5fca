"""The mock's signing keys: the active signer, published older keys, a prepublished next key, retired keys,
one key that is never published, and extra keys some JWKS faults need (descope.md §6.3, §10.4)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519
from jwt.algorithms import HMACAlgorithm

from krakend_mitm.descope.config import MockConfig, MockConfigError
from krakend_mitm.descope.tokens import SigningKey, b64url

ROTATE_MODES = ("rotate", "prepublish", "activate", "rotate_and_revoke", "unpublish")


class KeyRingError(ValueError):
    """A rotation that cannot be done (no prepublished key, unknown kid)."""


def seeded_keys(config: MockConfig) -> list[SigningKey]:
    """Keys from the config's `keys` list (files make runs reproducible), or one generated key."""
    keys = []
    for index, seed in enumerate(config.keys):
        try:
            if seed.private_key_pem:
                keys.append(SigningKey.from_pem(seed.private_key_pem, config.alg, seed.kid, source=f"keys[{index}]"))
            elif seed.private_key_file:
                path = Path(seed.private_key_file)
                keys.append(SigningKey.from_file(path if path.is_absolute() else config.base_dir / path,
                                                 config.alg, seed.kid))
            else:
                keys.append(SigningKey.generate(config.alg, seed.kid, config.rsa_bits))
        except ValueError as e:
            raise MockConfigError(str(e)) from None
    return keys or [SigningKey.generate(config.alg, rsa_bits=config.rsa_bits)]


class KeyRing:
    """Thread-safe key states. Published order: active, prepublished, then older keys newest first."""

    def __init__(self, config: MockConfig):
        self._alg = config.alg
        self._rsa_bits = config.rsa_bits
        self.max_published = config.max_published
        self._extra_jwks = [dict(jwk) for jwk in config.extra_jwks]
        self._lock = threading.RLock()
        self._initial = seeded_keys(config)
        self._never_published: SigningKey | None = None  # made on first use: RSA generation is slow
        self._fault_keys: dict[str, Any] = {}
        self._restore()

    def _restore(self) -> None:
        self._active = self._initial[0]
        self._active_published = True
        self._prepublished: SigningKey | None = None
        self._older = list(self._initial[1:])
        self._retired: list[SigningKey] = []
        self._trim_older()

    def _new_key(self) -> SigningKey:
        return SigningKey.generate(self._alg, rsa_bits=self._rsa_bits)

    def _trim_older(self) -> None:
        while len(self._older) > self.max_published:
            self._retired.append(self._older.pop())

    # ----------------------------------------------------------------- reading

    @property
    def active(self) -> SigningKey:
        with self._lock:
            return self._active

    @property
    def never_published(self) -> SigningKey:
        """A key of the right type that no JWKS ever lists (`sign_with: unpublished`)."""
        with self._lock:
            if self._never_published is None:
                self._never_published = self._new_key()
            return self._never_published

    def published(self) -> list[SigningKey]:
        with self._lock:
            keys = [self._active] if self._active_published else []
            if self._prepublished:
                keys.append(self._prepublished)
            return keys + list(self._older)

    def public_jwks(self) -> list[dict[str, Any]]:
        return [key.public_jwk() for key in self.published()] + [dict(jwk) for jwk in self._extra_jwks]

    def find_published(self, kid: str) -> SigningKey | None:
        return next((key for key in self.published() if key.kid == kid), None)

    def find(self, kid: str) -> SigningKey | None:
        """Any key the mock has held, published or not (for `sign_with: <kid>`)."""
        with self._lock:
            candidates = [self._active, *self._older, *self._retired, *self._initial]
            if self._never_published:
                candidates.append(self._never_published)
            if self._prepublished:
                candidates.append(self._prepublished)
            candidates += [key for key in self._fault_keys.values() if isinstance(key, SigningKey)]
        return next((key for key in candidates if key.kid == kid), None)

    def state_of(self, key: SigningKey) -> str:
        with self._lock:
            if key is self._active:
                return "active" if self._active_published else "active_unpublished"
            if key is self._prepublished:
                return "prepublished"
            if key in self._older:
                return "published"
            if key is self._never_published:
                return "unpublished"
            return "retired"

    def describe(self) -> dict[str, Any]:
        """Every key with its state and both JWKs, for tests that sign on their own (/__mock/keys)."""
        with self._lock:
            everyone = [*self.published(), *self._retired, self.never_published]
            everyone += [key for key in self._initial if key not in everyone]
            return {
                "active_kid": self._active.kid,
                "published_kids": [key.kid for key in self.published()],
                "prepublished_kid": self._prepublished.kid if self._prepublished else None,
                "unpublished_kid": self.never_published.kid,
                "max_published": self.max_published,
                "keys": [{"kid": key.kid, "alg": key.alg, "state": self.state_of(key),
                          "public_jwk": key.public_jwk(), "private_jwk": key.private_jwk()} for key in everyone],
            }

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"active_kid": self._active.kid, "published_kids": [key.kid for key in self.published()],
                    "prepublished_kid": self._prepublished.kid if self._prepublished else None}

    # ----------------------------------------------------------------- rotation

    def rotate(self, mode: str, kid: str | None = None) -> dict[str, Any]:
        actions = {"rotate": self._rotate, "prepublish": self._prepublish, "activate": self._activate,
                   "rotate_and_revoke": self._rotate_and_revoke}
        with self._lock:
            if mode == "unpublish":
                self._unpublish(kid)
            elif mode in actions:
                actions[mode]()
            else:
                raise KeyRingError(f"unknown rotate mode {mode!r}: use one of {', '.join(ROTATE_MODES)}")
            return self.summary()

    def _retire_active_into_older(self) -> None:
        if self._active_published:
            self._older.insert(0, self._active)
        else:
            self._retired.append(self._active)
        self._active_published = True

    def _rotate(self) -> None:
        """Descope's "Rotate": a new signer; existing sessions keep working while their key stays published."""
        self._retire_active_into_older()
        self._active = self._new_key()
        self._trim_older()

    def _prepublish(self) -> None:
        if self._prepublished is None:
            self._prepublished = self._new_key()

    def _activate(self) -> None:
        if self._prepublished is None:
            raise KeyRingError("activate: no prepublished key (call prepublish first)")
        self._retire_active_into_older()
        self._active, self._prepublished = self._prepublished, None
        self._trim_older()

    def _rotate_and_revoke(self) -> None:
        """Descope's "Rotate and Revoke": only a brand-new key stays; every older token's key disappears."""
        self._retired += [self._active, *self._older] + ([self._prepublished] if self._prepublished else [])
        self._older, self._prepublished = [], None
        self._active, self._active_published = self._new_key(), True

    def _unpublish(self, kid: str | None) -> None:
        if not kid:
            raise KeyRingError("unpublish: give the kid to remove")
        if kid == self._active.kid:
            # The mock keeps signing with it: tokens then carry a kid the JWKS no longer has.
            self._active_published = False
            return
        if self._prepublished and self._prepublished.kid == kid:
            self._retired.append(self._prepublished)
            self._prepublished = None
            return
        for key in self._older:
            if key.kid == kid:
                self._older.remove(key)
                self._retired.append(key)
                return
        raise KeyRingError(f"unpublish: kid {kid!r} is not published")

    def restore(self) -> None:
        with self._lock:
            self._restore()

    # ----------------------------------------------------------------- material for JWKS faults

    def fault_key(self, name: str) -> Any:
        """Lazily made keys for JWKS faults: a decoy with the active kid, a 1024-bit RSA key, an X25519 key,
        an HMAC secret. Kept so repeated faulty answers are consistent."""
        with self._lock:
            if name not in self._fault_keys:
                self._fault_keys[name] = self._make_fault_key(name)
            return self._fault_keys[name]

    def _make_fault_key(self, name: str) -> Any:
        if name == "decoy":
            return SigningKey.generate(self._alg, kid="decoy", rsa_bits=self._rsa_bits)
        if name == "rsa_1024":
            return SigningKey.generate("RS256", kid="rsa1024-" + self._active.kid[:8], rsa_bits=1024)
        if name == "x25519":
            return x25519.X25519PrivateKey.generate()
        if name == "oct":
            return b"mock-descope-oct-secret-0123456789abcdef"
        raise KeyError(name)

    def x25519_jwk(self) -> dict[str, Any]:
        # PyJWT's OKPAlgorithm.to_jwk handles Ed25519/Ed448 only; an X25519 JWK is just the raw public bytes.
        public = self.fault_key("x25519").public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "X25519", "use": "enc", "kid": "x25519-" + self.active.kid[:8],
                "x": b64url(public)}

    def oct_jwk(self, kid: str) -> dict[str, Any]:
        return {**HMACAlgorithm.to_jwk(self.fault_key("oct"), as_dict=True), "kid": kid}
