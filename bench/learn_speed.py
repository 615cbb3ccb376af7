"""`partnercheck learn` speed and the size of what it keeps.

Targets (issue: learning): learning one message, the personal model's retrain included,
under 10 s with the full corpus; a 1,000-message learn under 60 s; the store and the
personal model under 50 MB for 10,000 corrections (learned, then `train --personal`, since
`learn` stops retraining by itself past 5,000 corrections).

Each run is a fresh `partnercheck learn` process with its own data folder. Messages come
from the project's corpus (bench/mailbox.py), each copy made unique by a line of its own
at the end, so that every one is a new correction. The corpus-feature cache
($XDG_CACHE_HOME) is measured cold (first run after a corpus or code change) and warm.

    python bench/learn_speed.py [--runs 3] [--big 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mailbox import corpus_messages  # noqa: E402


def write_unique_mbox(path: str, count: int, seed: int = 1) -> None:
    messages = corpus_messages()
    rnd = random.Random(seed)
    with open(path, "wb") as out:
        for index in range(count):
            raw = rnd.choice(messages).replace(b"Message-ID: <", b"Message-ID: <u%d." % index, 1).rstrip(b"\n")
            raw = b"\n".join(b">" + line if line.startswith(b"From ") else line for line in raw.split(b"\n"))
            out.write(b"From bench@example.com Tue Mar  4 09:00:00 2025\n" + raw + b"\n\nref %d\n\n" % index)


def learn(args: list[str], data: str, cache: str, command: str = "learn") -> float:
    env = {**os.environ, "XDG_DATA_HOME": data, "XDG_CACHE_HOME": cache, "PYTHONPATH": os.path.join(ROOT, "src")}
    env.pop("PARTNERCHECK_MODEL", None)
    env.pop("PARTNERCHECK_STORE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "partnercheck", command, *args], env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode())
    print("   ", (proc.stderr + proc.stdout).decode().strip().replace("\n", "\n    "))
    return seconds


def sizes(data: str) -> tuple[float, float]:
    folder = os.path.join(data, "partnercheck")
    store = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith("learned.sqlite3"))
    model = os.path.join(folder, "learned.model.joblib")
    return store / 1e6, (os.path.getsize(model) / 1e6 if os.path.exists(model) else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, "one.mbox")
        thousand = os.path.join(tmp, "thousand.mbox")
        big = os.path.join(tmp, "big.mbox")
        write_unique_mbox(one, 1, seed=7)
        write_unique_mbox(thousand, 1000, seed=8)
        write_unique_mbox(big, args.big, seed=9)
        print("one message, cold feature cache:")
        cold = [learn(["--as", "pitch", one], os.path.join(tmp, f"cold{i}"), os.path.join(tmp, f"cache-cold{i}"))
                for i in range(args.runs)]
        cache = os.path.join(tmp, "cache")
        learn(["--as", "pitch", one, "--no-retrain"], os.path.join(tmp, "warmup"), cache)
        learn(["--as", "pitch", one], os.path.join(tmp, "warmup"), cache)
        print("one message, warm feature cache:")
        warm = [learn(["--as", "pitch", one], os.path.join(tmp, f"warm{i}"), cache) for i in range(args.runs)]
        print("1,000 messages, warm cache:")
        thousands = [learn(["--as", "other", thousand], os.path.join(tmp, f"k{i}"), cache) for i in range(args.runs)]
        print(f"{args.big:,} messages, warm cache (past 5,000 corrections learn does not retrain):")
        data = os.path.join(tmp, "big")
        big_seconds = learn(["--as", "other", big], data, cache)
        print(f"train --personal with {args.big:,} corrections:")
        personal_seconds = learn(["--personal"], data, cache, command="train")
        store_mb, model_mb = sizes(data)
        print("one more message on top of them:")
        on_top = learn(["--as", "pitch", one], data, cache)
        mbox_mb = os.path.getsize(big) / 1e6

    def summary(values):
        return f"median {statistics.median(values):.1f} s (runs: {', '.join(f'{v:.1f}' for v in values)})"

    print()
    print(f"learn 1 message, cold cache:  {summary(cold)}")
    print(f"learn 1 message, warm cache:  {summary(warm)}")
    print(f"learn 1,000 messages:         {summary(thousands)}")
    print(f"learn {args.big:,} messages:        {big_seconds:.1f} s ({mbox_mb:.1f} MB mbox); "
          f"store {store_mb:.1f} MB, personal model {model_mb:.1f} MB, together {store_mb + model_mb:.1f} MB")
    print(f"train --personal with {args.big:,} corrections: {personal_seconds:.1f} s")
    print(f"learn 1 more with {args.big:,} stored: {on_top:.1f} s (no retrain)")


if __name__ == "__main__":
    main()
