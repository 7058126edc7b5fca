"""Bounded property tests (hypothesis): the token parser and validator, the config loader and the
router never fail with anything but their own clean outcome.

* tokens: random and mutated tokens -> only a Verdict (401, or 200 for a mutant that still is the
  same signed token: whitespace, padding); validly signed random claims -> 200 only when every rule
  of the spec holds;
* config: random and mutated krakend.json documents (and raw bytes) -> a loaded gateway, or
  ConfigError with a JSON path, never another exception;
* router: random paths (percent-encoding, `..`, `//`, unicode) -> never an exception, never a raw
  CR/LF or protocol-relative Location, and an encoded parameter never reaches a backend.

`HARDENING_FUZZ_SCALE` multiplies every `max_examples` (scripts/fuzz_long.py runs the long profile).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import string
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from hardening_corpus import AUDIENCE, ISSUER, compact, corpus_keys, js, seg
from hardening_kit import ROOT
from jwt_testkit import b64, public_jwk

from krakend_mitm import config as config_mod
from krakend_mitm.auth import EndpointValidator, parse_validator
from krakend_mitm.auth.claims import ClaimsError, decode_payload
from krakend_mitm.auth.jws import JWSError, header_policy, parse_jws, token_key_id
from krakend_mitm.auth.stage import AuthStage
from krakend_mitm.client import BackendResponse
from krakend_mitm.errors import ConfigError
from krakend_mitm.messages import IncomingRequest
from krakend_mitm.pipeline import InvalidRequestPath, Pipeline, decode_path
from krakend_mitm.upstream import bytes_unquote

SCALE = max(1, int(os.environ.get("HARDENING_FUZZ_SCALE", "1")))


def profile(examples: int, deadline_ms: int = 2000):
    return settings(max_examples=examples * SCALE, deadline=timedelta(milliseconds=deadline_ms), database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                 st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                           max_leaves=12)

# =============================================================================================
# tokens


KEYS = corpus_keys()
_DIR = Path(tempfile.mkdtemp(prefix="hardening-fuzz-"))
(_DIR / "keys.json").write_text(json.dumps({"keys": [public_jwk(KEYS.k1, "k1"), public_jwk(KEYS.ec, "e1")]}))


def _validator(**extra) -> EndpointValidator:
    cfg = {"alg": "RS256", "jwk_local_path": str(_DIR / "keys.json"), "disable_jwk_security": True,
           "issuer": ISSUER, "audience": AUDIENCE, **extra}
    spec = parse_validator({"auth/validator": cfg}, path="endpoints[0].extra_config", endpoint_path="/fuzz")
    return EndpointValidator(spec, None, endpoint_path="/fuzz", log_startup=False)


VALIDATOR = _validator()
LOOP = asyncio.new_event_loop()


def authenticate(headers, validator=VALIDATOR):
    return LOOP.run_until_complete(validator.authenticate(headers))


def good_claims(now: float | None = None) -> dict:
    now = int(now or time.time())
    return {"iss": ISSUER, "aud": list(AUDIENCE), "sub": "U1", "iat": now - 5, "exp": now + 3600, "jti": "fuzz"}


B64 = string.ascii_letters + string.digits + "-_"
token_chars = st.sampled_from(list(B64 + ".=+/ \t{}\"[]:,\u00a0\u3000%\\\x00é"))


@profile(300)
@given(st.one_of(st.text(max_size=300), st.text(token_chars, max_size=400),
                 st.lists(st.text(B64 + "=", max_size=60), min_size=0, max_size=6).map(".".join),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
@example("." * 5000)
@example("{" * 3000)
@example('{"payload":"e30","signatures":' + "[" * 3000 + "]" * 3000 + "}")
@example(b64(b'{"alg":"RS256","x":' + b"[" * 3000 + b"]" * 3000 + b"}") + ".e30.AA")
def test_fuzz_parser_only_raises_its_own_errors(token):
    try:
        parsed = parse_jws(token)
    except JWSError as err:
        assert isinstance(err.message, str) and err.message
        return
    header_policy(parsed)
    for strategy in ("kid", "x5t", "x5t#S256", "kid_x5t"):
        assert isinstance(token_key_id(parsed, strategy), str)
    try:
        claims, _registered = decode_payload(parsed.payload)
    except ClaimsError as err:
        assert err.message
        return
    assert isinstance(claims, dict)


@profile(150)
@given(st.one_of(st.text(token_chars, max_size=300),
                 st.tuples(json_values, json_values, st.binary(max_size=300)).map(
                     lambda t: f"{seg(js(t[0]))}.{seg(js(t[1]))}.{b64(t[2])}")),
       st.sampled_from(["Bearer ", "bearer ", "", "BEARER  ", "Basic "]))
def test_fuzz_validator_random_tokens_are_refused_cleanly(token, scheme):
    verdict = authenticate([("Authorization", scheme + token)])
    assert verdict.status == 401 and verdict.message and not verdict.claims


MUTATIONS = ("replace", "insert", "delete", "whitespace", "pad", "swap", "truncate", "duplicate", "case")


def mutate(token: str, data) -> str:
    kind = data.draw(st.sampled_from(MUTATIONS))
    if not token:
        return token
    i = data.draw(st.integers(0, len(token) - 1))
    if kind == "replace":
        return token[:i] + data.draw(token_chars) + token[i + 1:]
    if kind == "insert":
        return token[:i] + data.draw(token_chars) + token[i:]
    if kind == "delete":
        return token[:i] + token[i + 1:]
    if kind == "whitespace":
        return token[:i] + data.draw(st.sampled_from([" ", "\t", "\u00a0", "\u3000", "\u2028"])) + token[i:]
    parts = token.split(".")
    if kind == "pad":
        j = data.draw(st.integers(0, len(parts) - 1))
        parts[j] += "=" * data.draw(st.integers(1, 3))
        return ".".join(parts)
    if kind == "swap" and len(parts) == 3:
        a, b = data.draw(st.permutations([0, 1, 2]))[:2]
        parts[a], parts[b] = parts[b], parts[a]
        return ".".join(parts)
    if kind == "truncate":
        return token[:i]
    if kind == "duplicate":
        return token + "." + parts[data.draw(st.integers(0, len(parts) - 1))]
    return token[:i] + token[i:].swapcase()


def _same_signed_token(a: str, b: str) -> bool:
    try:
        pa, pb = parse_jws(a), parse_jws(b)
    except JWSError:
        return False
    return (pa.signing_input, pa.signature, pa.header) == (pb.signing_input, pb.signature, pb.header)


@profile(200)
@given(st.data())
def test_fuzz_mutated_tokens_never_forge(data):
    original = compact({"alg": "RS256", "typ": "JWT", "kid": "k1"}, good_claims(), KEYS.k1)
    assert authenticate([("Authorization", "Bearer " + original)]).status == 200
    mutant = original
    for _ in range(data.draw(st.integers(1, 3))):
        mutant = mutate(mutant, data)
    verdict = authenticate([("Authorization", "Bearer " + mutant)])
    assert verdict.status in (200, 401)
    if verdict.status == 200:
        # only spellings of the very same signed token are accepted (whitespace, = padding)
        assert _same_signed_token(original, mutant), mutant


header_extras = st.dictionaries(st.sampled_from(["typ", "cty", "crit", "jku", "x5u", "jwk", "x5c", "zip", "b64",
                                                 "x5t", "nonce", "kid", "alg", "foo"]), json_values, max_size=3)
claim_names = st.sampled_from(["iss", "aud", "sub", "jti", "exp", "nbf", "iat", "drn", "cnf", "roles", "nsec", "x"])


@profile(200)
@given(header_extras, st.dictionaries(claim_names, json_values, max_size=5), st.booleans())
def test_fuzz_signed_random_claims_accept_only_what_the_spec_accepts(extra_header, overrides, drop_defaults):
    now = time.time()
    header = {"alg": "RS256", "kid": "k1", **extra_header}
    claims = {} if drop_defaults else good_claims(now)
    claims.update(overrides)
    token = compact(header, claims, KEYS.k1)
    verdict = authenticate([("Authorization", "Bearer " + token)])
    assert verdict.status in (200, 401), verdict
    if verdict.status != 200:
        return
    # the oracle: every rule of jwt-validator.md §5/§7/§8/§20 and descope.md §9 holds
    assert header["alg"] == "RS256" and header.get("kid") == "k1"
    assert not {"crit", "jku", "x5u", "jwk", "x5c", "zip", "b64"} & set(header)
    assert claims.get("iss") == ISSUER
    aud = claims.get("aud")
    aud = [aud] if isinstance(aud, str) else aud
    assert isinstance(aud, list) and all(isinstance(a, str) for a in aud) and set(AUDIENCE) <= set(aud)
    for name in ("sub", "jti"):
        assert claims.get(name) is None or isinstance(claims[name], str)
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), name
    def as_int(v):
        return int(v) if math.isfinite(v) and -9.2e18 < v < 9.2e18 else -(2**63)
    if claims.get("exp") is not None:
        assert as_int(claims["exp"]) >= now - 2
    if claims.get("nbf") is not None:
        assert as_int(claims["nbf"]) <= now + 2
    if claims.get("iat") is not None:
        assert as_int(claims["iat"]) <= now + 2
    assert claims.get("drn") != "DSR"
    assert not (isinstance(claims.get("cnf"), dict) and "jkt" in claims["cnf"])


# =============================================================================================
# config loader

ROOT_KEYS = ["version", "port", "host", "timeout", "cache_ttl", "endpoints", "extra_config", "listen_ip",
             "output_encoding", "name", "debug_endpoint", "echo_endpoint", "disable_compression", "tls", "plugin"]
ENDPOINT_KEYS = ["endpoint", "method", "backend", "extra_config", "timeout", "cache_ttl", "input_headers",
                 "input_query_strings", "output_encoding", "concurrent_calls"]
BACKEND_KEYS = ["host", "url_pattern", "method", "encoding", "is_collection", "target", "allow", "deny", "mapping",
                "group", "extra_config", "input_headers", "input_query_strings", "sd", "disable_host_sanitize"]
VALIDATOR_KEYS = ["alg", "jwk_url", "jwk_local_path", "disable_jwk_security", "cache", "cache_duration", "issuer",
                  "audience", "roles", "roles_key", "roles_key_is_nested", "scopes", "scopes_key", "scopes_matcher",
                  "auth_header_name", "cookie_key", "propagate_claims", "key_identify_strategy", "leeway",
                  "failed_jwk_key_cooldown", "operation_debug", "jwk_fingerprints", "cipher_suites", "jwk_local_ca",
                  "secret_url", "cypher_key", "propagate_claims_preserve_array"]
plausible = st.one_of(
    json_values,
    st.sampled_from(["/a", "/a/{id}", "/{id}", "/a/{id}/{id}", "/__health", "*", "/a/*", "/a//b", "", "/é",
                     "http://127.0.0.1:8081", "127.0.0.1", "RS256", "HS256", "none", "1s", "-1s", "1e400", "3",
                     "GET", "POST", "get", "FOO", "json", "no-op", "string", "https://x.example/k", "http://x/k",
                     "{JWT.sub}", "/x/{JWT.sub}", "/x/{id}", "/x/{resp0_a}", "kid", "x5t", "all", "any"]),
    st.lists(st.sampled_from(["http://127.0.0.1:8081", "localhost:80", "", "x", "*", "Authorization"]), max_size=3),
)


def _object(keys: list[str], values) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(keys), values, max_size=6)


validator_obj = _object(VALIDATOR_KEYS, plausible)
backend_obj = _object(BACKEND_KEYS, plausible)
endpoint_obj = st.builds(
    lambda e, backends, validator: {**e, "backend": backends,
                                    **({"extra_config": {"auth/validator": validator}} if validator is not None else {})},
    _object(ENDPOINT_KEYS, plausible), st.one_of(st.lists(backend_obj, max_size=2), plausible),
    st.one_of(st.none(), validator_obj, plausible))
documents = st.builds(
    lambda root, endpoints, version: {**root, "version": version, "endpoints": endpoints},
    _object(ROOT_KEYS, plausible), st.one_of(st.lists(endpoint_obj, max_size=3), plausible),
    st.one_of(st.just(3), st.just("3"), plausible))


class _NullClient:
    async def send(self, request, follow_redirects=True):  # pragma: no cover - never called here
        raise AssertionError("no backend call while loading")

    async def aclose(self):
        pass


def load_everything(path: str):
    """What a (re)load does: the loader, the auth stage (validators, key sets) and the route table."""
    config = config_mod.load(path, environ={})
    stage = AuthStage(config, jwk_url_map=())
    Pipeline(config, client=_NullClient(), validators=stage.validators)
    stage.stop()
    return config


def assert_loads_or_config_error(text: str | bytes, suffix: str = ".json") -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, dir=_DIR, delete=False) as f:
        f.write(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        path = f.name
    try:
        load_everything(path)
    except ConfigError as err:
        assert isinstance(err.path, str) and isinstance(err.message, str) and err.message
        if err.path:
            assert not err.path.startswith(".") and " " not in err.path.split("[", 1)[0], err.path
    finally:
        os.unlink(path)


@profile(100)
@given(documents)
def test_fuzz_config_documents_load_or_fail_with_a_json_path(document):
    assert_loads_or_config_error(json.dumps(document))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


SHIPPED = [json.loads(p.read_text()) for p in sorted((ROOT / "configs").rglob("*.json"))] or [{"version": 3}]


@profile(100)
@given(st.data())
def test_fuzz_shipped_configs_mutated(data):
    document = copy.deepcopy(data.draw(st.sampled_from(SHIPPED)))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        where = data.draw(st.sampled_from(paths))
        parent = document
        for part in where[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "wrap", "plausible"]))
        if action == "delete":
            del parent[where[-1]]
        elif action == "wrap":
            parent[where[-1]] = [parent[where[-1]]]
        elif action == "plausible":
            parent[where[-1]] = data.draw(plausible)
        else:
            parent[where[-1]] = data.draw(json_values)
    assert_loads_or_config_error(json.dumps(document))


@profile(100, deadline_ms=5000)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)), st.sampled_from([".json", ".yaml"]))
@example(b"[" * 100_000, ".json")
@example(b"{\"version\": 3, \"endpoints\": " + b"[" * 50_000 + b"]" * 50_000 + b"}", ".json")
@example(b"[" * 1_500, ".yaml")
@example(b"a: &a [*a]", ".yaml")
@example(b"version: 1e400", ".yaml")
@example(b'{"version": 1e400}', ".json")
@example(b'{"version": 3, "port": 1e400}', ".json")
@example(b'{"version": 3, "timeout": 1e400}', ".json")
@example(b"\xff\xfe{}", ".json")
def test_fuzz_config_raw_bytes(raw, suffix):
    assert_loads_or_config_error(raw, suffix)


# =============================================================================================
# router


class FakeClient:
    def __init__(self):
        self.sent = []

    async def send(self, request, follow_redirects=True):
        self.sent.append(request)
        return BackendResponse(status=200, reason="OK", headers=[("Content-Type", "application/json")],
                               body=b'{"ok":true}', url=request.url)

    async def aclose(self):
        pass


ROUTER_CONFIG = {"version": 3, "host": ["http://backend.test:8000"], "endpoints": [
    {"endpoint": "/users/{id}", "backend": [{"url_pattern": "/u/{id}"}]},
    {"endpoint": "/users/{id}/files/{file}", "backend": [{"url_pattern": "/f/{id}/{file}"}]},
    {"endpoint": "/static/page", "backend": [{"url_pattern": "/s"}]},
    {"endpoint": "/{first}", "backend": [{"url_pattern": "/r/{first}"}]},
    {"endpoint": "/a/{b}/c", "method": "POST", "backend": [{"url_pattern": "/x/{b}"}]},
]}
(_DIR / "router.json").write_text(json.dumps(ROUTER_CONFIG))
ROUTER_CLIENT = FakeClient()
PIPELINE = Pipeline(config_mod.load(str(_DIR / "router.json"), environ={}), client=ROUTER_CLIENT)
PATTERNS = {"/u/": 1, "/f/": 2, "/r/": 1, "/x/": 1}

segments = st.one_of(
    st.text(string.ascii_letters + string.digits + "-._~", max_size=6),
    st.sampled_from(["..", ".", "", "users", "USERS", "static", "page", "files", "a", "c", "%2F", "%2f", "%3F", "%23",
                     "%25", "%2525", "%00", "%0D%0A", "%5C", "%2E%2E", "%zz", "%", "%C3%A9", "%FF", "é", "\u202e",
                     ";", "?x", "#y", "@", "+", "%20", " "]),
    st.binary(min_size=1, max_size=3).map(lambda b: "".join(f"%{c:02X}" for c in b)),
)
paths = st.builds(lambda segs, trailing, query: "/" + "/".join(segs) + ("/" if trailing else "") + query,
                  st.lists(segments, max_size=5), st.booleans(),
                  st.sampled_from(["", "?a=1", "?x=%0D%0A", "?"]))


@profile(300)
@given(paths, st.sampled_from(["GET", "POST", "HEAD", "DELETE"]), st.sampled_from([None, "/", "/api", "//evil.com",
                                                                                 "/\\evil.com", "a%0d%0ab"]))
@example("/users/a%0D%0ASet-Cookie:%20x=1/", "GET", None)
@example("/%5Cevil.com/", "GET", None)
@example("/users/%2E%2E/", "GET", "//evil.com")
def test_fuzz_router_paths(raw, method, forwarded_prefix):
    raw_path, _, query = raw.partition("?")
    assume(all(32 < ord(c) < 127 or ord(c) > 159 for c in raw_path))  # a request line carries no controls or spaces
    try:
        path = decode_path(raw_path)
    except InvalidRequestPath:
        return  # the addon answers Go's 400 Bad Request
    headers = (("Host", "gw.test:8080"),) + ((("X-Forwarded-Prefix", forwarded_prefix),) if forwarded_prefix else ())
    req = IncomingRequest(method=method, path=path, raw_path=raw_path, query=query, headers=headers, body=b"",
                          client_ip="127.0.0.1", host="gw.test:8080")
    ROUTER_CLIENT.sent.clear()
    reply, trace = LOOP.run_until_complete(PIPELINE.handle(req))
    assert reply.status in (200, 301, 307, 400, 404, 405), (reply.status, trace.reason)
    for name, value in reply.headers:
        assert all(32 <= ord(c) < 127 for c in value), (name, value)  # no CR/LF, no raw non-ASCII in a header
    if reply.status in (301, 307):
        location = dict(reply.headers)["Location"]
        assert location.startswith("/") and not location.startswith("//") and not location.startswith("/\\"), location
    for sent in ROUTER_CLIENT.sent:
        url_path = sent.url.split("://", 1)[1].split("/", 1)[1]
        url_path = "/" + url_path.split("?", 1)[0]
        assert "#" not in sent.url
        prefix = url_path[:3]
        values = url_path[3:].split("/")
        assert prefix in PATTERNS and len(values) == PATTERNS[prefix], sent.url
        for raw_value in values:
            value = bytes_unquote(raw_value)
            # an encoded '/', '?', '#' or '%' in a client parameter never reaches the backend decoded
            assert not set(value) & set("/?#%"), (raw, sent.url)
            assert value, sent.url
        assert sorted(bytes_unquote(v) for v in values) == sorted(trace.params.values()), (trace.params, sent.url)
