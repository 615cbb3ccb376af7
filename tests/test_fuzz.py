"""Property-based tests (Hypothesis) over the readers, the mail filter and the HTML stage.

Each property runs :data:`EXAMPLES` examples (``$PARTNERCHECK_FUZZ_EXAMPLES``, 60 by default
so that CI stays quick; ``bench/fuzz.py`` runs many more). Inputs are bounded in size, and
the suite checks its own run time against a benign baseline measured in the same run.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partnercheck.reading.html_text import html_to_text
from partnercheck.reading.mail import parse_message
from partnercheck.reading.normalize import normalize
from partnercheck.running import filtering

EXAMPLES = int(os.environ.get("PARTNERCHECK_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------ strategies

_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "Content-Type",
                          "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "X-Partnercheck",
                          "x-partnercheck", "List-Unsubscribe", "In-Reply-To", "References", "Received"])
_TYPES = st.sampled_from(["text/plain", "text/html", "multipart/alternative; boundary=b",
                          "multipart/mixed; boundary=\"b\"", "message/rfc822", "text/plain; charset=utf-8",
                          "text/plain; charset=bogus", "text/html; charset=iso-8859-1", "multipart/mixed",
                          "image/png", "text/plain; charset=\"utf-16\"", ""])
_ENCODINGS = st.sampled_from(["base64", "quoted-printable", "8bit", "7bit", "x-uuencode", ""])
_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
_HTML_PIECES = st.sampled_from([
    "<a ", "<", ">", "<div style=\"display:none\">", "</div>", "<p>", "</p>", "<span style='font-size:0'>",
    "<font color=#fff>", "<table bgcolor=white>", "<td>", "<!--", "-->", "<script>", "</script>",
    "<style>.x{display:none}</style>", "<div class=x>", "<img width=1 src=x>", "<img alt='hi'>",
    "<a href='http://x.example/'>", "</a>", "&amp;", "&#x200b;", "<select>", "<option>", "<b>", "</b>",
    "<br>", "\u200b", "p\u0430rtner", "partner", "pricing", " ", "\n",
])
_HTML = st.lists(st.one_of(_HTML_PIECES, _TEXT), max_size=60).map("".join)


@st.composite
def _part(draw, depth=0) -> bytes:
    lines = [f"{draw(_NAMES)}: {draw(_TEXT)}" for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        lines.append(f"Content-Type: {draw(_TYPES)}")
    if draw(st.booleans()):
        lines.append(f"Content-Transfer-Encoding: {draw(_ENCODINGS)}")
    kind = draw(st.sampled_from(["text", "html", "bytes", "multipart"] if depth < 3 else ["text", "bytes"]))
    if kind == "text":
        body = draw(_TEXT).encode("utf-8", "surrogatepass")
    elif kind == "html":
        body = draw(_HTML).encode("utf-8", "surrogatepass")
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        children = draw(st.lists(_part(depth + 1), max_size=3))
        body = b"".join(b"--b\n" + child + b"\n" for child in children) + draw(st.sampled_from([b"--b--\n", b""]))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = newline.join(line.encode("utf-8", "surrogatepass") for line in lines)
    separator = draw(st.sampled_from([newline + newline, newline, b""]))
    return head + separator + body


MESSAGES = st.one_of(
    _part(),
    st.binary(max_size=2000),
    st.builds(lambda envelope, part: envelope + part,
              st.sampled_from([b"From a@b.example Mon Jan  1 00:00:00 2024\n", b"From \n", b"From"]), _part()),
)

# -------------------------------------------------------------------------- properties


@pytest.mark.parametrize("raw", [  # found by bench/fuzz.py: a charset name no codec can have
    b"Content-Type: text/plain; charset=utf-8\x00\n\nhi",
    b"Content-Type: text/plain; charset=utf-8\xc2\x80\n\nhi",
])
def test_a_charset_name_with_nul_or_8bit_bytes_is_a_problem_not_a_crash(raw):
    record = parse_message(raw)
    assert record.body == "hi" and any("charset" in p for p in record.problems)


@FUZZ
@given(MESSAGES)
def test_reading_never_raises(raw):
    record = parse_message(raw)
    assert isinstance(record.body, str) and isinstance(record.problems, list)
    normalize(record.subject + "\n" + record.body)


@FUZZ
@given(_HTML)
def test_html_stage_never_raises(html):
    result = html_to_text(html)
    assert isinstance(result.text, str)
    assert "<script>" not in result.text or "<script>" in html  # nothing invented


@FUZZ
@given(st.text(max_size=500))
def test_normalize_never_raises_and_is_lowercase(text):
    out = normalize(text)
    assert out == out.lower()


@pytest.fixture(scope="module")
def filter_runner():
    from click.testing import CliRunner

    from partnercheck.interface.cli import cli

    def run(raw: bytes):
        return CliRunner().invoke(cli, ["filter", "--no-server"], input=raw)

    return run


def _strip_first_header(raw: bytes, out: bytes) -> bytes:
    """``out`` without the header line the filter added: the first line that starts with it
    (after an mbox From line or stray indented lines, if any), with its LF, CRLF or CR."""
    at = 0 if out.startswith(b"X-Partnercheck: ") else min(
        i + 1 for i in (out.find(b"\nX-Partnercheck: "), out.find(b"\rX-Partnercheck: ")) if i != -1)
    end = min(i for i in (out.find(b"\n", at), out.find(b"\r", at)) if i != -1)
    return out[:at] + out[end + (2 if out[end:end + 2] == b"\r\n" else 1):]


@FUZZ
@given(MESSAGES)
def test_the_filter_gives_back_the_input_plus_one_header(filter_runner, raw):
    result = filter_runner(raw)
    assert result.exit_code in filtering.EXIT_CODES.values(), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    assert _strip_first_header(raw, result.stdout_bytes) == filtering.strip_our_header(raw)


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from(["x.csv", "x.tsv", "x.jsonl", "x.mbox", "x.eml"]))
def test_every_reader_fails_cleanly_or_yields_records(tmp_path_factory, data, name):
    from partnercheck.reading.sources import Source, SourceError

    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    try:
        for record in Source(str(path)):
            assert isinstance(record.problems, list)
    except SourceError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.lists(st.lists(st.text(max_size=30), max_size=6), max_size=8),
       st.sampled_from([",", "\t"]), st.sampled_from(["x.csv", "x.tsv"]))
def test_tables_of_any_shape_read_cleanly(tmp_path_factory, rows, delimiter, name):
    import csv
    import io

    from partnercheck.reading.sources import Source, SourceError

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["body", "subject", "label"])
    for row in rows:
        writer.writerow(row)
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(buffer.getvalue(), encoding="utf-8", errors="surrogatepass")
    try:
        list(Source(str(path)))
    except SourceError as exc:
        assert "\n" not in str(exc)


def test_fuzzing_stays_within_its_time_bound(filter_runner):
    """The properties above ran on small inputs: each filter call took about as long as a
    benign one. Measured here in the same run, so a loaded machine moves both."""
    from conftest import PITCH_TEXT, message

    benign = message("hello", PITCH_TEXT)
    start = time.perf_counter()
    for _ in range(5):
        filter_runner(benign)
    per_call = (time.perf_counter() - start) / 5
    hostile = [b"<a " * 3000, b"\x00\xff" * 1000, b"From \n" * 300, b"Content-Type: multipart/mixed; boundary=b\n\n"
               + b"--b\n" * 500]
    start = time.perf_counter()
    for raw in hostile:
        filter_runner(raw)
    assert (time.perf_counter() - start) / len(hostile) < 20 * per_call + 0.05
