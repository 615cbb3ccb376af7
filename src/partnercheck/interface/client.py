"""Talk to a running ``partnercheck serve``; imports nothing heavy, so it starts fast.

The wire format on the Unix socket (README, "The socket protocol") is one request and one
reply per connection, in one of two framings, told apart by the first byte:

* **framed** (what ``partnercheck filter`` sends): an 8-byte big-endian length followed by
  that many bytes of raw message; the reply is framed the same way and holds a JSON object,
  ``{"label": ..., "header": ..., "model": ..., "config": ...}`` or ``{"error": ...}``. A
  length's first byte is always 0 (no message is 2**56 bytes long).
* **plain** (for socat, nc and shell scripts): the raw message, then end of input (the
  client shuts down its writing side); the reply is the same JSON object on one line,
  ending with a newline, and the server closes the connection. A mail message never starts
  with a NUL byte, so the first byte tells the two apart.
"""

from __future__ import annotations

import struct

from ..errors import PartnercheckError

try:  # the C module alone: socket.py, with the enum and selectors it imports, took 16 ms of the filter's start
    import _socket as _sockets
except ImportError:  # a Python whose sockets are not that module
    import socket as _sockets

_LENGTH = struct.Struct(">Q")
#: How long to wait for the server to accept (else the cold path) and to answer (else the
#: message goes on unchanged: :class:`ServerSilent`). A working server answers within 6.5 s
#: (1.5 s waiting for a worker, then its time budget of 5 s classifying); a stopped one held
#: the filter 30 s, past the 10 s a Sieve filter may take by default
#: (``sieve_filter_exec_timeout``).
CONNECT_TIMEOUT = 0.5
REPLY_TIMEOUT = 7.0


class ServerUnavailable(Exception):
    """No server answered; the caller classifies in-process instead."""


class ServerSilent(ServerUnavailable, PartnercheckError):
    """A server took the message and gave no answer within :data:`REPLY_TIMEOUT` (stopped, or
    swapping): the filter passes the message on unchanged, since classifying it in-process
    as well, 1 to 2.5 s under load, took a Sieve filter past its 10 s, and Dovecot then
    failed the delivery."""


def send_frame(sock, data: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(data)) + data)


def read_request(sock, limit: int) -> tuple[bytes, bool]:
    """One request in either framing: (raw message, framed?). Raises ValueError over ``limit``."""
    first = sock.recv(1)
    if not first:
        return b"", False  # plain framing, an empty message: it gets its verdict (unreadable) like any other
    if first == b"\0":
        header = first + _read_exact(sock, _LENGTH.size - 1)
        (length,) = _LENGTH.unpack(header)
        if length > limit:
            raise ValueError(f"frame of {length} bytes is over the limit of {limit}")
        return _read_exact(sock, length), True
    chunks, size = [first], 1
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ValueError(f"message of over {limit} bytes")
    return b"".join(chunks), False


def read_frame(sock, limit: int) -> bytes:
    header = _read_exact(sock, _LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if length > limit:
        raise ValueError(f"frame of {length} bytes is over the limit of {limit}")
    return _read_exact(sock, length)


def _read_exact(sock, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def classify_remote(raw: bytes, path: str) -> dict:
    """The server's verdict for ``raw``; :class:`ServerUnavailable` if none is listening."""
    if not hasattr(_sockets, "AF_UNIX"):
        raise ServerUnavailable("this system has no Unix sockets")
    sock = _sockets.socket(_sockets.AF_UNIX, _sockets.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
        except OSError as exc:
            raise ServerUnavailable(str(exc)) from None
        sock.settimeout(REPLY_TIMEOUT)
        try:
            send_frame(sock, raw)
            reply = decode_reply(read_frame(sock, 1 << 20))
        except TimeoutError:
            raise ServerSilent(f"the server at {path} gave no answer within {REPLY_TIMEOUT:g} s, "
                               "and it is too late to classify the message here") from None
        except (OSError, ValueError) as exc:
            raise ServerUnavailable(f"server did not answer: {exc}") from None
    finally:
        sock.close()
    if not isinstance(reply, dict) or "error" in reply:
        raise ServerUnavailable(str(reply.get("error") if isinstance(reply, dict) else reply))
    if not isinstance(reply.get("header"), str) or not isinstance(reply.get("label"), str):
        raise ServerUnavailable(f"unexpected reply from the server: {reply!r}")
    return reply


def decode_reply(data: bytes):
    """The server's JSON reply. The usual one, an object of strings (``{"label": "...",
    "header": "...", "model": "...", "config": "..."}``) as ``json.dumps`` writes it, with no
    quote or backslash inside a string, is read with string methods: importing ``json``
    (with the ``re`` and ``enum`` it imports) took 6-18 ms of a filter's start. Anything
    else, an error or an escaped character, goes to ``json``."""
    text = data.decode("utf-8")
    if text.startswith('{"') and text.endswith('"}') and "\\" not in text:
        pairs = [item.split('": "') for item in text[2:-2].split('", "')]
        if all(len(pair) == 2 and '"' not in pair[0] + pair[1] for pair in pairs):
            return dict(pairs)
    import json

    return json.loads(text)
