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

from ..errors import PartnercheckError
from ..labels import UNREADABLE

HEADER = "X-Partnercheck"
EXIT_CODES = {"other": 0, "partnership": 10, "pitch": 11, "unsure": 12}
EXIT_ERROR = 1
#: Messages larger than this are passed through unlabelled: no outreach mail is that big,
#: and reading a huge one would hold up the mail queue.
MAX_MESSAGE_BYTES = 20 * 1024 * 1024

_OUR_HEADER = None  # compiled on first use: the client path does without the re module


def header_for(verdict) -> str:
    """The X-Partnercheck value of a verdict: the verdict first, then the score and the rules
    that fired, or why it was decided without the model (``unsure; score=0.00; unreadable``)."""
    value = f"{verdict.label}; score={verdict.score:.2f}"
    if verdict.rule_ids:
        value += "; rules=" + ",".join(verdict.rule_ids)
    if verdict.decided_by == UNREADABLE:
        value += "; " + UNREADABLE
    return value


def filter_message(raw: bytes, use_server: bool = True, model_option: str | None = None,
                   rules_file: str | None = None) -> tuple[bytes, int, str | None]:
    """The filter's whole job for one message: (output bytes, exit code, error or None).

    Asks a running ``partnercheck serve`` first when ``use_server``, else (or when none
    answers) classifies in this process. Whatever goes wrong, the output is ``raw`` itself.
    """
    try:
        if len(raw) > MAX_MESSAGE_BYTES:
            return raw, EXIT_ERROR, f"message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"
        reply = _ask_server(raw) if use_server else None
        header, label = reply if reply else _classify_here(raw, model_option, rules_file)
        return add_header(raw, header), EXIT_CODES[label], None
    except Exception as exc:  # whatever happened, the mail goes through
        ours = isinstance(exc, PartnercheckError)
        return raw, EXIT_ERROR, str(exc) if ours else f"{exc.__class__.__name__}: {exc}"
    except KeyboardInterrupt:  # Ctrl-C, or numpy's OpenBLAS failing to start its threads (a process limit)
        return raw, EXIT_ERROR, "interrupted while classifying"


def read_input(stream, size: int) -> bytes:
    """Up to ``size`` bytes of ``stream``, fewer only at its end. On a pipe a parent set
    non-blocking (the flag belongs to the pipe, so the filter gets it too), a read returns
    what has come so far, or None: wait for the rest there, without changing the pipe's
    flags, which the parent may rely on, so that no message is taken for a shorter one."""
    try:
        data = stream.read(size)
    except BlockingIOError:
        data = None
    if data is not None and (len(data) >= size or not data or _blocking(stream)):
        return data  # a blocking read returns less only at the end
    import select

    chunks, have = [data or b""], len(data or b"")
    while have < size:
        select.select([stream], [], [])
        try:
            chunk = stream.read(size - have)
        except BlockingIOError:
            continue
        if chunk == b"":
            break
        if chunk:
            chunks.append(chunk)
            have += len(chunk)
    return b"".join(chunks)


def _blocking(stream) -> bool:
    import os

    try:
        return os.get_blocking(stream.fileno())
    except (OSError, ValueError):  # no file behind it (a test's BytesIO): a read is whole
        return True


def _ask_server(raw: bytes) -> tuple[str, str] | None:
    """(header, label) from a running server, or None when none answers sensibly."""
    import os

    from ..interface import client
    from ..settings import CONFIG_ENV, MODEL_ENV, ConfigError, read_config, socket_path

    try:
        path = socket_path(read_config())
    except ConfigError:
        return None  # the in-process path reports the broken configuration
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return None
    if owner not in (os.geteuid(), 0):  # a socket someone else made (in /tmp, say) is not our server
        return None
    try:
        reply = client.classify_remote(raw, path)
    except client.ServerSilent:  # too late to classify here too: the mail goes on now
        raise
    except client.ServerUnavailable:
        return None
    header, label = reply["header"], reply["label"]
    if label not in EXIT_CODES or not header.startswith(label) or not header.isprintable():
        return None  # a header value of more than one line would add headers of its own
    for variable, key in ((MODEL_ENV, "model"), (CONFIG_ENV, "config")):
        named = os.environ.get(variable)  # this filter's own choice, which the server must share
        if named and os.path.abspath(named) != reply.get(key):
            return None
    return header, label


def _classify_here(raw: bytes, model_option: str | None, rules_file: str | None) -> tuple[str, str]:
    """(header, label) from the model loaded in this process."""
    from ..deciding.classify import classify_one
    from ..deciding.model import cached_model
    from ..deciding.policy import load_policy
    from ..reading.mail import parse_message
    from ..settings import model_path, read_config

    config = read_config()
    model = cached_model(model_path(model_option, config))
    verdict = classify_one(parse_message(raw), model, load_policy(config, rules_file), clues=False)
    return header_for(verdict), verdict.label


def strip_our_header(raw: bytes) -> bytes:
    """The message without any X-Partnercheck header (folded lines included)."""
    head_end = _head_end(raw)
    head = raw[:head_end]
    if b"artnercheck" not in head.lower():
        return raw
    global _OUR_HEADER
    if _OUR_HEADER is None:
        import re

        _OUR_HEADER = re.compile(rb"^x-partnercheck[ \t]*:", re.I)
    kept = []
    skipping = False
    for line in _lines(head, _line_end(raw)):
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

    It goes first (after an mbox ``From `` envelope line, as procmail passes one, and after
    any indented line that opens a malformed header block, which would otherwise read as a
    continuation of ours), like a trace header: so the rest of the message stays byte for
    byte as it came, and removing the line gives back exactly the input. It ends as the
    message's first line ends: CRLF, LF, or CR in mail that has no LF at all.
    """
    raw = strip_our_header(raw)
    end = _line_end(raw)
    at = _message_start(raw, end)
    if raw[at:at + 1] in (b" ", b"\t"):  # malformed: step over the indented lines in one scan
        import re

        # To the first line end followed by a line that is not indented (a repeated group,
        # ``(?:[ \t][^\n]*\n)*``, kept state for each line: 630 MB for 5 million of them).
        after = re.compile(rb"%s(?![ \t])" % end).search(raw, at)
        indented = after.end() if after else raw.rfind(end, at) + 1 or at
        at = min(indented, max(at, _head_end(raw)))
    return raw[:at] + f"{HEADER}: {value}".encode("utf-8") + _newline(raw, end) + raw[at:]


def _message_start(raw: bytes, end: bytes) -> int:
    """Where the message begins: after an mbox ``From `` envelope line, if it has one."""
    return raw.find(end) + 1 if raw.startswith(b"From ") else 0


def _newline(raw: bytes, end: bytes) -> bytes:
    """The line end of the message's first line after any envelope line: CRLF, LF or CR
    (an envelope line that procmail wrote in LF before CRLF mail does not count)."""
    first = raw.find(end, _message_start(raw, end))
    return b"\r\n" if end == b"\n" and first > 0 and raw[first - 1:first] == b"\r" else end


def _line_end(raw: bytes) -> bytes:
    """Where the message's lines end: at LF (a CR before it belongs to the line end), as
    procmail, maildrop and Sieve read lines; at CR only in mail with no LF at all."""
    return b"\r" if b"\n" not in raw and b"\r" in raw else b"\n"


def _lines(data: bytes, end: bytes) -> list[bytes]:
    """``data`` split after every ``end``, nothing else (unlike ``bytes.splitlines``, which
    also splits at a CR inside an LF-ended line: a line the mail tools read as one)."""
    parts = data.split(end)
    lines = [part + end for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _head_end(raw: bytes) -> int:
    """Where the header block ends: after its first empty line, lines split at LF and a line
    holding only a CR counted as empty, as maildrop and Sieve read mail (CR in mail with no
    LF at all); or at the end of the message. So no line either of them reads as body is
    ever removed. (procmail, reading LF mail, does not take a line of only CR for empty.)"""
    end = _line_end(raw)
    start = _message_start(raw, end)
    blanks = (end,) if end == b"\r" else (b"\n", b"\r\n")
    if raw.startswith(blanks, start):
        return start
    found = len(raw)
    for blank in blanks:
        at = raw.find(end + blank, start, found)
        if at != -1:
            found = at + 1
    return found
