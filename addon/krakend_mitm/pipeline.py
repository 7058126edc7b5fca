"""The request path, without mitmproxy: route -> (built-in | authenticate -> upstream -> proxy) -> respond.

`Pipeline.handle()` takes an IncomingRequest and returns a Reply plus the Trace of every decision.
The addon calls it for client flows; the HTTP client calls it again for backends that are the
gateway itself (mitmproxy refuses to connect to its own listen address, KrakenD does not).
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from krakend_mitm import respond
from krakend_mitm.client import BackendRequest, BackendResponse, HttpClient
from krakend_mitm.config import ROUTABLE_METHODS, Endpoint, GatewayConfig, url_placeholders
from krakend_mitm.messages import IncomingRequest, Reply, Trace
from krakend_mitm.proxy import EndpointProxy, RequestContext
from krakend_mitm.router import ANY_METHODS, Match, MethodNotAllowed, Redirect, Route, RouteTable
from krakend_mitm.upstream import client_ip, forward_rules, header_map

log = logging.getLogger("krakend_mitm")

_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
MAX_SELF_CALL_DEPTH = 8
# gin's redirectTrailingSlash sanitises X-Forwarded-Prefix with these two expressions
_PREFIX_UNSAFE = re.compile(r"[^a-zA-Z0-9/-]+")
_PREFIX_REPEATED_SLASH = re.compile(r"/{2,}")
# Go's url.escape(s, encodePath) keeps unreserved characters and these
_GO_PATH_SAFE = "/$&+,:;=@"


@dataclass(frozen=True)
class Builtin:
    name: str  # "health" | "debug" | "echo"


class InvalidRequestPath(ValueError):
    pass


def decode_path(raw_path: str) -> str:
    """Go's url.PathUnescape as net/http applies it to the request line; a bad escape is a 400."""
    if raw_path.count("%") != len(_PCT.findall(raw_path)):
        raise InvalidRequestPath(raw_path)
    if "%" not in raw_path:
        return raw_path
    raw = bytearray()
    i = 0
    while i < len(raw_path):
        if raw_path[i] == "%":
            raw.append(int(raw_path[i + 1:i + 3], 16))
            i += 3
        else:
            raw += raw_path[i].encode()
            i += 1
    return raw.decode("utf-8", "surrogateescape")


def param_guard(params: dict[str, str]) -> str | None:
    """lura paramChecker: an encoded `?`/`#` or a still-encoded value is refused (spec §4.5)."""
    for value in params.values():
        if "%" in value:
            bad = _first_bad_escape(value)
            if bad is not None:
                return f'error: invalid URL escape "{bad}"'
            return "error: encoded url params"
        if "?" in value or "#" in value:
            return "error: encoded url params"
    return None


def _first_bad_escape(value: str) -> str | None:
    i = value.find("%")
    while i != -1:
        if not _PCT.match(value, i):
            return value[i:i + 3]
        i = value.find("%", i + 3)
    return None


def go_path_clean(path: str) -> str:
    """Go's path.Clean: collapse `//`, resolve `.` and `..`; "" -> "."."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = ("/" if rooted else "") + "/".join(out)
    return cleaned or ("/" if rooted else ".")


def go_escape_path(path: str) -> str:
    """Go's URL.EscapedPath for a path gin has rewritten (RawPath no longer applies)."""
    from urllib.parse import quote

    return quote(path.encode("utf-8", "surrogateescape"), safe=_GO_PATH_SAFE)


def redirect_location(path: str, why: str, forwarded_prefix: str | None, query: str) -> str:
    """The Location of gin's trailing-slash / fixed-path redirect: `redirectRequest` ->
    `http.Redirect(req.URL.String())`. The decoded path is escaped again (a `%0D%0A` in the request
    never becomes a raw CR LF in a header, `%5C` stays `%5C`), cleaned with a trailing slash kept,
    and never starts with `//` (a protocol-relative URL would leave the site)."""
    if why == "trailing slash":
        prefix = go_path_clean(forwarded_prefix or "")
        if prefix != ".":
            prefix = _PREFIX_REPEATED_SLASH.sub("/", _PREFIX_UNSAFE.sub("", prefix))
            path = prefix + "/" + path
    url = go_escape_path(path)
    trailing = url.endswith("/")
    url = go_path_clean(url)
    if trailing and not url.endswith("/"):
        url += "/"
    if not url.startswith("/"):
        url = "/" + url
    return url + (f"?{_query_safe(query)}" if query else "")


def _query_safe(query: str) -> str:
    """The raw query as it came in the request line (it cannot hold CR, LF or spaces there);
    anything that could break a header line is escaped all the same."""
    return re.sub(r"[\x00-\x20\x7f]", lambda m: "%%%02X" % ord(m.group(0)), query)


def build_routes(config: GatewayConfig, debug: bool) -> tuple[list[Route], list[str]]:
    """Built-ins first, then the endpoints, in gin's registration order; unroutable methods are skipped."""
    routes: list[Route] = []
    skipped: list[str] = []
    if not config.router.disable_health:
        routes.append(Route("GET", config.router.health_path, Builtin("health")))
    if debug or config.debug_endpoint:
        routes += [Route(m, "/__debug/*param", Builtin("debug")) for m in ANY_METHODS]
    if config.echo_endpoint:
        routes += [Route(m, "/__echo/*param", Builtin("echo")) for m in ANY_METHODS]
    for endpoint in config.endpoints:
        if endpoint.method not in ROUTABLE_METHODS:
            skipped.append(f"[ENDPOINT: {endpoint.router_path}] Unsupported method: {endpoint.method}")
            continue
        routes.append(Route(endpoint.method, endpoint.router_path, endpoint, endpoint.json_path))
    return routes, skipped


def jwt_claim_names(endpoint: Endpoint) -> tuple[str, ...]:
    """The claims the endpoint's backend `url_pattern`s use as `{JWT.<claim>}`, in first-use order,
    each once. Found with the same placeholder syntax the URL substitution uses."""
    names: dict[str, None] = {}
    for backend in endpoint.backends:
        for placeholder in url_placeholders(backend.url_pattern):
            if placeholder.startswith("JWT."):
                names[placeholder[4:]] = None
    return tuple(names)


class Pipeline:
    def __init__(self, config: GatewayConfig, *, client: HttpClient, validators: dict[int, Any] | None = None,
                 debug: bool = False, rng: random.Random | None = None, started: float | None = None):
        self.config = config
        self.client = client
        self.validators = validators or {}
        self.started = time.monotonic() if started is None else started
        routes, self.skipped = build_routes(config, debug)
        router = config.router
        self.routes = RouteTable(routes,
                                 redirect_trailing_slash=not router.disable_redirect_trailing_slash,
                                 redirect_fixed_path=not router.disable_redirect_fixed_path,
                                 handle_method_not_allowed=not router.disable_handle_method_not_allowed)
        # the `{JWT.<claim>}` names each endpoint's backends use; endpoints without any are absent
        self.jwt_claims: dict[int, tuple[str, ...]] = {}
        for e in config.endpoints:
            names = jwt_claim_names(e)
            if names:
                self.jwt_claims[e.index] = names
        rng = rng or random.Random()
        self.proxies = {
            e.index: EndpointProxy(e, tuple(forward_rules(e, b) for b in e.backends), client, rng)
            for e in config.endpoints
        }

    async def handle(self, req: IncomingRequest, depth: int = 0) -> tuple[Reply, Trace]:
        trace = Trace()
        router = self.config.router
        try:
            match = self.routes.lookup(req.method, req.path)
        except RecursionError:  # pathological depth: treat as unroutable
            match = None
        if isinstance(match, Match):
            return await self._matched(req, match, trace, depth)
        if isinstance(match, Redirect):
            location = self._redirect_location(req, match)
            trace.outcome, trace.reason = "redirect", f"{match.status} to {location} ({match.why})"
            return respond.redirect(req.method, location, match.status), trace
        if isinstance(match, MethodNotAllowed):
            trace.outcome, trace.reason, trace.rejected = "405", f"method not allowed; Allow: {', '.join(match.allow)}", True
            return respond.method_not_allowed(router, match.allow), trace
        trace.outcome, trace.reason, trace.rejected = "404", "no endpoint matches this path", True
        return respond.not_found(router), trace

    def _redirect_location(self, req: IncomingRequest, match: Redirect) -> str:
        return redirect_location(match.location_path, match.why, req.header("X-Forwarded-Prefix"), req.query)

    async def _matched(self, req: IncomingRequest, match: Match, trace: Trace, depth: int) -> tuple[Reply, Trace]:
        target = match.route.target
        if isinstance(target, Builtin):
            trace.outcome, trace.reason = "builtin", f"built-in {target.name} endpoint"
            return self._builtin(target, req, match), trace
        endpoint: Endpoint = target
        trace.endpoint, trace.params = endpoint.label, dict(match.params)
        if not self.config.router.disable_path_decoding:
            problem = param_guard(match.params)
            if problem:
                trace.outcome, trace.reason, trace.rejected = "400", problem, True
                return respond.plain_error(400, problem), trace
        overrides, jwt_values = (), {}
        validator = self.validators.get(endpoint.index)
        if validator is not None:
            verdict = await validator.authenticate(list(req.headers))
            trace.auth = {"status": verdict.status, "message": verdict.message,
                          "reason_id": verdict.reason_id, **(verdict.details or {})}
            if verdict.status != 200:
                trace.outcome, trace.reason, trace.rejected = str(verdict.status), verdict.message, True
                return respond.auth_rejection(verdict.status), trace
            overrides = verdict.propagate
            names = self.jwt_claims.get(endpoint.index)
            if names:  # render only the claims this endpoint's url_patterns use
                jwt_values = validator.url_values(verdict, names)
        ctx = RequestContext(
            request=req,
            params=dict(match.params),
            jwt_values=jwt_values,
            client_headers=header_map(req.headers, overrides),
            forwarded_for=client_ip(req, self.config.router.remote_ip_headers),
        )
        result = await self.proxies[endpoint.index].run(ctx, trace.backend_calls)
        reply = respond.endpoint_reply(endpoint, self.config.router, result, req.header("Accept"))
        trace.outcome = "proxied" if reply.status < 500 else "500"
        trace.reason = "; ".join(result.errors) if result.errors else f"answered {reply.status}"
        trace.rejected = reply.status >= 500
        return reply, trace

    def _builtin(self, builtin: Builtin, req: IncomingRequest, match: Match) -> Reply:
        if builtin.name == "health":
            return respond.health(self.started)
        if builtin.name == "debug":
            log.info("[DEBUG] %s %s", req.method, req.raw_path)
            return respond.debug_pong()
        return respond.echo(req, match.params.get("param", "/"))

    # ------------------------------------------------------------------ self calls

    async def dispatch_local(self, request: BackendRequest, depth: int = 1) -> BackendResponse:
        """Serve a backend call addressed to the gateway itself, as if it came over the network."""
        from urllib.parse import urlsplit

        parts = urlsplit(request.url)
        if depth > MAX_SELF_CALL_DEPTH:
            raise RuntimeError(f"backend {request.url} loops back to the gateway more than {MAX_SELF_CALL_DEPTH} times")
        try:
            path = decode_path(parts.path or "/")
        except InvalidRequestPath:
            reply = respond.bad_request_go_server()
        else:
            local = IncomingRequest(
                method=request.method, path=path, raw_path=parts.path or "/", query=parts.query,
                headers=tuple(request.headers) + (("Host", parts.netloc),), body=request.body,
                client_ip="127.0.0.1", host=parts.netloc,
            )
            reply, _ = await self.handle(local, depth)
        return BackendResponse(status=reply.status, reason="", headers=list(reply.headers),
                               body=reply.body, url=request.url)
