"""`krakend-mitm check`: each fatal error of spec §2.2–§2.3, and validator problems, with its JSON path."""

import json

import pytest

from krakend_mitm.cli import all_problems, cmd_check

BACKEND = [{"host": ["http://127.0.0.1:9000"], "url_pattern": "/x"}]


def endpoint(path="/a", **extra):
    return {"endpoint": path, "backend": BACKEND, **extra}


CASES = [
    # §2.2, in KrakenD's evaluation order
    ("version", {"version": 1, "endpoints": []}, "version", "unsupported version: 1 (want: 3)"),
    ("listen_ip", {"version": 3, "listen_ip": "300.1.1.1", "endpoints": []}, "listen_ip", "invalid ip address 300.1.1.1"),
    ("service host", {"version": 3, "host": ["ftp://x"], "endpoints": []}, "host[0]", "host ftp://x not valid: invalid host"),
    ("invalid path", {"version": 3, "endpoints": [endpoint("/a/*x/b", method="GET")]}, "endpoints[0].endpoint",
     "ignoring the 'GET /a/*x/b' endpoint, since it is invalid!!!"),
    ("0 backends", {"version": 3, "endpoints": [{"endpoint": "/a", "backend": []}]}, "endpoints[0].backend",
     "ignoring the ' /a' endpoint, since it has 0 backends defined!"),
    ("no-op > 1 backend", {"version": 3, "endpoints": [endpoint(output_encoding="no-op", backend=BACKEND * 2)]},
     "endpoints[0].output_encoding", "can not use NoOp encoding with more than one backends connected to the same endpoint"),
    ("backend host", {"version": 3, "endpoints": [endpoint(backend=[{"host": ["http://x:1"], "url_pattern": "/"}])]},
     "endpoints[0].backend[0].host[0]", "host http://x:1 not valid: invalid host"),
    ("undefined param", {"version": 3, "endpoints": [endpoint("/a/{id}", backend=[{"host": ["h:80"], "url_pattern": "/{uid}"}])]},
     "endpoints[0].backend[0].url_pattern",
     "undefined output param 'uid'! endpoint: GET /a/:id, backend: 0. input: [id], output: [uid]"),
    # §2.3, route registration
    ("duplicate route", {"version": 3, "endpoints": [endpoint("/a"), endpoint("/a")]}, "endpoints[1]",
     "handlers are already registered for path '/a'"),
    ("conflicting params", {"version": 3, "endpoints": [endpoint("/a/{x}", backend=[{"host": ["h:80"], "url_pattern": "/{x}"}]),
                                                        endpoint("/a/{y}", backend=[{"host": ["h:80"], "url_pattern": "/{y}"}])]},
     "endpoints[1]", "':y' in new path '/a/:y' conflicts with existing wildcard ':x' in existing prefix '/a/:x'"),
    ("unnamed wildcard", {"version": 3, "endpoints": [endpoint("/foo/*")]}, "endpoints[0]",
     "wildcards must be named with a non-empty name in path '/foo/*'"),
    # auth/validator problems
    ("unknown alg", {"version": 3, "endpoints": [endpoint(extra_config={"auth/validator": {"alg": "XX256", "jwk_url": "https://x"}})]},
     "endpoints[0].extra_config.auth/validator.alg", "JOSE: unknown algorithm XX256"),
    ("insecure jwk_url", {"version": 3, "endpoints": [endpoint(extra_config={"auth/validator": {"alg": "RS256", "jwk_url": "http://x"}})]},
     "endpoints[0].extra_config.auth/validator", "insecure"),
]


@pytest.mark.parametrize("name,document,path,message", CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_path(tmp_path, capsys, name, document, path, message):
    config = tmp_path / "krakend.json"
    config.write_text(json.dumps(document))
    problems = all_problems(str(config))
    assert any(p.path.startswith(path) and message in p.message for p in problems), [(p.path, p.message) for p in problems]
    assert cmd_check(str(config)) == 1
    out = capsys.readouterr().out
    assert f"{config}: {problems[0].path}" in out


def test_a_good_config_is_syntax_ok(tmp_path, capsys):
    config = tmp_path / "krakend.json"
    config.write_text(json.dumps({"version": 3, "endpoints": [endpoint()]}))
    assert cmd_check(str(config)) == 0 and capsys.readouterr().out == "Syntax OK!\n"
