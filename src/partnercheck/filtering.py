"""The mail-filter contract, with nothing heavy imported.

``partnercheck filter`` writes the message it was given back out, byte for byte, with one
header added: ``X-Partnercheck: <verdict>; score=0.97; rules=PRICE_PLANS,SALES_CALL_ASK``.
Any X-Partnercheck header already present is removed first (so a sender cannot pre-label
their own mail). The exit code tells the verdict, for procmail, maildrop and shell users:

=========  =====  ==============================================================
verdict    code   notes
=========  =====  ==============================================================
other      0      ordinary mail: a plain ``if partnercheck filter`` succeeds
partnership 10
pitch      11
unsure     12
error      1      the message is still written out unchanged; the error goes to stderr
=========  =====  ==============================================================

``--exit-zero`` makes every outcome exit 0, which procmail's ``w`` flag needs.
This module is shared by the server client (which must start fast) and the cold path.
"""

from __future__ import annotations

import re

HEADER = "X-Partnercheck"
EXIT_CODES = {"other": 0, "partnership": 10, "pitch": 11, "unsure": 12}
EXIT_ERROR = 1
#: Messages larger than this are passed through unlabelled: no outreach mail is that big,
#: and reading a huge one would hold up the mail queue.
MAX_MESSAGE_BYTES = 20 * 1024 * 1024

_OUR_HEADER = re.compile(rb"^x-partnercheck[ \t]*:", re.I)


#: The header for a message with no text to judge (empty, or nothing readable in it).
UNREADABLE = "unsure; score=0.00; unreadable"


def header_value(label: str, score: float, rules: list[str]) -> str:
    """The X-Partnercheck value: the verdict first, then the score and the rules that fired."""
    value = f"{label}; score={score:.2f}"
    if rules:
        value += "; rules=" + ",".join(rules)
    return value


def strip_our_header(raw: bytes) -> bytes:
    """The message without any X-Partnercheck header (folded lines included)."""
    head_end = _head_end(raw)
    head = raw[:head_end]
    if b"artnercheck" not in head and b"ARTNERCHECK" not in head:
        return raw
    kept = []
    skipping = False
    for line in head.splitlines(keepends=True):
        if _OUR_HEADER.match(line):
            skipping = True
            continue
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = False
        kept.append(line)
    return b"".join(kept) + raw[head_end:]


def add_header(raw: bytes, value: str) -> bytes:
    """``raw`` with any old X-Partnercheck header removed and ``value`` added as the first header.

    It goes first (after an mbox ``From `` envelope line, as procmail passes one), like a
    trace header: so the rest of the message stays byte for byte as it came, and removing
    the line gives back exactly the input.
    """
    raw = strip_our_header(raw)
    first_end = raw.find(b"\n")
    newline = b"\r\n" if first_end > 0 and raw[first_end - 1:first_end] == b"\r" else b"\n"
    line = f"{HEADER}: {value}".encode("utf-8") + newline
    if raw.startswith(b"From ") and first_end != -1:
        return raw[: first_end + 1] + line + raw[first_end + 1:]
    return line + raw


def _head_end(raw: bytes) -> int:
    """Where the header block ends: at its blank line, or the end of the message."""
    if raw.startswith((b"\n", b"\r\n")):
        return 0
    lf, crlf = raw.find(b"\n\n"), raw.find(b"\r\n\r\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return crlf + 2  # the header block ends with its last line's CRLF
    return lf + 1 if lf != -1 else len(raw)
