"""The README's pytest example, run as a user would run it: copied into a fresh folder, with the plugin."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_passes(tmp_path):
    text = README.read_text()
    match = re.search(r"<!-- example: pytest -->\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its pytest example"
    (tmp_path / "test_gateway_example.py").write_text(match.group(1))
    completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "2 passed" in completed.stdout
