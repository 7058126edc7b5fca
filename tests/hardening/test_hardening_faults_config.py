"""Config faults on a watched file (`krakend_watch`, polled every second), through one real mitmdump:
a broken file keeps the last good config serving, a deleted file keeps serving, and an atomic swap
(write a temporary file, rename it over the config) is picked up."""

from __future__ import annotations

import json
import os
import time

import pytest

from hardening_corpus import compact
from hardening_kit import KeyServer, bearer, log_size, send, wait_for_log
from jwt_testkit import public_jwk, rsa_key

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, free_port, gateway_command

RELOADED = "changed, reloaded"
FAILED = "config reload failed, the last good config keeps serving"


class Env:
    pass


def config(e, *paths, validator_alg="RS256", duplicate=False):
    endpoints = [{"endpoint": p, "backend": [{"host": [e.backend.url], "url_pattern": "/cfg" + p}]} for p in paths]
    endpoints.append({"endpoint": "/p", "backend": [{"host": [e.backend.url], "url_pattern": "/cfg/p"}],
                      "extra_config": {"auth/validator": {"alg": validator_alg, "jwk_url": e.jwks.url("/keys"),
                                                          "disable_jwk_security": True, "cache": True}}})
    if duplicate:
        endpoints.append(dict(endpoints[0]))
    return {"version": 3, "port": e.port, "endpoints": endpoints}


def atomic_write(path, document):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(document if isinstance(document, str) else json.dumps(document))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env()
    e.key = rsa_key("hardening-k1")
    e.jwks = KeyServer()
    e.jwks.set_keys("/keys", [public_jwk(e.key, "k1")])
    e.backend = EchoServer().start()
    e.port = free_port()
    e.path = tmp_path_factory.mktemp("reload") / "krakend.json"
    e.path.write_text(json.dumps(config(e, "/v1")))
    e.gateway = GatewayProcess(gateway_command(str(e.path), e.port), e.port).start()
    try:
        yield e
    finally:
        e.gateway.stop()
        e.jwks.close()
        e.backend.stop()


def token(e):
    now = int(time.time())
    return compact({"alg": "RS256", "kid": "k1"}, {"sub": "u", "exp": now + 600}, e.key)


def serving(e, path):
    return send(e.port, path).status


def assert_protected_still_works(e):
    assert send(e.port, "/p").status == 401
    assert send(e.port, "/p", bearer(token(e))).status == 200


@pytest.mark.parametrize("name,document", [
    ("truncated-json", '{"version": 3, "endpoints": [{"endpoint": "/v9"'),
    ("empty-file", ""),
    ("wrong-version", {"version": 2, "endpoints": []}),
    ("unknown-alg", "unknown-alg"),
    ("duplicate-route", "duplicate"),
])
def test_a_broken_file_keeps_the_last_good_config(env, name, document):
    e = env
    assert serving(e, "/v1") == 200
    if document == "unknown-alg":
        document = config(e, "/v9", validator_alg="RS999")
    elif document == "duplicate":
        document = config(e, "/v9", duplicate=True)
    since = log_size(e.gateway)
    e.path.write_text(document if isinstance(document, str) else json.dumps(document))  # in place, not atomic
    wait_for_log(e.gateway, FAILED, since=since)
    assert serving(e, "/v1") == 200 and serving(e, "/v9") == 404
    assert_protected_still_works(e)
    assert e.gateway.process.poll() is None


def test_an_atomic_swap_is_picked_up_and_keeps_the_keys(env):
    e = env
    downloads = e.jwks.count("/keys")
    since = log_size(e.gateway)
    atomic_write(e.path, config(e, "/v2"))
    wait_for_log(e.gateway, RELOADED, since=since)
    assert serving(e, "/v2") == 200 and serving(e, "/v1") == 404
    assert_protected_still_works(e)
    assert e.jwks.count("/keys") - downloads <= 1, "a reload must reuse the downloaded key set"


def test_deleting_the_file_keeps_serving_until_a_new_one_appears(env):
    e = env
    gone_since = log_size(e.gateway)
    os.unlink(e.path)
    wait_for_log(e.gateway, "is gone; the last good config keeps serving", since=gone_since)
    deadline = time.monotonic() + 2.5  # at least two more polls of the watcher see the file missing
    while time.monotonic() < deadline:
        assert serving(e, "/v2") == 200
        time.sleep(0.1)  # request pacing while the watcher polls
    assert e.gateway.process.poll() is None
    assert e.gateway.log()[gone_since:].count("is gone;") == 1, "the disappearance is logged once, not every poll"
    assert_protected_still_works(e)
    since = log_size(e.gateway)
    atomic_write(e.path, config(e, "/v3"))
    wait_for_log(e.gateway, RELOADED, since=since)
    assert serving(e, "/v3") == 200 and serving(e, "/v2") == 404
    assert "Traceback" not in e.gateway.log()


def test_a_fixed_file_after_a_broken_one_is_loaded(env):
    e = env
    since = log_size(e.gateway)
    e.path.write_text("{")
    wait_for_log(e.gateway, FAILED, since=since)
    since = log_size(e.gateway)
    atomic_write(e.path, config(e, "/v4"))
    wait_for_log(e.gateway, RELOADED, since=since)
    assert serving(e, "/v4") == 200
    assert_protected_still_works(e)
