"""The benchmark scripts in their smoke mode (issue 6): they run, exit 0 and report every figure.
No thresholds here: timings on a shared CI machine say nothing; `BENCHMARKS.md` holds real runs."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def run_script(name: str, *args: str, timeout: float = 120) -> tuple[str, dict]:
    out = subprocess.run([sys.executable, str(SCRIPTS / name), "--smoke", *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, f"{name} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    lines = [line for line in out.stdout.splitlines() if line.startswith("JSON: ")]
    assert lines, out.stdout[-3000:]
    return out.stdout, json.loads(lines[-1][len("JSON: "):])


def test_bench_gateway_smoke(tmp_path):
    emitted = tmp_path / "gateway.json"
    stdout, report = run_script("bench_gateway.py", "--json", str(emitted))
    assert report["smoke"] is True
    assert json.loads(emitted.read_text()) == report
    rows = {(r["setup"], r["concurrency"]): r for r in report["results"]}
    assert set(rows) == {(s, c) for s in ("a", "b", "c", "d", "e-noop", "e-json") for c in (1, 16)}
    for row in rows.values():
        assert row["rps"] > 0 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
        assert row["errors"] == 0
        assert row["ratio_to_a"] is not None
    assert "| (c) gateway, RS256 validator, one token repeated | 16 |" in stdout
    assert report["machine"]["mitmproxy"] and report["machine"]["python"]


def test_bench_gateway_smoke_with_the_asyncio_load_generator():
    """The fallback when wrk cannot be installed."""
    _, report = run_script("bench_gateway.py", "--load", "asyncio", "--setups", "a,d", "--concurrency", "4")
    assert report["machine"]["load_generator"] == "asyncio-client"
    assert {r["setup"] for r in report["results"]} == {"a", "d"}
    assert all(r["rps"] > 0 and r["errors"] == 0 for r in report["results"])


def test_bench_units_smoke(tmp_path):
    emitted = tmp_path / "units.json"
    stdout, report = run_script("bench_units.py", "--json", str(emitted))
    assert json.loads(emitted.read_text()) == report
    summary = {row["figure"]: row for row in report["summary"]}
    assert len(summary) == 6
    for figure, row in summary.items():
        assert row["value"] is not None and row["value"] > 0, figure
        assert row["met"] is None  # smoke: no thresholds
    validation = report["validation"]
    assert validation["repeated_us"] < validation["new_us"]  # the cache hit skips the RSA verification
    assert set(report["routes"]["lookup_us"]) == {"10", "1000", "10000"}
    assert report["config"]["gateway_rss_mib"] > report["config"]["plain_mitmdump_rss_mib"] > 0
    assert "| repeated-token validation |" in stdout


def test_soak_smoke(tmp_path):
    """scripts/soak.py in its ~15 s mode: mixed valid/invalid/forged traffic through a real gateway while
    the JWKS rotates. The security targets hold in any run; RSS growth over 15 s says nothing."""
    emitted = tmp_path / "soak.json"
    out = subprocess.run([sys.executable, str(SCRIPTS / "soak.py"), "--smoke", "--json", str(emitted)],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    report = json.loads(emitted.read_text())
    targets = report["targets"]
    for name in ("no_5xx", "no_false_accepts", "no_false_rejects", "no_tracebacks", "no_transport_errors"):
        assert targets[name], f"{name} missed:\n{out.stdout[-3000:]}"
    assert report["requests"] > 100 and report["rotations"] >= 1
    assert out.returncode in (0, 1)  # 1 only when the (meaningless here) RSS figure missed
    assert targets["rss_growth_under_10_percent"] or out.returncode == 1
