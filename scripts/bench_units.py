#!/usr/bin/env python3
"""Micro-benchmarks of the gateway's hot paths, each next to its baseline measured in the same run.

    .venv/bin/python scripts/bench_units.py              # full run, writes its section of BENCHMARKS.md
    .venv/bin/python scripts/bench_units.py --smoke      # tiny counts, no thresholds, no file written

* validation: `EndpointValidator.authenticate` for a repeated token (verified-token cache hit) and for
  a new token every call (miss: parse, RS256 verify, decode, insert), against raw `jwt.decode` with the
  same key on the same tokens (and OpenSSL's bare RSA verify, for reference). Descope-shaped config:
  remote JWKS (`jwk_url` mapped to a local fetch), `issuer`, nested tenant `roles`.
* route lookup: `RouteTable.lookup` with 10, 1,000 and 10,000 endpoints (a quarter static, the rest
  with one or two parameters), the same mix of request shapes against each table.
* config load: `load_runtime` (config decoding, route compile, validators, pipeline) of a 10,000
  endpoint config, in a fresh interpreter; and the gateway's RSS: a real mitmdump with the addon on
  that config against a plain `mitmdump --mode reverse:`, VmRSS from /proc after both answer.
* JWKS refresh: p99 latency of validations with a cached kid (full signature check, no token cache)
  while a refresh waits on a JWKS server that takes 3 s to answer, against the same stream of
  validations without a refresh; each latency includes a yield to the event loop, so anything the
  refresh ran on the loop would show.

Medians of `--repeat` rounds; every figure is printed with its ratio and target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
MARK_BEGIN = "<!-- bench_units:begin -->"
MARK_END = "<!-- bench_units:end -->"
PROJECT_ID = "P2BenchBenchBenchBenchBench0"
DESCOPE_JWKS = f"https://api.descope.com/v2/keys/{PROJECT_ID}"
KID = "bench-k1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import (  # noqa: E402
    JWKSServer, free_port, mint_tokens, mitmdump, rss_kib, write_section, session_claims, spawn, wait_http,
)

# ---------------------------------------------------------------------------------------------
# keys, tokens, validators


def make_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_body(key) -> bytes:
    import jwt

    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": [jwk]}).encode()


def mint(key, count: int, start: int = 0) -> list[str]:
    import jwt

    now = int(time.time())
    return [jwt.encode(session_claims(now, f"U{start + i}"), key, algorithm="RS256", headers={"kid": KID})
            for i in range(count)]


# configs/descope.json plus the issuer check the README recommends
VALIDATOR = {"alg": "RS256", "jwk_url": DESCOPE_JWKS, "cache": True, "issuer": PROJECT_ID}
TENANT_ROLES = {"roles_key": "tenants.T1.roles", "roles_key_is_nested": True, "roles": ["admin"]}


def make_validator(store, token_cache=None, **extra):
    from krakend_mitm.auth import EndpointValidator, parse_validator

    spec = parse_validator({"auth/validator": {**VALIDATOR, **extra}}, path="endpoints[0].extra_config",
                           endpoint_path="/bench")
    return EndpointValidator(spec, store, endpoint_path="/bench", log_startup=False, token_cache=token_cache)


def make_store(body: bytes):
    from krakend_mitm.auth import FetchResponse, KeyStore

    return KeyStore(url_map=["https://api.descope.com=http://127.0.0.1:9"],
                    fetch=lambda request: FetchResponse(200, "application/json", body))


def headers_for(token: str) -> list[tuple[str, str]]:
    return [("Host", "127.0.0.1:8080"), ("User-Agent", "wrk"), ("Accept", "*/*"),
            ("Authorization", f"Bearer {token}")]


# ---------------------------------------------------------------------------------------------
# 1. validation


def bench_validation(smoke: bool, repeat: int) -> dict:
    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from krakend_mitm.auth.token_cache import TokenCache

    key = make_key()
    public = key.public_key()
    new_count = 40 if smoke else 1500
    hit_count = 2000 if smoke else 100_000
    # one batch more than measured: it fills the cache (capacity = one batch), so that every
    # measured new token is inserted into a full cache and evicts one, as in a long-running gateway
    tokens = mint_tokens(key, new_count * (max(1, repeat) + 1) + 1)
    repeated = tokens.pop()
    warm, tokens = tokens[:new_count], tokens[new_count:]
    store = make_store(jwks_body(key))
    rounds: dict[str, list[float]] = {k: [] for k in (
        "repeated_us", "repeated_roles_us", "new_us", "no_cache_us", "jwt_decode_us",
        "rsa_verify_us", "empty_await_us", "new_over_jwt_decode")}

    async def nothing():
        return None

    async def run():
        await store.refresh()
        cache = TokenCache(capacity=new_count + 3)  # + the repeated token, which stays hot
        validator = make_validator(store, cache)
        with_roles = make_validator(store, cache, **TENANT_ROLES)
        uncached = make_validator(store, None)
        hit_headers = headers_for(repeated)
        for v in (validator, with_roles):
            verdict = await v.authenticate(hit_headers)
            assert verdict.status == 200, verdict
        for t in warm:
            await validator.authenticate(headers_for(t))
        for t in warm[:50]:
            jwt.decode(t, public, algorithms=["RS256"], issuer=PROJECT_ID)

        async def hits(v, n: int) -> float:
            authenticate = v.authenticate
            started = time.perf_counter()
            for _ in range(n):
                await authenticate(hit_headers)
            return time.perf_counter() - started

        for r in range(repeat):
            batch = tokens[r * new_count:(r + 1) * new_count]
            batch_headers = [headers_for(t) for t in batch]

            # the hit paths and the calibration, interleaved in slices of 1,000 calls
            spent = {"repeated_us": 0.0, "repeated_roles_us": 0.0, "empty_await_us": 0.0}
            slices = max(1, hit_count // 1000)
            for _ in range(slices):
                for name, v in (("repeated_us", validator), ("repeated_roles_us", with_roles)):
                    spent[name] += await hits(v, 1000)
                started = time.perf_counter()
                for _ in range(1000):
                    await nothing()
                spent["empty_await_us"] += time.perf_counter() - started
            for name, seconds in spent.items():
                rounds[name].append(seconds / (slices * 1000) * 1e6)

            # new tokens, jwt.decode and the uncached validator on the same tokens, interleaved in
            # chunks of 25 so that the (shared, virtual) machine's slow phases hit all three alike
            spent = {"new_us": 0.0, "jwt_decode_us": 0.0, "no_cache_us": 0.0}
            for i in range(0, len(batch), 25):
                chunk, chunk_headers = batch[i:i + 25], batch_headers[i:i + 25]
                started = time.perf_counter()
                for h in chunk_headers:
                    verdict = await validator.authenticate(h)
                spent["new_us"] += time.perf_counter() - started
                assert verdict.status == 200 and "token_cache" not in verdict.details, verdict
                started = time.perf_counter()
                for t in chunk:
                    jwt.decode(t, public, algorithms=["RS256"], issuer=PROJECT_ID)
                spent["jwt_decode_us"] += time.perf_counter() - started
                started = time.perf_counter()
                for h in chunk_headers:
                    await uncached.authenticate(h)
                spent["no_cache_us"] += time.perf_counter() - started
            for name, seconds in spent.items():
                rounds[name].append(seconds / len(batch) * 1e6)
            rounds["new_over_jwt_decode"].append(spent["new_us"] / spent["jwt_decode_us"])

            message, sig = b"x" * 600, key.sign(b"x" * 600, padding.PKCS1v15(), hashes.SHA256())
            started = time.perf_counter()
            for _ in batch:
                public.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
            rounds["rsa_verify_us"].append((time.perf_counter() - started) / len(batch) * 1e6)
        return cache.stats()

    stats = asyncio.run(run())
    store.stop()
    med = {k: round(statistics.median(v), 2) for k, v in rounds.items()}
    med["new_over_jwt_decode"] = round(statistics.median(rounds["new_over_jwt_decode"]), 3)
    return {
        **med,
        "runs": {k: [round(x, 3) for x in v] for k, v in rounds.items()},
        "repeated_speedup_over_new": round(med["new_us"] / med["repeated_us"], 1),
        "cache_stats": stats,
        "config": "configs/descope.json shape (RS256, Descope jwk_url through a KeyStore) + issuer; "
                  "repeated_roles_us adds nested tenant roles",
    }


# ---------------------------------------------------------------------------------------------
# 2. route lookup


def make_routes(n: int):
    """n endpoints: shapes cycle static / one param / two params / static under a param sibling."""
    shapes = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            shapes.append(("GET", f"/api/v1/svc{i}/items"))
        elif kind == 1:
            shapes.append(("GET", f"/api/v1/svc{i}/items/:id"))
        elif kind == 2:
            shapes.append(("GET", f"/api/v1/svc{i}/users/:uid/orders/:oid"))
        else:
            shapes.append(("POST", f"/api/v1/svc{i}/items/:id/tags"))
    return shapes


def request_for(method: str, path: str, rnd: random.Random) -> tuple[str, str]:
    return method, "/".join(str(rnd.randrange(10**6)) if s.startswith(":") else s for s in path.split("/"))


def bench_routes(smoke: bool, repeat: int) -> dict:
    from krakend_mitm.router import Match, Route, RouteTable

    sizes = (10, 1_000, 10_000)
    lookups = 2_000 if smoke else 200_000
    tables = {}
    requests = {}
    for n in sizes:
        routes = make_routes(n)
        tables[n] = RouteTable([Route(m, p, (m, p)) for m, p in routes])
        rnd = random.Random(n)
        # the same mix of shapes for every size: 4 consecutive endpoints = one of each shape
        reqs = []
        for i in range(256):
            block = rnd.randrange(n // 4) * 4
            m, p = routes[block + i % 4]
            reqs.append(request_for(m, p, rnd))
        requests[n] = reqs
        for m, p in reqs:
            assert isinstance(tables[n].lookup(m, p), Match), (m, p)
    rounds: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(repeat):
        for n in sizes:
            lookup = tables[n].lookup
            reqs = requests[n] * (lookups // 256)
            started = time.perf_counter()
            for m, p in reqs:
                lookup(m, p)
            rounds[n].append((time.perf_counter() - started) / len(reqs) * 1e6)
    med = {n: statistics.median(v) for n, v in rounds.items()}
    miss_table = tables[10_000]
    started = time.perf_counter()
    for i in range(lookups // 10):
        miss_table.lookup("GET", f"/nope/{i}")
    miss_us = (time.perf_counter() - started) / (lookups // 10) * 1e6
    return {"lookup_us": {str(n): round(v, 3) for n, v in med.items()},
            "runs": {str(n): [round(x, 3) for x in v] for n, v in rounds.items()},
            "ratio_10k_over_10": round(med[10_000] / med[10], 3),
            "miss_404_10k_us": round(miss_us, 3)}


# ---------------------------------------------------------------------------------------------
# 3. config load time and RSS


def big_config(n: int, port: int, backend: str, jwks_every: int = 10) -> dict:
    endpoints = []
    for i, (method, path) in enumerate(make_routes(n)):
        endpoint = "/".join("{" + s[1:] + "}" if s.startswith(":") else s for s in path.split("/"))
        e = {"endpoint": endpoint, "method": method,
             "backend": [{"url_pattern": f"/items/{i}", "host": [backend], "allow": ["id", "name"]}]}
        if i % jwks_every == 0:
            e["extra_config"] = {"auth/validator": {**VALIDATOR, **TENANT_ROLES}}
        endpoints.append(e)
    return {"version": 3, "port": port, "timeout": "3s", "endpoints": endpoints}


LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from krakend_mitm.runtime import GatewayOptions, load_runtime
t1 = time.perf_counter()
runtime = load_runtime(sys.argv[1], GatewayOptions(listen_ports=(int(sys.argv[2]),),
                       jwk_url_map=("https://api.descope.com=http://127.0.0.1:9",)))
t2 = time.perf_counter()
from krakend_mitm import config as c
t3 = time.perf_counter()
c.load(sys.argv[1])
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_runtime_s": t2 - t1, "config_only_s": t4 - t3,
                  "endpoints": len(runtime.config.endpoints), "validators": len(runtime.auth.validators)}))
"""


def bench_config_and_rss(smoke: bool, repeat: int, skip_rss: bool) -> dict:
    n = 200 if smoke else 10_000
    work = Path(tempfile.mkdtemp(prefix="bench-units-"))
    port = free_port()
    config_path = work / "krakend.json"
    config_path.write_text(json.dumps(big_config(n, port, "http://127.0.0.1:19")))
    loads = []
    for _ in range(max(1, repeat)):
        out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, str(config_path), str(port)],
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        loads.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {
        "endpoints": n,
        "load_runtime_s": round(statistics.median(x["load_runtime_s"] for x in loads), 3),
        "config_decode_only_s": round(statistics.median(x["config_only_s"] for x in loads), 3),
        "import_s": round(statistics.median(x["import_s"] for x in loads), 3),
        "runs_s": [round(x["load_runtime_s"], 3) for x in loads],
        "validators": loads[0]["validators"],
    }
    if skip_rss:
        return result

    from krakend_mitm.processes import GatewayProcess, gateway_command

    plain_port = free_port()
    plain = spawn("plain-rss", [mitmdump(), "--mode", f"reverse:http://127.0.0.1:{port}", "--listen-host",
                                "127.0.0.1", "--listen-port", str(plain_port)])
    gateway = GatewayProcess(gateway_command(str(config_path), port,
                                             sets=("jwk_url_map=https://api.descope.com=http://127.0.0.1:9",)), port)
    try:
        started = time.perf_counter()
        gateway.start(timeout=120)
        ready_s = time.perf_counter() - started
        try:
            wait_http(plain_port, "/", process=plain.process)
        except RuntimeError:
            pass
        # a few requests through each, so both have served traffic
        import http.client

        for p, path in ((port, "/api/v1/svc0/items"), (plain_port, "/")):
            for _ in range(20):
                c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
                try:
                    c.request("GET", path)
                    c.getresponse().read()
                except OSError:
                    pass
                finally:
                    c.close()
        time.sleep(0.5)
        gateway_rss = rss_kib(gateway.process.pid) / 1024
        plain_rss = rss_kib(plain.process.pid) / 1024
    finally:
        gateway.stop()
        plain.stop()
    result.update({"gateway_rss_mib": round(gateway_rss, 1), "plain_mitmdump_rss_mib": round(plain_rss, 1),
                   "extra_rss_mib": round(gateway_rss - plain_rss, 1), "gateway_ready_s": round(ready_s, 2)})
    return result


# ---------------------------------------------------------------------------------------------
# 4. validations during a slow JWKS refresh


def bench_refresh(smoke: bool, repeat: int) -> dict:
    from krakend_mitm.auth import KeyStore

    delay = 0.5 if smoke else 3.0
    key = make_key()
    server = JWKSServer(jwks_body(key))
    token = mint(key, 1)[0]
    results = {"quiet_p99_ms": [], "refresh_p99_ms": [], "quiet_p50_ms": [], "refresh_p50_ms": []}
    samples = []

    async def stream(validator, seconds: float) -> list[float]:
        """Validations back to back for `seconds`, each after yielding to the event loop; a latency
        runs from before the yield to the verdict, so any work the refresh puts on the loop counts."""
        h = headers_for(token)
        out = []
        clock = time.perf_counter
        end = clock() + seconds
        while clock() < end:
            started = clock()
            await asyncio.sleep(0)
            verdict = await validator.authenticate(h)
            out.append((clock() - started) * 1000)
            assert verdict.status == 200, verdict
        return out

    async def run():
        store = KeyStore(url_map=[f"https://api.descope.com={server.base}"])
        validator = make_validator(store, None)  # no token cache: every validation verifies with the cached kid
        store.start()
        await store.refresh()
        for _ in range(max(1, repeat)):
            # the quiet baseline is taken half before and half after the refresh, so that the
            # (shared, virtual) machine's drift over the round weighs on both phases alike
            server.delay = 0.0
            quiet = await stream(validator, delay / 2)
            server.delay = delay
            before = server.hits
            refresh = asyncio.ensure_future(store.refresh())
            during = await stream(validator, delay * 0.9)
            overlapped = server.hits > before and not refresh.done()
            await refresh
            server.delay = 0.0
            quiet += await stream(validator, delay / 2)
            # on a loaded machine the refresh thread may start late or finish early: say so, do not fail
            assert server.hits > before, "the refresh never reached the server"
            if not overlapped:
                print("note: this round's refresh did not fully overlap the measurement", file=sys.stderr)
            samples.append(len(during))
            for name, phase in (("quiet", quiet), ("refresh", during)):
                s = sorted(phase)
                results[f"{name}_p99_ms"].append(s[min(len(s) - 1, int(0.99 * len(s)))])
                results[f"{name}_p50_ms"].append(s[len(s) // 2])
        store.stop()

    try:
        asyncio.run(run())
    finally:
        server.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    return {"jwks_delay_s": delay, "samples_per_phase": samples, **{k: round(v, 3) for k, v in med.items()},
            "runs": {k: [round(x, 3) for x in v] for k, v in results.items()},
            # each round's ratio, then their median: pairs taken seconds apart drift less than phases
            "p99_ratio": round(statistics.median(r / q for r, q in zip(results["refresh_p99_ms"], results["quiet_p99_ms"])), 3)
            if all(results["quiet_p99_ms"]) else None}


# ---------------------------------------------------------------------------------------------


TARGETS = [
    ("repeated-token validation", "validation", "repeated_us", "≤", 5.0, "µs"),
    ("new-token validation vs jwt.decode", "validation", "new_over_jwt_decode", "≤", 1.3, "×"),
    ("lookup, 10k endpoints vs 10", "routes", "ratio_10k_over_10", "≤", 1.5, "×"),
    ("config load, 10k endpoints", "config", "load_runtime_s", "≤", 1.0, "s"),
    ("extra RSS, 10k endpoints, over plain mitmdump", "config", "extra_rss_mib", "≤", 60.0, "MiB"),
    ("p99 during a slow refresh vs without", "refresh", "p99_ratio", "≤", 1.2, "×"),
]


def summary_rows(report: dict) -> list[dict]:
    rows = []
    for title, section, key, op, target, unit in TARGETS:
        value = report.get(section, {}).get(key)
        met = None if value is None or report["smoke"] else value <= target
        rows.append({"figure": title, "value": value, "unit": unit, "target": f"{op} {target:g} {unit}", "met": met})
    return rows


def markdown(report: dict) -> str:
    v, r, c, f = report.get("validation", {}), report.get("routes", {}), report.get("config", {}), \
        report.get("refresh", {})
    lines = ["| figure | value | baseline (same run) | target | met |", "|---|---:|---|---|---|"]
    base = {
        "repeated-token validation": f"new token {v.get('new_us')} µs, jwt.decode {v.get('jwt_decode_us')} µs; "
                                     f"same hit with nested tenant roles {v.get('repeated_roles_us')} µs; an empty `await` "
                                     f"{v.get('empty_await_us')} µs",
        "new-token validation vs jwt.decode": f"new token {v.get('new_us')} µs / jwt.decode {v.get('jwt_decode_us')} µs"
                                              f" (RSA verify alone {v.get('rsa_verify_us')} µs)",
        "lookup, 10k endpoints vs 10": "; ".join(f"{n}: {x} µs" for n, x in r.get("lookup_us", {}).items()),
        "config load, 10k endpoints": f"config decoding alone {c.get('config_decode_only_s')} s",
        "extra RSS, 10k endpoints, over plain mitmdump": f"gateway {c.get('gateway_rss_mib')} MiB, plain mitmdump "
                                                         f"{c.get('plain_mitmdump_rss_mib')} MiB",
        "p99 during a slow refresh vs without": f"p99 {f.get('refresh_p99_ms')} ms during vs {f.get('quiet_p99_ms')} ms "
                                                f"without ({f.get('jwks_delay_s')} s JWKS)",
    }
    for row in summary_rows(report):
        met = "" if row["met"] is None else ("✅" if row["met"] else "❌")
        value = "n/a" if row["value"] is None else f"{row['value']} {row['unit']}"
        lines.append(f"| {row['figure']} | {value} | {base.get(row['figure'], '')} | {row['target']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no thresholds, no file written")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="validation,routes,config,refresh")
    parser.add_argument("--no-rss", action="store_true", help="skip starting mitmdump processes for the RSS figure")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    repeat = 1 if args.smoke else args.repeat
    only = args.only.split(",")
    report: dict = {"kind": "bench_units", "smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "repeat": repeat, "python": sys.version.split()[0]}
    try:
        from importlib.metadata import version

        report["versions"] = {n: version(n) for n in ("mitmproxy", "pyjwt", "cryptography")}
    except Exception:  # noqa: BLE001
        pass
    steps = [("validation", lambda: bench_validation(args.smoke, repeat)),
             ("routes", lambda: bench_routes(args.smoke, repeat)),
             ("config", lambda: bench_config_and_rss(args.smoke, min(repeat, 3), args.no_rss)),
             ("refresh", lambda: bench_refresh(args.smoke, repeat if args.smoke else max(repeat, 7)))]
    for name, step in steps:
        if name not in only:
            continue
        started = time.perf_counter()
        report[name] = step()
        print(f"{name} ({time.perf_counter() - started:.1f} s): {json.dumps(report[name])}", flush=True)
    report["summary"] = summary_rows(report)
    print()
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print("JSON: " + json.dumps(report, separators=(",", ":")))
    if not args.smoke and not args.no_write:
        intro = [f"Run: {report['date']} — `scripts/bench_units.py --repeat {repeat}`; medians; Python "
                 f"{report['python']}, " + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()) + "."]
        write_section(MARK_BEGIN, MARK_END, intro, markdown(report), report)
        print(f"wrote {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
