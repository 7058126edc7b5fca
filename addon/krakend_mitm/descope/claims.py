"""Claim sets of Descope tokens (descope.md §2, §3, §4.3, §10.3), as pure functions of the mock's config.

Order of a session token's claims: registered and Descope claims, authorization per `auth_schema`, then the
template's static claims, then the subject's own custom claims (so they win), then `aud` when configured.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from krakend_mitm.descope.config import MockConfig, TenantGrant
from krakend_mitm.descope.tokens import expand_permissions, rfc3339


@dataclass
class Identity:
    """Whoever a token is about: a user, or an access key (then `sub` is the key id)."""
    sub: str
    amr: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    permissions: list[str] | None = None  # None: expanded from the roles
    tenants: dict[str, TenantGrant] = field(default_factory=dict)
    custom_claims: dict[str, Any] = field(default_factory=dict)
    nsec: dict[str, Any] = field(default_factory=dict)


@dataclass
class Issue:
    """When and by whom: issue time, lifetime, issuer, and the current tenant (`dct`) if one is selected."""
    iat: int
    ttl: int
    issuer: str
    selected_tenant: str | None = None
    refresh_expiry: int | None = None  # for `rexp`; defaults to iat + ttl.refresh


def session_claims(config: MockConfig, who: Identity, issue: Issue) -> dict[str, Any]:
    template = config.template
    claims: dict[str, Any] = {"amr": list(who.amr), "drn": "DS", "iat": issue.iat, "exp": issue.iat + issue.ttl,
                              "iss": issue.issuer, "sub": who.sub}
    if template.rexp:
        claims["rexp"] = rfc3339(issue.refresh_expiry or issue.iat + config.ttl.refresh)
    if template.add_jti_claim:
        claims["jti"] = uuid.uuid4().hex
    if template.override_subject_claim:
        claims["dsub"] = who.sub
        claims["sub"] = template.subject or who.sub
    claims.update(authorization_claims(config, who, issue.selected_tenant))
    if who.nsec:
        claims["nsec"] = dict(who.nsec)
    claims.update(template.claims)
    claims.update(who.custom_claims)
    if template.aud is not None:
        claims["aud"] = template.aud
    return claims


def refresh_claims(config: MockConfig, who: Identity, issue: Issue) -> dict[str, Any]:
    claims: dict[str, Any] = {"drn": "DSR", "iat": issue.iat, "exp": issue.iat + issue.ttl, "iss": issue.issuer,
                              "sub": who.sub}
    # Descope keeps the selected tenant in its session store; the mock keeps it in the refresh token instead.
    if issue.selected_tenant:
        claims["dct"] = issue.selected_tenant
    claims.update(who.custom_claims)
    return claims


def access_key_claims(config: MockConfig, who: Identity, issue: Issue, expire_time: int = 0) -> dict[str, Any]:
    expiry = issue.iat + issue.ttl
    if expire_time:
        expiry = min(expiry, expire_time)  # never beyond the key's own expiry
    claims: dict[str, Any] = {"iat": issue.iat, "exp": expiry, "iss": issue.issuer, "sub": who.sub}
    if config.emit_drn_on_access_keys:
        claims["drn"] = "DS"
    claims.update(authorization_claims(config, who, issue.selected_tenant))
    claims.update(who.custom_claims)  # the key's own claims: trusted, at the root
    if who.nsec:
        claims["nsec"] = dict(who.nsec)  # loginOptions.customClaims: untrusted, kept apart
    return claims


def authorization_claims(config: MockConfig, who: Identity, selected_tenant: str | None) -> dict[str, Any]:
    """roles/permissions/tenants/dct per the template's auth_schema (descope.md §2.3)."""
    template = config.template
    schema = template.auth_schema
    current = selected_tenant or _automatic_tenant(config, who)
    claims: dict[str, Any] = {}
    if schema == "default":
        claims["roles"] = list(who.roles)
        claims["permissions"] = _permissions(config, who.roles, who.permissions)
        claims["tenants"] = {tenant_id: {"roles": list(grant.roles),
                                         "permissions": _permissions(config, grant.roles, grant.permissions)}
                             for tenant_id, grant in who.tenants.items()}
    elif schema == "tenantOnly":
        grant = who.tenants.get(current) if current else None
        claims["roles"] = list(grant.roles) if grant else []
        claims["permissions"] = _permissions(config, grant.roles, grant.permissions) if grant else []
    if template.exclude_permission_claim:
        _drop_permissions(claims)
    claims = _apply_empty_policy(claims, template.empty_claim_policy)
    if current:
        claims["dct"] = current
    return claims


def _automatic_tenant(config: MockConfig, who: Identity) -> str | None:
    """`auto_tenant_claim` (and tenantOnly) pick the tenant of a single-tenant subject."""
    automatic = config.template.auto_tenant_claim or config.template.auth_schema == "tenantOnly"
    if automatic and len(who.tenants) == 1:
        return next(iter(who.tenants))
    return None


def _permissions(config: MockConfig, roles: list[str], explicit: list[str] | None) -> list[str]:
    return list(explicit) if explicit is not None else expand_permissions(roles, config.roles)


def _drop_permissions(claims: dict[str, Any]) -> None:
    claims.pop("permissions", None)
    for grant in claims.get("tenants", {}).values():
        grant.pop("permissions", None)


def _apply_empty_policy(claims: dict[str, Any], policy: str) -> dict[str, Any]:
    """empty_claim_policy: `none` keeps empty lists, `nil` turns them into null, `delete` drops them."""
    if policy == "none":
        return claims
    for grant in claims.get("tenants", {}).values():
        _apply_to_members(grant, policy)
    _apply_to_members(claims, policy)
    return claims


def _apply_to_members(mapping: dict[str, Any], policy: str) -> None:
    for name in [name for name, value in mapping.items() if value in ([], {})]:
        if policy == "delete":
            del mapping[name]
        else:
            mapping[name] = None
