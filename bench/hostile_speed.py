"""How long `partnercheck filter --no-server` takes on hostile messages of up to 20 MB.

    python bench/hostile_speed.py            # every case at 20 MB
    python bench/hostile_speed.py --mb 2     # smaller, quicker

Each case is one message built to be expensive for one stage (HTML parsing, MIME walking,
header unfolding, normalisation, reply splitting, ...). Printed: seconds, exit code, and
whether the output is the input plus our header and nothing else. A benign message of the
same size is measured first, for comparison.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import time

HEAD = b"From: a@x.example\nSubject: hi\nMIME-Version: 1.0\n"


def cases(size: int) -> dict[str, bytes]:
    def fill(piece: bytes, n: int = size) -> bytes:
        return (piece * (n // len(piece) + 1))[:n]

    return {
        "benign": HEAD + b"Content-Type: text/plain\n\n" + fill(b"Hello, we would like to partner with you. "),
        "benign html": HEAD + b"Content-Type: text/html\n\n"
        + fill(b'<p>Hello, we would <b>like</b> to <a href="https://x.example/">partner</a> with you.</p>\n'),
        "html <a": HEAD + b"Content-Type: text/html\n\n" + fill(b"<a "),
        "html <": HEAD + b"Content-Type: text/html\n\n" + fill(b"<"),
        "html <div style=x": HEAD + b"Content-Type: text/html\n\n" + fill(b"<div style=x "),
        "html nested": HEAD + b"Content-Type: text/html\n\n" + fill(b"<div><b><i>"),
        "html <select>": HEAD + b"Content-Type: text/html\n\n<select>" + fill(b"<option>"),
        "base64": HEAD + b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        + fill(base64.encodebytes(b"hello partner " * 1000)),
        "quoted-printable": HEAD + b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
        + fill(b"=3D=\n"),
        "many parts": HEAD + b"Content-Type: multipart/mixed; boundary=b\n\n" + fill(b"--b\nContent-Type: text/plain\n\nhi\n"),
        "many html parts": HEAD + b"Content-Type: multipart/mixed; boundary=b\n\n"
        + fill(b"--b\nContent-Type: text/html\n\n<a \n"),
        "nested multipart": HEAD + b"Content-Type: multipart/mixed; boundary=b\n\n"
        + fill(b"--b\nContent-Type: multipart/mixed; boundary=b\n\n"),
        "many headers": fill(b"X-A: b\n") + b"\n\nhi",
        "long subject": b"Subject: " + fill(b"a ") + b"\n\nhi",
        "folded header": b"Subject: x\n" + fill(b" a\n") + b"\nhi",
        "encoded words": b"Subject: " + fill(b"=?utf-8?q?a?= ") + b"\n\nhi",
        "many recipients": b"To: " + fill(b"a@b.example, ") + b"\n\nhi",
        "our header many times": fill(b"X-Partnercheck: pitch\n").rpartition(b"\n")[0] + b"\n\nhi",
        "mbox From lines": b"From a@b Mon Jan  1 00:00:00 2024\n" + HEAD + b"\n"
        + fill(b"From a@b Mon Jan  1 00:00:00 2024\n"),
        "quote lines": HEAD + b"\n" + fill(b"> a\n"),
        "urls": HEAD + b"\n" + fill(b"http://a"),
        "spelled out": HEAD + b"\n" + fill(b"a."),
        "zero-width": HEAD + b"Content-Type: text/plain; charset=utf-8\n\n" + fill("a\u200b".encode()),
        "look-alikes": HEAD + b"Content-Type: text/plain; charset=utf-8\n\n" + fill("\u0430\u0251 ".encode()),
        "NUL bytes": HEAD + b"\n" + fill(b"\0"),
        "random bytes": HEAD + b"\n" + os.urandom(size),
        "blank lines": HEAD + b"\n" + fill(b"\n"),
        "outlook blocks": HEAD + b"\n" + fill(b"\nFrom: x\nSent: y\nSubject: z\n"),
        "signatures": HEAD + b"\n" + fill(b"-- \n"),
        "attributions": HEAD + b"\n" + fill(b"On a wrote:\n"),
        "one long word": HEAD + b"\n" + fill(b"a"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0, help="message size in MB (default 20, the filter's limit)")
    args = parser.parse_args()
    size = int(args.mb * 1024 * 1024) - 4096
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.eml")
        for name, raw in cases(size).items():
            with open(path, "wb") as handle:
                handle.write(raw)
            start = time.perf_counter()
            with open(path, "rb") as stdin:
                result = subprocess.run([sys.executable, "-m", "partnercheck", "filter", "--no-server"],
                                        stdin=stdin, capture_output=True)
            seconds = time.perf_counter() - start
            worst = max(worst, seconds)
            first, _, rest = result.stdout.partition(b"\n")
            if raw.startswith(b"From "):  # the header goes after the envelope line
                envelope, _, tail = raw.partition(b"\n")
                first, _, rest = rest.partition(b"\n")
                same = result.stdout.startswith(envelope + b"\n") and rest == tail
            else:
                same = rest == raw.replace(b"X-Partnercheck: pitch\n", b"") if b"X-Partnercheck" in raw else rest == raw
            print(f"{name:24s} {seconds:6.2f} s  exit {result.returncode:2d}  intact {same}  {first[:60].decode(errors='replace')}"
                  + (f"  stderr: {result.stderr[-120:]!r}" if result.stderr else ""), flush=True)
    print(f"slowest: {worst:.2f} s")


if __name__ == "__main__":
    main()
