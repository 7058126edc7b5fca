"""A bounded LRU cache of tokens whose signature has been verified, for the validator's hot path.

    cache = TokenCache(capacity=10_000)
    entry = cache.get(token)                     # None, or a VerifiedToken (marked most recently used)
    cache.put(token, VerifiedToken(...))         # only after a successful signature check
    cache.drop(token)                            # e.g. its key left the key set

What is cached is what depends on the token's bytes alone: the protected header, the decoded claims
and registered claims, the Descope rule's outcome, and the (alg, key object) pairs the signature was
verified with. Nothing that depends on time or on an endpoint's configuration is cached; the
validator re-evaluates those on every request. The security argument is the comment above
`EndpointValidator.authenticate` (validator.py), where the cache is used.

There is no process-wide cache: the authenticate stage (stage.py `AuthStage`) owns one and hands it
to every validator it builds, so a token used on many endpoints is verified once; a configuration
reload copies the previous stage's entries (`adopt`), as its KeyStore adopts the downloaded keys.
Single event loop, no locking: mitmproxy runs every hook on one loop.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

DEFAULT_CAPACITY = 10_000
MAX_KEYS_PER_TOKEN = 4  # (alg, key) pairs remembered per token; more only costs a re-verification


class VerifiedToken:
    """What a successful signature check proved about one exact token string.

    header        the protected header (read-only)
    header_alg    its `alg` member (`header.get("alg")`)
    safe_header   its loggable form, as put in Verdict.details["header"] (read-only)
    claims        the decoded claims (read-only: shared by every request carrying the token)
    registered    go-jose's registered claims (iss, aud, exp, nbf, iat, ...)
    descope       `descope_policy(claims)`: a pure function of the claims
    verified      ((alg, JWKEntry), ...): the configured alg and the key *object* the signature was
                  verified with; a hit counts only for the same alg and the very same key object
    key_ids       key_identify_strategy -> the token's key id (a pure function of the header)
    url_values    `{"JWT.<claim>": text}`, rendered from the claims on first use (read-only)
    """

    __slots__ = ("header", "header_alg", "safe_header", "claims", "registered", "descope", "verified", "key_ids",
                 "url_values")

    def __init__(self, header: dict, safe_header: dict, claims: dict, registered: Any,
                 descope: tuple[str, str] | None, alg: str, key: Any):
        self.header = header
        self.header_alg = header.get("alg")  # what the hit path compares with the endpoint's alg
        self.safe_header = safe_header
        self.claims = claims
        self.registered = registered
        self.descope = descope
        self.verified: tuple[tuple[str, Any], ...] = ((alg, key),)
        self.key_ids: dict[str, str] = {}  # key_identify_strategy -> the token's key id
        self.url_values: dict[str, str] | None = None  # `{JWT.<claim>}` values, rendered on first use

    def verified_with(self, alg: str, key: Any) -> bool:
        """True when the signature was verified under this alg with this very key object."""
        for verified_alg, verified_key in self.verified:
            if verified_key is key and verified_alg == alg:
                return True
        return False

    def inherit(self, previous: "VerifiedToken") -> None:
        """Keep the (alg, key) pairs an older entry for the same token had proven (newest first,
        at most MAX_KEYS_PER_TOKEN), so two key sets holding the same key do not evict each other."""
        pairs = list(self.verified)
        for alg, key in previous.verified:
            if len(pairs) >= MAX_KEYS_PER_TOKEN:
                break
            if not any(k is key and a == alg for a, k in pairs):
                pairs.append((alg, key))
        self.verified = tuple(pairs)
        for strategy, key_id in previous.key_ids.items():
            self.key_ids.setdefault(strategy, key_id)


class TokenCache:
    """Bounded LRU: token string -> VerifiedToken. Memory is bounded by `capacity` entries; an
    eviction only costs the next request with that token a full verification."""

    __slots__ = ("capacity", "_entries", "hits", "misses", "evictions")

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, token: str) -> VerifiedToken | None:
        entry = self._entries.get(token)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(token)
        self.hits += 1
        return entry

    def put(self, token: str, entry: VerifiedToken) -> None:
        entries = self._entries
        entries[token] = entry
        entries.move_to_end(token)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
            self.evictions += 1

    def drop(self, token: str) -> None:
        self._entries.pop(token, None)

    def clear(self) -> None:
        self._entries.clear()

    def adopt(self, other: "TokenCache") -> None:
        """Take over `other`'s entries, least recently used first, keeping this cache's capacity
        (configuration reload). An entry only ever counts for the very key objects it was verified
        with, so entries whose keys the new configuration does not hold are simply never hit."""
        if other is self:
            return
        entries = self._entries
        for token, entry in list(other._entries.items()):
            if token not in entries:  # an entry of this cache is at least as recent
                self.put(token, entry)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: object) -> bool:
        return token in self._entries

    def stats(self) -> dict:
        return {"entries": len(self._entries), "capacity": self.capacity, "hits": self.hits,
                "misses": self.misses, "evictions": self.evictions}


__all__ = ["DEFAULT_CAPACITY", "TokenCache", "VerifiedToken"]
