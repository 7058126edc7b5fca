"""Stage 4: endpoint + client request + params -> the backend request (spec §5).

Host choice, `url_pattern` substitution, query and header forwarding as lura builds them
(lura `proxy/request.go`, `proxy/balancing.go`, `router/gin/endpoint.go` NewRequest).
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from krakend_mitm import KRAKEND_VERSION
from krakend_mitm.client import BackendRequest
from krakend_mitm.config import Backend, Endpoint
from krakend_mitm.messages import IncomingRequest

USER_AGENT = f"KrakenD Version {KRAKEND_VERSION}"
GO_USER_AGENT = "Go-http-client/1.1"

_PLACEHOLDER = re.compile(r"\{([\w\-.:/]+)\}")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters Go's validEncoded accepts verbatim in a path (besides unreserved and %XX).
_PATH_VERBATIM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@[]/")
# Go's shouldEscape(encodePath) leaves these unescaped when it has to re-escape a path.
_PATH_SAFE = "/$&+,:;=@"
_QUERY_UNSAFE = re.compile(r"[^\x21-\x7e]|[#\"<>\\^`{|}]")


class NoHostsError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ForwardRules:
    """What the endpoint and backend let through, resolved once per config (not per request)."""

    endpoint_headers: frozenset[str] | None  # canonical names; None = all ("*")
    backend_headers: frozenset[str] | None  # None = no second filter
    endpoint_query: frozenset[str] | None  # None = all; empty = nothing
    backend_query: frozenset[str] | None  # None = no second filter
    forwards_content_length: bool


@functools.lru_cache(maxsize=1024)  # every request spells the same few names; bounded for hostile ones
def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey for token names: x-y-z -> X-Y-Z."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


# lura's defaults when input_headers / input_query_strings are unset: one object for every endpoint
_DEFAULT_HEADERS = frozenset({"Content-Type"})
_NO_QUERY: frozenset[str] = frozenset()


def forward_rules(endpoint: Endpoint, backend: Backend) -> ForwardRules:
    """Immutable, and one object for every backend with the same filters (nearly all of them)."""
    filters = (endpoint.input_headers, backend.input_headers, endpoint.input_query_strings, backend.input_query_strings)
    try:
        return _shared_forward_rules(*filters)
    except TypeError:  # lists in a hand-built Endpoint or Backend: not hashable, not shared
        return _forward_rules(*filters)


def _forward_rules(endpoint_input_headers: tuple[str, ...] | None, backend_input_headers: tuple[str, ...] | None,
                   endpoint_input_query: tuple[str, ...] | None,
                   backend_input_query: tuple[str, ...] | None) -> ForwardRules:
    endpoint_headers = _header_filter(endpoint_input_headers, default=_DEFAULT_HEADERS)
    backend_headers = _header_filter(backend_input_headers, default=None)
    forwards_cl = endpoint_headers is None or "Content-Length" in endpoint_headers
    if backend_headers is not None and "Content-Length" not in backend_headers:
        forwards_cl = False
    return ForwardRules(
        endpoint_headers=endpoint_headers,
        backend_headers=backend_headers,
        endpoint_query=_query_filter(endpoint_input_query, default=_NO_QUERY),
        backend_query=_query_filter(backend_input_query, default=None),
        forwards_content_length=forwards_cl,
    )


_shared_forward_rules = functools.lru_cache(maxsize=512)(_forward_rules)


def _header_filter(names: tuple[str, ...] | None, default):
    if not names:
        return default
    if "*" in names:
        return None
    return frozenset(canonical_header(n) for n in names if n)


def _query_filter(names: tuple[str, ...] | None, default):
    if not names:
        return default
    if "*" in names:
        return None
    return frozenset(n for n in names if n)


# --------------------------------------------------------------------------- headers


def client_ip(req: IncomingRequest, remote_ip_headers: tuple[str, ...] = ("X-Forwarded-For", "X-Real-IP")) -> str:
    """gin's ClientIP with every proxy trusted: the left-most X-Forwarded-For entry when every entry
    is a valid IP, else X-Real-IP, else the TCP peer."""
    for header in remote_ip_headers:
        value = req.header(header)
        if not value:
            continue
        items = [item.strip() for item in value.split(",")]
        if all(_is_ip(item) for item in items):
            return items[0]
    return req.client_ip


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def header_map(headers: tuple[tuple[str, str], ...], overrides=()) -> dict[str, list[str]]:
    """The client's headers as Go's http.Header (canonical key -> values), with `overrides`
    (propagated claims) replacing whatever the client sent under the same names."""
    result: dict[str, list[str]] = {}
    for name, value in headers:
        result.setdefault(canonical_header(name), []).append(value)
    for name, values in overrides:
        result[canonical_header(name)] = list(values)
    return result


def backend_headers(req: IncomingRequest, client_headers: dict[str, list[str]], rules: ForwardRules,
                    forwarded_for: str) -> list[tuple[str, str]]:
    """lura NewRequest: filter by input_headers, then set X-Forwarded-*, User-Agent; then the
    backend-level filter applies to the complete map."""
    if rules.endpoint_headers is None:
        chosen = {k: v for k, v in client_headers.items() if k not in ("Host", "Transfer-Encoding")}
    else:
        chosen = {k: v for k, v in client_headers.items() if k in rules.endpoint_headers}
    chosen["X-Forwarded-For"] = [forwarded_for]
    chosen["X-Forwarded-Host"] = [req.host]
    if "User-Agent" in chosen:
        chosen["X-Forwarded-Via"] = [USER_AGENT]
    else:
        chosen["User-Agent"] = [USER_AGENT]
    if rules.backend_headers is not None:
        chosen = {k: v for k, v in chosen.items() if k in rules.backend_headers}
    if "User-Agent" not in chosen:
        chosen["User-Agent"] = [GO_USER_AGENT]  # Go's client default when none is set
    return [(k, v) for k, values in chosen.items() for v in values]


# --------------------------------------------------------------------------- query


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Go's url.ParseQuery: `&`-separated, `+` is a space, pairs with `;` or bad escapes dropped."""
    pairs = []
    for part in raw.split("&"):
        if not part or ";" in part:
            continue
        key, _, value = part.partition("=")
        try:
            pairs.append((_query_unescape(key), _query_unescape(value)))
        except ValueError:
            continue
    return pairs


def _query_unescape(text: str) -> str:
    if text.count("%") != len(_PCT.findall(text)):
        raise ValueError("invalid URL escape")
    return bytes_unquote(text.replace("+", " "))


def bytes_unquote(text: str) -> str:
    """Percent-decode to bytes, then UTF-8 with Go's lenient replacement of invalid sequences."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%" and _PCT.match(text, i):
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out += text[i].encode("utf-8", "surrogateescape")  # a decoded invalid UTF-8 byte stays that byte
            i += 1
    return out.decode("utf-8", "surrogateescape")


def forwarded_query(raw: str, rules: ForwardRules) -> str:
    """url.Values.Encode of the allowed params: keys sorted, values in order."""
    if rules.endpoint_query is not None and not rules.endpoint_query:
        return ""
    values: dict[str, list[str]] = {}
    for key, value in parse_query(raw):
        if rules.endpoint_query is not None and key not in rules.endpoint_query:
            continue
        if rules.backend_query is not None and key not in rules.backend_query:
            continue
        values.setdefault(key, []).append(value)
    return "&".join(f"{_qe(k)}={_qe(v)}" for k in sorted(values) for v in values[k])


def _qe(text: str) -> str:
    return quote_plus(text.encode("utf-8", "surrogateescape"), safe="-_.~")


# --------------------------------------------------------------------------- URL


def substitute(url_pattern: str, values: dict[str, str]) -> str:
    """Plain replacement with raw values; a placeholder without a value stays as lura's internal
    `{{.Name}}` form (first letter upper-cased), which then goes out percent-encoded."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        return "{{." + name[:1].upper() + name[1:] + "}}"
    return _PLACEHOLDER.sub(replace, url_pattern)


def wire_path(path: str) -> str:
    """Go's URL.EscapedPath after url.Parse: a valid encoding goes out as written, anything else
    is decoded and re-escaped."""
    if all(c in _PATH_VERBATIM or c == "%" for c in path) and path.count("%") == len(_PCT.findall(path)):
        return path
    return quote(bytes_unquote(path).encode("utf-8", "surrogateescape"), safe=_PATH_SAFE)


def wire_query(query: str) -> str:
    """Go keeps RawQuery as written; we only escape what cannot appear in a request line."""
    return _QUERY_UNSAFE.sub(lambda m: quote(m.group(0).encode("utf-8", "surrogateescape"), safe=""), query)


def backend_url(host: str, pattern_filled: str, extra_query: str) -> str:
    path, has_query, query = pattern_filled.partition("?")
    path = path.partition("#")[0]
    url = host + wire_path(path)
    query = wire_query(query) if has_query else ""
    if extra_query:
        query = f"{query}&{extra_query}" if query else extra_query
    return f"{url}?{query}" if query else url


def choose_host(hosts: tuple[str, ...], rng: random.Random) -> str:
    """lura picks uniformly at random per request on multi-core machines."""
    if not hosts:
        raise NoHostsError("no hosts available")
    return hosts[0] if len(hosts) == 1 else rng.choice(hosts)


def build_request(req: IncomingRequest, endpoint: Endpoint, backend: Backend, rules: ForwardRules,
                  values: dict[str, str], client_headers: dict[str, list[str]], forwarded_for: str,
                  rng: random.Random) -> BackendRequest:
    host = choose_host(backend.hosts, rng)
    url = backend_url(host, substitute(backend.url_pattern, values), forwarded_query(req.query, rules))
    headers = backend_headers(req, client_headers, rules, forwarded_for)
    headers = [(k, v) for k, v in headers if k != "Content-Length"]
    if rules.forwards_content_length and "Content-Length" in client_headers:
        headers.append(("Content-Length", str(len(req.body))))
    return BackendRequest(
        method=backend.method,
        url=url,
        headers=headers,
        body=req.body,
        replay_body_on_redirect=backend.send_body_on_redirect,
    )
