#!/usr/bin/env python3
"""The long fuzzing profile: the same hypothesis properties as tests/hardening/test_hardening_fuzz.py
(token parser and validator, config loader, router), with many more examples.

    .venv/bin/python scripts/fuzz_long.py                  # every max_examples x 50 (about 5-10 minutes)
    .venv/bin/python scripts/fuzz_long.py --scale 200 -k router
    .venv/bin/python scripts/fuzz_long.py --seed 1234      # reproduce a run

Extra arguments go to pytest. Exit status is pytest's. A failure prints hypothesis' minimal example;
rerun it with the printed `--seed` (or paste the example as an `@example` in the test file).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "hardening" / "test_hardening_fuzz.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=50, help="multiplier of every max_examples (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    args, rest = parser.parse_known_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    env = dict(os.environ, HARDENING_FUZZ_SCALE=str(args.scale))
    command = [sys.executable, "-m", "pytest", str(SUITE), "-p", "no:cacheprovider", "-q",
               f"--hypothesis-seed={seed}", "--timeout=3600", *rest]
    print(f"fuzz_long: scale x{args.scale}, seed {seed}: {' '.join(command)}", flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
