"""addon.py driven through mitmproxy's own test helpers (taddons/tflow), as mitmproxy tests its addons."""

import asyncio
import json
import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils

from mitmproxy.addons.proxyserver import Proxyserver

from krakend_mitm.addon import Gateway

CONFIG = {"version": 3, "endpoints": [{"endpoint": "/users/{id}", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/u/{id}"}]}]}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(CONFIG))
    return str(path)


def flow_for(method, path):
    f = tflow.tflow()
    f.request = tutils.treq(method=method.encode(), path=path.encode(), host="127.0.0.1", port=8080,
                            headers=((b"host", b"localhost:8080"),), content=b"")
    return f


@pytest.mark.parametrize("options,message", [
    ({"jwk_url_map": ["no-equals-sign"]}, "jwk_url_map: expected PREFIX=REPLACEMENT"),
    ({"jwk_url_map": ["=http://x"]}, "jwk_url_map: expected PREFIX=REPLACEMENT"),
    ({"jwks_max_staleness": "soon"}, "jwks_max_staleness: time: invalid duration"),
    ({"jwks_max_staleness": "-1h"}, "jwks_max_staleness: must be positive"),
])
def test_bad_option_values_are_options_errors(config_file, options, message):
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file)
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(gateway, **options)


def test_addon_forces_lazy_connections_and_keeps_the_client_host(config_file):
    gateway = Gateway()
    with taddons.context(Proxyserver(), gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file, connection_strategy="eager", keep_host_header=False)
        assert tctx.options.connection_strategy == "lazy"
        assert tctx.options.keep_host_header is True


def test_invalid_config_at_start_exits_with_one_clear_line(tmp_path, caplog):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": 2, "endpoints": []}))
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        with pytest.raises(SystemExit) as exited:
            tctx.configure(gateway, krakend_config=str(path))
    assert exited.value.code == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert lines == [f"ERROR parsing the configuration file: '{path}': unsupported version: 2 (want: 3) (at version)"]


def test_invalid_config_later_keeps_the_last_good_one(config_file, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file)
        good = gateway.runtime
        with pytest.raises(exceptions.OptionsError, match="unexpected end of JSON input"):
            tctx.configure(gateway, krakend_config=str(bad))
        assert gateway.runtime.config.source == good.config.source == config_file


@pytest.mark.parametrize("method,path,status,comment,mark", [
    ("GET", "/nope", 404, "gateway answered 404: no endpoint matches this path", ":no_entry:"),
    ("POST", "/users/1", 405, "gateway answered 405: method not allowed; Allow: GET", ":no_entry:"),
    ("GET", "/Users/1", 301, "gateway answered redirect: 301 to /users/1 (fixed path)", ""),
    ("GET", "/users/1", 500, "GET /users/{id}: backend[0] GET http://127.0.0.1:19/u/1 -> ", ":boom:"),
])
def test_every_flow_is_answered_commented_and_marked(config_file, method, path, status, comment, mark):
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file)
        f = flow_for(method, path)
        asyncio.run(gateway.request(f))
    assert f.response is not None and f.response.status_code == status
    assert f.comment.startswith(comment) and f.marked == mark
    assert f.metadata["krakend"]["outcome"]


def test_an_exception_inside_the_gateway_is_a_500_logged_once(config_file, caplog, monkeypatch):
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file)

        async def explode(req, depth=0):
            raise ValueError("kaboom")

        monkeypatch.setattr(gateway.runtime.pipeline, "handle", explode)
        f = flow_for("GET", "/users/1")
        asyncio.run(gateway.request(f))
    assert f.response.status_code == 500 and f.marked == ":boom:"
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1 and "kaboom" in tracebacks[0].getMessage()


def test_explain_prints_the_decision(config_file, caplog):
    caplog.set_level(logging.INFO, logger="krakend_mitm")
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=config_file)
        f = flow_for("GET", "/nope")
        asyncio.run(gateway.request(f))
        caplog.clear()
        gateway.explain([f])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"outcome": "404"' in text and "no endpoint matches this path" in text


def test_auth_rejection_is_marked_with_the_reason_and_explained(tmp_path, caplog):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"kty": "oct", "kid": "sim2", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}))
    config = {"version": 3, "endpoints": [{
        "endpoint": "/private", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/p"}],
        "extra_config": {"auth/validator": {"alg": "HS256", "jwk_local_path": str(keys), "disable_jwk_security": True}}}]}
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(config))
    caplog.set_level(logging.INFO, logger="krakend_mitm")
    gateway = Gateway()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, krakend_config=str(path))
        f = flow_for("GET", "/private")
        asyncio.run(gateway.request(f))
        gateway.explain([f])
    assert f.response.status_code == 401 and f.response.content == b""
    assert f.marked == ":no_entry:"
    assert f.comment == "GET /private: gateway answered 401: Unable to validate the token: Token not found"
    assert f.metadata["krakend"]["auth"]["status"] == 401
    assert any("[ENDPOINT: /private][JWTValidator] Unable to validate the token: Token not found" in r.getMessage()
               for r in caplog.records)


def test_reloading_never_duplicates_timers_or_tasks(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent / "auth"))
    from jwt_testkit import JWKSServer, public_jwk, rsa_key

    jwks = JWKSServer([public_jwk(rsa_key("k1"), "k1")])
    validator = {"alg": "RS256", "jwk_url": jwks.url(), "disable_jwk_security": True, "cache": True}
    path = tmp_path / "krakend.json"

    def write(n):
        endpoints = [{"endpoint": f"/p{i}", "backend": [{"host": ["http://127.0.0.1:19"], "url_pattern": "/"}],
                      "extra_config": {"auth/validator": validator}} for i in range(n)]
        path.write_text(json.dumps({"version": 3, "endpoints": endpoints}))

    async def scenario():
        gateway = Gateway()
        with taddons.context(gateway) as tctx:
            write(2)
            tctx.configure(gateway, krakend_config=str(path))
            gateway.running()
            for _ in range(100):  # until the start-up download has been stored
                if gateway.runtime.auth.status() and all(s.get("keys") for s in gateway.runtime.auth.status()):
                    break
                await asyncio.sleep(0.02)
            baseline = len(asyncio.all_tasks())
            for n in (3, 4, 2, 5):
                write(n)
                tctx.configure(gateway, krakend_config=str(path))
                gateway.reload()
                await asyncio.sleep(0.05)
            after = len(asyncio.all_tasks())
            gateway.done()
            await asyncio.sleep(0.05)
            return baseline, after, len(asyncio.all_tasks())

    try:
        baseline, after, stopped = asyncio.run(scenario())
    finally:
        jwks.close()
    assert after <= baseline  # one key-set timer per URL and one file watcher, whatever the reloads
    assert stopped < baseline  # done() cancels them
    assert jwks.count() == 1  # reloads adopt the downloaded set instead of fetching it again


@pytest.mark.parametrize("headers,body", [
    ([("Content-Type", "application/json")], b'{"a":1}'),
    # a no-op endpoint passes a backend's encoded body through: it must leave as it came
    ([("Content-Encoding", "gzip")], __import__("gzip").compress(b"hello")),
    ([("Content-Encoding", "br")], b"\x8b\x02\x80hello\x03"),
    ([("Content-Encoding", "x-unknown")], b"opaque"),
    ([], b""),
])
def test_replies_go_out_with_their_wire_body_and_a_content_length(headers, body):
    from krakend_mitm.addon import to_mitmproxy_response
    from krakend_mitm.messages import Reply

    response = to_mitmproxy_response(Reply(200, headers, body))
    assert response.raw_content == body
    assert response.status_code == 200 and response.reason == "OK"
    assert list(response.headers.items(multi=True)) == headers + [("content-length", str(len(body)))]


def test_heap_trimmer_runs_on_glibc_and_is_inert_elsewhere(monkeypatch):
    from krakend_mitm import heap

    import platform

    trimmer = heap.HeapTrimmer()
    on_glibc = heap.sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert trimmer.available is on_glibc
    if on_glibc:
        trimmer.trim()  # returns memory when it can; must never raise
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    inert = heap.HeapTrimmer()
    assert not inert.available and inert.trim() is False


def test_heap_trim_task_lives_between_running_and_done(config_file, monkeypatch):
    import krakend_mitm.addon as addon_mod

    calls = []

    class FakeTrimmer:
        available = True

        def trim(self):
            calls.append(1)
            return True

    monkeypatch.setattr(addon_mod, "TRIM_INTERVAL", 0.01)

    async def scenario():
        gateway = Gateway()
        gateway._heap = FakeTrimmer()
        with taddons.context(gateway) as tctx:
            tctx.configure(gateway, krakend_config=config_file)
            gateway.running()
            for _ in range(200):
                if len(calls) >= 2:
                    break
                await asyncio.sleep(0.01)
            task = gateway._trim_task
            gateway.done()
            await asyncio.sleep(0)
            return task

    task = asyncio.run(scenario())
    assert len(calls) >= 2, "the heap is trimmed periodically while the gateway runs"
    assert task.cancelled() or task.done()
