"""Hostile mail: hidden text, pathological markup and look-alike characters.

Timing checks compare a hostile input with a benign input of the same size measured in
the same run, never with a fixed wall-clock limit.
"""

from __future__ import annotations

import gc
import os
import time

import pytest

from partnercheck.deciding.classify import classify_one
from partnercheck.reading.html_text import html_to_text

MB = 1_000_000


def _bench(name: str):
    """A module of bench/, loaded by path (bench/mailbox.py would lose to the standard library's)."""
    import importlib.util
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))  # for the bench modules' own imports
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fill(piece: str, size: int = MB) -> str:
    return (piece * (size // len(piece) + 1))[:size]


def _seconds(func, arg) -> float:
    """The best of two timings (a busy machine only ever adds time), with the garbage
    collector paused: its passes cost in proportion to every object alive in the process, so
    what earlier tests left behind made 200,000 characters of right-to-left overrides take
    0.22 s against 0.014 s for 50,000 (0.045 s without it), and read as a quadratic stage."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(2):
            start = time.perf_counter()
            func(arg)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


def _check_linear(func, benign: str, hostile: dict[str, str], factor: float = 10.0) -> None:
    """Every hostile input runs within ``factor`` times the benign one (plus 50 ms of slack)."""
    baseline = _seconds(func, benign)
    slow = {name: round(_seconds(func, text), 3) for name, text in hostile.items()}
    too_slow = {name: t for name, t in slow.items() if t > factor * baseline + 0.05}
    assert not too_slow, f"benign {baseline:.3f} s; too slow: {too_slow}"


# ------------------------------------------------------------------------- HTML stage

@pytest.mark.parametrize("html, shown, hidden", [
    ('<p>Buy our plan</p><span style="display:none">partnership</span>', "Buy our plan", "partnership"),
    ('<p>Buy</p><span style="font-size:0">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><span style="font-size:0px !important">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><span style="opacity:0">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><div style="max-height:0;overflow:hidden">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div style="mso-hide:all">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div style="visibility:hidden">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div aria-hidden="true">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div hidden>partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><span style="color:#ffffff">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><font color="white">partnership</font>', "Buy", "partnership"),
    ('<body bgcolor="#000"><p style="color:#eee">Buy</p><font color="#010101">partnership</font></body>', "Buy", "partnership"),
    ('<div style="background:#fafafa"><p>Buy</p><span style="color:rgb(250,250,250)">partnership</span></div>',
     "Buy", "partnership"),
    ('<p>Buy</p><span style="color:rgba(0,0,0,0)">partnership</span>', "Buy", "partnership"),
    ('<style>.x{display:none}</style><p>Buy</p><div class="a x">partnership</div>', "Buy", "partnership"),
    ('<style>/* c */ div#y { font-size: 0 }</style><p>Buy</p><div id=y>partnership</div>', "Buy", "partnership"),
    # nested same-tag hidden element: all of it is hidden, the text after it is not
    ('<div style="display:none">partnership<div>joint</div>venture</div><p>Buy</p>', "Buy", "joint"),
    # an unclosed hidden element ends where its parent does, as in a browser
    ('<div><span style="display:none">partnership</div><p>Buy now</p>', "Buy now", "partnership"),
    ('<!-- partnership --><script>partnership()</script><p>Buy</p>', "Buy", "partnership"),
])
def test_hidden_text_is_dropped(html, shown, hidden):
    text = html_to_text(html).text
    assert shown in text
    assert hidden not in text


@pytest.mark.parametrize("html, shown", [
    ('<table bgcolor="#000000"><tr><td><font color="white">White on black</font></td></tr></table>', "White on black"),
    ('<style>@media (max-width:600px){.desktop{display:none}}</style><div class=desktop>Desktop text</div>',
     "Desktop text"),
    ('<div style="display:block">Shown</div>', "Shown"),
    ('<body bgcolor="#000000"><p>Default colour</p></body>', "Default colour"),
    ('<p style="font-size:14px;color:#333">Readable</p>', "Readable"),
    ('<img alt="Company logo" src="x.png"> Welcome', "Company logo Welcome"),
])
def test_visible_text_is_kept(html, shown):
    assert shown in html_to_text(html).text


def test_links_pixels_and_blocks():
    html = ('<p>One</p><p>Two <a href="https://x.example/a">link</a></p>'
            '<div style="display:none"><a href="https://hidden.example/">h</a></div>'
            '<img src="https://t.example/p.gif" width="1" height="1">')
    result = html_to_text(html)
    assert result.text == "One\n\nTwo link"
    assert result.links == ["https://x.example/a"]
    assert result.tracking_pixel


def test_html_stage_is_linear():
    benign = _fill('<p>Hello <b>there</b>, see <a href="http://x.example/">this</a> offer.</p>\n')
    hostile = {
        "a": _fill("<a "), "lt": _fill("<"), "div-style": _fill("<div style=x "),
        "nested-div": _fill("<div>"), "nested-ul": _fill("<ul><li>"), "formatting": _fill("<b><i><u><s><a>"),
        "select": "<select>" + _fill("<option>"), "table": _fill("<table><tr><td>x"),
        "adoption": _fill("<b><p>x</b>"), "end-tags": _fill("<span>", MB // 2) + _fill("</b>", MB // 2),
        "style": "<style>" + _fill(".a{") + "</style>", "comment": _fill("<!--"),
        "hidden": _fill('<span style="display:none">x'), "colours": _fill('<font color="#fff">x'),
        "entities": _fill("&amp;&#x41;&"), "attributes": "<a " + _fill("x=1 ") + ">",
    }
    _check_linear(html_to_text, benign, hostile)


# ---------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("text, expected", [
    ("pi\u200etch o\u2062ur pl\u034fan", "pitch our plan"),  # LRM, invisible times, grapheme joiner
    ("par\u2066tner\ufe0fship\U000e0041", "partnership"),  # isolate, variation selector, tag character
    ("\u0251ccess \u0299uy \u1d00", "access buy a"),  # Latin alpha, small capitals
    ("\u0440\u0430\u0433tn\u0435r", "partner"),  # Cyrillic
    ("\u03bf\u03c1en", "open"),  # Greek omicron and rho
    ("p\u0336a\u0336r\u0336t\u0336n\u0336e\u0336r\u0336", "partner"),  # combining strike-through
    ("caf\u00e9 d\u00e9j\u00e0", "caf\u00e9 d\u00e9j\u00e0"),  # real accents stay
    ("Let's P.A.R.T.N.E.R up", "let's partner up"),
    ("p a r t n e r s h i p", "partnership"),
    ("e.g. a/b testing", "e.g. a/b testing"),
])
def test_normalize_defeats_invisible_and_lookalike_characters(text, expected):
    from partnercheck.reading.normalize import normalize

    assert normalize(text) == expected


def test_confusables_table_covers_unicode_data():
    import unicodedata

    from partnercheck.reading.normalize import _translation

    table = _translation()
    format_chars = [cp for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Cf"]
    missing = [hex(cp) for cp in format_chars if cp not in table and chr(cp) not in "\t\n\r"]
    assert not missing
    assert sum(1 for v in table.values() if v) > 1000  # look-alikes from Unicode's confusables


def test_normalize_is_linear():
    from partnercheck.reading.normalize import normalize

    # One spelled-out word, so that the benign text goes through the spelled-out search too
    # (text without the shape of one skips it, which would make the baseline no baseline),
    # and accented letters, so that it takes the path of text outside ASCII (NFKC, the
    # look-alike table) as the hostile texts do: against ASCII text, which skips both, the
    # accents took 13 times as long on one CI run (0.211 against 0.016 s), linear all the same.
    benign = _fill("Bonjour, nous aimerions créer avec vous un lancement commun à Zürich. ") + " p.a.r.t.n.e.r"
    hostile = {"dots": _fill("a."), "spaces": _fill("a "), "pairs": _fill("a.b "), "mixed": _fill("a.b-c d"),
               "invisible": _fill("a\u200b"), "marks": _fill("a\u0336"), "lookalikes": _fill("\u0430\u0251 "),
               "accents": _fill("\u00e9\u0301\u0302 ")}
    _check_linear(normalize, benign, hostile)


def test_undoing_right_to_left_overrides_is_linear():
    """Four times the text takes about four times as long, however its controls nest."""
    from partnercheck.reading.normalize import normalize

    for piece in ("\u202eolleh\u202c ", "\u202e\u202ax", "\u202e\u202a\u2067x\u202c", "\u202e\u2066\u2069a", "\u202ea\n",
                  "\u202e\u202d" * 62 + "a" + "\u202c" * 124):
        small, large = (_seconds(normalize, _fill(piece, size)) for size in (50_000, 200_000))
        # linear: about 4 times (4 to 5.5 measured); quadratic: 16 times
        assert large < 10 * small + 0.1, f"{piece!r}: {small:.3f} s, then {large:.3f} s for 4 times the text"


def test_mail_reading_is_linear():
    from partnercheck.reading.mail import parse_message, split_reply

    head = "From: a@x.example\nSubject: hi\nContent-Type: text/plain; charset=utf-8\n\n"
    # a reply, so that the benign text goes through the line-by-line reading too
    benign = _fill("Hello there, we would like to partner with you.\n> Thanks for the note\nBest, Ana\n", 400_000)
    hostile = {"colons": _fill("on a:", 400_000), "quotes": _fill(">\n", 400_000),
               "from-lines": _fill("\nFrom: x\n", 400_000), "dashes": _fill("-- ", 400_000),
               "long-line": "x" * 399_999 + ":", "urls": _fill("http://", 400_000)}
    # Line-by-line reading costs more per byte on many short special lines (44,000 "From:"
    # lines in 400 KB take 0.15 s against 0.01 s for plain text): linear, with a constant
    # factor that the bound allows for; a quadratic stage would take minutes.
    _check_linear(split_reply, benign, hostile, factor=40.0)
    _check_linear(parse_message, (head + benign).encode(), {k: (head + v).encode() for k, v in hostile.items()})


# ---------------------------------------------------------------------------- readers

def _cli(args, input=None):
    from click.testing import CliRunner

    from partnercheck.interface.cli import cli

    return CliRunner().invoke(cli, args, input=input)


@pytest.mark.parametrize("command", [["inspect"], ["classify"], ["label"], ["evaluate"]])
def test_a_csv_row_with_more_fields_than_its_header_is_a_problem_not_a_crash(tmp_path, command):
    table = tmp_path / "x.csv"
    table.write_text("body,subject,label\nhello there,hi,other,extra,more\nsecond message,s,other\n")
    result = _cli(command + [str(table)])
    assert "internal error" not in result.output
    assert result.exit_code == 0, result.output
    if command == ["inspect"]:
        assert "row 1 has 5 fields, the header 3" in result.output


def test_a_tsv_named_csv_is_read_as_tsv(tmp_path):
    from partnercheck.reading.sources import Source

    table = tmp_path / "labels.csv"
    table.write_text("body\tsubject\tlabel\nhello, there, friend\thi\tother\n")
    (record,) = list(Source(str(table)))
    assert record.body == "hello, there, friend" and record.label == "other" and not record.problems


def test_mbox_without_blank_line_before_from_is_split_like_mailbox(tmp_path):
    import mailbox

    from partnercheck.reading.sources import Source

    path = tmp_path / "t.mbox"
    path.write_bytes(b"From a@x Mon Jan  1 00:00:00 2024\nFrom: a@x.example\nSubject: one\n\nbody one\n"
                     b"From b@y Mon Jan  1 00:00:00 2024\nFrom: b@y.example\nSubject: two\n\nbody two\n"
                     b"\nFrom here on we talk about the plan.\n")
    ours = [r.subject for r in Source(str(path))]
    assert ours == ["one", "two"] and len(mailbox.mbox(str(path))) == 3  # mailbox also splits "From here"


@pytest.mark.parametrize("raw", [b"", b"\n\n", bytes(range(256)) * 800])
def test_unreadable_input_is_unsure_everywhere(tmp_path, shipped_model, raw):
    import random

    from partnercheck.deciding.classify import classify_one
    from partnercheck.reading.mail import parse_message

    if len(raw) > 1000:
        rng = random.Random(1)
        raw = bytes(rng.randrange(256) for _ in range(200_000))
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    verdict = classify_one(parse_message(raw), shipped_model)
    assert verdict.label == "unsure" and verdict.decided_by == "unreadable"
    assert "\tunsure\t0.00\tunsure: unreadable" in _cli(["classify", str(path)]).output
    explained = _cli(["explain", str(path)]).output
    assert "Verdict: UNSURE" in explained and "unreadable" in explained
    assert ",unsure," in _cli(["label", str(path)]).output


# ----------------------------------------------------------------------------- server

def _slow_classify_reply(model, policy, raw):
    from partnercheck.interface import server

    if b"SLOW" in raw:
        time.sleep(120)
    return server._original_classify_reply(model, policy, raw)


def test_server_answers_too_slow_within_its_budget_and_keeps_serving(small_model_path, tmp_path, monkeypatch):
    import threading

    from conftest import PITCH_TEXT, message

    from partnercheck.deciding.model import load_model
    from partnercheck.interface import client, server

    monkeypatch.setattr(server, "_original_classify_reply", server.classify_reply, raising=False)
    monkeypatch.setattr(server, "classify_reply", _slow_classify_reply)
    path = str(tmp_path / "s.sock")
    srv = server.ClassifyServer(load_model(small_model_path), None, path, budget=2.0, workers=2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        slow: dict = {}

        def ask_slow():
            start = time.monotonic()
            slow["reply"] = client.classify_remote(message("x", "SLOW " + PITCH_TEXT), path)
            slow["seconds"] = time.monotonic() - start

        asker = threading.Thread(target=ask_slow)
        asker.start()
        time.sleep(0.3)
        normal = client.classify_remote(message("quick question", PITCH_TEXT), path)  # while the slow one waits
        assert normal["label"] == "pitch"
        asker.join(timeout=60)
        assert slow["reply"] == {"label": "unsure", "header": server.TOO_SLOW}
        assert slow["seconds"] < 30  # the budget, not the 120 s the message would take
        for _ in range(3):  # the stuck worker was replaced: both workers serve again
            assert client.classify_remote(message("quick question", PITCH_TEXT), path)["label"] == "pitch"
    finally:
        srv.shutdown()
        srv.server_close()


def test_sigterm_stops_a_busy_server_at_once(small_model_path, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    from conftest import ROOT, message

    from partnercheck.interface import client

    sock = str(tmp_path / "busy.sock")
    code = ("import sys; sys.path.insert(0, %r); import test_hostile as t; from partnercheck.interface import server;"
            "server._original_classify_reply = server.classify_reply; server.classify_reply = t._slow_classify_reply;"
            "from partnercheck.interface.cli import cli; cli(['serve'])") % str(ROOT / "tests")
    env = {**os.environ, "PARTNERCHECK_SOCKET": sock, "PARTNERCHECK_MODEL": small_model_path,
           "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        for _ in range(600):
            if os.path.exists(sock) or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert os.path.exists(sock), proc.stderr.read().decode()
        conns = []
        for _ in range(3):  # more slow messages than workers: every worker is busy
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(sock)
            client.send_frame(conn, message("x", "SLOW text"))
            conns.append(conn)
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - start < 10
        assert not os.path.exists(sock)
        assert b"Traceback" not in proc.stderr.read()
        for conn in conns:
            conn.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1.5)  # workers notice the server is gone within a second
    assert not _leftover_processes(proc.pid)


def test_reading_and_classifying_hostile_messages_is_bounded(shipped_model):
    """Whole messages built to be expensive for one stage, 2 MB each, against a benign one."""
    cases = _bench("hostile_speed").cases

    from partnercheck.reading.mail import parse_message

    def run(raw):
        record = parse_message(raw)
        if record.readable:
            classify_one(record, shipped_model)

    messages = cases(2 * MB)
    # The baseline is the slower of a benign plain-text and a benign HTML message: reading
    # HTML costs more than plain text, hostile or not.
    benign = max(messages.pop("benign"), messages.pop("benign html"), key=lambda raw: _seconds(run, raw))
    _check_linear(run, benign, messages, factor=10.0)


# --------------------------------------------------------------------------- labelling

@pytest.fixture(scope="module")
def big_mbox(tmp_path_factory):
    path = tmp_path_factory.mktemp("mbox") / "big.mbox"
    _bench("mailbox").write_mbox(str(path), 2000)
    return path


def _label(args, **kwargs):
    import os
    import subprocess
    import sys

    from conftest import ROOT, ctrl_c_reaches

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "partnercheck", "label", *args], env=env,
                            preexec_fn=ctrl_c_reaches, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def _rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _wait_for_rows(path, proc, count=300):
    import os

    for _ in range(1200):
        if os.path.exists(path) and path.stat().st_size > 0 and len(_rows(path)) > count:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"no rows appeared: {proc.stderr.read().decode()}")


def _leftover_processes(session: int) -> list[str]:
    """Live processes of a session (zombies are dead: only the container's init fails to reap them)."""
    import subprocess

    listing = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(session)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.split() and not line.split()[1].startswith("Z")]


def test_kill_9_while_labelling_keeps_whole_rows_and_resume_finishes_the_same(big_mbox, tmp_path):
    full = tmp_path / "full.csv"
    assert _label([str(big_mbox), "-o", str(full), "-q", "-j", "2"]).wait(timeout=300) == 0
    out = tmp_path / "out.csv"
    proc = _label([str(big_mbox), "-o", str(out), "-q", "-j", "2"], start_new_session=True)
    _wait_for_rows(out, proc)
    proc.kill()
    proc.wait()
    kept = _rows(out)
    assert len(kept) > 300 and kept == _rows(full)[: len(kept)]  # whole rows, in order
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    time.sleep(1)
    assert not _leftover_processes(proc.pid)  # the workers died with their parent
    resumed = _label([str(big_mbox), "-o", str(out), "-q", "-j", "2", "--resume"])
    assert resumed.wait(timeout=300) == 0
    assert _rows(out) == _rows(full)  # and two runs give the same rows, reasons included


def test_ctrl_c_while_labelling_keeps_rows_and_prints_no_traceback(big_mbox, tmp_path):
    import os
    import signal

    out = tmp_path / "out.csv"
    proc = _label([str(big_mbox), "-o", str(out), "-j", "2"], start_new_session=True)
    _wait_for_rows(out, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: to the whole process group
    assert proc.wait(timeout=60) == 130
    stderr = proc.stderr.read().decode()
    assert "Traceback" not in stderr and "interrupted:" in stderr
    assert len(_rows(out)) > 300
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    time.sleep(1)
    assert not _leftover_processes(proc.pid)


# ------------------------------------------------------------------------ obfuscation

def test_obfuscated_mail_gets_the_verdicts_of_the_clean_mail(shipped_model, tmp_path):
    """bench/obfuscate.py's rewriting (invisible characters, look-alikes, spelled-out
    keywords, hidden decoys of another label) on 45 corpus messages changes few verdicts."""
    from conftest import DATA

    from partnercheck.reading.mail import parse_message

    obfuscate = _bench("obfuscate")
    ob = obfuscate.Obfuscator(seed=0)
    same = total = 0
    for label in ("partnership", "pitch", "other"):
        for path in sorted((DATA / label).glob("*.eml"))[:15]:
            raw = path.read_bytes()
            clean = classify_one(parse_message(raw), shipped_model).label
            dirty = classify_one(parse_message(obfuscate.obfuscate_message(raw, label, ob)), shipped_model).label
            same += clean == dirty
            total += 1
    assert same >= 0.9 * total, f"{same} of {total} verdicts unchanged"


def test_the_server_never_takes_a_file_for_its_socket_and_answers_a_burst(small_model_path, tmp_path):
    import threading

    from conftest import PITCH_TEXT, message

    from partnercheck.deciding.model import load_model
    from partnercheck.interface import client, server

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        server.ClassifyServer(load_model(small_model_path), None, str(precious), workers=2)
    assert precious.read_text() == "keep me"
    if os.geteuid() == 0:  # a socket another user's server holds is left alone, live or not
        import socket

        theirs = str(tmp_path / "theirs.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
            held.bind(theirs)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(OSError, match="a socket of another user"):
            server.ClassifyServer(load_model(small_model_path), None, theirs, workers=2)
        assert os.path.exists(theirs)
    path = str(tmp_path / "s.sock")
    srv = server.ClassifyServer(load_model(small_model_path), None, path, workers=2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        answers, failures = [], []

        def ask():
            try:
                answers.append(client.classify_remote(message("quick question", PITCH_TEXT), path)["label"])
            except client.ServerUnavailable as exc:  # the filter would classify cold: seconds, not milliseconds
                failures.append(exc)

        askers = [threading.Thread(target=ask) for _ in range(50)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(timeout=120)
        assert not failures and answers == ["pitch"] * 50
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("run, tail", [("1", " 5%"), ("a", " x@y.example"), ("1,", "x usd")])
def test_a_long_run_before_a_percent_or_an_at_costs_linear_time(run, tail):
    """Tried from every digit or letter of the run, the percent, address and money patterns
    took time quadratic in it (33 s for 40,000 digits and one "5%")."""
    from conftest import message

    from partnercheck.reading.mail import parse_message
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    rules = builtin_rules()
    timings = []
    for body in ("word " * 4000 + tail, run * (19_990 // len(run)) + tail):
        record = parse_message(message("x", body))
        start = time.perf_counter()
        extract(record, rules)
        timings.append(time.perf_counter() - start)
    assert timings[1] < 10 * timings[0] + 0.05


def test_invisible_characters_cannot_push_the_text_out_of_reach():
    """The body is cut to what the model reads after invisible characters are dropped, so
    20,000 zero-width spaces before a pitch do not hide it from the rules."""
    from conftest import PITCH_TEXT, message

    from partnercheck.reading.mail import parse_message
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    rules = builtin_rules()
    plain = {hit.id for hit in extract(parse_message(message("hi", PITCH_TEXT)), rules).hits}
    hidden = {hit.id for hit in extract(parse_message(message("hi", "\u200b" * 20_000 + PITCH_TEXT)), rules).hits}
    assert "PRICE_PLANS" in plain and hidden == plain


@pytest.mark.parametrize("html", [
    "<!-- " + "<div " * 201 + " --><p>Plans start at $99 a month.</p>",
    "<script>" + "if(a<b)" * 201 + "</script><p>Plans start at $99 a month.</p>",
])
def test_the_nesting_limit_counts_no_tag_inside_a_comment_or_a_script(html):
    assert html_to_text(html).text == "Plans start at $99 a month."


@pytest.mark.parametrize("hiding", [
    '<div style="display:none">', "<span hidden>", '<span aria-hidden="true">', '<font color="#ffffff">',
    '<span class="x">', "<p id='y'>",
])
def test_text_hidden_behind_hundreds_of_unclosed_tags_stays_hidden(hiding):
    """Past the nesting limit start tags are cut, but not one that may hide its content:
    250 unclosed <div>s do not make a hidden decoy visible."""
    sheet = "<style>.x, #y { display: none }</style>"
    name = hiding[1:].split()[0].rstrip(">")
    html = sheet + "<div>" * 250 + f"Plans start at $99. {hiding}partner with us <b>as equals</b></{name}> Thanks."
    assert html_to_text(html).text == "Plans start at $99. Thanks."
    assert html_to_text(html.replace(" Thanks.", "")).text == "Plans start at $99."  # never closed: to the end
    shown = html.replace(hiding, '<span style="color:#cc0000">')
    assert " ".join(html_to_text(shown).text.split()) == "Plans start at $99. partner with us as equals Thanks."


@pytest.mark.parametrize("html, shown", [
    ("<div hidden><b>decoy</div> Plans start at $99.", "Plans start at $99."),  # an unclosed tag inside
    ("<div hidden></b>decoy</div> Plans start at $99.", "Plans start at $99."),  # a stray end tag inside
    ("<div style='background:#000'><span style='color:#fff'>Plans start at $99.</span></div>",
     "Plans start at $99."),  # white on black is seen
    ('<b class="a">x</b>' * 150 + "<div hidden>decoy</div> Plans start at $99.",
     "x" * 150 + " Plans start at $99."),  # closed tags do not use up what may be kept
    ('<div title=">" style="display:none">decoy</div> Plans start at $99.', "Plans start at $99."),
    ("<div title=O'Reilly>Plans start at $99.</div>", "Plans start at $99."),
])
def test_past_the_nesting_limit_the_parser_still_decides_what_is_hidden(html, shown):
    assert html_to_text("<div>" * 250 + html).text == shown


@pytest.mark.parametrize("opener", ["<!-->", "<!--->", "<!-- x --!>", "<script>x</script x>"])
def test_a_comment_or_script_closed_the_html5_way_keeps_the_nesting_limit(opener):
    """Ended where the parser ends it, not at the end of the text: what follows is still
    limited, so 30,000 nested inline tags after it parse as fast as without it."""
    tags = "<b><i><u><s><a>" * 30_000
    timings = []
    for html in (tags, opener + tags):
        start = time.perf_counter()
        html_to_text(html)
        timings.append(time.perf_counter() - start)
    assert timings[1] < 5 * timings[0] + 0.2


def test_a_long_body_is_normalised_as_a_short_one():
    from conftest import message

    from partnercheck.reading.mail import parse_message
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    text = "We would like to open a shop in İstanbul with you. "
    short = extract(parse_message(message("x", text)), builtin_rules()).tokens
    long = extract(parse_message(message("x", text * 500)), builtin_rules()).tokens
    assert set(short) - {"shape:short"} <= set(long)
