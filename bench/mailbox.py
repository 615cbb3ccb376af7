"""Build a synthetic benchmark mailbox: realistic shapes and sizes, random words.

Benchmark mail only has to cost what real mail costs to read and classify: headers of the
usual kinds, plain and HTML bodies, quoted replies, short outreach and longer newsletters,
about 2 KB on average. It is generated from a fixed seed and is never training data.
"""

from __future__ import annotations

import random
import sys

WORDS = (
    "partner team growth customers revenue share launch event webinar pricing plan audit "
    "meeting calendar quick call proposal referral audience integration product newsletter "
    "update invoice order shipping report project deadline budget agency developers design "
    "marketing sales leads campaign program community workshop venue sponsor podcast episode "
    "content brand store clinic studio coffee bakery software platform data analytics the a "
    "and of to in for with on we you our your this that is are be will can would could"
).split()


def _paragraph(rnd: random.Random, words: int) -> str:
    text = " ".join(rnd.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def message(rnd: random.Random, index: int) -> str:
    kind = rnd.random()
    sender = f"{rnd.choice(['ana', 'tom', 'li', 'sam', 'kim'])}{index % 97}@{rnd.choice(['fernhollow', 'quill', 'brightloom'])}.example"
    headers = [
        f"From: Sender {index} <{sender}>",
        "To: reader@quill.test",
        f"Subject: {_paragraph(rnd, rnd.randint(3, 8))[:-1]}",
        f"Date: Tue, {1 + index % 28} Mar 2025 09:{index % 60:02d}:00 +0000",
        f"Message-ID: <{index}.{rnd.randrange(10**9)}@mx.example>",
        "MIME-Version: 1.0",
    ]
    if kind < 0.55:  # short outreach
        body = "\n\n".join(_paragraph(rnd, rnd.randint(25, 70)) for _ in range(rnd.randint(2, 4)))
        body += f"\n\nBest,\nSender {index}\n"
        headers.append('Content-Type: text/plain; charset="utf-8"')
    elif kind < 0.75:  # reply with quote
        body = _paragraph(rnd, rnd.randint(20, 60)) + f"\n\nOn Mon, 3 Mar 2025, Reader wrote:\n"
        body += "\n".join("> " + _paragraph(rnd, 12) for _ in range(rnd.randint(5, 15))) + "\n"
        headers += ['Content-Type: text/plain; charset="utf-8"', f"In-Reply-To: <{index - 1}@mx.example>"]
    else:  # newsletter, HTML alternative
        text = "\n\n".join(_paragraph(rnd, rnd.randint(40, 90)) for _ in range(rnd.randint(3, 5)))
        html = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
        headers += ["List-Unsubscribe: <https://news.example/u>", "Precedence: bulk",
                    'Content-Type: multipart/alternative; boundary="alt"']
        body = (f"--alt\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
                f"--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body>{html}"
                f'<img src="https://t.news.example/o.gif" width="1" height="1"></body></html>\n--alt--\n')
    return "\n".join(headers) + "\n\n" + body


def write_mbox(path: str, count: int, seed: int = 1) -> int:
    """Write ``count`` messages to an mbox at ``path``; returns its size in bytes."""
    rnd = random.Random(seed)
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            text = f"From bench@example.com Tue Mar  4 09:00:00 2025\n{message(rnd, index)}\n"
            out.write(text)
            size += len(text.encode())
    return size


if __name__ == "__main__":
    path, count = sys.argv[1], int(sys.argv[2])
    size = write_mbox(path, count)
    print(f"{path}: {count} messages, {size / count:.0f} bytes on average")
