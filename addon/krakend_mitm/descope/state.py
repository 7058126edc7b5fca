"""Everything the mock knows and does, independent of HTTP: clock, keys, faults, counters, revocations, minting,
and the Descope flows (access-key exchange, refresh, logout, tenant selection). Thread-safe: the HTTP server is
threaded and tests call the same object from their own thread."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

import jwt

from krakend_mitm.descope import errors
from krakend_mitm.descope.claims import Identity, Issue, access_key_claims, refresh_claims, session_claims
from krakend_mitm.descope.config import DEFAULT_BASE_URL, AccessKeySpec, MockConfig, MockConfigError, tenant_grants
from krakend_mitm.descope.faults import FaultBoard
from krakend_mitm.descope.keyring import KeyRing
from krakend_mitm.descope.tokens import (ISSUER_MODES, SigningKey, TokenFormatError, assemble_raw, decode_unverified,
                                         encode_jws, issuer_for, token_summary)

logger = logging.getLogger("krakend_mitm.descope")

ROUTE_COUNTERS = ("jwks_v2", "jwks_v1", "jwks_wellknown", "openid_config", "exchange_ok", "exchange_fail",
                  "refresh_ok", "refresh_fail", "logout", "tenant_select", "control", "not_found")
TOKEN_KINDS = ("session", "refresh", "access_key")
_MINT_FIELDS = {"kind", "sub", "claims", "remove", "header", "sign_with", "iat", "ttl", "raw", "roles", "permissions",
                "tenants", "selected_tenant", "nsec", "amr", "custom_claims", "issuer_mode", "issuer", "project_id"}


class RequestStats:
    """Per-route counters and the last N requests (no tokens, no credentials)."""

    def __init__(self, log_size: int):
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)

    def record(self, route: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._counters[route] += 1
            self._log.append(entry)

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        with self._lock:
            counters = {name: self._counters.get(name, 0) for name in ROUTE_COUNTERS}
            counters.update(self._counters)
            requests = list(self._log)
        if limit is not None:
            requests = requests[-limit:] if limit else []
        return {"counters": counters, "total": sum(counters.values()), "requests": requests}

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()
            self._log.clear()


class MockState:
    def __init__(self, config: MockConfig, clock: Callable[[], float] | None = None):
        self.config = config
        self.project_id = config.project_id
        self.base_url: str | None = None  # set once the server is bound
        self.keyring = KeyRing(config)
        self.faults = FaultBoard()
        self.stats = RequestStats(config.request_log_size)
        self.stopping = threading.Event()  # releases hanging and slow requests on shutdown
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._clock_offset = config.clock_offset
        self._revoked_refresh: set[str] = set()
        self._logged_out_at: dict[str, int] = {}

    # ----------------------------------------------------------------- clock

    def now(self) -> int:
        """The one clock every minted token uses: wall clock + offset."""
        with self._lock:
            return int(self._clock() + self._clock_offset)

    def set_clock(self, offset: float) -> dict[str, Any]:
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            raise errors.invalid_arguments("offset must be a number of seconds")
        with self._lock:
            self._clock_offset = offset
        return self.clock_info()

    def clock_info(self) -> dict[str, Any]:
        with self._lock:
            offset = self._clock_offset
        return {"offset": offset, "now": self.now()}

    # ----------------------------------------------------------------- identity and issuer

    def issuer(self, mode: str | None = None, custom: str | None = None) -> str:
        base = self.config.issuer_base or self.base_url or DEFAULT_BASE_URL
        try:
            return issuer_for(mode or self.config.issuer_mode, self.project_id, base,
                              custom or self.config.issuer_custom)
        except ValueError as e:
            raise errors.invalid_arguments(str(e)) from None

    def user_identity(self, user_id: str | None) -> Identity:
        """A configured user (the default one without an id); any other id gets a bare identity."""
        spec = self.config.default_user if not user_id else next(
            (user for user in self.config.users if user.id == user_id), None)
        if spec is None:
            return Identity(sub=user_id, amr=["email"])
        return Identity(sub=spec.id, amr=list(spec.amr), roles=list(spec.roles), permissions=spec.permissions,
                        tenants=dict(spec.tenants), custom_claims=dict(spec.custom_claims), nsec=dict(spec.nsec))

    def access_key_spec(self, key_id: str | None) -> AccessKeySpec | None:
        if not key_id:
            return self.config.default_access_key
        return next((key for key in self.config.access_keys if key.id == key_id), None)

    @staticmethod
    def key_identity(spec: AccessKeySpec, nsec: dict[str, Any] | None = None) -> Identity:
        return Identity(sub=spec.id, roles=list(spec.roles), permissions=spec.permissions,
                        tenants=dict(spec.tenants), custom_claims=dict(spec.custom_claims), nsec=dict(nsec or {}))

    # ----------------------------------------------------------------- signing

    def signing_key(self, sign_with: str) -> SigningKey | None:
        if sign_with == "active":
            return self.keyring.active
        if sign_with == "unpublished":
            return self.keyring.never_published
        if sign_with == "none":
            return None
        key = self.keyring.find(sign_with)
        if key is None:
            raise errors.invalid_arguments(f"sign_with: no key with kid {sign_with!r}")
        return key

    def sign(self, claims: dict[str, Any], sign_with: str = "active", header: dict | None = None) -> str:
        key = self.signing_key(sign_with)
        return encode_jws(claims, key, header, kid=self.keyring.active.kid)

    def issue(self, iat: int | None = None, ttl: int = 0, selected_tenant: str | None = None,
              issuer: str | None = None, refresh_expiry: int | None = None) -> Issue:
        return Issue(iat=self.now() if iat is None else iat, ttl=ttl, issuer=issuer or self.issuer(),
                     selected_tenant=selected_tenant, refresh_expiry=refresh_expiry)

    # ----------------------------------------------------------------- /__mock/token

    def mint(self, request: dict[str, Any]) -> dict[str, Any]:
        """Any token, per descope.md §10.4: kind, sub, claim overrides and removals, header overrides, signer."""
        request = _object(request, "the token request")
        unknown = sorted(set(request) - _MINT_FIELDS)
        if unknown:
            raise errors.invalid_arguments(f"unknown field(s): {', '.join(unknown)}")
        if request.get("project_id") not in (None, self.project_id):
            raise errors.invalid_arguments(f"unknown project {request['project_id']!r}; this mock serves "
                                           f"{self.project_id}")
        kind = request.get("kind", "session")
        if kind not in TOKEN_KINDS:
            raise errors.invalid_arguments(f"kind must be one of {', '.join(TOKEN_KINDS)}")
        claims = self._minted_claims(kind, request)
        claims.update(_object(request.get("claims"), "claims"))
        for name in _strings(request.get("remove"), "remove"):
            claims.pop(name, None)
        token = self.sign(claims, _string(request.get("sign_with", "active"), "sign_with"),
                          _object(request.get("header"), "header"))
        if request.get("raw") is not None:
            token = assemble_raw(_object(request["raw"], "raw"), token)
        decoded = _decoded_or_none(token)
        logger.info("minted %s token %s", kind, token_summary(token))
        return {"jwt": token, "kid": decoded.header.get("kid") if decoded else None,
                "header": decoded.header if decoded else None, "claims": decoded.claims if decoded else None}

    def _minted_claims(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        ttl_default = {"session": self.config.ttl.session, "refresh": self.config.ttl.refresh,
                       "access_key": self.config.ttl.access_key}[kind]
        issue = self.issue(iat=_optional_int(request.get("iat"), "iat"),
                           ttl=_optional_int(request.get("ttl"), "ttl", ttl_default),
                           selected_tenant=_optional_string(request.get("selected_tenant"), "selected_tenant"),
                           issuer=self._requested_issuer(request))
        if kind == "access_key":
            spec = self.access_key_spec(request.get("sub"))
            who = self.key_identity(spec) if spec else Identity(sub=request["sub"])
            who = _with_overrides(who, request)
            return access_key_claims(self.config, who, issue, spec.expire_time if spec else 0)
        who = _with_overrides(self.user_identity(request.get("sub")), request)
        if kind == "refresh":
            return refresh_claims(self.config, who, issue)
        return session_claims(self.config, who, issue)

    def _requested_issuer(self, request: dict[str, Any]) -> str:
        """A literal `issuer` wins; else `issuer_mode` (bare/url/v1apps/custom); else the configured form."""
        literal = _optional_string(request.get("issuer"), "issuer")
        mode = request.get("issuer_mode")
        if mode is not None and mode not in ISSUER_MODES:
            raise errors.invalid_arguments(f"issuer_mode must be one of {', '.join(ISSUER_MODES)}")
        return literal or self.issuer(mode)

    # ----------------------------------------------------------------- access-key exchange

    def exchange(self, authorization: str | None, body: Any, client_ip: str = "127.0.0.1") -> dict[str, Any]:
        """POST /v1/auth/accesskey/exchange (descope.md §4, §10.2)."""
        options = _login_options(body)
        project_id, rest = bearer_pair(authorization)
        if project_id != self.project_id:
            raise errors.unauthorized("Invalid project ID in the authorization header")
        cleartext = rest.split(":", 1)[0]  # the python SDK may append ":<managementKey>"
        spec = next((key for key in self.config.access_keys if key.cleartext == cleartext), None)
        self._check_access_key(spec, client_ip)
        tenant = options.get("selectedTenant")
        if tenant is not None and tenant not in spec.tenants:
            raise errors.invalid_arguments(f"selectedTenant {tenant!r} is not one of the access key's tenants")
        who = self.key_identity(spec, options.get("customClaims"))
        claims = access_key_claims(self.config, who, self.issue(ttl=self.config.ttl.access_key,
                                                                selected_tenant=tenant), spec.expire_time)
        token = self.sign(claims)
        logger.info("access key exchanged: key=%s kid=%s", spec.id, self.keyring.active.kid)
        return {"keyId": spec.id, "sessionJwt": token, "expiration": claims["exp"]}

    def _check_access_key(self, spec: AccessKeySpec | None, client_ip: str) -> None:
        if spec is None:
            raise errors.unauthorized("Invalid access key")
        if spec.status != "active":
            raise errors.unauthorized("Access key is not active")
        if spec.expire_time and spec.expire_time <= self.now():
            raise errors.unauthorized("Access key has expired")
        if spec.permitted_ips and not _ip_permitted(client_ip, spec.permitted_ips):
            raise errors.forbidden(f"Access key is not permitted from {client_ip}")

    # ----------------------------------------------------------------- refresh, logout, tenant selection

    def refresh_token_from(self, authorization: str | None, cookies: dict[str, str]) -> str | None:
        """`Authorization: Bearer <pid>:<refreshJwt>`, else the DSR cookie. A wrong project id is an error."""
        if authorization and authorization.strip():
            project_id, token = bearer_pair(authorization)
            if project_id != self.project_id:
                raise errors.unauthorized("Invalid project ID in the authorization header")
            if token:
                return token
        return cookies.get("DSR") or None

    def verify_refresh(self, token: str) -> dict[str, Any]:
        """Signature by a published key, not expired, `drn == "DSR"`, not revoked — else 401."""
        try:
            kid = decode_unverified(token).header.get("kid")
        except TokenFormatError as e:
            raise errors.unauthorized(f"Invalid refresh token: {e}") from None
        key = self.keyring.find_published(kid) if isinstance(kid, str) else None
        if key is None:
            raise errors.unauthorized("Invalid refresh token: unknown signing key")
        try:
            claims = jwt.decode(token, key.public_key, algorithms=[key.alg], options={
                "verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                "verify_iss": False, "verify_sub": False, "verify_jti": False})
        except jwt.PyJWTError as e:
            raise errors.unauthorized(f"Invalid refresh token: {e}") from None
        self._check_refresh_claims(token, claims)
        return claims

    def _check_refresh_claims(self, token: str, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= self.now():
            raise errors.unauthorized("Refresh token expired")
        if claims.get("drn") != "DSR":
            raise errors.unauthorized("Not a refresh token (drn is not DSR)")
        if not isinstance(claims.get("sub"), str):
            raise errors.unauthorized("Invalid refresh token: no subject")
        with self._lock:
            revoked = _fingerprint(token) in self._revoked_refresh
            logged_out_at = self._logged_out_at.get(claims["sub"])
        if revoked or (logged_out_at is not None and claims.get("iat", 0) <= logged_out_at):
            raise errors.expired_by_logout()

    def refresh(self, token: str | None) -> tuple[dict[str, Any], list[str]]:
        """New session (and, with rotation, refresh) token: (JSON body, Set-Cookie values)."""
        if not token:
            raise errors.missing_arguments("Refresh token is missing")
        claims = self.verify_refresh(token)
        rotated = self.config.refresh_rotation
        if rotated:
            self.revoke(token)
        return self._jwt_response(claims["sub"], claims.get("dct"), claims, with_refresh=rotated)

    def select_tenant(self, token: str | None, body: Any) -> tuple[dict[str, Any], list[str]]:
        if not token:
            raise errors.missing_arguments("Refresh token is missing")
        claims = self.verify_refresh(token)
        tenant = _object(body, "body").get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise errors.missing_arguments("tenant is required")
        if tenant not in self.user_identity(claims["sub"]).tenants:
            raise errors.invalid_arguments(f"the user is not a member of tenant {tenant!r}")
        return self._jwt_response(claims["sub"], tenant, None, with_refresh=True)

    def logout(self, token: str | None, everywhere: bool = False) -> dict[str, Any]:
        if not token:
            raise errors.missing_arguments("Refresh token is missing")
        claims = self.verify_refresh(token)
        self.revoke(token)
        if everywhere:
            logout_time = self.now()  # outside the lock: now() takes it too
            with self._lock:
                self._logged_out_at[claims["sub"]] = logout_time
        logger.info("logout: sub=%s all=%s", claims["sub"], everywhere)
        return {}

    def revoke(self, token: str) -> None:
        with self._lock:
            self._revoked_refresh.add(_fingerprint(token))

    def _jwt_response(self, sub: str, tenant: str | None, refresh: dict[str, Any] | None,
                      with_refresh: bool) -> tuple[dict[str, Any], list[str]]:
        """The JWT response of descope.md §7.2; in cookie mode the tokens travel as DS/DSR cookies."""
        who = self.user_identity(sub)
        new_refresh_claims = refresh_claims(self.config, who, self.issue(ttl=self.config.ttl.refresh,
                                                                         selected_tenant=tenant))
        refresh_exp = new_refresh_claims["exp"] if with_refresh or refresh is None else refresh["exp"]
        session = session_claims(self.config, who, self.issue(ttl=self.config.ttl.session, selected_tenant=tenant,
                                                              refresh_expiry=refresh_exp))
        session_jwt = self.sign(session)
        refresh_jwt = self.sign(new_refresh_claims) if with_refresh else None
        body = {"sessionJwt": session_jwt, "cookieDomain": "", "cookiePath": "/",
                "cookieMaxAge": max(0, refresh_exp - self.now()), "cookieExpiration": refresh_exp,
                "sessionExpiration": session["exp"], "user": self._user_info(sub), "firstSeen": False,
                "claims": session, "cookieName": "DSR", "sessionCookieName": "DS", "sessionCookieDomain": ""}
        if refresh_jwt:
            body["refreshJwt"] = refresh_jwt
        if not self.config.cookie_mode:
            return body, []
        cookies = [f"DS={body.pop('sessionJwt')}; Path=/; Max-Age={self.config.ttl.session}; SameSite=Strict; Secure"]
        if refresh_jwt:
            cookies.append(f"DSR={body.pop('refreshJwt')}; Path=/; Max-Age={body['cookieMaxAge']}; HttpOnly; "
                           "SameSite=Strict; Secure")
        return body, cookies

    def _user_info(self, sub: str) -> dict[str, Any]:
        spec = next((user for user in self.config.users if user.id == sub), None)
        info: dict[str, Any] = {"userId": sub, "status": "enabled"}
        if spec is None:
            return {**info, "loginIds": [], "roleNames": [], "userTenants": []}
        return {**info, "loginIds": [spec.login_id] if spec.login_id else [], "email": spec.email or "",
                "name": spec.name or "", "roleNames": list(spec.roles),
                "userTenants": [{"tenantId": tid, "roleNames": list(grant.roles)}
                                for tid, grant in spec.tenants.items()]}

    # ----------------------------------------------------------------- reset

    def reset(self, keys: bool = False) -> None:
        """Counters, faults, rate limits, revocations and clock offset back to their start; keys optionally."""
        self.stats.clear()
        self.faults.clear()
        with self._lock:
            self._revoked_refresh.clear()
            self._logged_out_at.clear()
            self._clock_offset = self.config.clock_offset
        if keys:
            self.keyring.restore()

    def info(self) -> dict[str, Any]:
        key = self.config.default_access_key
        return {"project_id": self.project_id, "base_url": self.base_url, "issuer": self.issuer(),
                "issuer_mode": self.config.issuer_mode, "alg": self.config.alg,
                "jwks_url": f"{self.base_url}/v2/keys/{self.project_id}", "active_kid": self.keyring.active.kid,
                "default_user_id": self.config.default_user.id,
                "default_access_key": {"id": key.id, "cleartext": key.cleartext}}


# ---------------------------------------------------------------------------------------------
# request parsing helpers


def bearer_pair(authorization: str | None) -> tuple[str, str]:
    """`Bearer <projectId>:<rest>` split at the first ':' (descope.md §10.2)."""
    if not authorization or not authorization.strip():
        raise errors.missing_arguments("Authorization header is missing")
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise errors.unauthorized("Authorization must use the Bearer scheme")
    project_id, colon, rest = credential.strip().partition(":")
    if not colon or not project_id:
        raise errors.unauthorized("The Bearer credential must be <projectId>:<secret>")
    return project_id, rest


def parse_json_body(body: bytes | None) -> Any:
    if not body or not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise errors.bad_request(f"The request body is not valid JSON ({e.__class__.__name__})") from None


def _login_options(body: Any) -> dict[str, Any]:
    if isinstance(body, (bytes, bytearray)):
        body = parse_json_body(bytes(body))
    body = _object(body, "the request body")
    options = _object(body.get("loginOptions"), "loginOptions")
    custom = options.get("customClaims")
    if custom is not None and not isinstance(custom, dict):
        raise errors.invalid_arguments("loginOptions.customClaims must be an object")
    tenant = options.get("selectedTenant")
    if tenant is not None and not isinstance(tenant, str):
        raise errors.invalid_arguments("loginOptions.selectedTenant must be a string")
    return {"customClaims": custom or {}, "selectedTenant": tenant or None}


def _with_overrides(who: Identity, request: dict[str, Any]) -> Identity:
    """Roles, permissions, tenants, amr, nsec and custom claims given with a mint request replace the subject's."""
    changes: dict[str, Any] = {}
    if request.get("roles") is not None:
        changes["roles"] = _strings(request["roles"], "roles")
        changes["permissions"] = None
    if request.get("permissions") is not None:
        changes["permissions"] = _strings(request["permissions"], "permissions")
    if request.get("tenants") is not None:
        try:
            changes["tenants"] = tenant_grants(request["tenants"], "tenants")
        except MockConfigError as e:
            raise errors.invalid_arguments(str(e)) from None
    if request.get("amr") is not None:
        changes["amr"] = _strings(request["amr"], "amr")
    if request.get("nsec") is not None:
        changes["nsec"] = _object(request["nsec"], "nsec")
    if request.get("custom_claims") is not None:
        changes["custom_claims"] = _object(request["custom_claims"], "custom_claims")
    return dataclasses.replace(who, **changes)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.invalid_arguments(f"{what} must be a JSON object")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.invalid_arguments(f"{what} must be a list of strings")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise errors.invalid_arguments(f"{what} must be a string")
    return value


def _optional_string(value: Any, what: str) -> str | None:
    return None if value is None else _string(value, what)


def _optional_int(value: Any, what: str, default: int | None = None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.invalid_arguments(f"{what} must be an integer")
    return value


def _ip_permitted(client_ip: str, networks: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in networks)


def _fingerprint(token: str) -> str:
    # Revocations keep a hash, never the token.
    return hashlib.sha256(token.encode()).hexdigest()


def _decoded_or_none(token: str):
    try:
        return decode_unverified(token)
    except TokenFormatError:
        return None
