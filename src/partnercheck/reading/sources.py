"""Streaming readers for every form in which people export mail.

A :class:`Source` names where mail comes from (``-`` for stdin, an .eml file, a folder of
.eml files and mboxes, an mbox, a Maildir, a CSV/TSV or JSON-lines export, a folder whose
sub-folders are named after labels, or a pipe or FIFO such as ``<(zcat inbox.mbox.gz)``,
read once as stdin is) and yields :class:`~partnercheck.reading.mail.EmailRecord`
objects one at a time. Nothing is loaded whole and nothing is ever written to a source:
every file is opened read-only, and no lock is taken.

Formats are recognised from the path (a ``cur``/``new`` pair means Maildir, label-named
sub-folders mean a labelled folder, a file whose first line is an mbox ``From `` line
means mbox, ``.csv``/``.tsv``/``.jsonl`` mean tables) and can be forced by name.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import shlex
import stat
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, NamedTuple

from ..errors import PartnercheckError
from ..labels import LABELS, UNSURE
from .cells import row_from_spreadsheet_safe
from .mail import (
    EmailRecord,
    decode_mixed,
    drop_if_binary,
    header_text,
    parse_message,
    read_html_body,
    split_reply,
    without_lone_surrogates,
)

FORMATS = ("eml", "folder", "mbox", "maildir", "csv", "tsv", "jsonl", "labelled")
#: The format of standard input, or of a pipe whose name tells none, until its first line
#: is read (:func:`_stream_format`): an mbox, a table export or one message. A stream can be
#: read only once, so that line is read when the source is first asked what it holds, and
#: kept for the reading.
STREAM = "stream"

#: A line that opens a new message in an mbox: ``From `` then an address, then a ctime
#: date. Asking for the weekday or the time keeps body lines such as "From here on..."
#: inside a message from splitting it.
_MBOX_SEPARATOR = re.compile(
    rb"From \S+ +(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\b|[^\n]*\d\d:\d\d:\d\d)"
)
#: What ends a Maildir file name after the message's unique name: ``:2,`` and its flags
#: (``!`` or ``;`` instead of ``:`` where a file system forbids it).
_MAILDIR_INFO = re.compile(r"[:!;]2,[^/]*$")
#: mboxrd escapes body lines ``From `` as ``>From ``; one ``>`` is removed on reading.
_ESCAPED_FROM = re.compile(rb"^>+From ", re.M)

# Column names a table export may use, first match wins; all are configurable.
BODY_COLUMNS = ("body", "text", "content", "message", "raw")
SUBJECT_COLUMNS = ("subject",)
FROM_COLUMNS = ("from", "sender", "from_addr", "from: (address)")  # the last is Outlook's
LABEL_COLUMNS = ("label", "verdict")
_MBOX_SUFFIXES = {".mbox", ".mbx"}
#: A Maildir's folders of messages (tmp/ holds mail still being delivered).
_MAILDIR_SUBS = ("cur", "new")
_EML_SUFFIXES = {".eml", ".emlx", ".msg", ".txt", "", *_MBOX_SUFFIXES}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class SourceError(PartnercheckError):
    """A source that cannot be read at all: its message is one line for the user."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a CSV/TSV/JSON-lines export hold what. ``None`` means look."""

    body: str | None = None
    subject: str | None = None
    sender: str | None = None
    label: str | None = None


class RawMessage(NamedTuple):
    """One message's bytes before parsing, with where it came from."""

    key: str
    raw: bytes
    label: str | None = None
    problem: str | None = None  # set when the bytes could not be read at all


class Source:
    """A stream of email records from one path.

    ``total`` and ``position`` give progress in ``unit`` (bytes for single files,
    messages for folders) so that a caller can draw a progress bar without a second pass.
    Iterating yields parsed :class:`EmailRecord` objects; for message formats (everything
    but tables) :meth:`messages` yields the raw bytes instead, so that parsing can happen
    in another process. ``is_stream`` says whether it is standard input or a pipe or FIFO,
    which can be read only once.
    """

    def __init__(
        self,
        path: str,
        fmt: str | None = None,
        columns: Columns | None = None,
        label: str | None = None,
        stdin: IO[bytes] | None = None,
    ) -> None:
        if fmt is not None and fmt not in FORMATS:
            raise SourceError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if label is not None and label not in LABELS:
            raise SourceError(f"unknown label {label!r}; choose one of {', '.join(LABELS)}")
        self.path = path
        self.columns = columns or Columns()
        self.label = label
        self._stdin = stdin
        self._opened: tuple[IO[bytes], IO[bytes]] | None = None  # a stream and its reader, first line kept
        self.position = 0
        self.total: int | None = None
        self.unit = "bytes"
        self.is_stream = path == "-" or _is_pipe(path)
        self.named_by_label_file = False  # a label file's rows name it: it must hold mail, not more labels
        if path == "-":
            self.format = fmt or STREAM
            self.name = "-"
        else:
            self.format = fmt or detect_format(path, self.columns)
            self.name = os.path.abspath(path)

    @property
    def is_table(self) -> bool:
        if self.format == STREAM:
            self._read_first_line()
        return self.format in ("csv", "tsv", "jsonl")

    def _read_first_line(self) -> None:
        """Tell a stream's format from its first line (after blank lines; mail has none
        before its headers), which is kept to be read again."""
        stream = self._stdin or sys.stdin.buffer if self.path == "-" else _open_read(Path(self.path))
        read = first = stream.readline(_FIRST_LINE_LIMIT)
        while read and not _without_lead(first).strip() and len(read) < _FIRST_LINE_LIMIT:
            first = stream.readline(_FIRST_LINE_LIMIT)
            read += first
        self.format = "mbox" if _opens_mbox(read) else _stream_format(first, self.columns)
        self._opened = (stream, io.BufferedReader(_Prefixed(read, stream)))

    def __iter__(self) -> Iterator[EmailRecord]:
        if self.is_table:
            records = self._table_records()
        else:
            records = (to_record(message, self.name) for message in self.messages())
        if self.label is None:
            return records
        return (_with_label(r, self.label) for r in records)

    def messages(self) -> Iterator[RawMessage]:
        """Raw messages, unparsed, for every format but tables."""
        if self.is_table:
            raise SourceError(f"{self.path}: a {self.format} export holds fields, not raw messages")
        if self.is_stream:
            return self._stream_messages()
        path = self._existing()
        if self.format in ("eml", "mbox"):
            if not path.is_file():
                raise SourceError(f"{self.path}: not a file, so it cannot be read as {self.format}")
            self.total = path.stat().st_size
            return self._file_messages(_open_read(path))
        if not path.is_dir():
            raise SourceError(f"{self.path}: not a folder, so it cannot be read as {self.format}")
        try:  # the folder named is an error, as a missing one is; only folders inside it are rows
            with os.scandir(path):
                pass
        except OSError as exc:
            raise SourceError(_listing_failure(path, exc)) from None
        if self.format == "maildir":
            files = [(f, None) for sub in _MAILDIR_SUBS for f in _files(path / sub, recursive=False)]
        elif self.format == "labelled":
            files = _labelled_files(path)
        else:
            files = [(f, None) for f in _files(path, recursive=True)]
        self.total, self.unit = len(files), "messages"
        return self._folder_messages(path, files)

    def stable_key(self, key: str) -> str:
        """What stays of a message's ``key`` while the message stays in this source: the key
        itself, but in a Maildir, whose mail program renames a message's file when it is
        read, flagged or moved from new/ to cur/, the file's unique name alone (after the
        Maildir's path, for a Maildir inside a folder). Rows of an
        earlier run are matched by it, so that ``--resume`` and a label file find them."""
        if self.format == "maildir":
            return _MAILDIR_INFO.sub("", key.rpartition("/")[2])
        if self.format not in ("folder", "labelled"):
            return key
        head, _, name = key.rpartition("/")
        maildir, _, sub = head.rpartition("/")
        return f"{maildir}/{_MAILDIR_INFO.sub('', name)}" if sub in _MAILDIR_SUBS else key

    def _existing(self) -> Path:
        path = Path(self.path)
        if not path.exists():
            raise SourceError(f"{self.path}: no such file or directory")
        return path

    def _file_messages(self, handle: IO[bytes]) -> Iterator[RawMessage]:
        with handle, _reading(self.path):
            yield from self._read_messages(handle)

    def _stream_messages(self) -> Iterator[RawMessage]:
        if self.format not in ("eml", "mbox"):  # is_table has told a stream's format by now
            what = "standard input" if self.path == "-" else f"{self.path}: a pipe, so it"
            raise SourceError(f"{what} cannot be read as {self.format}")
        with self._stream() as stream:
            yield from self._read_messages(stream)

    def _read_messages(self, stream: IO[bytes]) -> Iterator[RawMessage]:
        if self.format == "mbox":
            for key, raw in read_mbox(stream):
                self.position += len(raw)
                yield RawMessage(key, raw)
            if self.total is not None:  # the separator lines were read too: the whole file is
                self.position = self.total
        else:
            raw = stream.read()
            self.position = len(raw)
            yield RawMessage(os.path.basename(self.name), without_emlx_wrapper(raw))

    @contextmanager
    def _stream(self) -> Iterator[IO[bytes]]:
        """Standard input, or the pipe or FIFO named, opened once and read from start to end
        (what was read from a pipe is gone). A FIFO is opened when its first line is read or
        when it is read, not when the source is made, and waits for a writer as ``cat`` does."""
        if self._opened is not None:  # its first line was read to tell its format
            stream, reader = self._opened
            self._opened = None
            try:
                yield reader
            finally:
                if self.path != "-":
                    stream.close()
        elif self.path == "-":
            yield self._stdin or sys.stdin.buffer
        else:
            with _open_read(Path(self.path)) as stream:
                yield stream

    def _folder_messages(self, root: Path, files: list[tuple[Path | _NotRead, str | None]]) -> Iterator[RawMessage]:
        for file, label in files:
            self.position += 1
            if isinstance(file, _NotRead):
                yield RawMessage(file.path.relative_to(root).as_posix(), b"", label, file.problem)
                continue
            key = file.relative_to(root).as_posix()
            if _special(file):  # opening or reading it could wait for ever
                yield RawMessage(key, b"", label, f"{file}: not a regular file, so not read")
                continue
            try:
                handle = _open_read(file)
            except SourceError as exc:
                yield RawMessage(key, b"", label, str(exc))
                continue
            with handle:
                try:
                    if self.format == "maildir" or file.parent.name in _MAILDIR_SUBS:  # one message a file, by definition
                        yield RawMessage(key, handle.read(), label)
                    else:
                        yield from _messages_in_file(handle, key, label, file.suffix.lower())
                except OSError as exc:  # a failing disk or network file system: the next file may read
                    yield RawMessage(key, b"", label, _read_failure(file, exc))

    def _table_records(self) -> Iterator[EmailRecord]:
        if self.is_stream:
            with self._stream() as stream:
                yield from read_table(stream, self.format, self.columns, self.name, self.named_by_label_file)
            return
        path = self._existing()
        if not path.is_file():
            raise SourceError(f"{self.path}: not a file, so it cannot be read as {self.format}")
        self.total = path.stat().st_size
        with _open_read(path) as handle, _reading(self.path):
            for record in read_table(handle, self.format, self.columns, self.name, self.named_by_label_file):
                self.position = handle.tell()
                yield record


def _messages_in_file(handle: IO[bytes], key: str, label: str | None, suffix: str) -> Iterator[RawMessage]:
    """The messages of one file in a folder: a ``.mbox`` (Takeout's), or a file without a
    suffix that opens as an mbox does (Thunderbird's ``Inbox``), or one whose suffix names no
    message file and that opens as an mbox (Thunderbird's ``Archives.2023``), gives each of its messages,
    keyed ``KEY:N``, as the mbox alone would, none (an empty file without a suffix is
    Thunderbird's empty Trash), one or more (so that a message keeps
    its key when the mbox grows); any other file (an .eml whose body has a line that looks
    like a separator too) is one message, read whole (``From `` line and all), keyed ``KEY``."""
    named = suffix in _EML_SUFFIXES and suffix != ""  # a message's or an mbox's suffix
    head = b"" if named else handle.peek(_MBOX_LEAD)[:_MBOX_LEAD]
    if suffix in _MBOX_SUFFIXES or not named and (not head or _opens_mbox(head)):
        for number, raw in read_mbox(handle):
            yield RawMessage(f"{key}:{number}", raw, label)
        return
    yield RawMessage(key, without_emlx_wrapper(handle.read()), label)


_EMLX_LENGTH = re.compile(rb"(\d{1,12})[ \t]*\r?\n")
#: What follows the message in an ``.emlx`` file: its property list, or nothing.
_EMLX_TAIL = re.compile(rb"\s*(?:<\?xml|<!DOCTYPE plist|<plist|\Z)")


def without_emlx_wrapper(raw: bytes) -> bytes:
    """The message inside an Apple Mail ``.emlx`` file, which opens with a line holding the
    message's length in bytes and ends with an XML property list of flags after it; any
    other message as it is (no mail opens with a line of digits alone, and a text without
    headers that does, "3" over a list, has no property list where that length ends, so
    the file's name need not say which it is)."""
    found = _EMLX_LENGTH.match(raw)
    if found is None:
        return raw
    end = found.end() + int(found.group(1))
    if end > len(raw) or not _EMLX_TAIL.match(raw, end):
        return raw
    return raw[found.end():end]


def to_record(message: RawMessage, source: str) -> EmailRecord:
    """Parse one raw message into a record (an unreadable file becomes a record saying so)."""
    if message.problem is not None:
        record = EmailRecord(key=message.key, source=source, problems=[message.problem])
    else:
        record = parse_message(message.raw, key=message.key, source=source)
    if message.label is not None:
        record.label = message.label
    return record


def detect_format(path: str, columns: Columns | None = None) -> str:
    """Recognise a source's format from its path and, for files, its first bytes; a pipe
    whose name says nothing is :data:`STREAM` until its first line is read. A file that
    opens with a UTF-16 byte order mark (Excel's "Unicode Text", saved as .txt) is told by
    its first line, as standard input is."""
    p = Path(path)
    if p.is_dir():
        try:
            if (p / "cur").is_dir() or (p / "new").is_dir():
                return "maildir"
            if any(child.is_dir() and child.name.lower() in LABELS for child in p.iterdir()):
                return "labelled"
        except OSError as exc:
            raise SourceError(_listing_failure(p, exc)) from None
        return "folder"
    if not p.exists():
        raise SourceError(f"{path}: no such file or directory")
    suffix = p.suffix.lower()
    pipe = _is_pipe(path)  # its first bytes, once read, would be gone
    head = b""
    if not pipe:
        with _open_read(p) as handle:
            try:
                head = handle.read(_MBOX_LEAD)
            except OSError as exc:  # a failing disk
                raise SourceError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        # Whatever the name says: a workbook saved as labels.csv, or a gzip file named inbox.mbox.
        _refuse_workbook(path, head)
        _refuse_compressed(path, head)
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in _MBOX_SUFFIXES:
        return "mbox"
    if pipe:
        return STREAM
    if head[:2] in _UTF16_BOMS:  # mail never opens so
        return _stream_format(head.partition(b"\n")[0], columns or Columns())
    return "mbox" if _opens_mbox(head) else "eml"


#: What a spreadsheet program's own files open with or hold near their start: an Excel
#: workbook's part list, an OpenDocument spreadsheet's media type, the legacy Excel file.
_WORKBOOK_MARKS = (b"[Content_Types].xml", b"application/vnd.oasis.opendocument.spreadsheet")
_WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def _refuse_workbook(path: str, head: bytes) -> None:
    """Stop with one line on a label file saved in a spreadsheet program's own format (a
    corrected labels.csv saved as labels.xlsx or .ods), which would be called a zip archive
    to unpack, or read as one message of binary data."""
    if Path(path).suffix.lower() in _WORKBOOK_SUFFIXES or (
            head.startswith(b"PK\x03\x04") and any(mark in head for mark in _WORKBOOK_MARKS)):
        raise SourceError(f"{path}: a spreadsheet workbook, not a table partnercheck reads; save it from "
                          "the spreadsheet as CSV (or Unicode Text) and give that file")


#: How compressed files and archives open (mail never does so), what they are, and the
#: command that writes one's content out (none for an archive of many files).
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "zcat"), (re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P)"), "bzip2", "bzcat"),
    (b"\xfd7zXZ\x00", "xz", "xzcat"), (b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"),
    (b"PK\x03\x04", "zip", None), (b"7z\xbc\xaf\x27\x1c", "7z", None),
)


def _refuse_compressed(path: str, head: bytes) -> None:
    """Stop with one line on a compressed file (an ``inbox.mbox.gz``, Takeout's ``.zip``),
    which would read as one message of binary data, saying how to read its mail."""
    problem = _compressed(path, head)
    if problem:
        raise SourceError(problem)


def _compressed(path: str, head: bytes, archives: bool = True) -> str | None:
    """The line that says how to read the mail of a compressed file, or None for any other
    (and for an archive of many files, unless ``archives``)."""
    for magic, kind, cat in _COMPRESSED:
        if (cat or archives) and (head.startswith(magic) if isinstance(magic, bytes) else magic.match(head)):
            if cat is None:
                return f"{path}: a {kind} archive; unpack it first and name the mail in it"
            return f"{path}: {kind}-compressed; decompress it first, or name it as <({cat} {shlex.quote(path)})"
    return None


#: How far into a file its first ``From `` line is looked for.
_MBOX_LEAD = 4096
#: What a UTF-16 text opens with (a table export from Excel or Outlook); mail never does.
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _without_lead(data: bytes) -> bytes:
    """``data`` without a UTF-8 byte order mark and blank lines at its start, which an
    mbox written or edited on Windows can have before its first ``From `` line."""
    return data.removeprefix(codecs.BOM_UTF8).lstrip(b"\r\n")


def _opens_mbox(data: bytes) -> bool:
    """Whether the first bytes of a file or stream are an mbox's: a ``From `` line, or,
    after what :func:`_without_lead` drops, a separator line (text that opens with a blank
    line and "From here on" stays a message)."""
    return data.startswith(b"From ") or bool(_MBOX_SEPARATOR.match(_without_lead(data)))


def read_mbox(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """Stream ``(key, raw bytes)`` out of an mbox (mboxo or mboxrd, LF or CRLF).

    The file is read in blocks and split at every line that looks like an mbox separator
    (``From``, an address, a ctime date), with or without a blank line before it, as
    Python's ``mailbox`` module splits; keys are the 1-based position of the message.
    Reading in blocks rather than lines makes splitting cost about 3 µs a message
    instead of 25. The newline that ends a separator line is kept with the message after
    it, so that a separator straight after another (an empty message) is found as
    ``\nFrom `` too, wherever a block ends. A separator inside the body that a message's
    ``Content-Length`` header declares (mboxcl2, where body lines are not escaped) is body
    text, when that body ends where a separator or the file does.
    """
    carry = b""
    start = 0  # where the message being read begins in ``carry``: 0, or 1 after a kept newline
    scanned = 0  # how much of ``carry`` has been searched for separators already
    index = 0
    first = True
    while True:
        # Each block read copies the unfinished message once more, so a long one is read in
        # blocks that grow with it: a 128 MB message took 5.2 s in 1 MB blocks, 0.5 s so.
        chunk = stream.read(_BLOCK if len(carry) < _LONG_MESSAGE else len(carry))
        data = carry + chunk if carry else chunk
        if first:
            if not data:
                return
            lead = len(data) - len(_without_lead(data))
            line_end = data.find(b"\n", lead)
            if chunk and line_end == -1 and (lead or len(data) < 5 or data.startswith(b"From ")):
                carry = data  # the first line is not all read yet
                continue
            if data.startswith(b"From ") or lead and _MBOX_SEPARATOR.match(data, lead):
                start = line_end + 1 if line_end != -1 else len(data)
            else:
                lead = 0
            first = False
            scanned = lead  # the newline of a blank line before the first From line ends no message
        search = scanned
        resume = max(0, len(data) - 8)
        while True:
            at = data.find(b"\nFrom ", search)
            if at == -1:
                break
            line_end = data.find(b"\n", at + 1)
            if line_end == -1:
                resume = at  # the separator line is not complete yet: look again with more data
                break
            search = at + 1
            if _MBOX_SEPARATOR.match(data, at + 1):
                inside = _inside_declared_body(data, start, at, final=not chunk)
                if inside is None:  # its end is not read yet: look again with more data
                    resume = at
                    break
                if inside:
                    continue
                index += 1
                yield str(index), _unescape(data[start:at])
                start = line_end + 1
        kept = max(0, start - 1)
        carry, start = data[kept:], start - kept
        scanned = max(0, resume - kept)
        if not chunk:
            rest = carry[start:]
            if rest.strip() or index == 0 and rest:
                index += 1
                last = rest[:-1] if rest.endswith(b"\n\n") else rest
                yield str(index), _unescape(last[:-1] if last.endswith(b"\r\n\r\n") else last)
            return


_BLOCK = 1 << 20
_LONG_MESSAGE = 8 << 20
#: A message's ``Content-Length`` header (mboxcl2), in its header block.
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)
#: A declared body longer than this is not waited for: a wrong header cannot make a
#: reader hold the whole file in memory.
_MAX_DECLARED_BODY = 64 << 20


def _inside_declared_body(data: bytes, start: int, at: int, final: bool) -> bool | None:
    """Whether the separator line after ``data[at]`` lies inside the body that the
    ``Content-Length`` header of the message starting at ``start`` declares, and that body
    ends at a separator or at the end of the file (a length that does not is wrong, and is
    ignored, as mutt ignores it). ``None``: its end is past what was read, and ``final``
    says more data may come."""
    head_end = data.find(b"\n\n", start, at + 1)  # the blank line may end where the separator's line starts
    last = at if head_end == -1 else head_end
    if b"content-length:" not in data[start:last + 1].lower():  # most mail: nothing more to look for
        return False
    crlf_end = data.find(b"\r\n\r\n", start, last + 3)
    if crlf_end != -1:
        head_end, body = crlf_end, crlf_end + 4
    elif head_end != -1:
        body = head_end + 2
    else:
        return False
    declared = _CONTENT_LENGTH.search(data, start, head_end + 1)
    if declared is None:
        return False
    end = body + int(declared.group(1))
    if end <= at + 1 or end - at > _MAX_DECLARED_BODY:  # it ends before the separator's line starts
        return False
    if not final and data.find(b"\n", end + 4) == -1:  # the separator line after it is not all read
        return None
    if not data[end:].strip():
        return True
    return any(data.startswith(b"\nFrom ", place) and _MBOX_SEPARATOR.match(data, place + 1)
               for place in range(end - 1, end + 3))


def _unescape(raw: bytes) -> bytes:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if b">From " in raw:
        raw = _ESCAPED_FROM.sub(lambda m: m.group(0)[1:], raw)
    return raw


def read_table(stream: IO[bytes], fmt: str, columns: Columns, source: str,
               named_by_label_file: bool = False) -> Iterator[EmailRecord]:
    """Stream records out of a CSV, TSV or JSON-lines export, one row at a time.

    A row needs a body column (``body``, ``text``, ``content``, ``message``; ``raw`` holds
    a whole RFC 5322 message). A table written by ``partnercheck label`` has no body but
    ``source`` and ``key`` columns: its messages are fetched again from their sources, with
    the (possibly corrected) ``verdict`` column as their label; ``columns`` other than the
    label name the columns of those sources (an export labelled with ``--body-column``).
    """
    # Bytes that are not UTF-8 stay as surrogate escapes: a raw message gets its own bytes
    # back, and a text field reads them as cp1252 (exports from older mail programs).
    encoding = _table_encoding(stream)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="",
                            errors="replace" if encoding == "utf-16" else "surrogateescape")
    rows = _json_rows(text, source) if fmt == "jsonl" else _csv_rows(text, fmt, source)
    first = next(rows, None)
    if first is None:
        return
    header = [name for name in first[1] if isinstance(name, str) and name != _ROW_PROBLEMS]
    refetched = {"source", "key"} <= set(header) and columns.body not in header \
        and _pick(header, None, BODY_COLUMNS, "body", source) is None
    body_col = None if refetched else _pick(header, columns.body, BODY_COLUMNS, "body", source)
    label_col = _pick(header, columns.label, LABEL_COLUMNS, "label", source, required=False)
    if body_col is None:
        if refetched and named_by_label_file:  # two that name each other would be read for ever
            raise SourceError(f"{source} is a label file, named as the source of another one's rows; "
                              "a label file's rows name the mail they label")
        if refetched:  # the other columns name those of the exports its rows name
            rows = _chain(first, rows)
            if fmt != "jsonl":  # CSV and TSV cells as `label` wrote them, kept from spreadsheets' formulas
                rows = ((number, row_from_spreadsheet_safe(row)) for number, row in rows)
            yield from _refetch(rows, label_col, source, Columns(columns.body, columns.subject, columns.sender))
            return
        lost = {"source", "key"} - set(header)
        if "verdict" in header and len(lost) == 1:  # a label file with a column deleted in a spreadsheet
            raise SourceError(f"{source}: a label file without its {lost.pop()} column; its rows find their "
                              "messages by source and key: put the column back, or label the mail again")
        raise SourceError(
            f"{source}: no body column (looked for {', '.join(BODY_COLUMNS)}); "
            "name it with --body-column"
        )
    subject_col = _pick(header, columns.subject, SUBJECT_COLUMNS, "subject", source, required=False)
    from_col = _pick(header, columns.sender, FROM_COLUMNS, "from", source, required=False)
    # A table without subject and sender columns may hold whole messages in its body column:
    # a cell that opens with a header line is read as one. Where the export has those
    # columns, its body column holds a body (a web form's "From: ..." line included), however
    # the column was found, so that `label` and `train` read one file alike.
    whole_messages = subject_col is None and from_col is None
    for number, row in _chain(first, rows):
        key = _own_key(row) or str(number)
        value = _cell(row.get(body_col))
        if body_col == "raw" or (whole_messages and _holds_a_message(value)):
            raw = without_lone_surrogates(value, keep_bytes=True).encode("utf-8", "surrogateescape")
            record = parse_message(raw, key=key, source=source)
        else:
            record = record_from_fields(
                body=_mended(value),
                subject=_mended(_cell(row.get(subject_col))) if subject_col else "",
                sender=_mended(_cell(row.get(from_col))) if from_col else "",
                key=key,
                source=source,
            )
            record.message_id = _mended(_cell(row.get("message_id")))
            record.date = _mended(_cell(row.get("date")))
        if label_col:
            # A cleared cell says what `unsure` says, that nobody decided: train, evaluate and
            # learn skip both.
            record.label = _cell(row.get(label_col)).strip().lower() or UNSURE
        record.problems.extend(row.get(_ROW_PROBLEMS) or ())
        yield record


def _table_encoding(stream: IO[bytes]) -> str:
    """UTF-16 for a table that opens with its byte order mark (Excel's "Unicode Text" and
    Outlook's Unicode exports), else UTF-8 (its byte order mark skipped). Bytes that are not
    UTF-16 there (a cut-off last byte) are read as U+FFFD: no byte of it is kept."""
    peek = getattr(stream, "peek", None)
    first = peek(2)[:2] if peek is not None else b""
    return "utf-16" if first in _UTF16_BOMS else "utf-8-sig"


def record_from_fields(body: str, subject: str = "", sender: str = "", key: str = "", source: str = "") -> EmailRecord:
    """A record for mail that arrives as fields rather than as a message (table rows); a
    body that is HTML is read as a message's HTML part is."""
    from email.utils import parseaddr

    name, addr = parseaddr(header_text(sender))
    record = EmailRecord(key=key, source=source, from_name=name, from_addr=addr.lower(), subject=header_text(subject))
    if _HTML_BODY.match(body):  # a web mail's or an API's export keeps the HTML
        read_html_body(record, body)
    else:
        record.body, record.quoted, record.signature = split_reply(body)
        drop_if_binary(record)
    if not body.strip():
        record.problems.append("empty message")
    return record


#: A body cell that is an HTML document or fragment: it opens with a tag that only HTML
#: opens with (text that speaks of <p> further on stays text).
_HTML_BODY = re.compile(r"\s*(?:<!doctype html|<!--|<(?:html|head|body|meta|div|p|table|span|br|font|center)[\s/>])",
                        re.I)


class _Row(NamedTuple):
    """What a label file's row says of the message it labels: its label and, when the file
    has those columns (``label`` writes them), its Message-ID and subject."""

    number: int
    label: str
    message_id: str | None
    subject: str | None

    def names(self, record: EmailRecord) -> bool:
        """Whether ``record`` is the message this row was written for: the same Message-ID,
        or, for a message without one, none and the same subject."""
        if self.message_id is None:
            return True
        if self.message_id:
            return self.message_id == _written(record.message_id)
        return not _written(record.message_id) and (self.subject is None or _written(record.subject) == self.subject)


def _written(text: str | None) -> str:
    """A header's value as a label file's cell holds it, compared with the cell's value."""
    return " ".join(without_lone_surrogates(text or "", keep_bytes=True).split())


def _refetch(rows: Iterator[tuple[int, dict]], label_col: str | None, table: str,
             columns: Columns) -> Iterator[EmailRecord]:
    """The messages a label file's rows name, read again from their sources, each with its
    row's label. A row is found at its key (in a Maildir, at the message's unique name,
    whatever its flags and folder now) when the message there is still the one it was
    written for (:meth:`_Row.names`), else by its Message-ID anywhere in the source: a
    message taken out of an mbox moves every later one to another key."""
    if label_col is None:
        raise SourceError(f"{table}: rows name their source and key but carry no label or verdict column")
    wanted: dict[str, dict[str, _Row]] = {}
    for number, row in rows:
        if row.get(_ROW_PROBLEMS) and not row.get("source"):  # a line that could not be read names no message
            raise SourceError(f"{table}: {'; '.join(row[_ROW_PROBLEMS])}")
        source, key = _cell(row.get("source")), _cell(row.get("key"))
        if not source:  # Source("") would read the current folder
            raise SourceError(f"{table}: row {number} names no source to read its message from")
        if source == "-":
            raise SourceError(f"{table}: row {number} came from standard input and cannot be read again")
        if _is_pipe(source) or _PROCESS_FD.match(source):  # a pipe now, or bash's <(...) long gone
            raise SourceError(f"{table}: row {number} came from the pipe {source} and cannot be read again")
        label = _cell(row.get(label_col)).strip().lower()
        earlier = wanted.get(source, {}).get(key)
        if earlier is not None and earlier.label != label:  # which of the two corrections is meant?
            raise SourceError(f"{table}: rows {earlier.number} and {number} both name {source}:{key}, labelled "
                              f"{earlier.label or 'blank'} and {label or 'blank'}; keep the row you mean")
        wanted.setdefault(source, {})[key] = _Row(
            number, label,
            " ".join(_cell(row["message_id"]).split()) if "message_id" in row else None,
            " ".join(_cell(row["subject"]).split()) if "subject" in row else None)
    for path, labels in wanted.items():  # every source first: a moved mailbox refuses the file, not half of it
        if os.path.abspath(path) == os.path.abspath(table):
            raise SourceError(f"{table}: its rows name the table itself as their source")
        if not os.path.exists(path):
            row = min(labels.values(), key=lambda row: row.number)
            raise SourceError(f"{path}: no such file or directory (named by {table}, row {row.number})")
    for path, labels in wanted.items():
        by_id: dict[str, list[str]] = {}  # copies of one message (Gmail's Takeout has them) have one each
        for key, row in labels.items():
            if row.message_id:
                by_id.setdefault(row.message_id, []).append(key)
        found: set[str] = set()
        reader = Source(path, columns=columns)
        reader.named_by_label_file = True
        by_stable_key = {reader.stable_key(key): key for key in labels}
        for record in reader:
            key = by_stable_key.get(reader.stable_key(record.key), "")
            if key not in labels or key in found or not labels[key].names(record):
                key = next((k for k in by_id.get(_written(record.message_id), ()) if k not in found), "")
                if not key:
                    continue
            record.label = labels[key].label or UNSURE  # a cleared cell, as in read_table
            found.add(key)
            yield record
        if len(found) < len(labels):
            missing = len(labels) - len(found)
            raise SourceError(f"{table}: {missing} message(s) listed for {path} are no longer in it")


#: Where a table row's parse problems travel with the row (no column can be named so).
_ROW_PROBLEMS = "\x00problems"


def _csv_rows(text: IO[str], fmt: str, source: str) -> Iterator[tuple[int, dict]]:
    """Rows as dicts; a row with more fields than the header keeps the first ones and says so.

    The delimiter follows the header line: a ``.csv`` file whose header holds tabs and no
    commas is read as TSV (``partnercheck label --tsv -o x.csv`` writes one), and back; one
    whose header holds semicolons and neither is read with semicolons, as Excel writes CSV
    where a comma is the decimal mark.
    """
    try:
        header = text.readline()
    except UnicodeError as exc:
        raise SourceError(f"{source}: cannot read it as text: {exc}") from None
    delimiter = "\t" if fmt == "tsv" else ","
    if delimiter == "," and "\t" in header and "," not in header:
        delimiter = "\t"
    elif delimiter == "\t" and "," in header and "\t" not in header:
        delimiter = ","
    if ";" in header and "," not in header and "\t" not in header:
        delimiter = ";"
    lines = _chain(header, text) if header else iter(())
    reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
    try:
        for number, row in enumerate(reader, start=1):
            extra = row.pop(None, None)
            if extra is not None:
                width = len(reader.fieldnames or ())
                row[_ROW_PROBLEMS] = [f"row {number} has {width + len(extra)} fields, the header {width}; "
                                      f"the last {len(extra)} ignored"]
            yield number, row
    except csv.Error as exc:
        raise SourceError(f"{source}: not valid {fmt.upper()} near row {reader.line_num}: {exc}") from None


def _json_rows(text: IO[str], source: str) -> Iterator[tuple[int, dict]]:
    """Rows as dicts. A bad first line means the file is not JSON lines at all; a bad line
    after it is one message that cannot be read (an empty row that says why)."""
    first = True
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = None if isinstance(row, dict) else f"line {number} is not a JSON object"
        except json.JSONDecodeError as exc:
            problem = f"line {number} is not JSON: {exc.msg}"
        except (RecursionError, ValueError):  # nested past the stack, or an integer past Python's digit limit
            problem = f"line {number} is JSON too deeply nested or too large to read"
        if problem and first:
            if line.lstrip().startswith("["):  # a .json export of one array, as many tools write
                problem = ("a JSON array, not JSON lines (one message object a line); "
                           f"jq -c '.[]' {shlex.quote(source)} gives JSON lines")
            raise SourceError(f"{source}: {problem}")
        first = False
        yield number, ({_ROW_PROBLEMS: [problem]} if problem else row)


def _chain(first, rest):
    yield first
    yield from rest


def _pick(header: list[str], chosen: str | None, candidates: tuple[str, ...], what: str, source: str,
          required: bool = True) -> str | None:
    if chosen is not None:
        if chosen not in header:
            raise SourceError(f"{source}: no column named {chosen!r} for the {what} (columns: {', '.join(header)})")
        return chosen
    lowered = {name.lower(): name for name in header}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _mended(text: str) -> str:
    """A text cell with the bytes that were not UTF-8 read as cp1252, as :func:`decode_mixed`
    reads mail, and a surrogate from a JSON string (``"\\ud800"``) as U+FFFD."""
    if text.isascii():
        return text
    return decode_mixed(without_lone_surrogates(text, keep_bytes=True).encode("utf-8", "surrogateescape"))


def _with_label(record: EmailRecord, label: str) -> EmailRecord:
    record.label = label
    return record


#: How a process names one of its open files: bash's ``<(...)`` as /dev/fd/63, which is
#: gone, or another file altogether, once the command that labelled it has ended.
_PROCESS_FD = re.compile(r"/(?:dev/fd|proc/(?:self|\d+)/fd)/\d+\Z")


def _is_pipe(path: str) -> bool:
    """Whether ``path`` names a pipe or FIFO (bash's ``<(...)`` names one /dev/fd/63): asked of
    its status, which, unlike opening a FIFO, never waits for a writer."""
    return stat.S_ISFIFO(_mode(path))


def _special(path: Path) -> bool:
    """Whether ``path`` is a FIFO, a device or a socket: in a folder of messages, one that
    may never end or never answer, where only a regular file is a message."""
    mode = _mode(path)
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def _mode(path) -> int:
    """The file type and mode bits of ``path`` (0 when it cannot be asked)."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return 0


#: At most this much of a stream is read to find its first line.
_FIRST_LINE_LIMIT = 1 << 16
#: A header field's name and its colon (RFC 5322, with obsolete spaces before the colon).
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
#: A JSON object's opening and first key, with its colon: enough when the line is longer
#: than what was read of it.
_JSON_OBJECT = re.compile(rb'[ \t]*\{[ \t]*"(?:[^"\\\n]|\\.)*"[ \t]*:')
#: A column's name in a table's header line: no space at either end (a sentence has one
#: after its commas) and nothing a sentence ends with.
_COLUMN_NAME = re.compile(r"[^\s.!?](?:[^.!?]{0,62}[^\s.!?])?")


def _stream_format(first: bytes, columns: Columns) -> str:
    """The format of a stream, not an mbox, whose first non-blank line is ``first``: JSON
    lines when the line opens a JSON object with a key; CSV or TSV when it is a header line
    of column names, one of them a body column (or ``source`` and ``key``, as ``label``
    writes them) and none shaped like words of a sentence; else one message. Mail always
    starts with a header, and text without headers stays one message unless its first line
    is such a header line."""
    first = first.removeprefix(codecs.BOM_UTF8)
    if first[:2] in _UTF16_BOMS:  # a UTF-16 export, read so by read_table
        first = first[:len(first) // 2 * 2].decode("utf-16", "replace").encode("utf-8")
    if _JSON_OBJECT.match(first):  # before header fields, which '{"body":' looks like
        return "jsonl"
    if _HEADER_FIELD.match(first) and not first.startswith(b'"'):  # Outlook quotes "From: (Name)"
        return "eml"
    line = first.decode("utf-8", "surrogateescape").rstrip("\r\n")
    for fmt, delimiter in (("tsv", "\t"), ("csv", ","), ("csv", ";")):
        if delimiter in line:
            try:
                names = next(csv.reader([line], delimiter=delimiter, strict=True))
            except csv.Error:
                return "eml"
            if not all(_COLUMN_NAME.fullmatch(name) for name in names if name):
                return "eml"
            lowered = {name.lower() for name in names}
            wanted = {columns.body.lower()} if columns.body else set(BODY_COLUMNS)
            return fmt if lowered & wanted or {"source", "key"} <= lowered else "eml"
    return "eml"


class _Prefixed(io.RawIOBase):
    """A stream whose first line was read to tell its format, with it put back (read it
    through :class:`io.BufferedReader`)."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        super().__init__()
        self.prefix, self.stream = prefix, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.prefix:
            data, self.prefix = self.prefix[:len(buffer)], self.prefix[len(buffer):]
        else:
            read = getattr(self.stream, "read1", self.stream.read)  # what is there now, as a pipe gives it
            data = read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_failure(path, exc: OSError) -> str:
    """One line saying that reading ``path`` failed, and why."""
    return f"{path}: cannot read it: {exc.strerror or exc}"


@contextmanager
def _reading(path: str) -> Iterator[None]:
    """An error the system gives while a source file is read (EIO from a failing disk or a
    network file system) as one line for the user."""
    try:
        yield
    except OSError as exc:
        raise SourceError(_read_failure(path, exc)) from None


def _open_read(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a folder") from None
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None


class _NotRead(NamedTuple):
    """A path in a folder that gives no message, only the line saying why: a folder that
    cannot be listed (no permission), a compressed mailbox."""

    path: Path
    problem: str


def _listing_failure(folder: Path, exc: OSError) -> str:
    reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or exc
    return f"{folder}: cannot list it: {reason}"


def _files(folder: Path, recursive: bool) -> list[Path | _NotRead]:
    """The message files in ``folder``, with each sub-folder that cannot be listed, and each
    compressed mailbox, in its place as a :class:`_NotRead`."""
    if not recursive:  # a Maildir's cur/ or new/: everything there is a message, readable or not
        try:
            return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            return [_NotRead(folder, _listing_failure(folder, exc))]
    found: list[Path | _NotRead] = []

    def unlisted(exc: OSError) -> None:  # os.walk calls it where the folder's listing would be
        if isinstance(exc.filename, str) and not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            found.append(_NotRead(Path(exc.filename), _listing_failure(Path(exc.filename), exc)))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unlisted):
        if _is_maildir(dirnames):  # mbsync and offlineimap keep one Maildir a folder
            found.extend(f for sub in _MAILDIR_SUBS for f in _files(Path(dirpath) / sub, recursive=False))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in (*_MAILDIR_SUBS, "tmp"))
            continue  # its own files (dovecot-uidlist, maildirfolder) hold no mail
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() in _EML_SUFFIXES:
                found.append(path)
                continue
            head = _head(path)
            if _opens_mbox(head) or _opens_message(head):
                found.append(path)
            elif _compressed_mailbox_name(path):
                problem = _compressed(str(path), head, archives=False)
                if problem:
                    found.append(_NotRead(path, problem))
    return found


#: A message's header block: header field lines (a name, a colon), folded lines among them.
_HEADER_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\n]*\n(?:[ \t][^\n]*\n)*){2,}")
#: Fields that only a message opens with: YAML or a notes file with ``name: value`` lines has none.
_MESSAGE_FIELD = re.compile(rb"(?im)^(?:from|received|return-path|delivered-to|message-id|date|subject|"
                            rb"mime-version|to):")


def _opens_message(head: bytes) -> bool:
    """Whether a file whose suffix names no mail file opens as one message does: two header
    lines or more, one of them a field mail has (``Received:``, ``From:``, ...). A Maildir's
    files (``1700000001.M2P1.host:2,S``), read from a folder that is not a Maildir (its
    ``cur/`` named alone, or files copied out of one), and ``.mime`` or ``.mail`` files had
    been passed over without a word."""
    head = _without_lead(head).replace(b"\r\n", b"\n")
    block = _HEADER_BLOCK.match(head)
    return block is not None and _MESSAGE_FIELD.search(block.group()) is not None


def _holds_a_message(cell: str) -> bool:
    """Whether a table's body cell is a whole message: it opens with a sender or trace line,
    or as a message does (Gmail's raw messages open with ``Delivered-To:``, Python's with
    ``Content-Type:`` or ``MIME-Version:``, which had been read as body text)."""
    return (cell.startswith(("From:", "Received:", "Return-Path:"))
            or _opens_message(cell[:_MBOX_LEAD].encode("utf-8", "replace")))


def _compressed_mailbox_name(path: Path) -> bool:
    """Whether a file is named as a compressed mailbox is (``inbox.mbox.gz``, ``Inbox.gz``),
    not as some other archive (``photos.tar.gz``) kept beside the mail."""
    inner = [suffix.lower() for suffix in path.suffixes[:-1]]
    return not inner or inner[-1] in _EML_SUFFIXES


def _is_maildir(dirnames: list[str]) -> bool:
    """Whether a folder with these sub-folders is a Maildir: it has a cur/, or a new/ beside
    the tmp/ that delivery writes to. A folder of mail that a person sorted into new/ and
    old/ is not one, and its own messages are read."""
    return "cur" in dirnames or "new" in dirnames and "tmp" in dirnames


def _head(path: Path) -> bytes:
    """The first bytes of a file whose suffix names no mail file, to tell an mbox (Thunderbird
    names a folder's mbox as the folder is named: "Archives.2023", "J. Smith"), a message or a
    compressed mailbox; b"" for anything else. Only a regular file is opened: opening a FIFO would wait
    for a writer."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return b""
        with open(path, "rb") as handle:
            return handle.read(_MBOX_LEAD)
    except OSError:
        return b""


def _own_key(row: dict) -> str:
    """A table row's own key (its ``key`` cell, else its ``id``), "" if it has none: an id of
    0 is a key (it had given way to the row number, which the next row's id 1 then repeated)."""
    for column in ("key", "id"):
        value = row.get(column)
        if value is not None and str(value).strip():
            return str(value)
    return ""


def _labelled_files(root: Path) -> list[tuple[Path, str | None]]:
    """Each message under a label's folder with that label (``Pitch/`` too), the labels in
    their fixed order; then, with no label, the messages anywhere else in the folder, so that
    training refuses them and labelling reads them instead of passing them over unseen."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    found = []
    for label in LABELS:
        for folder in sorted((p for p in entries if p.is_dir() and p.name.lower() == label),
                             key=lambda p: p.name != label):  # the exact name first
            found.extend((f, label) for f in _files(folder, recursive=True))
    for entry in entries:
        if entry.is_dir() and entry.name.lower() not in LABELS:
            found.extend((f, None) for f in _files(entry, recursive=True))
        elif entry.is_file() and entry.suffix.lower() == ".eml":  # not notes (.txt, .md) kept beside the folders
            found.append((entry, None))
    return found
