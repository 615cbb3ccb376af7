"""Per-message speed of `partnercheck filter`, with `partnercheck serve` running and cold.

Targets (issue: CLI workflows): median wall time per message at most 60 ms with the
server and at most 1.5 s cold, over 200 messages. Each message is piped through a fresh
`partnercheck filter` process, as a mail server would do; wall time and the peak memory
(max RSS) of that process are taken per message, and medians are printed.

    python bench/filter_speed.py [--messages 200] [--cold-messages 200]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bogo import trained_bogofilter  # noqa: E402


def command() -> list[str]:
    found = shutil.which("partnercheck")
    return [found] if found else [sys.executable, "-m", "partnercheck"]


def run_once(cmd: list[str], raw: bytes, env: dict) -> tuple[float, float]:
    """Wall seconds and max RSS (MB) of one filter process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd + ["filter"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    proc.stdin.write(raw)
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 10, 11, 12):
        raise SystemExit(f"filter failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def measure(cmd, messages, env) -> tuple[float, float, float]:
    runs = [run_once(cmd, raw, env) for raw in messages]
    times = sorted(t for t, _ in runs)
    return statistics.median(times), times[int(len(times) * 0.95) - 1], statistics.median(m for _, m in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--cold-messages", type=int, default=200)
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(ROOT, "data", "*", "*.eml")))[:: max(1, 1884 // args.messages)]
    messages = [open(p, "rb").read() for p in paths[: args.messages]]
    cmd = command()
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "partnercheck.sock")
        env = {**os.environ, "PARTNERCHECK_SOCKET": sock}
        server = subprocess.Popen(cmd + ["serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            run_once(cmd, messages[0], env)  # warm the page cache
            median, p95, rss = measure(cmd, messages, env)
            print(f"with server: median {median * 1000:.1f} ms per message (95th percentile {p95 * 1000:.1f} ms), "
                  f"client max RSS {rss:.0f} MB, {len(messages)} messages")
        finally:
            server.terminate()
            server.wait()
        cold_env = {**os.environ, "PARTNERCHECK_SOCKET": os.path.join(tmp, "no-server.sock")}
        median, p95, rss = measure(cmd, messages[: args.cold_messages], cold_env)
        print(f"cold (no server): median {median * 1000:.0f} ms per message (95th percentile {p95 * 1000:.0f} ms), "
              f"max RSS {rss:.0f} MB, {min(len(messages), args.cold_messages)} messages")
        bogofilter = trained_bogofilter(tmp)
        if bogofilter:
            times = []
            for raw in messages:
                start = time.perf_counter()
                subprocess.run(bogofilter + ["-p"], input=raw, stdout=subprocess.DEVNULL, check=False)
                times.append(time.perf_counter() - start)
            print(f"bogofilter -p: median {statistics.median(times) * 1000:.1f} ms per message")


if __name__ == "__main__":
    main()
