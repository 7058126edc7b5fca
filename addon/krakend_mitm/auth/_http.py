"""The JWKS HTTP client: `requests` with KrakenD's TLS rules (spec §14, §18). Runs in worker threads
owned by the KeyStore, never on the event loop."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InsecureRequestWarning

from krakend_mitm.auth.jwks import FetchError, FetchRequest, FetchResponse, TLSOptions

# IANA ids of the TLS 1.2 suites Go knows -> OpenSSL names (TLS 1.3 suites are always on in Go)
_CIPHERS = {
    0x0005: "RC4-SHA",
    0x000A: "DES-CBC3-SHA",
    0x002F: "AES128-SHA",
    0x0035: "AES256-SHA",
    0x003C: "AES128-SHA256",
    0x009C: "AES128-GCM-SHA256",
    0x009D: "AES256-GCM-SHA384",
    0xC007: "ECDHE-ECDSA-RC4-SHA",
    0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA",
    0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC027: "ECDHE-RSA-AES128-SHA256",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
}
DEFAULT_CIPHER_SUITES = (49199, 49195, 49200, 49196, 52392, 52393)
PIN_MESSAGE = "JWK client did not find a pinned key"


class PinError(ssl.SSLError):
    """No certificate of the peer chain has a pinned SubjectPublicKeyInfo."""


class _PinningSocket(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:  # type: ignore[override]
        super().do_handshake(block)
        pins = getattr(self.context, "_krakend_pins", ())
        if pins and not _chain_matches(self, pins):
            raise PinError(PIN_MESSAGE)


class _Context(ssl.SSLContext):
    sslsocket_class = _PinningSocket
    _krakend_pins: tuple[bytes, ...] = ()


def _chain_matches(sock: ssl.SSLSocket, pins: tuple[bytes, ...]) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ders: list[bytes] = []
    sslobj = getattr(sock, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None) or getattr(sock, "get_unverified_chain", None)
    if getter is not None:
        try:
            for cert in getter() or ():
                ders.append(cert.public_bytes(ssl._ssl.ENCODING_DER) if not isinstance(cert, bytes) else cert)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            ders = []
    if not ders:
        leaf = sock.getpeercert(binary_form=True)
        if leaf:
            ders.append(leaf)
    for der in ders:
        try:
            spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
        except Exception:  # noqa: BLE001
            continue
        if hashlib.sha256(spki).digest() in pins:
            return True
    return False


def make_context(tls: TLSOptions) -> ssl.SSLContext:
    ctx = _Context(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    suites = tls.cipher_suites or DEFAULT_CIPHER_SUITES
    names = [_CIPHERS[s] for s in suites if s in _CIPHERS]
    if names:
        try:
            ctx.set_ciphers(":".join(names))
        except ssl.SSLError:
            pass
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        ctx.load_default_certs()
        try:
            import certifi

            ctx.load_verify_locations(cafile=certifi.where())
        except Exception:  # noqa: BLE001 - certifi is optional
            pass
        if tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
    ctx._krakend_pins = tuple(tls.fingerprints)
    return ctx


# ---------------------------------------------------------------------------------------------
# The overall deadline. requests' timeouts bound each socket operation, not the download: an IdP
# that drips one byte every few seconds (headers or body) would hold a worker thread for as long
# as it likes, and four such downloads would starve every other key set. Each fetch therefore arms
# a timer that shuts down every socket the download opened or reused when the deadline passes.


class _Deadline:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.fired = False

    def track(self, sock: Any) -> None:
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: Any) -> None:
    try:
        # the plain socket method: SSLSocket.shutdown would also drop the TLS object under the reader
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError, ValueError):
        pass


_current = threading.local()


def _track(sock: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.track(sock)


class _TrackedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _track(sock)
        return sock


class _TrackedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _track(sock)
        return sock


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _track(getattr(conn, "sock", None))  # a reused keep-alive connection
        return conn


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _track(getattr(conn, "sock", None))
        return conn


_TRACKED_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class _PlainAdapter(HTTPAdapter):
    """http:// JWKS URLs: no TLS options, but the same deadline tracking."""

    def __init__(self, **kwargs: Any):
        super().__init__(max_retries=0, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_TRACKED_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_TRACKED_POOLS)
        return manager


class _Adapter(HTTPAdapter):
    def __init__(self, context: ssl.SSLContext, insecure: bool, **kwargs: Any):
        self._context = context
        self._insecure = insecure
        if insecure:
            # disable_jwk_security is reported once at start-up; urllib3 would repeat it on every refresh
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        super().__init__(max_retries=0, **kwargs)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["cert_reqs"] = "CERT_NONE" if self._insecure else "CERT_REQUIRED"
        pool_kwargs["ssl_context"] = self._context
        return host_params, pool_kwargs

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_TRACKED_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_TRACKED_POOLS)
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # the SSL context decides; keep requests from overriding it with its own CA bundle
        return None


def make_session(tls: TLSOptions) -> requests.Session:
    from http.cookiejar import DefaultCookiePolicy

    session = requests.Session()
    session.headers.clear()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))  # Go's client has no cookie jar
    session.max_redirects = 10  # as Go's http.Client
    adapter = _Adapter(make_context(tls), tls.insecure)
    session.mount("https://", adapter)
    session.mount("http://", _PlainAdapter())
    return session


def _walk(exc: BaseException | None, depth: int = 0):
    seen = 0
    stack = [exc]
    while stack and seen < 40:
        cur = stack.pop()
        if cur is None:
            continue
        seen += 1
        yield cur
        stack.append(getattr(cur, "__cause__", None))
        stack.append(getattr(cur, "__context__", None))
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                stack.append(arg)


def go_error_text(url: str, exc: BaseException) -> tuple[str, str | None]:
    """A requests/urllib3 exception as Go's http.Client would word it (best effort)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    chain = list(_walk(exc))
    for e in chain:
        if isinstance(e, PinError) or PIN_MESSAGE in str(e):
            return f'Get "{url}": {PIN_MESSAGE}', None
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return f'Get "{url}": dial tcp {hostport}: connect: connection refused', None
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f'Get "{url}": dial tcp: lookup {host}: no such host', None
    for e in chain:
        if isinstance(e, (requests.Timeout, socket.timeout, TimeoutError)):
            return (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
                    "jwks_timeout")
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            if "hostname" in str(e).lower() or "ip address mismatch" in str(e).lower():
                return f'Get "{url}": tls: failed to verify certificate: x509: certificate is not valid for {host}', None
            return (f'Get "{url}": tls: failed to verify certificate: x509: certificate signed by unknown authority',
                    None)
    return f'Get "{url}": {exc}', None


def fetch(session: requests.Session, request: FetchRequest) -> FetchResponse:
    """GET the JWKS with an overall deadline (`request.timeout`, covering connect, TLS, redirects,
    headers and body) and a size cap. Raises FetchError."""
    url = request.url
    if not (url.startswith("http://") or url.startswith("https://")):
        scheme = url.split(":", 1)[0] if ":" in url else ""
        raise FetchError(f'Get "{url}": unsupported protocol scheme "{scheme}"')
    watchdog = _Deadline()
    timer = threading.Timer(request.timeout, watchdog.fire)
    timer.daemon = True
    _current.deadline = watchdog
    timer.start()
    try:
        return _fetch(session, request, watchdog)
    finally:
        timer.cancel()
        _current.deadline = None


def _deadline_error(url: str, phase: str) -> FetchError:
    return FetchError(f'Get "{url}": context deadline exceeded (Client.Timeout {phase})', reason_id="jwks_timeout")


def _fetch(session: requests.Session, request: FetchRequest, watchdog: _Deadline) -> FetchResponse:
    url = request.url
    deadline = time.monotonic() + request.timeout
    try:
        response = session.get(
            url,
            headers={"User-Agent": request.user_agent, "Accept-Encoding": "gzip"},
            timeout=(min(5.0, request.timeout), request.timeout),
            stream=True,
            allow_redirects=True,
        )
    except Exception as exc:  # noqa: BLE001
        if watchdog.fired:
            raise _deadline_error(url, "exceeded while awaiting headers") from None
        message, reason = go_error_text(url, exc)
        raise FetchError(message, reason_id=reason) from None
    try:
        raw_headers = getattr(response.raw, "headers", None)
        values = raw_headers.getlist("Content-Type") if hasattr(raw_headers, "getlist") else []
        content_type = values[0] if values else response.headers.get("Content-Type", "")
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > request.max_bytes and "Content-Encoding" not in response.headers:
            raise FetchError(f"JWKS response larger than {request.max_bytes} bytes", reason_id="jwks_too_large")
        body = bytearray()
        try:
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > request.max_bytes:
                    raise FetchError(f"JWKS response larger than {request.max_bytes} bytes", reason_id="jwks_too_large")
                if time.monotonic() > deadline:
                    raise FetchError(
                        f'Get "{url}": context deadline exceeded (Client.Timeout or context cancellation while reading body)',
                        reason_id="jwks_timeout",
                    )
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001
            if watchdog.fired:
                raise _deadline_error(url, "or context cancellation while reading body") from None
            message, reason = go_error_text(url, exc)
            raise FetchError(message, reason_id=reason) from None
        if watchdog.fired and time.monotonic() > deadline:
            raise _deadline_error(url, "or context cancellation while reading body")
        return FetchResponse(status=response.status_code, content_type=content_type, body=bytes(body))
    finally:
        response.close()
