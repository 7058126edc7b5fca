"""Multi-backend endpoints through a real gateway with real (slow, failing) backends (spec §7)."""

import time

import requests


def merge_config(urls, timeout="1s", **endpoint_extra):
    return {"version": 3, "extra_config": {"router": {"return_error_msg": True}}, "endpoints": [
        {"endpoint": "/merge", "timeout": timeout, **endpoint_extra,
         "backend": [{"host": [u], "url_pattern": p, "group": g, "allow": ["path", "method"]} for u, p, g in urls]},
    ]}


def test_three_backends_merge_concurrently(backend, start_gateway):
    urls = [(backend.url, f"/slow/{150}", f"b{i}") for i in range(3)]
    gateway = start_gateway(merge_config(urls))
    started = time.monotonic()
    response = requests.get(f"{gateway.url}/merge")
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.headers["X-Krakend-Completed"] == "true"
    assert set(response.json()) == {"b0", "b1", "b2"}
    assert elapsed < 0.4  # concurrent: about one backend's 150 ms, not three


def test_a_slow_backend_past_85_percent_gives_a_partial_200(backend, start_gateway):
    urls = [(backend.url, "/fast", "fast"), (backend.url, "/slow/900", "slow")]
    gateway = start_gateway(merge_config(urls, timeout="500ms"))
    started = time.monotonic()
    response = requests.get(f"{gateway.url}/merge")
    assert time.monotonic() - started < 0.8
    assert response.status_code == 200 and response.json() == {"fast": {"method": "GET", "path": "/fast"}}
    assert response.headers["X-Krakend-Completed"] == "false" and "Cache-Control" not in response.headers


def test_failing_backends_partial_then_500(backend, start_gateway):
    partial = start_gateway(merge_config([(backend.url, "/ok", "ok"), (backend.url, "/status/500", "bad")]))
    response = requests.get(f"{partial.url}/merge")
    assert response.status_code == 200 and list(response.json()) == ["ok"]
    assert response.headers["X-Krakend-Completed"] == "false"
    failed = start_gateway(merge_config([(backend.url, "/status/500", "a"), ("http://127.0.0.1:19", "/x", "b")]))
    response = requests.get(f"{failed.url}/merge")
    assert response.status_code == 500
    assert "invalid status code 500" in response.text and "connection refused" in response.text


def test_sequential_chain(backend, start_gateway):
    config = {"version": 3, "endpoints": [{
        "endpoint": "/seq/{id}", "extra_config": {"proxy": {"sequential": True}},
        "backend": [{"host": [backend.url], "url_pattern": "/first/{id}", "allow": ["id"]},
                    {"host": [backend.url], "url_pattern": "/second/{resp0_id}", "allow": ["path"]}]}]}
    gateway = start_gateway(config)
    response = requests.get(f"{gateway.url}/seq/77")
    assert response.json() == {"id": "77", "path": "/second/77"}
    assert backend.hits["/second/77"] == 1
