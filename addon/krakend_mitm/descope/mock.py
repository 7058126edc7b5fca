"""A local mock Descope: a real HTTP server on loopback serving Descope's JWKS and token endpoints, plus
`/__mock/` controls for minting, key rotation, faults, clock and counters (descope.md §10).

    with MockDescope() as mock:                      # port 0: a free port
        token = mock.mint(roles=["admin"])
        requests.get(mock.jwks_url).json()

The HTTP layer here only parses requests and writes replies; MockState holds the behaviour.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from krakend_mitm.descope import errors
from krakend_mitm.descope.config import MockConfig, load_config, validated_project_id
from krakend_mitm.descope.errors import DescopeError
from krakend_mitm.descope.faults import Fault, FaultError, bent_body, faulty_jwks, parse_fault
from krakend_mitm.descope.keyring import KeyRingError
from krakend_mitm.descope.state import MockState, parse_json_body
from krakend_mitm.descope.tokens import redact_tokens

logger = logging.getLogger("krakend_mitm.descope")

MAX_BODY_BYTES = 1 << 20
# Request headers worth keeping in the request log; never Authorization or Cookie.
LOGGED_HEADERS = ("user-agent", "accept", "accept-encoding", "content-type", "x-descope-sdk-name",
                  "x-descope-sdk-version", "x-descope-sdk-python-version", "x-descope-project-id",
                  "x-forwarded-for")
REDIRECTED_MARK = "_mock_redirected"
BODY_FAULTS = ("invalid_json", "truncated_json", "html_200", "wrong_content_type", "huge_body", "gzip")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # email.message.Message
    body: bytes
    client_ip: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookies(self) -> dict[str, str]:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie") or "")
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    def json(self) -> Any:
        return parse_json_body(self.body)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    counter: str | None = None  # overrides the route's counter (exchange_ok / exchange_fail …)
    note: str = ""  # a log-safe remark for the request log
    abort: bool = False  # close the connection without answering
    uncounted: bool = False  # /__mock/reset: the request that zeroes the counters is not counted itself

    @classmethod
    def json(cls, status: int, document: Any, **kwargs: Any) -> "Reply":
        return cls(status, json.dumps(document).encode(), **kwargs)

    @classmethod
    def error(cls, error: DescopeError) -> "Reply":
        return cls.json(error.status, error.body(), headers=list(error.headers), note=error.message)


@dataclass(frozen=True)
class Route:
    method: str
    counter: str
    handler: Callable[["Request", "Fault | None"], Reply]
    target: str | None  # the fault target, None for control routes and discovery


class Dispatcher:
    """Maps a request to a route, applies rate limits and faults, and turns errors into Descope bodies."""

    def __init__(self, state: MockState):
        self.state = state
        self._control_table = self._build_control_table(Control(state))

    # ----------------------------------------------------------------- routing

    def route(self, method: str, path: str) -> tuple[Route | None, list[str]]:
        """The route for this method and path, and the methods the path allows (for 405)."""
        candidates = self._routes_for(path)
        chosen = next((route for route in candidates if route.method == method), None)
        if chosen is None and method == "HEAD":
            chosen = next((route for route in candidates if route.method == "GET"), None)
        return chosen, sorted({route.method for route in candidates})

    def _routes_for(self, path: str) -> list[Route]:
        parts = [part for part in path.split("/") if part]
        if parts[:1] == ["__mock"]:
            return self._control_routes(parts[1:])
        if len(parts) == 3 and parts[0] in ("v1", "v2") and parts[1] == "keys":
            form = parts[0]
            return [Route("GET", f"jwks_{form}", lambda r, f: self.jwks(r, f, parts[2], form), "jwks")]
        if len(parts) == 3 and parts[1:] == [".well-known", "jwks.json"]:
            return [Route("GET", "jwks_wellknown", lambda r, f: self.jwks(r, f, parts[0], "v2"), "jwks")]
        if parts[-2:] == [".well-known", "openid-configuration"] and (
                len(parts) == 3 or (len(parts) == 5 and parts[:2] == ["v1", "apps"])):
            return [Route("GET", "openid_config", lambda r, f: self.openid_configuration(parts[-3]), None)]
        return self._auth_routes("/".join(parts))

    def _auth_routes(self, path: str) -> list[Route]:
        table = {
            "v1/auth/accesskey/exchange": ("exchange_ok", self.exchange, "exchange"),
            "v1/auth/refresh": ("refresh_ok", self.refresh, "refresh"),
            "v1/auth/try-refresh": ("refresh_ok", self.try_refresh, "refresh"),
            "v1/auth/logout": ("logout", lambda r, f: self.logout(r, everywhere=False), "refresh"),
            "v1/auth/logoutall": ("logout", lambda r, f: self.logout(r, everywhere=True), "refresh"),
            "v1/auth/tenant/select": ("tenant_select", self.select_tenant, "refresh"),
        }
        if path not in table:
            return []
        counter, handler, target = table[path]
        return [Route("POST", counter, handler, target)]

    def _control_routes(self, parts: list[str]) -> list[Route]:
        return self._control_table.get("/".join(parts), [])

    @staticmethod
    def _build_control_table(control: "Control") -> dict[str, list[Route]]:
        actions: dict[str, list[tuple[str, Callable[[Request], Any]]]] = {
            "token": [("POST", control.token)],
            "keys": [("GET", control.keys)],
            "rotate": [("POST", control.rotate)],
            "fault": [("GET", control.list_faults), ("POST", control.set_fault), ("DELETE", control.clear_faults)],
            "rate_limit": [("POST", control.rate_limit)],
            "clock": [("GET", control.clock), ("POST", control.set_clock)],
            "stats": [("GET", control.stats)],
            "reset": [("POST", control.reset)],
            "info": [("GET", control.info)],
        }
        table = {}
        for name, entries in actions.items():
            # The reset request zeroes the counters: it is not counted itself.
            wrap = _uncounted if name == "reset" else _control_reply
            table[name] = [Route(method, "control", wrap(action), None) for method, action in entries]
        return table

    # ----------------------------------------------------------------- serving

    def serve(self, request: Request) -> tuple[str, Reply]:
        """(counter name, reply) for one request. Never raises."""
        try:
            return self._serve(request)
        except DescopeError as e:
            return "not_found", Reply.error(e)
        except Exception:  # a bug must not take the server down nor leak a traceback to the client
            logger.exception("mock Descope: unexpected error on %s %s", request.method, redact_tokens(request.path))
            return "not_found", Reply.error(DescopeError(500, "E000000", "Internal server error",
                                                         "The mock failed on this request; see its log"))

    def _serve(self, request: Request) -> tuple[str, Reply]:
        route, allowed = self.route(request.method, request.path)
        if route is None:
            if allowed:
                reply = Reply.error(DescopeError(405, "E011001", "Bad request",
                                                 f"{request.method} is not allowed here"))
                reply.headers.append(("Allow", ", ".join(allowed)))
                return "not_found", reply
            return "not_found", Reply.error(DescopeError(404, "E011001", "Bad request", f"No such endpoint: "
                                                         f"{request.method} {redact_tokens(request.path)}"))
        if route.target is None:
            if route.counter == "control" and not _is_loopback(request.client_ip):
                return "control", Reply.error(errors.forbidden("/__mock/ is only reachable from loopback"))
            return route.counter, self._call(route, request, None)
        reply = self._serve_with_faults(route, request)
        return reply.counter or _outcome_counter(route.counter, reply), reply

    def _serve_with_faults(self, route: Route, request: Request) -> Reply:
        if REDIRECTED_MARK in request.query:  # the far end of a `redirect` fault answers cleanly
            return self._call(route, request, None)
        retry_after = self.state.faults.take_rate_limit(route.target)
        if retry_after is not None:
            return Reply.error(errors.rate_limited(retry_after))
        fault = self.state.faults.take(route.target)
        if fault is None:
            return self._call(route, request, None)
        early = self._before_answer(fault)
        if early is not None:
            return early
        reply = self._call(route, request, fault)
        return _bent(reply, fault)

    def _before_answer(self, fault: Fault) -> Reply | None:
        """Faults that act before the route answers: delay, hang, reset, a forced status."""
        stopping = self.state.stopping
        if fault.mode == "slow":
            stopping.wait(fault.delay_ms / 1000)
        elif fault.mode == "hang":
            fault.cleared.wait(fault.delay_ms / 1000 if fault.delay_ms else None)
            if stopping.is_set():
                return Reply(0, abort=True, note="hang: server stopping")
        elif fault.mode == "reset":
            return Reply(0, abort=True, note="fault: reset")
        elif fault.mode == "status":
            return Reply.error(errors.fault_status(fault.status))
        return None

    @staticmethod
    def _call(route: Route, request: Request, fault: Fault | None) -> Reply:
        try:
            return route.handler(request, fault)
        except DescopeError as e:
            return Reply.error(e)

    # ----------------------------------------------------------------- Descope endpoints

    def _check_project(self, project_id: str) -> None:
        if project_id != self.state.project_id:
            raise errors.invalid_arguments(f"Unknown project ID {project_id}")

    def jwks(self, request: Request, fault: Fault | None, project_id: str, form: str) -> Reply:
        self._check_project(project_id)
        if fault and fault.mode == "redirect":
            location = f"/{project_id}/.well-known/jwks.json?{REDIRECTED_MARK}=1"
            return Reply(302, b"", "text/plain", headers=[("Location", location)], note="fault: redirect")
        if fault and fault.jwks_only:
            document = faulty_jwks(fault.mode, self.state.keyring)
        else:
            document = {"keys": self.state.keyring.public_jwks()}
        if form == "v1" and isinstance(document, dict) and isinstance(document.get("keys"), list):
            document = document["keys"]  # /v1/keys answers a bare array
        return Reply.json(200, document)

    def openid_configuration(self, project_id: str) -> Reply:
        self._check_project(project_id)
        base = self.state.base_url
        return Reply.json(200, {
            "issuer": self.state.issuer(),
            "jwks_uri": f"{base}/{project_id}/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": [self.state.config.alg],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
        })

    def exchange(self, request: Request, fault: Fault | None) -> Reply:
        result = self.state.exchange(request.header("Authorization"), request.body, request.client_ip)
        return Reply.json(200, result, note=f"keyId={result['keyId']}")

    def refresh(self, request: Request, fault: Fault | None) -> Reply:
        token = self.state.refresh_token_from(request.header("Authorization"), request.cookies())
        request.json()  # a malformed body is a 400 even with a good token
        body, cookies = self.state.refresh(token)
        return Reply.json(200, body, headers=[("Set-Cookie", cookie) for cookie in cookies],
                          note=f"sub={body['user']['userId']}")

    def try_refresh(self, request: Request, fault: Fault | None) -> Reply:
        """Like refresh, but a missing or invalid refresh token is a 200 `{}` (descope.md §7.2)."""
        try:
            return self.refresh(request, fault)
        except DescopeError as e:
            if e.status == 400 and e.code == "E011001":
                raise
            return Reply.json(200, {}, counter="refresh_fail", note=f"no session: {e.message}")

    def logout(self, request: Request, everywhere: bool) -> Reply:
        token = self.state.refresh_token_from(request.header("Authorization"), request.cookies())
        return Reply.json(200, self.state.logout(token, everywhere))

    def select_tenant(self, request: Request, fault: Fault | None) -> Reply:
        token = self.state.refresh_token_from(request.header("Authorization"), request.cookies())
        body, cookies = self.state.select_tenant(token, request.json())
        return Reply.json(200, body, headers=[("Set-Cookie", cookie) for cookie in cookies])


class Control:
    """The `/__mock/` endpoints (descope.md §10.4). Each returns a JSON-able document or raises DescopeError."""

    def __init__(self, state: MockState):
        self.state = state

    def token(self, request: Request) -> Any:
        return self.state.mint(request.json())

    def keys(self, request: Request) -> Any:
        return self.state.keyring.describe()

    def rotate(self, request: Request) -> Any:
        body = _object_body(request)
        try:
            return self.state.keyring.rotate(body.get("mode", "rotate"), body.get("kid"))
        except KeyRingError as e:
            raise errors.invalid_arguments(str(e)) from None

    def list_faults(self, request: Request) -> Any:
        return self.state.faults.describe()

    def set_fault(self, request: Request) -> Any:
        try:
            fault = parse_fault(_object_body(request))
        except FaultError as e:
            raise errors.invalid_arguments(str(e)) from None
        self.state.faults.set(fault)
        result = {"fault": fault.describe()}
        if fault.mode == "rsa_1024":
            result["kid"] = self.state.keyring.fault_key("rsa_1024").kid
        logger.info("fault set: %s", fault.describe())
        return result

    def clear_faults(self, request: Request) -> Any:
        target = (request.query.get("target") or [None])[0] or _object_body(request).get("target")
        removed = self.state.faults.clear(target)
        return {"cleared": [fault.describe() for fault in removed]}

    def rate_limit(self, request: Request) -> Any:
        body = _object_body(request)
        try:
            self.state.faults.set_rate_limit(body.get("target", "*"), body.get("count", 1), body.get("retry_after", 1))
        except FaultError as e:
            raise errors.invalid_arguments(str(e)) from None
        return self.state.faults.describe()

    def clock(self, request: Request) -> Any:
        return self.state.clock_info()

    def set_clock(self, request: Request) -> Any:
        return self.state.set_clock(_object_body(request).get("offset", 0))

    def stats(self, request: Request) -> Any:
        limit = (request.query.get("limit") or [None])[0]
        if limit is not None and not limit.isdigit():
            raise errors.invalid_arguments("limit must be a non-negative integer")
        return self.state.stats.snapshot(int(limit) if limit is not None else None)

    def reset(self, request: Request) -> Any:
        keys = _object_body(request).get("keys", False)
        self.state.reset(keys=bool(keys))
        return {"reset": True, "keys_restored": bool(keys), **self.state.keyring.summary()}

    def info(self, request: Request) -> Any:
        return self.state.info()


def _control_reply(action: Callable[[Request], Any]) -> Callable[[Request, Any], Reply]:
    return lambda request, fault: Reply.json(200, action(request))


def _uncounted(action: Callable[[Request], Any]) -> Callable[[Request, Any], Reply]:
    def call(request: Request, fault: Any) -> Reply:
        reply = Reply.json(200, action(request))
        reply.uncounted = True
        return reply
    return call


def _object_body(request: Request) -> dict[str, Any]:
    document = request.json()
    if not isinstance(document, dict):
        raise errors.invalid_arguments("the request body must be a JSON object")
    return document


def _outcome_counter(counter: str, reply: Reply) -> str:
    """exchange_ok/refresh_ok become *_fail when the answer is not a 200."""
    if counter.endswith("_ok") and reply.status != 200:
        return counter[:-3] + "_fail"
    return counter


def _bent(reply: Reply, fault: Fault) -> Reply:
    if fault.mode == "status_valid":
        reply.status = fault.status
    elif fault.mode in BODY_FAULTS:
        body, content_type, extra = bent_body(fault.mode, reply.body, fault)
        if fault.mode == "html_200":
            reply.status = 200
        reply.body = body
        reply.content_type = content_type or reply.content_type
        reply.headers = reply.headers + extra
    reply.note = (reply.note + f" fault={fault.mode}").strip()
    return reply


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-descope"
    sys_version = ""
    server: "MockServer"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.client_address[0], redact_tokens(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, oversized headers) as Descope JSON, not HTML."""
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        error = DescopeError(code, "E011001", phrase, message or phrase)
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # an unparsable request line: still answer with a status line
        self._write(Reply.error(error))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            raise errors.bad_request("Invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise DescopeError(413, "E011001", "Bad request", "The request body is too large")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(line or b"0", 16)
            except ValueError:
                raise errors.bad_request("Invalid chunked encoding") from None
            if size == 0:
                self.rfile.readline(1024)
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise DescopeError(413, "E011001", "Bad request", "The request body is too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _handle(self) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except DescopeError as e:
            self.close_connection = True  # the rest of the body is unread: this connection cannot be reused
            self._finish("not_found", Reply.error(e), started)
            return
        request = Request(method=self.command, path=url.path, query=parse_qs(url.query), headers=self.headers,
                          body=body, client_ip=self.client_address[0])
        counter, reply = self.server.dispatcher.serve(request)
        self._finish(counter, reply, started)

    def _finish(self, counter: str, reply: Reply, started: float) -> None:
        # Counted before the answer leaves, so a client that reads /__mock/stats next always sees its request.
        if not reply.uncounted:
            self.server.state.stats.record(counter, self._log_entry(counter, reply, started))
        if reply.abort:
            self._abort()
        else:
            self._write(reply)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client left (e.g. it timed out on a slow answer)

    def _abort(self) -> None:
        """Close without an answer; SO_LINGER 0 makes the close a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def _log_entry(self, counter: str, reply: Reply, started: float) -> dict[str, Any]:
        headers = {name: self.headers.get(name) for name in LOGGED_HEADERS if self.headers.get(name) is not None}
        authorization = self.headers.get("Authorization") or ""
        return {
            "time": round(time.time(), 3), "method": self.command, "path": redact_tokens(self.path),
            "route": counter, "status": None if reply.abort else reply.status,
            "user_agent": self.headers.get("User-Agent"), "headers": headers,
            "auth_scheme": authorization.split(" ", 1)[0] if authorization else None,
            "dsr_cookie": "DSR=" in (self.headers.get("Cookie") or ""),
            "duration_ms": round((time.monotonic() - started) * 1000, 1), "note": redact_tokens(reply.note),
        }

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class MockServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging request must not keep the process alive

    def __init__(self, address: tuple[str, int], state: MockState):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.state = state
        self.dispatcher = Dispatcher(state)


# ---------------------------------------------------------------------------------------------
# Python controls


class MockDescope:
    """A mock Descope with the same controls as `/__mock/`, for tests and the CLI. Not started until start()."""

    def __init__(self, config: MockConfig | dict | str | Path | None = None, *, port: int | None = None,
                 project_id: str | None = None, clock: Callable[[], float] | None = None):
        self.config = load_config(config)
        if port is not None:
            self.config.port = port
        if project_id is not None:
            self.config.project_id = validated_project_id(project_id)
        self.state = MockState(self.config, clock)
        self._server: MockServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "MockDescope":
        """Bind (port 0 picks a free port) and serve in a background thread. Ready when this returns."""
        if self._server is not None:
            return self
        self.state.stopping.clear()
        self._server = MockServer((self.config.host, self.config.port), self.state)
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        self.state.base_url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mock-descope", daemon=True)
        self._thread.start()
        logger.info("mock Descope on %s, project %s, active kid %s", self.base_url, self.project_id,
                    self.state.keyring.active.kid)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.state.stopping.set()
        self.state.faults.clear()  # releases hanging requests
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None
        self.state.base_url = None

    def __enter__(self) -> "MockDescope":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # ----------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mock is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        if self.state.base_url is None:
            raise RuntimeError("the mock is not started")
        return self.state.base_url

    @property
    def project_id(self) -> str:
        return self.state.project_id

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/v2/keys/{self.project_id}"

    @property
    def issuer(self) -> str:
        return self.state.issuer()

    @property
    def default_access_key(self) -> str:
        return self.config.default_access_key.cleartext

    @property
    def default_user_id(self) -> str:
        return self.config.default_user.id

    # ----------------------------------------------------------------- controls

    def mint(self, kind: str = "session", **fields: Any) -> str:
        """A token, as `POST /__mock/token` would mint it: sub, roles, permissions, tenants, claims, remove,
        header, sign_with, ttl, iat, issuer_mode, selected_tenant, nsec, amr, raw."""
        return self.mint_details(kind, **fields)["jwt"]

    def mint_details(self, kind: str = "session", **fields: Any) -> dict[str, Any]:
        return self.state.mint({"kind": kind, **{k: v for k, v in fields.items() if v is not None}})

    def exchange(self, access_key: str | None = None, *, login_options: dict[str, Any] | None = None,
                 project_id: str | None = None) -> dict[str, Any]:
        """The access-key exchange without HTTP: `{keyId, sessionJwt, expiration}`; raises DescopeError."""
        cleartext = self.default_access_key if access_key is None else access_key
        authorization = f"Bearer {project_id or self.project_id}:{cleartext}"
        return self.state.exchange(authorization, {"loginOptions": login_options or {}})

    def rotate(self, mode: str = "rotate", kid: str | None = None) -> dict[str, Any]:
        try:
            return self.state.keyring.rotate(mode, kid)
        except KeyRingError as e:
            raise errors.invalid_arguments(str(e)) from None

    def fault(self, mode: str, target: str = "jwks", count: int | None = None, delay_ms: int | None = None,
              **options: Any) -> dict[str, Any]:
        try:
            fault = parse_fault({"mode": mode, "target": target, "count": count, "delay_ms": delay_ms, **options})
        except FaultError as e:
            raise errors.invalid_arguments(str(e)) from None
        self.state.faults.set(fault)
        return fault.describe()

    def clear_faults(self, target: str | None = None) -> None:
        self.state.faults.clear(target)

    def rate_limit(self, count: int, target: str = "*", retry_after: int = 1) -> None:
        try:
            self.state.faults.set_rate_limit(target, count, retry_after)
        except FaultError as e:
            raise errors.invalid_arguments(str(e)) from None

    def set_clock(self, offset: float) -> dict[str, Any]:
        return self.state.set_clock(offset)

    def now(self) -> int:
        return self.state.now()

    def stats(self, limit: int | None = None) -> dict[str, Any]:
        return self.state.stats.snapshot(limit)

    def counters(self) -> dict[str, int]:
        return self.stats(0)["counters"]

    def reset(self, keys: bool = False) -> None:
        self.state.reset(keys=keys)

    def keys(self) -> dict[str, Any]:
        return self.state.keyring.describe()

    def jwks(self) -> dict[str, Any]:
        return {"keys": self.state.keyring.public_jwks()}

    def info(self) -> dict[str, Any]:
        return self.state.info()
