"""Build a benchmark mailbox from the project's own corpus.

Benchmarks must cost what real mail costs: the corpus messages have real structure (plain,
HTML, multipart, quoted replies, newsletters with footers) and real vocabulary, about 1.7 KB
on average. They are cycled in a seeded random order until the mailbox has the size asked
for; each copy gets a fresh Message-ID. Generated into a temporary folder, never committed.
"""

from __future__ import annotations

import glob
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus_messages() -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(ROOT, "data", "*", "*.eml")))
    return [open(p, "rb").read() for p in paths]


def write_mbox(path: str, count: int, seed: int = 1) -> int:
    """Write ``count`` messages to an mbox at ``path``; returns its size in bytes."""
    messages = corpus_messages()
    rnd = random.Random(seed)
    order: list[bytes] = []
    size = 0
    with open(path, "wb") as out:
        for index in range(count):
            if not order:
                order = messages[:]
                rnd.shuffle(order)
            raw = order.pop().replace(b"Message-ID: <", b"Message-ID: <%d." % index, 1).rstrip(b"\n")
            raw = b"\n".join(b">" + line if line.startswith(b"From ") else line for line in raw.split(b"\n"))
            text = b"From bench@example.com Tue Mar  4 09:00:00 2025\n" + raw + b"\n\n"
            out.write(text)
            size += len(text)
    return size


if __name__ == "__main__":
    path, count = sys.argv[1], int(sys.argv[2])
    size = write_mbox(path, count)
    print(f"{path}: {count} messages, {size / count:.0f} bytes on average")
