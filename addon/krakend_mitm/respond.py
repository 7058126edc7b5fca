"""Stage 5: outcomes -> KrakenD responses (spec §4.4, §4.5, §6.3–§6.7, §8, §9).

Endpoint responses follow lura `router/gin/endpoint.go`; router answers follow gin; built-ins carry
no X-Krakend headers. Every function returns a plain Reply.
"""

from __future__ import annotations

import functools
import html
import time
from email.utils import formatdate

from krakend_mitm import KRAKEND_VERSION, codec
from krakend_mitm.config import Endpoint, RouterOptions
from krakend_mitm.gojson import GoStruct, dumps
from krakend_mitm.messages import IncomingRequest, Reply
from krakend_mitm.proxy import ProxyResult

TEXT_PLAIN_UTF8 = "text/plain; charset=utf-8"
JSON_UTF8 = "application/json; charset=utf-8"
# Hop-by-hop and framing headers mitmproxy sets itself for the client connection.
_NOT_PASSED_THROUGH = frozenset({"transfer-encoding", "connection", "keep-alive", "content-length"})


def version_header(router: RouterOptions) -> tuple[str, str]:
    return ("X-Krakend", "Version undefined" if router.hide_version_header else f"Version {KRAKEND_VERSION}")


def _date() -> tuple[str, str]:
    return _date_header(int(time.time()))


@functools.lru_cache(maxsize=1)
def _date_header(second: int) -> tuple[str, str]:
    """Formatted once per second: formatdate costs more than the rest of a reply's headers."""
    return ("Date", formatdate(second, usegmt=True))


# --------------------------------------------------------------------------- router answers


def not_found(router: RouterOptions) -> Reply:
    return Reply(404, [("Content-Type", "text/plain"), version_header(router), ("X-Krakend-Completed", "false"), _date()],
                 b"404 page not found")


def method_not_allowed(router: RouterOptions, allow: tuple[str, ...]) -> Reply:
    headers = [("Allow", ", ".join(allow)), ("Content-Type", "text/plain"), version_header(router),
               ("X-Krakend-Completed", "false"), _date()]
    return Reply(405, headers, b"405 method not allowed")


def redirect(method: str, location: str, status: int) -> Reply:
    """Go's http.Redirect as gin's redirectRequest calls it: a small HTML body for GET only."""
    headers = [("Location", location), _date()]
    body = b""
    if method in ("GET", "HEAD"):
        headers.insert(0, ("Content-Type", "text/html; charset=utf-8"))
    if method == "GET":
        text = "Moved Permanently" if status == 301 else "Temporary Redirect"
        body = f'<a href="{html.escape(location, quote=True)}">{text}</a>.\n\n'.encode()
    return Reply(status, headers, body)


def plain_error(status: int, text: str) -> Reply:
    return Reply(status, [("Content-Type", TEXT_PLAIN_UTF8), _date()], text.encode())


def bad_request_go_server() -> Reply:
    """What Go's net/http server answers for a request line it cannot parse."""
    return Reply(400, [("Content-Type", TEXT_PLAIN_UTF8), ("Connection", "close")], b"400 Bad Request")


def auth_rejection(status: int) -> Reply:
    """krakend-jose gin handler: AbortWithStatus -> empty body, no Content-Type, no X-Krakend."""
    return Reply(status, [_date()], b"")


def internal_error(router: RouterOptions, text: str) -> Reply:
    """An exception inside the gateway: 500 like lura's recovery, the text only with return_error_msg."""
    return error_reply(router, [text])


# --------------------------------------------------------------------------- built-ins


def health(started: float) -> Reply:
    body = dumps(GoStruct({"agents": GoStruct({}), "now": go_time_string(started), "status": "ok"}))
    return Reply(200, [("Content-Type", JSON_UTF8), _date()], body)


def go_time_string(started: float) -> str:
    """time.Now().String(): `2026-08-04 12:00:00.123456789 +0000 UTC m=+12.345678901`."""
    now_ns = time.time_ns()
    seconds, nanos = divmod(now_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{nanos:09d} +0000 UTC m=+{time.monotonic() - started:.9f}"


def debug_pong() -> Reply:
    return Reply(200, [("Content-Type", JSON_UTF8), _date()], b'{"message":"pong"}')


def echo(req: IncomingRequest, params_path: str) -> Reply:
    """lura's /__echo/: the request as JSON in Go struct field order."""
    from krakend_mitm.upstream import canonical_header, parse_query

    query: dict[str, list[str]] = {}
    for key, value in parse_query(req.query):
        query.setdefault(key, []).append(value)
    headers: dict[str, list[str]] = {}
    for key, value in req.headers:
        headers.setdefault(canonical_header(key), []).append(value)
    uri = req.raw_path + (f"?{req.query}" if req.query else "")
    details = GoStruct({"fragment": "", "host": "", "path": req.path, "query": req.query, "user": ""})
    document = GoStruct({
        "req_uri": uri,
        "req_uri_details": details,
        "req_method": req.method,
        "req_querystring": query,
        "req_body": req.body.decode("utf-8", "replace"),
        "req_headers": headers,
    })
    return Reply(200, [("Content-Type", JSON_UTF8), _date()], dumps(document))


# --------------------------------------------------------------------------- endpoint answers


def error_reply(router: RouterOptions, errors: list[str]) -> Reply:
    headers = [version_header(router), ("X-Krakend-Completed", "false"), _date()]
    if router.return_error_msg and errors:
        return Reply(500, [("Content-Type", TEXT_PLAIN_UTF8)] + headers, "\n".join(errors).encode())
    return Reply(500, headers, b"")


def endpoint_reply(endpoint: Endpoint, router: RouterOptions, result: ProxyResult, accept: str | None) -> Reply:
    if endpoint.output_encoding == "no-op":
        return no_op_reply(router, result)
    if result.data is None:
        if result.error_response is not None:
            return _backend_status_reply(router, result)
        return error_reply(router, result.errors)
    complete = result.complete and not result.errors and bool(result.data)
    content_type, body = codec.render(endpoint.output_encoding, result.data, accept)
    headers = [version_header(router), ("X-Krakend-Completed", "true" if complete else "false")]
    if content_type:
        headers.insert(0, ("Content-Type", content_type))
    if complete and endpoint.cache_ttl:
        headers.append(("Cache-Control", f"public, max-age={int(endpoint.cache_ttl)}"))
    headers.append(_date())
    return Reply(200, headers, body)


def _backend_status_reply(router: RouterOptions, result: ProxyResult) -> Reply:
    """backend/http return_error_code: the backend's status; its body and type with return_error_msg."""
    response = result.error_response
    headers = [version_header(router), ("X-Krakend-Completed", "false"), _date()]
    if not router.return_error_msg:
        return Reply(response.status, headers, b"")
    content_type = next((v for k, v in response.headers if k.lower() == "content-type"), None)
    if content_type:
        headers.insert(0, ("Content-Type", content_type))
    return Reply(response.status, headers, response.body)


def no_op_reply(router: RouterOptions, result: ProxyResult) -> Reply:
    """Pass-through: the backend's status, every header and the body; X-Krakend-Completed false."""
    response = result.raw_response
    if response is None:
        return error_reply(router, result.errors)
    headers = [(k, v) for k, v in response.headers if k.lower() not in _NOT_PASSED_THROUGH]
    headers += [version_header(router), ("X-Krakend-Completed", "false")]
    if not any(k.lower() == "date" for k, _ in headers):
        headers.append(_date())
    return Reply(response.status, headers, response.body)
