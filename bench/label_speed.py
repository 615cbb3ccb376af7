"""Batch labelling speed: `partnercheck label` end to end on a 20,000-message mbox, against bogofilter.

Target (issue 12): at least 0.8 of bogofilter's batch rate measured in the same run, memory
flat in the mailbox size (20,000 and 80,000 messages within 10%) and the whole process tree
under 500 MB. Runs the real command in a fresh process several times; when bogofilter is
installed (trained on a few hundred labelled messages of the corpus), each run of
partnercheck is followed by one of `bogofilter -M` over the same mailbox (paired runs, so
that the machine's load hits both alike). Prints both medians, the ratio of the medians and
the ratio of each pair, and the peak memory: of the largest single process (max RSS), and
of the whole tree (the sum of the RSS of the command and its workers, sampled every 0.2 s).

    python bench/label_speed.py [--messages 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from mailbox import write_mbox  # noqa: E402

from bogo import trained_bogofilter  # noqa: E402


def tree_rss(pid: int) -> float:
    """MB resident in ``pid`` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e6


class TreePeak:
    """The peak of :func:`tree_rss` for ``pid`` (MB), sampled every ``every`` seconds in a
    thread while the ``with`` block waits for the process in this one, so that the time it
    measures is exact rather than rounded up to the next sample."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, tree_rss(self.pid))

    def __enter__(self) -> "TreePeak":
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._sampler.join()


def run_label(mbox: str, out: str) -> tuple[float, float, float]:
    """Seconds, peak RSS of the largest process (MB) and peak RSS of the whole tree (MB),
    sampled every 0.2 s (a coarser clock had made rates move in steps of about 4% at 20,000
    messages)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "partnercheck", "label", mbox, "-o", out, "--quiet"])
    with TreePeak(proc.pid, 0.2) as tree:
        status = proc.wait()
        elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit("partnercheck label failed")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, largest, tree.peak


def bogofilter_rate(bogofilter, mbox: str, messages: int) -> float:
    start = time.perf_counter()
    with open(mbox, "rb") as handle:
        subprocess.run(bogofilter + ["-M", "-v"], stdin=handle, stdout=subprocess.DEVNULL, check=False)
    return messages / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        mbox = os.path.join(tmp, "bench.mbox")
        size = write_mbox(mbox, args.messages)
        out = os.path.join(tmp, "labels.csv")
        bogofilter = trained_bogofilter(tmp)
        runs, bogo = [], []
        for _ in range(args.runs):
            runs.append(run_label(mbox, out))
            if bogofilter:
                bogo.append(bogofilter_rate(bogofilter, mbox, args.messages))
        rates = [args.messages / seconds for seconds, _, _ in runs]
        ours = statistics.median(rates)
        print(f"mbox: {args.messages} messages, {size / 1e6:.1f} MB ({size / args.messages:.0f} B average), "
              f"{os.cpu_count()} cores")
        print(f"partnercheck label: median {ours:,.0f} messages/s "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)}), including start-up")
        print(f"peak memory: largest process {max(r[1] for r in runs):.0f} MB, "
              f"whole process tree {max(r[2] for r in runs):.0f} MB")
        if not bogofilter:
            print("bogofilter: not installed (apt-get install bogofilter) - no comparison")
        else:
            theirs = statistics.median(bogo)
            print(f"bogofilter -M (batch): median {theirs:,.0f} messages/s (runs: {', '.join(f'{r:,.0f}' for r in bogo)})")
            print(f"partnercheck/bogofilter = {ours / theirs:.2f} (ratio of medians); "
                  f"per pair: {', '.join(f'{a / b:.2f}' for a, b in zip(rates, bogo))}")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
