"""Misbehaving backends behind the attack gateway (conftest.py): each answers KrakenD's status for a
single parsed (json) backend -- 500 with an empty body, `X-Krakend-Completed: false` -- and the
gateway keeps serving, including under concurrency."""

from __future__ import annotations

import concurrent.futures

import pytest

from hardening_kit import send

FAULTS = [
    # (endpoint, what the backend does)
    ("/bf/refused", "refuses the connection"),
    ("/bf/reset", "resets the connection mid-body"),
    ("/bf/close", "closes the connection without an answer"),
    ("/bf/slow", "answers after 1.5 s, past the endpoint's 300 ms timeout"),
    ("/bf/malformed", "answers 200 application/json with a truncated JSON body"),
]


def assert_serving(env):
    assert env.gateway.process.poll() is None
    ok = send(env.port, "/bf/ok")
    assert ok.status == 200 and ok.body == b'{"ok":true}', ok
    assert send(env.port, "/__health").status == 200


@pytest.mark.parametrize("endpoint,what", FAULTS, ids=[f[0].rsplit("/", 1)[1] for f in FAULTS])
def test_backend_fault_gets_krakend_status(attack_env, endpoint, what):
    response = send(attack_env.port, endpoint)
    assert response.status == 500, (what, response)
    assert response.body == b"", what  # KrakenD writes no error text without return_error_msg
    assert response.header("X-Krakend-Completed") == "false"
    if endpoint == "/bf/slow":
        assert response.seconds < 1.2, "the endpoint timeout did not cut the slow backend"
    assert_serving(attack_env)


def test_backend_faults_under_concurrency_keep_the_gateway_serving(attack_env):
    endpoints = [f[0] for f in FAULTS] * 6 + ["/bf/ok"] * 6
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda p: (p, send(attack_env.port, p).status), endpoints))
    for path, status in statuses:
        assert status == (200 if path == "/bf/ok" else 500), (path, status)
    assert_serving(attack_env)
    assert "Traceback" not in attack_env.gateway.log()
