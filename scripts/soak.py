#!/usr/bin/env python3
"""Soak test: a real mitmdump gateway under steady mixed traffic while the IdP rotates its keys.

    .venv/bin/python scripts/soak.py                 # 10 minutes (the release check)
    .venv/bin/python scripts/soak.py --smoke         # ~15 s, for CI
    .venv/bin/python scripts/soak.py --duration 120 --concurrency 16 --rotate-every 30 --json out.json

What runs (all on 127.0.0.1, nothing else is contacted):
  * a JWKS server (tests/hardening/hardening_kit.KeyServer) that rotates the signing key every
    `--rotate-every` seconds the way Descope does (`rotate`: a new active key at once, the previous
    two stay published);
  * an echo backend and a gateway with four endpoints: issuer + audience, roles, a Descope `DS` cookie,
    and an open one;
  * `--concurrency` client threads on keep-alive connections, mixing valid tokens (a pool of user
    sessions re-issued after each rotation, plus fresh logins), invalid tokens (expired, wrong
    issuer/audience, malformed, alg none, refresh tokens, missing roles, no token) and forged tokens
    (another key under the real kid, tampered payloads, HS256 with the RSA public key, embedded jwk,
    stripped signatures, and a trickle of random kids: an unknown-kid storm at low rate).

Targets (exit status 1 when one is missed): 0 answers >= 500, 0 false accepts (an invalid or forged
token answered 2xx), 0 false rejects (a valid token not answered 200/403 as expected), gateway RSS
growth < 10 % between the end of the warm-up and the end of the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hardening"))
sys.path.insert(0, str(ROOT / "addon"))

from hardening_kit import KeyServer  # noqa: E402
from jwt_testkit import public_jwk  # noqa: E402
from hardening_corpus import compact, seg  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from krakend_mitm.echo_backend import EchoServer  # noqa: E402
from krakend_mitm.processes import GatewayProcess, free_port, gateway_command  # noqa: E402

ISSUER = "https://api.descope.example/P2soakProject"
AUDIENCE = ["api"]


# =============================================================================================
# the rotating IdP


class KeyRing:
    def __init__(self, server: KeyServer, keep: int = 2):
        self.server = server
        self.keep = keep
        self.lock = threading.Lock()
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotations = 0
        self.rotated_at = time.monotonic()
        self.attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rotate()

    def rotate(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = f"soak-{self.rotations}-{uuid.uuid4().hex[:6]}"
        with self.lock:
            self.keys = [(kid, key)] + self.keys[: self.keep]
            self.server.set_keys("/keys", [public_jwk(k, i, alg="RS256", use="sig") for i, k in self.keys])
            self.rotations += 1
            self.rotated_at = time.monotonic()

    def active(self) -> tuple[str, rsa.RSAPrivateKey]:
        with self.lock:
            return self.keys[0]

    def previous(self) -> tuple[str, rsa.RSAPrivateKey]:
        with self.lock:
            return self.keys[1] if len(self.keys) > 1 else self.keys[0]


# =============================================================================================
# traffic


@dataclass
class Request:
    kind: str
    endpoint: str
    headers: list[tuple[str, str]]
    expect: int  # 200, 401 or 403
    valid: bool  # a legitimate token: anything but `expect` is a false reject


def claims(**over) -> dict:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "U" + uuid.uuid4().hex[:10], "drn": "DS", "iat": now - 2,
         "exp": now + 600, "roles": ["user"], "jti": uuid.uuid4().hex}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def token(key, kid: str, header: dict | None = None, alg: str = "RS256", **over) -> str:
    h = {"alg": alg, "typ": "JWT", "kid": kid, **(header or {})}
    return compact(h, claims(**over), key, alg)


def bearer(t: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {t}")]


class Sessions:
    """A pool of clients that each reuse one token until it is re-issued (after a rotation, or when it
    gets old), as browsers and SDKs reuse their session JWT -- and as a misconfigured client keeps
    sending the same expired or wrong-audience token. `over` gives the claims of the pool's tokens
    (callables are evaluated when a token is minted)."""

    def __init__(self, ring: KeyRing, size: int, reissue_after: float, **over):
        self.ring = ring
        self.size = size
        self.reissue_after = reissue_after
        self.over = over
        self.lock = threading.Lock()
        self.pool: list[tuple[float, str, str]] = [(0.0, "", "")] * size  # (issued_at, kid, token)

    def get(self, rng: random.Random) -> str:
        kid, key = self.ring.active()
        i = rng.randrange(self.size)
        with self.lock:
            issued, skid, tok = self.pool[i]
        if not tok or time.monotonic() - issued > self.reissue_after or (skid != kid and rng.random() < 0.3):
            tok = token(key, kid, **{k: v() if callable(v) else v for k, v in self.over.items()})
            with self.lock:
                self.pool[i] = (time.monotonic(), kid, tok)
        return tok


class Pools:
    def __init__(self, ring: KeyRing, reissue_after: float):
        now = lambda: int(time.time())  # noqa: E731
        self.sessions = Sessions(ring, 256, reissue_after)
        self.admins = Sessions(ring, 64, reissue_after, roles=["admin"])
        self.expired = Sessions(ring, 32, reissue_after, exp=lambda: now() - 120)
        self.wrong_issuer = Sessions(ring, 32, reissue_after, iss=ISSUER + "x")
        self.wrong_audience = Sessions(ring, 32, reissue_after, aud=["other"])
        self.refresh = Sessions(ring, 32, reissue_after, drn="DSR")
        self.numeric_string_exp = Sessions(ring, 32, reissue_after, exp=lambda: str(now() + 600))


def make_request(rng: random.Random, ring: KeyRing, pools: Pools, kid_storm: float = 0.0) -> Request:
    kid, key = ring.active()
    sessions = pools.sessions
    if kid_storm and rng.random() < kid_storm:
        # an unknown-kid storm: every token names a key nobody published
        return Request("random-kid", "/s/a", bearer(token(ring.attacker, uuid.uuid4().hex)), 401, False)
    roll = rng.random()
    # ---- valid (50 %)
    if roll < 0.30:
        return Request("valid-session", "/s/a", bearer(sessions.get(rng)), 200, True)
    if roll < 0.32:
        return Request("valid-fresh-login", "/s/a", bearer(token(key, kid)), 200, True)
    if roll < 0.36:
        return Request("valid-session-2", "/s/a", bearer(sessions.get(rng)), 200, True)
    if roll < 0.40:
        pkid, pkey = ring.previous()  # still published: keeps working until it leaves the set
        return Request("valid-previous-key", "/s/a", bearer(token(pkey, pkid)), 200, True)
    if roll < 0.44:
        return Request("valid-roles", "/s/b", bearer(pools.admins.get(rng)), 200, True)
    if roll < 0.48:
        return Request("valid-ds-cookie", "/s/c", [("Cookie", f"DS={sessions.get(rng)}")], 200, True)
    if roll < 0.50:
        return Request("open-endpoint", "/s/open", [], 200, True)
    # ---- invalid (25 %)
    if roll < 0.53:
        return Request("expired", "/s/a", bearer(pools.expired.get(rng)), 401, False)
    if roll < 0.56:
        return Request("wrong-issuer", "/s/a", bearer(pools.wrong_issuer.get(rng)), 401, False)
    if roll < 0.59:
        return Request("wrong-audience", "/s/a", bearer(pools.wrong_audience.get(rng)), 401, False)
    if roll < 0.61:
        return Request("malformed", "/s/a", bearer(rng.choice(["a.bad.token", "x" * 50, "e30.e30", "...", "{}"])),
                       401, False)
    if roll < 0.63:
        h, p, _s = token(key, kid).split(".")
        return Request("alg-none", "/s/a", bearer(f"{seg({'alg': 'none', 'kid': kid})}.{p}."), 401, False)
    if roll < 0.66:
        return Request("refresh-token", "/s/a", bearer(pools.refresh.get(rng)), 401, False)
    if roll < 0.70:
        return Request("missing-role", "/s/b", bearer(sessions.get(rng)), 403, False)
    if roll < 0.72:
        return Request("no-token", "/s/a", [], 401, False)
    if roll < 0.75:
        return Request("numeric-string-exp", "/s/a", bearer(pools.numeric_string_exp.get(rng)), 401, False)
    # ---- forged (25 %)
    if roll < 0.81:
        return Request("other-key-real-kid", "/s/a", bearer(token(ring.attacker, kid)), 401, False)
    if roll < 0.86:
        h, _p, s = sessions.get(rng).split(".")
        forged = seg(claims(sub="admin", roles=["admin"]))
        return Request("tampered-payload", rng.choice(["/s/a", "/s/b"]), bearer(f"{h}.{forged}.{s}"), 401, False)
    if roll < 0.90:
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Request("hs256-with-public-pem", "/s/a", bearer(token(pem, kid, alg="HS256")), 401, False)
    if roll < 0.93:
        jwk = public_jwk(ring.attacker, kid)
        return Request("embedded-jwk", "/s/a", bearer(token(ring.attacker, kid, header={"jwk": jwk})), 401, False)
    if roll < 0.96:
        h, p, _s = sessions.get(rng).split(".")
        return Request("stripped-signature", "/s/a", bearer(f"{h}.{p}."), 401, False)
    if roll < 0.98:
        h, p, s = sessions.get(rng).split(".")
        return Request("signature-of-other-token", "/s/a", bearer(f"{h}.{seg(claims(sub='x'))}.{s}"), 401, False)
    pkid, _pkey = ring.previous()  # a published kid, the attacker's signature
    return Request("other-key-previous-kid", "/s/b", bearer(token(ring.attacker, pkid, roles=["admin"])), 401, False)


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    total: int = 0
    by_kind: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0
    false_accepts: int = 0
    false_rejects: int = 0
    unexpected: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    samples: list = field(default_factory=list)
    latencies: list = field(default_factory=list)

    def record(self, req: Request, status: int, seconds: float, since_rotation: float) -> None:
        with self.lock:
            self.total += 1
            self.by_kind[req.kind] += 1
            self.statuses[status] += 1
            if len(self.latencies) < 200_000:
                self.latencies.append(seconds)
            if status >= 500:
                self.server_errors += 1
                self._sample("5xx", req, status, since_rotation)
            if not req.valid and 200 <= status < 300:
                self.false_accepts += 1
                self._sample("false accept", req, status, since_rotation)
            elif req.valid and status != req.expect:
                self.false_rejects += 1
                self._sample("false reject", req, status, since_rotation)
            elif status != req.expect and status < 500:
                self.unexpected[(req.kind, status)] += 1

    def _sample(self, what: str, req: Request, status: int, since_rotation: float) -> None:
        if len(self.samples) < 20:
            self.samples.append({"what": what, "kind": req.kind, "endpoint": req.endpoint, "status": status,
                                 "seconds_after_rotation": round(since_rotation, 2)})


class Client:
    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def send(self, req: Request) -> int:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.putrequest("GET", req.endpoint, skip_accept_encoding=True)
                for name, value in req.headers:
                    self.conn.putheader(name, value)
                self.conn.endheaders()
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def send_and_record(client: Client, stats: Stats, req: Request, since_rotation: float) -> None:
    """One request; a transport failure (after the client's one retry) is counted, not raised."""
    started = time.monotonic()
    try:
        status = client.send(req)
    except (OSError, http.client.HTTPException):
        with stats.lock:
            stats.transport_errors += 1
        return
    stats.record(req, status, time.monotonic() - started, since_rotation)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# =============================================================================================
# the run


def gateway_config(port: int, jwks_url: str, backend_url: str) -> dict:
    def validator(**extra):
        # descope.md §9's recommended settings: cache on, a short failed-kid cooldown
        return {"auth/validator": {"alg": "RS256", "jwk_url": jwks_url, "disable_jwk_security": True, "cache": True,
                                   "failed_jwk_key_cooldown": "10s", **extra}}
    return {"version": 3, "port": port, "endpoints": [
        {"endpoint": "/s/a", "backend": [{"host": [backend_url], "url_pattern": "/soak/a"}],
         "extra_config": validator(issuer=ISSUER, audience=AUDIENCE)},
        {"endpoint": "/s/b", "backend": [{"host": [backend_url], "url_pattern": "/soak/b"}],
         "extra_config": validator(roles=["admin"])},
        {"endpoint": "/s/c", "backend": [{"host": [backend_url], "url_pattern": "/soak/c"}],
         "extra_config": validator(cookie_key="DS", issuer=ISSUER)},
        {"endpoint": "/s/open", "backend": [{"host": [backend_url], "url_pattern": "/soak/open"}]},
    ]}


def prefill(port: int, ring: KeyRing, count: int, concurrency: int, stats: Stats) -> float:
    """Fill the gateway's bounded caches (the verified-token LRU) before the RSS baseline: `count`
    distinct valid tokens, each sent once. Returns the seconds it took."""
    started = time.monotonic()
    remaining = [count]
    lock = threading.Lock()

    def worker() -> None:
        client = Client(port)
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            kid, key = ring.active()
            req = Request("prefill-valid", "/s/a", bearer(token(key, kid)), 200, True)
            send_and_record(client, stats, req, time.monotonic() - ring.rotated_at)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def token_cache_capacity() -> int:
    try:
        from krakend_mitm.auth.token_cache import DEFAULT_CAPACITY
    except ImportError:  # a gateway without a verified-token cache
        return 0
    return int(DEFAULT_CAPACITY)


def run(duration: float, concurrency: int, rotate_every: float, warmup: float, reissue_after: float,
        seed: int, quiet: bool, kid_storm: float = 0.0, prefill_count: int = 0, preload: str = "") -> dict:
    server = KeyServer()
    ring = KeyRing(server)
    backend = EchoServer().start()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    config_path = workdir / "krakend.json"
    config_path.write_text(json.dumps(gateway_config(port, server.url("/keys"), backend.url)))
    gateway = GatewayProcess(gateway_command(str(config_path), port, sets=("flow_detail=0",)), port)
    stats = Stats()
    stop = threading.Event()
    pools = Pools(ring, reissue_after)
    rss: dict[str, int] = {}
    prefill_seconds = 0.0
    saved_preload = os.environ.get("LD_PRELOAD")
    try:
        if preload:  # only the gateway process runs with the other allocator
            os.environ["LD_PRELOAD"] = preload
        try:
            gateway.start()
        finally:
            if preload:
                if saved_preload is None:
                    os.environ.pop("LD_PRELOAD", None)
                else:
                    os.environ["LD_PRELOAD"] = saved_preload
        pid = gateway.process.pid
        rss["first"] = rss_kib(pid)
        if prefill_count:
            if not quiet:
                print(f"  prefill: {prefill_count} distinct valid tokens (fills the verified-token cache)", flush=True)
            prefill_seconds = prefill(port, ring, prefill_count, concurrency, stats)
            rss["after_prefill"] = rss_kib(pid)

        def worker(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            client = Client(port)
            while not stop.is_set():
                req = make_request(rng, ring, pools, kid_storm)
                send_and_record(client, stats, req, time.monotonic() - ring.rotated_at)

        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
        started = time.monotonic()
        for t in threads:
            t.start()
        next_rotation = started + rotate_every
        warm_sampled = False
        rss_samples = []
        last_report = started
        while True:
            now = time.monotonic()
            if now - started >= duration:
                break
            if not warm_sampled and now - started >= warmup:
                rss["after_warmup"] = rss_kib(pid)
                warm_sampled = True
            if now >= next_rotation:
                ring.rotate()
                next_rotation += rotate_every
            if gateway.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {gateway.process.returncode}:\n{gateway.log()[-3000:]}")
            if now - last_report >= 10:
                rss_samples.append((round(now - started), rss_kib(pid)))
                last_report = now
                if not quiet:
                    with stats.lock:
                        print(f"  t={now - started:5.0f}s requests={stats.total} 5xx={stats.server_errors} "
                              f"false_accepts={stats.false_accepts} false_rejects={stats.false_rejects} "
                              f"rss={rss_samples[-1][1] / 1024:.1f} MiB rotations={ring.rotations - 1}", flush=True)
            stop.wait(min(0.2, max(0.0, next_rotation - now)))  # the control loop's tick
        stop.set()
        for t in threads:
            t.join(15)
        elapsed = time.monotonic() - started
        rss["end"] = rss_kib(pid)
        rss.setdefault("after_warmup", rss["first"])
        log = gateway.log()
    finally:
        stop.set()
        gateway.stop()
        server.close()
        backend.stop()
    growth = (rss["end"] - rss["after_warmup"]) / rss["after_warmup"] * 100 if rss["after_warmup"] else 0.0
    latencies = sorted(stats.latencies) or [0.0]
    result = {
        "duration_s": round(elapsed, 1),
        "prefill": {"tokens": prefill_count, "seconds": round(prefill_seconds, 1)},
        "concurrency": concurrency,
        "kid_storm_fraction": kid_storm,
        "gateway_allocator": f"LD_PRELOAD={preload}" if preload else "glibc malloc (default)",
        "requests": stats.total,
        "requests_per_s": round(stats.total / elapsed, 1),
        "rotations": ring.rotations - 1,
        "server_errors_5xx": stats.server_errors,
        "false_accepts": stats.false_accepts,
        "false_rejects": stats.false_rejects,
        "transport_errors": stats.transport_errors,
        "unexpected_4xx": {f"{k}:{s}": n for (k, s), n in stats.unexpected.items()},
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "by_kind": dict(sorted(stats.by_kind.items())),
        "latency_ms": {"p50": round(latencies[len(latencies) // 2] * 1000, 1),
                       "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
                       "max": round(latencies[-1] * 1000, 1)},
        "rss_kib": rss,
        "rss_growth_percent": round(growth, 2),
        "rss_samples": rss_samples,
        "samples": stats.samples,
        "tracebacks_in_gateway_log": log.count("Traceback"),
    }
    result["targets"] = {
        "no_5xx": stats.server_errors == 0,
        "no_false_accepts": stats.false_accepts == 0,
        "no_false_rejects": stats.false_rejects == 0,
        "rss_growth_under_10_percent": growth < 10.0,
        "no_transport_errors": stats.transport_errors == 0,
        "no_tracebacks": result["tracebacks_in_gateway_log"] == 0,
    }
    result["ok"] = all(result["targets"].values())
    return result


def parse_duration(text: str) -> float:
    text = text.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="10m", help="how long to run (seconds, or 90s / 10m); default 10m")
    parser.add_argument("--smoke", action="store_true", help="CI mode: 15 s, a rotation every 4 s")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rotate-every", default=None, help="key rotation period (default 30s, 4s with --smoke)")
    parser.add_argument("--warmup", default=None, help="RSS baseline after this long (default 10%% of the run, 60 s max)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument("--kid-storm", type=float, default=0.0, metavar="FRACTION",
                        help="also send this fraction of requests with random unknown kids (an unknown-kid storm); "
                             "see SECURITY.md: keys rotated in during a storm are found at the next allowed download")
    parser.add_argument("--prefill", type=int, default=None, metavar="N",
                        help="send N distinct valid tokens before the timed run, so the bounded verified-token "
                             "cache is full when the RSS baseline is taken (default: 1.1 x its capacity for runs "
                             "of 2 minutes or more, 0 otherwise)")
    parser.add_argument("--preload", default="", metavar="LIB",
                        help="run the gateway with LD_PRELOAD=LIB, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2: "
                             "glibc's malloc fragments under this mixed load (about 125 bytes of RSS per request, "
                             "while Python's heap stays flat); jemalloc keeps RSS flat (SECURITY.md)")
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    duration = 15.0 if args.smoke and args.duration == "10m" else parse_duration(args.duration)
    rotate_every = parse_duration(args.rotate_every) if args.rotate_every else (4.0 if args.smoke else 30.0)
    warmup = parse_duration(args.warmup) if args.warmup else min(60.0, max(5.0, duration * 0.1))
    prefill_count = args.prefill if args.prefill is not None else (
        int(token_cache_capacity() * 1.1) if duration >= 120 else 0)
    reissue_after = max(2.0, rotate_every)
    if not args.quiet:
        print(f"soak: {duration:.0f} s, concurrency {args.concurrency}, key rotation every {rotate_every:.0f} s, "
              f"RSS baseline after {warmup:.0f} s", flush=True)
    result = run(duration, args.concurrency, rotate_every, warmup, reissue_after, args.seed, args.quiet,
                 args.kid_storm, prefill_count, args.preload)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    rss = result["rss_kib"]
    print(f"\nsoak {'PASSED' if result['ok'] else 'FAILED'}: {result['requests']} requests in {result['duration_s']} s "
          f"({result['requests_per_s']}/s), {result['rotations']} key rotations; 5xx={result['server_errors_5xx']} "
          f"false_accepts={result['false_accepts']} false_rejects={result['false_rejects']}; "
          f"RSS {rss['after_warmup'] / 1024:.1f} -> {rss['end'] / 1024:.1f} MiB ({result['rss_growth_percent']:+.1f} %)")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
