"""upstream.py: the backend request lura builds (spec §5)."""

import random

import pytest

from krakend_mitm.config import Backend, Endpoint
from krakend_mitm.messages import IncomingRequest
from krakend_mitm.upstream import (
    backend_url, build_request, canonical_header, client_ip, forward_rules, forwarded_query, header_map,
    parse_query, substitute, wire_path,
)


def make_endpoint(input_headers=None, input_query_strings=None, backend_headers=None, backend_query=None,
                  url_pattern="/x/{id}", hosts=("http://b:8081",)):
    backend = Backend(index=0, hosts=hosts, url_pattern=url_pattern, method="GET", encoding="json",
                      input_headers=backend_headers, input_query_strings=backend_query)
    return Endpoint(index=0, path="/a/{id}", router_path="/a/:id", method="GET", params=("id",),
                    backends=(backend,), timeout=2, cache_ttl=0, output_encoding="json",
                    input_headers=input_headers, input_query_strings=input_query_strings)


def make_request(headers=(), query="", body=b"", peer="10.0.0.9", host="localhost:8080"):
    return IncomingRequest(method="GET", path="/a/1", raw_path="/a/1", query=query, headers=tuple(headers),
                           body=body, client_ip=peer, host=host)


def build(endpoint, request, values=None, overrides=()):
    rules = forward_rules(endpoint, endpoint.backends[0])
    return build_request(request, endpoint, endpoint.backends[0], rules, values or {"id": "1"},
                         header_map(request.headers, overrides), client_ip(request), random.Random(1))


@pytest.mark.parametrize("name,canonical", [("x-y-z", "X-Y-Z"), ("autHoriZatiOn", "Authorization"), ("content-type", "Content-Type")])
def test_canonical_header(name, canonical):
    assert canonical_header(name) == canonical


HEADERS = [("Authorization", "bearer 1"), ("x-y-z", "true"), ("A-B-C", "no"), ("Content-Type", "application/json"),
           ("User-Agent", "curl/8"), ("Host", "localhost:8080")]


@pytest.mark.parametrize("endpoint_list,backend_list,expected", [
    # unset: only Content-Type (the docs say none; the code passes it)
    (None, None, {"Content-Type", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host"}),
    (["Authorization", "X-Y-Z"], None, {"Authorization", "X-Y-Z", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host"}),
    (["*"], None, {"Authorization", "X-Y-Z", "A-B-C", "Content-Type", "User-Agent", "X-Forwarded-Via",
                   "X-Forwarded-For", "X-Forwarded-Host"}),
    (["*"], ["Authorization"], {"Authorization", "User-Agent"}),  # backend filter; Go adds its own UA
    (["*"], [""], {"User-Agent"}),
])
def test_header_forwarding(endpoint_list, backend_list, expected):
    sent = build(make_endpoint(endpoint_list, backend_headers=backend_list), make_request(HEADERS))
    assert {k for k, _ in sent.headers} == expected


def test_user_agent_rules():
    kept = dict(build(make_endpoint(["*"]), make_request(HEADERS)).headers)
    assert kept["User-Agent"] == "curl/8" and kept["X-Forwarded-Via"] == "KrakenD Version 2.13.8"
    own = dict(build(make_endpoint(None), make_request(HEADERS)).headers)
    assert own["User-Agent"] == "KrakenD Version 2.13.8" and "X-Forwarded-Via" not in own
    stripped = dict(build(make_endpoint(["*"], backend_headers=[""]), make_request(HEADERS)).headers)
    assert stripped["User-Agent"] == "Go-http-client/1.1"


def test_forwarded_host_is_the_client_host_with_port():
    assert dict(build(make_endpoint(), make_request(host="localhost:8080")).headers)["X-Forwarded-Host"] == "localhost:8080"


@pytest.mark.parametrize("headers,peer,expected", [
    ((), "10.0.0.9", "10.0.0.9"),
    ((("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),), "10.0.0.9", "1.2.3.4"),
    ((("X-Forwarded-For", "1.2.3.4, junk"),), "10.0.0.9", "10.0.0.9"),
    ((("X-Forwarded-For", "junk"), ("X-Real-IP", "9.9.9.9")), "10.0.0.9", "9.9.9.9"),
])
def test_x_forwarded_for(headers, peer, expected):
    assert client_ip(make_request(headers, peer=peer)) == expected


def test_propagated_claims_replace_client_values_before_the_filter():
    request = make_request([("X-User", "forged"), ("X-User", "again")])
    sent = build(make_endpoint(["X-User"]), request, overrides=(("x-user", ("alice",)),))
    assert [v for k, v in sent.headers if k == "X-User"] == ["alice"]


def test_content_length_only_when_forwarded():
    body = b'{"a":1}'
    chunked = build(make_endpoint(["Authorization"]), make_request([("Content-Length", "7")], body=body))
    assert "Content-Length" not in dict(chunked.headers) and chunked.body == body
    listed = build(make_endpoint(["Content-Length"]), make_request([("Content-Length", "7")], body=body))
    assert dict(listed.headers)["Content-Length"] == "7"


@pytest.mark.parametrize("raw,pairs", [
    ("a=1&b=2&b=3", [("a", "1"), ("b", "2"), ("b", "3")]),
    ("a=x+y&c=%41", [("a", "x y"), ("c", "A")]),
    ("a=1;b=2&c=3", [("c", "3")]),  # Go 1.17+ drops pairs with ';'
    ("bad=%zz&ok=1", [("ok", "1")]),
    ("flag&e=", [("flag", ""), ("e", "")]),
])
def test_parse_query_like_go(raw, pairs):
    assert parse_query(raw) == pairs


@pytest.mark.parametrize("allowed,backend_allowed,raw,expected", [
    (None, None, "a=1&b=2", ""),
    (["*"], None, "b=2&a=1&b=3", "a=1&b=2&b=3"),
    (["a"], None, "a=1&b=2", "a=1"),
    (["*"], ["b"], "a=1&b=2", "b=2"),
    (["*"], [""], "a=1&b=2", ""),
    (["*"], None, "q=x y&r=%2F", "q=x+y&r=%2F"),
])
def test_query_forwarding(allowed, backend_allowed, raw, expected):
    endpoint = make_endpoint(input_query_strings=allowed, backend_query=backend_allowed)
    assert forwarded_query(raw, forward_rules(endpoint, endpoint.backends[0])) == expected


@pytest.mark.parametrize("pattern,values,filled", [
    ("/p/{bar}?foo={foo}", {"bar": "b", "foo": "f"}, "/p/b?foo=f"),
    ("/p/{JWT.sub}", {"JWT.sub": "u1"}, "/p/u1"),
    ("/p/{JWT.sub}", {}, "/p/{{.JWT.sub}}"),
    ("/p/{resp0_foo}", {}, "/p/{{.Resp0_foo}}"),
    ("/{a}/{a}", {"a": "x"}, "/x/x"),
])
def test_substitution(pattern, values, filled):
    assert substitute(pattern, values) == filled


@pytest.mark.parametrize("path,wire", [
    ("/a/b", "/a/b"), ("/a b", "/a%20b"), ("/{{.Name}}", "/%7B%7B.Name%7D%7D"), ("/a:b@c!", "/a:b@c!"),
    ("/caf\u00e9", "/caf%C3%A9"), ("/ok%20", "/ok%20"),
])
def test_wire_path(path, wire):
    assert wire_path(path) == wire


def test_backend_url_appends_forwarded_query():
    assert backend_url("http://h:1", "/p?foo=1", "a=2") == "http://h:1/p?foo=1&a=2"
    assert backend_url("http://h:1", "/p", "a=2") == "http://h:1/p?a=2"
    assert backend_url("http://h:1", "/p", "") == "http://h:1/p"


def test_host_choice_is_random_across_hosts():
    endpoint = make_endpoint(hosts=("http://a:10", "http://b:10", "http://c:10"))
    rules = forward_rules(endpoint, endpoint.backends[0])
    rng = random.Random(7)
    request = make_request()
    hosts = {build_request(request, endpoint, endpoint.backends[0], rules, {"id": "1"}, {}, "1.1.1.1", rng).url.split("/")[2]
             for _ in range(60)}
    assert hosts == {"a:10", "b:10", "c:10"}


def test_forward_rules_are_shared_between_backends_with_the_same_filters():
    defaults = forward_rules(make_endpoint(), make_endpoint().backends[0])
    again = make_endpoint(url_pattern="/other", hosts=("http://c:1",))
    assert forward_rules(again, again.backends[0]) is defaults
    assert defaults.endpoint_headers == frozenset({"Content-Type"}) and defaults.endpoint_query == frozenset()
    assert defaults.backend_headers is None and defaults.backend_query is None and not defaults.forwards_content_length
    filtered = make_endpoint(("x-a", "Content-Length"), ("q",), backend_query=("q",))
    rules = forward_rules(filtered, filtered.backends[0])
    assert rules is not defaults and rules is forward_rules(filtered, filtered.backends[0])
    assert rules.endpoint_headers == frozenset({"X-A", "Content-Length"}) and rules.forwards_content_length
    assert rules.endpoint_query == frozenset({"q"}) == rules.backend_query
    # a hand-built endpoint with lists (unhashable) gets its own, equal, rules
    listed = make_endpoint(["x-a", "Content-Length"], ["q"], backend_query=["q"])
    assert forward_rules(listed, listed.backends[0]) == rules
