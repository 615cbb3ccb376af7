"""Row writers for batch results: CSV, TSV and JSON lines, to a file or stdout (or to a pipe or
device named as the output, ``-o /dev/stdout``, written as stdout is).

A file output is left alone until the first row is ready. Then the header (and, with
``resume``, the rows of the earlier run) and that row go to a temporary file beside it,
which is renamed into place at once; every later batch of rows is appended with one
``write`` call of its own. So the file on disk always holds whole rows, whenever the run stops (Ctrl-C,
a crash, kill -9), nothing is left under a temporary name, and ``--resume`` loses at most
the rows that were being classified. An interruption before the first row leaves an
existing file as it was.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import stat
import sys
from typing import IO

from ..atomic import discard, open_temp_beside
from ..errors import PartnercheckError
from ..labels import VERDICTS
from ..reading.cells import row_from_spreadsheet_safe, spreadsheet_safe
from ..reading.mail import without_lone_surrogates

OUTPUT_FORMATS = ("csv", "tsv", "jsonl")


class OutputError(PartnercheckError):
    """An output that cannot be written; its message is one line for the user."""


def format_for(path: str | None, chosen: str | None) -> str:
    """The output format: the one chosen, else the one the file name suggests, else CSV."""
    if chosen:
        return chosen
    if path and path != "-":
        suffix = os.path.splitext(path)[1].lower().lstrip(".")
        if suffix in ("jsonl", "ndjson", "json"):
            return "jsonl"
        if suffix == "tsv":
            return "tsv"
    return "csv"


#: What a name printed on a line of its own may not hold as it is: control characters (C0,
#: DEL, C1: a newline, a tab, an escape sequence's ESC) and the Unicode line and paragraph
#: separators.
_UNPRINTABLE_IN_A_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def line_safe_name(name: str) -> str:
    """``name`` as it is, or, if it holds a control character or a line break, as Python
    writes it in a string literal (``repr``, quotes included), so that a line of output
    still stands for one message and a tab still ends a column; ``ast.literal_eval`` gives
    the name back. Every other name, undecodable bytes and all, is printed unchanged, so
    that what scripts matched before still matches."""
    return repr(name) if _UNPRINTABLE_IN_A_LINE.search(name) else name


def _pipe_or_device(path: str) -> bool:
    """Whether ``path`` is a pipe or a character device (``-o /dev/stdout`` in a pipeline,
    ``/dev/null``), which is written as it comes, as standard output is: it cannot be
    replaced atomically, nor resumed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class RowWriter:
    """Writes dict rows with fixed ``fields`` in one of :data:`OUTPUT_FORMATS`."""

    def __init__(self, path: str | None, fmt: str, fields: list[str], resume: bool = False,
                 stdout: IO[str] | None = None) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.fmt = fmt
        self.fields = fields
        self.path = None if path in (None, "-") else path
        #: (source, key) of each row of the earlier run kept by ``resume``, and its Message-ID
        self.done: dict[tuple[str, str], str] = {}
        self.dropped = 0  # rows of the earlier run not whole, whose messages are labelled again
        self._previous: list[dict] = []
        self._fd: int | None = None  # the file output, once its first row is written
        self._opened: IO[str] | None = None  # a pipe or device named as the output, written as stdout is
        if self.path is not None and _pipe_or_device(self.path):
            if resume:
                raise OutputError(f"--resume needs an output file (-o FILE), and {self.path} is a pipe or device")
            try:  # not waiting for a reader that may never come, as a plain open of a FIFO would
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                why = "a pipe with no reader" if exc.errno == errno.ENXIO else exc.strerror or exc
                raise OutputError(f"{self.path}: cannot write here: {why}") from None
            os.set_blocking(fd, True)  # this process's own opening of it; the reader's is left alone
            self._opened = open(fd, "w", encoding="utf-8", newline="")
            stdout, self.path = self._opened, None
        if self.path is not None and os.path.islink(self.path):
            self.path = os.path.realpath(self.path)  # written through to the file it names, not replaced
        if self.path is not None:
            folder = os.path.dirname(os.path.abspath(self.path))
            if os.path.isdir(self.path):
                raise OutputError(f"{self.path}: cannot write here: it is a folder")
            if os.path.exists(self.path) and not os.path.isfile(self.path):
                raise OutputError(f"{self.path}: cannot write here: not a regular file")
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                raise OutputError(f"{self.path}: cannot write here: no writable folder {folder}")
            self._handle = None
            if resume:
                self._previous = self._read_previous()
        elif resume:
            raise OutputError("--resume needs an output file (-o FILE), not stdout")
        else:
            self._handle = stdout or sys.stdout
            if self._handle is None:
                raise OutputError("standard output is closed; write to a file with -o FILE")
            self._handle.write(self._header())
        self._buffer = io.StringIO()
        if fmt != "jsonl":
            self._csv = csv.writer(self._buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        if self._handle is not None:
            for row in self._previous:
                self.write([row.get(field, "") for field in fields])

    def _header(self) -> str:
        if self.fmt == "jsonl":
            return ""
        buffer = io.StringIO()
        csv.writer(buffer, delimiter="\t" if self.fmt == "tsv" else ",", lineterminator="\n").writerow(self.fields)
        return buffer.getvalue()

    def _line(self, values: list) -> str:
        if self.fmt == "jsonl":
            return json.dumps(dict(zip(self.fields, values)), ensure_ascii=False) + "\n"
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(list(map(spreadsheet_safe, values)))
        return self._buffer.getvalue()

    def write(self, values: list) -> None:
        """One row: its values in the order of ``fields``."""
        self._put(self._line(values))

    def write_rows(self, rows: list[list]) -> None:
        """Several rows at once (a batch's), in one ``write`` call: still whole rows only."""
        if not rows:
            return
        if self.fmt == "jsonl":
            text = "".join(self._line(values) for values in rows)
        else:
            self._buffer.seek(0)
            self._buffer.truncate()
            self._csv.writerows([list(map(spreadsheet_safe, values)) for values in rows])
            text = self._buffer.getvalue()
        self._put(text)

    def _put(self, line: str) -> None:
        line = without_lone_surrogates(line, keep_bytes=True)  # a file name's bytes are written back as they were
        if self._handle is not None:
            try:
                self._handle.write(line)
            except UnicodeEncodeError:  # a file name's undecodable bytes, on a stdout that refuses them
                self._handle.write(line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        elif self._fd is None:
            self._start(line)
        else:
            self._append(_encoded(line))

    def _start(self, first: str = "") -> None:
        """Put the header, the earlier rows and ``first`` in place, atomically."""
        text = [self._header()]
        text.extend(self._line([row.get(field, "") for field in self.fields]) for row in self._previous)
        text.append(first)
        try:
            handle, temp = open_temp_beside(self.path, "wb", buffering=0)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write here: {exc.strerror or exc}") from None
        try:
            handle.write(_encoded("".join(text)))
            os.replace(temp, self.path)
        except OSError as exc:
            handle.close()
            discard(temp)
            raise OutputError(f"{self.path}: cannot write here: {exc.strerror or exc}") from None
        except BaseException:
            handle.close()
            discard(temp)
            raise
        self._fd = os.dup(handle.fileno())
        handle.close()

    def _append(self, data: bytes) -> None:
        end = os.lseek(self._fd, 0, os.SEEK_CUR)
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:
            try:  # a full disk took part of a row: cut it off, so that --resume finds whole rows only
                os.ftruncate(self._fd, end)
                os.lseek(self._fd, end, os.SEEK_SET)
            except OSError:
                pass
            raise OutputError(f"{self.path}: cannot write here: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush; a file output with no row yet gets its header (and earlier rows) now."""
        if self._handle is not None:
            self._handle.flush()
            if self._opened is not None:
                self._opened.close()
                self._handle = io.StringIO()
            return
        if self._fd is None:
            self._start()
        os.close(self._fd)
        self._fd = None
        self._handle = io.StringIO()  # closed: further writes go nowhere

    def abandon(self) -> None:
        """Stop without putting anything in place (an error or Ctrl-C before the first row);
        rows already written stay, whole."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._opened is not None:
            self._opened.close()
            self._opened, self._handle = None, None
        if self._handle is None:
            self._handle = io.StringIO()

    def _read_previous(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        rows = []
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                if self.fmt == "jsonl":
                    for line in handle:
                        if line.strip():
                            rows.append(json.loads(line))
                    if not all(isinstance(row, dict) for row in rows):
                        raise ValueError("a line is not a row of labels")
                else:
                    reader = csv.DictReader(handle, delimiter="\t" if self.fmt == "tsv" else ",")
                    if reader.fieldnames is not None and reader.fieldnames != self.fields:
                        raise ValueError(f"its columns are not those of {self.fmt} labels "
                                         "(another format, or another file)")
                    rows.extend(map(row_from_spreadsheet_safe, reader))
        except (OSError, ValueError, csv.Error) as exc:
            raise OutputError(f"{self.path}: cannot resume from it: {exc}") from None
        whole = [row for row in rows if self._whole(row)]
        self.dropped = len(rows) - len(whole)
        self.done = {(str(r["source"]), str(r["key"])): str(r.get("message_id") or "") for r in whole}
        return whole

    def _whole(self, row: dict) -> bool:
        """Whether a row of an earlier run can be kept: every field there, no more, and a
        verdict (a row cut short by hand, or one from another program, is labelled again)."""
        return (None not in row and all(row.get(field) is not None for field in self.fields)
                and ("verdict" not in self.fields or row["verdict"] in VERDICTS)
                and bool(row.get("source")) and bool(row.get("key")))
