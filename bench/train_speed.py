"""Training time and memory: `python train.py` on the corpus, and how training grows with the data.

Targets (issue 12): ten times the data costs at most twelve times the time of one copy, and
stays under 500 MB. By default, runs `python train.py` into a temporary folder (the shipped
model is not touched) and prints the median wall time, CPU time, peak memory and model size.
With `--copies N`, builds the corpus once as it is and once as N perturbed copies
(`corpus_copies.py`: near-duplicates, as templated campaigns are) and runs `partnercheck
train` on both, paired (one after the other, run after run, so that the machine's load hits
both alike), then prints the medians and the ratios of N copies to one.

    python bench/train_speed.py [--runs 3]
    python bench/train_speed.py --copies 10 [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from corpus_copies import write_copies  # noqa: E402
from label_speed import TreePeak  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds, max RSS of the largest process (MB) and peak RSS of the
    whole process tree (MB, sampled every 50 ms: training reads its mail in a child)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    with TreePeak(proc.pid, 0.05) as tree:
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, tree.peak


def show(name: str, runs) -> tuple[float, float, float]:
    wall, cpu, rss = (statistics.median(r[i] for r in runs) for i in range(3))
    print(f"{name}: median {wall:.1f} s wall (runs: {', '.join(f'{r[0]:.1f}' for r in runs)}), "
          f"{cpu:.1f} s CPU, peak memory {max(r[2] for r in runs):.0f} MB, "
          f"whole process tree {max(r[3] for r in runs):.0f} MB")
    return wall, cpu, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=0, help="Compare training on N perturbed copies with one.")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.model")
        if not args.copies:
            runs = [timed([sys.executable, os.path.join(ROOT, "train.py"), "--out", out]) for _ in range(args.runs)]
            show("python train.py", runs)
            print(f"model file {os.path.getsize(out) / 1e6:.1f} MB")
        else:
            one, many = os.path.join(tmp, "x1"), os.path.join(tmp, f"x{args.copies}")
            n1, nn = write_copies(one, 1), write_copies(many, args.copies)
            train = [sys.executable, "-m", "partnercheck", "train", "--force", "-o", out]
            paired = [(timed(train + [one]), timed(train + [many])) for _ in range(args.runs)]
            w1, c1, _ = show(f"partnercheck train, 1 copy ({n1} messages)", [a for a, _ in paired])
            wn, cn, rn = show(f"partnercheck train, {args.copies} copies ({nn} messages)", [b for _, b in paired])
            print(f"{args.copies} copies / 1: wall {wn / w1:.1f}x, CPU {cn / c1:.1f}x (linear: {nn / n1:.0f}x)")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
