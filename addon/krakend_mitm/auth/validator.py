"""One endpoint's JWT validator: the compiled chain of checks of spec §5, run per request.

    spec = parse_validator(endpoint_extra_config, path="endpoints[3].extra_config", endpoint_path="/foo/:id")
    validator = EndpointValidator(spec, keystore, endpoint_path="/foo/:id")
    verdict = await validator.authenticate(request_headers)   # [(name, value), ...] as received

Order: extract -> parse -> header `alg` (before any key download) -> the gateway's header rules ->
key lookup -> signature -> registered claims -> Descope rules -> roles (403/500) -> scopes (403/500)
-> `propagate_claims`. The first failure decides. Every rejection is logged at INFO (ERROR with
`operation_debug`, as KrakenD) as `[ENDPOINT: <path>][JWTValidator] <message>`; the gateway's own
refusals carry their reason id. Tokens and signatures are never logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from krakend_mitm.auth import _go
from krakend_mitm.auth.claims import (
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
             kid, key_source, signature_verified, claims (when decoded). Never the token or signature.
    """

    status: int
    message: str
    reason_id: str | None = None
    claims: dict | None = None
    propagate: Propagation = ()
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200


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
    """

    def __init__(self, spec: ValidatorSpec, keystore: KeyStore | None, *, endpoint_path: str,
                 clock: Callable[[], float] = time.time, cooldown_entries: int = 10_000,
                 rejecter: Callable[[dict], bool] | None = None, log_startup: bool = True):
        self.spec = spec
        self.endpoint_path = endpoint_path
        self._prefix = f"[ENDPOINT: {endpoint_path}][JWTValidator] "
        self._clock = clock
        self._level = logging.ERROR if spec.operation_debug else logging.INFO
        self._failed_ids: dict[str, float] = {}
        self._failed_cap = cooldown_entries
        self._rejecter = rejecter
        self._fail: Verdict | None = None
        self.keys: KeySetHandle | None = None
        self.startup_lines: list[tuple[int, str]] = []
        self._log_startup = log_startup

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
        self._roles = RolesCheck(spec.roles, spec.roles_key, spec.roles_key_is_nested)
        self._scopes = ScopesCheck(spec.scopes, spec.scopes_key, spec.scopes_matcher)
        self._propagator = Propagator(spec.propagate_claims, spec.propagate_claims_preserve_array, endpoint_path)
        self._log_extra = tuple(k for k in (spec.roles_key, spec.scopes_key) if k)

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
        """The signature step; a verified-token cache can wrap this method."""
        verify_signature(parsed, self.spec.alg, key)

    async def authenticate(self, headers: Iterable[tuple[str, str]]) -> Verdict:
        """Validate the request whose headers (original case and order) are given."""
        if self._fail is not None:
            logger.log(self._level, self._prefix + self._fail.message)
            return replace(self._fail, details=dict(self._fail.details))
        spec = self.spec
        extracted = extract_token(headers, spec.auth_header_name, spec.cookie_key)
        details: dict[str, Any] = {"check": "extract"}
        if extracted is None:
            return self._reject(401, PREFIX_INVALID + MSG_TOKEN_NOT_FOUND, None, details)
        details["token_source"] = extracted.source

        details["check"] = "parse"
        try:
            parsed = parse_jws(extracted.token)
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
        cooldown = spec.failed_jwk_key_cooldown
        if cooldown:
            failed_at = self._failed_ids.get(key_id)
            if failed_at is not None and self._clock() - failed_at < cooldown:
                return self._reject(401, PREFIX_INVALID + "no Keys have been found", None, details, header=header)
        lookup = await self.keys.lookup(key_id)  # type: ignore[union-attr]
        details["key_source"] = lookup.source or details["key_source"]
        if lookup.key is None:
            if cooldown:
                self._remember_failure(key_id)
            message = lookup.error or "no Keys have been found"
            if lookup.status == 500 or message.startswith("Token rejected"):
                text = message
            else:
                text = PREFIX_INVALID + message
            return self._reject(lookup.status, text, lookup.reason_id, details, header=header)

        details["check"] = "signature"
        details["signature_verified"] = False
        try:
            self._verify_signature(parsed, lookup.key)
        except JWSError as err:
            return self._reject(401, self._jws_message(err), err.reason_id, details, header=header)
        details["signature_verified"] = True

        details["check"] = "claims"
        try:
            claims, registered = decode_payload(parsed.payload)
        except ClaimsError as err:
            return self._reject(401, PREFIX_INVALID + err.message, err.reason_id, details, header=header)
        details["claims"] = claims
        failure = validate_registered(registered, issuer=spec.issuer, audience=spec.audience,
                                      leeway=spec.leeway, now=self._clock())
        if failure is not None:
            details["check"] = failure[0]
            return self._reject(401, PREFIX_INVALID + failure[1], None, details, claims, header)

        details["check"] = "descope"
        rule = descope_policy(claims)
        if rule is not None:
            reason, detail = rule
            return self._reject(401, f"{MSG_REJECTED} ({reason}): {detail}", reason, details, claims, header)

        if self._rejecter is not None:
            details["check"] = "rejecter"
            if self._rejecter(claims):
                return self._reject(401, MSG_REJECTED, None, details, claims, header)

        details["check"] = "roles"
        decision = self._roles(claims)
        if decision.status != 200:
            return self._reject(decision.status, decision.message, None, details, claims, header)

        details["check"] = "scopes"
        decision = self._scopes(claims)
        if decision.status != 200:
            return self._reject(decision.status, decision.message, None, details, claims, header)

        details["check"] = "passed"
        propagate = self._propagator(claims) if self._propagator.active else ()
        return Verdict(200, "", None, claims, propagate, details)

    def url_values(self, verdict: Verdict) -> dict[str, str]:
        """`{"JWT.<claim>": text}` for every top-level claim of an accepted verdict, rendered as
        spec §12 says; a claim missing here leaves its `{JWT.<claim>}` placeholder in the URL."""
        if not verdict.claims:
            return {}
        return {f"JWT.{name}": render_claim_for_url(value) for name, value in verdict.claims.items()}

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
