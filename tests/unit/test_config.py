"""config.py: KrakenD's loading rules and fatal errors (spec §2), each with its JSON path."""

import json

import pytest

from krakend_mitm import config
from krakend_mitm.errors import ConfigError
from krakend_mitm.goduration import duration_from_config, parse_duration


def write(tmp_path, document, name="krakend.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def endpoint(path="/a", method=None, **extra):
    e = {"endpoint": path, "backend": [{"host": ["http://127.0.0.1:9999"], "url_pattern": "/x"}]}
    if method is not None:
        e["method"] = method
    e.update(extra)
    return e


def doc(*endpoints, **root):
    d = {"version": 3, "endpoints": list(endpoints)}
    d.update(root)
    return d


@pytest.mark.parametrize("text,seconds", [
    ("3s", 3), ("1500ms", 1.5), ("150us", 150e-6), ("150µs", 150e-6), ("1m30s", 90), ("2h", 7200), ("0", 0),
    ("-1s", -1), ("1.5s", 1.5),
])
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,message", [
    ("3600", 'time: missing unit in duration "3600"'),
    ("3x", 'time: unknown unit "x" in duration "3x"'),
    ("", 'time: invalid duration ""'),
])
def test_go_duration_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_duration(text)


def test_a_bare_number_is_nanoseconds():
    assert duration_from_config(3600) == pytest.approx(3.6e-6)


# --------------------------------------------------------------------------- fatal errors, §2.2


FATAL_CASES = [
    ("version missing", {"endpoints": []}, "version", "unsupported version: 0 (want: 3)"),
    ("version 2", {"version": 2, "endpoints": []}, "version", "unsupported version: 2 (want: 3)"),
    ("listen_ip", doc(listen_ip="not-an-ip"), "listen_ip", "invalid ip address not-an-ip"),
    ("service host", doc(host=["http://x.com/api"]), "host[0]", "host http://x.com/api not valid: invalid host"),
    ("invalid path with *", doc(endpoint("/a/*b")), "endpoints[0].endpoint",
     "ignoring the ' /a/*b' endpoint, since it is invalid!!!"),
    ("reserved __health", doc(endpoint("/api/__health", method="GET")), "endpoints[0].endpoint",
     "ignoring the 'GET /api/__health' endpoint, since it is invalid!!!"),
    ("reserved __debug subpath", doc(endpoint("/__debug/x")), "endpoints[0].endpoint",
     "ignoring the ' /__debug/x' endpoint, since it is invalid!!!"),
    ("0 backends", doc({"endpoint": "/a/{id}", "method": "post", "backend": []}), "endpoints[0].backend",
     "ignoring the 'post /a/{id}' endpoint, since it has 0 backends defined!"),
    ("no-op with 2 backends", doc(dict(endpoint("/a"), output_encoding="no-op",
                                       backend=[{"url_pattern": "/x", "host": ["h:80"]}] * 2)),
     "endpoints[0].output_encoding",
     "can not use NoOp encoding with more than one backends connected to the same endpoint"),
    ("backend host", doc({"endpoint": "/a", "backend": [{"host": ["http://[::1]:80"], "url_pattern": "/x"}]}),
     "endpoints[0].backend[0].host[0]", "host http://[::1]:80 not valid: invalid host"),
    ("undefined placeholder", doc({"endpoint": "/a/{id}", "backend": [{"host": ["h:80"], "url_pattern": "/x/{idd}/{id}"}]}),
     "endpoints[0].backend[0].url_pattern",
     "undefined output param 'idd'! endpoint: GET /a/:id, backend: 0. input: [id], output: [id idd]"),
    ("unparsable duration", doc(timeout="3600"), "timeout", 'time: missing unit in duration "3600"'),
]


@pytest.mark.parametrize("name,document,path,message", FATAL_CASES, ids=[c[0] for c in FATAL_CASES])
def test_fatal_errors_carry_krakend_text_and_json_path(tmp_path, name, document, path, message):
    with pytest.raises(ConfigError) as raised:
        config.load(write(tmp_path, document), environ={})
    assert raised.value.path == path
    assert raised.value.message == message


def test_errors_are_reported_in_krakend_order(tmp_path):
    bad = {"version": 1, "listen_ip": "x", "endpoints": [endpoint("/a/*x")]}
    _, problems = config.check(write(tmp_path, bad), environ={})
    assert [p.path for p in problems] == ["version", "listen_ip", "endpoints[0].endpoint"]


@pytest.mark.parametrize("text,message", [
    ("", "unexpected end of JSON input"),
    ('{"version": 3,', "unexpected end of JSON input"),
    (">", "invalid character '>' looking for beginning of value"),
    ("[]", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
])
def test_syntax_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("{", r"\{").replace("}", r"\}")):
        config.load(write(tmp_path, text), environ={})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        config.load(str(tmp_path / "absent.json"), environ={})


# --------------------------------------------------------------------------- decoding


def test_defaults(tmp_path):
    loaded = config.load(write(tmp_path, doc(endpoint("a"))), environ={})
    e = loaded.endpoints[0]
    assert (loaded.port, loaded.timeout, e.method, e.path, e.output_encoding) == (8080, 2.0, "GET", "/a", "json")
    assert e.input_headers is None and e.input_query_strings is None
    assert e.backends[0].hosts == ("http://127.0.0.1:9999",)


def test_yaml_by_extension(tmp_path):
    text = "version: 3\nport: 9000\nendpoints:\n  - endpoint: /a\n    backend:\n      - host: [h:80]\n        url_pattern: /x\n"
    loaded = config.load(write(tmp_path, text, "krakend.yaml"), environ={})
    assert loaded.port == 9000 and loaded.endpoints[0].backends[0].hosts == ("http://h:80",)


def test_weak_typing_and_env_override(tmp_path):
    path = write(tmp_path, doc(endpoint("/a", timeout="1s"), port="8081", cache_ttl="1m"))
    loaded = config.load(path, environ={"KRAKEND_PORT": "9001", "KRAKEND_TIMEOUT": "5s"})
    assert loaded.port == 9001 and loaded.timeout == 5.0 and loaded.cache_ttl == 60
    assert loaded.endpoints[0].timeout == 1.0


@pytest.mark.parametrize("host,clean", [
    ("http://x.io/", "http://x.io"), ("x.io", "http://x.io"), ("https://x.io:8443", "https://x.io:8443"),
    ("127.0.0.1:8081", "http://127.0.0.1:8081"), ("http://x.com/api", None), ("http://x:1", None),
    ("http://user@x.com", None), ("http://[::1]:80", None),
])
def test_host_sanitization(host, clean):
    assert config.sanitize_host(host) == clean


def test_disable_host_sanitize_keeps_hosts_verbatim(tmp_path):
    d = doc({"endpoint": "/a", "backend": [{"host": ["http://x.com/api"], "url_pattern": "/x", "disable_host_sanitize": True}]})
    assert config.load(write(tmp_path, d), environ={}).endpoints[0].backends[0].hosts == ("http://x.com/api",)


def test_both_namespace_spellings(tmp_path):
    d = doc(endpoint("/a"), extra_config={"github_com/luraproject/lura/router/gin": {"return_error_msg": True}})
    assert config.load(write(tmp_path, d), environ={}).router.return_error_msg is True


def test_unsupported_namespaces_are_warnings_not_errors(tmp_path):
    d = doc(endpoint("/a", extra_config={"qos/ratelimit/router": {"max_rate": 1}}),
            extra_config={"telemetry/logging": {}, "security/cors": {}})
    loaded = config.load(write(tmp_path, d), environ={})
    assert "extra_config.telemetry/logging: not supported, ignored" in loaded.warnings
    assert "endpoints[0].extra_config.qos/ratelimit/router: not supported, ignored" in loaded.warnings


def test_no_op_endpoint_forces_no_op_backends(tmp_path):
    d = doc(endpoint("/a", output_encoding="no-op"))
    assert config.load(write(tmp_path, d), environ={}).endpoints[0].backends[0].encoding == "no-op"


def test_unroutable_method_is_not_an_error(tmp_path):
    assert config.load(write(tmp_path, doc(endpoint("/a", method="head"))), environ={}).endpoints[0].method == "HEAD"


def test_conformance_fixture_loads():
    from pathlib import Path
    fixture = Path(__file__).resolve().parents[3] / "shared/conformance/krakend-ce/fixtures/krakend.json"
    if not fixture.exists():
        pytest.skip("../shared/conformance is not present")
    loaded = config.load(str(fixture), environ={})
    assert loaded.router.return_error_msg and loaded.timeout == 3.0 and loaded.cache_ttl == 3600


# --------------------------------------------------------------------------- case-insensitive keys


def test_keys_match_case_insensitively(tmp_path):
    d = {"Version": 3, "ENDPOINTS": [{"Endpoint": "/a", "METHOD": "post", "Backend": [
        {"Host": ["http://h:80"], "URL_Pattern": "/x", "Allow": ["id"]}]}]}
    e = config.load(write(tmp_path, d), environ={}).endpoints[0]
    assert (e.path, e.method, e.backends[0].url_pattern, e.backends[0].allow) == ("/a", "POST", "/x", ("id",))
    assert e.backends[0].hosts == ("http://h:80",)


@pytest.mark.parametrize("spellings,method", [
    ({"Method": "post", "METHOD": "put"}, "POST"),  # several case-insensitive matches: the first written
    ({"METHOD": "put", "Method": "post"}, "PUT"),
    ({"Method": "post", "method": "delete"}, "DELETE"),  # the exact name beats an earlier spelling
    ({"method": "delete", "METHOD": "put"}, "DELETE"),
])
def test_of_several_spellings_the_exact_then_the_first_wins(tmp_path, spellings, method):
    e = {"endpoint": "/a", "backend": [{"host": ["http://h:80"], "url_pattern": "/x"}], **spellings}
    assert config.load(write(tmp_path, doc(e)), environ={}).endpoints[0].method == method


OBJECTS = [
    {},
    {"method": "a"},
    {"Method": "a", "METHOD": "b", "method": "c"},
    {"METHOD": "b", "Method": "a"},
    {"mEtHoD": None, "Method": "a"},  # a null first spelling still wins (and reads as absent)
    {1: "int key", "Timeout": "1s", "TIMEOUT": "2s", "host": ["h"]},  # YAML allows non-string keys
    {"ß": 1, "SS": 2, "İ": 3, "K": 4},  # non-ASCII: str.lower, like the linear scan
]


@pytest.mark.parametrize("obj", OBJECTS)
def test_an_objects_fields_find_what_the_linear_scan_finds(obj):
    fields = config._Fields(obj)
    for key in ("method", "Method", "METHOD", "timeout", "Timeout", "host", "ss", "SS", "ß", "i̇", "k", "K", "absent"):
        assert config._Decoder.get(fields, key) == config._Decoder.get(obj, key) == config._get(obj, key), key
        if key.islower():  # what the decoding methods look up directly
            assert fields.get(key) == config._get(obj, key), key


def test_the_decoder_asks_for_lower_case_names_only():
    # the decoding methods look names up in `_Fields` directly, which is only right for lower-case names
    import inspect
    import re

    source = inspect.getsource(config)
    asked = re.findall(r"dec\.(?:string|boolean|integer|duration|string_list|obj|get)\(\w+, \"([^\"]*)\"", source)
    assert len(asked) > 40
    assert [name for name in asked if not name.islower()] == []


def test_each_object_is_decoded_from_its_own_fields(tmp_path):
    endpoints = [{"Endpoint": f"/e{i}", "TIMEOUT": f"{i + 1}s",
                  "Backend": [{"URL_PATTERN": f"/b{i}", "Host": [f"h{i % 3}:80"]}]} for i in range(200)]
    loaded = config.load(write(tmp_path, doc(*endpoints)), environ={})
    assert [e.timeout for e in loaded.endpoints] == [float(i + 1) for i in range(len(endpoints))]
    assert [e.backends[0].url_pattern for e in loaded.endpoints] == [f"/b{i}" for i in range(len(endpoints))]
    assert [e.backends[0].hosts for e in loaded.endpoints] == [(f"http://h{i % 3}:80",) for i in range(len(endpoints))]


def test_an_invalid_host_is_reported_for_every_backend_that_lists_it(tmp_path):
    bad = {"host": ["http://x.com/api"], "url_pattern": "/x"}
    document = doc(endpoint("/a", backend=[dict(bad)]), endpoint("/b", backend=[dict(bad)]))
    _, problems = config.check(write(tmp_path, document), environ={})
    assert [(p.path, p.message) for p in problems] == [
        (f"endpoints[{i}].backend[0].host[0]", "host http://x.com/api not valid: invalid host") for i in (0, 1)]


# --------------------------------------------------------------------------- memory


def test_equal_values_are_one_object(tmp_path):
    backend = {"host": ["http://h:80"], "url_pattern": "/x", "allow": ["id", "name"], "input_headers": ["X-A"]}
    d = doc(endpoint("/a", backend=[dict(backend)]), endpoint("/b/{id}", method="post", backend=[dict(backend)]),
            endpoint("/c/{id}", method="post", backend=[dict(backend)]))
    a, b, c = config.load(write(tmp_path, d), environ={}).endpoints
    assert a.backends[0].hosts == ("http://h:80",) and a.backends[0].allow == ("id", "name")
    for field in ("hosts", "allow", "input_headers", "encoding"):
        assert getattr(a.backends[0], field) is getattr(b.backends[0], field), field
    assert b.method is c.method and b.backends[0].method is c.backends[0].method
    assert b.params is c.params and b.params == ("id",)


def test_config_dataclasses_have_no_instance_dict(tmp_path):
    import dataclasses

    loaded = config.load(write(tmp_path, doc(endpoint("/a"))), environ={})
    for obj in (loaded, loaded.router, loaded.endpoints[0], loaded.endpoints[0].backends[0]):
        assert not hasattr(obj, "__dict__"), type(obj).__name__
    changed = dataclasses.replace(loaded.endpoints[0], timeout=9.0)
    assert changed.timeout == 9.0 and changed.label == "GET /a" and changed != loaded.endpoints[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.endpoints[0].timeout = 1.0  # type: ignore[misc]
