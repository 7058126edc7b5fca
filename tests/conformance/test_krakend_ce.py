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


# Issue 5 (multi-backend) owns the rest of the core group.
MERGE_CASES = ["collection", "flatmap_1", "detail_error", "sequential_1", "sequential_2", "timeout"]
JWT_CASES = ["jwt_1", "jwt_2", "jwt_3", "jwt_5", "router_401_1"]


@pytest.mark.parametrize("group,owned", [
    ("core", GATEWAY_CORE_CASES + MERGE_CASES),
    ("jwt", JWT_CASES),
])
def test_owned_cases_pass(group, owned):
    results, output = run_group(group)
    failing = [case for case in owned if not results.get(case)]
    assert not failing, f"owned conformance cases failing: {failing}\n{output}"
    assert len(results) == len(owned) and all(results.values()), output
