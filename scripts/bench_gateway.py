#!/usr/bin/env python3
"""End-to-end throughput and latency: the gateway against plain mitmproxy, in one run.

    .venv/bin/python scripts/bench_gateway.py                 # full run, writes BENCHMARKS.md
    .venv/bin/python scripts/bench_gateway.py --smoke         # ~1 s per setup, no thresholds, no file written

Setups, all against the same fast local backend (a single-process asyncio server answering a fixed
~300-byte JSON object):

  (a)      plain `mitmdump --mode reverse:` to the backend: the floor, no addon
  (b)      the gateway, a json endpoint without auth
  (c)      the gateway, RS256 `auth/validator` (Descope-shaped config), one token repeated
  (d)      the same endpoint, a fresh token on every request (pre-minted; the pool is larger than the
           verified-token cache, so every request misses it)
  (e-noop) the gateway, a `no-op` endpoint (pass-through)
  (e-json) the gateway, a json endpoint with `allow` + `mapping` + `group` manipulation

Placement on the 2-core machine: the load generator is pinned to core 0 (`taskset -c 0`), the
system under test (mitmdump or the gateway) and the backend to core 1, for every setup alike.
The load generator is `wrk` (installed with apt-get when missing and possible), else a built-in
asyncio client. After a warm-up of every setup, `--repeat` rounds each run every setup once per
concurrency (1 and 16) for a fixed `--duration`, in alternating order; a setup's ratio to (a) is the
median over rounds of its throughput divided by (a)'s in the same round, which cancels most of the
drift of a shared virtual machine. Prints requests/s, p50 and p99 latency, the CPU time the system
under test spent per request (from /proc) and the ratios; writes the figures as JSON (`--json`)
and as a Markdown table in BENCHMARKS.md (full runs only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
MARK_BEGIN = "<!-- bench_gateway:begin -->"
MARK_END = "<!-- bench_gateway:end -->"

PROJECT_ID = "P2BenchBenchBenchBenchBench0"
DESCOPE_JWKS = f"https://api.descope.com/v2/keys/{PROJECT_ID}"
LOAD_CORE = "0"
SUT_CORE = "1"

# ---------------------------------------------------------------------------------------------
# the fast backend (run as its own process: `bench_gateway.py --serve-backend PORT`)

BACKEND_BODY = json.dumps({
    "id": 42, "name": "bench", "status": "active", "email": "bench@example.com",
    "tags": ["a", "b", "c"], "score": 12.5, "created": "2026-01-01T00:00:00Z",
    "address": {"street": "1 Main St", "city": "Springfield", "zip": "12345"},
    "active": True, "notes": "a small fixed JSON object, the same for every request",
}, separators=(",", ":")).encode()
BACKEND_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(BACKEND_BODY)).encode() + b"\r\n\r\n" + BACKEND_BODY)


class _BackendProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one fixed answer per request head (+ Content-Length body, if any)."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        buffer = self.buffer + data
        out = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            head = buffer[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17: stop if stop >= 0 else None])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length:]
            out.append(BACKEND_RESPONSE)
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))


def serve_backend(port: int) -> None:
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_BackendProtocol, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# helpers: ports, processes, pinning


def free_port() -> int:
    from krakend_mitm.processes import free_port as _free_port

    return _free_port()


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 \
        else command


def wait_http(port: int, path: str = "/", timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}: {' '.join(process.args)}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            connection.getresponse().read()
            connection.close()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port} after {timeout} s")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log_path: str

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, 9)
                except ProcessLookupError:
                    pass
                self.process.wait(5)

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid: int) -> int:
    """VmRSS of a process (or of the single child it exec'd, for `taskset`), from /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def spawn(name: str, command: list[str]) -> Proc:
    fd, log_path = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return Proc(name, process, log_path)


def mitmdump() -> str:
    from krakend_mitm.processes import mitm_executable

    return mitm_executable()


# ---------------------------------------------------------------------------------------------
# tokens and the JWKS server


def _mint_batch(args: tuple[bytes, int, int]) -> list[str]:
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem, start, count = args
    key = serialization.load_pem_private_key(pem, password=None)
    now = int(time.time())
    return [jwt.encode(session_claims(now, f"U{start + i}"), key, algorithm="RS256", headers={"kid": "bench-k1"})
            for i in range(count)]


def session_claims(now: int, sub: str) -> dict:
    """A Descope session token's shape."""
    return {"sub": sub, "iss": PROJECT_ID, "drn": "DS", "amr": ["email"], "iat": now, "exp": now + 3 * 3600,
            "roles": ["user"], "permissions": ["read"], "tenants": {"T1": {"roles": ["admin"], "permissions": []}},
            "jti": f"{sub}-{now}"}


def mint_tokens(key, count: int) -> list[str]:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if count <= 200:
        return _mint_batch((pem, 0, count))
    workers = max(1, min(2, os.cpu_count() or 1))
    chunk = -(-count // (workers * 4))
    jobs = [(pem, i, min(chunk, count - i)) for i in range(0, count, chunk)]
    with ProcessPoolExecutor(workers) as pool:
        return [t for batch in pool.map(_mint_batch, jobs) for t in batch]


class JWKSServer:
    """A JWK Set on 127.0.0.1; `delay` seconds before each answer (a slow IdP), `hits` counts downloads."""

    def __init__(self, jwks: dict | bytes):
        body = jwks if isinstance(jwks, bytes) else json.dumps(jwks).encode()
        self.delay = 0.0
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                server.hits += 1
                if server.delay:
                    time.sleep(server.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def gateway_config(port: int, backend_port: int) -> dict:
    host = [f"http://127.0.0.1:{backend_port}"]
    validator = {"alg": "RS256", "jwk_url": DESCOPE_JWKS, "cache": True, "issuer": PROJECT_ID, "roles": ["user"]}
    return {"version": 3, "port": port, "timeout": "3s", "endpoints": [
        {"endpoint": "/noauth", "backend": [{"url_pattern": "/json", "host": host}]},
        {"endpoint": "/auth", "backend": [{"url_pattern": "/json", "host": host}],
         "extra_config": {"auth/validator": validator}},
        {"endpoint": "/noop", "output_encoding": "no-op",
         "backend": [{"url_pattern": "/json", "host": host, "encoding": "no-op"}]},
        {"endpoint": "/manipulated", "backend": [{
            "url_pattern": "/json", "host": host, "allow": ["id", "name", "status", "address.city", "tags"],
            "mapping": {"name": "username"}, "group": "user"}]},
    ]}


# ---------------------------------------------------------------------------------------------
# load generators


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str
    sut_cpu_us: float = 0.0  # CPU time of the system under test per request
    backend_cpu_us: float = 0.0
    sut_cpu_share: float = 0.0  # its CPU time / wall time (1.0 = one core saturated)


def ensure_wrk(allow_install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "wrk"]):
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        found = shutil.which("wrk")
        if found:
            return found
    return None


WRK_LUA = """
local tokens = {}
local i = tonumber(os.getenv("BENCH_OFFSET") or "0") or 0
local token_file = os.getenv("BENCH_TOKENS")
local single = os.getenv("BENCH_TOKEN")
if token_file and token_file ~= "" then
  for line in io.lines(token_file) do tokens[#tokens + 1] = "Bearer " .. line end
elseif single and single ~= "" then
  tokens[1] = "Bearer " .. single
end
local errors = 0
request = function()
  if #tokens == 0 then return wrk.format() end
  i = i + 1
  if i > #tokens then i = i % #tokens + 1 end
  return wrk.format(nil, nil, {["Authorization"] = tokens[i]})
end
"""

_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _WRK_UNITS[m.group(2)]


def run_wrk(wrk: str, url: str, connections: int, seconds: float, lua: str, env: dict) -> LoadResult:
    command = pinned(LOAD_CORE, [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                                 "--timeout", "10s", "-s", lua, url])
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=seconds + 60)
    text = out.stdout
    if out.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed ({out.returncode}): {text}\n{out.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    return LoadResult(rps, p50, p99, total, errors, "wrk")


def _async_load(host: str, port: int, path: str, connections: int, seconds: float, tokens: list[str]) -> dict:
    """A small keep-alive HTTP/1.1 load generator (the fallback when wrk is unavailable)."""

    async def main():
        latencies: list[float] = []
        errors = 0
        counter = [0]
        deadline = time.perf_counter() + seconds

        async def worker():
            nonlocal errors
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while time.perf_counter() < deadline:
                    i = counter[0]
                    counter[0] += 1
                    auth = f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n" if tokens else ""
                    started = time.perf_counter()
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                    if m:
                        await reader.readexactly(int(m.group(1)))
                    latencies.append(time.perf_counter() - started)
                    if status >= 400:
                        errors += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(main())
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0
    return {"rps": len(ordered) / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "requests": len(ordered),
            "errors": errors}


def run_async_client(port: int, path: str, connections: int, seconds: float, tokens: list[str],
                     tokens_file: str | None, offset: int = 0) -> LoadResult:
    """The asyncio client in its own process pinned to the load core."""
    args = {"port": port, "path": path, "connections": connections, "seconds": seconds,
            "tokens_file": tokens_file, "tokens": tokens if not tokens_file else [], "offset": offset}
    command = pinned(LOAD_CORE, [sys.executable, __file__, "--load-json", json.dumps(args)])
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return LoadResult(d["rps"], d["p50_ms"], d["p99_ms"], d["requests"], d["errors"], "asyncio-client")


def load_main(spec: str) -> None:
    args = json.loads(spec)
    tokens = args["tokens"]
    if args.get("tokens_file"):
        tokens = Path(args["tokens_file"]).read_text().split()
    offset = args.get("offset", 0) % len(tokens) if tokens else 0
    tokens = tokens[offset:] + tokens[:offset]
    print(json.dumps(_async_load("127.0.0.1", args["port"], args["path"], args["connections"], args["seconds"],
                                 tokens)))


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Setup:
    key: str
    title: str
    port: int
    path: str
    pid: int = 0
    token: str | None = None
    tokens_file: str | None = None
    samples: dict[int, list[LoadResult]] = field(default_factory=dict)
    ratios: dict[int, list[float]] = field(default_factory=dict)  # per round, to (a) in the same round
    cpu_ratios: dict[int, list[float]] = field(default_factory=dict)  # (a)'s CPU/request over this one's
    offset: int = 0  # next token of the pool (fresh-token setup): never re-send one the cache may hold


def machine_info(load_tool: str) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    try:
        from importlib.metadata import version

        for name in ("mitmproxy", "pyjwt", "cryptography", "h11"):
            try:
                versions[name] = version(name)
            except Exception:  # noqa: BLE001
                pass
    except ImportError:
        pass
    wrk_version = ""
    if load_tool == "wrk":
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
        wrk_version = (out.stdout or out.stderr).split("\n")[0].strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "load_generator": wrk_version or load_tool, "placement": f"load generator on core {LOAD_CORE}; "
            f"mitmdump/gateway and backend on core {SUT_CORE}", **versions}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="~1 s per setup, few tokens, no thresholds, no file written")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per setup, concurrency and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per setup and concurrency")
    parser.add_argument("--repeat", type=int, default=10, help="rounds (medians of the rounds are reported)")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--setups", default="a,b,c,d,e-noop,e-json")
    parser.add_argument("--load", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install wrk")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_backend is not None:
        serve_backend(args.serve_backend)
        return 0
    if args.load_json is not None:
        load_main(args.load_json)
        return 0
    if args.smoke:
        args.duration, args.warmup, args.repeat = 1.0, 0.0, 1
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    wanted = args.setups.split(",")

    wrk = None
    if args.load in ("auto", "wrk"):
        wrk = ensure_wrk(allow_install=not args.no_install and not args.smoke)
        if wrk is None and args.load == "wrk":
            print("wrk is not available", file=sys.stderr)
            return 2
    tool = "wrk" if wrk else "asyncio-client"

    from cryptography.hazmat.primitives.asymmetric import rsa
    import jwt

    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs: list[Proc] = []
    jwks_server = None
    try:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update({"kid": "bench-k1", "alg": "RS256", "use": "sig"})
        jwks_server = JWKSServer({"keys": [jwk]})

        # (d) needs a fresh token per request: more tokens than requests, or more than the cache holds
        # (then cycling through them in order misses an LRU cache on every request)
        fresh_count = 300 if args.smoke else 10_500
        need_fresh = "d" in wanted
        started = time.perf_counter()
        tokens = mint_tokens(key, fresh_count if need_fresh else 1)
        repeated = mint_tokens(key, 1)[0]
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        print(f"minted {len(tokens)} RS256 tokens in {time.perf_counter() - started:.1f} s", flush=True)
        lua = work / "bench.lua"
        lua.write_text(WRK_LUA)

        backend_port = free_port()
        backend = spawn("backend", pinned(SUT_CORE, [sys.executable, __file__, "--serve-backend", str(backend_port)]))
        procs.append(backend)
        wait_http(backend_port, "/json", process=backend.process)

        setups: list[Setup] = []
        if "a" in wanted:
            port = free_port()
            plain = spawn("plain", pinned(SUT_CORE, [mitmdump(), "--mode", f"reverse:http://127.0.0.1:{backend_port}",
                                                     "--listen-host", "127.0.0.1", "--listen-port", str(port)]))
            procs.append(plain)
            wait_http(port, "/json", process=plain.process)
            setups.append(Setup("a", "plain mitmdump --mode reverse:", port, "/json", pid=plain.process.pid))
        if any(s != "a" for s in wanted):
            from krakend_mitm.processes import GatewayProcess, gateway_command

            port = free_port()
            config_path = work / "krakend.json"
            config_path.write_text(json.dumps(gateway_config(port, backend_port)))
            command = gateway_command(str(config_path), port,
                                      sets=(f"jwk_url_map=https://api.descope.com={jwks_server.base}",))
            gateway = GatewayProcess(pinned(SUT_CORE, command), port, log_path=str(work / "gateway.log"))
            gateway.start()
            procs.append(Proc("gateway", gateway.process, gateway.log_path))
            gateway_pid = gateway.process.pid
            if "b" in wanted:
                setups.append(Setup("b", "gateway, json endpoint, no auth", port, "/noauth", pid=gateway_pid))
            if "c" in wanted:
                setups.append(Setup("c", "gateway, RS256 validator, one token repeated", port, "/auth", token=repeated, pid=gateway_pid))
            if "d" in wanted:
                setups.append(Setup("d", "gateway, RS256 validator, fresh token every request", port, "/auth",
                                    tokens_file=str(tokens_file), pid=gateway_pid))
            if "e-noop" in wanted:
                setups.append(Setup("e-noop", "gateway, no-op endpoint", port, "/noop", pid=gateway_pid))
            if "e-json" in wanted:
                setups.append(Setup("e-json", "gateway, json endpoint with allow/mapping/group", port, "/manipulated", pid=gateway_pid))

        def measure(setup: Setup, connections: int, seconds: float) -> LoadResult:
            url = f"http://127.0.0.1:{setup.port}{setup.path}"
            cpu_before = cpu_seconds(setup.pid), cpu_seconds(backend.process.pid), time.perf_counter()
            if wrk:
                env = {"BENCH_TOKEN": setup.token or "", "BENCH_TOKENS": setup.tokens_file or "",
                       "BENCH_OFFSET": str(setup.offset)}
                result = run_wrk(wrk, url, connections, seconds, str(lua), env)
            else:
                result = run_async_client(setup.port, setup.path, connections, seconds,
                                          [setup.token] if setup.token else [], setup.tokens_file, setup.offset)
            # requests still in flight when the run stopped were sent too: skip a margin
            setup.offset += result.requests + 2 * connections
            sut = cpu_seconds(setup.pid) - cpu_before[0]
            back = cpu_seconds(backend.process.pid) - cpu_before[1]
            wall = time.perf_counter() - cpu_before[2]
            if result.requests:
                result.sut_cpu_us = sut / result.requests * 1e6
                result.backend_cpu_us = back / result.requests * 1e6
            result.sut_cpu_share = sut / wall if wall else 0.0
            return result

        args.load_before = loadavg()
        print(f"load generator: {tool}; load average before: {args.load_before}", flush=True)
        # Warm-up once per setup and concurrency, then rounds: every setup once per round, in an order
        # that alternates, so that a slow phase of the (shared, virtual) machine hits all setups alike;
        # ratios to (a) are taken within each round and their median reported.
        if args.warmup > 0:
            for setup in setups:
                for connections in concurrencies:
                    measure(setup, connections, args.warmup)
        for rep in range(args.repeat):
            for connections in concurrencies:
                order = setups if rep % 2 == 0 else setups[::-1]
                floor = floor_cpu = None
                round_results = []
                for setup in order:
                    result = measure(setup, connections, args.duration)
                    setup.samples.setdefault(connections, []).append(result)
                    round_results.append((setup, result))
                    if setup.key == "a":
                        floor, floor_cpu = result.rps, result.sut_cpu_us
                for setup, result in round_results:
                    if floor:
                        setup.ratios.setdefault(connections, []).append(result.rps / floor)
                    if floor_cpu and result.sut_cpu_us:
                        setup.cpu_ratios.setdefault(connections, []).append(floor_cpu / result.sut_cpu_us)
                    print(f"[{rep + 1}/{args.repeat}] ({setup.key}) c={connections}: {result.rps:8.1f} req/s  "
                          f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  CPU/request {result.sut_cpu_us:6.0f} µs "
                          f"(+ backend {result.backend_cpu_us:4.0f} µs; SUT at {result.sut_cpu_share:4.0%} of a core)  "
                          f"errors {result.errors}",
                          flush=True)
        rss = {p.name: round(p.rss_kib() / 1024, 1) for p in procs}
    finally:
        for p in procs:
            p.stop()
        if jwks_server is not None:
            jwks_server.close()

    report = build_report(setups, concurrencies, args, machine_info(tool), rss)
    print_report(report)
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print("JSON: " + json.dumps(report, separators=(",", ":")))
    if not args.smoke and not args.no_write:
        write_markdown(report)
        print(f"wrote {BENCHMARKS_MD}")
    failed = [f"{s['setup']} c={s['concurrency']}" for s in report["results"] if s["errors"]]
    if failed:
        print(f"requests failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


TARGETS = {("c", 16): 0.95, ("d", 16): 0.88, ("b", 16): 0.97}


def build_report(setups: list[Setup], concurrencies: list[int], args, machine: dict, rss: dict) -> dict:
    results = []
    floor = {c: None for c in concurrencies}
    for setup in setups:
        if setup.key == "a":
            for c in concurrencies:
                floor[c] = statistics.median(r.rps for r in setup.samples.get(c, [])) if setup.samples.get(c) else None
    for setup in setups:
        for c in concurrencies:
            samples = setup.samples.get(c, [])
            if not samples:
                continue
            rps = statistics.median(r.rps for r in samples)
            row = {
                "setup": setup.key, "title": setup.title, "concurrency": c,
                "rps": round(rps, 1), "p50_ms": round(statistics.median(r.p50_ms for r in samples), 2),
                "p99_ms": round(statistics.median(r.p99_ms for r in samples), 2),
                "rps_runs": [round(r.rps, 1) for r in samples],
                "requests": sum(r.requests for r in samples), "errors": sum(r.errors for r in samples),
                "ratio_to_a": round(statistics.median(setup.ratios[c]), 3) if setup.ratios.get(c) else None,
                "ratio_of_medians": round(rps / floor[c], 3) if floor.get(c) else None,
                "ratio_runs": [round(x, 3) for x in setup.ratios.get(c, [])],
                "cpu_ratio_to_a": round(statistics.median(setup.cpu_ratios[c]), 3) if setup.cpu_ratios.get(c) else None,
                "sut_cpu_us_per_request": round(statistics.median(r.sut_cpu_us for r in samples), 1),
                "backend_cpu_us_per_request": round(statistics.median(r.backend_cpu_us for r in samples), 1),
            }
            target = TARGETS.get((setup.key, c))
            if target is not None:
                row["target"] = target
                row["target_met"] = None if args.smoke or row["ratio_to_a"] is None else row["ratio_to_a"] >= target
            results.append(row)
    return {
        "kind": "bench_gateway", "smoke": bool(args.smoke), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": args.duration, "warmup_s": args.warmup, "repeat": args.repeat,
        "machine": machine, "load_average_before": args.load_before, "load_average_after": loadavg(),
        "rss_mib_at_end": rss, "results": results,
    }


def markdown_table(report: dict) -> str:
    lines = ["| setup | conc. | req/s (median) | p50 ms | p99 ms | CPU µs/req | ratio to (a) | target | "
             "CPU ratio | ratio per round |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in report["results"]:
        target = ""
        if "target" in r:
            met = r.get("target_met")
            target = f"≥ {r['target']}" + ("" if met is None else (" ✅" if met else " ❌"))
        ratio = "" if r["ratio_to_a"] is None else f"{r['ratio_to_a']:.3f}"
        lines.append(f"| ({r['setup']}) {r['title']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['sut_cpu_us_per_request']:.0f} | {ratio} | {target} | "
                     f"{'' if r.get('cpu_ratio_to_a') is None else format(r['cpu_ratio_to_a'], '.3f')} | "
                     f"{', '.join(f'{x:.2f}' for x in r['ratio_runs'])} |")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    m = report["machine"]
    print()
    print(f"machine: {m.get('cpu')} x{m.get('cores')}, Linux {m.get('kernel')}, Python {m.get('python')}, "
          f"mitmproxy {m.get('mitmproxy')}, {m.get('load_generator')}")
    print(markdown_table(report))


def write_markdown(report: dict) -> None:
    m = report["machine"]
    intro = [
        f"Run: {report['date']} — `scripts/bench_gateway.py --duration {report['duration_s']:g} "
        f"--warmup {report['warmup_s']:g} --repeat {report['repeat']}`; medians of {report['repeat']} rounds; "
        f"load average before/after: {report['load_average_before']} / {report['load_average_after']}.",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, Linux {m.get('kernel')}; Python {m.get('python')}, "
        f"mitmproxy {m.get('mitmproxy')}, PyJWT {m.get('pyjwt')}, cryptography {m.get('cryptography')}, "
        f"h11 {m.get('h11')}; load generator: {m.get('load_generator')}. Placement: {m.get('placement')}. "
        f"RSS at the end (MiB): {', '.join(f'{k} {v}' for k, v in report['rss_mib_at_end'].items())}.",
    ]
    write_section(MARK_BEGIN, MARK_END, intro, markdown_table(report), report)


def write_section(begin: str, end: str, intro: list[str], table: str, report: dict) -> None:
    """One script's section of BENCHMARKS.md: intro lines, the table, the raw JSON folded away."""
    section = "\n".join([begin, *intro, "", table, "", "<details><summary>JSON</summary>", "", "```json",
                         json.dumps(report, indent=1), "```", "", "</details>", end])
    replace_section(BENCHMARKS_MD, begin, end, section)


def replace_section(path: Path, begin: str, end: str, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
