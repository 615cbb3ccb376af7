"""Raw message bytes to one :class:`EmailRecord`.

Header blocks and MIME structure are split here, in a few dozen lines, rather than by the
standard library's parser: on the corpus-based benchmark mailbox (1.8 KB a message, one in
six multipart or HTML) that took reading from 6,100 to 11,500 messages a second on one
core, and it keeps undeclared 8-bit header bytes that ``compat32`` turns into U+FFFD. The
email package still decodes RFC 2047 words, addresses and dates. When the change was made,
both readers gave the same records for every corpus message; malformed messages under
tests/ cover the edges.

Nothing here raises on bad mail. Everything that can go wrong (a lying charset, bad base64,
a header with undeclared 8-bit bytes, a missing boundary, absurd nesting) is written into
``EmailRecord.problems``, and reading goes on with whatever could be recovered.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from email.errors import MessageError
from email.header import decode_header, make_header
from email.utils import getaddresses, parseaddr, parsedate_to_datetime, unquote

from .html_text import html_to_text

#: Body text beyond this many characters is cut: no outreach mail is longer, and a 50 MB
#: text part must not cost 50 MB of features.
MAX_TEXT_CHARS = 100_000
#: Deeper MIME nesting than this is treated as hostile and not walked further.
MAX_DEPTH = 20
#: A message's MIME parts beyond this many are not read (each costs a parse).
MAX_PARTS = 500
#: Header lines beyond this many are not read, and a header value is cut at this many characters.
MAX_HEADER_LINES = 5000
MAX_HEADER_CHARS = 16_384
MAX_HEAD_BYTES = 256 * 1024

#: Headers kept verbatim because they tell how a message was sent (bulk or personal,
#: reply or cold).
OUTREACH_HEADERS = (
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "precedence",
    "in-reply-to",
    "references",
    "x-mailer",
    "user-agent",
    "auto-submitted",
    "x-campaign-id",
    "organization",
)

_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.I)
# "On Mon, Ana wrote:" introduces ">" lines; the reply may go on below them.
_ATTRIBUTION = re.compile(r"^(on .{4,200}wrote:?|.{0,80}(schrieb|a écrit|escribió|escreveu).{0,3}:?)\s*$", re.I)
# An original or forwarded message pasted without ">": everything below is quoted.
_PASTED_MESSAGE = re.compile(
    r"^(-{3,} ?(original message|forwarded message|mensaje original|message d'origine"
    r"|ursprüngliche nachricht|mensagem original) ?-{3,}|begin forwarded message:?)\s*$",
    re.I,
)
_SIGNATURE_FIRST = frozenset("-_SsGgEeVv")
#: Text with none of these has no quote, attribution or signature, and is all new text.
_REPLY_MARKERS = ("\n>", "\n--", "\n__", "wrote", "schrieb", "écrit", "escribió", "escreveu", "sent from",
                  "get outlook", "enviado desde", "envoyé de", "von meinem", "forwarded message",
                  "original message", "\nfrom:", "\nvon:", "\nde:")
_OUTLOOK_QUOTE = re.compile(r"^(from|von|de):\s.+$", re.I)
_SIGNATURE_START = re.compile(
    r"^(-- ?|__+|sent from my \w+.*|get outlook for \w+.*|enviado desde mi \w+.*"
    r"|envoyé de mon \w+.*|von meinem \w+ gesendet.*)$",
    re.I,
)


@dataclass(slots=True)
class EmailRecord:
    """One email, reduced to what partnercheck reads.

    ``body`` is the sender's new text; ``quoted`` holds quoted replies and forwarded
    messages, ``signature`` the sign-off block after ``-- `` or a "Sent from my phone"
    line, so later stages can weigh them differently. ``attached`` is the text of messages
    attached whole (``message/rfc822`` parts, "forward as attachment"), each under a
    forwarded-message marker and its From, To, Cc, Date and Subject, as an inline forward
    shows them; ``quoted`` holds it too. ``raw`` keeps the original bytes
    (``None`` for records built from table rows), ``problems`` every parse problem met.
    """

    key: str = ""
    source: str = ""
    message_id: str = ""
    from_name: str = ""
    from_addr: str = ""
    reply_to: str = ""
    to: tuple[str, ...] = ()
    to_names: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    date: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    quoted: str = ""
    attached: str = ""
    signature: str = ""
    links: list[str] = field(default_factory=list)
    html_only: bool = False
    tracking_pixel: bool = False
    attachments: int = 0
    problems: list[str] = field(default_factory=list)
    label: str | None = None
    raw: bytes | None = None

    @property
    def from_domain(self) -> str:
        return self.from_addr.rpartition("@")[2].lower()

    @property
    def reply_to_domain(self) -> str:
        return self.reply_to.rpartition("@")[2].lower()

    @property
    def readable(self) -> bool:
        """Whether there is any text to judge (an empty or unreadable message has none)."""
        return bool(self.body.strip() or self.subject.strip())

    @property
    def text(self) -> str:
        """Subject and new body text together, the part a reader weighs first."""
        return f"{self.subject}\n{self.body}"

    def date_iso(self) -> str:
        """The Date header as ISO 8601, or the header as written when it does not parse."""
        if not self.date:
            return ""
        try:
            return parsedate_to_datetime(self.date).isoformat()
        except (TypeError, ValueError, IndexError, OverflowError):
            return self.date


def parse_message(raw: bytes, key: str = "", source: str = "") -> EmailRecord:
    """Parse raw RFC 5322 bytes into an :class:`EmailRecord`. Never raises on bad mail."""
    record = EmailRecord(key=key, source=source, raw=raw)
    if not raw.strip():
        record.problems.append("empty message")
        return record
    # Headers and MIME structure are read here rather than by the email package's parser,
    # which costs about three times as much on 2 KB mail and turns undeclared 8-bit header
    # bytes into U+FFFD; the email package still decodes RFC 2047 words and addresses.
    try:
        items, body = header_fields(raw, record.problems)
        first = _read_headers(items, record)
        parts = _BodyParts()
        _read_part(first, body, parts, record.problems, depth=0, forwarded=False)
        _finish_body(parts, record)
    except Exception as exc:  # a case the parser does not know yet costs this message's text, never a batch
        record = EmailRecord(key=key, source=source, raw=raw,
                             problems=[f"cannot be parsed ({exc.__class__.__name__}: {exc})"])
    return record


def header_fields(raw: bytes, problems: list[str]) -> tuple[list[tuple[str, str]], bytes]:
    """The header fields ``(name, raw value)`` of a message, unfolded, and its body bytes.

    Values keep undeclared 8-bit bytes as surrogate escapes for :func:`header_text`. An mbox
    ``From `` envelope line is skipped; a line that is not a header ends the header block
    (a message with no blank line after its headers).
    """
    # A Windows tool's mark would hide the first field, and blank lines above the header (a
    # file saved by hand) would make all of it body, as mbox and standard input never do.
    head, body = _split_head(raw.removeprefix(codecs.BOM_UTF8).lstrip(b"\r\n"))
    if len(head) > MAX_HEAD_BYTES:
        problems.append(f"header block over {MAX_HEAD_BYTES} bytes; the rest ignored")
        head = head[:MAX_HEAD_BYTES]
    text = head.decode("ascii", "surrogateescape")
    fields: list[tuple[str, list[str]]] = []  # a value's folded lines are joined once, at the end
    lines = text.splitlines()
    if lines and lines[0].startswith("From "):
        lines = lines[1:]
    if len(lines) > MAX_HEADER_LINES:
        problems.append(f"more than {MAX_HEADER_LINES} header lines; the rest ignored")
        lines = lines[:MAX_HEADER_LINES]
    rest = None
    for index, line in enumerate(lines):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1].append(line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name.strip() or name != name.lstrip():
            if not line.strip():
                continue
            problems.append("missing header body separator")
            rest = "\n".join(lines[index:]).encode("ascii", "surrogateescape")
            break
        fields.append((name.strip(), [value.strip()]))
    items = []
    for name, parts in fields:
        value = " ".join(parts) if len(parts) > 1 else parts[0]
        if len(value) > MAX_HEADER_CHARS:
            problems.append(f"{name} header cut at {MAX_HEADER_CHARS} characters")
            value = value[:MAX_HEADER_CHARS]
        items.append((name, value))
    if rest is not None:
        return items, rest + (b"\n" + body if body is not None else b"")
    return items, body or b""


def _split_head(raw: bytes) -> tuple[bytes, bytes | None]:
    """The header block and the body, split at the first blank line (``None``: no blank line)."""
    lf, crlf = raw.find(b"\n\n"), raw.find(b"\r\n\r\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        return raw[: crlf + 2], raw[crlf + 4:]
    if lf != -1:
        return raw[: lf + 1], raw[lf + 2:]
    return raw, None


def header_text(value, problems: list[str] | None = None) -> str:
    """Decode one header value: RFC 2047 words, and undeclared 8-bit bytes as UTF-8 or cp1252."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if not text.isascii() and any("\udc80" <= ch <= "\udcff" for ch in text):
        text = decode_mixed(text.encode("ascii", "surrogateescape"))
        if problems is not None:
            problems.append("undeclared 8-bit bytes in a header")
    if "=?" in text:
        try:
            text = without_lone_surrogates(str(make_header(decode_header(text)))).translate(_C1_AS_CP1252)
        except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):  # MessageError: bad base64, bad charset name
            if problems is not None:
                problems.append("undecodable encoded word in a header")
    return " ".join(text.split())


def _read_headers(items: list[tuple[str, str]], record: EmailRecord) -> dict[str, str]:
    """Fill the record's header fields; returns each header's first value by lower-cased name."""
    problems = record.problems
    first: dict[str, str] = {}
    recipients: dict[str, list[str]] = {"to": [], "cc": []}
    for name, value in items:
        name = name.lower()
        if name in recipients:
            recipients[name].append(value)
        first.setdefault(name, value)
    record.from_name, record.from_addr = _address(header_text(first.get("from"), problems))
    record.reply_to = _address(header_text(first.get("reply-to"), problems))[1]
    to = _mailboxes(recipients["to"], problems)
    record.to = tuple(address for _, address in to)
    record.to_names = tuple(name for name, _ in to)
    record.cc = tuple(address for _, address in _mailboxes(recipients["cc"], problems))
    record.subject = header_text(first.get("subject"), problems)
    record.date = header_text(first.get("date"), problems)
    record.message_id = header_text(first.get("message-id"), problems)
    for name in OUTREACH_HEADERS:
        value = first.get(name)
        if value is not None:
            record.headers[name] = header_text(value, problems)
    return first


_ANGLE_ADDRESS = re.compile(r"<\s*([^<>@\s,;]+@[^<>@\s,;]+?)\s*>")
_BARE_ADDRESS = re.compile(r"\s*([^<>@\s,;\"()]+@[^<>@\s,;\"()]+)\s*")


def _address(value: str) -> tuple[str, str]:
    """(display name, lower-cased address) of one mailbox.

    An address in angle brackets wins, whatever the display name holds: real mail has
    unquoted commas and "@" in names ("Jas @ Velvet Reach <jas@...>"), which the standard
    parser splits into several wrong addresses. The last one wins: one in the display name
    (``"Boss <ceo@bank.example>" <x@elsewhere.example>``) is not where the mail came from.
    """
    angle = None
    for angle in _ANGLE_ADDRESS.finditer(value):
        pass
    if angle:
        name = value[: angle.start()].strip()
        if len(name) > 1 and name[0] == name[-1] == '"':
            name = unquote(name).strip()  # also undoes quoted pairs: "John \"JJ\" Smith"
        return name, angle.group(1).lower()
    bare = _BARE_ADDRESS.fullmatch(value)
    if bare:
        return "", bare.group(1).lower()
    name, addr = parseaddr(value)
    return name, addr.lower() if "@" in addr else ""


def _mailboxes(values: list[str], problems: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-cased address) of each mailbox with an address in a To or Cc header."""
    if not values:
        return []
    if len(values) == 1 and "," not in values[0]:
        name, address = _address(header_text(values[0], problems))
        return [(name, address)] if address else []
    # Split before decoding: an encoded word may hold a comma ("=?...?Q?M=FCller=2C_Hans?=").
    return [(header_text(name, problems), header_text(addr).lower()) for name, addr in getaddresses(values)
            if "@" in addr]


class _BodyParts:
    """Accumulates text while walking the MIME tree."""

    __slots__ = ("plain", "forwarded", "links", "html_seen", "plain_seen", "pixel", "attachments", "parts", "chars",
                 "skipped")

    def __init__(self) -> None:
        self.skipped = False
        self.parts = 0
        self.chars = 0
        self.plain: list[str] = []
        self.forwarded: list[str] = []
        self.links: list[str] = []
        self.html_seen = False
        self.plain_seen = False
        self.pixel = False
        self.attachments = 0


def _finish_body(parts: _BodyParts, record: EmailRecord) -> None:
    text = "\n\n".join(p for p in parts.plain if p)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        record.problems.append(f"body text cut at {MAX_TEXT_CHARS} characters")
    body, quoted, signature = split_reply(text)
    if parts.forwarded:
        record.attached = "\n\n".join(parts.forwarded).strip()
        quoted = "\n\n".join([quoted, record.attached]).strip()
    record.body, record.quoted, record.signature = body, quoted, signature
    found = (u.rstrip(".,;:!?") for u in _URL.findall(text))
    record.links = parts.links + [u for u in found if u not in parts.links]
    record.html_only = parts.html_seen and not parts.plain_seen
    record.tracking_pixel = parts.pixel
    record.attachments = parts.attachments
    drop_if_binary(record)


#: Control characters no text has (tab, line breaks and form feed aside) and U+FFFD, the
#: mark of bytes that decoded to nothing.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
#: Text with more than this share of them is binary data read as text.
MAX_NOT_TEXT_SHARE = 0.02
_SAMPLE_CHARS = 20_000
_CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 32), 127])


def _controls(sample: bytes) -> int:
    """How many bytes of ``sample`` are control characters that text does not hold."""
    return len(sample) - len(sample.translate(None, _CONTROL_BYTES))


def read_html_body(record: EmailRecord, html: str) -> None:
    """Give ``record`` the text, links and tracking pixel of ``html``, as a message whose only
    text is that HTML part gives them (a table export's body column that holds HTML)."""
    parts = _BodyParts()
    _add_text(parts, "text/html", html, forwarded=False)
    _finish_body(parts, record)


def drop_if_binary(record: EmailRecord) -> None:
    """Empty the body of a record whose text is binary data (random bytes, a misdeclared
    attachment), noting the problem: there is nothing in it to judge, so it is unreadable
    unless its subject says something. Real text in any script has almost none of
    :data:`_NOT_TEXT`; random bytes read as UTF-8 or cp1252 have about one in nine."""
    text = record.body[:_SAMPLE_CHARS]
    if text and len(_NOT_TEXT.findall(text)) > MAX_NOT_TEXT_SHARE * len(text):
        record.problems.append("binary data, not text")
        record.body = record.quoted = record.attached = record.signature = ""
        record.links = []


def _read_part(first: dict[str, str], data: bytes, acc: _BodyParts, problems: list[str], depth: int,
               forwarded: bool) -> None:
    """Collect the text of one MIME part (and, for multiparts, of its children)."""
    if depth > MAX_DEPTH:
        problems.append(f"MIME nesting deeper than {MAX_DEPTH}; rest skipped")
        return
    acc.parts += 1
    if acc.parts > MAX_PARTS or acc.chars > MAX_TEXT_CHARS:
        if not acc.skipped:
            acc.skipped = True
            problems.append(f"more than {MAX_PARTS} MIME parts or {MAX_TEXT_CHARS} characters of text; the rest skipped")
        return
    content_type = first.get("content-type") or "text/plain"
    ctype, _, params = content_type.partition(";")
    ctype = ctype.strip().lower()
    if ctype.startswith("multipart/"):
        children = [_fields(part, problems) for part in _split_multipart(data, params, problems)]
        if not children and data.strip():
            # No boundary, or one that never comes: mail programs show the body as it is,
            # and so it is read, as HTML when it opens as HTML does (bulk mail, often).
            kind = "text/html" if _HTML_START.search(data[:2048]) else "text/plain"
            _add_text(acc, kind, _decode_bytes(data, "us-ascii", problems), forwarded)
            return
        if ctype == "multipart/alternative":
            children = _preferred_alternative(children)
        for child_first, child_data in children:
            _read_part(child_first, child_data, acc, problems, depth + 1, forwarded)
        return
    if ctype == "message/rfc822":
        inner_first, inner_data = _fields(data, problems)
        acc.forwarded.append(_FORWARD_BANNER + "".join(
            f"{name.title()}: {header_text(inner_first[name], problems)}\n" for name in _SHOWN_FIELDS
            if name in inner_first))
        _read_part(inner_first, inner_data, acc, problems, depth + 1, forwarded=True)
        return
    disposition = (first.get("content-disposition") or "").split(";")[0].strip().lower()
    if ctype not in ("text/plain", "text/html") or disposition == "attachment":
        if depth == 0 and (ctype.startswith("text/") or "/" not in ctype):
            ctype = "text/plain"  # a top-level unknown or broken type is read as text, as clients do
        else:
            acc.attachments += 1
            return
    _add_text(acc, ctype, _part_text(first, data, params, problems), forwarded)


#: A message attached whole is shown as mail programs show an inline forward: this marker,
#: the header fields that say who wrote to whom and about what, a blank line, its text.
_FORWARD_BANNER = "---------- Forwarded message ---------\n"
_SHOWN_FIELDS = ("from", "to", "cc", "date", "subject")


def _part_text(first: dict[str, str], data: bytes, params: str, problems: list[str]) -> str:
    """A text part's body as text: its transfer encoding undone, then its charset (given in
    ``params``, its Content-Type's parameters; US-ASCII when none is)."""
    charset = _CHARSET.search(params)
    return _decode_bytes(_payload(first, data, problems), charset.group(1).lower() if charset else "us-ascii", problems)


#: The start of an HTML document or of its body, near the top of a part.
_HTML_START = re.compile(rb"<(?:!doctype html|html|body)[\s>]", re.I)


def _fields(raw: bytes, problems: list[str]) -> tuple[dict[str, str], bytes]:
    """A part's headers (first value of each, by lower-cased name) and its body."""
    items, body = header_fields(raw, problems)
    first: dict[str, str] = {}
    for name, value in items:
        first.setdefault(name.lower(), value)
    return first, body


_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.I)


def _split_multipart(data: bytes, params: str, problems: list[str]) -> list[bytes]:
    """The bodies between a multipart's boundary lines (preamble and epilogue dropped)."""
    found = _BOUNDARY.search(params)
    if not found:
        problems.append("multipart without a boundary")
        return []
    marker = b"--" + (found.group(1) or found.group(2) or "").encode("utf-8", "surrogateescape")
    starts, closed = [], False
    at = data.find(marker)
    while at != -1:
        if len(starts) > MAX_PARTS:
            problems.append(f"more than {MAX_PARTS} MIME parts; the rest skipped")
            closed = True
            break
        line_end = data.find(b"\n", at)
        line_end = len(data) if line_end == -1 else line_end + 1
        rest = data[at + len(marker):line_end].strip()
        if (at == 0 or data[at - 1:at] == b"\n") and rest in (b"", b"--"):  # not "--b1" of "--b10"
            starts.append((at, line_end))
            if rest == b"--":
                closed = True
                break
        at = data.find(marker, at + len(marker))
    if not closed:
        problems.append("close boundary not found")
        starts.append((len(data), len(data)))
    parts = []
    for (_, begin), (end, _) in zip(starts, starts[1:]):
        part = data[begin:end]
        # The line break before a boundary line belongs to the boundary.
        part = part[:-2] if part.endswith(b"\r\n") else part[:-1] if part.endswith(b"\n") else part
        parts.append(part)
    if not parts and not closed:
        problems.append("multipart without parts")
    return parts


_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)


def _transfer_decode(data: bytes, cte: str, problems: list[str]) -> bytes:
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    try:
        return binascii.a2b_base64(data, strict_mode=False)
    except binascii.Error:
        problems.append("bad base64 encoding; decoded what was readable")
        cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        cleaned = cleaned[: len(cleaned) - (len(cleaned) % 4 == 1)]  # a lone last character holds no byte
        cleaned += b"=" * (-len(cleaned) % 4)  # padding left off: the last bytes are still there
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            return b""


def _add_text(acc: _BodyParts, ctype: str, text: str, forwarded: bool) -> None:
    if ctype == "text/html":
        acc.html_seen = True
        html = html_to_text(text)
        text = html.text
        acc.links.extend(html.links)
        acc.pixel = acc.pixel or html.tracking_pixel
    else:
        acc.plain_seen = True
    text = text.strip()
    acc.chars += len(text)
    (acc.forwarded if forwarded else acc.plain).append(text)


def _preferred_alternative(children: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], bytes]]:
    """From a multipart/alternative, the plain-text part when it has text (once decoded: a
    blank part in base64 is not blank bytes), else the richest: the last HTML part, else the
    last part (a calendar part after the HTML does not hide the HTML's text).

    A plain part of a line or two beside an HTML part with several times its text is a
    stub ("View this email in your browser", "Your mail program cannot show HTML"), as bulk
    mail programs write them: then the HTML is what the reader sees, and what is read."""
    html, plain = [], None
    for first, data in children:
        ctype = (first.get("content-type") or "text/plain").split(";")[0].strip().lower()
        if ctype == "text/plain" and plain is None:
            text = _payload(first, data, []).strip()
            if text:
                plain = [(first, data)], len(text)
        if ctype == "text/html":
            html = [(first, data)]
    if plain is not None:
        chosen, length = plain
        if html and length < STUB_PLAIN_CHARS and len(_html_text(*html[0])) >= STUB_RATIO * length:
            return html
        return chosen
    return html or children[-1:]


#: A plain alternative shorter than this, beside an HTML one with STUB_RATIO times its text
#: or more, is a stub and the HTML is read instead (the HTML is parsed twice then, so only
#: short plain parts are compared).
STUB_PLAIN_CHARS = 200
STUB_RATIO = 3


def _html_text(first: dict[str, str], data: bytes) -> str:
    params = (first.get("content-type") or "").partition(";")[2]
    return html_to_text(_part_text(first, data, params, [])).text.strip()


def _payload(first: dict[str, str], data: bytes, problems: list[str]) -> bytes:
    """A part's body with its transfer encoding (base64, quoted-printable) undone."""
    cte = (first.get("content-transfer-encoding") or "").strip().lower()
    if cte in ("base64", "quoted-printable"):
        return _transfer_decode(data, cte, problems)
    return data


def _decode_bytes(data: bytes, charset: str, problems: list[str]) -> str:
    whole = len(data) <= 4 * MAX_TEXT_CHARS
    if not whole:
        data = data[: 4 * MAX_TEXT_CHARS]
        problems.append(f"a text part over {4 * MAX_TEXT_CHARS} bytes; the rest skipped")
    if charset in ("us-ascii", "utf-8", "utf8", "ascii") and data.isascii():
        return data.decode("ascii")
    wide = _decode_wide(data, charset, whole)
    if wide is not None:
        return wide
    sample = data[:_SAMPLE_CHARS]
    if _controls(sample) > MAX_NOT_TEXT_SHARE * len(sample) and not _escape_coded(charset):
        return data.decode("latin-1")  # binary: not worth decoding well (drop_if_binary empties it)
    if charset in _LATIN1_LABELS:
        return data.decode("latin-1").translate(_C1_AS_CP1252)
    try:
        return without_lone_surrogates(data.decode(charset))
    except UnicodeDecodeError:
        problems.append(f"text is not valid {charset}; read as UTF-8, other bytes as cp1252")
    except (LookupError, ValueError, UnicodeError, TypeError):  # no such codec, or a name no codec can have
        problems.append(f"unknown charset {charset!r}; read as UTF-8")
    return decode_mixed(data)


#: Names of ISO 8859-1, which mail programs write as windows-1252 and read as it, as the
#: WHATWG Encoding Standard says every reader must: 0x80-0x9F are then the curly quotes,
#: dashes and euro sign that Windows put there, not control characters (a price in euros
#: was unreadable to the rules).
_LATIN1_LABELS = frozenset(("iso-8859-1", "iso8859-1", "iso_8859-1", "latin-1", "latin1", "l1", "cp819",
                            "ibm819", "iso-ir-100", "csisolatin1", "iso_8859-1:1987"))
#: U+0080-U+009F to the characters windows-1252 gives those bytes (five it leaves undefined
#: stay as they are).
_C1_AS_CP1252 = str.maketrans({chr(b): bytes([b]).decode("cp1252") for b in range(0x80, 0xA0)
                               if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)})


def _escape_coded(charset: str) -> bool:
    """Whether ``charset`` is one of the ISO-2022 encodings (ISO-2022-JP, the usual charset
    of Japanese mail, and its Korean and Chinese kin), whose text switches character sets
    with ESC sequences: its control bytes are text, which decoding turns into characters
    (and binary data declared so fails to decode, and is found binary afterwards)."""
    try:
        return codecs.lookup(charset).name.startswith("iso2022")
    except (LookupError, ValueError):  # no such codec, or a name no codec can have
        return False


#: The byte order marks of each Unicode encoding whose units are wider than a byte.
_WIDE_BOMS = {"utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
              "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)}


def _decode_wide(data: bytes, charset: str, whole: bool) -> str | None:
    """Text declared UTF-16 or UTF-32 (any byte order), decoded as declared; None for any
    other charset, or bytes that are not valid in it.

    Checked before anything looks for binary data: half the bytes of English in UTF-16 are
    NUL. A byte order mark decides the order and is dropped. Without one, plain ``utf-16``
    or ``utf-32`` is read in the order whose high bytes are zero more often (Latin text), or,
    with no zero byte at all, in the order that gives characters Unicode assigns, big-endian
    on a tie (RFC 2781). Bytes with neither a zero byte nor a control byte are 8-bit text
    whatever the label says (a UTF-16 character's low byte is a control byte one time in
    nine), and are read as :func:`decode_mixed` reads it. A transport's line break after
    the last whole unit is dropped; so is a unit cut in half where the part was cut
    (``whole`` false).
    """
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):  # no such codec, or a name no codec can have
        return None
    family = name[:6]
    if family not in _WIDE_BOMS or name not in (family, family + "-le", family + "-be"):
        return None
    width = 2 if family == "utf-16" else 4
    little, big = _WIDE_BOMS[family]
    if data.startswith(little):
        name, data = family + "-le", data[len(little):]
    elif data.startswith(big):
        name, data = family + "-be", data[len(big):]
    elif name == family:
        sample = data[:_SAMPLE_CHARS]
        if 0 not in sample and not _controls(sample):
            return decode_mixed(data)  # 8-bit text (ASCII, UTF-8, Latin-1) under a wrong label
        if 0 in sample:
            name += "-le" if sample[width - 1::width].count(0) > sample[::width].count(0) else "-be"
        else:  # text with no Latin letter: the order whose characters Unicode assigns, else big-endian
            return min((_decoded(family + order, data, width, whole) for order in ("-be", "-le")),
                       key=_unassigned)
    return _decoded(name, data, width, whole)


def _decoded(name: str, data: bytes, width: int, whole: bool) -> str | None:
    """``data`` decoded by the codec ``name``, or None when it is not valid there; a
    transport's line break after the last whole unit is dropped."""
    extra = len(data) % width
    if extra and not data[-extra:].strip(b"\r\n"):
        data = data[:-extra]
    try:
        return codecs.getincrementaldecoder(name)().decode(data, final=whole)
    except UnicodeDecodeError:
        return None


def _unassigned(text: str | None) -> float:
    """How many of the first characters of ``text`` Unicode leaves unassigned or private."""
    if text is None:
        return float("inf")
    return sum(unicodedata.category(char) in ("Cn", "Co", "Cs") for char in text[:_SAMPLE_CHARS])


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: Surrogates that stand for no byte: U+DC80-U+DCFF are the bytes ``surrogateescape`` kept.
_BYTELESS_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def without_lone_surrogates(text: str, keep_bytes: bool = False) -> str:
    """``text`` with every surrogate code point (which UTF-7 and escape codecs can decode to,
    a JSON string can hold, and no UTF-8 text can) replaced by U+FFFD, so that it can be
    encoded and matched; with ``keep_bytes``, all but the undecodable bytes that
    ``surrogateescape`` kept, so that they can be written back as they came."""
    pattern = _BYTELESS_SURROGATE if keep_bytes else _LONE_SURROGATE
    return pattern.sub("\ufffd", text) if pattern.search(text) else text


def decode_mixed(data: bytes) -> str:
    """Bytes as UTF-8 where they are, each other byte as cp1252: mail that mixes both
    (a Latin-1 word pasted into UTF-8 text) stays readable instead of turning into mojibake."""
    text = data.decode("utf-8", "surrogateescape")
    if text.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return "".join(
        bytes([ord(ch) - 0xDC00]).decode("cp1252", "replace") if "\udc80" <= ch <= "\udcff" else ch
        for ch in text
    )


def split_reply(text: str) -> tuple[str, str, str]:
    """Split body text into (new text, quoted text, signature).

    Quoted text is every ``>`` line plus everything from an attribution line ("On ...
    wrote:", "-----Original Message-----", an Outlook ``From:`` block after a blank
    line) onwards; the signature runs from a ``-- `` delimiter or a "Sent from my..."
    line to the next quoted part.
    """
    if not text:
        return "", "", ""
    lowered = text.lower()
    if not any(marker in lowered for marker in _REPLY_MARKERS) and not lowered.startswith((">", "-", "_")):
        return text.strip(), "", ""
    new: list[str] = []
    quoted: list[str] = []
    signature: list[str] = []
    lines = text.splitlines()
    in_signature = False
    previous_blank = True
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            quoted.append(stripped.lstrip("> "))
            continue
        # Cheap tests first: attribution lines end in ":" or carry dashes, signature
        # delimiters start with a dash, an underscore or a "sent from" phrase.
        if stripped.endswith((":", "wrote")) and _ATTRIBUTION.match(stripped):
            quoted.append(stripped)
            continue
        pasted = ("---" in stripped or stripped.endswith(":")) and _PASTED_MESSAGE.match(stripped)
        outlook = (previous_blank and index > 0 and ":" in stripped[:9] and _OUTLOOK_QUOTE.match(stripped)
                   and _looks_like_outlook_block(lines, index))
        if pasted or outlook:
            quoted.extend(lines[index:])
            break
        if not in_signature and stripped[:1] in _SIGNATURE_FIRST and _SIGNATURE_START.match(stripped):
            in_signature = not stripped.startswith("_") or _short_block_after(lines, index)
        (signature if in_signature else new).append(line)
        previous_blank = not stripped
    return "\n".join(new).strip(), "\n".join(quoted).strip(), "\n".join(signature).strip()


#: A sign-off block is a few lines (the longest in the corpus, 7); text that goes on longer
#: after a line of underscores is a newsletter's or digest's own, which draws such lines
#: between its sections and often above its first.
SIGNATURE_MAX_LINES = 15


def _short_block_after(lines: list[str], index: int) -> bool:
    """Whether at most :data:`SIGNATURE_MAX_LINES` lines with text follow ``lines[index]``
    (a line of underscores) before the end, a quoted line or an Outlook ``From:`` block:
    only then is it a signature's delimiter rather than a divider."""
    count = 0
    for line in lines[index + 1:]:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">") or (":" in stripped[:9] and _OUTLOOK_QUOTE.match(stripped)):
            return True
        count += 1
        if count > SIGNATURE_MAX_LINES:
            return False
    return True


def _looks_like_outlook_block(lines: list[str], index: int) -> bool:
    window = " ".join(lines[index : index + 5]).lower()
    return ("sent:" in window or "date:" in window or "gesendet:" in window or "enviado:" in window) and (
        "subject:" in window or "betreff:" in window or "asunto:" in window or "objet" in window
    )
