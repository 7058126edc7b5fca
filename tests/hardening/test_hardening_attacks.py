"""The attack corpus (hardening_corpus.py) through ONE real mitmdump gateway.

Every attack gets 401 with an empty body (never 403, never 5xx) and the backend never sees it; the
KrakenD leniencies the spec keeps get 200 and reach the backend exactly once (the backend path
carries the token's jti). Afterwards a valid token still works on every endpoint.
"""

from __future__ import annotations

import time

import pytest

from hardening_corpus import ENDPOINTS, Corpus, build_corpus, compact, hit_prefix
from hardening_kit import ConnectionDropped, bearer, log_size, send, wait_for_log

CASES = build_corpus()


def _run(env, case):
    prefix = hit_prefix(case.endpoint)
    before = env.backend_hits(prefix)
    since = log_size(env.gateway)
    if not getattr(case, "query", ""):  # a token in the URL is logged by mitmproxy's flow line (SECURITY.md)
        env.sent_tokens.extend(case.tokens)
    try:
        response = send(env.port, case.endpoint + getattr(case, "query", ""), case.headers)
    except (ConnectionDropped, ConnectionResetError, BrokenPipeError) as err:
        if not case.may_be_refused_by_http:
            raise
        response = None
        dropped = err
    after = env.backend_hits(prefix)
    return response, before, after, since, (None if response is not None else dropped)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_case(attack_env, case):
    env = attack_env
    response, before, after, since, dropped = _run(env, case)
    prefix = hit_prefix(case.endpoint)
    context = f"{case.group}: {case.why}"
    if case.may_be_refused_by_http and (response is None or response.status != case.expect):
        # mitmproxy's own HTTP limits may answer before the gateway: never a success, never a 5xx
        assert response is None or (response.status < 200 or 300 <= response.status < 500), context
        assert after == before, "a request refused by the HTTP layer reached the backend"
        return
    assert response is not None, dropped
    log_tail = env.gateway.log()[since:][-2000:]
    assert response.status == case.expect, f"{context}\nlog:\n{log_tail}"
    if case.expect == 401:
        assert response.body == b"", context
        assert response.header("WWW-Authenticate") is None
        assert after == before, f"a rejected request reached the backend: {set(after.items()) - set(before.items())}"
    else:
        new = {path: n - before.get(path, 0) for path, n in after.items() if n != before.get(path, 0)}
        assert new == {prefix + case.jti: 1}, f"the backend must see exactly this request once: {new}"
    if case.reason:
        wait_for_log(env.gateway, case.reason, since=since, timeout=5)


def test_valid_tokens_still_work_after_the_corpus(attack_env):
    env = attack_env
    corpus = Corpus(env.keys, time.time())
    signers = {"/jwks/weak": ("weak", env.keys.weak), "/jwks/enc": ("enc", env.keys.enc),
               "/jwks/oct": ("k2", env.keys.k2), "/jwks/private": ("k1", env.keys.k1)}
    for endpoint in ENDPOINTS:
        if "broken" in endpoint or endpoint == "/hs":
            continue  # those key sets validate nothing: a broken set, an HS endpoint holding only RSA keys
        jti = corpus.jti("after" + endpoint.replace("/", "-"))
        if endpoint == "/es":
            token = corpus.valid(jti, "/es")
        elif endpoint in signers:
            kid, key = signers[endpoint]
            token = compact(corpus.header(kid=kid), corpus.claims(jti), key)
        else:
            token = corpus.valid(jti)
        env.sent_tokens.append(token)
        response = send(env.port, endpoint, bearer(token))
        assert response.status == 200, (endpoint, env.gateway.log()[-2000:])
        assert env.backend_hits(hit_prefix(endpoint)).get(hit_prefix(endpoint) + jti) == 1
    assert send(env.port, "/__health").status == 200
    assert env.gateway.process.poll() is None
    log = env.gateway.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def test_corpus_covers_every_case_the_issue_lists():
    ids = " ".join(c.id for c in CASES)
    for needle in ("alg-none", "alg-None", "alg-NONE", "hs256-with-rsa-public-pem", "hs256-with-rsa-public-der",
                   "other-alg-", "unknown-alg-", "signature-empty", "signature-stripped", "signature-by-unknown-key",
                   "signature-same-kid-other-key", "ecdsa-r-s-zero", "ecdsa-der-signature", "kid-traversal", "kid-sql",
                   "kid-very-long", "jwk-embedded", "jku-", "x5u-", "x5c-", "crit-unknown", "b64-false", "zip-",
                   "exp-numeric-string", "exp-text", "exp-float", "exp-huge", "exp-negative", "exp-null",
                   "exp-missing", "iss-wrong", "iss-prefix", "aud-missing-one", "duplicate-header-none-then-rs",
                   "duplicate-payload", "header-not-json", "payload-array", "noncanonical-base64", "padded-segments",
                   "plus-slash", "signature-stripped", "four-parts", "five-parts-jwe", "jws-json", "whitespace-",
                   "size-16KiB", "size-1MiB", "transport-bearer-lowercase", "transport-bearer-two-spaces",
                   "transport-two-authorization", "transport-header-invalid-cookie-valid", "descope-refresh-token",
                   "jwks-rsa-1024", "jwks-use-enc", "jwks-oct-key", "fails-whole-set"):
        assert needle in ids, needle
