"""Configuration of the mock Descope (descope.md §10.1): defaults, and loading from a dict or a YAML/JSON file.

Unknown keys are refused by name, so a typo in mock.yaml is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from krakend_mitm.descope.tokens import ISSUER_MODES, SUPPORTED_ALGS

DEFAULT_PORT = 4000
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
# 28 characters: shorter than 32, so Descope SDKs do not derive a regional host from it (descope.md §1).
DEFAULT_PROJECT_ID = "P2AbCdEfGhIjKlMnOpQrStUvWxYz"
DEFAULT_USER_ID = "U2AbCdEfGhIjKlMnOpQrStUvWxYz"
DEFAULT_TENANT_ID = "T2Tenant0000000000000000001"
DEFAULT_ACCESS_KEY_ID = "K2AbCdEfGhIjKlMnOpQrStUvWxYz"
# Known cleartext so the README can show the exchange. It has no ':' since the exchange splits the credential there.
DEFAULT_ACCESS_KEY = "mock-access-key-cleartext"
# Matches the illustrative payload of descope.md §2.2 (viewer → read at the root, admin → read, write in a tenant).
DEFAULT_ROLES = {"viewer": ["read"], "admin": ["read", "write"]}

AUTH_SCHEMAS = ("default", "tenantOnly", "none")
EMPTY_CLAIM_POLICIES = ("none", "nil", "delete")


class MockConfigError(ValueError):
    """A mock configuration problem, with the key it concerns."""


@dataclass
class TenantGrant:
    roles: list[str] = field(default_factory=list)
    permissions: list[str] | None = None  # None: expanded from the roles


@dataclass
class UserSpec:
    id: str
    amr: list[str] = field(default_factory=lambda: ["email"])
    roles: list[str] = field(default_factory=list)
    permissions: list[str] | None = None
    tenants: dict[str, TenantGrant] = field(default_factory=dict)
    custom_claims: dict[str, Any] = field(default_factory=dict)
    nsec: dict[str, Any] = field(default_factory=dict)
    login_id: str | None = None
    email: str | None = None
    name: str | None = None


@dataclass
class AccessKeySpec:
    id: str
    cleartext: str
    name: str = ""
    status: str = "active"
    expire_time: int = 0  # Unix seconds, 0 = never
    roles: list[str] = field(default_factory=list)
    permissions: list[str] | None = None
    tenants: dict[str, TenantGrant] = field(default_factory=dict)
    custom_claims: dict[str, Any] = field(default_factory=dict)
    permitted_ips: list[str] = field(default_factory=list)


@dataclass
class Template:
    auth_schema: str = "default"
    override_subject_claim: bool = False
    subject: str | None = None  # the `sub` value when override_subject_claim is on
    add_jti_claim: bool = False
    auto_tenant_claim: bool = False
    exclude_permission_claim: bool = False
    empty_claim_policy: str = "none"
    rexp: bool = True
    claims: dict[str, Any] = field(default_factory=dict)
    aud: Any = None


@dataclass
class KeySeed:
    kid: str | None = None
    private_key_file: str | None = None
    private_key_pem: str | None = None


@dataclass
class Ttl:
    session: int = 600
    refresh: int = 2419200
    access_key: int = 600


@dataclass
class MockConfig:
    host: str = "127.0.0.1"
    port: int = 0
    project_id: str = DEFAULT_PROJECT_ID
    issuer_mode: str = "bare"
    issuer_base: str | None = None  # None: the mock's own base URL
    issuer_custom: str | None = None
    alg: str = "RS256"
    rsa_bits: int = 2048
    keys: list[KeySeed] = field(default_factory=list)
    max_published: int = 12
    ttl: Ttl = field(default_factory=Ttl)
    template: Template = field(default_factory=Template)
    emit_drn_on_access_keys: bool = True
    users: list[UserSpec] = field(default_factory=list)
    access_keys: list[AccessKeySpec] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROLES.items()})
    clock_offset: int = 0
    refresh_rotation: bool = False
    cookie_mode: bool = False
    request_log_size: int = 50
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)  # foreign public JWKs to publish as-is
    base_dir: Path = field(default_factory=Path.cwd)  # key files are relative to the config file

    @property
    def default_user(self) -> UserSpec:
        return self.users[0]

    @property
    def default_access_key(self) -> AccessKeySpec:
        return self.access_keys[0]


def default_user() -> UserSpec:
    return UserSpec(id=DEFAULT_USER_ID, amr=["email"], roles=["viewer"],
                    tenants={DEFAULT_TENANT_ID: TenantGrant(roles=["admin"])},
                    nsec={}, login_id="user@example.com", email="user@example.com", name="Mock User")


def default_access_key() -> AccessKeySpec:
    return AccessKeySpec(id=DEFAULT_ACCESS_KEY_ID, cleartext=DEFAULT_ACCESS_KEY, name="mock access key",
                         roles=["admin"], tenants={DEFAULT_TENANT_ID: TenantGrant(roles=["admin"])},
                         custom_claims={"client": "mock-service"})


# ---------------------------------------------------------------------------------------------
# loading


_TOP_KEYS = {"listen", "tls", "project_id", "issuer_mode", "issuer_base", "issuer_custom", "alg", "rsa_bits", "keys",
             "max_published", "ttl", "template", "emit_drn_on_access_keys", "users", "access_keys", "roles",
             "clock_offset", "refresh_rotation", "cookie_mode", "request_log_size", "extra_jwks"}


def load_config(source: MockConfig | dict | str | Path | None = None) -> MockConfig:
    """A MockConfig from nothing (defaults), a dict, or a YAML/JSON file path."""
    if isinstance(source, MockConfig):
        return source
    if source is None:
        return from_dict({})
    if isinstance(source, dict):
        return from_dict(source)
    import yaml  # only configuration files need it

    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MockConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise MockConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MockConfigError(f"{path}: the document must be a mapping")
    return from_dict(data, base_dir=path.resolve().parent)


def from_dict(data: dict[str, Any], base_dir: Path | None = None) -> MockConfig:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise MockConfigError(f"unknown key(s): {', '.join(unknown)}")
    if data.get("tls"):
        raise MockConfigError("tls: HTTPS is not supported by this mock; leave tls off")
    config = MockConfig(base_dir=base_dir or Path.cwd())
    if "listen" in data:
        config.host, config.port = _listen(data["listen"])
    config.project_id = validated_project_id(data.get("project_id", DEFAULT_PROJECT_ID))
    config.issuer_mode = _choice(data, "issuer_mode", ISSUER_MODES, "bare")
    config.issuer_base = _optional_str(data, "issuer_base")
    config.issuer_custom = _optional_str(data, "issuer_custom")
    if config.issuer_mode == "custom" and not config.issuer_custom:
        raise MockConfigError("issuer_mode custom needs issuer_custom")
    config.alg = _choice(data, "alg", SUPPORTED_ALGS, "RS256")
    config.rsa_bits = _int(data, "rsa_bits", 2048, minimum=1024)
    config.keys = [_key_seed(item, f"keys[{i}]") for i, item in enumerate(_list(data, "keys"))]
    config.max_published = _int(data, "max_published", 12, minimum=0)
    config.ttl = _ttl(data.get("ttl") or {})
    config.template = _template(data.get("template") or {})
    config.emit_drn_on_access_keys = _bool(data, "emit_drn_on_access_keys", True)
    config.roles = _roles(data.get("roles", DEFAULT_ROLES))
    config.users = [_user(item, f"users[{i}]") for i, item in enumerate(_list(data, "users"))] or [default_user()]
    config.access_keys = ([_access_key(item, f"access_keys[{i}]") for i, item in enumerate(_list(data, "access_keys"))]
                          or [default_access_key()])
    config.clock_offset = _int(data, "clock_offset", 0)
    config.refresh_rotation = _bool(data, "refresh_rotation", False)
    config.cookie_mode = _bool(data, "cookie_mode", False)
    config.request_log_size = _int(data, "request_log_size", 50, minimum=0)
    config.extra_jwks = [_public_jwk(item, f"extra_jwks[{i}]") for i, item in enumerate(_list(data, "extra_jwks"))]
    return config


def _public_jwk(item: Any, where: str) -> dict[str, Any]:
    """A JWK published next to the mock's own keys (e.g. a Descope SDK fixture key); private members refused."""
    item = _mapping(item, where)
    if not isinstance(item.get("kty"), str):
        raise MockConfigError(f"{where}: a JWK with a kty is required")
    if "d" in item:
        raise MockConfigError(f"{where}: a public JWK is required (it has a private member d)")
    return item


def _listen(value: Any) -> tuple[str, int]:
    text = str(value)
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
        port = int(port_text)
    except ValueError:
        raise MockConfigError(f"listen: expected host:port, got {text!r}") from None
    if not loopback:
        raise MockConfigError(f"listen: the mock binds to loopback only, not {host}")
    return host, port


def validated_project_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise MockConfigError("project_id: a non-empty string is required")
    if any(ch in value for ch in ":/ "):
        raise MockConfigError("project_id: must not contain ':', '/' or spaces")
    return value


def _choice(data: dict, key: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise MockConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _optional_str(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise MockConfigError(f"{key}: a string is required")
    return value


def _int(data: dict, key: str, default: int, minimum: int | None = None, where: str = "") -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MockConfigError(f"{where}{key}: an integer is required, got {value!r}")
    if minimum is not None and value < minimum:
        raise MockConfigError(f"{where}{key}: must be at least {minimum}")
    return value


def _bool(data: dict, key: str, default: bool, where: str = "") -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise MockConfigError(f"{where}{key}: true or false is required")
    return value


def _list(data: dict, key: str) -> list:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise MockConfigError(f"{key}: a list is required")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MockConfigError(f"{where}: a list of strings is required")
    return list(value)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MockConfigError(f"{where}: a mapping is required")
    return dict(value)


def _checked_keys(data: Any, allowed: set[str], where: str) -> dict:
    if not isinstance(data, dict):
        raise MockConfigError(f"{where}: a mapping is required")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise MockConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")
    return data


def _key_seed(item: Any, where: str) -> KeySeed:
    item = _checked_keys(item, {"kid", "private_key_file", "private_key_pem"}, where)
    return KeySeed(kid=_optional_str(item, "kid"), private_key_file=_optional_str(item, "private_key_file"),
                   private_key_pem=_optional_str(item, "private_key_pem"))


def _ttl(data: Any) -> Ttl:
    data = _checked_keys(data, {"session", "refresh", "access_key"}, "ttl")
    return Ttl(session=_int(data, "session", 600, 1, "ttl."), refresh=_int(data, "refresh", 2419200, 1, "ttl."),
               access_key=_int(data, "access_key", 600, 1, "ttl."))


_TEMPLATE_ALIASES = {"authSchema": "auth_schema", "emptyClaimPolicy": "empty_claim_policy", "template": "claims"}


def _template(data: Any) -> Template:
    data = {_TEMPLATE_ALIASES.get(k, k): v for k, v in _checked_keys(data, set(Template.__dataclass_fields__)
                                                                    | set(_TEMPLATE_ALIASES), "template").items()}
    where = "template."
    return Template(
        auth_schema=_choice(data, "auth_schema", AUTH_SCHEMAS, "default"),
        override_subject_claim=_bool(data, "override_subject_claim", False, where),
        subject=_optional_str(data, "subject"),
        add_jti_claim=_bool(data, "add_jti_claim", False, where),
        auto_tenant_claim=_bool(data, "auto_tenant_claim", False, where),
        exclude_permission_claim=_bool(data, "exclude_permission_claim", False, where),
        empty_claim_policy=_choice(data, "empty_claim_policy", EMPTY_CLAIM_POLICIES, "none"),
        rexp=_bool(data, "rexp", True, where),
        claims=_mapping(data.get("claims"), "template.claims"),
        aud=data.get("aud"),
    )


def _roles(data: Any) -> dict[str, list[str]]:
    data = _mapping(data, "roles")
    return {str(role): _strings(permissions, f"roles.{role}") for role, permissions in data.items()}


def tenant_grants(value: Any, where: str) -> dict[str, TenantGrant]:
    """Tenants as `{tid: [roles]}`, `{tid: {roles, permissions}}` or Descope's `[{tenantId, roleNames}]`."""
    if value is None:
        return {}
    if isinstance(value, list):
        return _tenant_list(value, where)
    grants = {}
    for tenant_id, grant in _mapping(value, where).items():
        if isinstance(grant, dict):
            grant = _checked_keys(grant, {"roles", "permissions"}, f"{where}.{tenant_id}")
            permissions = grant.get("permissions")
            grants[str(tenant_id)] = TenantGrant(
                roles=_strings(grant.get("roles"), f"{where}.{tenant_id}.roles"),
                permissions=None if permissions is None else _strings(permissions, f"{where}.{tenant_id}.permissions"))
        else:
            grants[str(tenant_id)] = TenantGrant(roles=_strings(grant, f"{where}.{tenant_id}"))
    return grants


def _tenant_list(items: list, where: str) -> dict[str, TenantGrant]:
    grants = {}
    for index, item in enumerate(items):
        item = _checked_keys(item, {"tenantId", "roleNames"}, f"{where}[{index}]")
        if not isinstance(item.get("tenantId"), str):
            raise MockConfigError(f"{where}[{index}].tenantId: a string is required")
        grants[item["tenantId"]] = TenantGrant(roles=_strings(item.get("roleNames"), f"{where}[{index}].roleNames"))
    return grants


_USER_KEYS = {"id", "amr", "roles", "permissions", "tenants", "custom_claims", "nsec", "login_id", "email", "name"}


def _user(item: Any, where: str) -> UserSpec:
    item = _checked_keys(item, _USER_KEYS, where)
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise MockConfigError(f"{where}.id: a non-empty string is required")
    permissions = item.get("permissions")
    return UserSpec(
        id=item["id"], amr=_strings(item.get("amr", ["email"]), f"{where}.amr"),
        roles=_strings(item.get("roles"), f"{where}.roles"),
        permissions=None if permissions is None else _strings(permissions, f"{where}.permissions"),
        tenants=tenant_grants(item.get("tenants"), f"{where}.tenants"),
        custom_claims=_mapping(item.get("custom_claims"), f"{where}.custom_claims"),
        nsec=_mapping(item.get("nsec"), f"{where}.nsec"),
        login_id=_optional_str(item, "login_id"), email=_optional_str(item, "email"),
        name=_optional_str(item, "name"))


_KEY_KEYS = {"id", "cleartext", "name", "status", "expire_time", "roles", "permissions", "tenants", "custom_claims",
             "permitted_ips"}


def _access_key(item: Any, where: str) -> AccessKeySpec:
    item = _checked_keys(item, _KEY_KEYS, where)
    for required in ("id", "cleartext"):
        if not isinstance(item.get(required), str) or not item[required]:
            raise MockConfigError(f"{where}.{required}: a non-empty string is required")
    if ":" in item["cleartext"]:
        raise MockConfigError(f"{where}.cleartext: must not contain ':' (the exchange splits the credential there)")
    status = _choice(item, "status", ("active", "inactive"), "active")
    permitted_ips = _strings(item.get("permitted_ips"), f"{where}.permitted_ips")
    for network in permitted_ips:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise MockConfigError(f"{where}.permitted_ips: {network!r} is not an IP or CIDR") from None
    permissions = item.get("permissions")
    return AccessKeySpec(
        id=item["id"], cleartext=item["cleartext"], name=str(item.get("name", "")), status=status,
        expire_time=_int(item, "expire_time", 0, 0, f"{where}."),
        roles=_strings(item.get("roles"), f"{where}.roles"),
        permissions=None if permissions is None else _strings(permissions, f"{where}.permissions"),
        tenants=tenant_grants(item.get("tenants"), f"{where}.tenants"),
        custom_claims=_mapping(item.get("custom_claims"), f"{where}.custom_claims"),
        permitted_ips=permitted_ips)
