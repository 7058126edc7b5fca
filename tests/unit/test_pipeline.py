"""pipeline.py + proxy.py + respond.py over plain data: a fake HTTP client stands in for the backends."""

import asyncio
import json

import pytest

from krakend_mitm import config as config_mod
from krakend_mitm.client import BackendResponse
from krakend_mitm.errors import BackendError
from krakend_mitm.messages import IncomingRequest
from krakend_mitm.pipeline import Pipeline, decode_path, param_guard, InvalidRequestPath


class FakeClient:
    """Answers by URL path: a (status, body, headers) tuple, an exception, or a delay then an answer."""

    def __init__(self, answers):
        self.answers = answers
        self.sent = []

    async def send(self, request, follow_redirects=True):
        self.sent.append(request)
        path = request.url.split("/", 3)[3].split("?")[0]
        answer = self.answers.get("/" + path, (404, b"404 page not found\n", [("Content-Type", "text/plain; charset=utf-8")]))
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = (200, b'{"slow":true}', [])
        status, body, headers = answer
        return BackendResponse(status=status, reason="", headers=list(headers), body=body, url=request.url)

    async def aclose(self):
        pass


def pipeline_for(tmp_path, endpoints, answers, **root):
    document = {"version": 3, "host": ["http://b:8000"], "endpoints": endpoints, **root}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(document))
    client = FakeClient(answers)
    return Pipeline(config_mod.load(str(path), environ={}), client=client), client


def request(path, method="GET", headers=(), body=b""):
    raw, _, query = path.partition("?")
    return IncomingRequest(method=method, path=decode_path(raw), raw_path=raw, query=query,
                           headers=tuple(headers) + (("Host", "gw:8080"),), body=body, client_ip="127.0.0.1",
                           host="gw:8080")


def run(pipeline, req):
    return asyncio.run(pipeline.handle(req))


def hdr(reply, name):
    values = [v for k, v in reply.headers if k.lower() == name.lower()]
    return values[0] if values else None


ERR_MSG = {"extra_config": {"router": {"return_error_msg": True}}}


@pytest.mark.parametrize("status,body,expected_status,expected_body,completed", [
    (200, b'{"a":1.0,"b":"<x>"}', 200, b'{"a":1.0,"b":"\\u003cx\\u003e"}', "true"),
    (201, b'{"a":1}', 200, b'{"a":1}', "true"),  # 201 is a success, answered as 200
    (200, b"{}", 200, b"{}", "false"),  # empty data is not complete
    (204, b"", 500, b"invalid status code 204 [GET /x]: http://b:8000/x", "false"),  # lura#535
    (500, b"boom", 500, b"invalid status code 500 [GET /x]: http://b:8000/x", "false"),
    (200, b"[1,2]", 500, None, "false"),  # array without is_collection
    (200, b"not json", 500, None, "false"),
])
def test_parsed_endpoint_status_rules(tmp_path, status, body, expected_status, expected_body, completed):
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}],
                               {"/x": (status, body, [])}, **ERR_MSG)
    reply, trace = run(pipeline, request("/a"))
    assert reply.status == expected_status
    if expected_body is not None:
        assert reply.body == expected_body
    assert hdr(reply, "X-Krakend-Completed") == completed
    assert hdr(reply, "X-Krakend") == "Version 2.13.8"


def test_error_body_only_with_return_error_msg(tmp_path):
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}], {"/x": (503, b"", [])})
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body, hdr(reply, "Content-Type")) == (500, b"", None)


@pytest.mark.parametrize("ttl,expected", [("1h", "public, max-age=3600"), ("500ms", "public, max-age=0"), (None, None)])
def test_cache_control(tmp_path, ttl, expected):
    endpoint = {"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}
    if ttl:
        endpoint["cache_ttl"] = ttl
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/x": (200, b'{"a":1}', [])})
    assert hdr(run(pipeline, request("/a"))[0], "Cache-Control") == expected


def test_no_op_passes_everything_through(tmp_path):
    headers = [("Content-Type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "output_encoding": "no-op", "cache_ttl": "1h",
                                           "backend": [{"url_pattern": "/x"}]}], {"/x": (418, b"raw\n", headers)})
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body) == (418, b"raw\n")
    assert [v for k, v in reply.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert hdr(reply, "X-Krakend-Completed") == "false" and hdr(reply, "Cache-Control") is None


def test_return_error_code_uses_the_backend_status_and_type(tmp_path):
    backend = {"url_pattern": "/x", "extra_config": {"backend/http": {"return_error_code": True}}}
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [backend]}],
                               {"/x": (409, b"conflict!", [("Content-Type", "text/x-custom")])}, **ERR_MSG)
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body, hdr(reply, "Content-Type")) == (409, b"conflict!", "text/x-custom")


def test_return_error_details_is_a_partial_200(tmp_path):
    backend = {"url_pattern": "/x", "extra_config": {"backend/http": {"return_error_details": "b"}}}
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [backend]}],
                               {"/x": (404, b"nope\n", [("Content-Type", "text/plain")])})
    reply, _ = run(pipeline, request("/a"))
    assert reply.status == 200
    assert reply.body == b'{"error_b":{"http_status_code":404,"http_body":"nope\\n","http_body_encoding":"text/plain"}}'
    assert hdr(reply, "X-Krakend-Completed") == "false"


@pytest.mark.parametrize("strategy,backend_status,expected_status,expected_body,completed", [
    ("always", 200, 200, b'{"a":1,"s":true}', "true"),
    ("always", 500, 200, b'{"s":true}', "false"),
    ("success", 500, 500, b"", "false"),
    ("errored", 500, 200, b'{"s":true}', "false"),
    ("errored", 200, 200, b'{"a":1}', "true"),
    ("complete", 200, 200, b'{"a":1,"s":true}', "true"),
    ("incomplete", 200, 200, b'{"a":1}', "true"),
])
def test_static_data_strategies(tmp_path, strategy, backend_status, expected_status, expected_body, completed):
    endpoint = {"endpoint": "/a", "backend": [{"url_pattern": "/x"}],
                "extra_config": {"proxy": {"static": {"strategy": strategy, "data": {"s": True}}}}}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/x": (backend_status, b'{"a":1}', [])})
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body, hdr(reply, "X-Krakend-Completed")) == (expected_status, expected_body, completed)


def test_timeout_is_a_500_context_deadline_exceeded(tmp_path):
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "timeout": "50ms", "backend": [{"url_pattern": "/x"}]}],
                               {"/x": 1.0}, **ERR_MSG)
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body) == (500, b"context deadline exceeded")


def test_connection_errors_are_500_with_the_client_text(tmp_path):
    error = BackendError('Get "http://b:8000/x": dial tcp b:8000: connect: connection refused')
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}], {"/x": error}, **ERR_MSG)
    reply, trace = run(pipeline, request("/a"))
    assert reply.status == 500 and b"connection refused" in reply.body
    assert trace.backend_calls[0].error.endswith("connection refused")


def test_parallel_merge_partial_and_complete(tmp_path):
    endpoint = {"endpoint": "/a", "backend": [{"url_pattern": "/x", "group": "x"}, {"url_pattern": "/y", "group": "y"}]}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/x": (200, b'{"v":1}', []), "/y": (200, b'{"v":2}', [])})
    reply, _ = run(pipeline, request("/a"))
    assert reply.body == b'{"x":{"v":1},"y":{"v":2}}' and hdr(reply, "X-Krakend-Completed") == "true"
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/x": (200, b'{"v":1}', [])})
    reply, _ = run(pipeline, request("/a"))
    assert reply.status == 200 and reply.body == b'{"x":{"v":1}}' and hdr(reply, "X-Krakend-Completed") == "false"


def test_sequential_uses_previous_response_values(tmp_path):
    endpoint = {"endpoint": "/a", "extra_config": {"proxy": {"sequential": True}},
                "backend": [{"url_pattern": "/first"}, {"url_pattern": "/second/{resp0_user.id}"}]}
    pipeline, client = pipeline_for(tmp_path, [endpoint], {"/first": (200, b'{"user":{"id":7.0}}', []),
                                                           "/second/7.0": (200, b'{"ok":true}', [])})
    reply, _ = run(pipeline, request("/a"))
    assert client.sent[1].url == "http://b:8000/second/7.0"
    assert json.loads(reply.body) == {"user": {"id": 7.0}, "ok": True}


def test_router_answers(tmp_path):
    pipeline, client = pipeline_for(tmp_path, [{"endpoint": "/users/{id}", "backend": [{"url_pattern": "/u/{id}"}]}], {})
    assert run(pipeline, request("/nope"))[0].body == b"404 page not found"
    reply, trace = run(pipeline, request("/users/1", method="PUT"))
    assert (reply.status, hdr(reply, "Allow"), trace.rejected) == (405, "GET", True)
    reply, _ = run(pipeline, request("/USERS/1?x=1"))
    assert (reply.status, hdr(reply, "Location")) == (301, "/users/1?x=1")
    assert reply.body == b'<a href="/users/1?x=1">Moved Permanently</a>.\n\n'
    assert hdr(reply, "X-Krakend") is None
    reply, _ = run(pipeline, request("/users/1%3F"))
    assert (reply.status, reply.body, hdr(reply, "Content-Type")) == (400, b"error: encoded url params", "text/plain; charset=utf-8")
    assert client.sent == []


def test_health_and_disable_health(tmp_path):
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}], {})
    reply, _ = run(pipeline, request("/__health"))
    body = json.loads(reply.body)
    assert reply.status == 200 and body["status"] == "ok" and body["agents"] == {}
    assert list(body) == ["agents", "now", "status"] and " +0000 UTC m=+" in body["now"]
    assert hdr(reply, "X-Krakend") is None
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}], {},
                               extra_config={"router": {"disable_health": True}})
    assert run(pipeline, request("/__health"))[0].status == 404


def test_echo_endpoint(tmp_path):
    pipeline, _ = pipeline_for(tmp_path, [{"endpoint": "/a", "backend": [{"url_pattern": "/x"}]}], {}, echo_endpoint=True)
    reply, _ = run(pipeline, request("/__echo/x?a=1", method="POST", body=b"hi"))
    body = json.loads(reply.body)
    assert list(body) == ["req_uri", "req_uri_details", "req_method", "req_querystring", "req_body", "req_headers"]
    assert body["req_uri"] == "/__echo/x?a=1" and body["req_body"] == "hi" and body["req_querystring"] == {"a": ["1"]}


@pytest.mark.parametrize("raw,decoded", [("/a%20b", "/a b"), ("/a/b", "/a/b"), ("/%2F", "//")])
def test_decode_path(raw, decoded):
    assert decode_path(raw) == decoded


def test_decode_path_rejects_bad_escapes():
    with pytest.raises(InvalidRequestPath):
        decode_path("/a%zz")


@pytest.mark.parametrize("params,problem", [
    ({"id": "123"}, None), ({"id": "12?3"}, "error: encoded url params"), ({"id": "1#"}, "error: encoded url params"),
    ({"id": "%41"}, "error: encoded url params"), ({"id": "%zz"}, 'error: invalid URL escape "%zz"'),
])
def test_param_guard(params, problem):
    assert param_guard(params) == problem


class FlakyClient(FakeClient):
    """Fails the first `failures` calls, then answers."""

    def __init__(self, answers, failures):
        super().__init__(answers)
        self.failures = failures

    async def send(self, request, follow_redirects=True):
        self.sent.append(request)
        if len(self.sent) <= self.failures:
            raise BackendError("connection reset by peer")
        return BackendResponse(status=200, reason="", headers=[], body=b'{"n":%d}' % len(self.sent), url=request.url)


def test_concurrent_calls_first_success_wins(tmp_path):
    endpoint = {"endpoint": "/a", "concurrent_calls": 3, "backend": [{"url_pattern": "/x"}]}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {})
    client = FlakyClient({}, failures=2)
    for proxy in pipeline.proxies.values():
        proxy.client = client
    reply, trace = run(pipeline, request("/a"))
    assert reply.status == 200 and reply.body == b'{"n":3}'
    assert len(client.sent) == 3 and len(trace.backend_calls) == 3


def test_shadow_backend_is_called_but_ignored(tmp_path):
    endpoint = {"endpoint": "/a", "backend": [
        {"url_pattern": "/x"},
        {"url_pattern": "/shadow", "extra_config": {"proxy": {"shadow": True}}}]}
    pipeline, client = pipeline_for(tmp_path, [endpoint], {"/x": (200, b'{"a":1}', []), "/shadow": (200, b'{"s":1}', [])})

    async def scenario():
        reply, _ = await pipeline.handle(request("/a"))
        await asyncio.sleep(0)  # let the fire-and-forget shadow call run
        return reply

    reply = asyncio.run(scenario())
    assert reply.body == b'{"a":1}' and hdr(reply, "X-Krakend-Completed") == "true"
    assert sorted(r.url.rsplit("/", 1)[1] for r in client.sent) == ["shadow", "x"]


def test_parallel_merge_deadline_is_85_percent_of_the_timeout(tmp_path):
    endpoint = {"endpoint": "/a", "timeout": "200ms",
                "backend": [{"url_pattern": "/x", "group": "x"}, {"url_pattern": "/slow", "group": "s"}]}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/x": (200, b'{"v":1}', []), "/slow": 0.18})
    reply, _ = run(pipeline, request("/a"))  # 180 ms > 170 ms (85 %) but < 200 ms
    assert reply.status == 200 and reply.body == b'{"x":{"v":1}}' and hdr(reply, "X-Krakend-Completed") == "false"


def test_no_success_in_a_merge_is_a_500_with_every_error(tmp_path):
    endpoint = {"endpoint": "/a", "backend": [{"url_pattern": "/x"}, {"url_pattern": "/y"}]}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {}, **ERR_MSG)
    reply, _ = run(pipeline, request("/a"))
    assert reply.status == 500 and reply.body.count(b"invalid status code 404") == 2 and b"\n" in reply.body


def test_the_body_is_copied_to_every_backend(tmp_path):
    endpoint = {"endpoint": "/a", "method": "POST", "backend": [{"url_pattern": "/x"}, {"url_pattern": "/y"}]}
    pipeline, client = pipeline_for(tmp_path, [endpoint], {"/x": (200, b"{}", []), "/y": (200, b"{}", [])})
    run(pipeline, request("/a", method="POST", body=b'{"k":1}'))
    assert [r.body for r in client.sent] == [b'{"k":1}', b'{"k":1}']


def test_sequential_first_failure_is_500_later_failure_is_partial(tmp_path):
    endpoint = {"endpoint": "/a", "extra_config": {"proxy": {"sequential": True}},
                "backend": [{"url_pattern": "/first"}, {"url_pattern": "/second/{resp0_id}"}]}
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {"/first": (200, b'{"id":1}', [])})
    reply, _ = run(pipeline, request("/a"))
    assert (reply.status, reply.body, hdr(reply, "X-Krakend-Completed")) == (200, b'{"id":1}', "false")
    pipeline, _ = pipeline_for(tmp_path, [endpoint], {})
    assert run(pipeline, request("/a"))[0].status == 500


class RecordingValidator:
    """Accepts every request with fixed claims; records what `url_values` was asked to render."""

    def __init__(self, claims):
        from krakend_mitm.auth import Verdict

        self.verdict = Verdict(200, "", None, claims, (), {"check": "passed"})
        self.asked = []

    async def authenticate(self, headers):
        return self.verdict

    def url_values(self, verdict, names=None):
        from krakend_mitm.auth import render_claim_for_url

        self.asked.append(names)
        claims = verdict.claims
        return {f"JWT.{n}": render_claim_for_url(claims[n]) for n in (claims if names is None else names)
                if n in claims}


def test_jwt_url_values_are_rendered_only_for_the_claims_the_backends_use(tmp_path):
    from krakend_mitm.pipeline import jwt_claim_names

    endpoints = [
        {"endpoint": "/a/{id}", "backend": [
            {"url_pattern": "/u/{JWT.sub}/{id}", "group": "u"},
            {"url_pattern": "/t/{JWT.http://x.io/tenant}/{JWT.sub}", "group": "t"}]},
        {"endpoint": "/b", "backend": [{"url_pattern": "/plain"}]},
    ]
    answers = {"/u/U1/7": (200, b'{"u":1}', []), "/t/T9/U1": (200, b'{"t":1}', []), "/plain": (200, b'{"p":1}', [])}
    document = {"version": 3, "host": ["http://b:8000"], "endpoints": endpoints}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(document))
    config = config_mod.load(str(path), environ={})
    claims = {"sub": "U1", "http://x.io/tenant": "T9", "n": 42.0, "big": {"a": [1, 2]}}
    a, b = RecordingValidator(claims), RecordingValidator(claims)
    client = FakeClient(answers)
    pipeline = Pipeline(config, client=client, validators={0: a, 1: b})
    assert pipeline.jwt_claims == {0: ("sub", "http://x.io/tenant")}
    assert jwt_claim_names(config.endpoints[1]) == ()

    reply_a, _ = run(pipeline, request("/a/7"))
    reply_b, _ = run(pipeline, request("/b"))
    assert reply_a.status == 200 and json.loads(reply_a.body) == {"u": {"u": 1}, "t": {"t": 1}}
    assert reply_b.status == 200 and json.loads(reply_b.body) == {"p": 1}
    assert a.asked == [("sub", "http://x.io/tenant")]  # only what the url_patterns use
    assert b.asked == []  # no {JWT.x} in its backends: nothing rendered at all
    assert sorted(r.url for r in client.sent) == ["http://b:8000/plain", "http://b:8000/t/T9/U1", "http://b:8000/u/U1/7"]


def test_jwt_url_values_with_a_real_validator(tmp_path):
    import base64

    import jwt

    from krakend_mitm.auth import EndpointValidator, parse_validator

    secret = b"a-very-secret-hmac-key-of-32-byt"
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "k1",
                                          "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}]}))
    spec = parse_validator({"auth/validator": {"alg": "HS256", "jwk_local_path": str(keys),
                                                "disable_jwk_security": True}}, path="x", endpoint_path="/a")
    validator = EndpointValidator(spec, None, endpoint_path="/a", log_startup=False)
    token = jwt.encode({"sub": "U1", "n": 42, "other": True}, secret, algorithm="HS256", headers={"kid": "k1"})
    endpoints = [{"endpoint": "/a", "backend": [{"url_pattern": "/u/{JWT.sub}/{JWT.n}/{JWT.gone}"}]}]
    document = {"version": 3, "host": ["http://b:8000"], "endpoints": endpoints}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(document))
    client = FakeClient({})
    pipeline = Pipeline(config_mod.load(str(path), environ={}), client=client, validators={0: validator})
    _, trace = run(pipeline, request("/a", headers=[("Authorization", f"Bearer {token}")]))
    assert trace.auth["status"] == 200
    assert client.sent[0].url.startswith("http://b:8000/u/U1/42/")  # a missing claim keeps its placeholder
    assert "gone" in client.sent[0].url.rsplit("/", 1)[1]
