"""Reading speed: a 20,000-message mbox into records, body text extracted, on one core.

Target (issue: foundation): at least 10,000 messages a second. Prints the median of
several runs, each in a fresh process so that peak memory (max RSS) is per run.

    python bench/read_speed.py [--messages 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from mailbox import write_mbox  # noqa: E402

ONE_RUN = """
import json, resource, sys, time
from partnercheck.reading.sources import Source
start = time.perf_counter()
count = chars = 0
for record in Source(sys.argv[1]):
    count += 1
    chars += len(record.body)
elapsed = time.perf_counter() - start
print(json.dumps({"messages": count, "seconds": elapsed,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mbox")
        size = write_mbox(path, args.messages)
        results = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-c", ONE_RUN, path], check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout))
    rates = [r["messages"] / r["seconds"] for r in results]
    print(f"mbox: {args.messages} messages, {size / 1e6:.1f} MB ({size / args.messages:.0f} B average)")
    print(f"read into records: median {statistics.median(rates):,.0f} messages/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"peak memory (max RSS): median {statistics.median(r['max_rss_mb'] for r in results):.0f} MB")


if __name__ == "__main__":
    main()
