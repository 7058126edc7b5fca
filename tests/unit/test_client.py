"""krakend_mitm.client against real local servers on 127.0.0.1 (asyncio, port 0, raw HTTP/1.1 on the wire)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

import pytest

from krakend_mitm.client import BackendRequest, BackendResponse, HttpClient
from krakend_mitm.errors import BackendError

GZIPPED = gzip.compress(b'{"zipped":true}')
CLOSE = object()  # a route's answer: close the connection without (more) response


# -- the test backend --------------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the backend read it off the wire."""

    method: str
    target: str
    headers: list[tuple[str, str]]  # in wire order
    body: bytes
    conn: int

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def reply(status: int = 200, body: bytes = b"", headers=(), reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{n}: {v}" for n, v in headers)]
    if not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_request(reader: asyncio.StreamReader, conn: int) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, _ = request_line.split(" ")
    headers = [(n, v.strip()) for n, v in (line.split(":", 1) for line in lines)]
    seen = Seen(method, target, headers, b"", conn)
    if (seen.get("transfer-encoding") or "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            seen.body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
    elif seen.get("content-length"):
        seen.body = await reader.readexactly(int(seen.get("content-length")))
    return seen


class Backend:
    """Routes by the last path segment; records every request and connection."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.seen: list[Seen] = []
        self.connections = 0
        self.hang_sent = asyncio.Event()
        self.hang_closed = asyncio.Event()

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _serve(self, reader, writer) -> None:
        conn = self.connections
        self.connections += 1
        served = 0
        try:
            while (seen := await read_request(reader, conn)) is not None:
                self.seen.append(seen)
                served += 1
                if await self._answer(seen, served, reader, writer) is CLOSE:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _answer(self, seen: Seen, served_on_conn: int, reader, writer):
        if seen.method == "HEAD":
            writer = HeadWriter(writer)
        route = seen.path.rsplit("/", 1)[-1]
        query = {k: v[0] for k, v in parse_qs(seen.target.partition("?")[2]).items()}
        if route == "redirect":
            writer.write(reply(int(query["code"]), headers=[("Location", query["to"])], reason="Redirect"))
        elif route == "chain":
            n = int(query["n"])
            writer.write(reply(302, headers=[("Location", f"/chain?n={n - 1}")]) if n else reply(200, b"end"))
        elif route == "noloc":
            writer.write(reply(302, b"no location"))
        elif route == "gzip":
            writer.write(reply(200, GZIPPED, [("Content-Encoding", "gzip"), ("Content-Type", "application/json")]))
        elif route == "bomb":
            writer.write(reply(200, gzip.compress(b"0" * 1000), [("Content-Encoding", "gzip")]))
        elif route == "big":
            writer.write(reply(200, b"x" * 100))
        elif route == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nx-lower-case: v\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        elif route == "continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + reply(200, b"after"))
        elif route == "http10":
            writer.write(b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nold body")
            return CLOSE
        elif route == "switch":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
        elif route == "conn-close":
            writer.write(reply(200, b"bye", [("Connection", "close")]))
            return CLOSE
        elif route == "close-after":  # keep-alive response, then the server closes the idle connection
            writer.write(reply(200, b"closing"))
            await writer.drain()
            return CLOSE
        elif route == "drop-reused":  # answers the first request of a connection, drops the next one unanswered
            if served_on_conn > 1:
                return CLOSE
            writer.write(reply(200, b"first"))
        elif route == "hang":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            self.hang_sent.set()
            try:
                await reader.read()
            except ConnectionError:
                pass
            self.hang_closed.set()
            return CLOSE
        elif route == "eof":
            return CLOSE
        elif route == "truncated":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            return CLOSE
        elif route == "garbage":
            writer.write(b"garbage\r\n\r\n")
            return CLOSE
        else:
            writer.write(reply(200, route.encode()))
        await writer.drain()


class HeadWriter:
    """Writes only the header block of a reply: the answer to a HEAD request."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")

    async def drain(self) -> None:
        await self.writer.drain()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def get(url: str, headers=(), **kwargs) -> BackendRequest:
    return BackendRequest("GET", url, list(headers), **kwargs)


@pytest.fixture(scope="module")
def tls_server_context(tmp_path_factory) -> ssl.SSLContext:
    """A self-signed certificate for localhost / 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


# -- request framing and headers ---------------------------------------------------------------------------


FRAMING_CASES = [
    # method, caller headers, body, expected Content-Length, expected Transfer-Encoding
    ("GET", [], b"", None, None),
    ("DELETE", [], b"", None, None),
    ("HEAD", [], b"", None, None),
    ("POST", [], b"", "0", None),
    ("PUT", [], b"", "0", None),
    ("PATCH", [], b"", "0", None),
    ("POST", [("Content-Length", "0")], b"", "0", None),
    ("GET", [("Content-Length", "0")], b"", None, None),
    ("POST", [], b"hello", None, "chunked"),
    ("DELETE", [], b"hello", None, "chunked"),
    ("POST", [("Content-Length", "5")], b"hello", "5", None),
    ("PUT", [("content-length", "5")], b"hello", "5", None),
    ("PUT", [("Content-Length", "0")], b"hello", None, "chunked"),  # a zero length with a body: Go goes chunked
    ("POST", [("Content-Length", "3")], b"hello", "3", None),  # Go sends only the declared bytes
    ("POST", [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive"), ("Host", "evil")], b"x", None, "chunked"),
]


@pytest.mark.parametrize("method, headers, body, length, encoding", FRAMING_CASES)
def test_request_framing(method, headers, body, length, encoding):
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            await client.send(BackendRequest(method, backend.url("/ok"), headers, body))
            await client.aclose()
            (seen,) = backend.seen
            assert seen.method == method
            assert seen.all("Content-Length") == ([length] if length else [])
            assert seen.all("Transfer-Encoding") == ([encoding] if encoding else [])
            assert seen.all("Host") == [f"127.0.0.1:{backend.port}"]
            assert seen.all("Connection") == []
            expected_body = body[: int(length)] if length else body
            assert seen.body == expected_body

    run(scenario())


def test_header_order_follows_go_request_write():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            await client.send(get(backend.url("/ok?a=1"), [("X-B", "2"), ("X-A", "1")]))
            await client.send(BackendRequest(
                "POST", backend.url("/ok"), [("User-Agent", "KrakenD Version 2.13.8"), ("X-C", " 3 ")], b"{}"))
            await client.send(get(backend.url("/ok"), [("User-Agent", "")]))
            await client.aclose()
            first, second, third = backend.seen
            assert first.target == "/ok?a=1"
            assert first.headers == [
                ("Host", f"127.0.0.1:{backend.port}"), ("User-Agent", "Go-http-client/1.1"),
                ("X-B", "2"), ("X-A", "1"), ("Accept-Encoding", "gzip")]
            assert [n for n, _ in second.headers] == [
                "Host", "User-Agent", "Transfer-Encoding", "X-C", "Accept-Encoding"]
            assert second.get("User-Agent") == "KrakenD Version 2.13.8"
            assert second.get("X-C") == "3"
            assert third.get("User-Agent") is None  # a present but empty User-Agent suppresses it, as in Go

    run(scenario())


def test_declared_length_longer_than_body_is_an_error():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            url = backend.url("/ok")
            with pytest.raises(BackendError) as caught:
                await client.send(BackendRequest("POST", url, [("Content-Length", "10")], b"abc"))
            assert str(caught.value) == f'Post "{url}": http: ContentLength=10 with Body length 3'
            assert backend.seen == []

    run(scenario())


def test_url_userinfo_becomes_basic_auth_and_is_masked_in_errors():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            await client.send(get(f"http://user:secret@127.0.0.1:{backend.port}/ok"))
            assert backend.seen[0].get("Authorization") == "Basic " + base64.b64encode(b"user:secret").decode()
            with pytest.raises(BackendError) as caught:
                await client.send(get(f"http://user:secret@127.0.0.1:{backend.port}/eof"))
            assert str(caught.value) == f'Get "http://user:***@127.0.0.1:{backend.port}/eof": EOF'
            await client.aclose()

    run(scenario())


# -- gzip --------------------------------------------------------------------------------------------------


GZIP_CASES = [
    # method, caller headers, client options, Accept-Encoding the backend saw, body decoded?
    ("GET", [], {}, ["gzip"], True),
    ("GET", [("Accept-Encoding", "gzip, deflate")], {}, ["gzip, deflate"], False),
    ("GET", [], {"disable_compression": True}, [], False),
    ("GET", [("Range", "bytes=0-")], {}, [], False),
    ("HEAD", [], {}, [], False),
]


@pytest.mark.parametrize("method, headers, options, accept_encoding, decoded", GZIP_CASES)
def test_accept_encoding_and_transparent_gunzip(method, headers, options, accept_encoding, decoded):
    async def scenario():
        async with Backend() as backend:
            client = HttpClient(**options)
            resp = await client.send(BackendRequest(method, backend.url("/gzip"), headers))
            await client.aclose()
            assert backend.seen[0].all("Accept-Encoding") == accept_encoding
            names = [n for n, _ in resp.headers]
            if decoded:
                assert resp.body == b'{"zipped":true}'
                assert "Content-Encoding" not in names and "Content-Length" not in names
                assert "Content-Type" in names
            else:
                assert resp.body == (b"" if method == "HEAD" else GZIPPED)
                assert ("Content-Encoding", "gzip") in resp.headers
                assert ("Content-Length", str(len(GZIPPED))) in resp.headers

    run(scenario())


@pytest.mark.parametrize("method, path, version, body, headers", [
    # chunked: names canonical as in Go, Transfer-Encoding not among the headers
    ("GET", "/chunked", "HTTP/1.1", b"abcde", [("X-Lower-Case", "v")]),
    ("GET", "/continue", "HTTP/1.1", b"after", [("Content-Length", "5")]),  # 1xx skipped
    ("GET", "/http10", "HTTP/1.0", b"old body", [("X-Old", "1")]),  # read until close
    ("HEAD", "/big", "HTTP/1.1", b"", [("Content-Length", "100")]),  # a HEAD length is not a body
])
def test_response_shapes(method, path, version, body, headers):
    async def scenario():
        async with Backend() as backend:
            client = HttpClient(max_body_bytes=50)
            resp = await client.send(BackendRequest(method, backend.url(path), []))
            second = await client.send(get(backend.url("/ok")))
            await client.aclose()
            assert (resp.status, resp.reason, resp.http_version) == (200, "OK", version)
            assert (resp.body, resp.headers) == (body, headers)
            assert second.body == b"ok"

    run(scenario())


# -- redirects ---------------------------------------------------------------------------------------------


REDIRECT_CASES = [
    # status, method, body, replay, followed with (method, body, Content-Length, Transfer-Encoding) or None
    (301, "GET", b"", False, ("GET", b"", None, None)),
    (302, "POST", b"data", False, ("GET", b"", None, None)),
    (303, "PUT", b"data", False, ("GET", b"", None, None)),
    (301, "HEAD", b"", False, ("HEAD", b"", None, None)),
    (302, "DELETE", b"", False, ("GET", b"", None, None)),
    (307, "GET", b"", False, ("GET", b"", None, None)),
    (308, "DELETE", b"", False, ("DELETE", b"", None, None)),
    (307, "POST", b"", False, ("POST", b"", "0", None)),
    (307, "POST", b"data", True, ("POST", b"data", None, "chunked")),
    (308, "PUT", b"data", True, ("PUT", b"data", None, "chunked")),
    (307, "POST", b"data", False, None),  # Go returns the 307 itself when the body cannot be re-sent
    (308, "PATCH", b"data", False, None),
]


@pytest.mark.parametrize("status, method, body, replay, follow_up", REDIRECT_CASES)
def test_redirect_statuses(status, method, body, replay, follow_up):
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            start = backend.url(f"/redirect?code={status}&to=/target")
            resp = await client.send(BackendRequest(
                method, start, [("Content-Type", "application/json")], body, replay_body_on_redirect=replay))
            await client.aclose()
            if follow_up is None:
                assert resp.status == status and resp.url == start
                assert backend.at("/target") == []
                return
            (target,) = backend.at("/target")
            assert (target.method, target.body, target.get("Content-Length"), target.get("Transfer-Encoding")) \
                == follow_up
            assert target.get("Referer") == start
            assert target.get("Content-Type") == "application/json"  # Go copies the initial headers
            assert resp.status == 200 and resp.url == backend.url("/target")

    run(scenario())


def test_redirect_edge_cases():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            no_location = await client.send(get(backend.url("/noloc")))
            assert (no_location.status, no_location.body) == (302, b"no location")
            not_followed = await client.send(get(backend.url("/redirect?code=302&to=/target")), follow_redirects=False)
            assert not_followed.status == 302 and backend.at("/target") == []
            relative = await client.send(get(backend.url("/dir/sub/redirect?code=301&to=../target%253Fx")))
            assert relative.url == backend.url("/dir/target%3Fx") and backend.seen[-1].path == "/dir/target%3Fx"
            not_a_redirect = await client.send(get(backend.url("/redirect?code=300&to=/target")))
            assert not_a_redirect.status == 300
            explicit = await client.send(get(backend.url("/redirect?code=302&to=/target"), [("Referer", "mine")]))
            assert explicit.status == 200 and backend.seen[-1].all("Referer") == ["mine"]
            await client.aclose()

    run(scenario())


def test_redirect_limit_matches_go():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            resp = await client.send(get(backend.url("/chain?n=9")))  # 9 redirects, 10 requests: fine
            assert (resp.status, resp.body, len(backend.seen)) == (200, b"end", 10)
            with pytest.raises(BackendError) as caught:
                await client.send(get(backend.url("/chain?n=10")))
            # client.go: the 10th redirect response stops the chain; the error names the raw Location.
            assert str(caught.value) == 'Get "/chain?n=0": stopped after 10 redirects'
            assert len(backend.seen) == 20
            await client.aclose()

    run(scenario())


SENSITIVE = [("Authorization", "Bearer t"), ("Cookie", "a=1"), ("Proxy-Authorization", "p"), ("X-Keep", "1")]


@pytest.mark.parametrize("hops, kept", [
    (["localhost"], False),  # another host: sensitive headers dropped
    (["localhost", "127.0.0.1"], False),  # and they stay dropped when the chain comes back (Go 1.24+)
    (["127.0.0.1"], True),  # same host
    (["other-port"], True),  # same hostname, other port: kept (Go compares hostnames)
])
def test_cross_host_redirect_strips_sensitive_headers(hops, kept):
    async def scenario():
        async with Backend() as backend, Backend() as other:
            url = other.url("/target") if hops == ["other-port"] else backend.url("/target")
            for host in reversed(hops):
                if host != "other-port":
                    url = backend.url(f"/redirect?code=302&to={quote(url, safe='')}", host=host)
            start = backend.url(f"/redirect?code=302&to={quote(url, safe='')}")
            client = HttpClient()
            resp = await client.send(get(start, SENSITIVE))
            await client.aclose()
            assert resp.status == 200
            (target,) = backend.at("/target") + other.at("/target")
            sensitive = [target.get(n) for n in ("Authorization", "Cookie", "Proxy-Authorization")]
            assert sensitive == (["Bearer t", "a=1", "p"] if kept else [None, None, None])
            assert target.get("X-Keep") == "1"

    run(scenario())


# -- connections -------------------------------------------------------------------------------------------


def test_keep_alive_connection_is_reused():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            for path in ("/ok", "/redirect?code=302&to=/target", "/gzip"):
                assert (await client.send(get(backend.url(path)))).status == 200
            await client.aclose()
            assert backend.connections == 1 and {s.conn for s in backend.seen} == {0}

    run(scenario())


@pytest.mark.parametrize("first", ["/conn-close", "/close-after"])
def test_closed_connection_is_not_reused(first):
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            assert (await client.send(get(backend.url(first)))).status == 200
            assert (await client.send(get(backend.url("/ok")))).body == b"ok"
            await client.aclose()
            assert backend.connections == 2

    run(scenario())


def test_reused_connection_dropped_by_server_is_retried_for_get():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            await client.send(get(backend.url("/drop-reused")))
            resp = await client.send(get(backend.url("/drop-reused")))
            await client.aclose()
            assert resp.body == b"first"
            assert [s.conn for s in backend.seen] == [0, 0, 1]

    run(scenario())


def test_reused_connection_dropped_by_server_is_not_retried_for_post_with_body():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            url = backend.url("/drop-reused")
            await client.send(get(url))
            with pytest.raises(BackendError) as caught:
                await client.send(BackendRequest("POST", url, [], b"payload"))
            await client.aclose()
            assert str(caught.value) == f'Post "{url}": EOF'
            assert len(backend.seen) == 2

    run(scenario())


def test_cancelled_call_closes_its_connection():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            call = asyncio.create_task(client.send(get(backend.url("/hang"))))
            await backend.hang_sent.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await backend.hang_closed.wait()  # the half-read connection was closed, not pooled
            assert (await client.send(get(backend.url("/ok")))).body == b"ok"
            await client.aclose()
            assert [s.conn for s in backend.seen] == [0, 1]

    run(scenario())


def test_deadline_from_the_caller_closes_the_connection():
    async def scenario():
        async with Backend() as backend:
            client = HttpClient()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.send(get(backend.url("/hang")))
            await backend.hang_closed.wait()
            await client.aclose()

    run(scenario())


# -- errors ------------------------------------------------------------------------------------------------


def test_connection_refused_text():
    async def scenario():
        with socket.socket() as bound_not_listening:
            bound_not_listening.bind(("127.0.0.1", 0))
            port = bound_not_listening.getsockname()[1]
            url = f"http://127.0.0.1:{port}/x"
            with pytest.raises(BackendError) as caught:
                await HttpClient().send(get(url))
            assert str(caught.value) == f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'

    run(scenario())


@pytest.mark.parametrize("path, method, text", [
    ("/eof", "GET", 'Get "{url}": EOF'),
    ("/eof", "PATCH", 'Patch "{url}": EOF'),
    ("/truncated", "GET", "unexpected EOF"),  # a body read error, not wrapped in url.Error by Go
    ("/garbage", "DELETE", 'Delete "{url}": net/http: HTTP/1.x transport connection broken: malformed HTTP response'),
])
def test_broken_responses(path, method, text):
    async def scenario():
        async with Backend() as backend:
            url = backend.url(path)
            with pytest.raises(BackendError) as caught:
                await HttpClient().send(BackendRequest(method, url, []))
            assert str(caught.value).startswith(text.format(url=url))

    run(scenario())


def test_protocol_switch_is_an_error_not_a_hang():
    async def scenario():
        async with Backend() as backend:
            with pytest.raises(BackendError, match="protocol switch"):
                await HttpClient().send(get(backend.url("/switch"), [("Upgrade", "x")]))

    run(scenario())


def test_unsupported_scheme_and_missing_host():
    async def scenario():
        client = HttpClient()
        with pytest.raises(BackendError, match='^Get "ftp://x/y": unsupported protocol scheme "ftp"$'):
            await client.send(get("ftp://x/y"))
        with pytest.raises(BackendError, match='^Head "http:///y": http: no Host in request URL$'):
            await client.send(BackendRequest("HEAD", "http:///y", []))

    run(scenario())


@pytest.mark.parametrize("path, local", [("/big", False), ("/bomb", False), ("/local", True)])
def test_max_body_bytes(path, local):
    async def scenario():
        async def dispatch(req: BackendRequest) -> BackendResponse:
            return BackendResponse(200, "OK", [], b"y" * 100, req.url)

        async with Backend() as backend:
            client = HttpClient(max_body_bytes=50, local_dispatch=dispatch, is_local=lambda host, port: local)
            with pytest.raises(BackendError, match="response body too large"):
                await client.send(get(backend.url(path)))
            small = HttpClient(max_body_bytes=2000)  # the same bodies fit a larger limit
            assert (await small.send(get(backend.url("/bomb")))).body == b"0" * 1000

    run(scenario())


# -- local dispatch ----------------------------------------------------------------------------------------


def test_local_dispatch_serves_calls_to_the_gateway_itself():
    async def scenario():
        calls: list[BackendRequest] = []

        async def dispatch(req: BackendRequest) -> BackendResponse:
            calls.append(req)
            if req.url.endswith("/bounce"):  # a local redirect back out to the network
                return BackendResponse(301, "Moved Permanently", [("location", backend.url("/target"))], b"", "")
            return BackendResponse(200, "OK", [("Content-Type", "text/plain")], b"local", "")

        async def explode(req: BackendRequest) -> BackendResponse:
            raise RuntimeError("loops back")

        async with Backend() as backend:
            client = HttpClient(local_dispatch=dispatch, is_local=lambda host, port: (host, port) == ("gw", 8080))
            direct = await client.send(BackendRequest("POST", "http://gw:8080/self", [("X-A", "1")], b"{}"))
            assert (direct.status, direct.body, direct.url) == (200, b"local", "http://gw:8080/self")
            assert calls[0].method == "POST" and calls[0].body == b"{}"
            assert calls[0].headers == [("User-Agent", "Go-http-client/1.1"), ("Transfer-Encoding", "chunked"),
                                        ("X-A", "1"), ("Accept-Encoding", "gzip")]  # Host is in the URL

            start = backend.url("/redirect?code=302&to=http://gw:8080/hop")
            via_redirect = await client.send(get(start))
            assert via_redirect.body == b"local" and via_redirect.url == "http://gw:8080/hop"
            assert ("Referer", start) in calls[1].headers

            failing = HttpClient(local_dispatch=explode, is_local=lambda host, port: True)
            with pytest.raises(BackendError, match='^Get "http://gw:8080/x": loops back$'):
                await failing.send(get("http://gw:8080/x"))

            bounced = await client.send(get("http://gw:8080/bounce"))
            assert (bounced.status, bounced.body) == (200, b"target")
            assert backend.at("/target")[0].get("Referer") == "http://gw:8080/bounce"
            await client.aclose()

    run(scenario())


# -- TLS ---------------------------------------------------------------------------------------------------


def test_tls_verification_and_https_to_http_referer(tls_server_context):
    async def scenario():
        async with Backend(tls_server_context) as secure, Backend() as plain:
            insecure = HttpClient(verify_tls=False)
            resp = await insecure.send(get(secure.url("/ok", host="localhost")))
            assert resp.body == b"ok" and secure.seen[0].get("Host") == f"localhost:{secure.port}"
            await insecure.send(get(secure.url(f"/redirect?code=302&to={quote(plain.url('/target'), safe='')}")))
            assert plain.at("/target")[0].get("Referer") is None  # no Referer from https to http
            await insecure.aclose()

            url = secure.url("/ok")
            with pytest.raises(BackendError) as caught:
                await HttpClient().send(get(url))
            assert str(caught.value) == \
                f'Get "{url}": tls: failed to verify certificate: x509: certificate signed by unknown authority'

    run(scenario())
