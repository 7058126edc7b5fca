#!/usr/bin/env python3
"""Merge latency: one endpoint over 3 backends that each answer in 50 ms, through a real gateway.

Prints the end-to-end latency (median, p90, p99) next to a baseline measured in the same run: one
direct call to one 50 ms backend. Target: the merge stays under 100 ms (the calls run concurrently).

    .venv/bin/python scripts/bench_merge.py [--requests 100] [--delay-ms 50]
"""

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time

from krakend_mitm.echo_backend import EchoServer
from krakend_mitm.processes import GatewayProcess, free_port, gateway_command


def timed_get(host: str, port: int, path: str, n: int) -> list[float]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        samples.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {body[:200]!r}")
    connection.close()
    return samples


def compare_clients(urls: list[str], n: int) -> dict:
    """The same 3-way concurrent fan-out in-process: our asyncio client vs requests in worker threads."""
    import asyncio

    import requests

    from krakend_mitm.client import BackendRequest, HttpClient

    async def with_async_client() -> list[float]:
        client = HttpClient()
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await asyncio.gather(*(client.send(BackendRequest("GET", u, [])) for u in urls))
            samples.append((time.perf_counter() - started) * 1000)
        await client.aclose()
        return samples

    async def with_threads() -> list[float]:
        session = requests.Session()
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await asyncio.gather(*(asyncio.to_thread(session.get, u) for u in urls))
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    return {"asyncio_h11_client": summary(asyncio.run(with_async_client())),
            "requests_in_threads": summary(asyncio.run(with_threads()))}


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"median_ms": round(statistics.median(ordered), 1), "p90_ms": round(pick(0.9), 1), "p99_ms": round(pick(0.99), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--delay-ms", type=int, default=50)
    args = parser.parse_args()
    backends = [EchoServer().start() for _ in range(3)]
    port = free_port()
    config = {"version": 3, "port": port, "timeout": "2s", "endpoints": [{
        "endpoint": "/merged",
        "backend": [{"host": [b.url], "url_pattern": f"/slow/{args.delay_ms}", "group": f"b{i}", "allow": ["path"]}
                    for i, b in enumerate(backends)],
    }]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        with GatewayProcess(gateway_command(f.name, port), port):
            timed_get("127.0.0.1", port, "/merged", 5)  # warm-up: connection pools, imports
            merged = summary(timed_get("127.0.0.1", port, "/merged", args.requests))
        direct_port = int(backends[0].url.rsplit(":", 1)[1])
        baseline = summary(timed_get("127.0.0.1", direct_port, f"/slow/{args.delay_ms}", args.requests))
        clients = compare_clients([f"{b.url}/slow/{args.delay_ms}" for b in backends], args.requests)
    finally:
        for b in backends:
            b.stop()
    result = {"backends": 3, "backend_delay_ms": args.delay_ms, "requests": args.requests,
              "merge_through_gateway": merged, "one_backend_direct": baseline,
              "fan_out_in_process": clients,
              "ratio_median": round(merged["median_ms"] / baseline["median_ms"], 2),
              "target_met": merged["median_ms"] < 2 * args.delay_ms}
    print(json.dumps(result, indent=2))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
