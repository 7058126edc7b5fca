"""One endpoint's JWT validator: the compiled chain of checks of spec §5, run per request.

    spec = parse_validator(endpoint_extra_config, path="endpoints[3].extra_config", endpoint_path="/foo/:id")
    validator = EndpointValidator(spec, keystore, endpoint_path="/foo/:id")
    verdict = await validator.authenticate(request_headers)   # [(name, value), ...] as received

Order: extract -> parse -> header `alg` (before any key download) -> the gateway's header rules ->
key lookup -> signature -> registered claims -> Descope rules -> roles (403/500) -> scopes (403/500)
-> `propagate_claims`. The first failure decides. Every rejection is logged at INFO (ERROR with
`operation_debug`, as KrakenD) as `[ENDPOINT: <path>][JWTValidator] <message>`; the gateway's own
refusals carry their reason id. Tokens and signatures are never logged.

A token seen before skips parsing, the header rules, the signature check and payload decoding
through the verified-token cache (token_cache.py) that the validator is given (AuthStage gives all
of its validators its own one); the key lookup and every check after the signature still run on
each request. The security argument is the comment above `EndpointValidator.authenticate`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from krakend_mitm.auth import _go
from krakend_mitm.auth.claims import (
    ALLOW,
    ClaimsError,
    Propagator,
    RolesCheck,
    ScopesCheck,
    claims_summary,
    decode_payload,
    descope_policy,
    render_claim_for_url,
    validate_registered,
)
from krakend_mitm.auth.config import ValidatorSpec
from krakend_mitm.auth.jwks import JWKEntry, KeyLookup, KeySetHandle, KeyStore, LocalKeySet
from krakend_mitm.auth.jws import (
    MSG_ALG_INVALID,
    MSG_TOKEN_NOT_FOUND,
    JWSError,
    ParsedJWS,
    extract_token,
    header_policy,
    parse_jws,
    token_key_id,
    verify_signature,
)
from krakend_mitm.auth.token_cache import TokenCache, VerifiedToken

logger = logging.getLogger(__name__)

PREFIX_INVALID = "Unable to validate the token: "
MSG_REJECTED = "Token sent by client rejected"

Propagation = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Verdict:
    """The outcome for one request.

    status   200 = let through; 401 / 403 / 500 = answer that status with an empty body.
    message  KrakenD's text (`Unable to validate the token: Token not found`), "" on success.
    reason_id  our id for a refusal KrakenD would not make (spec §20, descope.md §9), else None.
    claims   the decoded claims when every check passed (numbers are floats, as in Go), else None.
    propagate  (canonical header name, values) to SET on the backend request, replacing what the
               client sent; an empty tuple means "remove the header". Only on success.
    details  for the explain command / mitmweb: check (which step decided), token_source, header,
             kid, key_source, signature_verified, token_cache ("hit" when the signature check was
             skipped), claims (when decoded). Never the token or signature.
    verified the verified-token cache entry of an accepted token (memoizes `url_values`), else None.
    """

    status: int
    message: str
    reason_id: str | None = None
    claims: dict | None = None
    propagate: Propagation = ()
    details: dict = field(default_factory=dict)
    verified: VerifiedToken | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 200


_new_object = object.__new__


def _accepted(claims: dict, propagate: Propagation, details: dict, verified: VerifiedToken | None) -> Verdict:
    """`Verdict(200, "", None, claims, propagate, details, verified)`, built without the frozen
    dataclass's per-field `object.__setattr__` calls (the hot path of every accepted request)."""
    verdict = _new_object(Verdict)
    fields = verdict.__dict__
    fields["status"] = 200
    fields["message"] = ""
    fields["reason_id"] = None
    fields["claims"] = claims
    fields["propagate"] = propagate
    fields["details"] = details
    fields["verified"] = verified
    return verdict


def _render_url_values(claims: dict) -> dict[str, str]:
    return {f"JWT.{name}": render_claim_for_url(value) for name, value in claims.items()}


class _StaticError(KeySetHandle):
    """A key source that can only fail (e.g. an empty or non-http `jwk_url`)."""

    def __init__(self, error: str, source: str, reason_id: str | None = None):
        self._lookup = KeyLookup(None, error, reason_id=reason_id, source=source)
        self.source = source

    async def lookup(self, key_id: str) -> KeyLookup:
        return self._lookup

    def describe(self) -> dict:
        return {"source": self.source, "error": self._lookup.error}


def _short(value: Any, limit: int = 200) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if isinstance(value, (dict, list)):
        text = _go.go_json_dumps(value)
        return value if len(text) <= limit else text[:limit] + "…"
    return value


def _safe_header(header: dict | None) -> dict:
    return {str(k)[:64]: _short(v) for k, v in (header or {}).items()}



class EndpointValidator:
    """The validator of one endpoint, built once from its `ValidatorSpec`.

    keystore   the addon's KeyStore (may be None for `jwk_local_path` endpoints)
    endpoint_path  the router form of the path (`/users/:id`), used in log lines
    clock      wall clock for exp/nbf/iat and the failed-kid cooldown (injectable for tests)
    rejecter   optional `claims -> bool`; True answers 401 `Token sent by client rejected`
               (the seam for `auth/revoker` / `validation/cel`), checked before roles
    log_startup  log the start-up lines of spec §3 now; they are always kept in `startup_lines`
               as (level, text) for callers that report them themselves
    token_cache  the verified-token cache to use (see token_cache.py); AuthStage hands every
               validator it builds the one it owns. None (the default) disables it.
    """

    def __init__(self, spec: ValidatorSpec, keystore: KeyStore | None, *, endpoint_path: str,
                 clock: Callable[[], float] = time.time, cooldown_entries: int = 10_000,
                 rejecter: Callable[[dict], bool] | None = None, log_startup: bool = True,
                 token_cache: TokenCache | None = None):
        self.spec = spec
        self.token_cache = token_cache
        self.endpoint_path = endpoint_path
        self._prefix = f"[ENDPOINT: {endpoint_path}][JWTValidator] "
        self._clock = clock
        self._level = logging.ERROR if spec.operation_debug else logging.INFO
        self._failed_ids: dict[str, float] = {}
        self._failed_cap = cooldown_entries
        self._rejecter = rejecter
        self._fail: Verdict | None = None
        self.keys: KeySetHandle | None = None
        self._peek: Callable[[str], JWKEntry | None] | None = None
        self.startup_lines: list[tuple[int, str]] = []
        self._log_startup = log_startup
        self._header_lname = (spec.auth_header_name or "Authorization").lower()
        self._header_source = f"header:{spec.auth_header_name or 'Authorization'}"
        # read on every request: the spec's fields as plain attributes
        self._alg = spec.alg
        self._strategy = spec.key_identify_strategy
        self._cooldown = spec.failed_jwk_key_cooldown
        self._issuer = spec.issuer
        self._audience = spec.audience
        self._leeway = spec.leeway
        self._keys_source = ""

        if spec.broken is not None:
            message = f"Unable to parse the configuration: {spec.broken}"
            self._startup(logging.WARNING, message)
            self._fail = Verdict(401, message, None, details={"check": "config"})
            return
        if spec.unsupported:
            message = "Validator configuration not supported by this gateway: " + "; ".join(spec.unsupported)
            self._startup(logging.ERROR, message)
            self._fail = Verdict(401, message, "config_unsupported", details={"check": "config"})
            return

        self.keys = self._key_source(keystore)
        self._keys_source = self.keys.source
        self._peek = getattr(self.keys, "peek_key", None)
        self._roles = RolesCheck(spec.roles, spec.roles_key, spec.roles_key_is_nested)
        self._scopes = ScopesCheck(spec.scopes, spec.scopes_key, spec.scopes_matcher)
        # the hit path's shortcut calls these (bound methods: cheaper than calling the instances)
        self._roles_fast = self._roles.__call__ if self._roles.required else None
        self._scopes_fast = self._scopes.__call__ if self._scopes.active else None
        self._propagator = Propagator(spec.propagate_claims, spec.propagate_claims_preserve_array, endpoint_path)
        self._log_extra = tuple(k for k in (spec.roles_key, spec.scopes_key) if k)
        self._propagate = self._propagator.active

        if spec.nested_roles:
            self._startup(logging.DEBUG, f"Roles will be matched against the nested key: '{spec.roles_key}'")
        else:
            self._startup(logging.DEBUG, f"Roles will be matched against the key: '{spec.roles_key}'")
        if self._scopes.active:
            which = "all" if spec.scopes_matcher == "all" else "any of"
            self._startup(logging.DEBUG, f"Constraint added: tokens must contain a claim '{spec.scopes_key}' with "
                                         f"{which} these scopes: [{' '.join(spec.scopes)}]")
        else:
            self._startup(logging.DEBUG, "No scope validation required")
        if spec.operation_debug:
            self._startup(logging.DEBUG, "Validator enabled for this endpoint. Operation debug is enabled")
        else:
            self._startup(logging.DEBUG, "Validator enabled for this endpoint")

    def _startup(self, level: int, message: str) -> None:
        line = self._prefix + message
        self.startup_lines.append((level, line))
        if self._log_startup:
            logger.log(level, line)

    def _key_source(self, keystore: KeyStore | None) -> KeySetHandle:
        spec = self.spec
        if spec.local_keys is not None:
            return LocalKeySet(spec.local_keys, strategy=spec.key_identify_strategy, path=spec.jwk_local_path,
                               jwk_url=spec.jwk_url)
        url = spec.jwk_url
        if not (url.startswith("http://") or url.startswith("https://")):
            scheme = url.split(":", 1)[0] if ":" in url else ""
            return _StaticError(f'Get "{url}": unsupported protocol scheme "{scheme}"', url)
        if keystore is None:
            raise ValueError("a KeyStore is required for endpoints with a jwk_url")
        why = keystore.check_mapped_url(url, insecure_allowed=spec.disable_jwk_security)
        if why is not None:
            self._startup(logging.ERROR, why)
            return _StaticError(f"Token rejected by the gateway (jwk_url_map_insecure): {why}", url,
                                reason_id="jwk_url_map_insecure")
        return keystore.handle(url, tls=spec.tls, strategy=spec.key_identify_strategy,
                               cache_duration=spec.cache_duration)

    # -----------------------------------------------------------------------------------------

    def _reject(self, status: int, message: str, reason_id: str | None, details: dict,
                claims: dict | None = None, header: dict | None = None) -> Verdict:
        line = self._prefix + message
        if reason_id and f"({reason_id})" not in message:
            line += f" [reason: {reason_id}]"
        logger.log(self._level, line)
        if self.spec.operation_debug:
            summary = claims_summary(claims, self._log_extra) if claims is not None else {}
            logger.log(self._level, self._prefix + "token header=" + _go.go_json_dumps(_safe_header(header))
                       + " kid=" + _go.go_json_dumps(details.get("kid")) + " claims=" + _go.go_json_dumps(summary))
        return Verdict(status, message, reason_id, None, (), details)

    @staticmethod
    def _jws_message(err: JWSError) -> str:
        if err.gateway_only and err.reason_id:
            return f"Token rejected by the gateway ({err.reason_id}): {err.message}"
        return PREFIX_INVALID + err.message

    def _verify_signature(self, parsed: ParsedJWS, key: JWKEntry) -> None:
        """The signature step (raises JWSError). Only reached when the verified-token cache has no
        proof for this exact token, this alg and this very key object; see `authenticate`."""
        verify_signature(parsed, self.spec.alg, key)

    # The verified-token cache: security argument.
    #
    # What a hit skips: parsing, the gateway's header rules, the signature check and the payload
    # decoding. All four are pure functions of the token string (and, for the signature, of the
    # configured alg and the key), so their outcome for the same inputs is the same every time.
    #
    # * Keyed by the exact token string as extracted. A tampered, re-encoded or re-padded token is
    #   another string and misses: it is parsed and verified from scratch. Dict lookups compare the
    #   whole string, not just its hash.
    # * Only successes are stored: an entry is created after the signature verified *and* the
    #   payload decoded; a failed check never creates or refreshes an entry.
    # * Bound to the validator config and the key: an entry records the (alg, key object) pairs its
    #   signature verified with. A hit still checks this endpoint's `alg` against the token header,
    #   computes the key id with this endpoint's `key_identify_strategy`, looks the key up in this
    #   endpoint's key set on every request (applying the failed-kid cooldown when the set does not
    #   hold the id at once, as for any token). The cached proof
    #   is used only if that lookup returns the very same key object (identity, not equality) under
    #   the same alg. A key that left the set (rotation), a set too stale to use (`jwks_stale`) or an
    #   unknown kid fails the lookup: the request is refused exactly as without the cache and the
    #   entry is dropped. A key re-downloaded or replaced under the same kid is a new object: the
    #   signature is verified again against it (and the entry dropped if that fails).
    # * Re-evaluated on every request, hit or not: `exp`/`nbf`/`iat` with the leeway against the
    #   clock, `iss`, `aud`, the Descope rules, the rejecter, roles, scopes and `propagate_claims`
    #   of *this* endpoint. A token cached by one endpoint gains nothing on another one but the
    #   skipped signature work.
    # * Bounded: an LRU of `capacity` entries (default 10,000); eviction only costs a
    #   re-verification. Cached claims are shared between requests and must be treated as read-only.
    # * A hit answers faster than a miss, which tells a client only whether a token it already holds
    #   was recently presented; nothing about other tokens or keys.

    async def authenticate(self, headers: Iterable[tuple[str, str]]) -> Verdict:
        """Validate the request whose headers (original case and order) are given."""
        if self._fail is not None:
            logger.log(self._level, self._prefix + self._fail.message)
            return replace(self._fail, details=dict(self._fail.details))
        found = self._extract(headers)
        if found is None:
            return self._reject(401, PREFIX_INVALID + MSG_TOKEN_NOT_FOUND, None, {"check": "extract"})
        token, source = found
        cache = self.token_cache
        if cache is None:
            return await self._authenticate_full(token, source, None)
        entry = cache.get(token)
        if entry is None:
            return await self._authenticate_full(token, source, None)

        # The hit path: this exact token's signature was verified before. Whatever is not a pure
        # function of the token is checked again; anything unusual (another alg, a kid in cooldown
        # that is not in the key set, a different key object) goes to the full path, which decides
        # as if there were no cache.
        key_id = entry.key_ids.get(self._strategy)
        if key_id is None or entry.header_alg != self._alg:
            return await self._authenticate_full(token, source, entry)
        # The key is looked up on every request: rotation and staleness apply to cached tokens too.
        # `peek_key(key_id)` (optional on a key set handle) answers a usable cached key synchronously,
        # or None when `lookup` has more to say (unknown id, stale set, a download to wait for).
        peek = self._peek
        key = peek(key_id) if peek is not None else None
        if key is not None:
            key_source = self._keys_source
        else:
            if self._cooldown and key_id in self._failed_ids:
                return await self._authenticate_full(token, source, entry)
            lookup = await self.keys.lookup(key_id)  # type: ignore[union-attr]
            key_source = lookup.source or self._keys_source
            key = lookup.key
            if key is None:
                cache.drop(token)  # its key left the set, or the set is unusable
                details = {"check": "key", "token_source": source, "header": entry.safe_header,
                           "token_cache": "hit", "kid": key_id, "key_source": key_source}
                return self._key_failure(lookup, key_id, details, entry.header)
        alg, verified_key = entry.verified[0]
        if verified_key is not key or alg != self._alg:
            if not entry.verified_with(self._alg, key):
                # a new key object (re-download, key replaced under the same kid): verify again
                return await self._authenticate_full(token, source, entry)

        # Everything after the signature. The common case, every check passing, is decided here
        # with as few calls as possible: the time claims in two comparisons (RegisteredClaims'
        # `not_before`/`expires` are exactly what `validate_registered` compares), iss, roles and
        # scopes. Any other case, or one this shortcut does not cover (a Descope rule, a rejecter,
        # an audience), is decided by `_check_claims`, the same code as for a new token.
        claims = entry.claims
        registered = entry.registered
        now = self._clock()
        leeway = self._leeway
        issuer = self._issuer
        roles = self._roles_fast
        scopes = self._scopes_fast
        if (entry.descope is None and self._rejecter is None and not self._audience
                and (not issuer or issuer == registered.iss)
                and now + leeway >= registered.not_before and now - leeway <= registered.expires
                and (roles is None or roles(claims) is ALLOW)
                and (scopes is None or scopes(claims) is ALLOW)):
            return _accepted(claims, self._propagator(claims) if self._propagate else (),
                             {"check": "passed", "token_source": source, "header": entry.safe_header,
                              "token_cache": "hit", "kid": key_id, "key_source": key_source,
                              "signature_verified": True, "claims": claims}, entry)
        details = {"check": "key", "token_source": source, "header": entry.safe_header, "token_cache": "hit",
                   "kid": key_id, "key_source": key_source, "signature_verified": True}
        return self._check_claims(claims, registered, entry.descope, details, entry.header, entry)

    def _extract(self, headers: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
        """`extract_token` with a fast path for the common case, a non-empty auth header; the same
        result in every case (the first header of that name decides; cookies only without it)."""
        if not isinstance(headers, (list, tuple)):
            headers = list(headers)
        lname = self._header_lname
        size = len(lname)
        for name, value in headers:
            # the length test first: lower-casing every header name costs more than the rest of a hit
            if len(name) == size and name.lower() == lname:
                raw = value.strip(" \t")
                if not raw:
                    break
                # a stripped value starting with "bearer " has more than 7 characters, hence bytes
                if raw[:7].lower() == "bearer ":
                    raw = raw[7:]
                return raw, self._header_source
        spec = self.spec
        extracted = extract_token(headers, spec.auth_header_name, spec.cookie_key)
        return None if extracted is None else (extracted.token, extracted.source)

    async def _authenticate_full(self, token: str, source: str, previous: VerifiedToken | None) -> Verdict:
        spec = self.spec
        details: dict[str, Any] = {"check": "parse", "token_source": source}
        try:
            parsed = parse_jws(token)
        except JWSError as err:
            return self._reject(401, self._jws_message(err), err.reason_id, details)
        header = parsed.header
        details["header"] = _safe_header(header)

        details["check"] = "alg"
        if parsed.alg != spec.alg:
            return self._reject(401, PREFIX_INVALID + MSG_ALG_INVALID, None, details, header=header)

        details["check"] = "header"
        policy = header_policy(parsed)
        if policy is not None:
            reason, detail = policy
            return self._reject(401, f"Token rejected by the gateway ({reason}): {detail}", reason, details,
                                header=header)

        details["check"] = "key"
        key_id = token_key_id(parsed, spec.key_identify_strategy)
        details["kid"] = key_id
        details["key_source"] = self.keys.source if self.keys else ""
        # A key the set holds right now is used whatever the failed-kid cooldown says: the cooldown
        # spares the IdP downloads for ids that were missing, and a cached key needs none.
        peek = self._peek
        key = peek(key_id) if peek is not None else None
        if key is None:
            cooldown = spec.failed_jwk_key_cooldown
            if cooldown:
                failed_at = self._failed_ids.get(key_id)
                if failed_at is not None and self._clock() - failed_at < cooldown:
                    return self._reject(401, PREFIX_INVALID + "no Keys have been found", None, details,
                                        header=header)
            lookup = await self.keys.lookup(key_id)  # type: ignore[union-attr]
            details["key_source"] = lookup.source or details["key_source"]
            key = lookup.key
            if key is None:
                if previous is not None:
                    self.token_cache.drop(token)  # type: ignore[union-attr]
                return self._key_failure(lookup, key_id, details, header)

        details["check"] = "signature"
        details["signature_verified"] = False
        try:
            self._verify_signature(parsed, key)
        except JWSError as err:
            if previous is not None:
                self.token_cache.drop(token)  # type: ignore[union-attr]
            return self._reject(401, self._jws_message(err), err.reason_id, details, header=header)
        details["signature_verified"] = True

        details["check"] = "claims"
        try:
            claims, registered = decode_payload(parsed.payload)
        except ClaimsError as err:
            return self._reject(401, PREFIX_INVALID + err.message, err.reason_id, details, header=header)
        rule = descope_policy(claims)
        cache = self.token_cache
        entry = None
        if cache is not None:
            # only now: the signature verified with `key` under the configured alg, and the payload decoded
            safe = details["header"]
            entry = VerifiedToken(header, header if safe == header else safe, claims, registered, rule, spec.alg, key)
            entry.key_ids[spec.key_identify_strategy] = key_id
            if previous is not None:
                entry.inherit(previous)
            cache.put(token, entry)
        return self._check_claims(claims, registered, rule, details, header, entry)

    def _key_failure(self, lookup: KeyLookup, key_id: str, details: dict, header: dict) -> Verdict:
        # A miss the unknown-id rate limit answered without asking the IdP is not a failed lookup of
        # this id: recording it would refuse the id for the whole cooldown even once the next
        # allowed download finds it (e.g. a key rotated in during an unknown-kid storm).
        if self.spec.failed_jwk_key_cooldown and not lookup.rate_limited:
            self._remember_failure(key_id)
        message = lookup.error or "no Keys have been found"
        if lookup.status == 500 or message.startswith("Token rejected"):
            text = message
        else:
            text = PREFIX_INVALID + message
        return self._reject(lookup.status, text, lookup.reason_id, details, header=header)

    def _check_claims(self, claims: dict, registered: Any, rule: tuple[str, str] | None, details: dict,
                      header: dict, entry: VerifiedToken | None) -> Verdict:
        """Everything after the signature, on every request, hit or miss: time claims with the
        leeway, iss, aud, the Descope rules, the rejecter, roles, scopes, propagate_claims."""
        details["claims"] = claims
        failure = validate_registered(registered, issuer=self._issuer, audience=self._audience,
                                      leeway=self._leeway, now=self._clock())
        if failure is not None:
            details["check"] = failure[0]
            return self._reject(401, PREFIX_INVALID + failure[1], None, details, claims, header)

        if rule is not None:
            details["check"] = "descope"
            reason, detail = rule
            return self._reject(401, f"{MSG_REJECTED} ({reason}): {detail}", reason, details, claims, header)

        if self._rejecter is not None:
            details["check"] = "rejecter"
            if self._rejecter(claims):
                return self._reject(401, MSG_REJECTED, None, details, claims, header)

        decision = self._roles(claims)
        if decision.status != 200:
            details["check"] = "roles"
            return self._reject(decision.status, decision.message, None, details, claims, header)

        decision = self._scopes(claims)
        if decision.status != 200:
            details["check"] = "scopes"
            return self._reject(decision.status, decision.message, None, details, claims, header)

        details["check"] = "passed"
        return _accepted(claims, self._propagator(claims) if self._propagate else (), details, entry)

    def url_values(self, verdict: Verdict, names: Iterable[str] | None = None) -> dict[str, str]:
        """`{"JWT.<claim>": text}` for every top-level claim of an accepted verdict, rendered as
        spec §12 says; a claim missing here leaves its `{JWT.<claim>}` placeholder in the URL.
        With `names` (the claims an endpoint's `url_pattern`s use), only those are rendered; an
        empty `names` renders nothing. All claims are rendered once per cached token (a pure
        function of its claims); treat the dict as read-only."""
        claims = verdict.claims
        if not claims:
            return {}
        if names is not None:
            return {f"JWT.{name}": render_claim_for_url(claims[name]) for name in names if name in claims}
        entry = verdict.verified
        if entry is not None and entry.claims is claims:
            values = entry.url_values
            if values is None:
                values = entry.url_values = _render_url_values(claims)
            return values
        return _render_url_values(claims)

    def _remember_failure(self, key_id: str) -> None:
        if len(self._failed_ids) >= self._failed_cap:
            now = self._clock()
            ttl = self.spec.failed_jwk_key_cooldown or 0
            for k in [k for k, t in self._failed_ids.items() if now - t >= ttl]:
                del self._failed_ids[k]
            while len(self._failed_ids) >= self._failed_cap:
                self._failed_ids.pop(next(iter(self._failed_ids)))
        self._failed_ids[key_id] = self._clock()

    def describe(self) -> dict:
        """Configuration and key-set state, for the explain command."""
        spec = self.spec
        return {
            "endpoint": self.endpoint_path,
            "alg": spec.alg,
            "fail_closed": self._fail.message if self._fail else None,
            "issuer": spec.issuer,
            "audience": list(spec.audience),
            "roles": list(spec.roles),
            "roles_key": spec.roles_key,
            "scopes": list(spec.scopes),
            "scopes_key": spec.scopes_key,
            "keys": self.keys.describe() if self.keys else None,
        }
