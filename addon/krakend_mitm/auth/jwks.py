"""Key sets for the JWT validator: JWK parsing with go-jose's rules, the JWKS download, and the
`KeyStore` that the addon owns.

Parsing (`parse_jwk_set`, `parse_jwk`)
    go-jose v3 decides what a valid JWK is; PyJWT's `PyJWK` builds the key objects. go-jose's rules
    that PyJWT does not share are reproduced here: one unparsable key fails the whole set, duplicate
    member names fail a key, `x5t`/`x5t#S256` must be 20/32 bytes (or 40/64 hex characters), an `x5c`
    leaf must carry the same key, only P-256/384/521 and Ed25519 exist, JWK `alg`/`use`/`key_ops` are
    ignored. Keys with private material parse but are unusable for verification
    (`go-jose/go-jose: unsupported key type/format`). An RSA key that go-jose accepts but
    `cryptography` refuses (for example `e = 1`) is unusable (`error in cryptographic primitive`),
    as it is in KrakenD at verification time. An `oct` key with an empty `k` is refused for
    security (reason id `hmac_key_empty`; go-jose would accept any key, even an empty one).

Caching (`KeyStore`) -- deliberately different from KrakenD, see `KeyStore`'s docstring.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from krakend_mitm.auth import _go

logger = logging.getLogger(__name__)

USER_AGENT = "KrakenD Version 2.13.8"
STRATEGIES = ("kid", "x5t", "x5t#S256", "kid_x5t")

MSG_NO_KEYS_IN_SET = "no Keys has been found"  # sic: an empty `keys` array (go-auth0)
MSG_KEY_NOT_FOUND = "no Keys have been found"  # the id is not in the set (krakend-jose)
MSG_CONTENT_TYPE = "should have a JSON content type for JWKS endpoint"
MSG_UNSUPPORTED_KEY = "go-jose/go-jose: unsupported key type/format"
MSG_CRYPTO = "go-jose/go-jose: error in cryptographic primitive"

# Limits of a downloaded JWK Set (SECURITY.md "Limits"); KrakenD has none of them.
MAX_JWKS_BYTES = 4 * 1024 * 1024  # body size, checked while streaming (reason id `jwks_too_large`)
MAX_JWKS_KEYS = 100  # keys in one set, checked before any key is built (reason id `jwks_too_many_keys`)
FETCH_TIMEOUT = 10.0  # seconds for the whole download: connect, TLS, redirects, headers, body (`jwks_timeout`)


# =============================================================================================
# JWK parsing


class JWKError(ValueError):
    """A JWK go-jose would refuse to unmarshal; fails the whole set."""


class JWKSetError(ValueError):
    """A JWK Set document that yields no usable set. `message` is KrakenD's error text."""

    def __init__(self, message: str, *, reason_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason_id = reason_id


@dataclass(frozen=True, eq=False)
class JWKEntry:
    """One parsed JWK.

    `key` is a cryptography public key (RSA, EC, Ed25519) or the HMAC secret bytes for `oct`.
    When `error` is set the key is unusable and every token selecting it fails with that message
    (and `reason_id`, when the refusal is ours rather than KrakenD's)."""

    kid: str
    kty: str
    key: Any
    x5t: bytes = b""
    x5t_s256: bytes = b""
    crv: str = ""
    error: str | None = None
    reason_id: str | None = None

    def key_id(self, strategy: str) -> str:
        """The id this key is stored under for a `key_identify_strategy` (spec §16)."""
        if strategy == "x5t":
            return _go.b64url_nopad(self.x5t)
        if strategy == "x5t#S256":
            return _go.b64url_nopad(self.x5t_s256)
        if strategy == "kid_x5t":
            return self.kid + _go.b64url_nopad(self.x5t)
        return self.kid

    def describe(self) -> str:
        return f"{self.kty}{'/' + self.crv if self.crv else ''} kid={self.kid!r}"


_STRING_MEMBERS = ("kty", "kid", "crv", "alg", "use", "x5u", "x5t", "x5t#S256")
_BYTES_MEMBERS = ("n", "e", "d", "p", "q", "dp", "dq", "qi", "k", "x", "y")
_CURVES = {"P-256": (32, "ES256", ec.SECP256R1), "P-384": (48, "ES384", ec.SECP384R1), "P-521": (66, "ES512", ec.SECP521R1)}


def _type_error(value: Any, gotype: str) -> JWKError:
    return JWKError(f"json: cannot unmarshal {_go.go_kind(value)} into Go value of type {gotype}")


def _member_bytes(obj: dict, name: str) -> bytes | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _type_error(value, "string")
    if value == "":
        return b""
    try:
        return _go.jose_b64decode(value)
    except _go.GoBase64Error as err:
        raise JWKError(str(err)) from None


def _pyjwk(data: dict, algorithm: str) -> Any:
    return jwt.PyJWK(data, algorithm=algorithm).key


def _b64(data: bytes) -> str:
    return _go.b64url_nopad(data)


def _public_equal(a: Any, b: Any) -> bool:
    try:
        fmt = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return a.public_bytes(*fmt) == b.public_bytes(*fmt)
    except Exception:  # noqa: BLE001 - different key families
        return False


def parse_jwk(obj: Any) -> JWKEntry:
    """Parse one JWK (a decoded JSON object) with go-jose v3's `JSONWebKey.UnmarshalJSON` rules."""
    if not isinstance(obj, dict):
        if obj is None:
            raise JWKError("go-jose/go-jose: unknown json web key type ''")
        raise _type_error(obj, "jose.rawJSONWebKey")
    dup = _go.duplicate_key(obj)
    if dup:
        raise JWKError(f"json: duplicate key '{dup}' in object")
    for name in _STRING_MEMBERS:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise _type_error(value, "string")
    for name in ("key_ops", "x5c"):
        value = obj.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise _type_error(value if not isinstance(value, list) else next(v for v in value if not isinstance(v, str)), "string")
    raw = {name: _member_bytes(obj, name) for name in _BYTES_MEMBERS}
    kty = obj.get("kty") or ""
    kid = obj.get("kid") or ""
    crv = obj.get("crv") or ""

    certs: list[x509.Certificate] = []
    for i, item in enumerate(obj.get("x5c") or ()):
        try:
            der = _go.go_b64decode(item, url=False, padded=True)
            certs.append(x509.load_der_x509_certificate(der))
        except Exception as err:  # noqa: BLE001
            raise JWKError(f"go-jose/go-jose: failed to unmarshal x5c field: {err}") from None

    key: Any = None
    public: Any = None
    error: str | None = None
    reason: str | None = None

    if kty == "EC":
        if crv not in _CURVES:
            raise JWKError(f"go-jose/go-jose: unsupported elliptic curve '{crv}'")
        size, alg, _curve = _CURVES[crv]
        x, y, d = raw["x"], raw["y"], raw["d"]
        if d is not None:
            if x is None or y is None:
                raise JWKError("go-jose/go-jose: invalid EC private key, missing x/y/d values")
            if len(d) != size:
                raise JWKError("go-jose/go-jose: invalid EC private key, wrong length for d")
        elif x is None or y is None:
            raise JWKError("go-jose/go-jose: invalid EC key, missing x/y values")
        if len(x) != size:
            raise JWKError("go-jose/go-jose: invalid EC public key, wrong length for x")
        if len(y) != size:
            raise JWKError("go-jose/go-jose: invalid EC public key, wrong length for y")
        try:
            public = _pyjwk({"kty": "EC", "crv": crv, "x": _b64(x), "y": _b64(y)}, alg)
        except jwt.PyJWTError:
            raise JWKError("go-jose/go-jose: invalid EC key, X/Y are not on declared curve") from None
        if d is not None:
            error = MSG_UNSUPPORTED_KEY
        else:
            key = public
    elif kty == "RSA":
        n, e, d = raw["n"], raw["e"], raw["d"]
        if d is not None:
            if n is None or e is None or raw["p"] is None or raw["q"] is None:
                raise JWKError("go-jose/go-jose: invalid RSA private key, missing values")
            error = MSG_UNSUPPORTED_KEY
        elif n is None or e is None:
            raise JWKError("go-jose/go-jose: invalid RSA key, missing n/e values")
        try:
            public = _pyjwk({"kty": "RSA", "n": _b64(n), "e": _b64(e)}, "RS256")
        except jwt.PyJWTError:
            # go-jose builds the key anyway; Go's rsa package refuses it when verifying
            public = None
            error = error or MSG_CRYPTO
        if error is None:
            key = public
    elif kty == "oct":
        if certs:
            raise JWKError("go-jose/go-jose: invalid JWK, found 'oct' (symmetric) key with cert chain")
        k = raw["k"]
        if k is None:
            raise JWKError("go-jose/go-jose: invalid OCT (symmetric) key, missing k value")
        if not k:
            error = "gateway refuses an empty HMAC secret (oct key with empty k)"
            reason = "hmac_key_empty"
        else:
            key = bytes(k)
    elif kty == "OKP":
        x = raw["x"]
        if crv != "Ed25519" or x is None:
            raise JWKError(f"go-jose/go-jose: unknown curve {crv}'")
        if raw["d"] is not None:
            error = MSG_UNSUPPORTED_KEY
        try:
            public = _pyjwk({"kty": "OKP", "crv": "Ed25519", "x": _b64(x)}, "EdDSA")
        except jwt.PyJWTError:
            public = None  # go-jose copies a wrong-length x into 32 bytes; nothing verifies with it
            error = error or MSG_CRYPTO
        if error is None:
            key = public
    else:
        raise JWKError(f"go-jose/go-jose: unknown json web key type '{kty}'")

    if certs and public is not None and not _public_equal(certs[0].public_key(), public):
        raise JWKError("go-jose/go-jose: invalid JWK, public keys in key and x5c fields do not match")

    x5t = _thumbprint(obj.get("x5t"), 20, "x5t")
    x5t_s256 = _thumbprint(obj.get("x5t#S256"), 32, "x5t#S256")
    if certs:
        leaf = certs[0].public_bytes(Encoding.DER)
        if x5t and hashlib.sha1(leaf).digest() != x5t:  # noqa: S324 - a thumbprint, not security
            raise JWKError("go-jose/go-jose: invalid JWK, x5c thumbprint does not match x5t value")
        if x5t_s256 and hashlib.sha256(leaf).digest() != x5t_s256:
            raise JWKError("go-jose/go-jose: invalid JWK, x5c thumbprint does not match x5t#S256 value")

    return JWKEntry(kid=kid, kty=kty, key=key, x5t=x5t, x5t_s256=x5t_s256, crv=crv, error=error, reason_id=reason)


def _thumbprint(value: str | None, size: int, name: str) -> bytes:
    if not value:
        return b""
    try:
        data = _go.jose_b64decode(value)
    except _go.GoBase64Error:
        raise JWKError(f"go-jose/go-jose: invalid JWK, {name} header has invalid encoding") from None
    if len(data) == 2 * size:
        try:
            data = bytes.fromhex(data.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as err:
            raise JWKError(f"go-jose/go-jose: invalid JWK, unable to hex decode {name}: {err}") from None
    if data and len(data) != size:
        raise JWKError(f"go-jose/go-jose: invalid JWK, {name} header is of incorrect size")
    return data


def parse_jwk_set(body: bytes | str, *, allow_trailing: bool = True, max_keys: int | None = None) -> tuple[JWKEntry, ...]:
    """Parse a JWK Set document as go-auth0 does (`json.NewDecoder(body).Decode(&jwks)`): data after
    the first JSON value is ignored, the `keys` member name matches case-insensitively, one bad key
    fails the whole set, and an empty `keys` array is `no Keys has been found`. With `max_keys`, a
    set of more keys is refused before any key is built (reason id `jwks_too_many_keys`)."""
    try:
        doc, members = _go.go_json_loads(body, allow_trailing=allow_trailing)
    except _go.GoJSONError as err:
        raise JWKSetError(str(err)) from None
    if doc is None:
        raise JWKSetError(MSG_NO_KEYS_IN_SET)
    if not isinstance(doc, dict):
        raise JWKSetError(f"json: cannot unmarshal {_go.go_kind(doc)} into Go value of type jose.JSONWebKeySet")
    keys: Any = None
    for name, value in members or ():
        if name == "keys" or name.lower() == "keys":
            keys = value
    if keys is None:
        raise JWKSetError(MSG_NO_KEYS_IN_SET)
    if not isinstance(keys, list):
        raise JWKSetError(
            f"json: cannot unmarshal {_go.go_kind(keys)} into Go struct field JSONWebKeySet.keys of type []jose.JSONWebKey"
        )
    if max_keys is not None and len(keys) > max_keys:
        raise JWKSetError(f"the JWK set has {len(keys)} keys, more than the gateway's limit of {max_keys}",
                          reason_id="jwks_too_many_keys")
    entries = []
    for item in keys:
        try:
            entries.append(parse_jwk(item))
        except JWKError as err:
            raise JWKSetError(str(err)) from None
    if not entries:
        raise JWKSetError(MSG_NO_KEYS_IN_SET)
    return tuple(entries)


def index_keys(entries: tuple[JWKEntry, ...], strategy: str) -> dict[str, JWKEntry]:
    """id -> key for a strategy; with duplicate ids the last key wins (as in KrakenD)."""
    return {entry.key_id(strategy): entry for entry in entries}


# =============================================================================================
# Download


@dataclass(frozen=True)
class TLSOptions:
    """How the JWKS client connects (spec §18). Part of the cache key: endpoints that pin or trust
    differently never share downloaded keys."""

    insecure: bool = False  # disable_jwk_security: no certificate verification
    ca_file: str = ""  # jwk_local_ca, added to the system roots
    fingerprints: tuple[bytes, ...] = ()  # jwk_fingerprints, decoded SPKI SHA-256 digests
    cipher_suites: tuple[int, ...] = ()


@dataclass(frozen=True)
class FetchRequest:
    url: str
    tls: TLSOptions
    timeout: float
    max_bytes: int
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class FetchResponse:
    status: int
    content_type: str  # the first Content-Type value, "" when absent
    body: bytes


class FetchError(Exception):
    """A download that produced no usable response. `message` follows Go's wording where possible,
    e.g. `Get "http://127.0.0.1:9/keys": dial tcp 127.0.0.1:9: connect: connection refused`."""

    def __init__(self, message: str, *, reason_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason_id = reason_id


FetchFunc = Callable[[FetchRequest], FetchResponse]


class RequestsFetcher:
    """The default fetch function: `requests`, run in a worker thread by the KeyStore.

    Streams the body with a size cap and an overall deadline, follows redirects, honours proxy
    environment variables (as Go's client does), sends KrakenD's User-Agent, TLS >= 1.2, optional
    extra CA, `disable_jwk_security` (no verification) and SPKI pinning over the whole peer chain."""

    def __init__(self) -> None:
        import threading

        self._sessions: dict[tuple[TLSOptions, bool, str], Any] = {}
        self._lock = threading.Lock()

    def _session(self, tls: TLSOptions, use_proxy: bool, netloc: str) -> Any:
        # one session per origin: the KeyStore downloads each URL from one thread at a time
        key = (tls, use_proxy, netloc)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                from krakend_mitm.auth._http import make_session

                session = make_session(tls)
                session.trust_env = use_proxy
                self._sessions[key] = session
            return session

    def __call__(self, request: FetchRequest) -> FetchResponse:
        from krakend_mitm.auth._http import fetch

        # like Go's ProxyFromEnvironment, loopback targets never go through a proxy
        session = self._session(request.tls, not is_loopback_url(request.url), urlsplit(request.url).netloc)
        return fetch(session, request)

    def close(self) -> None:
        with self._lock:
            for session in self._sessions.values():
                try:
                    session.close()
                except Exception:  # noqa: BLE001
                    pass
            self._sessions.clear()


# =============================================================================================
# Key store


@dataclass(frozen=True)
class KeyLookup:
    """The result of looking a key id up. `key` is None on failure; then `error` is the text after
    `Unable to validate the token: ` and `reason_id` names a gateway-specific refusal."""

    key: JWKEntry | None
    error: str | None = None
    reason_id: str | None = None
    source: str = ""
    status: int = 401
    # True when the id was missing and the unknown-kid rate limit allowed no download for it: the
    # IdP was not asked, so a failed-kid cooldown should not record this miss (KrakenD would have
    # downloaded the set here).
    rate_limited: bool = False


class KeySetHandle:
    """What an endpoint validator holds: `await handle.lookup(key_id)`."""

    source: str = ""

    async def lookup(self, key_id: str) -> KeyLookup:  # pragma: no cover - interface
        raise NotImplementedError

    def peek_key(self, key_id: str) -> JWKEntry | None:
        """The key `lookup(key_id)` would return at once (a usable set holding this id), else None.
        No side effect: never downloads, never takes an unknown-id rate-limit token, never logs.
        None only means "ask `lookup`", which decides (and words) every failure."""
        return None

    def describe(self) -> dict:  # pragma: no cover - interface
        return {}


class LocalKeySet(KeySetHandle):
    """`jwk_local_path`: keys read once at start-up. An unknown id falls back to `jwk_url` in
    KrakenD: without one that is `Get "": unsupported protocol scheme ""` (401); with one KrakenD
    panics (500), which is what this handle answers without downloading anything."""

    def __init__(self, entries: tuple[JWKEntry, ...], *, strategy: str, path: str, jwk_url: str = ""):
        self._index = index_keys(entries, strategy)
        self._count = len(entries)
        self._jwk_url = jwk_url
        self.source = f"file:{path}"

    def peek_key(self, key_id: str) -> JWKEntry | None:
        return self._index.get(key_id)

    async def lookup(self, key_id: str) -> KeyLookup:
        entry = self._index.get(key_id)
        if entry is not None:
            return KeyLookup(entry, source=self.source)
        if self._count == 0:
            return KeyLookup(None, MSG_NO_KEYS_IN_SET, source=self.source)
        if not self._jwk_url:
            return KeyLookup(None, 'Get "": unsupported protocol scheme ""', source=self.source)
        return KeyLookup(
            None,
            "panic: unknown key id with jwk_local_path and jwk_url (KrakenD crashes the request)",
            source=self.source,
            status=500,
        )

    def describe(self) -> dict:
        return {"source": self.source, "keys": sorted(self._index)}


@dataclass
class _Snapshot:
    entries: tuple[JWKEntry, ...]
    indexes: dict[str, dict[str, JWKEntry]]
    fetched_at: float  # store clock (monotonic)


class _TokenBucket:
    """Re-fetches triggered by unknown ids: `burst` at once, then one per `interval` seconds."""

    def __init__(self, burst: int, interval: float, clock: Callable[[], float]):
        self._burst = max(1, burst)
        self._interval = max(0.0, interval)
        self._clock = clock
        self._tokens = float(self._burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        if self._interval > 0:
            self._tokens = min(float(self._burst), self._tokens + (now - self._stamp) / self._interval)
        else:
            self._tokens = float(self._burst)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _RemoteKeySet(KeySetHandle):
    """One cached JWK Set per (mapped URL, TLS options), shared by every endpoint that uses it."""

    def __init__(self, store: "KeyStore", url: str, original_url: str, tls: TLSOptions):
        self._store = store
        self.url = url
        self.original_url = original_url
        self.tls = tls
        self.source = url if url == original_url else f"{url} (mapped from {original_url})"
        self.strategies: set[str] = {"kid"}
        self.cache_duration = 900.0
        self._snapshot: _Snapshot | None = None
        self._inflight: asyncio.Future | None = None
        self._timer: asyncio.Task | None = None
        self._limiter = _TokenBucket(store.refetch_burst, store.refetch_interval, store.clock)
        self.failures = 0
        self.last_error: FetchError | None = None
        self.last_attempt: float | None = None
        self.downloads = 0

    # ---- lookups (the per-request path) ---------------------------------------------------

    def _fresh(self, snap: _Snapshot | None) -> bool:
        return snap is not None and self._store.clock() - snap.fetched_at <= self._store.max_staleness

    def peek(self, strategy: str, key_id: str) -> JWKEntry | None:
        snap = self._snapshot
        if snap is None or not self._fresh(snap):
            return None
        return snap.indexes.get(strategy, {}).get(key_id)

    async def lookup_for(self, strategy: str, key_id: str) -> KeyLookup:
        entry = self.peek(strategy, key_id)
        if entry is not None:
            return KeyLookup(entry, source=self.source)
        # miss: share a download in progress, or start one if the rate limit allows
        fetched = False
        inflight = self._inflight
        if inflight is not None and (inflight.done() or inflight.get_loop() is not asyncio.get_running_loop()):
            self._inflight = None  # left over from a finished or foreign event loop
        if self._inflight is not None:
            await self._await_inflight()
            fetched = True
            if self.peek(strategy, key_id) is None:
                # The download joined here started before this request arrived, possibly before the
                # IdP published the key (rotation): ask once more, sharing and rate limiting as usual.
                if self._inflight is not None:
                    await self._await_inflight()
                elif self._limiter.take():
                    await self._await_inflight(self._start_fetch("unknown key id"))
        elif self.last_attempt is None or self._limiter.take():
            # the very first download (no warm-up yet) is not rate limited
            await self._await_inflight(self._start_fetch("unknown key id" if self._snapshot else "first use"))
            fetched = True
        entry = self.peek(strategy, key_id)
        if entry is not None:
            return KeyLookup(entry, source=self.source)
        return self._miss(fetched)

    def _miss(self, fetched: bool) -> KeyLookup:
        snap = self._snapshot
        if snap is not None and not self._fresh(snap):
            err = self.last_error.message if self.last_error else MSG_KEY_NOT_FOUND
            return KeyLookup(None, err, reason_id="jwks_stale", source=self.source)
        if snap is None:
            if self.last_error is not None:
                return KeyLookup(None, self.last_error.message, reason_id=self.last_error.reason_id, source=self.source)
            return KeyLookup(None, MSG_KEY_NOT_FOUND, source=self.source)
        if fetched and self.last_error is not None and self.failures:
            return KeyLookup(None, self.last_error.message, reason_id=self.last_error.reason_id, source=self.source)
        return KeyLookup(None, MSG_KEY_NOT_FOUND, source=self.source, rate_limited=not fetched)

    async def _await_inflight(self, fut: asyncio.Future | None = None) -> None:
        fut = fut or self._inflight
        if fut is None:
            return
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.cancelled():
                return
            raise
        except Exception:  # noqa: BLE001 - outcome is read from the state
            return

    # ---- downloads -----------------------------------------------------------------------

    def _start_fetch(self, why: str) -> asyncio.Future:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch(why))
            self._inflight.add_done_callback(self._clear_inflight)
        return self._inflight

    def _clear_inflight(self, fut: asyncio.Future) -> None:
        if self._inflight is fut:
            self._inflight = None
        if not fut.cancelled():
            fut.exception()  # mark retrieved

    async def refresh(self, why: str = "manual") -> bool:
        """Download now (or join a download in progress); True when the set was replaced."""
        fut = self._start_fetch(why)
        await self._await_inflight(fut)
        return fut.done() and not fut.cancelled() and fut.exception() is None and bool(fut.result())

    async def _fetch(self, why: str) -> bool:
        store = self._store
        request = FetchRequest(
            url=self.url, tls=self.tls, timeout=store.fetch_timeout, max_bytes=store.max_body_bytes,
            user_agent=store.user_agent,
        )
        self.last_attempt = store.clock()
        self.downloads += 1
        started = store.clock()
        try:
            response = await store._run_fetch(request)
            if not (response.content_type.startswith("application/json")
                    or response.content_type.startswith("application/jwk-set+json")):
                raise FetchError(MSG_CONTENT_TYPE)
            if len(response.body) > store.max_body_bytes:
                raise FetchError(f"JWKS response larger than {store.max_body_bytes} bytes", reason_id="jwks_too_large")
            try:
                # JSON decoding and key construction of a large set stay off the event loop too
                entries = await store._run_in_thread(_parse_remote_set, response.body, store.max_keys)
            except JWKSetError as err:
                raise FetchError(err.message, reason_id=err.reason_id) from None
        except asyncio.CancelledError:
            raise
        except FetchError as err:
            self._failed(err, why)
            return False
        except Exception as err:  # noqa: BLE001 - a bug in a custom fetch function must not escape
            self._failed(FetchError(f'Get "{self.url}": {err}'), why)
            return False
        indexes = {strategy: index_keys(entries, strategy) for strategy in self.strategies}
        previous = self._snapshot
        self._snapshot = _Snapshot(entries, indexes, store.clock())
        if self.failures:
            logger.info("[SERVICE: JOSE][JWK] %s: key set available again after %d failed download(s)",
                        self.source, self.failures)
        self.failures = 0
        self.last_error = None
        kids = ", ".join(sorted({e.kid for e in entries}))
        if previous is None or {e.kid for e in previous.entries} != {e.kid for e in entries}:
            logger.info("[SERVICE: JOSE][JWK] %s: %d key(s) loaded (%s) in %.0f ms [%s]",
                        self.source, len(entries), kids, (store.clock() - started) * 1000, why)
        else:
            logger.debug("[SERVICE: JOSE][JWK] %s: %d key(s) refreshed [%s]", self.source, len(entries), why)
        for entry in entries:
            if entry.error:
                logger.warning("[SERVICE: JOSE][JWK] %s: key %s is unusable: %s", self.source, entry.describe(), entry.error)
        return True

    def _failed(self, err: FetchError, why: str) -> None:
        self.failures += 1
        self.last_error = err
        snap = self._snapshot
        if snap is None:
            keeping = "no key set yet: tokens cannot be validated"
        else:
            age = self._store.clock() - snap.fetched_at
            left = self._store.max_staleness - age
            keeping = (f"keeping the {len(snap.entries)} key(s) downloaded {age:.0f}s ago"
                       f" ({'usable for another ' + format(left, '.0f') + 's' if left > 0 else 'now too old to use'})")
        logger.warning("[SERVICE: JOSE][JWK] %s: download failed (%s) [%s]; %s",
                       self.source, err.message, why, keeping)

    # ---- timer ---------------------------------------------------------------------------

    @property
    def period(self) -> float:
        """Refresh period: `cache_duration`, but never so long that the set would go stale first."""
        return max(1.0, min(self.cache_duration, self._store.max_staleness / 2))

    def next_delay(self) -> float:
        store = self._store
        if self.failures:
            return min(store.retry_max, self.period, store.retry_base * (2 ** (self.failures - 1)))
        snap = self._snapshot
        if snap is None:
            return 0.0
        return max(0.0, snap.fetched_at + self.period - store.clock())

    async def run_timer(self) -> None:
        store = self._store
        while True:
            delay = self.next_delay()
            if delay > 0:
                await store.sleep(delay)
                if not self.failures and self.next_delay() > 0:
                    continue  # an unknown-id download refreshed the set meanwhile
            try:
                await self.refresh("timer")
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                logger.exception("[SERVICE: JOSE][JWK] %s: refresh failed", self.source)

    def start(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self.run_timer(), name=f"jwks-refresh {self.url}")

    def stop(self) -> None:
        for task in (self._timer, self._inflight):
            if task is not None and not task.done():
                task.cancel()
        self._timer = None
        self._inflight = None

    @property
    def started(self) -> bool:
        return self._timer is not None and not self._timer.done()

    def describe(self) -> dict:
        snap = self._snapshot
        clock = self._store.clock()
        return {
            "source": self.source,
            "url": self.url,
            "keys": sorted({e.kid for e in snap.entries}) if snap else [],
            "age_seconds": round(clock - snap.fetched_at, 3) if snap else None,
            "usable": self._fresh(snap),
            "failures": self.failures,
            "last_error": self.last_error.message if self.last_error else None,
            "downloads": self.downloads,
            "refresh_every_seconds": self.period,
        }


def _parse_remote_set(body: bytes, max_keys: int) -> tuple[JWKEntry, ...]:
    return parse_jwk_set(body, max_keys=max_keys)


class _EndpointKeys(KeySetHandle):
    """A remote set seen through one endpoint's `key_identify_strategy`."""

    def __init__(self, remote: _RemoteKeySet, strategy: str):
        self._remote = remote
        self._strategy = strategy
        self.source = remote.source

    async def lookup(self, key_id: str) -> KeyLookup:
        return await self._remote.lookup_for(self._strategy, key_id)

    def peek_key(self, key_id: str) -> JWKEntry | None:
        # None when the set is missing or too stale: `lookup` answers then (jwks_stale, a download)
        return self._remote.peek(self._strategy, key_id)

    def describe(self) -> dict:
        return self._remote.describe()


class KeyStore:
    """All remote JWK Sets of one gateway configuration. The addon owns exactly one.

    Differences from KrakenD, on purpose:

    * **Always cached.** Every remote set is downloaded at start-up and refreshed on a timer every
      `cache_duration` seconds (default 900; at most half of `max_staleness`), *even when the
      endpoint says `cache: false`*; KrakenD
      would download the set twice per request in that mode. A key removed from the JWKS therefore
      stays usable until the next refresh (at most `cache_duration`) instead of disappearing at once.
    * **One set per URL.** Endpoints sharing a `jwk_url` (and TLS options) share one cache and one
      timer; the refresh period is the smallest `cache_duration` among them. There is no kid-only
      global cache, so two IdPs reusing a kid never collide (`shared_cache_duration` is accepted and
      ignored).
    * **Unknown ids.** An id missing from the cached set triggers a download at once, shared by all
      concurrent requests (single flight), rate-limited per URL: `refetch_burst` downloads at once,
      then one per `refetch_interval` seconds (defaults 3 and 10 s, whether or not the endpoint sets
      `failed_jwk_key_cooldown`). A URL idle for 10 s always downloads at once on an unknown id.
    * **Stale-if-error, bounded.** A failed or garbage download never replaces the last good set;
      it is logged and retried with exponential back-off (`retry_base` doubling up to `retry_max`,
      at most `cache_duration`). Keys older than `max_staleness` (default 24 h) stop validating
      (401, reason id `jwks_stale`) until a download succeeds. A set with no keys counts as a failure.
    * **Never blocks the loop.** Downloads run in the store's own worker threads with a timeout and
      a size cap; lookups of a cached id never wait for a download in progress.

    Lifecycle: `handle(...)` registers URLs (any time); `start()` must be called inside the running
    event loop (mitmproxy's `running` hook) and returns at once; `stop()` cancels timers (`done`).
    Both are idempotent; handles registered after `start()` start their timer immediately. For a
    configuration reload build a new store, `adopt(old)` to keep the downloaded sets, `start()` it
    and `stop()` the old one: timers are never duplicated.
    """

    def __init__(
        self,
        *,
        url_map: tuple[str, ...] | list[str] = (),
        max_staleness: float = 24 * 3600.0,
        fetch_timeout: float = FETCH_TIMEOUT,
        max_body_bytes: int = MAX_JWKS_BYTES,
        max_keys: int = MAX_JWKS_KEYS,
        refetch_burst: int = 3,
        refetch_interval: float = 10.0,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
        fetch: FetchFunc | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        user_agent: str = USER_AGENT,
        max_workers: int = 4,
    ):
        self.url_map = parse_url_map(url_map)
        self.max_staleness = float(max_staleness)
        self.fetch_timeout = float(fetch_timeout)
        self.max_body_bytes = int(max_body_bytes)
        self.max_keys = int(max_keys)
        self.refetch_burst = int(refetch_burst)
        self.refetch_interval = float(refetch_interval)
        self.retry_base = float(retry_base)
        self.retry_max = float(retry_max)
        self.clock = clock
        self.sleep = sleep
        self.user_agent = user_agent
        self._default_fetcher = RequestsFetcher() if fetch is None else None
        self._fetch: FetchFunc = fetch if fetch is not None else self._default_fetcher  # type: ignore[assignment]
        self._executor: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._sets: dict[tuple[str, TLSOptions], _RemoteKeySet] = {}
        self._started = False

    # ---- registration ----------------------------------------------------------------------

    def map_url(self, url: str) -> str:
        """Apply `url_map` (longest matching prefix wins)."""
        best = None
        for prefix, replacement in self.url_map:
            if url.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, replacement)
        return url if best is None else best[1] + url[len(best[0]):]

    def check_mapped_url(self, url: str, *, insecure_allowed: bool) -> str | None:
        """Why a mapped URL may not be used (None when it may): the target must be https, or http on
        a loopback address, unless the endpoint has `disable_jwk_security`."""
        mapped = self.map_url(url)
        if mapped == url or insecure_allowed or mapped.startswith("https://"):
            return None
        if mapped.startswith("http://") and is_loopback_url(mapped):
            return None
        return f"jwk_url_map sends {url} to {mapped}, which is neither https nor a loopback http address"

    def handle(self, jwk_url: str, *, tls: TLSOptions = TLSOptions(), strategy: str = "kid",
               cache_duration: float = 900.0) -> KeySetHandle:
        """The handle an endpoint uses to look keys up in the set at `jwk_url` (after `url_map`)."""
        mapped = self.map_url(jwk_url)
        key = (mapped, tls)
        remote = self._sets.get(key)
        if remote is None:
            remote = _RemoteKeySet(self, mapped, jwk_url, tls)
            remote.cache_duration = float(cache_duration or 900)
            self._sets[key] = remote
        else:
            remote.cache_duration = min(remote.cache_duration, float(cache_duration or 900))
        if strategy not in remote.strategies:
            remote.strategies.add(strategy)
            snap = remote._snapshot
            if snap is not None:
                snap.indexes[strategy] = index_keys(snap.entries, strategy)
        if self._started:
            remote.start()
        return _EndpointKeys(remote, strategy)

    def adopt(self, other: "KeyStore") -> None:
        """Reuse the sets `other` already downloaded (configuration reload), without its timers."""
        for key, remote in self._sets.items():
            old = other._sets.get(key)
            if old is not None and old._snapshot is not None and remote._snapshot is None:
                snap = old._snapshot
                remote._snapshot = _Snapshot(snap.entries, {s: index_keys(snap.entries, s) for s in remote.strategies},
                                             snap.fetched_at)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the refresh timers; call inside the running loop (mitmproxy `running`)."""
        asyncio.get_running_loop()
        self._started = True
        for remote in self._sets.values():
            remote.start()

    def stop(self) -> None:
        """Cancel every timer and download wait (mitmproxy `done`). Safe to call twice."""
        self._started = False
        for remote in self._sets.values():
            remote.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._default_fetcher is not None:
            self._default_fetcher.close()

    async def refresh(self, url: str | None = None) -> dict[str, bool]:
        """Download now, every set or the one(s) for `url` (original or mapped)."""
        targets = [r for r in self._sets.values() if url is None or url in (r.url, r.original_url)]
        results = await asyncio.gather(*(r.refresh("manual") for r in targets))
        return {r.source: ok for r, ok in zip(targets, results)}

    def status(self) -> list[dict]:
        """One description per remote set, for the explain command and mitmweb."""
        return [r.describe() for r in self._sets.values()]

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="jwks-fetch")
        return self._executor

    async def _run_in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), func, *args)

    async def _run_fetch(self, request: FetchRequest) -> FetchResponse:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool(), self._fetch, request)
        try:
            # the fetch function has its own deadline; this is a backstop for custom ones
            return await asyncio.wait_for(future, timeout=request.timeout * 2 + 1)
        except asyncio.TimeoutError:
            raise FetchError(
                f'Get "{request.url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
                reason_id="jwks_timeout",
            ) from None


def parse_url_map(items: tuple[str, ...] | list[str] | str) -> tuple[tuple[str, str], ...]:
    """`["https://api.descope.com=http://127.0.0.1:4000"]` -> ((prefix, replacement), ...).
    Raises ValueError for an item without `=` or with an empty prefix."""
    if isinstance(items, str):
        items = [items] if items else []
    out = []
    for item in items:
        prefix, sep, replacement = item.partition("=")
        if not sep or not prefix:
            raise ValueError(f"jwk_url_map entry {item!r} is not of the form prefix=replacement")
        out.append((prefix, replacement))
    return tuple(out)


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
