"""Claims: registered-claim decoding and validation (spec §8), roles (§9), scopes (§10),
`propagate_claims` rendering (§11), `{JWT.<claim>}` values (§12) and the Descope rules
(descope.md §9). Plain functions and small compiled checkers over decoded claim dicts.

Claims are decoded the way Go decodes into `map[string]interface{}`: every JSON number is a float.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from krakend_mitm.auth import _go

logger = logging.getLogger(__name__)

MSG_ISS = "go-jose/go-jose/jwt: validation failed, invalid issuer claim (iss)"
MSG_AUD = "go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)"
MSG_NBF = "go-jose/go-jose/jwt: validation failed, token not valid yet (nbf)"
MSG_EXP = "go-jose/go-jose/jwt: validation failed, token is expired (exp)"
MSG_IAT = "go-jose/go-jose/jwt: validation field, token issued in the future (iat)"  # sic, "field"
MSG_NUMERIC_DATE = "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate"
MSG_AUDIENCE_TYPE = "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"
MSG_ROLES = "Token sent by client does not have sufficient roles"
MSG_SCOPES = "Token sent by client does not have the required scopes"

_INT64_MIN = -(1 << 63)
MAX_JSON_DEPTH = 32  # same bound as the header's (jws.MAX_JSON_DEPTH); see SECURITY.md
_DEPTH_MESSAGE = f"the token's claims nest deeper than {MAX_JSON_DEPTH} levels"


class ClaimsError(ValueError):
    """The payload cannot be decoded into go-jose's `jwt.Claims` (401)."""

    def __init__(self, message: str, reason_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason_id = reason_id


_INF = float("inf")


@dataclass(frozen=True)
class RegisteredClaims:
    """go-jose's registered claims. `not_before` (the larger of `nbf` and `iat`, -inf without
    either) and `expires` (`exp`, +inf without it) are derived once, so that a validator can tell
    "the time claims pass" with two comparisons: they pass exactly when
    `now + leeway >= not_before and now - leeway <= expires` (see `validate_registered`)."""

    iss: str = ""
    sub: str = ""
    jti: str = ""
    aud: tuple[str, ...] = ()
    exp: int | None = None
    nbf: int | None = None
    iat: int | None = None
    not_before: float | int = field(init=False, repr=False, compare=False)
    expires: float | int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nbf, iat = self.nbf, self.iat
        if nbf is None:
            not_before = -_INF if iat is None else iat
        else:
            not_before = nbf if iat is None or nbf >= iat else iat
        object.__setattr__(self, "not_before", not_before)
        object.__setattr__(self, "expires", _INF if self.exp is None else self.exp)


def go_int64(value: float) -> int:
    """Go's float64 -> int64 conversion on amd64 (truncation; out of range -> MinInt64)."""
    if not math.isfinite(value) or not (-9.223372036854775808e18 <= value < 9.223372036854775808e18):
        return _INT64_MIN
    return int(value)


def decode_payload(payload: bytes) -> tuple[dict, RegisteredClaims]:
    """Decode the verified payload: the claims map and go-jose's registered claims.

    Reproduces go-jose's type strictness whatever the configuration: `iss`/`sub`/`jti` must be
    strings, `exp`/`nbf`/`iat` numbers (a numeric *string* is refused with reason id
    `claim_time_type`), `aud` a string or an array of strings; `null` means absent (except `aud`,
    where go-jose's Audience decoder refuses it); a repeated top-level member name is refused.
    Error precedence follows Go's decoder: the first decoder error in document order aborts
    (aud/exp/nbf/iat, duplicate names); plain type mismatches (iss/sub/jti) are reported only if
    nothing aborted. Claims nesting deeper than MAX_JSON_DEPTH are refused (reason id
    `token_json_depth`, the gateway's own limit; see SECURITY.md)."""
    try:
        value, members = _go.go_json_loads(payload)
    except _go.GoJSONError as err:
        if str(err) == "exceeded max depth":
            raise ClaimsError(_DEPTH_MESSAGE, "token_json_depth") from None
        raise ClaimsError(str(err)) from None
    if _go.raw_nesting_exceeds(payload, value, MAX_JSON_DEPTH):
        raise ClaimsError(_DEPTH_MESSAGE, "token_json_depth")
    if value is None:
        return {}, RegisteredClaims()
    if not isinstance(value, dict):
        raise ClaimsError(f"json: cannot unmarshal {_go.go_kind(value)} into Go value of type jwt.Claims")
    fields: dict[str, Any] = {}
    saved: str | None = None
    seen: set[str] = set()
    for name, item in members or ():
        if name in seen:
            raise ClaimsError(f"json: duplicate key '{name}' in object")
        seen.add(name)
        if name in ("iss", "sub", "jti"):
            if item is None:
                continue
            if isinstance(item, str):
                fields[name] = item
            elif saved is None:
                saved = f"json: cannot unmarshal {_go.go_kind(item)} into Go value of type string"
        elif name in ("exp", "nbf", "iat"):
            if item is None:
                fields[name] = None
                continue
            if isinstance(item, bool) or not isinstance(item, float):
                raise ClaimsError(MSG_NUMERIC_DATE, "claim_time_type" if isinstance(item, str) else None)
            fields[name] = go_int64(item)
        elif name == "aud":
            if isinstance(item, str):
                fields["aud"] = (item,)
            elif isinstance(item, list) and all(isinstance(a, str) for a in item):
                fields["aud"] = tuple(item)
            else:
                raise ClaimsError(MSG_AUDIENCE_TYPE)
    if saved is not None:
        raise ClaimsError(saved)
    return value, RegisteredClaims(**fields)


def validate_registered(reg: RegisteredClaims, *, issuer: str, audience: tuple[str, ...], leeway: float,
                        now: float) -> tuple[str, str] | None:
    """go-jose `Claims.ValidateWithLeeway`: (check name, message) of the first failure, or None.
    Order iss -> aud -> nbf -> exp -> iat; `now` has sub-second precision, claims whole seconds."""
    if issuer and issuer != reg.iss:
        return "iss", MSG_ISS
    for aud in audience:
        if aud not in reg.aud:
            return "aud", MSG_AUD
    if reg.nbf is not None and now + leeway < reg.nbf:
        return "nbf", MSG_NBF
    if reg.exp is not None and now - leeway > reg.exp:
        return "exp", MSG_EXP
    if reg.iat is not None and now + leeway < reg.iat:
        return "iat", MSG_IAT
    return None


def descope_policy(claims: dict) -> tuple[str, str] | None:
    """descope.md §9, on every validated endpoint: (reason_id, detail) or None."""
    if claims.get("drn") == "DSR":
        return "descope_refresh_token", "a Descope refresh token (drn DSR) was presented as a bearer token"
    cnf = claims.get("cnf")
    if isinstance(cnf, dict) and "jkt" in cnf:
        return "descope_dpop_bound", "the token is DPoP-bound (cnf.jkt) and the gateway does not verify DPoP proofs"
    return None


# =============================================================================================
# roles and scopes


@dataclass(frozen=True)
class Decision:
    status: int  # 200, 403, or 500 (the panic KrakenD's recovery middleware turns into a 500)
    message: str = ""


ALLOW = Decision(200)


def _panic(value: Any) -> Decision:
    return Decision(500, f"panic: interface conversion: interface {{}} is {_go.go_type_name(value)}, not string")


def nested_claim(path: str, claims: dict) -> tuple[str, dict | None]:
    """krakend-jose `getNestedClaim`: (last key, containing object) or (path, None)."""
    keys = path.split(".")
    container = _container(tuple(keys[:-1]), claims)
    return (path, None) if container is None else (keys[-1], container)


def _container(parents: tuple[str, ...], claims: Any) -> dict | None:
    """The object reached from `claims` through the keys `parents` (each step must be an object
    holding the next key), or None."""
    current: Any = claims
    for key in parents:
        if not isinstance(current, dict) or key not in current:
            return None
        current = current[key]
        if not isinstance(current, dict):
            return None
    return current if isinstance(current, dict) else None


class RolesCheck:
    """krakend-jose `CanAccess` / `CanAccessNested` (any-of, exact). Built once per endpoint."""

    def __init__(self, required: tuple[str, ...], roles_key: str, nested: bool):
        self.required = tuple(required)
        self.key = roles_key or "roles"
        self.nested = bool(nested) and "." in self.key and self.key[:4] != "http"
        # a nested key is split once here: (parent keys, last key)
        keys = self.key.split(".") if self.nested else [self.key]
        self._parents = tuple(keys[:-1])
        self._leaf = keys[-1]

    def __call__(self, claims: dict) -> Decision:
        if not self.required:
            return ALLOW
        container: Any = claims
        for part in self._parents:  # `_container`, inlined (every request of a nested-roles endpoint)
            if not isinstance(container, dict) or part not in container:
                return Decision(403, MSG_ROLES)
            container = container[part]
            if not isinstance(container, dict):
                return Decision(403, MSG_ROLES)
        key = self._leaf
        if not isinstance(container, dict) or key not in container:
            return Decision(403, MSG_ROLES)
        value = container[key]
        if isinstance(value, list):
            for role in self.required:
                for item in value:
                    if not isinstance(item, str):
                        return _panic(item)
                    if item == role:
                        return ALLOW
            return Decision(403, MSG_ROLES)
        if isinstance(value, str):
            present = value.split(" ")
            for role in self.required:
                if role in present:
                    return ALLOW
        return Decision(403, MSG_ROLES)


class ScopesCheck:
    """krakend-jose `ScopesAllMatcher` / `ScopesAnyMatcher`; active only when both `scopes` and
    `scopes_key` are set. A dotted key is always a path. Any non-string array element panics (500)."""

    def __init__(self, required: tuple[str, ...], scopes_key: str, matcher: str):
        self.required = tuple(required)
        self.key = scopes_key
        self.all = matcher == "all"
        self.active = bool(self.required) and bool(self.key)
        # a dotted key is split once here: (parent keys, last key)
        keys = (scopes_key or "").split(".")
        self._parents = tuple(keys[:-1])
        self._leaf = keys[-1]

    def __call__(self, claims: dict) -> Decision:
        if not self.active:
            return ALLOW
        key = self._leaf
        container = _container(self._parents, claims) if self._parents else claims
        if container is None or key not in container:
            return Decision(403, MSG_SCOPES)
        value = container[key]
        given: list[str] | None = None
        if isinstance(value, list) and value:
            for item in value:
                if not isinstance(item, str):
                    return _panic(item)
            given = value
        elif isinstance(value, str):
            given = value.split(" ")
        if given is None:
            return Decision(403, MSG_SCOPES)
        if self.all:
            ok = all(scope in given for scope in self.required)
        else:
            ok = any(scope in given for scope in self.required)
        return ALLOW if ok else Decision(403, MSG_SCOPES)


# =============================================================================================
# rendering (spec §11, §12)


def _go_round(value: float) -> float:
    """math.Round: half away from zero (the fractional part of a float is exact)."""
    if not math.isfinite(value):
        return value
    t = float(math.trunc(value))
    if abs(value - t) >= 0.5:
        t += math.copysign(1.0, value)
    return t


def render_claim(value: Any) -> str:
    """krakend-jose `Claims.Get` for a present claim: the single-value rendering of §11."""
    if isinstance(value, str):
        return _go.fix_surrogates(value)
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return _go.go_json_dumps(value)
    if isinstance(value, (int, float)):
        v = float(value)
        r = _go_round(v)
        if abs(v - r) <= 1e-6:
            return str(go_int64(r))
        return f"{v:.6f}"
    if isinstance(value, list):
        return ",".join(_go.go_sprint_v(item) for item in value)
    return _go.go_json_dumps(value)


def render_claim_values(value: Any) -> tuple[str, ...]:
    """`propagate_claims_preserve_array: true`: arrays become one value per element."""
    if isinstance(value, list):
        return tuple(_go.go_sprint_v(item) for item in value)
    return (render_claim(value),)


def render_claim_for_url(value: Any) -> str:
    """The text that replaces `{JWT.<claim>}` in a backend `url_pattern` (spec §12): the default
    rendering of §11, inserted unescaped by the caller."""
    return render_claim(value)


def claim_for_url(claims: dict | None, name: str) -> str | None:
    """`{JWT.<name>}`: the claim is a literal top-level key (dots and URLs allowed, no nesting).
    None when missing: the caller then leaves the placeholder in the path."""
    if not claims or name not in claims:
        return None
    return render_claim_for_url(claims[name])


def propagation_lookup(claims: dict, name: str) -> tuple[bool, Any]:
    """krakend-jose `CalculateHeadersToPropagate` claim lookup: a dotted name not starting with
    `http` is a path through objects."""
    if "." in name and (len(name) < 4 or name[:4] != "http"):
        key, container = nested_claim(name, claims)
        if container is None or key not in container:
            return False, None
        return True, container[key]
    if name in claims:
        return True, claims[name]
    return False, None


class Propagator:
    """`propagate_claims`: headers to SET on the backend request (client copies are replaced).
    A missing claim yields an empty value. Tuples whose length is not 2 are skipped."""

    def __init__(self, tuples: tuple[tuple[str, ...], ...], preserve_array: bool, endpoint_path: str = ""):
        self.pairs = tuple((t[0], _go.canonical_header_key(t[1])) for t in tuples if len(t) == 2)
        self.preserve_array = bool(preserve_array)
        self.warning: str | None = None
        if tuples and len(tuples[-1]) != 2:
            self.warning = (f"[ENDPOINT: {endpoint_path}][PropagateHeaders] invalid number of claims to propagate: "
                            f"[{' '.join(tuples[-1])}]")

    @property
    def active(self) -> bool:
        return bool(self.pairs) or self.warning is not None

    def __call__(self, claims: dict) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if self.warning:
            logger.warning(self.warning)
        out: dict[str, tuple[str, ...]] = {}
        for claim, header in self.pairs:
            found, value = propagation_lookup(claims, claim)
            if not found:
                out[header] = ("",)
            elif self.preserve_array:
                out[header] = render_claim_values(value)
            else:
                out[header] = (render_claim(value),)
        return tuple(out.items())


# =============================================================================================
# logging helpers

SUMMARY_CLAIMS = ("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "drn", "dct", "amr", "azp", "scope")


def claims_summary(claims: dict | None, extra: tuple[str, ...] = ()) -> dict:
    """The non-sensitive claims worth logging (never `nsec`, emails, or the token itself)."""
    if not claims:
        return {}
    out = {}
    for name in SUMMARY_CLAIMS + tuple(extra):
        if not name:
            continue
        found, value = (name in claims, claims.get(name)) if "." not in name else propagation_lookup(claims, name)
        if found:
            out[name] = value if not isinstance(value, float) or not value.is_integer() else int(value)
    return out
