"""Training time and model size: `python train.py` end to end on the whole corpus.

Target (issue: classifier): under 60 s on this 2-core machine, model file under 20 MB.
Runs train.py several times into a temporary folder (the shipped model is not touched)
and prints the median wall time, the peak memory and the size of the model file.

    python bench/train_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.joblib")
        for _ in range(args.runs):
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--out", out],
                                    stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit("train.py failed")
            times.append(time.perf_counter() - start)
            peaks.append(usage.ru_maxrss / 1024)
        size = os.path.getsize(out)
    print(f"python train.py: median {statistics.median(times):.1f} s (runs: {', '.join(f'{t:.1f}' for t in times)}), "
          f"peak memory {max(peaks):.0f} MB, model file {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
