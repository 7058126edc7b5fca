"""The gateway's explicit limits (SECURITY.md "Limits"), each enforced where it is documented:

* token length: refused before any parsing (`token_too_large`);
* JSON nesting of a token's header and payload (`token_json_depth`);
* JWK Set size (`jwks_too_large`) and key count (`jwks_too_many_keys`);
* the JWKS fetch timeout, an overall deadline: a server dripping headers or body, or stalling the TLS
  handshake, costs at most the timeout and never keeps a worker thread (`jwks_timeout`).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import pytest

from hardening_corpus import Corpus, corpus_keys, seg
from hardening_kit import ROOT, KeyServer, wait_until
from jwt_testkit import b64, public_jwk

from krakend_mitm.auth import _go
from krakend_mitm.auth import claims as claims_mod
from krakend_mitm.auth.jwks import (FETCH_TIMEOUT, MAX_JWKS_BYTES, MAX_JWKS_KEYS, FetchError, FetchRequest,
                                    FetchResponse, JWKSetError, KeyStore, RequestsFetcher, TLSOptions, parse_jwk_set)
from krakend_mitm.auth.jws import MAX_JSON_DEPTH, MAX_TOKEN_LENGTH, JWSError, parse_jws

KEYS = corpus_keys()


def sized(length: int) -> str:
    return Corpus(KEYS, time.time()).sized("limit", length)


# ---------------------------------------------------------------------------------------------
# token length


def test_a_token_at_the_limit_parses():
    token = sized(MAX_TOKEN_LENGTH)
    assert len(token) == MAX_TOKEN_LENGTH
    assert parse_jws(token).header["alg"] == "RS256"


def test_a_longer_token_is_refused_before_any_parsing(monkeypatch):
    token = sized(MAX_TOKEN_LENGTH + 1)

    def never(*args, **kwargs):
        raise AssertionError("the token was parsed")

    for name in ("strip_go_whitespace", "jose_b64decode", "go_b64decode", "go_json_loads"):
        monkeypatch.setattr(_go, name, never)
    with pytest.raises(JWSError) as err:
        parse_jws(token)
    assert err.value.reason_id == "token_too_large" and err.value.gateway_only
    assert str(MAX_TOKEN_LENGTH) in err.value.message and token[-20:] not in err.value.message


def test_a_megabyte_of_token_is_refused_fast():
    token = "a." * (512 * 1024)
    started = time.perf_counter()
    with pytest.raises(JWSError):
        parse_jws(token)
    assert time.perf_counter() - started < 0.05


# ---------------------------------------------------------------------------------------------
# JSON nesting


def nested(depth: int) -> str:
    return "[" * (depth - 1) + "]" * (depth - 1)


@pytest.mark.parametrize("depth,ok", [(MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False), (5000, False)])
def test_header_nesting_limit(depth, ok):
    header = ('{"alg":"RS256","x":' + nested(depth) + "}").encode()
    token = f"{b64(header)}.{seg({'sub': 'u'})}.{b64(b'sig')}"
    if ok:
        parse_jws(token)
    else:
        with pytest.raises(JWSError) as err:
            parse_jws(token)
        assert err.value.reason_id == "token_json_depth"


@pytest.mark.parametrize("depth,ok", [(MAX_JSON_DEPTH, True), (MAX_JSON_DEPTH + 1, False), (5000, False)])
def test_payload_nesting_limit(depth, ok):
    payload = ('{"sub":"u","x":' + nested(depth) + "}").encode()
    if ok:
        claims_mod.decode_payload(payload)
    else:
        with pytest.raises(claims_mod.ClaimsError) as err:
            claims_mod.decode_payload(payload)
        assert err.value.reason_id == "token_json_depth"
    assert claims_mod.MAX_JSON_DEPTH == MAX_JSON_DEPTH


# ---------------------------------------------------------------------------------------------
# JWK Set size and key count


def _store(body: bytes, **kw) -> KeyStore:
    def fetch(request: FetchRequest) -> FetchResponse:
        return FetchResponse(200, "application/json", body)

    return KeyStore(fetch=fetch, **kw)


def _lookup(store: KeyStore, kid: str):
    async def go():
        handle = store.handle("https://idp.test/keys")
        try:
            return await handle.lookup(kid)
        finally:
            store.stop()

    return asyncio.run(go())


def test_key_count_limit():
    one = public_jwk(KEYS.k1, "k1")
    at_limit = [dict(one, kid=f"k{i}") for i in range(MAX_JWKS_KEYS)]
    assert len(parse_jwk_set(json.dumps({"keys": at_limit}), max_keys=MAX_JWKS_KEYS)) == MAX_JWKS_KEYS
    with pytest.raises(JWKSetError) as err:
        parse_jwk_set(json.dumps({"keys": at_limit + [one]}), max_keys=MAX_JWKS_KEYS)
    assert err.value.reason_id == "jwks_too_many_keys"
    lookup = _lookup(_store(json.dumps({"keys": at_limit + [one]}).encode()), "k1")
    assert lookup.key is None and lookup.reason_id == "jwks_too_many_keys"
    assert _lookup(_store(json.dumps({"keys": at_limit}).encode()), "k1").key is not None


def test_size_limit_through_the_key_store():
    body = json.dumps({"keys": [public_jwk(KEYS.k1, "k1")], "pad": "x" * MAX_JWKS_BYTES}).encode()
    lookup = _lookup(_store(body), "k1")
    assert lookup.key is None and lookup.reason_id == "jwks_too_large"


def test_size_limit_on_the_wire_stops_reading():
    server = KeyServer()
    try:
        server.set("/big", body=b'{"keys":[' + b" " * (MAX_JWKS_BYTES + 1) + b"]}")
        fetcher = RequestsFetcher()
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            fetcher(FetchRequest(server.url("/big"), TLSOptions(), timeout=5, max_bytes=MAX_JWKS_BYTES))
        assert err.value.reason_id == "jwks_too_large"
        assert time.monotonic() - started < 2
        fetcher.close()
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# fetch timeout: an overall deadline, not a per-read one


class _Stall:
    """A TCP server: `mode` "headers" drips a response head one byte per 0.2 s, "silent" accepts and
    never writes (a stalled TLS handshake for an https URL)."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.mode = mode
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            if self.mode == "silent":
                self.stop.wait(30)
                return
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
            for i in range(len(head)):
                if self.stop.wait(0.2):
                    return
                try:
                    conn.sendall(head[i:i + 1])
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("fault", ["body-drip", "header-drip", "tls-handshake-stall"])
def test_fetch_timeout_is_an_overall_deadline(fault):
    timeout = 1.0
    server = None
    try:
        if fault == "body-drip":
            server = KeyServer()
            server.set("/keys", body=json.dumps({"keys": [public_jwk(KEYS.k1, "k1")]}).encode(), drip=0.2)
            url = server.url("/keys")
        else:
            server = _Stall("headers" if fault == "header-drip" else "silent")
            url = f"{'https' if fault == 'tls-handshake-stall' else 'http'}://127.0.0.1:{server.port}/keys"
        fetcher = RequestsFetcher()
        started = time.monotonic()
        with pytest.raises(FetchError) as err:
            fetcher(FetchRequest(url, TLSOptions(insecure=True), timeout=timeout, max_bytes=MAX_JWKS_BYTES))
        elapsed = time.monotonic() - started
        assert err.value.reason_id == "jwks_timeout", err.value.message
        assert elapsed < timeout + 1.5, f"the download took {elapsed:.1f} s with a {timeout} s timeout"
        # the download returned to its caller; its watchdog timer is cancelled, not left waiting
        wait_until(lambda: not [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()],
                   timeout=2, what="the watchdog timer to stop")
        fetcher.close()
    finally:
        if server is not None:
            server.close()


def test_limits_are_the_documented_ones():
    text = (ROOT / "SECURITY.md").read_text()
    assert MAX_TOKEN_LENGTH == 16 * 1024 and "16 KiB" in text and "16384" in text
    assert MAX_JSON_DEPTH == 32 and "32 levels" in text
    assert MAX_JWKS_BYTES == 4 * 1024 * 1024 and "4 MiB" in text
    assert MAX_JWKS_KEYS == 100 and "100 keys" in text
    assert FETCH_TIMEOUT == 10.0 and "10 s" in text
    for reason in ("token_too_large", "token_json_depth", "jwks_too_large", "jwks_too_many_keys", "jwks_timeout"):
        assert reason in text, reason
    assert re.search(r"CVE-2025-23217", text) and "web_password" in text
