"""The gateway's own HTTP/1.1 client for backend calls, on mitmproxy's asyncio loop.

KrakenD calls its backends with Go's net/http client; this module reproduces what that client puts on the wire
and how it treats what comes back (krakend-routing.md §5.4-§5.6, §6.2, §6.8):

* request framing and header order of Go's `Request.write` (Host, User-Agent, length/chunked, the rest,
  then the transport's own `Accept-Encoding: gzip`);
* transparent gunzip only when the transport itself asked for gzip (`transport.go`, `requestedGzip`);
* redirect following as in `client.go` (`redirectBehavior`, `makeHeadersCopier`, `refererForURL`,
  `defaultCheckRedirect`);
* keep-alive pooling per scheme/host/port with Go's retry rule for a reused connection the server had closed
  (`persistConn.shouldRetryRequest`);
* errors worded like Go's `*url.Error`: `Get "http://127.0.0.1:9/x": dial tcp 127.0.0.1:9: connect: connection refused`.

HTTP/1.1 only (no HTTP/2, no proxies, no cookie jar: KrakenD's client uses none of them by default).
h11 is the reference parser; plain keep-alive exchanges (valid headers, one Content-Length) skip it for speed
and produce the same bytes and results (`_fast_request`, `_Connection._read_fast`).
Bodies are buffered, never streamed. The caller bounds the whole call with `asyncio.timeout`; a cancelled call
closes its connection, so a half-read connection is never reused.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import socket
import ssl
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import quote, unquote, unquote_to_bytes, urljoin

import h11

from krakend_mitm.errors import BackendError

GO_USER_AGENT = "Go-http-client/1.1"  # net/http defaultUserAgent, sent when the caller gives no User-Agent
MAX_REDIRECTS = 10  # client.go defaultCheckRedirect
DIAL_TIMEOUT = 30.0  # DefaultTransport's net.Dialer{Timeout: 30 * time.Second}
TLS_HANDSHAKE_TIMEOUT = 10.0  # DefaultTransport.TLSHandshakeTimeout
MAX_RESPONSE_HEADER_BYTES = 10 << 20  # Transport.MaxResponseHeaderBytes default

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_LENGTH_WHEN_EMPTY = frozenset({"POST", "PUT", "PATCH"})  # transferWriter.shouldSendContentLength
_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # Request.isReplayable
# client.go makeHeadersCopier: never copied to a redirect target outside the initial domain.
_SENSITIVE_ON_REDIRECT = frozenset(
    {"authorization", "www-authenticate", "cookie", "cookie2", "proxy-authorization", "proxy-authenticate"}
)
# Headers the client writes itself (Request.write's reqWriteExcludeHeader) or must never forward.
_CLIENT_OWNED = frozenset({"host", "user-agent", "content-length", "transfer-encoding", "trailer", "connection"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

# url.URL.EscapedPath: a path made only of these characters is sent as it is (validEncoded, encodePath).
_PATH_AS_IS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%\[\]]*")
_PATH_SAFE = "-_.~$&+,/:;=@"  # what escape(path, encodePath) leaves alone besides letters and digits
_QUERY_AS_IS = re.compile(r"[\x21-\x7e]*")  # what an HTTP/1.1 request-target may hold
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# The fast path (see _FastRequest and _Connection._read_fast). h11 validates every header of every event
# and runs a state machine per event, which costs more CPU than the rest of a keep-alive round trip. The
# common case is written and read here instead, under rules that are a subset of h11's; anything outside
# them goes through h11, so its behaviour and error texts stay the reference.
_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"  # h11 _abnf.token (method, header name)
_FAST_TOKEN = re.compile(_TOKEN)
_FAST_TARGET = re.compile(r"[\x21-\x7e]+")  # h11 _abnf.request_target
# Header values joined by "\n": each must match h11's field_value, minus the control bytes h11 tolerates
# (those go through h11). "\n" is in no value class, so it only ever matches as the separator.
_FAST_VALUE = r"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?"
_FAST_VALUES = re.compile(rf"{_FAST_VALUE}(?:\n{_FAST_VALUE})*")
_FAST_METHODS: set[str] = set()  # methods already checked against _FAST_TOKEN
_PLAIN, _HOST, _LENGTH, _CHUNKED, _H11_READ = range(5)
# Request header names that matter to h11's framing / connection state; the rest are plain once validated.
_SPECIAL_NAMES = {"host": _HOST, "content-length": _LENGTH, "transfer-encoding": _CHUNKED,
                  "connection": _H11_READ, "upgrade": _H11_READ}
_FAST_NAME_KINDS: dict[str, int] = {}  # header name -> kind, for names that passed _FAST_TOKEN
# Responses: h11's own regexes (_abnf status_line / header_field, _receivebuffer blank_line_regex), narrowed
# to HTTP/1.1 final statuses 200-599 with a reason phrase.
_BLANK_LINE = re.compile(rb"\n\r?\n")
_FAST_STATUS = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9]) ([^\x00\n\r\x0b\x0c]*)")
_FAST_FIELD = re.compile(
    rb"(" + _TOKEN.encode() + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*"
)
_STATUS_PREFIX = b"HTTP/1.1 "
_FAST_HEAD_LIMIT = 64 * 1024  # a head that is not complete within this many bytes goes to h11 (and its limit)


@dataclass(slots=True)
class BackendRequest:
    method: str
    url: str  # absolute http(s) URL, path/query already percent-encoded as they must go on the wire
    headers: list[tuple[str, str]]  # sent in order, besides what the client adds (Host, framing, Accept-Encoding)
    body: bytes = b""
    replay_body_on_redirect: bool = False  # KrakenD backend/http/client send_body_on_redirect


@dataclass(slots=True)
class BackendResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # as received, names canonical like Go's; minus Content-Encoding/Length if gunzipped
    body: bytes
    url: str  # final URL after redirects
    http_version: str = "HTTP/1.1"


class HttpClient:
    """Go net/http `Client` + `Transport` semantics for one gateway. Use from a single event loop."""

    def __init__(
        self,
        *,
        verify_tls: bool = True,
        disable_compression: bool = False,
        max_idle_per_host: int = 250,
        max_body_bytes: int = 64 * 1024 * 1024,
        local_dispatch: Callable[[BackendRequest], Awaitable[BackendResponse]] | None = None,
        is_local: Callable[[str, int], bool] | None = None,
    ):
        self._disable_compression = disable_compression
        self._max_idle_per_host = max_idle_per_host
        self._max_body_bytes = max_body_bytes
        self._local_dispatch = local_dispatch
        self._is_local = is_local if local_dispatch is not None else None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        # Built here, not on the first https call: loading the CA store takes tens of ms and would stall the loop.
        self._tls = _tls_context(verify_tls)
        self._closed = False

    async def send(self, req: BackendRequest, *, follow_redirects: bool = True) -> BackendResponse:
        """One backend call, following redirects like Go's `Client.Do`. Raises BackendError."""
        method, url, headers, body = req.method, req.url, req.headers, req.body
        requests_made = 0
        strip_sensitive = False
        keep_body = True  # client.go: once a hop drops the body, later 307/308 hops do not bring it back
        initial = _parse_url(url)
        target = initial
        while True:
            try:
                resp, added_gzip = await self._round_trip(method, target, headers, body)
            except _HopError as err:
                raise BackendError(f"{_go_op(req.method)} {_go_quote(_masked(target))}: {err}") from None
            requests_made += 1
            location = _redirect_location(resp, req) if follow_redirects else None
            if location is None:
                return self._finish(resp, added_gzip)
            if resp.status < 307:
                # client.go redirectBehavior: 301/302/303 turn everything but GET/HEAD into a body-less GET.
                method = method if method in ("GET", "HEAD") else "GET"
                keep_body = False
            next_url = _resolve_location(req, target, location)
            if requests_made >= MAX_REDIRECTS:
                # defaultCheckRedirect; Go reports the raw Location as the URL of this error.
                raise BackendError(f"{_go_op(req.method)} {_go_quote(location)}: stopped after 10 redirects")
            previous, target = target, _parse_url(next_url)
            if not strip_sensitive and target.hostport != initial.hostport:
                strip_sensitive = not _is_domain_or_subdomain(target.host, initial.host)
            headers = _redirect_headers(req.headers, strip_sensitive, previous, target)
            body = req.body if keep_body else b""

    async def aclose(self) -> None:
        """Closes idle connections; connections in use close when their call ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    # -- one hop -------------------------------------------------------------------------------------------

    async def _round_trip(self, method: str, target: _Target, headers, body: bytes) -> tuple[BackendResponse, bool]:
        if target.scheme not in _DEFAULT_PORTS:
            raise _HopError(f"unsupported protocol scheme {_go_quote(target.scheme)}")  # Transport.roundTrip
        if not target.host:
            raise _HopError("http: no Host in request URL")
        wire_headers, added_gzip, body = _wire_headers(method, target, headers, body, self._disable_compression)
        if self._is_local is not None and self._is_local(target.host, target.port):
            return await self._dispatch_locally(method, target, wire_headers, body), added_gzip
        return await self._send_over_network(method, target, wire_headers, body, headers), added_gzip

    async def _dispatch_locally(self, method: str, target: _Target, wire_headers, body: bytes) -> BackendResponse:
        # mitmproxy refuses to connect to its own listen address, so calls to the gateway itself are served in-process.
        # The handler gets the headers as they would go on the wire, minus Host (wire_headers[0]): like a Go server's
        # Request.Header, and the URL's authority carries it.
        try:
            resp = await self._local_dispatch(BackendRequest(method, target.url, wire_headers[1:], body))
        except BackendError:
            raise
        except Exception as err:  # e.g. a self-call loop: a failed backend for the calling endpoint, not a crash
            raise _HopError(str(err) or type(err).__name__) from err
        if len(resp.body) > self._max_body_bytes:
            raise _HopError(_too_large(self._max_body_bytes))
        return BackendResponse(resp.status, resp.reason, resp.headers, resp.body, target.url, resp.http_version)

    async def _send_over_network(self, method: str, target: _Target, wire_headers, body: bytes, headers):
        # Validated before dialing either way, so an invalid header never opens a connection.
        request = _fast_request(method, target.path, wire_headers, body) or _h11_request(
            method, target.path, wire_headers
        )
        conn = self._pop_idle(target.key)
        if conn is None:
            return await self._exchange(await self._connect(target), request, body, target.url)
        try:
            return await self._exchange(conn, request, body, target.url)
        except _NoResponse as err:
            # persistConn.shouldRetryRequest: a reused connection the server had already closed is retried
            # when nothing was written, or when the request is replayable (idempotent method, body re-sendable).
            if not (err.nothing_written or _is_replayable(method, headers, body)):
                raise
        return await self._exchange(await self._connect(target), request, body, target.url)

    async def _exchange(self, conn: _Connection, request, body: bytes, url: str) -> BackendResponse:
        completed = False
        try:
            resp = await conn.round_trip(request, body, self._max_body_bytes, url)
            completed = True
            return resp
        finally:
            # Also on CancelledError: a connection with a request in flight must never go back to the pool.
            if not completed:
                conn.abort()
            elif conn.finish_cycle():
                self._put_idle(conn)
            else:
                conn.close()  # e.g. `Connection: close` or an HTTP/1.0 response

    # -- pool ----------------------------------------------------------------------------------------------

    def _pop_idle(self, key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # most recently used first, like Transport.getIdleConn
            if not conn.closed:
                conn.busy = True
                return conn
        return None

    def _put_idle(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        elif len(idle) >= self._max_idle_per_host:
            idle[:] = [c for c in idle if not c.closed]
            if len(idle) >= self._max_idle_per_host:  # Transport.tryPutIdleConn: errTooManyIdleHost
                conn.close()
                return
        conn.busy = False
        idle.append(conn)

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        sock = await _dial(loop, target.host, target.port)
        conn = _Connection(target.key, loop)
        try:
            if target.scheme == "https":
                async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
                    await loop.create_connection(
                        lambda: conn, sock=sock, ssl=self._tls, server_hostname=target.host
                    )
            else:
                await loop.create_connection(lambda: conn, sock=sock)
        except TimeoutError:
            sock.close()
            raise _HopError("net/http: TLS handshake timeout") from None
        except (ssl.SSLError, ssl.CertificateError) as err:
            sock.close()
            raise _HopError(_tls_error_text(err)) from None
        except OSError as err:
            sock.close()
            raise _HopError(_os_error_text(err)) from None
        except BaseException:
            sock.close()
            raise
        return conn

    # -- final response ------------------------------------------------------------------------------------

    def _finish(self, resp: BackendResponse, added_gzip: bool) -> BackendResponse:
        # transport.go: only a gzip the transport asked for itself is decoded, and then Content-Encoding and
        # Content-Length go away. A caller-sent Accept-Encoding gets the body untouched.
        if added_gzip and _first_header(resp.headers, "content-encoding").lower() == "gzip":
            resp.body = _gunzip(resp.body, self._max_body_bytes)
            resp.headers = [h for h in resp.headers if h[0].lower() not in ("content-encoding", "content-length")]
        return resp


# -- the connection ----------------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection. A round trip is read by the fast path (`_read_fast`) or by an h11 client
    state machine (`self.h11`, created per round trip only when needed)."""

    __slots__ = (
        "key", "transport", "h11", "busy", "closed", "lost_exc", "_loop", "_waiter", "_got_bytes", "_buf", "_need"
    )

    def __init__(self, key, loop: asyncio.AbstractEventLoop):
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.h11: h11.Connection | None = None  # None: received bytes collect in _buf for the fast path
        self.busy = True
        self.closed = False
        self.lost_exc: BaseException | None = None
        self._loop = loop
        self._waiter: asyncio.Future | None = None
        self._got_bytes = False
        self._buf = bytearray()
        self._need = 0  # the fast path's reader wakes once _buf holds this many bytes

    # asyncio callbacks

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Go's readLoop drops an idle connection that talks ("Unsolicited response received on idle HTTP channel").
            self.abort()
            return
        self._got_bytes = True
        h = self.h11
        if h is None:
            buf = self._buf
            buf += data
            if len(buf) >= self._need:
                self._wake()
        else:
            h.receive_data(data)
            self._wake()

    def eof_received(self):
        self._end_of_input(None)
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        self._end_of_input(exc)

    def _end_of_input(self, exc) -> None:
        self.closed = True
        if exc is not None and self.lost_exc is None:
            self.lost_exc = exc
        if self.h11 is not None:
            self.h11.receive_data(b"")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _more_data(self) -> None:
        self._waiter = self._loop.create_future()
        await self._waiter

    # the exchange

    async def round_trip(self, request, body: bytes, max_body: int, url: str) -> BackendResponse:
        """`request` is a _FastRequest (written as is, response read by `_read_fast` when it can) or an
        h11.Request (the whole exchange through h11)."""
        if self.closed:
            raise _NoResponse(self._lost_text(), nothing_written=True)
        if type(request) is _FastRequest:
            self.h11 = None
            self._got_bytes = False
            if body:
                self.transport.writelines(request.wire(body))
            else:
                self.transport.write(request.head)
            if request.read_fast:
                response = await self._read_fast(max_body, url)
                if response is not None:
                    return response
            self._hand_over_to_h11(request, body)
        else:
            h = self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEADER_BYTES)
            if self._buf:  # bytes a new connection's server sent before our request
                h.receive_data(bytes(self._buf))
                self._buf = bytearray()
            self._write_request(request, body)
        response = await self._read_head()
        headers, chunked = _response_headers(response.headers.raw_items())
        if chunked:
            headers = [h for h in headers if h[0] != "Content-Length"]  # Go's fixLength drops it for chunked
        content = await self._read_body(max_body)
        return BackendResponse(
            response.status_code,
            response.reason.decode("latin-1"),
            headers,
            content,
            url,
            "HTTP/" + response.http_version.decode("ascii"),
        )

    def _write_request(self, request: h11.Request, body: bytes) -> None:
        h = self.h11
        head = h.send(request)
        if body:
            parts = [head, *h.send_with_data_passthrough(h11.Data(data=body)), h.send(h11.EndOfMessage())]
        else:
            parts = [head, h.send(h11.EndOfMessage())]
        self._got_bytes = False
        self.transport.writelines(parts)

    async def _read_fast(self, max_body: int, url: str) -> BackendResponse | None:
        """The response, when its head is simple (see `_simple_head`); None hands it over to h11 untouched.

        Only responses whose framing is unambiguous are read here: HTTP/1.1, a final status with a body,
        exactly one Content-Length, keep-alive. Anything else, a head that is incomplete when the input ends,
        or a length above max_body (where h11 decides between "too large" and a truncated body) goes to h11.
        """
        buf = self._buf
        while True:
            end = _BLANK_LINE.search(buf)
            if end is not None:
                break
            # h11 fails at once on a first byte < 0x21 and parses bare-LF heads: leave every such case to it.
            if self.closed or len(buf) > _FAST_HEAD_LIMIT or not _STATUS_PREFIX.startswith(buf[:9]):
                return None
            await self._more_data()
        head = _simple_head(buf, end.start()) if end.start() <= _FAST_HEAD_LIMIT else None
        if head is None:
            return None
        status, reason, headers, length = head
        if length > max_body:
            return None
        start = end.end()
        total = start + length
        if len(buf) < total:
            self._need = total
            try:
                while len(buf) < total:
                    if self.closed:
                        # As h11 + _read_body: a truncated body is io.ErrUnexpectedEOF, not wrapped in url.Error.
                        raise BackendError(self._lost_text("unexpected EOF"))
                    await self._more_data()
            finally:
                self._need = 0
        with memoryview(buf) as view:
            content = view[start:total].tobytes()
        # Usually empty; anything left is bytes beyond the response, and finish_cycle then drops the connection.
        self._buf = buf[total:]
        return BackendResponse(status, reason, headers, content, url)

    def _hand_over_to_h11(self, request: _FastRequest, body: bytes) -> None:
        """Puts a fresh h11 connection in the state it would have had, had it sent the request and received
        every byte so far; the h11 reading code then carries on as if h11 had done the whole exchange."""
        h = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEADER_BYTES)
        h.send(request.h11_event())  # the bytes h11 would write are the ones already written; discarded
        if body:
            h.send_with_data_passthrough(h11.Data(data=body))
        h.send(h11.EndOfMessage())
        if self._buf:
            h.receive_data(bytes(self._buf))
            self._buf = bytearray()
        if self.closed:
            h.receive_data(b"")
        self.h11 = h

    async def _read_head(self) -> h11.Response:
        h = self.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as err:
                if self.closed and not self._got_bytes:
                    # Closed before any response byte (h11 reports it as a protocol error): io.EOF in Go.
                    raise _NoResponse(self._lost_text(), nothing_written=False) from None
                raise _HopError(self._broken_text(err)) from None
            if event is h11.NEED_DATA:
                await self._more_data()
            elif type(event) is h11.Response:
                return event
            elif event is h11.PAUSED:
                # A 101 to a forwarded `Upgrade`, or a CONNECT tunnel: Go would hand over the raw connection.
                raise _HopError("net/http: protocol switch (101 / CONNECT) is not supported by the gateway client")
            # InformationalResponse (1xx): skipped, as Go's readLoop does.

    async def _read_body(self, max_body: int) -> bytes:
        h = self.h11
        chunks = []
        size = 0
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as err:
                if self.closed:
                    # A truncated body: Go's body reader returns io.ErrUnexpectedEOF (not wrapped in url.Error).
                    raise BackendError(self._lost_text("unexpected EOF")) from None
                raise _HopError(self._broken_text(err)) from None
            if event is h11.NEED_DATA:
                await self._more_data()
            elif type(event) is h11.Data:
                size += len(event.data)
                if size > max_body:
                    raise _HopError(_too_large(max_body))
                chunks.append(event.data)
            elif type(event) is h11.EndOfMessage:
                break
            else:
                raise BackendError(self._lost_text("unexpected EOF"))
        if len(chunks) == 1:
            return bytes(chunks[0])
        return b"".join(chunks)

    def finish_cycle(self) -> bool:
        """After a complete exchange: True when the connection may serve another request."""
        h = self.h11
        if h is None:
            # Fast path: only keep-alive responses read to their exact end get here; reusable unless the peer
            # closed or sent bytes beyond the response (as h11's trailing_data).
            return not self.closed and not self._buf
        if self.closed or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            return False
        h.start_next_cycle()
        return not h.trailing_data[0]

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # error texts

    def _lost_text(self, clean_eof: str = "EOF") -> str:
        """Go's wording for a connection that ended: io.EOF / io.ErrUnexpectedEOF, or the OS read error."""
        exc = self.lost_exc
        if exc is None or isinstance(exc, ssl.SSLError):
            return clean_eof
        if isinstance(exc, OSError) and exc.errno:
            local = _format_addr(self.transport.get_extra_info("sockname"))
            remote = _format_addr(self.transport.get_extra_info("peername"))
            op = "write" if isinstance(exc, BrokenPipeError) else "read"
            return f"{op} tcp {local}->{remote}: {op}: {_strerror(exc.errno)}"
        return str(exc) or clean_eof

    def _broken_text(self, err: h11.RemoteProtocolError) -> str:
        if "Receive buffer too long" in str(err):
            return f"net/http: server response headers exceeded {MAX_RESPONSE_HEADER_BYTES} bytes; aborted"
        if self.closed:
            return self._lost_text("unexpected EOF")
        return f"net/http: HTTP/1.x transport connection broken: malformed HTTP response ({err})"


class _HopError(Exception):
    """The Err part of Go's url.Error for one hop; `send` adds `<Op> "<url>": `."""


class _NoResponse(_HopError):
    """The connection ended before any response byte: the case Go may retry on a fresh connection."""

    def __init__(self, text: str, *, nothing_written: bool):
        super().__init__(text)
        self.nothing_written = nothing_written


# -- URLs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    url: str  # as given (for BackendResponse.url and errors)
    scheme: str
    userinfo: str  # raw `user:pass` or ""
    hostport: str  # the URL's host[:port] as written: Go's Host header and its same-host test
    host: str  # without brackets or port
    port: int
    path: str  # request-target: escaped path + query, no fragment
    key: tuple[str, str, int]  # pool key

    @property
    def referer(self) -> str:
        """refererForURL: the URL without its userinfo."""
        if not self.userinfo:
            return self.url
        return self.url.replace(self.userinfo + "@", "", 1)


@functools.lru_cache(maxsize=1024)
def _parse_url(url: str) -> _Target:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    scheme = scheme.lower()
    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if 0 <= index < end:
            end = index
    authority, tail = rest[:end], rest[end:]
    userinfo, _, hostport = authority.rpartition("@")
    host, port = _split_host_port(url, hostport, _DEFAULT_PORTS.get(scheme, 0))
    path, question, query = tail.partition("#")[0].partition("?")
    request_target = _wire_path(path or "/")
    if question:
        request_target += "?" + (query if _QUERY_AS_IS.fullmatch(query) else quote(query, safe=_QUERY_SAFE))
    return _Target(url, scheme, userinfo, hostport, host, port, request_target, (scheme, host.lower(), port))


def _split_host_port(url: str, hostport: str, default_port: int) -> tuple[str, int]:
    if hostport.startswith("["):
        close = hostport.find("]")
        host, port_text = hostport[1:close], hostport[close + 1 :].removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()):
        raise BackendError(f'parse {_go_quote(url)}: invalid port ":{port_text}" after host')  # url.Parse
    return host, int(port_text)


def _wire_path(path: str) -> str:
    """url.URL.EscapedPath: keep a validly encoded path, else escape the decoded path for encodePath."""
    if _PATH_AS_IS.fullmatch(path):
        return path
    return quote(unquote_to_bytes(path), safe=_PATH_SAFE)


def _resolve_location(req: BackendRequest, current: _Target, location: str) -> str:
    if _CONTROL_CHARS.search(location):
        raise BackendError(
            f"{_go_op(req.method)} {_go_quote(_masked(current))}: failed to parse Location header "
            f"{_go_quote(location)}: parse {_go_quote(location)}: net/url: invalid control character in URL"
        )
    return urljoin(current.url, location)  # URL.Parse: RFC 3986 reference resolution


def _masked(target: _Target) -> str:
    """client.go stripPassword: `user:***@` in error messages."""
    user, colon, _ = target.userinfo.partition(":")
    if not colon:
        return target.url
    return target.url.replace(target.userinfo + "@", f"{user}:***@", 1)


def _is_domain_or_subdomain(sub: str, parent: str) -> bool:
    """client.go isDomainOrSubdomain, on hostnames without ports."""
    if sub == parent:
        return True
    if ":" in sub or "%" in sub:
        return False
    return sub.endswith(parent) and len(sub) > len(parent) and sub[-len(parent) - 1] == "."


# -- request headers ---------------------------------------------------------------------------------------


def _wire_headers(method: str, target: _Target, headers, body: bytes, disable_compression: bool):
    """The header list in Go's write order, whether the transport added gzip, and the body to send."""
    user_agent = None
    declared_lengths = []
    wants_gzip = not disable_compression and method != "HEAD"
    has_authorization = False
    rest = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in _CLIENT_OWNED:
            if lowered == "content-length":
                declared_lengths.append(value)
            elif lowered == "user-agent" and user_agent is None:
                user_agent = value
            continue
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")  # Header.write: headerNewlineToSpace
        value = value.strip(" \t")
        if lowered == "accept-encoding" or lowered == "range":
            # transport.go adds gzip only without the caller's Accept-Encoding, and never for a Range request.
            wants_gzip = wants_gzip and not value
        elif lowered == "authorization":
            has_authorization = True
        rest.append((name, value))
    wire = [("Host", target.hostport)]
    if user_agent is None:
        wire.append(("User-Agent", GO_USER_AGENT))
    elif user_agent:  # a present but empty User-Agent suppresses the header in Go
        wire.append(("User-Agent", user_agent.strip(" \t")))
    framing, body = _framing(method, declared_lengths, body)
    if framing is not None:
        wire.append(framing)
    wire += rest
    if target.userinfo and not has_authorization:
        wire.append(("Authorization", _basic_auth(target.userinfo)))  # Client.send: URL userinfo
    if wants_gzip:
        wire.append(("Accept-Encoding", "gzip"))
    return wire, wants_gzip, body


def _framing(method: str, declared_lengths: list[str], body: bytes):
    """Go's transferWriter with lura's ContentLength rule (only a single, numeric Content-Length counts)."""
    if not body:
        return (("Content-Length", "0") if method in _LENGTH_WHEN_EMPTY else None), body
    declared = declared_lengths[0].strip() if len(declared_lengths) == 1 else ""
    if not (declared.isascii() and declared.isdigit()) or int(declared) == 0:
        return ("Transfer-Encoding", "chunked"), body  # unknown length: Go probes the body and goes chunked
    length = int(declared)
    if length > len(body):
        raise _HopError(f"http: ContentLength={length} with Body length {len(body)}")
    return ("Content-Length", str(length)), body[:length] if length < len(body) else body


def _basic_auth(userinfo: str) -> str:
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}".encode("utf-8")
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def _h11_request(method: str, path: str, wire_headers) -> h11.Request:
    try:
        return h11.Request(
            method=method.encode("ascii"),
            target=path.encode("ascii"),
            headers=[(n.encode("ascii"), v.encode("utf-8", "surrogateescape")) for n, v in wire_headers],
        )
    except (h11.LocalProtocolError, UnicodeEncodeError) as err:
        raise _HopError(f"net/http: invalid header field or method ({err})") from None


class _FastRequest:
    """A request head serialized here, byte for byte what h11 would write for the same request."""

    __slots__ = ("method", "path", "wire_headers", "head", "chunked", "read_fast")

    def __init__(self, method: str, path: str, wire_headers, head: bytes, chunked: bool, read_fast: bool):
        self.method = method
        self.path = path
        self.wire_headers = wire_headers
        self.head = head
        self.chunked = chunked
        self.read_fast = read_fast  # False: the response is read by h11 (HEAD, CONNECT, Upgrade, Connection)

    def wire(self, body: bytes):
        """What goes on the wire for a non-empty body."""
        if self.chunked:  # h11's ChunkedWriter: one chunk, then the last chunk without trailers
            return self.head, b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n"
        return self.head, body

    def h11_event(self) -> h11.Request:
        return _h11_request(self.method, self.path, self.wire_headers)


def _fast_request(method: str, path: str, wire_headers, body: bytes) -> _FastRequest | None:
    """The request for the fast path, or None when h11 must build it (and produce its error, if any).

    Accepts only what h11.Request accepts and writes it the way h11's write_request does: request line,
    the single Host first (it is first in wire_headers), the other headers in order with their casing, and a
    framing header that agrees with the body.
    """
    if method not in _FAST_METHODS:
        if not _FAST_TOKEN.fullmatch(method) or len(_FAST_METHODS) >= 64:
            return None
        _FAST_METHODS.add(method)
    if not _FAST_TARGET.fullmatch(path):
        return None
    lines = [f"{method} {path} HTTP/1.1\r\n"]
    values = []
    hosts = 0
    length = None
    chunked = False
    read_fast = method != "HEAD" and method != "CONNECT"
    for name, value in wire_headers:
        kind = _FAST_NAME_KINDS.get(name)
        if kind is None:
            if not _FAST_TOKEN.fullmatch(name) or len(_FAST_NAME_KINDS) >= 4096:
                return None
            kind = _FAST_NAME_KINDS[name] = _SPECIAL_NAMES.get(name.lower(), _PLAIN)
        if kind:
            if kind == _HOST:
                if len(lines) != 1:
                    return None  # h11 writes Host first; only take the order it already has
                hosts += 1
            elif kind == _LENGTH:
                if length is not None or not (value.isascii() and value.isdigit()):
                    return None
                length = int(value)
            elif kind == _CHUNKED:
                if chunked or value != "chunked":
                    return None
                chunked = True
            else:
                read_fast = False
        lines.append(f"{name}: {value}\r\n")
        values.append(value)
    joined = "\n".join(values)
    if hosts != 1 or joined.count("\n") != len(values) - 1 or not _FAST_VALUES.fullmatch(joined):
        return None  # (a "\n" inside a value would pass the regex as a separator: counted instead)
    if chunked:
        if length is not None or not body:
            return None
    elif len(body) != (length or 0):
        return None  # h11's ContentLengthWriter would refuse it
    lines.append("\r\n")
    try:
        head = "".join(lines).encode("utf-8", "surrogateescape")  # as _h11_request encodes values
    except UnicodeEncodeError:
        return None
    return _FastRequest(method, path, wire_headers, head, chunked, read_fast)


def _redirect_headers(initial_headers, strip_sensitive: bool, previous: _Target, target: _Target):
    """makeHeadersCopier + refererForURL: the initial request's headers, then Referer unless the caller set one."""
    if strip_sensitive:
        headers = [h for h in initial_headers if h[0].lower() not in _SENSITIVE_ON_REDIRECT]
    else:
        headers = list(initial_headers)
    if _first_header(headers, "referer"):
        return headers
    if previous.scheme == "https" and target.scheme == "http":
        return headers  # RFC 7231 §5.5.2: no Referer from a secure page to an insecure one
    headers.append(("Referer", previous.referer))
    return headers


def _is_replayable(method: str, headers, body: bytes) -> bool:
    """Request.isReplayable: no body to re-send, and an idempotent method or an idempotency key."""
    if body:
        return False
    if method in _REPLAYABLE_METHODS:
        return True
    return any(n.lower() in ("idempotency-key", "x-idempotency-key") for n, _ in headers)


# -- responses ---------------------------------------------------------------------------------------------


def _redirect_location(resp: BackendResponse, req: BackendRequest) -> str | None:
    """The Location to follow, or None when Go's Client.Do returns this response as it is."""
    if resp.status not in _REDIRECT_STATUSES:
        return None
    if resp.status >= 307 and req.body and not req.replay_body_on_redirect:
        return None  # redirectBehavior: a 307/308 needs the body again but GetBody is nil -> return the response
    return _first_header(resp.headers, "location") or None  # a 3xx without Location is returned as is


def _first_header(headers, lowered_name: str) -> str:
    for name, value in headers:
        if name.lower() == lowered_name:
            return value
    return ""


_canonical_names: dict[bytes, str] = {}


def _canonical(raw_name: bytes) -> str:
    """textproto.CanonicalMIMEHeaderKey: Go hands response header names over in this form."""
    name = _canonical_names.get(raw_name)
    if name is None:
        text = raw_name.decode("ascii")
        name = "-".join(part[:1].upper() + part[1:].lower() for part in text.split("-"))
        if len(_canonical_names) < 4096:
            _canonical_names[raw_name] = name
    return name


def _response_headers(raw_items) -> tuple[list[tuple[str, str]], bool]:
    """(headers without Transfer-Encoding, chunked?) from raw (name, value) pairs; values decoded like mitmproxy's."""
    headers = []
    chunked = False
    for raw_name, raw_value in raw_items:
        name = _canonical(raw_name)
        if name == "Transfer-Encoding":
            chunked = True  # Go keeps it in Response.TransferEncoding, not in Header
            continue
        headers.append((name, raw_value.decode("utf-8", "surrogateescape")))
    return headers, chunked


def _simple_head(buf: bytearray, blank: int):
    """(status, reason, headers, Content-Length) of a response head the fast path may read, else None.

    `blank` is where h11's blank-line search matched (the "\n" before the final "\r\n"). The head must use
    CRLF throughout, so it ends where h11's head ends, and every line must match h11's own regexes.
    """
    if blank < 1 or buf[blank - 1] != 13 or buf[blank + 1] != 13:
        return None
    lines = bytes(buf[: blank - 1]).split(b"\r\n")
    status_line = _FAST_STATUS.fullmatch(lines[0])
    if status_line is None:
        return None
    status = int(status_line[1])
    if status == 204 or status == 304:
        return None  # no body whatever the headers say: h11 knows these
    headers = []
    length = None
    for index in range(1, len(lines)):
        field = _FAST_FIELD.fullmatch(lines[index])
        if field is None:
            return None  # also obs-fold continuation lines and stray CR/LF: h11 decides
        raw_name, raw_value = field.groups()
        name = _canonical(raw_name)
        if name == "Content-Length":
            if length is not None or not raw_value.isdigit() or len(raw_value) > 18:
                return None
            length = int(raw_value)
        elif name == "Transfer-Encoding":
            return None
        elif name == "Connection" and raw_value.lower() != b"keep-alive":
            return None  # close (or anything else) changes h11's keep-alive state: h11 decides
        headers.append((name, raw_value.decode("utf-8", "surrogateescape")))  # as _response_headers
    if length is None:
        return None  # read-until-close framing
    return status, status_line[2].decode("latin-1"), headers, length


def _gunzip(data: bytes, max_body: int) -> bytes:
    """Go's gzip.Reader in multistream mode: every member must be valid; an empty body reads as empty."""
    out = []
    size = 0
    while data:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = decoder.decompress(data, max_body + 1 - size)
        except zlib.error as err:
            raise BackendError(_gzip_error_text(err, bool(out))) from None
        size += len(chunk)
        if size > max_body or decoder.unconsumed_tail:
            raise BackendError(_too_large(max_body) + " (after gzip decoding)")
        if not decoder.eof:
            raise BackendError("unexpected EOF")
        out.append(chunk)
        data = decoder.unused_data
    return b"".join(out)


def _gzip_error_text(err: zlib.error, after_member: bool) -> str:
    text = str(err)
    if "incorrect header check" in text or "unknown compression method" in text or after_member:
        return "gzip: invalid header"
    if "incorrect data check" in text or "incorrect length check" in text:
        return "gzip: invalid checksum"
    return "flate: corrupt input"


def _too_large(max_body: int) -> str:
    return f"response body too large: more than max_body_bytes={max_body} bytes"


# -- dialing -----------------------------------------------------------------------------------------------


async def _dial(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """net.Dialer.DialContext: resolve, then try each address in order; the first address's error is reported."""
    attempted = None
    first_error = None
    try:
        async with asyncio.timeout(DIAL_TIMEOUT):
            for family, kind, proto, address in await _resolve(loop, host, port):
                attempted = address
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, address)
                    return sock
                except OSError as err:
                    sock.close()
                    first_error = first_error or (address, err)
                except BaseException:
                    sock.close()
                    raise
    except TimeoutError:
        where = f"tcp {_format_addr(attempted)}" if attempted else f"tcp: lookup {host}"
        raise _HopError(f"dial {where}: i/o timeout") from None
    if first_error is None:
        raise _HopError(f"dial tcp: lookup {host}: no such host")
    address, err = first_error
    raise _HopError(f"dial tcp {_format_addr(address)}: connect: {_os_error_text(err)}")


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int):
    family = _ip_family(host)
    if family is not None:
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))]
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        if err.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise _HopError(f"dial tcp: lookup {host}: no such host") from None
        raise _HopError(f"dial tcp: lookup {host}: {_lower_first(err.strerror or str(err))}") from None
    return [(family, kind, proto, address) for family, kind, proto, _, address in infos]


def _ip_family(host: str):
    try:
        if ":" in host:
            socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            return socket.AF_INET6
        if host[:1].isdigit():
            socket.inet_pton(socket.AF_INET, host)
            return socket.AF_INET
    except OSError:
        pass
    return None


def _format_addr(address) -> str:
    if not address:
        return "?"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _os_error_text(err: OSError) -> str:
    return _strerror(err.errno) if err.errno else (str(err) or "EOF")


def _strerror(errno: int) -> str:
    return _lower_first(os.strerror(errno))  # Go's syscall texts are libc's, lower-cased


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _tls_error_text(err: Exception) -> str:
    """crypto/tls and crypto/x509 wording for the usual handshake failures."""
    if isinstance(err, ssl.SSLCertVerificationError):
        message = (err.verify_message or "").lower()
        if "self-signed" in message or "self signed" in message or "issuer" in message:
            reason = "x509: certificate signed by unknown authority"
        elif "expired" in message or "not yet valid" in message:
            reason = "x509: certificate has expired or is not yet valid"
        elif "hostname mismatch" in message or "ip address mismatch" in message:
            reason = f"x509: certificate is not valid for the requested name ({err.verify_message})"
        else:
            reason = f"x509: {err.verify_message or err}"
        return f"tls: failed to verify certificate: {reason}"
    if isinstance(err, ssl.SSLEOFError):
        return "EOF"
    reason = getattr(err, "reason", None) or ""
    if reason == "WRONG_VERSION_NUMBER":
        return "tls: first record does not look like a TLS handshake"
    if "ALERT_" in reason:
        return "remote error: tls: " + reason.split("ALERT_", 1)[1].replace("_", " ").lower()
    return f"tls: {reason.replace('_', ' ').lower() or err}"


@functools.cache
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per verification mode for the whole process (contexts are shareable and slow to build)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only
    return context


# -- Go's error decoration ---------------------------------------------------------------------------------


def _go_op(method: str) -> str:
    """client.go urlErrorOp: `Get`, `Post`, ... from the initial request's method."""
    if not method:
        return "Get"
    return method[:1] + method[1:].lower() if method.isascii() else method


def _go_quote(text: str) -> str:
    """strconv.Quote for the texts we quote (URLs): backslash and quote escaped, control bytes as \\x.."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if not escaped.isprintable():
        escaped = "".join(c if c.isprintable() else _go_escape(c) for c in escaped)
    return f'"{escaped}"'


def _go_escape(char: str) -> str:
    simple = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    if char in simple:
        return simple[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"
