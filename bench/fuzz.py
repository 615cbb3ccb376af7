"""The longer fuzzing run: tests/test_fuzz.py's properties with many more examples.

    python bench/fuzz.py                 # 5,000 examples per property
    python bench/fuzz.py --examples 50000

Runs pytest on tests/test_fuzz.py with ``$PARTNERCHECK_FUZZ_EXAMPLES`` set (random, not
derandomised, so every run tries new inputs) and prints Hypothesis's statistics: how many
inputs each property tried, and any failure with its smallest reproducing input.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    args = parser.parse_args()
    env = {**os.environ, "PARTNERCHECK_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", os.path.join(ROOT, "tests", "test_fuzz.py"), "-q", "-p",
               "no:cacheprovider", "--hypothesis-show-statistics", "-k", "not time_bound"]
    sys.exit(subprocess.call(command, env=env, cwd=ROOT))


if __name__ == "__main__":
    main()
