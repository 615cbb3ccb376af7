"""Batch labelling speed: `partnercheck label` end to end on a 20,000-message mbox.

Target (issue: CLI workflows): at least 3,000 messages a second on this 2-core machine,
peak memory under 500 MB. Runs the real command in a fresh process several times and
reports the median rate and the peak memory of the process tree (max RSS of the command
and of its worker processes). If bogofilter is installed, it is trained on a few hundred
labelled messages of the corpus and run in batch mode over the same mailbox for comparison.

    python bench/label_speed.py [--messages 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bogo import trained_bogofilter  # noqa: E402
from mailbox import write_mbox  # noqa: E402


def run_label(mbox: str, out: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB, largest single process of the tree) of one labelling run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "partnercheck", "label", mbox, "-o", out, "--quiet"], check=True)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def bogofilter_rate(mbox: str, messages: int, tmp: str) -> float | None:
    bogofilter = trained_bogofilter(tmp)
    if bogofilter is None:
        return None
    start = time.perf_counter()
    with open(mbox, "rb") as handle:
        subprocess.run(bogofilter + ["-M", "-v"], stdin=handle, stdout=subprocess.DEVNULL, check=False)
    return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mbox = os.path.join(tmp, "bench.mbox")
        size = write_mbox(mbox, args.messages)
        out = os.path.join(tmp, "labels.csv")
        runs = [run_label(mbox, out) for _ in range(args.runs)]
        rates = [args.messages / seconds for seconds, _ in runs]
        ours = statistics.median(rates)
        print(f"mbox: {args.messages} messages, {size / 1e6:.1f} MB ({size / args.messages:.0f} B average), "
              f"{os.cpu_count()} cores")
        print(f"partnercheck label: median {ours:,.0f} messages/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}), including start-up")
        print(f"peak memory (max RSS of one process): {max(peak for _, peak in runs):.0f} MB")
        bogo = bogofilter_rate(mbox, args.messages, tmp)
        if bogo is None:
            print("bogofilter: not installed (apt-get install bogofilter) - no comparison")
        else:
            print(f"bogofilter -M (batch): {bogo:,.0f} messages/s; partnercheck/bogofilter = {ours / bogo:.2f}")


if __name__ == "__main__":
    main()
