"""Per-message speed of `partnercheck filter`, with `partnercheck serve` running and cold.

Targets (issue 12): median wall time per message at most 40 ms through `partnercheck filter`
with the server running, and at most 10 ms for a raw socket round trip with socat (the
README's plain-protocol recipe), over 200 messages. Each message is piped through a fresh
process, as a mail server would do; with the server running, `partnercheck filter`, socat
and `bogofilter -p` are run one after the other on each message (paired, so that the
machine's load hits all three alike), and `python -c pass` as the floor any Python client
pays. Wall time and the peak memory (max RSS) of each process are taken per message, and
medians are printed, with the ratios. The cold path (no server) is measured after.

    python bench/filter_speed.py [--messages 200] [--cold-messages 200]
"""


from __future__ import annotations

import argparse
import glob
import math
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


def run_once(cmd: list[str], raw: bytes, env: dict, args=("filter",), codes=(0, 10, 11, 12)) -> tuple[float, float]:
    """Wall seconds and max RSS (MB) of one process reading ``raw`` on stdin."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd + list(args), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    proc.stdin.write(raw)
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in codes:
        raise SystemExit(f"{' '.join(cmd + list(args))} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def measure(cmd, messages, env) -> tuple[float, float, float]:
    return summary([run_once(cmd, raw, env) for raw in messages])


def summary(runs) -> tuple[float, float, float]:
    times = sorted(t for t, _ in runs)
    # The 95th percentile by nearest rank: the smallest time at least 95% of the runs do not exceed.
    return statistics.median(times), times[math.ceil(len(times) * 0.95) - 1], statistics.median(m for _, m in runs)


def line(name: str, runs) -> float:
    median, p95, rss = summary(runs)
    print(f"{name}: median {median * 1000:.1f} ms per message (95th percentile {p95 * 1000:.1f} ms), "
          f"max RSS {rss:.0f} MB, {len(runs)} messages")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--cold-messages", type=int, default=200)
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(ROOT, "data", "*", "*.eml")))  # every label, evenly spread
    messages = [open(p, "rb").read() for p in paths[:: max(1, len(paths) // args.messages)][: args.messages]]
    cmd = command()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "partnercheck.sock")
        env = {**os.environ, "PARTNERCHECK_SOCKET": sock}
        server = subprocess.Popen(cmd + ["serve"], env=env, stderr=subprocess.DEVNULL)
        socat = shutil.which("socat")
        bogofilter = trained_bogofilter(tmp)
        try:
            for _ in range(400):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            run_once(cmd, messages[0], env)  # warm the page cache
            paired: dict[str, list] = {"filter": [], "socat": [], "bogofilter": [], "python": []}
            for raw in messages:
                paired["filter"].append(run_once(cmd, raw, env))
                if socat:
                    paired["socat"].append(run_once([socat, "-t", "30", "-", f"UNIX-CONNECT:{sock}"], raw, env,
                                                    args=(), codes=(0,)))
                if bogofilter:
                    paired["bogofilter"].append(run_once(bogofilter, raw, env, args=("-p",), codes=(0, 1, 2)))
                paired["python"].append(run_once([sys.executable, "-c", "pass"], raw, env, args=(), codes=(0,)))
        finally:
            server.terminate()
            _, _, usage = os.wait4(server.pid, 0)
        print(f"load before: {load}")
        ours = line("partnercheck filter with server", paired["filter"])
        floor = line("python -c pass (start-up floor)", paired["python"])
        if socat:
            raw_trip = line("socat round trip (plain protocol)", paired["socat"])
            print(f"filter / socat = {ours / raw_trip:.1f}")
        else:
            print("socat: not installed (apt-get install socat) - no raw round trip")
        if bogofilter:
            bogo = line("bogofilter -p", paired["bogofilter"])
            print(f"filter / bogofilter -p = {ours / bogo:.1f}")
        print(f"filter minus python start-up: {(ours - floor) * 1000:.1f} ms")
        print(f"server (with its workers' parent) max RSS {usage.ru_maxrss / 1024:.0f} MB")
        cold_env = {**os.environ, "PARTNERCHECK_SOCKET": os.path.join(tmp, "no-server.sock")}
        if args.cold_messages:
            line("cold (no server)", [run_once(cmd, raw, cold_env) for raw in messages[: args.cold_messages]])
        print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
