"""No log line, flow comment, flow metadata or explain output ever contains a whole token or a
signature: through the real attack gateway (`operation_debug: true` on /rs) and through the addon
with mitmproxy's own test helpers (taddons/tflow)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from mitmproxy.test import taddons, tflow, tutils

from hardening_corpus import Corpus, build_corpus, compact, corpus_keys
from hardening_kit import log_size, send, wait_for_log
from jwt_testkit import public_jwk

from krakend_mitm.addon import Gateway


def secrets_of(token: str) -> list[str]:
    """The whole token and its signature (every form a log could hold: with and without spaces)."""
    out = []
    compact_token = "".join(token.split())
    for candidate in (token, compact_token):
        if len(candidate) >= 24:
            out.append(candidate)
    if compact_token.startswith("{"):
        try:
            doc = json.loads(compact_token)
            sigs = [doc.get("signature")] + [s.get("signature") for s in doc.get("signatures") or [] if isinstance(s, dict)]
        except (ValueError, AttributeError):
            sigs = []
    else:
        parts = compact_token.split(".")
        sigs = [parts[-1]] if len(parts) >= 3 else []
    out += [s.rstrip("=") for s in sigs if isinstance(s, str) and len(s.rstrip("=")) >= 16]
    return out


def assert_no_secret(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        for secret in secrets_of(token):
            assert secret not in text, f"{where} contains a token or signature ({secret[:24]}…)"


def traffic(now: float) -> list[tuple[str, list[tuple[str, str]], str]]:
    """(endpoint, headers, token) covering acceptance and every kind of rejection, in headers and cookies."""
    keys = corpus_keys()
    c = Corpus(keys, now)
    jti = "secrets"
    good = c.valid(jti)
    h, p, s = good.split(".")
    rows = [
        ("/rs", good, "Authorization"),
        ("/rs", f"{h}.{p}.{s[:-4]}AAAA", "Authorization"),  # bad signature
        ("/rs", c.valid(jti, exp=int(now) - 100), "Authorization"),  # expired
        ("/rs", c.valid(jti, iss="https://evil.example"), "Cookie"),
        ("/rs", c.valid(jti, drn="DSR"), "Authorization"),
        ("/rs", compact(c.header("none"), c.claims(jti), signature=b"x" * 40), "Authorization"),
        ("/rs", compact(c.header(jwk=public_jwk(keys.k1, "k1")), c.claims(jti), keys.k1), "Authorization"),
        ("/rs", compact(c.header(kid="nope"), c.claims(jti), keys.attacker), "Cookie"),
        ("/rs", c.sized(jti, 20000), "Authorization"),
        ("/es", c.valid(jti, "/es"), "Authorization"),
        ("/hs", compact(c.header("HS256"), c.claims(jti), b"secret-secret-secret", "HS256"), "Authorization"),
    ]
    out = []
    for endpoint, token, where in rows:
        headers = [("Authorization", f"Bearer {token}")] if where == "Authorization" else [("Cookie", f"access_token={token}")]
        out.append((endpoint, headers, token))
    return out


def test_gateway_log_never_holds_a_token_or_signature(attack_env):
    env = attack_env
    sent = []
    since = log_size(env.gateway)
    for endpoint, headers, token in traffic(time.time()):
        send(env.port, endpoint, headers)
        sent.append(token)
    send(env.port, "/rs")  # a marker: its rejection line is the last one to wait for
    wait_for_log(env.gateway, "Token not found", since=since)
    log = env.gateway.log()
    assert "token header=" in log, "operation_debug output expected (the scan must cover it)"
    assert_no_secret(log, sent + env.sent_tokens, "the gateway log")


def _config(tmp_path, keys) -> str:
    local = tmp_path / "keys.json"
    local.write_text(json.dumps({"keys": [public_jwk(keys.k1, "k1"), public_jwk(keys.ec, "e1")]}))
    validator = {"alg": "RS256", "jwk_local_path": str(local), "disable_jwk_security": True, "operation_debug": True}
    config = {"version": 3, "endpoints": [
        {"endpoint": "/rs", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/p"}],
         "extra_config": {"auth/validator": validator}},
        {"endpoint": "/es", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/p"}],
         "extra_config": {"auth/validator": {**validator, "alg": "ES256"}}},
        {"endpoint": "/hs", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/p"}],
         "extra_config": {"auth/validator": {**validator, "alg": "HS256"}}},
    ]}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_flow_comment_metadata_and_explain_never_hold_a_token(tmp_path, caplog):
    keys = corpus_keys()
    caplog.set_level(logging.DEBUG)
    gateway = Gateway()
    rows = traffic(time.time())
    corpus = [c for c in build_corpus(keys) if c.endpoint in ("/rs", "/es", "/hs") and c.tokens][:120]
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=_config(tmp_path, keys))
        flows = []
        for endpoint, headers, token in rows + [(c.endpoint, c.headers, c.tokens[0]) for c in corpus]:
            f = tflow.tflow()
            raw_headers = [(b"host", b"localhost:8080")] + [
                (k.encode(), v if isinstance(v, bytes) else v.encode("utf-8")) for k, v in headers]
            f.request = tutils.treq(method=b"GET", path=endpoint.encode(), host="127.0.0.1", port=8080,
                                    headers=tuple(raw_headers), content=b"")
            asyncio.run(gateway.request(f))
            assert f.response is not None
            flows.append((f, token))
        gateway.explain([f for f, _ in flows])
    tokens = [t for _, t in flows]
    for f, token in flows:
        assert_no_secret(f.comment, [token], "a flow comment")
        assert_no_secret(json.dumps(f.metadata, default=str), [token], "flow metadata")
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records), tokens, "the addon's log and explain output")
    assert any(f.response.status_code == 401 for f, _ in flows) and any(f.comment for f, _ in flows)


def test_the_scan_finds_a_leak():
    token = Corpus(corpus_keys(), time.time()).valid("scan")
    signature = token.rsplit(".", 1)[1]
    for leaked in (f"line with {token} inside", f"sig={signature}", "spaced " + token.replace(".", ". ")):
        with pytest.raises(AssertionError):
            assert_no_secret(leaked.replace(". ", "."), [token], "probe")
    assert_no_secret("header={\"alg\":\"RS256\"} kid=\"k1\"", [token], "probe")
