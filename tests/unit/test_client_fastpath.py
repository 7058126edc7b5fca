"""The client's fast path (no h11 for simple exchanges) against its h11 path: same bytes out, same results in.

Every comparison runs the same exchange three ways:
* "fast": as shipped (fast write, fast read when the response is simple, else a hand-over to h11);
* "handover": fast write, but every response handed over to h11 (`_simple_head` forced to None);
* "h11": the whole exchange through h11 (`_fast_request` forced to None), the reference.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct

import h11
import pytest

from krakend_mitm import client as client_module
from krakend_mitm.client import BackendRequest, HttpClient
from krakend_mitm.errors import BackendError

MODES = ("fast", "handover", "h11")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def use_mode(monkeypatch, mode: str) -> list[str]:
    """Forces `mode`; returns a list that records the request-target of each hand-over to h11."""
    handovers: list[str] = []
    original = client_module._Connection._hand_over_to_h11

    def counting(self, request, body):
        handovers.append(request.path)
        return original(self, request, body)

    monkeypatch.setattr(client_module._Connection, "_hand_over_to_h11", counting)
    if mode == "handover":
        monkeypatch.setattr(client_module, "_simple_head", lambda buf, blank: None)
    elif mode == "h11":
        monkeypatch.setattr(client_module, "_fast_request", lambda *args: None)
    return handovers


# -- a raw backend -----------------------------------------------------------------------------------------

PAUSE = object()  # in a script: drain, then wait a little before the next piece
CLOSE = object()  # in a script: close the connection (FIN)
RESET = object()  # in a script: reset the connection (RST)
SIMPLE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawBackend:
    """Answers `/case` with a script of raw pieces, anything else with SIMPLE; records raw requests."""

    def __init__(self, script):
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> RawBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                raw = head + await self._read_body(head, reader)
                self.requests.append(raw)
                head_only = head.startswith(b"HEAD ")
                if b" /case" not in head.partition(b"\r\n")[0]:
                    writer.write(SIMPLE.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" if head_only else SIMPLE)
                    await writer.drain()
                    continue
                for piece in self.script:
                    if piece is PAUSE:
                        await writer.drain()
                        await asyncio.sleep(0.02)
                    elif piece is CLOSE:
                        await writer.drain()
                        return
                    elif piece is RESET:
                        await writer.drain()
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        return
                    elif head_only:
                        writer.write(piece.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
                    else:
                        writer.write(piece)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _read_body(head: bytes, reader: asyncio.StreamReader) -> bytes:
        lowered = head.lower()
        if b"\r\ntransfer-encoding: chunked" in lowered:
            return await reader.readuntil(b"\r\n0\r\n\r\n")
        match = re.search(rb"\r\ncontent-length: *([0-9]+)", lowered)
        return await reader.readexactly(int(match[1])) if match else b""


async def exchange(script, request: BackendRequest | None = None, **options):
    """(outcome of /case, outcome of a following /ok, connections used, raw requests seen) for one client."""
    async with RawBackend(script) as backend:
        client = HttpClient(**options)
        first = await outcome(client, request or BackendRequest("GET", backend.url("/case"), []), backend)
        second = await outcome(client, BackendRequest("GET", backend.url("/ok"), []), backend)
        await client.aclose()
        port = str(backend.port).encode()
        return first, second, backend.connections, [r.replace(port, b"PORT") for r in backend.requests]


async def outcome(client: HttpClient, request: BackendRequest, backend: RawBackend):
    request.url = request.url.replace("{port}", str(backend.port))
    port = str(backend.port)
    try:
        resp = await client.send(request, follow_redirects=False)
    except BackendError as err:
        # Ports differ between runs: the backend's, and our ephemeral one in read errors.
        text = re.sub(rf"127\.0\.0\.1:(?!{port}\b)\d+", "127.0.0.1:*", str(err))
        return ("error", text.replace(port, "PORT"))
    return (resp.status, resp.reason, resp.headers, resp.body, resp.url.replace(port, "PORT"), resp.http_version)


# -- responses ---------------------------------------------------------------------------------------------

# name, script, read by the fast path?
RESPONSES = [
    ("simple", [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"], True),
    ("casing and duplicates", [b"HTTP/1.1 200 OK\r\nx-lower-case: a\r\nCONTENT-length: 3\r\nSet-Cookie: a=1\r\n"
                               b"set-cookie: b=2\r\nX-ID-Token: t\r\n\r\nabc"], True),
    ("whitespace around values", [b"HTTP/1.1 200 OK\r\nX-A:   v  w \t\r\nX-B:v\r\nX-Empty:\r\nX-Sp: \r\n"
                                  b"Content-Length:  1 \r\n\r\nx"], True),
    ("non-ASCII values", [b"HTTP/1.1 200 OK\r\nX-Utf8: \xc3\xa9t\xc3\xa9\r\nX-Raw: \xff\xfe\x80\r\n"
                          b"Content-Length: 0\r\n\r\n"], True),
    ("reason phrases", [b"HTTP/1.1 404 Not  Found \xe9\t\r\nContent-Length: 4\r\n\r\nnope"], True),
    ("empty reason", [b"HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n"], True),
    ("599", [b"HTTP/1.1 599 Whatever\r\nContent-Length: 1\r\n\r\nz"], True),
    ("3xx not followed", [b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"], True),
    ("keep-alive header", [b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n"
                           b"Content-Length: 2\r\n\r\nka"], True),
    ("body in pieces", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", PAUSE, b"defg", PAUSE, b"hij"], True),
    ("head in pieces", [b"HTTP/1.1 2", PAUSE, b"00 OK\r\nContent-Le", PAUSE, b"ngth: 3\r", PAUSE, b"\n\r", PAUSE,
                        b"\nabc"], True),
    ("big body", [b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n", b"y" * 100000, PAUSE, b"z" * 200000], True),
    ("bytes beyond the body", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"], True),
    ("closed after the response", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", CLOSE], True),
    ("truncated body", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", CLOSE], True),
    ("truncated body, later", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", PAUSE, b"de", PAUSE, CLOSE],
     True),
    ("reset mid-body", [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", PAUSE, RESET], True),
    # everything below is h11's to read
    ("no reason", [b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"], False),
    ("connection close", [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"], False),
    ("connection upgrade", [b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x\r\nContent-Length: 0\r\n\r\n"], False),
    ("chunked", [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"
                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"], False),
    ("until close", [b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil close", CLOSE], False),
    ("HTTP/1.0", [b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold"], False),
    ("204", [b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"], False),
    ("304", [b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"], False),
    ("1xx first", [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], False),
    ("600", [b"HTTP/1.1 600 Odd\r\nContent-Length: 1\r\n\r\nz"], False),
    ("two equal lengths", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"], False),
    ("two different lengths", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"], False),
    ("list length", [b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"], False),
    ("signed length", [b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"], False),
    ("huge length", [b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok", CLOSE], False),
    ("length above max_body", [b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n" + b"x" * 101], False),
    ("obs-fold", [b"HTTP/1.1 200 OK\r\nX-A: a\r\n  b\r\nContent-Length: 2\r\n\r\nok"], False),
    ("bare LF head", [b"HTTP/1.1 200 OK\nX-A: 1\nContent-Length: 2\n\nok"], False),
    ("mixed line ends", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok"], False),
    ("CR in a value", [b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok"], False),
    ("NUL in a value", [b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"], False),
    ("space before colon", [b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 2\r\n\r\nok"], False),
    ("leading CRLF", [b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], False),
    ("garbage", [b"garbage\r\n\r\n", CLOSE], False),
    ("garbage, no blank line", [b" garbage"], False),
    ("EOF without a byte", [CLOSE], False),
    ("truncated head", [b"HTTP/1.1 200 OK\r\nContent-Len", CLOSE], False),
    ("switching protocols", [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"],
     False),
    ("head above the fast limit", [b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70000 + b"\r\nContent-Length: 2\r\n\r\nok"],
     False),
]


@pytest.mark.parametrize("name, script, fast", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_responses_match_the_h11_path(monkeypatch, name, script, fast):
    results = {}
    for mode in MODES:
        with monkeypatch.context() as patch:
            handovers = use_mode(patch, mode)
            results[mode] = run(exchange(script, max_body_bytes=1_000_000 if "length above" not in name else 100))
            if mode == "fast":
                # /case is read fast only when its response is simple. (/ok may be handed over: sent on a
                # pooled connection the server has just closed, it ends in h11's no-response error and a retry.)
                assert handovers.count("/case") == (0 if fast else 1)
    assert results["fast"] == results["h11"]
    assert results["handover"] == results["h11"]


def test_response_table_outcomes_are_the_expected_ones(monkeypatch):
    """A few anchors, so the equality above is not between two equally wrong answers."""
    first, second, connections, _ = run(exchange(RESPONSES[1][1]))
    assert first == (200, "OK", [("X-Lower-Case", "a"), ("Content-Length", "3"), ("Set-Cookie", "a=1"),
                                 ("Set-Cookie", "b=2"), ("X-Id-Token", "t")], b"abc", first[4], "HTTP/1.1")
    assert second[3] == b"ok" and connections == 1  # keep-alive reuse after a fast response
    assert run(exchange(RESPONSES[2][1]))[0][2] == [
        ("X-A", "v  w"), ("X-B", "v"), ("X-Empty", ""), ("X-Sp", ""), ("Content-Length", "1")]
    assert run(exchange(RESPONSES[3][1]))[0][2][:2] == [("X-Utf8", "été"), ("X-Raw", "\udcff\udcfe\udc80")]
    first, second, connections, _ = run(exchange(dict((r[0], r[1]) for r in RESPONSES)["body in pieces"]))
    assert first[3] == b"abcdefghij" and connections == 1
    for name, connections_used in [("bytes beyond the body", 2), ("closed after the response", 2)]:
        first, second, connections, _ = run(exchange(dict((r[0], r[1]) for r in RESPONSES)[name]))
        assert first[3] == b"ok" and second[3] == b"ok" and connections == connections_used
    first, *_ = run(exchange(dict((r[0], r[1]) for r in RESPONSES)["truncated body, later"]))
    assert first == ("error", "unexpected EOF")
    first, *_ = run(exchange(dict((r[0], r[1]) for r in RESPONSES)["reset mid-body"]))
    assert first == ("error", "read tcp 127.0.0.1:*->127.0.0.1:PORT: read: connection reset by peer")


def test_many_requests_share_one_connection():
    async def scenario():
        async with RawBackend([SIMPLE]) as backend:
            client = HttpClient()
            for _ in range(20):
                assert (await client.send(BackendRequest("GET", backend.url("/ok"), []))).body == b"ok"
            await client.aclose()
            assert backend.connections == 1

    run(scenario())


# -- requests ----------------------------------------------------------------------------------------------

REQUESTS = [
    ("GET", [], b""),
    ("GET", [("User-Agent", "KrakenD Version 2.13.0"), ("X-Forwarded-For", "1.2.3.4")], b""),
    ("HEAD", [("Accept", "*/*")], b""),
    ("DELETE", [], b""),
    ("POST", [], b""),
    ("POST", [("Content-Length", "5"), ("Content-Type", "application/json")], b"hello"),
    ("POST", [("Content-Length", "3")], b"hello"),
    ("PUT", [], b"chunk me"),
    ("PATCH", [("content-length", "0")], b"x"),
    ("GET", [("Host", "evil"), ("Connection", "close"), ("Transfer-Encoding", "chunked")], b""),
    ("GET", [("X-Sp", " interior  spaces\tand tab "), ("X-Empty", ""), ("x-lower", "v")], b""),
    ("GET", [("X-Utf8", "été ☃"), ("X-Raw", "\udcff\udc80")], b""),
    ("GET", [("X-Ctl", "a\x01b"), ("X-Del", "a\x7fb")], b""),  # h11 writes these: via h11 on both sides
    ("GET", [("Upgrade", "websocket"), ("Accept-Encoding", "br")], b""),
    ("OPTIONS", [("Authorization", "Bearer x"), ("Range", "bytes=0-")], b""),
    ("GET", [("Expect", "100-continue")], b""),
    ("PROPFIND", [("Depth", "1")], b"<x/>"),
]


@pytest.mark.parametrize("method, headers, body", REQUESTS)
def test_requests_on_the_wire_match_the_h11_path(monkeypatch, method, headers, body):
    seen = {}
    for mode in ("fast", "h11"):
        with monkeypatch.context() as patch:
            use_mode(patch, mode)
            request = BackendRequest(method, "http://u:p@127.0.0.1:{port}/case/a%20b?x=1&y=%zz", list(headers), body)
            first, second, connections, raw = run(exchange([SIMPLE], request))
            seen[mode] = (first, second, connections, raw)
    assert seen["fast"] == seen["h11"]
    assert seen["fast"][0][3] == (b"" if method == "HEAD" else b"ok") and seen["fast"][2] == 1


def h11_bytes(method, path, wire_headers, body) -> bytes:
    conn = h11.Connection(h11.CLIENT)
    parts = [conn.send(client_module._h11_request(method, path, wire_headers))]
    if body:
        parts += conn.send_with_data_passthrough(h11.Data(data=body))
    parts.append(conn.send(h11.EndOfMessage()))
    return b"".join(parts)


def fast_bytes(request, body) -> bytes:
    return b"".join(request.wire(body)) if body else request.head


@pytest.mark.parametrize("method, headers, body", REQUESTS)
def test_request_bytes_are_h11s(method, headers, body):
    target = client_module._parse_url("http://u:p@backend:8080/a%20b?x=1&y=%zz")
    wire, _, body = client_module._wire_headers(method, target, headers, body, False)
    request = client_module._fast_request(method, target.path, wire, body)
    if any("\x01" in v for _, v in headers):
        assert request is None
        return
    assert request is not None
    assert fast_bytes(request, body) == h11_bytes(method, target.path, wire, body)
    assert request.read_fast == (method != "HEAD" and not any(n == "Upgrade" for n, _ in headers))


PIECES = ["a", "Z9", " ", "\t", "\r", "\n", "\r\n", "\x00", "\x01", "\x0b", "\x7f", "é", "\udcff", "\ud800", ":",
          ",", "chunked", "5", "-"]
NAMES = ["X-A", "x-b", "X A", "X:A", "Ä", "", "X\r\nY", "Host", "host", "Content-Length", "Transfer-Encoding",
         "Connection", "Upgrade", "Accept-Encoding", "!#$%&'*+.^_`|~"]


def test_fast_request_accepts_only_what_h11_writes_the_same():
    """Random requests: whenever the fast path takes one, h11 accepts it and writes the same bytes."""
    rng = random.Random(7)
    taken = refused = 0
    for _ in range(4000):
        method = rng.choice(["GET", "POST", "HEAD", "CONNECT", "PUT", "G T", "", "GÉT"][: rng.choice([5, 8])])
        path = rng.choice(["/", "/a?b=c", "*", "/a b", "/\x7f", "/é", ""][: rng.choice([3, 7])])
        wire = [("Host", rng.choice(["h:1", "", "h 1", "h\r\n"][: rng.choice([2, 4])]))]
        for _ in range(rng.randrange(4)):
            name = rng.choice(NAMES[: rng.choice([2, len(NAMES)])])
            pieces = PIECES[: rng.choice([4, len(PIECES)])]
            value = "".join(rng.choice(pieces) for _ in range(rng.randrange(4)))
            wire.insert(rng.randrange(len(wire) + 1) if rng.random() < 0.1 else len(wire), (name, value))
        body = rng.choice([b"", b"hello", b"5"])
        request = client_module._fast_request(method, path, wire, body)
        try:
            expected = h11_bytes(method, path, wire, body)
        except (client_module._HopError, h11.LocalProtocolError):
            expected = None
        if request is None:
            refused += 1
            continue
        taken += 1
        assert expected is not None, (method, path, wire, body)
        assert fast_bytes(request, body) == expected, (method, path, wire, body)
    assert taken > 200 and refused > 200


def test_invalid_headers_keep_the_h11_error_text():
    async def scenario():
        async with RawBackend([SIMPLE]) as backend:
            client = HttpClient()
            with pytest.raises(BackendError) as caught:
                await client.send(BackendRequest("GET", backend.url("/case"), [("User-Agent", "a\r\nb")]))
            assert str(caught.value).startswith(
                f'Get "{backend.url("/case")}": net/http: invalid header field or method (Illegal header value')
            with pytest.raises(BackendError, match=r"net/http: invalid header field or method \(.*surrogates"):
                await client.send(BackendRequest("GET", backend.url("/case"), [("X-A", "\ud800")]))
            with pytest.raises(BackendError, match=r"invalid header field or method \(Illegal header name"):
                await client.send(BackendRequest("GET", backend.url("/case"), [("X A", "v")]))
            assert backend.connections == 0  # refused before dialing, as before

    run(scenario())
