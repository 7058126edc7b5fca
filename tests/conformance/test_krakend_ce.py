"""KrakenD CE's own integration specs, run through a real gateway by ../shared/conformance/krakend-ce/run.py.

Nobody here wrote those specs. Each issue owns the cases it made pass; a regression in any owned
case fails this test. Skips with a reason when ../shared is not beside the project.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
RUNNER = PROJECT.parent / "shared" / "conformance" / "krakend-ce" / "run.py"

GATEWAY_CORE_CASES = [
    "backend_301", "backend_302", "backend_303", "backend_307", "backend_404", "no-op_1", "no-op_2",
    "param_forwarding_1", "param_forwarding_2", "param_forwarding_3", "param_forwarding_4",
    "query_forwarding_1", "query_forwarding_2", "query_forwarding_3", "router_404", "router_405",
    "router_redirect", "static", "integration_no_body", "integration_schema", "integration_jsonschema",
    "xml_1", "xml_2", "negotitate_json", "negotitate_plain",
]


def run_group(group: str) -> dict[str, bool]:
    if not RUNNER.exists():
        pytest.skip(f"{RUNNER} is absent: the shared conformance suite is not beside the project")
    completed = subprocess.run([sys.executable, str(RUNNER), "--project", str(PROJECT), "--group", group],
                               capture_output=True, text=True, timeout=600, cwd=PROJECT)
    results = {m.group(2): m.group(1) == "PASS" for m in re.finditer(r"^(PASS|FAIL) (\S+)", completed.stdout, re.M)}
    assert results, f"the runner reported no case:\n{completed.stdout}\n{completed.stderr}"
    return results, completed.stdout


def test_gateway_core_cases_pass():
    results, output = run_group("core")
    failing = [case for case in GATEWAY_CORE_CASES if not results.get(case)]
    assert not failing, f"owned conformance cases failing: {failing}\n{output}"
