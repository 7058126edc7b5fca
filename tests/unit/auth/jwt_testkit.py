"""Helpers for the auth tests: keys, token minting, a threaded JWKS server, validator builders.
No sleeps: servers are ready once bound; waits use events."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from krakend_mitm.auth import EndpointValidator, KeyStore, parse_validator
from krakend_mitm.auth.jwks import FetchResponse

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared"
VECTORS = SHARED / "vectors"


def vectors_dir(sub: str) -> Path:
    path = VECTORS / sub
    if not path.is_dir():
        pytest.skip(f"test vectors not available: {path} (expected ../shared/vectors beside the project root)")
    return path


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------
# keys

_CACHE: dict[str, Any] = {}


def rsa_key(name: str = "rsa1", bits: int = 2048) -> rsa.RSAPrivateKey:
    key = f"rsa:{name}:{bits}"
    if key not in _CACHE:
        _CACHE[key] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _CACHE[key]


def ec_key(curve: str = "P-256", name: str = "ec1") -> ec.EllipticCurvePrivateKey:
    key = f"ec:{curve}:{name}"
    if key not in _CACHE:
        c = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[curve]
        _CACHE[key] = ec.generate_private_key(c)
    return _CACHE[key]


def ed_key(name: str = "ed1") -> ed25519.Ed25519PrivateKey:
    key = f"ed:{name}"
    if key not in _CACHE:
        _CACHE[key] = ed25519.Ed25519PrivateKey.generate()
    return _CACHE[key]


HMAC_SECRET = b"a-very-secret-hmac-key-of-32-byt"


def public_jwk(private: Any, kid: str | None = None, **extra: Any) -> dict:
    if isinstance(private, bytes):
        jwk_ = {"kty": "oct", "k": b64(private)}
    elif isinstance(private, rsa.RSAPrivateKey):
        jwk_ = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk_ = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        jwk_ = jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    if kid is not None:
        jwk_["kid"] = kid
    jwk_.update(extra)
    return jwk_


def private_jwk(private: Any, kid: str) -> dict:
    if isinstance(private, rsa.RSAPrivateKey):
        jwk_ = jwt.algorithms.RSAAlgorithm.to_jwk(private, as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk_ = jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)
    else:
        jwk_ = jwt.algorithms.OKPAlgorithm.to_jwk(private, as_dict=True)
    jwk_["kid"] = kid
    return jwk_


def sign(alg: str, message: bytes, private: Any) -> bytes:
    return jwt.algorithms.get_default_algorithms()[alg].sign(message, private)


def mint(claims: dict | bytes | str, private: Any, alg: str = "RS256", kid: str | None = "k1",
         header: dict | None = None, raw_header: bytes | None = None) -> str:
    """A compact JWS. `header` replaces the default {"alg", "kid"}; `raw_header`/bytes claims
    allow malformed JSON."""
    if raw_header is None:
        hdr = {"alg": alg, "typ": "JWT"} if header is None else dict(header)
        if header is None and kid is not None:
            hdr["kid"] = kid
        raw_header = json.dumps(hdr, separators=(",", ":")).encode()
    payload = claims if isinstance(claims, bytes) else (
        claims.encode() if isinstance(claims, str) else json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{b64(raw_header)}.{b64(payload)}".encode()
    return f"{signing_input.decode()}.{b64(sign(alg, signing_input, private))}"


def future(seconds: int = 3600) -> int:
    return int(time.time()) + seconds


# ---------------------------------------------------------------------------------------------
# JWKS server


class JWKSServer:
    """A threaded HTTP(S) server on 127.0.0.1 with counters. `state` may be changed at any time."""

    def __init__(self, keys: list[dict] | None = None, *, tls_context: ssl.SSLContext | None = None):
        self.lock = threading.Lock()
        self.hits = 0
        self.user_agents: list[str] = []
        self.body: bytes = b""
        self.content_type = "application/json"
        self.status = 200
        self.delay = 0.0
        self.hold: threading.Event | None = None  # when set: requests wait for it
        self.started = threading.Event()
        self.set_keys(keys or [])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with server.lock:
                    server.hits += 1
                    server.user_agents.append(self.headers.get("User-Agent", ""))
                    delay, hold = server.delay, server.hold
                    body, ctype, status = server.body, server.content_type, server.status
                server.started.set()
                if hold is not None:
                    hold.wait(10)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    if ctype is not None:
                        self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls_context is not None else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def set_keys(self, keys: list[dict]) -> None:
        with self.lock:
            self.body = json.dumps({"keys": keys}).encode()

    def set_body(self, body: bytes, content_type: str | None = "application/json", status: int = 200) -> None:
        with self.lock:
            self.body, self.content_type, self.status = body, content_type, status

    def url(self, path: str = "/keys") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def count(self) -> int:
        with self.lock:
            return self.hits

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server():
    servers: list[JWKSServer] = []

    def make(keys: list[dict] | None = None, **kw: Any) -> JWKSServer:
        srv = JWKSServer(keys, **kw)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


# ---------------------------------------------------------------------------------------------
# TLS material


def make_ca_and_server_cert(tmp: Path) -> dict:
    """A CA and a 127.0.0.1 server certificate. Returns paths and SPKI digests."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(srv_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (tmp / "server.pem").write_bytes(srv_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    (tmp / "server.key").write_bytes(srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    import hashlib

    def spki(cert: x509.Certificate) -> str:
        der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    return {"ca": str(tmp / "ca.pem"), "context": ctx, "leaf_pin": spki(srv_cert), "ca_pin": spki(ca_cert)}


# ---------------------------------------------------------------------------------------------
# validators


def local_validator(tmp: Path, keys: list[dict], *, endpoint: str = "/test", clock: Any = time.time,
                    **config: Any) -> EndpointValidator:
    path = tmp / f"jwks-{len(list(tmp.iterdir()))}.json"
    path.write_text(json.dumps({"keys": keys}))
    cfg = {"jwk_local_path": str(path), "disable_jwk_security": True, "alg": "RS256"}
    cfg.update(config)
    spec = parse_validator({"auth/validator": cfg}, path="endpoints[0].extra_config", endpoint_path=endpoint)
    assert spec is not None
    return EndpointValidator(spec, None, endpoint_path=endpoint, clock=clock)


def remote_validator(store: KeyStore, url: str, *, endpoint: str = "/test", clock: Any = time.time,
                     **config: Any) -> EndpointValidator:
    cfg = {"jwk_url": url, "disable_jwk_security": True, "alg": "RS256", "cache": True}
    cfg.update(config)
    spec = parse_validator({"auth/validator": cfg}, path="endpoints[0].extra_config", endpoint_path=endpoint)
    assert spec is not None
    return EndpointValidator(spec, store, endpoint_path=endpoint, clock=clock)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ServedKeys:
    """A JWK Set served by a KeyStore's fetch function; change `keys` and refresh. `calls` counts downloads."""

    def __init__(self, *keys: dict):
        self.keys = list(keys)
        self.calls = 0

    def __call__(self, request):
        self.calls += 1
        return FetchResponse(200, "application/json", json.dumps({"keys": self.keys}).encode())
