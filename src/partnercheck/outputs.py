"""Row writers for batch results: CSV, TSV and JSON lines, to a file or stdout.

A file is written to a temporary name and renamed when the run ends, also when it ends
with Ctrl-C, so that what is on disk is always whole rows; ``resume`` keeps the rows of an
earlier, interrupted run and reports which messages they covered.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import IO

from .atomic import discard, open_temp_beside
from .errors import PartnercheckError

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


class RowWriter:
    """Writes dict rows with fixed ``fields`` in one of :data:`OUTPUT_FORMATS`."""

    def __init__(self, path: str | None, fmt: str, fields: list[str], resume: bool = False,
                 stdout: IO[str] | None = None) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise OutputError(f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.fmt = fmt
        self.fields = fields
        self.path = None if path in (None, "-") else path
        self.done: set[tuple[str, str]] = set()
        self._temp: str | None = None
        previous = []
        if resume:
            if self.path is None:
                raise OutputError("--resume needs an output file (-o FILE), not stdout")
            previous = self._read_previous()
        if self.path is None:
            self._handle = stdout or sys.stdout
        else:
            try:
                self._handle, self._temp = open_temp_beside(self.path, "w", encoding="utf-8", newline="")
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot write here: {exc.strerror or exc}") from None
        if fmt != "jsonl":
            self._csv = csv.writer(self._handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self._csv.writerow(fields)
        for row in previous:
            self.write([row.get(field, "") for field in fields])

    def write(self, values: list) -> None:
        """One row: its values in the order of ``fields``."""
        if self.fmt == "jsonl":
            self._handle.write(json.dumps(dict(zip(self.fields, values)), ensure_ascii=False) + "\n")
        else:
            self._csv.writerow(values)

    def close(self) -> None:
        """Flush and, for a file, move the finished rows into place."""
        self._handle.flush()
        if self._temp is not None:
            self._handle.close()
            try:
                os.replace(self._temp, self.path)
            except OSError as exc:
                discard(self._temp)
                raise OutputError(f"{self.path}: cannot write here: {exc.strerror or exc}") from None
            finally:
                self._temp = None

    def abandon(self) -> None:
        """Drop a file output that must not replace what was there (an error before any row)."""
        if self._temp is not None:
            self._handle.close()
            discard(self._temp)
            self._temp = None

    def _read_previous(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        rows = []
        try:
            with open(self.path, encoding="utf-8", newline="") as handle:
                if self.fmt == "jsonl":
                    for line in handle:
                        if line.strip():
                            rows.append(json.loads(line))
                else:
                    rows.extend(csv.DictReader(handle, delimiter="\t" if self.fmt == "tsv" else ","))
        except (OSError, ValueError, csv.Error) as exc:
            raise OutputError(f"{self.path}: cannot resume from it: {exc}") from None
        self.done = {(str(r.get("source", "")), str(r.get("key", ""))) for r in rows}
        return rows
