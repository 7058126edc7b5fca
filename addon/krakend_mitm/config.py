"""Stage 1: a krakend.json / .yaml file -> frozen dataclasses, with KrakenD's fatal errors.

KrakenD CE 2.13 decodes its config with krakend-koanf + mapstructure (weakly typed), then lura's
`config.go` runs its checks in a fixed order and stops at the first. `load()` does the same and raises
the first ConfigError; `check()` collects every problem (for `krakend-mitm check`), each with its
JSON path. Route-registration crashes (spec §2.3) are detected by the router when it compiles.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from krakend_mitm.errors import ConfigError
from krakend_mitm.goduration import duration_from_config

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 2.0
ROUTABLE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# CE maps short namespaces to the legacy ones (krakend-ce cmd/krakend-ce/main.go); accept both.
NAMESPACE_ALIASES = {
    "router": ("router", "github_com/luraproject/lura/router/gin"),
    "proxy": ("proxy", "github.com/devopsfaith/krakend/proxy"),
    "backend/http": ("backend/http", "github.com/devopsfaith/krakend/http"),
    "backend/http/client": ("backend/http/client", "github.com/devopsfaith/krakend/transport/http/client"),
    "auth/validator": ("auth/validator", "github.com/devopsfaith/krakend-jose/validator"),
}
SUPPORTED_NAMESPACES = frozenset(name for names in NAMESPACE_ALIASES.values() for name in names)

# Root keys we read; every other documented key is accepted and reported as ignored.
IGNORED_ROOT_KEYS = (
    "tls", "use_h2c", "client_tls", "allow_insecure_connections", "plugin", "async_agent",
    "sequential_start", "max_shutdown_wait_time", "dns_cache_ttl", "disable_rest",
)
# Env overrides: KRAKEND_<KEY> replaces the top-level scalar <key> (krakend-koanf).
ENV_OVERRIDABLE_KEYS = (
    "port", "listen_ip", "timeout", "cache_ttl", "output_encoding", "name",
    "debug_endpoint", "echo_endpoint", "disable_compression",
)

_ENDPOINT_PARAM = re.compile(r"/\{([a-zA-Z0-9_-]+)\}")
_URL_PLACEHOLDER = re.compile(r"\{([\w\-.:/]+)\}")
_SEQUENTIAL_PARAM = re.compile(r"^resp\d+_.+$")
_HOST = re.compile(r"^(https?://)?([a-zA-Z0-9._\-]+)(:[0-9]{2,6})?/?$")
_BUILTIN_SEGMENT = re.compile(r"/(__debug|__echo|__health)(/|$)")
_Shareable = TypeVar("_Shareable", str, tuple)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class RouterOptions:
    return_error_msg: bool = False
    hide_version_header: bool = False
    disable_health: bool = False
    health_path: str = "/__health"
    disable_redirect_trailing_slash: bool = False
    disable_redirect_fixed_path: bool = False
    disable_handle_method_not_allowed: bool = False
    disable_path_decoding: bool = False
    auto_options: bool = False
    forwarded_by_client_ip: bool = True
    remote_ip_headers: tuple[str, ...] = ("X-Forwarded-For", "X-Real-IP")


@dataclass(frozen=True, slots=True)
class StaticData:
    data: dict
    strategy: str = "always"


@dataclass(frozen=True, slots=True)
class Backend:
    index: int
    hosts: tuple[str, ...]
    url_pattern: str
    method: str
    encoding: str
    is_collection: bool = False
    target: str = ""
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    mapping: tuple[tuple[str, str], ...] = ()
    group: str = ""
    flatmap: tuple | None = None
    input_headers: tuple[str, ...] | None = None
    input_query_strings: tuple[str, ...] | None = None
    return_error_code: bool = False
    return_error_details: str = ""
    send_body_on_redirect: bool = False
    shadow: bool = False
    json_path: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    index: int
    path: str  # as written, leading "/" ensured: /users/{id}
    router_path: str  # gin form: /users/:id
    method: str
    params: tuple[str, ...]
    backends: tuple[Backend, ...]
    timeout: float
    cache_ttl: float
    output_encoding: str
    input_headers: tuple[str, ...] | None
    input_query_strings: tuple[str, ...] | None
    concurrent_calls: int = 1
    static: StaticData | None = None
    sequential: bool = False
    flatmap: tuple | None = None
    validator: Any = None  # the raw auth/validator object, parsed by the auth stage
    json_path: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    source: str
    port: int
    listen_ip: str
    name: str
    timeout: float
    cache_ttl: float
    output_encoding: str
    hosts: tuple[str, ...]
    router: RouterOptions
    endpoints: tuple[Endpoint, ...]
    debug_endpoint: bool = False
    echo_endpoint: bool = False
    disable_compression: bool = False
    root_validator: Any = None  # root extra_config auth/validator (shared_cache_duration)
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- reading files


def read_document(path: str) -> dict:
    """Parse the file by extension like krakend-koanf: .yml/.yaml YAML, anything else JSON."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError("", f"{e.strerror or e}") from None
    if path.lower().endswith((".yml", ".yaml")):
        try:
            document = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError("", _one_line(str(e))) from None
        except RecursionError:
            raise ConfigError("", "yaml: exceeded max depth") from None
        except (ValueError, TypeError, OverflowError) as e:  # e.g. an impossible !!timestamp
            raise ConfigError("", f"yaml: {_one_line(str(e))}") from None
    else:
        document = _parse_json(path, raw)
    if not isinstance(document, dict):
        kind = "array" if isinstance(document, list) else _go_type(document)
        raise ConfigError("", f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
    return document


def _parse_json(path: str, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError("", f"invalid UTF-8 at byte {e.start}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigError("", "exceeded max depth") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        if not text[e.pos:].strip():
            raise ConfigError("", f"unexpected end of JSON input ({where})") from None
        char = text[e.pos]
        raise ConfigError("", f"invalid character {char!r} {_json_context(e.msg)} ({where})") from None


def _json_context(python_msg: str) -> str:
    if "Expecting value" in python_msg:
        return "looking for beginning of value"
    if "property name" in python_msg:
        return "looking for beginning of object key string"
    if "delimiter" in python_msg:
        return "after object key:value pair or array element"
    return f"({python_msg})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object"


def apply_env_overrides(document: dict, environ: dict[str, str]) -> dict:
    overridden = dict(document)
    for key in ENV_OVERRIDABLE_KEYS:
        value = environ.get("KRAKEND_" + key.upper())
        if value is not None:
            overridden[key] = value
    return overridden


# --------------------------------------------------------------------------- weak decoding


class _Decoder:
    """mapstructure's WeaklyTypedInput, recording type errors with their JSON path."""

    def __init__(self, problems: list[ConfigError]):
        self.problems = problems
        # equal strings (methods, encodings) and tuples of strings (hosts, allow, input_headers…)
        # shared across the whole config: one object per value, for this decode only
        self._shared: dict = {}
        self._sanitized: dict[tuple[str, ...], tuple[str, ...]] = {}  # host lists found valid

    @staticmethod
    def fields(obj: dict) -> "_Fields":
        """The object to decode an object's fields from (see `_Fields`)."""
        return _Fields(obj)

    @staticmethod
    def get(obj: dict, key: str) -> Any:
        """`_get(obj, key)`: a single dict look-up when `obj` is a `_Fields` and `key` lower case
        (every name the decoding methods below ask for: they look `_Fields` up directly)."""
        if type(obj) is _Fields:
            return obj.get(key) if key.islower() else _get(obj.raw, key)
        return _get(obj, key)

    def share(self, value: _Shareable) -> _Shareable:
        """The first of the equal strings, or tuples of strings, this decoder was given."""
        return self._shared.setdefault(value, value)

    def fail(self, path: str, message: str) -> None:
        self.problems.append(ConfigError(path, message))

    def string(self, obj: dict, key: str, path: str, default: str = "") -> str:
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None:
            return default
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, (int, float)):
            return _number_text(value)
        self.fail(_join(path, key), f"expected type 'string', got unconvertible type '{_go_type(value)}'")
        return default

    def boolean(self, obj: dict, key: str, path: str, default: bool = False) -> bool:
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value != 0
        if isinstance(value, str):
            parsed = _parse_go_bool(value)
            if parsed is not None:
                return parsed
            if value == "":
                return False
            self.fail(_join(path, key), f"cannot parse '{key}' as bool: strconv.ParseBool: parsing {value!r}: invalid syntax")
            return default
        self.fail(_join(path, key), f"expected type 'bool', got unconvertible type '{_go_type(value)}'")
        return default

    def integer(self, obj: dict, key: str, path: str, default: int = 0) -> int:
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None:
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip() or "0", 0)
            except ValueError:
                pass
        self.fail(_join(path, key), f"cannot parse '{key}' as int: {value!r}")
        return default

    def duration(self, obj: dict, key: str, path: str, default: float) -> float:
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None or value == "":
            return default
        try:
            return duration_from_config(value)
        except ValueError as e:
            self.fail(_join(path, key), str(e))
            return default

    def string_list(self, obj: dict, key: str, path: str) -> tuple[str, ...] | None:
        """None when absent (KrakenD's "unset"), else a tuple; a single value becomes a list."""
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(_number_text(item))
            else:
                self.fail(f"{_join(path, key)}[{i}]", f"expected type 'string', got unconvertible type '{_go_type(item)}'")
        return self.share(tuple(out))

    def obj(self, obj: dict, key: str, path: str) -> dict:
        value = obj.get(key) if type(obj) is _Fields else self.get(obj, key)
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        self.fail(_join(path, key), f"expected a map, got '{_go_type(value)}'")
        return {}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _get(obj: dict, key: str) -> Any:
    """mapstructure matches the tag name, then falls back to a case-insensitive match; of several
    case-insensitive matches, the first in the document wins (`_Fields` finds the same, faster)."""
    if key in obj:
        return obj[key]
    lowered = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


class _Fields(dict):
    """One decoded object's index for mapstructure's look-up, built once per object: for every
    lower-case name, what `_get` finds (the exact name, else the first spelling in the document
    that lower-cases to it). Every KrakenD field name is lower case; `_Decoder.get` sends any
    other name to `_get` on the object itself (`raw`)."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict):
        super().__init__()
        self.raw = raw
        for k, v in raw.items():
            if isinstance(k, str):
                self.setdefault(k.lower(), v)
        self.update(raw)  # exact names win over other spellings


def _parse_go_bool(text: str) -> bool | None:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def namespace(extra: dict, name: str) -> tuple[str, Any] | None:
    """(the spelling used, its value) for a namespace under either of its names."""
    for spelling in NAMESPACE_ALIASES.get(name, (name,)):
        if spelling in extra:
            return spelling, extra[spelling]
    return None


# --------------------------------------------------------------------------- hosts and paths


def sanitize_host(host: str) -> str | None:
    """lura config/uri.go: scheme (default http://) + hostname + optional port; drops a path or slash."""
    match = _HOST.match(host)
    if not match:
        return None
    return (match.group(1) or "http://") + match.group(2) + (match.group(3) or "")


def router_path(path: str) -> str:
    """/users/{id} -> /users/:id (lura turns `/{name}` into gin's `/:name`)."""
    return _ENDPOINT_PARAM.sub(lambda m: "/:" + m.group(1), path)


def endpoint_params(path: str) -> tuple[str, ...]:
    return tuple(_ENDPOINT_PARAM.findall(path))


def url_placeholders(url_pattern: str) -> list[str]:
    return _URL_PLACEHOLDER.findall(url_pattern)


def _invalid_endpoint_path(path: str) -> bool:
    star = path.find("*")
    if star != -1 and star < len(path) - 1:
        return True
    return _BUILTIN_SEGMENT.search(path) is not None


# --------------------------------------------------------------------------- the loader


def load(path: str, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Load and check like `krakend run`: the first fatal problem raises ConfigError."""
    config, problems = _build(path, environ)
    if problems:
        raise problems[0]
    return config


def check(path: str, environ: dict[str, str] | None = None) -> tuple[GatewayConfig | None, list[ConfigError]]:
    """Every problem, in KrakenD's evaluation order, for `krakend-mitm check`."""
    try:
        return _build(path, environ)
    except ConfigError as e:
        return None, [e]


def _build(path: str, environ: dict[str, str] | None) -> tuple[GatewayConfig, list[ConfigError]]:
    document = apply_env_overrides(read_document(path), os.environ if environ is None else environ)
    problems: list[ConfigError] = []
    config = _decode_service(document, path, _Decoder(problems))
    return config, problems


def _decode_service(document: dict, source: str, dec: _Decoder) -> GatewayConfig:
    warnings: list[str] = []
    doc = dec.fields(document)
    version = dec.integer(doc, "version", "", 0)
    if version != 3:
        dec.fail("version", f"unsupported version: {version} (want: 3)")
    listen_ip = dec.string(doc, "listen_ip", "", "")
    if listen_ip:
        try:
            ipaddress.ip_address(listen_ip)
        except ValueError:
            dec.fail("listen_ip", f"invalid ip address {listen_ip}")
    hosts = _decode_hosts(dec.string_list(doc, "host", "") or (), "host", False, dec)
    extra = dec.obj(doc, "extra_config", "")
    router = _decode_router(extra, dec)
    warnings += _unsupported_namespaces(extra, "extra_config")
    warnings += [f"{key}: not supported, ignored" for key in IGNORED_ROOT_KEYS if key in document]
    service_timeout = dec.duration(doc, "timeout", "", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
    service = {
        "timeout": service_timeout,
        "cache_ttl": dec.duration(doc, "cache_ttl", "", 0.0),
        "output_encoding": dec.string(doc, "output_encoding", "", ""),
        "hosts": hosts,
    }
    raw_endpoints = dec.get(doc, "endpoints") or []
    if not isinstance(raw_endpoints, list):
        dec.fail("endpoints", f"expected a list, got '{_go_type(raw_endpoints)}'")
        raw_endpoints = []
    endpoints = []
    for i, raw in enumerate(raw_endpoints):
        endpoint = _decode_endpoint(i, raw, service, dec, warnings)
        if endpoint is not None:
            endpoints.append(endpoint)
    root_validator = namespace(extra, "auth/validator")
    return GatewayConfig(
        source=source,
        port=dec.integer(doc, "port", "", 0) or DEFAULT_PORT,
        listen_ip=listen_ip,
        name=dec.string(doc, "name", "", ""),
        timeout=service_timeout,
        cache_ttl=service["cache_ttl"],
        output_encoding=service["output_encoding"],
        hosts=hosts,
        router=router,
        endpoints=tuple(endpoints),
        debug_endpoint=dec.boolean(doc, "debug_endpoint", "", False),
        echo_endpoint=dec.boolean(doc, "echo_endpoint", "", False),
        disable_compression=dec.boolean(doc, "disable_compression", "", False),
        root_validator=root_validator[1] if root_validator else None,
        warnings=tuple(warnings),
    )


def _decode_hosts(raw: tuple[str, ...], path: str, verbatim: bool, dec: _Decoder) -> tuple[str, ...]:
    if verbatim:
        return raw
    known = dec._sanitized.get(raw)
    if known is not None:  # the same list as another backend's, every host valid
        return known
    hosts = []
    for i, host in enumerate(raw):
        clean = sanitize_host(host)
        if clean is None:
            dec.fail(f"{path}[{i}]", f"host {host} not valid: invalid host")
        else:
            hosts.append(clean)
    clean_hosts = dec.share(tuple(hosts))
    if len(clean_hosts) == len(raw):
        dec._sanitized[raw] = clean_hosts
    return clean_hosts


def _decode_router(extra: dict, dec: _Decoder) -> RouterOptions:
    found = namespace(extra, "router")
    if not found:
        return RouterOptions()
    spelling, raw = found
    path = f"extra_config.{spelling}"
    if not isinstance(raw, dict):
        dec.fail(path, f"expected a map, got '{_go_type(raw)}'")
        return RouterOptions()
    raw = dec.fields(raw)
    health_path = dec.string(raw, "health_path", path, "") or "/__health"
    if not health_path.startswith("/"):
        health_path = "/" + health_path
    return RouterOptions(
        return_error_msg=dec.boolean(raw, "return_error_msg", path),
        hide_version_header=dec.boolean(raw, "hide_version_header", path),
        disable_health=dec.boolean(raw, "disable_health", path),
        health_path=health_path,
        disable_redirect_trailing_slash=dec.boolean(raw, "disable_redirect_trailing_slash", path),
        disable_redirect_fixed_path=dec.boolean(raw, "disable_redirect_fixed_path", path),
        disable_handle_method_not_allowed=dec.boolean(raw, "disable_handle_method_not_allowed", path),
        disable_path_decoding=dec.boolean(raw, "disable_path_decoding", path),
        auto_options=dec.boolean(raw, "auto_options", path),
        forwarded_by_client_ip=dec.boolean(raw, "forwarded_by_client_ip", path, True),
        remote_ip_headers=dec.string_list(raw, "remote_ip_headers", path) or ("X-Forwarded-For", "X-Real-IP"),
    )


def _unsupported_namespaces(extra: dict, path: str) -> list[str]:
    return [f"{path}.{name}: not supported, ignored" for name in extra if name not in SUPPORTED_NAMESPACES]


def _decode_endpoint(i: int, raw: Any, service: dict, dec: _Decoder, warnings: list[str]) -> Endpoint | None:
    path = f"endpoints[{i}]"
    if not isinstance(raw, dict):
        dec.fail(path, f"expected a map, got '{_go_type(raw)}'")
        return None
    raw = dec.fields(raw)
    written_method = dec.string(raw, "method", path, "")
    endpoint_path = dec.string(raw, "endpoint", path, "")
    if not endpoint_path.startswith("/"):
        endpoint_path = "/" + endpoint_path
    if _invalid_endpoint_path(endpoint_path):
        dec.fail(f"{path}.endpoint", f"ignoring the '{written_method} {endpoint_path}' endpoint, since it is invalid!!!")
        return None
    raw_backends = dec.get(raw, "backend") or []
    if not isinstance(raw_backends, list):
        dec.fail(f"{path}.backend", f"expected a list, got '{_go_type(raw_backends)}'")
        return None
    if not raw_backends:
        dec.fail(f"{path}.backend", f"ignoring the '{written_method} {endpoint_path}' endpoint, since it has 0 backends defined!")
        return None
    method = dec.share((written_method or "GET").upper())
    output_encoding = dec.share(dec.string(raw, "output_encoding", path, "")
                                or service["output_encoding"] or "json")
    if output_encoding == "no-op" and len(raw_backends) > 1:
        dec.fail(f"{path}.output_encoding", "can not use NoOp encoding with more than one backends connected to the same endpoint")
        return None
    extra = dec.obj(raw, "extra_config", path)
    proxy: dict = {}
    if extra:
        warnings += _unsupported_namespaces(extra, f"{path}.extra_config")
        proxy = _namespace_object(extra, "proxy", f"{path}.extra_config", dec)
    params = dec.share(endpoint_params(endpoint_path))
    gin_path = router_path(endpoint_path)
    backends = []
    for b, raw_backend in enumerate(raw_backends):
        backend = _decode_backend(b, raw_backend, f"{path}.backend[{b}]", method, output_encoding, service, dec, warnings)
        if backend is None:
            return None
        if not _check_url_placeholders(backend, b, method, gin_path, params, dec):
            return None
        backends.append(backend)
    concurrent_calls = max(dec.integer(raw, "concurrent_calls", path, 1), 1)
    validator = namespace(extra, "auth/validator")
    return Endpoint(
        index=i,
        path=endpoint_path,
        router_path=gin_path,
        method=method,
        params=params,
        backends=tuple(backends),
        timeout=dec.duration(raw, "timeout", path, 0.0) or service["timeout"],
        cache_ttl=dec.duration(raw, "cache_ttl", path, service["cache_ttl"]),
        output_encoding=output_encoding,
        input_headers=dec.string_list(raw, "input_headers", path),
        input_query_strings=dec.string_list(raw, "input_query_strings", path),
        concurrent_calls=concurrent_calls,
        static=_decode_static(proxy, f"{path}.extra_config.proxy", dec),
        sequential=dec.boolean(proxy, "sequential", f"{path}.extra_config.proxy"),
        flatmap=_flatmap(proxy),
        # present but null: Go decodes `null` into the validator's config struct like `{}`, which
        # fails closed (every request 401); it must never read as "no validator"
        validator=({} if validator[1] is None else validator[1]) if validator else None,
        json_path=path,
    )


def _namespace_object(extra: dict, name: str, path: str, dec: _Decoder) -> dict:
    found = namespace(extra, name)
    if not found:
        return {}
    spelling, value = found
    if not isinstance(value, dict):
        dec.fail(f"{path}.{spelling}", f"expected a map, got '{_go_type(value)}'")
        return {}
    return value


def _flatmap(proxy: dict) -> tuple | None:
    ops = proxy.get("flatmap_filter")
    return tuple(ops) if isinstance(ops, list) and ops else None


def _decode_static(proxy: dict, path: str, dec: _Decoder) -> StaticData | None:
    raw = proxy.get("static")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        dec.fail(f"{path}.static", f"expected a map, got '{_go_type(raw)}'")
        return None
    data = raw.get("data")
    if not isinstance(data, dict):
        return None
    return StaticData(data=_go_numbers(data), strategy=dec.string(raw, "strategy", f"{path}.static", "always") or "always")


def _go_numbers(value: Any) -> Any:
    """Go decodes config numbers into float64, which is how XML and YAML print static data."""
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _decode_backend(b: int, raw: Any, path: str, endpoint_method: str, output_encoding: str,
                    service: dict, dec: _Decoder, warnings: list[str]) -> Backend | None:
    if not isinstance(raw, dict):
        dec.fail(path, f"expected a map, got '{_go_type(raw)}'")
        return None
    raw = dec.fields(raw)
    verbatim = dec.boolean(raw, "disable_host_sanitize", path)
    written_hosts = dec.string_list(raw, "host", path)
    hosts = _decode_hosts(written_hosts, f"{path}.host", verbatim, dec) if written_hosts else service["hosts"]
    url_pattern = dec.string(raw, "url_pattern", path, "")
    if not url_pattern.startswith("/"):
        url_pattern = "/" + url_pattern
    encoding = dec.string(raw, "encoding", path, "") or "json"
    if output_encoding == "no-op":
        encoding = "no-op"
    extra = dec.obj(raw, "extra_config", path)
    http_ns = client_ns = proxy_ns = {}
    if extra:
        warnings += _unsupported_namespaces(extra, f"{path}.extra_config")
        http_ns = _namespace_object(extra, "backend/http", f"{path}.extra_config", dec)
        client_ns = _namespace_object(extra, "backend/http/client", f"{path}.extra_config", dec)
        proxy_ns = _namespace_object(extra, "proxy", f"{path}.extra_config", dec)
    details = http_ns.get("return_error_details")
    sd = dec.string(raw, "sd", path, "static")
    if sd not in ("", "static"):
        warnings.append(f"{path}.sd: service discovery '{sd}' not supported, hosts used as static")
    mapping = dec.obj(raw, "mapping", path)
    return Backend(
        index=b,
        hosts=hosts,
        url_pattern=url_pattern,
        method=dec.share((dec.string(raw, "method", path, "") or endpoint_method).upper()),
        encoding=dec.share(encoding if encoding == "no-op" else encoding.lower()),
        is_collection=dec.boolean(raw, "is_collection", path),
        target=dec.string(raw, "target", path, ""),
        allow=dec.string_list(raw, "allow", path) or (),
        deny=dec.string_list(raw, "deny", path) or (),
        mapping=tuple((str(k), str(v)) for k, v in mapping.items()),
        group=dec.string(raw, "group", path, ""),
        flatmap=_flatmap(proxy_ns),
        input_headers=dec.string_list(raw, "input_headers", path),
        input_query_strings=dec.string_list(raw, "input_query_strings", path),
        return_error_code=dec.boolean(http_ns, "return_error_code", path),
        return_error_details=details if isinstance(details, str) else "",
        send_body_on_redirect=dec.boolean(client_ns, "send_body_on_redirect", path),
        shadow=dec.boolean(proxy_ns, "shadow", path),
        json_path=path,
    )


def _check_url_placeholders(backend: Backend, b: int, method: str, gin_path: str,
                            params: tuple[str, ...], dec: _Decoder) -> bool:
    """lura config.go: every url_pattern placeholder is a param, a `resp<N>_…` or a `JWT.…`."""
    outputs = url_placeholders(backend.url_pattern)
    known = set(params)
    for name in outputs:
        if _SEQUENTIAL_PARAM.match(name) or name.startswith("JWT."):
            continue
        if name in known:
            continue
        inputs = " ".join(sorted(known))
        shown = " ".join(sorted(set(outputs)))
        dec.fail(f"{backend.json_path}.url_pattern",
                 f"undefined output param '{name}'! endpoint: {method} {gin_path}, backend: {b}. "
                 f"input: [{inputs}], output: [{shown}]")
        return False
    return True
