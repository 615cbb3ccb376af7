"""Text cells of the CSV and TSV files partnercheck writes, kept from running as formulas.

Label files are made to be opened and corrected in a spreadsheet, and their cells hold text
from mail: a subject such as ``=HYPERLINK("https://…")`` or ``@SUM(…)`` would be a formula
there, run when the file is opened. As OWASP advises for CSV exports, a cell that opens
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a ``'`` before
it, which spreadsheets show as text. A cell that opens with ``'`` and then such a
character gets one ``'`` more, so that reading gives every cell back exactly: written
and read again, a label file names the same messages, subjects and keys.
"""

from __future__ import annotations

import re

#: One or more ``'`` and then a formula's first character: a cell written with a ``'`` more.
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
#: No ``'`` or more of them and then a formula's first character: a cell to write with one more.
_TO_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
_FIRST = frozenset("'=+-@\t\r")


def spreadsheet_safe(value):
    """``value`` as a CSV or TSV cell: text that a spreadsheet would take for a formula
    with a ``'`` before it; anything else (numbers, other text) as it is."""
    if isinstance(value, str) and value[:1] in _FIRST and _TO_ESCAPE.match(value):
        return "'" + value
    return value


def from_spreadsheet_safe(text: str) -> str:
    """The text of a cell that :func:`spreadsheet_safe` wrote."""
    return text[1:] if text[:1] == "'" and _ESCAPED.match(text) else text


def row_from_spreadsheet_safe(row: dict) -> dict:
    """A CSV or TSV row as :func:`spreadsheet_safe` wrote its text cells, read back."""
    return {name: from_spreadsheet_safe(value) if isinstance(value, str) else value for name, value in row.items()}
