"""`auth/validator` configuration (spec §1-§3, §15): one endpoint's validator from its raw
`extra_config`, and the root `shared_cache_duration`.

KrakenD decodes the validator with Go's `encoding/json` into `SignatureConfig` (after re-marshalling
the map, so members are visited in sorted order and matched case-insensitively). A wrong JSON type
anywhere makes the validator *broken*: every request answers 401 and start-up logs
`Unable to parse the configuration: <err>`. So does a non-https `jwk_url` without
`disable_jwk_security`. Problems that stop KrakenD from starting (unknown `alg`, bad fingerprint,
`cache` with `jwk_local_path`, unreadable files, invalid local JWK set, the `roles_key_is_nested`
panic) raise `ConfigError`. Keys the gateway does not implement (`secret_url`, `cypher_key`) make the
endpoint fail closed.

Entry points
    parse_validator(extra_config, path=..., base_dir=..., endpoint_path=...) -> ValidatorSpec | None
    collect_problems(extra_config, path=..., base_dir=...) -> list[Problem]       (`check` command)
    parse_root_validator(root_extra_config, path=...) -> RootValidatorSpec | None
    collect_root_problems(root_extra_config, path=...) -> list[Problem]
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from krakend_mitm.errors import ConfigError
from krakend_mitm.auth import _go
from krakend_mitm.auth.jwks import JWKEntry, JWKSetError, TLSOptions, parse_jwk_set
from krakend_mitm.auth.jws import ALGORITHMS

logger = logging.getLogger(__name__)

NAMESPACE = "auth/validator"
LEGACY_NAMESPACE = "github.com/devopsfaith/krakend-jose/validator"
NAMESPACES = (NAMESPACE, LEGACY_NAMESPACE)
INSECURE_MESSAGE = "JWK client is using an insecure connection to the JWK service"
STRATEGIES = ("kid", "x5t", "x5t#S256", "kid_x5t")

# json name -> Go type of krakend-jose's SignatureConfig field
_FIELDS: dict[str, str] = {
    "alg": "string",
    "audience": "[]string",
    "auth_header_name": "string",
    "cache": "bool",
    "cache_duration": "uint32",
    "cipher_suites": "[]uint16",
    "cookie_key": "string",
    "cypher_key": "[]uint8",
    "disable_jwk_security": "bool",
    "failed_jwk_key_cooldown": "string",
    "issuer": "string",
    "jwk_fingerprints": "[]string",
    "jwk_local_ca": "string",
    "jwk_local_path": "string",
    "jwk_url": "string",
    "key_identify_strategy": "string",
    "leeway": "string",
    "operation_debug": "bool",
    "propagate_claims": "[][]string",
    "propagate_claims_preserve_array": "bool",
    "roles": "[]string",
    "roles_key": "string",
    "roles_key_is_nested": "bool",
    "scopes": "[]string",
    "scopes_key": "string",
    "scopes_matcher": "string",
    "secret_url": "string",
}
_ZERO: dict[str, Any] = {"string": "", "bool": False, "uint32": 0, "[]string": (), "[][]string": (),
                         "[]uint16": (), "[]uint8": b""}
_KNOWN_MISSPELLINGS = {"jwk-url": "jwk_url", "propagate-claims": "propagate_claims"}


@dataclass(frozen=True)
class Problem:
    """One validator problem for the `check` command.

    severity: `fatal` (KrakenD refuses to start), `broken` (every request 401, start-up WARNING),
    `unsupported` (a key this gateway does not implement; the endpoint fails closed), `latent`
    (fatal once the broken part is fixed), `warning` (works, but probably not as meant)."""

    path: str
    message: str
    severity: str


@dataclass(frozen=True)
class ValidatorSpec:
    """A decoded `auth/validator`, defaults applied. Built once; read on every request."""

    path: str
    namespace: str
    alg: str = ""
    jwk_url: str = ""
    jwk_local_path: str = ""
    jwk_local_ca: str = ""
    disable_jwk_security: bool = False
    jwk_fingerprints: tuple[bytes, ...] = ()
    cipher_suites: tuple[int, ...] = ()
    cache: bool = False
    cache_duration: int = 900
    issuer: str = ""
    audience: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    roles_key: str = "roles"
    roles_key_is_nested: bool = False
    scopes: tuple[str, ...] = ()
    scopes_key: str = ""
    scopes_matcher: str = "any"
    auth_header_name: str = "Authorization"
    cookie_key: str = "access_token"
    propagate_claims: tuple[tuple[str, ...], ...] = ()
    propagate_claims_preserve_array: bool = False
    key_identify_strategy: str = "kid"
    operation_debug: bool = False
    leeway: float = 1.0
    failed_jwk_key_cooldown: float | None = None
    secret_url: str = ""
    local_keys: tuple[JWKEntry, ...] | None = None
    broken: str | None = None  # "Unable to parse the configuration: <this>"
    unsupported: tuple[str, ...] = ()  # why the endpoint fails closed
    problems: tuple[Problem, ...] = ()

    @property
    def fail_closed(self) -> bool:
        return self.broken is not None or bool(self.unsupported)

    @property
    def tls(self) -> TLSOptions:
        return TLSOptions(insecure=self.disable_jwk_security, ca_file=self.jwk_local_ca,
                          fingerprints=self.jwk_fingerprints, cipher_suites=self.cipher_suites)

    @property
    def nested_roles(self) -> bool:
        return self.roles_key_is_nested and "." in self.roles_key and self.roles_key[:4] != "http"


@dataclass(frozen=True)
class RootValidatorSpec:
    shared_cache_duration: int = 900
    problems: tuple[Problem, ...] = ()
    defaulted: bool = False  # 0/absent -> 900, KrakenD logs "Empty shared_cache_duration, using default (15m)"


# =============================================================================================
# Go weak decoding


class _TypeError(Exception):
    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.message = message
        self.path = path


def _is_uint(value: Any, maximum: int) -> bool:
    number = float(value)
    return math.isfinite(number) and number == int(number) and 0 <= number <= maximum


def _number_text(value: Any) -> str:
    return _go.go_json_number(float(value))


def _decode(value: Any, gotype: str, field_name: str, path: str) -> Any:
    """Decode one JSON value into a Go type; raises _TypeError with Go's message."""

    def fail(kind: str, typ: str, p: str = path) -> _TypeError:
        return _TypeError(f"json: cannot unmarshal {kind} into Go struct field SignatureConfig.{field_name} of type {typ}", p)

    if value is None:
        return _ZERO[gotype]
    kind = _go.go_kind(value)
    if gotype == "string":
        if not isinstance(value, str):
            raise fail(kind, "string")
        return value
    if gotype == "bool":
        if not isinstance(value, bool):
            raise fail(kind, "bool")
        return value
    if gotype == "uint32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(kind, "uint32")
        if not _is_uint(value, 0xFFFFFFFF):
            raise fail(f"number {_number_text(value)}", "uint32")
        return int(value)
    if gotype in ("[]string", "[]uint16", "[][]string"):
        if not isinstance(value, list):
            raise fail(kind, gotype)
        out = []
        for i, item in enumerate(value):
            ipath = f"{path}[{i}]"
            if gotype == "[]string":
                if item is None:
                    out.append("")
                elif not isinstance(item, str):
                    raise fail(_go.go_kind(item), "string", ipath)
                else:
                    out.append(item)
            elif gotype == "[]uint16":
                if item is None:
                    out.append(0)
                elif isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise fail(_go.go_kind(item), "uint16", ipath)
                elif not _is_uint(item, 0xFFFF):
                    raise fail(f"number {_number_text(item)}", "uint16", ipath)
                else:
                    out.append(int(item))
            else:
                if item is None:
                    out.append(())
                    continue
                if not isinstance(item, list):
                    raise fail(_go.go_kind(item), "[]string", ipath)
                inner = []
                for j, sub in enumerate(item):
                    if sub is None:
                        inner.append("")
                    elif not isinstance(sub, str):
                        raise fail(_go.go_kind(sub), "string", f"{ipath}[{j}]")
                    else:
                        inner.append(sub)
                out.append(tuple(inner))
        return tuple(out)
    if gotype == "[]uint8":
        if isinstance(value, str):
            try:
                return _go.go_b64decode(value, url=False, padded=True)
            except _go.GoBase64Error as err:
                raise _TypeError(str(err), path) from None
        if isinstance(value, list):
            if all(not isinstance(b, bool) and isinstance(b, (int, float)) and _is_uint(b, 255) for b in value):
                return bytes(int(b) for b in value)
            raise fail("array", "[]uint8")
        raise fail(kind, "[]uint8")
    raise AssertionError(gotype)  # pragma: no cover


def _field_for(name: str) -> str | None:
    if name in _FIELDS:
        return name
    lowered = name.lower()
    for known in _FIELDS:
        if known.lower() == lowered:
            return known
    return None


def find_validator(extra_config: Any) -> tuple[str, Any] | None:
    """(namespace, raw value) of the endpoint's validator, `auth/validator` first."""
    if not isinstance(extra_config, dict):
        return None
    for ns in NAMESPACES:
        if ns in extra_config:
            return ns, extra_config[ns]
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _read_file(path: str, base_dir: str | None) -> bytes:
    full = path if os.path.isabs(path) or not base_dir else os.path.join(base_dir, path)
    try:
        with open(full, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise OSError(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise OSError(f"read {path}: is a directory") from None
    except PermissionError:
        raise OSError(f"open {path}: permission denied") from None


def _analyze(extra_config: Any, path: str, base_dir: str | None) -> ValidatorSpec | None:
    found = find_validator(extra_config)
    if found is None:
        return None
    namespace, raw = found
    vpath = _join(path, namespace)
    problems: list[Problem] = []
    if namespace == LEGACY_NAMESPACE:
        pass
    elif LEGACY_NAMESPACE in extra_config:
        problems.append(Problem(_join(path, LEGACY_NAMESPACE),
                                f"ignored: {NAMESPACE} is present and takes precedence", "warning"))

    values: dict[str, Any] = {name: _ZERO[t] for name, t in _FIELDS.items()}
    broken: str | None = None
    if raw is not None and not isinstance(raw, dict):
        broken = f"json: cannot unmarshal {_go.go_kind(raw)} into Go value of type jose.SignatureConfig"
        problems.append(Problem(vpath, broken, "broken"))
        raw = {}
    raw = raw or {}
    for key in sorted(raw, key=lambda k: k.encode("utf-8", "surrogatepass")):
        name = _field_for(key)
        kpath = _join(vpath, key)
        if name is None:
            hint = _KNOWN_MISSPELLINGS.get(key)
            problems.append(Problem(kpath, f"unknown key, ignored by KrakenD{f' (did you mean {hint}?)' if hint else ''}",
                                    "warning"))
            continue
        if name != key:
            problems.append(Problem(kpath, f"matches {name!r} only case-insensitively (Go's decoder accepts it)",
                                    "warning"))
        try:
            values[name] = _decode(raw[key], _FIELDS[name], name, kpath)
        except _TypeError as err:
            problems.append(Problem(err.path, err.message, "broken"))
            if broken is None:
                broken = err.message

    alg = values["alg"]
    roles_key = values["roles_key"] or "roles"
    cookie_key = values["cookie_key"] or "access_token"
    jwk_url = values["jwk_url"]
    insecure = values["disable_jwk_security"]
    if broken is None and not jwk_url.startswith("https://") and not insecure:
        broken = INSECURE_MESSAGE
        problems.append(Problem(_join(vpath, "jwk_url"),
                                f"{INSECURE_MESSAGE} (jwk_url {jwk_url!r} is not https and disable_jwk_security is off)",
                                "broken"))
    fatal_severity = "fatal" if broken is None else "latent"

    if alg not in ALGORITHMS:
        problems.append(Problem(_join(vpath, "alg"), f"JOSE: unknown algorithm {alg}", fatal_severity))

    fingerprints: list[bytes] = []
    for i, fp in enumerate(values["jwk_fingerprints"]):
        try:
            fingerprints.append(_go.go_b64decode(fp, url=True, padded=True))
        except _go.GoBase64Error as err:
            problems.append(Problem(_join(vpath, f"jwk_fingerprints[{i}]"), f"decoding fingerprint #{i}: {err}",
                                    fatal_severity))

    ca = values["jwk_local_ca"]
    if ca:
        try:
            _read_file(ca, base_dir)
        except OSError as err:
            problems.append(Problem(_join(vpath, "jwk_local_ca"), str(err), fatal_severity))

    secret_url = values["secret_url"]
    unsupported: list[str] = []
    if secret_url or values["cypher_key"]:
        key = "secret_url" if secret_url else "cypher_key"
        msg = (f"{key} (KMS-encrypted jwk_local_path) is not implemented by this gateway; "
               "the endpoint fails closed (401 on every request)")
        unsupported.append(msg)
        problems.append(Problem(_join(vpath, key), msg, "unsupported"))

    local_path = values["jwk_local_path"]
    local_keys: tuple[JWKEntry, ...] | None = None
    if local_path:
        if values["cache"]:
            problems.append(Problem(_join(vpath, "cache"), "cache could not be used with jwk_local_path", fatal_severity))
        try:
            data = _read_file(local_path, base_dir)
        except OSError as err:
            problems.append(Problem(_join(vpath, "jwk_local_path"), str(err), fatal_severity))
        else:
            if not unsupported:  # an encrypted file cannot be parsed before decryption
                try:
                    local_keys = parse_jwk_set(data, allow_trailing=False)
                except JWKSetError as err:
                    if err.message == "no Keys has been found":
                        local_keys = ()
                    else:
                        problems.append(Problem(_join(vpath, "jwk_local_path"), err.message, fatal_severity))

    if values["roles_key_is_nested"] and "." in roles_key and len(roles_key) < 4:
        problems.append(Problem(_join(vpath, "roles_key"),
                                f"runtime error: slice bounds out of range [:4] with length {len(roles_key)} "
                                "(KrakenD panics with roles_key_is_nested and a dotted roles_key shorter than 4 characters)",
                                fatal_severity))

    # settings that work, but differently from what the author probably meant
    strategy = values["key_identify_strategy"]
    if strategy not in STRATEGIES:
        if strategy:
            problems.append(Problem(_join(vpath, "key_identify_strategy"),
                                    f"unknown strategy {strategy!r}: KrakenD uses 'kid'", "warning"))
        strategy = "kid"
    leeway = 1.0
    if values["leeway"]:
        try:
            leeway = _go.parse_go_duration(values["leeway"])
        except ValueError as err:
            problems.append(Problem(_join(vpath, "leeway"), f"{err}: KrakenD uses 1s", "warning"))
            leeway = 1.0
        if leeway < 1.0:
            problems.append(Problem(_join(vpath, "leeway"), "below the 1s minimum: KrakenD uses 1s", "warning"))
            leeway = 1.0
    cooldown: float | None = None
    if values["failed_jwk_key_cooldown"]:
        try:
            cooldown = _go.parse_go_duration(values["failed_jwk_key_cooldown"])
        except ValueError as err:
            problems.append(Problem(_join(vpath, "failed_jwk_key_cooldown"), f"{err}: the cooldown is disabled",
                                    "warning"))
            cooldown = None
        if cooldown is not None and cooldown < 1.0:
            problems.append(Problem(_join(vpath, "failed_jwk_key_cooldown"),
                                    "below 1s: the cooldown is disabled", "warning"))
            cooldown = None
    for key in ("roles_key", "scopes_key"):
        value = values[key]
        if value == "nsec" or value.startswith("nsec."):
            problems.append(Problem(_join(vpath, key),
                                    "Descope 'nsec' claims are set by client code: never authorise on them", "warning"))
    if values["roles_key_is_nested"] is False and "." in roles_key and values["roles"] and roles_key[:4] != "http":
        problems.append(Problem(_join(vpath, "roles_key"),
                                f"dotted roles_key {roles_key!r} is looked up as one literal claim name "
                                "(set roles_key_is_nested to traverse objects)", "warning"))
    if values["scopes"] and not values["scopes_key"]:
        problems.append(Problem(_join(vpath, "scopes"), "scopes without scopes_key: no scope check is made", "warning"))

    return ValidatorSpec(
        path=vpath,
        namespace=namespace,
        alg=alg,
        jwk_url=jwk_url,
        jwk_local_path=local_path,
        jwk_local_ca=ca,
        disable_jwk_security=insecure,
        jwk_fingerprints=tuple(fingerprints),
        cipher_suites=tuple(values["cipher_suites"]),
        cache=values["cache"],
        cache_duration=values["cache_duration"] or 900,
        issuer=values["issuer"],
        audience=tuple(values["audience"]),
        roles=tuple(values["roles"]),
        roles_key=roles_key,
        roles_key_is_nested=values["roles_key_is_nested"],
        scopes=tuple(values["scopes"]),
        scopes_key=values["scopes_key"],
        scopes_matcher="all" if values["scopes_matcher"] == "all" else "any",
        auth_header_name=values["auth_header_name"] or "Authorization",
        cookie_key=cookie_key,
        propagate_claims=tuple(values["propagate_claims"]),
        propagate_claims_preserve_array=values["propagate_claims_preserve_array"],
        key_identify_strategy=strategy,
        operation_debug=values["operation_debug"],
        leeway=leeway,
        failed_jwk_key_cooldown=cooldown,
        secret_url=secret_url,
        local_keys=local_keys,
        broken=broken,
        unsupported=tuple(unsupported),
        problems=tuple(problems),
    )


def collect_problems(extra_config: Any, *, path: str = "", base_dir: str | None = None) -> list[Problem]:
    """Every validator problem of one endpoint, with JSON paths such as
    `endpoints[2].extra_config.auth/validator.audience` (pass `path="endpoints[2].extra_config"`)."""
    spec = _analyze(extra_config, path, base_dir)
    return list(spec.problems) if spec is not None else []


def parse_validator(extra_config: Any, *, path: str = "", base_dir: str | None = None,
                    endpoint_path: str | None = None) -> ValidatorSpec | None:
    """The endpoint's validator, or None when it has none. Raises ConfigError for the first problem
    that stops KrakenD from starting (logged as `Unable to create the validator: <err>` when
    `endpoint_path` is given). A broken or unsupported configuration is returned: check
    `spec.fail_closed`, and let `EndpointValidator` answer 401."""
    spec = _analyze(extra_config, path, base_dir)
    if spec is None:
        return None
    for problem in spec.problems:
        if problem.severity == "fatal":
            if endpoint_path is not None:
                logger.critical("[ENDPOINT: %s][JWTValidator] Unable to create the validator: %s",
                                endpoint_path, problem.message)
            raise ConfigError(problem.path, problem.message)
    return spec


def parse_root_validator(root_extra_config: Any, *, path: str = "extra_config",
                         log: bool = True) -> RootValidatorSpec | None:
    """The root `auth/validator` (only `shared_cache_duration`). This gateway keeps one cache per
    JWKS URL instead of KrakenD's kid-keyed shared cache, so the value is informational."""
    found = find_validator(root_extra_config)
    if found is None:
        return None
    namespace, raw = found
    vpath = _join(path, namespace)
    problems: list[Problem] = []
    duration = 0
    if not isinstance(raw, dict):
        problems.append(Problem(vpath, f"json: cannot unmarshal {_go.go_kind(raw)} into Go value of type jose.serviceConfig",
                                "warning"))
    else:
        for key in sorted(raw):
            if key.lower() != "shared_cache_duration":
                continue
            value = raw[key]
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _is_uint(value, 0xFFFFFFFF):
                problems.append(Problem(_join(vpath, key),
                                        f"json: cannot unmarshal {_go.go_kind(value)} into Go struct field "
                                        "serviceConfig.shared_cache_duration of type uint32", "warning"))
            else:
                duration = int(value)
    defaulted = duration == 0
    if defaulted:
        if log:
            logger.info("[SERVICE: JOSE] Empty shared_cache_duration, using default (15m)")
        duration = 900
    return RootValidatorSpec(shared_cache_duration=duration, problems=tuple(problems), defaulted=defaulted)


def collect_root_problems(root_extra_config: Any, *, path: str = "extra_config") -> list[Problem]:
    found = find_validator(root_extra_config)
    if found is None:
        return []
    spec = parse_root_validator(root_extra_config, path=path, log=False)
    return list(spec.problems) if spec else []
