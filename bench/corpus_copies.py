"""Perturbed copies of the corpus, for measuring how training grows with the data.

Each copy of a message gets a fresh Message-ID and a few changed words in its body (a
number, a swapped word, a reference line), the way a templated campaign varies from one
recipient to the next: never an exact duplicate (training drops those), always a near
one (cross-validation must keep them in one fold). Copy 0 is the message as it is.
"""

from __future__ import annotations

import glob
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "alpha north river summit harbor maple copper delta orbit meadow lantern cedar".split()


def write_copies(folder: str, copies: int, seed: int = 1) -> int:
    """Write ``copies`` perturbed copies of data/ as folder/<label>/*.eml; returns the count."""
    rnd = random.Random(seed)
    count = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "data", "*", "*.eml"))):
        label = os.path.basename(os.path.dirname(path))
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        raw = open(path, "rb").read()
        head, sep, body = raw.partition(b"\n\n")
        for copy in range(copies):
            new_body = body
            if copy:
                words = body.split(b" ")
                for _ in range(3):
                    if len(words) > 4:
                        words[rnd.randrange(len(words))] = rnd.choice(WORDS).encode()
                new_body = b" ".join(words) + b"\nRef %d-%s\n" % (copy, rnd.choice(WORDS).encode())
            new_head = head.replace(b"Message-ID: <", b"Message-ID: <c%d." % copy, 1)
            name = os.path.basename(path)[:-4] + f"-c{copy}.eml"
            with open(os.path.join(folder, label, name), "wb") as out:
                out.write(new_head + sep + new_body)
            count += 1
    return count
