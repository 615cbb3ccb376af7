"""The command line as a user meets it: every command, every input path, every error."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
from click.testing import CliRunner
from conftest import (
    DATA,
    FIXTURES,
    OTHER_TEXT,
    PARTNERSHIP_TEXT,
    PITCH_TEXT,
    ROOT,
    message,
    write,
)

from partnercheck.interface.cli import cli
from partnercheck.reading.sources import Source

COMMANDS = sorted(cli.commands)


@pytest.fixture
def runner(small_model_path, monkeypatch):
    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    return CliRunner()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_examples_and_is_in_the_readme(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"partnercheck {name}" in result.output
    assert f"partnercheck {name}" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("how", ["argument", "stdin", "dash"])
def test_classify_reads_an_argument_or_stdin(runner, tmp_path, how):
    raw = message("quick question", PITCH_TEXT)
    path = write(tmp_path / "m.eml", raw)
    args, data = {"argument": (["classify", str(path)], None), "stdin": (["classify"], raw),
                  "dash": (["classify", "-"], raw)}[how]
    result = runner.invoke(cli, args, input=data)
    assert result.exit_code == 0, result.output
    assert result.output.split("\t")[1] == "pitch"


def test_classify_json(runner, tmp_path):
    path = write(tmp_path / "m.eml", message("Breakfast?", PARTNERSHIP_TEXT))
    data = json.loads(runner.invoke(cli, ["classify", "--json", str(path)]).output)
    assert data["verdict"] == "partnership" and data["message"] == "m.eml" and "scores" in data


def test_classify_escapes_names_with_control_characters_and_prints_others_as_they_are(runner, tmp_path):
    """One line per message and four columns per line, whatever the file names hold: a name
    with a newline, a tab or an escape is printed as a Python string literal."""
    import ast

    names = ["plain.eml", "with space.eml", "two\nlines.eml", "tab\there.eml", "esc\x1b[31m.eml", "nel\x85.eml"]
    for name in names:
        write(tmp_path / "mail" / name, message("quick question", PITCH_TEXT))
    result = runner.invoke(cli, ["classify", str(tmp_path / "mail"), str(tmp_path / "mail" / "two\nlines.eml")])
    assert result.exit_code == 0, result.output
    lines = result.output.split("\n")
    assert lines.pop() == "" and len(lines) == len(names) + 1
    assert all(len(line.split("\t")) == 4 for line in lines)
    printed = [line.split("\t")[0] for line in lines]
    assert "mail:plain.eml" in printed and "mail:with space.eml" in printed  # as they always were
    assert "'mail:two\\nlines.eml'" in printed and "'two\\nlines.eml'" in printed
    shown = sorted(ast.literal_eval(name) if name.startswith("'") else name for name in printed)
    assert shown == sorted([f"mail:{name}" for name in names] + ["two\nlines.eml"])


def test_inspect_prints_one_line_of_five_columns_per_message_whatever_its_name_holds(runner, tmp_path):
    write(tmp_path / "mail" / "two\nlines.eml", message("quick question", PITCH_TEXT))
    write(tmp_path / "mail" / "plain.eml", message("quick question", PITCH_TEXT))
    result = runner.invoke(cli, ["inspect", str(tmp_path / "mail")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.split("\n") if "\t" in line]
    assert len(lines) == 2 and all(len(line.split("\t")) == 5 for line in lines)
    assert {line.split("\t")[0] for line in lines} == {"'two\\nlines.eml'", "plain.eml"}


def test_explain_in_plain_words(runner, tmp_path):
    path = write(tmp_path / "m.eml", message("quick question", PITCH_TEXT))
    result = runner.invoke(cli, ["explain", str(path)])
    assert result.exit_code == 0
    assert "Verdict: PITCH" in result.output
    assert 'PRICE_PLANS (pitch): quotes prices' in result.output and '"plans start at"' in result.output
    assert "What points to pitch:" in result.output
    assert json.loads(runner.invoke(cli, ["explain", "--json", str(path)]).output)["verdict"] == "pitch"


def test_explain_prints_no_control_character_of_the_mail(runner, tmp_path):
    """An escape sequence in a matched sentence would set the terminal's title or clipboard,
    a carriage return would overwrite the verdict's line: each is shown as U+FFFD."""
    body = PITCH_TEXT.replace("Plans start at", "\x1b]52;c;ZWNobyBoaQ==\x07\rVerdict: OTHER Plans start at")
    path = write(tmp_path / "m.eml", message("quick \x1b[2J question", body))
    result = runner.invoke(cli, ["explain", str(path)])
    assert result.exit_code == 0 and '"plans start at"' in result.output
    assert not any(char in result.output for char in "\x1b\x07\r")


def test_inspect_shows_parse_problems(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", "--json", str(FIXTURES / "malformed")])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(r["problems"] for r in rows) and any(r["key"] == "html-only.eml" for r in rows)
    assert "with parse problems" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["classify", "/nonexistent.eml"], "no such file or directory"),
    (["inspect", "/nonexistent"], "no such file or directory"),
    (["label", "/nonexistent.mbox"], "no such file or directory"),
    (["evaluate", "/nonexistent"], "no such file or directory"),
    (["train", "/nonexistent", "-o", "x.joblib"], "no such file or directory"),
    (["classify", "--model", "/nonexistent.joblib", "-"], "no model at"),
    (["serve", "--socket", str(ROOT / "README.md" / "partnercheck.sock")], "a part of its folder is a file, not a folder"),
])
def test_errors_are_one_line_without_traceback(runner, args, fragment):
    result = runner.invoke(cli, args, input=b"")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize("name, packer, fragment", [
    ("inbox.mbox.gz", "gzip", "gzip-compressed; decompress it first, or name it as <(zcat "),
    ("inbox.mbox.bz2", "bz2", "bzip2-compressed"),
    ("inbox.mbox.xz", "lzma", "xz-compressed"),
    ("takeout-001.zip", "zip", "a zip archive; unpack it"),
])
def test_a_compressed_mailbox_is_one_clear_error(runner, tmp_path, name, packer, fragment):
    """A compressed mailbox (Takeout's download, a .mbox.gz) is not read as one binary
    message: the command stops with one line saying how to read it."""
    import importlib

    mbox = b"From a@b Mon Jan  1 00:00:00 2024\n" + message("hi", PITCH_TEXT)
    path = write(tmp_path / name, _zipped(mbox) if packer == "zip" else importlib.import_module(packer).compress(mbox))
    for command in (["label", str(path)], ["inspect", str(path)]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("name, parts", [
    ("labels.xlsx", {"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}),
    ("labels.ods", {"mimetype": "application/vnd.oasis.opendocument.spreadsheet", "content.xml": "<x/>"}),
    ("labels-corrected", {"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"}),
])
def test_a_label_file_saved_as_a_spreadsheet_workbook_is_one_line_saying_to_save_it_as_csv(runner, tmp_path, name,
                                                                                              parts):
    """labels.csv corrected in Excel or LibreOffice and saved in its own format: not 'a zip
    archive; unpack it', which gives no mail, but what to save instead."""
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        for part, text in parts.items():
            archive.writestr(part, text)
    for command in (["learn", "--no-retrain", str(path)], ["train", str(path), "-o", str(tmp_path / "m.model")],
                    ["evaluate", str(path)]):
        result = runner.invoke(cli, command)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"{path}: a spreadsheet workbook" in lines[0] and "save it from the spreadsheet as CSV" in lines[0]


def _zipped(data: bytes) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Takeout/Mail/All mail Including Spam and Trash.mbox", data)
    return buffer.getvalue()


def test_evaluate_with_nothing_to_score_is_an_error(runner, tmp_path):
    result = runner.invoke(cli, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "no labelled message to score" in result.output


def test_explain_takes_one_message(runner, tmp_path):
    result = runner.invoke(cli, ["explain", str(_mbox(tmp_path, [PITCH_TEXT, OTHER_TEXT]))])
    assert result.exit_code == 1 and "more than one message" in result.output


def test_bad_option_exits_2(runner):
    assert runner.invoke(cli, ["label", "--format", "pst", "x"]).exit_code == 2


def test_incompatible_model_is_one_line(runner, tmp_path):
    pickled = write(tmp_path / "m.joblib", b"\x80\x04garbage")
    result = runner.invoke(cli, ["classify", "--model", str(pickled), "-"], input=message("a", "b"))
    assert result.exit_code == 1 and "pickle or joblib file" in result.output
    broken = write(tmp_path / "m.model", b"PK\x03\x04garbage")
    result = runner.invoke(cli, ["classify", "--model", str(broken), "-"], input=message("a", "b"))
    assert result.exit_code == 1 and "not a readable partnercheck model" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _mbox(tmp_path, texts):
    data = b"".join(b"From x@y.example Mon Jan  1 00:00:00 2024\n" + message(f"m{i}", t) + b"\n"
                    for i, t in enumerate(texts))
    return write(tmp_path / "inbox.mbox", data)


@pytest.mark.parametrize("flag, parse", [
    ("--csv", lambda s: list(csv.DictReader(io.StringIO(s)))),
    ("--tsv", lambda s: list(csv.DictReader(io.StringIO(s), delimiter="\t"))),
    ("--nl", lambda s: [json.loads(line) for line in s.splitlines()]),
])
def test_label_formats(runner, tmp_path, flag, parse):
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    result = runner.invoke(cli, ["label", str(mbox), flag])
    assert result.exit_code == 0, result.output
    rows = parse(result.stdout)
    assert [r["key"] for r in rows] == ["1", "2", "3"]
    assert [r["verdict"] for r in rows] == ["pitch", "partnership", "other"]
    assert "labelled 3 messages: partnership 1, pitch 1, other 1, unsure 0; unreadable 0" in result.stderr


def test_a_message_the_parser_chokes_on_costs_only_its_own_row(runner, tmp_path, monkeypatch):
    from partnercheck.reading import mail

    read_headers = mail._read_headers

    def choke(items, record):
        if any("m1" in value for _, value in items):
            raise RecursionError("a shape nobody foresaw")
        return read_headers(items, record)

    monkeypatch.setattr(mail, "_read_headers", choke)
    result = runner.invoke(cli, ["label", str(_mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])), "--nl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["verdict"] for r in rows] == ["pitch", "unsure", "other"]
    assert "cannot be parsed (RecursionError" in rows[1]["problems"]


def test_own_rules_reach_the_worker_processes(runner, tmp_path):
    rules = write(tmp_path / "rules.toml", b"[[rule]]\nid = 'TONER'\nlabel = 'pitch'\ndecide = true\n"
                                           b"patterns = ['\\btoner\\b']\n")
    mbox = str(_mbox(tmp_path, [OTHER_TEXT, OTHER_TEXT + "\nAlso: cheap toner for the office.", PARTNERSHIP_TEXT]))
    outputs = []
    for jobs in ("1", "2"):
        result = runner.invoke(cli, ["label", mbox, "--nl", "-j", jobs, "--rules", str(rules)])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    rows = [json.loads(line) for line in outputs[0].splitlines()]
    assert [r["verdict"] for r in rows][1] == "pitch" and "TONER" in rows[1]["rules"]
    assert outputs[0] == outputs[1]


def test_labelling_stopped_early_ends_its_workers_under_a_sigterm_handler(tmp_path, small_model_path):
    """A program that labels from within and handles SIGTERM itself (as `serve` does) gives
    its handler to the workers it forks; the pool ends them with SIGTERM when the rows stop
    being read, and one that only noted the signal waited for ever on the pool's lock."""
    import subprocess
    import sys

    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT] * 400)
    script = (
        "import signal, sys\n"
        "from partnercheck.reading.sources import Source\n"
        "from partnercheck.running.batch import label_source\n"
        "signal.signal(signal.SIGTERM, lambda signum, frame: None)\n"
        "rows = label_source(Source(sys.argv[1]), sys.argv[2], jobs=2)\n"
        "first = next(rows)\n"
        "rows.close()\n"
        "print(len(first))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(mbox), small_model_path],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "100\n"), done.stderr


def test_label_to_file_resume_and_unreadable(runner, tmp_path):
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    out = tmp_path / "labels.csv"
    # An earlier run that stopped after the first row.
    first = runner.invoke(cli, ["label", str(mbox), "-o", str(out)])
    rows = list(csv.DictReader(out.open()))
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerow(rows[0])
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out), "--resume"])
    assert result.exit_code == 0 and "1 already done" in result.stderr
    assert list(csv.DictReader(out.open())) == rows
    assert first.exit_code == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_resume_labels_again_a_row_cut_short_or_foreign(runner, tmp_path):
    """A label file cut off mid-row by hand, or a row another program wrote, is not kept as
    done: its message is labelled again, and the file ends as a full run's."""
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    full = tmp_path / "full.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(full)]).exit_code == 0
    lines = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    cut.write_text(lines[0] + lines[1] + lines[2][:40] + "\n")
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(cut), "--resume"])
    assert result.exit_code == 0 and "1 already done" in result.stderr and "1 incomplete row" in result.stderr
    assert cut.read_bytes() == full.read_bytes()
    foreign = write(tmp_path / "foreign.jsonl", '{"source": "x"}\n')
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(foreign), "--resume"]).exit_code == 0
    assert [json.loads(line)["key"] for line in foreign.read_text().splitlines()] == ["1", "2", "3"]


def test_resume_refuses_a_source_that_lost_a_message(runner, tmp_path):
    """An mbox's keys count its messages: with one deleted since the earlier run, every row
    after it would name the next message. `--resume` says so and writes nothing."""
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    out = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(out)]).exit_code == 0
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:3]))  # stopped after two rows
    before = out.read_bytes()
    first, *rest = mbox.read_bytes().split(b"\nFrom x@y")
    mbox.write_bytes(b"From x@y" + b"\nFrom x@y".join(rest))  # the mail program deleted the first message
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out), "--resume"])
    assert result.exit_code == 1 and "message 1 is no longer the one the earlier run labelled" in result.output
    assert "without --resume" in result.output and len(result.output.strip().splitlines()) == 1
    assert out.read_bytes() == before
    # New mail delivered at the end moves no message: the run resumes.
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT, OTHER_TEXT + " Again."])
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out), "--resume"])
    assert result.exit_code == 0 and "2 already done" in result.stderr
    assert [row["key"] for row in csv.DictReader(out.open())] == ["1", "2", "3", "4"]


def test_label_and_train_never_write_into_a_source_folder(runner, tmp_path):
    """An output path inside a folder being read would replace a message or be read as one."""
    folder = tmp_path / "mail"
    inbox = _mbox(folder, [PITCH_TEXT])
    before = inbox.read_bytes()
    result = runner.invoke(cli, ["label", str(folder), "-o", str(inbox)])
    assert result.exit_code == 1 and "is inside the SOURCE" in result.output and inbox.read_bytes() == before
    labelled = tmp_path / "labelled"
    for label in ("partnership", "pitch", "other"):
        write(labelled / label / "a.eml", message("x", PITCH_TEXT))
    result = runner.invoke(cli, ["train", str(labelled), "-o", str(labelled / "pitch" / "a.eml"), "--force"])
    assert result.exit_code == 1 and "inside" in result.output
    assert (labelled / "pitch" / "a.eml").read_bytes() == message("x", PITCH_TEXT)


def test_one_label_for_several_sources_leaves_a_label_files_rows_their_own(runner, tmp_path):
    """`train labels.csv --label pitch pitches.mbox`: the mailbox is pitch, the corrected
    rows keep their labels (with --label applied to all, every row had become pitch)."""
    mbox = write(tmp_path / "inbox.mbox", b"".join(
        b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n"
        for label in ("partnership", "other") for p in sorted((DATA / label).glob("*.eml"))[:12]))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(labels)]).exit_code == 0
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["verdict"] = ("partnership", "other")[i // 12]
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pitches = write(tmp_path / "pitches.mbox", b"".join(
        b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n"
        for p in sorted((DATA / "pitch").glob("*.eml"))[:12]))
    trained = runner.invoke(cli, ["train", str(labels), "--label", "pitch", str(pitches), "-o", str(tmp_path / "m.model")])
    assert trained.exit_code == 0, trained.output
    support = {}  # the support column of the per-label table, which comes before the confusion
    for words in map(str.split, trained.output.splitlines()):
        if words and words[0] in ("partnership", "pitch", "other"):
            support.setdefault(words[0], words[-1])
    assert support == {"partnership": "12", "pitch": "12", "other": "12"}


def test_train_warns_when_copies_of_too_few_messages_cannot_be_kept_apart(runner, tmp_path):
    labelled = tmp_path / "labelled"
    for label in ("partnership", "other"):
        for p in sorted((DATA / label).glob("*.eml"))[:12]:
            write(labelled / label / p.name, p.read_bytes())
    for n, p in enumerate(sorted((DATA / "pitch").glob("*.eml"))[:3]):
        for copy in range(4):  # one campaign's copies, a name apart
            write(labelled / "pitch" / f"{n}-{copy}.eml", p.read_bytes() + f"\nP.S. for reader {copy}\n".encode())
    trained = runner.invoke(cli, ["train", str(labelled), "-o", str(tmp_path / "m.model")])
    assert trained.exit_code == 0, trained.output
    assert "warning: the pitch messages are copies of fewer than 5 distinct messages" in trained.stderr


@pytest.mark.parametrize("name, says", [("inbox.mbox", "gzip-compressed"), ("labels.csv", "gzip-compressed")])
def test_a_compressed_file_is_refused_whatever_its_name(runner, tmp_path, name, says):
    import gzip

    path = write(tmp_path / name, gzip.compress(b"From x Mon Jan  1 00:00:00 2024\n" + message("a", PITCH_TEXT)))
    result = runner.invoke(cli, ["label", str(path)])
    assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output


def test_label_refuses_an_unusable_model_before_writing_any_row(runner, tmp_path):
    import gzip

    model = write(tmp_path / "inbox.mbox.gz", gzip.compress(b"mail"))
    result = runner.invoke(cli, ["label", str(_mbox(tmp_path, [PITCH_TEXT])), "-m", str(model)])
    assert result.exit_code == 1 and result.stdout == "" and "gzip-compressed, not a partnercheck model" in result.stderr


def test_label_counts_unreadable_messages(runner):
    result = runner.invoke(cli, ["label", str(FIXTURES / "malformed"), "--nl"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    empty = next(r for r in rows if r["key"] == "empty.eml")
    assert empty["verdict"] == "unsure" and empty["reasons"].startswith("unreadable")
    assert "unreadable 2" in result.stderr or "unreadable 1" in result.stderr


def test_interrupted_label_leaves_valid_output(runner, tmp_path, monkeypatch):
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT] * 2)
    out = tmp_path / "labels.csv"
    import partnercheck.running.batch as batch

    monkeypatch.setattr(batch, "CHUNK", 2)
    original = batch.classify_records
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(batch, "classify_records", interrupted)
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out)])
    assert result.exit_code == 130 and "--resume" in result.stderr
    assert [r["key"] for r in csv.DictReader(out.open())] == ["1", "2"]
    monkeypatch.setattr(batch, "classify_records", original)
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out), "--resume"])
    assert [r["key"] for r in csv.DictReader(out.open())] == ["1", "2", "3", "4", "5", "6"]


def test_label_round_trip_into_train(runner, tmp_path):
    """Label a mailbox, correct the verdict column, train on the file as it is."""
    texts = []
    for label, folder in (("partnership", "partnership"), ("pitch", "pitch"), ("other", "other")):
        texts += [(label, p.read_bytes()) for p in sorted((ROOT / "data" / folder).glob("*.eml"))[40:52]]
    data = b"".join(b"From x@y.example Mon Jan  1 00:00:00 2024\n" + raw.rstrip(b"\n") + b"\n\n" for _, raw in texts)
    mbox = write(tmp_path / "mine.mbox", data)
    out = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(mbox), "-o", str(out)]).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    for row, (truth, _) in zip(rows, texts):
        row["verdict"] = truth  # the user's corrections
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    model = tmp_path / "mine.joblib"
    result = runner.invoke(cli, ["train", str(out), "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert "cross-validated" in result.output and model.exists()
    again = runner.invoke(cli, ["train", str(out), "-o", str(model)])
    assert again.exit_code == 1 and "--force" in again.output
    evaluated = runner.invoke(cli, ["evaluate", str(out), "--model", str(model), "--json"])
    assert json.loads(evaluated.output)["messages"] == len(texts)


def test_train_refusals(runner, tmp_path):
    rows = [{"text": f"message number {i} about things", "label": "partnership" if i % 2 else "spam"} for i in range(30)]
    path = write(tmp_path / "bad.jsonl", "\n".join(json.dumps(r) for r in rows))
    result = runner.invoke(cli, ["train", str(path), "-o", str(tmp_path / "m.joblib")])
    assert result.exit_code == 1 and "unknown labels: 'spam' in 15 message(s)" in result.output
    mbox = _mbox(tmp_path, [PITCH_TEXT, OTHER_TEXT])
    result = runner.invoke(cli, ["train", "--label", "pitch", str(mbox), "-o", str(tmp_path / "m.joblib")])
    assert result.exit_code == 1 and "too few examples" in result.output and "at least 10" in result.output


def test_train_with_given_labels(runner, tmp_path):
    groups = {}
    for label in ("partnership", "pitch", "other"):
        files = sorted((ROOT / "data" / label).glob("*.eml"))[:12]
        groups[label] = write(tmp_path / f"{label}.mbox", b"".join(
            b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n" for p in files))
    model = tmp_path / "m.joblib"
    first = runner.invoke(cli, ["train", "--label", "pitch", str(groups["pitch"]), "-o", str(model)])
    assert first.exit_code == 1  # one label alone cannot be learned
    assert "too few examples" in first.output
    # One --label per source, in order (the README's example with several mailboxes).
    args = ["train"]
    for label, path in groups.items():
        args += ["--label", label, str(path)]
    both = runner.invoke(cli, args + ["-o", str(model)])
    assert both.exit_code == 0, both.output
    from partnercheck.deciding.model import load_model
    from partnercheck.reading.sources import Source

    assert "messages: 36" in both.output and load_model(str(model)).labels == sorted(groups)
    # Source() applies the label as given: each mailbox got its own.
    assert {r.label for r in Source(str(groups["other"]), label="other")} == {"other"}
    wrong = runner.invoke(cli, ["train", "--label", "pitch", "--label", "other", *map(str, groups.values()),
                                "-o", str(tmp_path / "n.model")])
    assert wrong.exit_code == 2 and "one per source" in wrong.output


def test_train_and_evaluate_skip_label_rows_still_marked_unsure_or_cleared(runner, tmp_path):
    """A label file whose `unsure` rows nobody has decided yet, or whose verdict cells were
    cleared: train and evaluate use the rows that say a label, and say how many they
    skipped, as `learn` does."""
    mbox = write(tmp_path / "inbox.mbox", b"".join(
        b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n"
        for label in ("partnership", "pitch", "other") for p in sorted((DATA / label).glob("*.eml"))[:12]))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(labels)]).exit_code == 0
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):  # two left unsure, one cleared, as the README allows
        row["verdict"] = ("", "unsure")[i < 24] if i % 12 == 0 else ("partnership", "pitch", "other")[i // 12]
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    scored = runner.invoke(cli, ["evaluate", str(labels)])
    assert scored.exit_code == 0, scored.output
    assert "messages: 33 (3 still marked unsure or left blank, skipped)" in scored.output
    trained = runner.invoke(cli, ["train", str(labels), "-o", str(tmp_path / "m.model")])
    assert trained.exit_code == 0, trained.output
    assert "skipped 3 message(s) still marked unsure or left blank" in trained.output and "messages: 33" in trained.output


def test_train_refuses_a_message_whose_copies_were_given_different_labels(runner, tmp_path):
    """A message in two labelled mailboxes, its verdict corrected in one row only: train
    kept the first copy's label and dropped the correction as a duplicate. It says where."""
    mbox = write(tmp_path / "inbox.mbox", b"".join(
        b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n"
        for label in ("partnership", "pitch", "other") for p in sorted((DATA / label).glob("*.eml"))[:12]))
    archive = write(tmp_path / "archive.mbox", mbox.read_bytes())
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), str(archive), "-o", str(labels)]).exit_code == 0
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["verdict"] = ("partnership", "pitch", "other")[i % 36 // 12]
    rows[-1]["verdict"] = "pitch"  # archive.mbox:36, an other, corrected there alone
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(cli, ["train", str(labels), "-o", str(tmp_path / "m.model")])
    assert result.exit_code == 1 and not (tmp_path / "m.model").exists()
    assert (f"1 message(s) come twice with different labels, e.g. {mbox}:36 (other) and {archive}:36 (pitch)"
            in result.output), result.output


@pytest.mark.parametrize("deleted", ["key", "source"])
def test_a_label_file_whose_source_or_key_column_was_deleted_says_so(runner, tmp_path, deleted):
    """A column taken out in a spreadsheet: not 'no body column; name it with --body-column',
    which sends the user looking for an option that cannot help."""
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", "-q", str(mbox), "-o", str(labels)]).exit_code == 0
    with open(labels, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[name for name in rows[0] if name != deleted], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for command in (["learn", "--no-retrain", str(labels)], ["train", str(labels), "-o", str(tmp_path / "m.model")]):
        result = runner.invoke(cli, command)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"{labels}: a label file without its {deleted} column; its rows find their messages" in lines[0]


@pytest.fixture
def pipe_of():
    """``pipe_of(data)``: a pipe's read end named /dev/fd/N, as bash's ``<(cat file)`` names
    one, holding ``data`` with its writer gone (under the 64 KiB a pipe holds)."""
    ends = []

    def make(data: bytes) -> str:
        assert len(data) < 65536
        read_end, write_end = os.pipe()
        ends.append(read_end)
        os.write(write_end, data)
        os.close(write_end)
        return f"/dev/fd/{read_end}"

    yield make
    for end in ends:
        os.close(end)


@pytest.fixture
def fifo_of(tmp_path):
    """``fifo_of(data, name)``: the FIFO ``name`` in tmp_path (made if new), which a `cat` of
    its own writes ``data`` into once a reader opens it."""
    import subprocess

    writers = []

    def make(data: bytes, name: str = "fifo") -> str:
        fifo = tmp_path / name
        if not fifo.exists():
            os.mkfifo(fifo)
        fed = write(tmp_path / f"{name}.{len(writers)}.data", data)
        writers.append(subprocess.Popen(["sh", "-c", 'exec cat "$1" > "$2"', "sh", str(fed), str(fifo)]))
        return str(fifo)

    yield make
    for writer in writers:
        if writer.poll() is None:  # no reader came: it still waits to open the FIFO
            writer.kill()
        writer.wait()


def _rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("how", ["pipe", "fifo"])
@pytest.mark.parametrize("kind", ["mbox", "eml"])
def test_label_reads_a_pipe_or_fifo_as_it_reads_the_same_file(runner, tmp_path, pipe_of, fifo_of, how, kind):
    """`label <(zcat inbox.mbox.gz)` and `label FIFO`: read once, as standard input is, the
    format guessed from the first bytes; the rows are those of the file but for its name."""
    if kind == "mbox":
        data = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT]).read_bytes()
    else:
        data = message("quick question", PITCH_TEXT)
    plain = write(tmp_path / "plain", data)
    stream = pipe_of(data) if how == "pipe" else fifo_of(data)
    expected = _rows(runner.invoke(cli, ["label", str(plain), "--nl"]))
    rows = _rows(runner.invoke(cli, ["label", stream, "--nl"]))
    assert len(rows) == (3 if kind == "mbox" else 1)
    assert {r.pop("source") for r in rows} == {os.path.abspath(stream)}
    assert {r.pop("source") for r in expected} == {str(plain)}
    if kind == "eml":  # one message is known by the name it was read from
        assert [r.pop("key") for r in expected + rows] == ["plain", os.path.basename(stream)]
    assert rows == expected


def test_evaluate_and_train_read_a_pipe_once(runner, tmp_path, pipe_of, fifo_of):
    """A pipe is read once: evaluate and train take one as they take a file. A label file
    whose rows came from a FIFO names nothing that can be read again: one line, no wait."""
    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    on_file = runner.invoke(cli, ["evaluate", "--label", "pitch", "--json", str(mbox)])
    on_pipe = runner.invoke(cli, ["evaluate", "--label", "pitch", "--json", pipe_of(mbox.read_bytes())])
    assert on_pipe.exit_code == 0, on_pipe.output
    assert json.loads(on_pipe.output) == json.loads(on_file.output)
    args = ["train"]
    for label in ("partnership", "pitch", "other"):
        files = sorted((DATA / label).glob("*.eml"))[:12]
        args += ["--label", label, pipe_of(b"".join(
            b"From x@y.example Mon Jan  1 00:00:00 2024\n" + p.read_bytes().rstrip(b"\n") + b"\n\n" for p in files))]
    trained = runner.invoke(cli, args + ["-o", str(tmp_path / "m.model")])
    assert trained.exit_code == 0, trained.output
    assert "messages: 36" in trained.output
    labels = tmp_path / "labels.csv"
    fifo = fifo_of(mbox.read_bytes())
    assert runner.invoke(cli, ["label", fifo, "-o", str(labels)]).exit_code == 0
    fifo_of(mbox.read_bytes())  # a writer again, so that reading the FIFO twice would not wait forever
    for command in (["train", str(labels), "-o", str(tmp_path / "n.model")], ["evaluate", str(labels)]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 1
        assert result.output.strip() == f"Error: {labels}: row 1 came from the pipe {fifo} and cannot be read again"
    # bash's <(zcat inbox.mbox.gz) is /dev/fd/63 while `label` runs, and gone (or another file) after it
    gone = labels.read_text().replace(fifo, "/dev/fd/63")
    labels.write_text(gone)
    result = runner.invoke(cli, ["evaluate", str(labels)])
    assert result.output.strip() == f"Error: {labels}: row 1 came from the pipe /dev/fd/63 and cannot be read again"


def test_progress_bar_on_a_terminal_only(small_model_path, tmp_path):
    """With stderr on a terminal, `label` draws a progress bar there and nothing else changes;
    with stderr piped, it stays silent but for the summary."""
    import os
    import pty
    import subprocess
    import sys

    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT] * 3)
    env = {**os.environ, "PARTNERCHECK_MODEL": small_model_path, "PYTHONPATH": str(ROOT / "src"),
           "PARTNERCHECK_SOCKET": str(tmp_path / "none.sock")}
    out = tmp_path / "labels.csv"
    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "partnercheck", "label", str(mbox), "-o", str(out)],
                          stderr=follower, stdout=subprocess.PIPE, env=env, timeout=120)
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert proc.returncode == 0 and len(list(csv.DictReader(out.open()))) == 9
    assert b"labelling" in terminal and b"labelled 9 messages" in terminal
    piped = subprocess.run([sys.executable, "-m", "partnercheck", "label", str(mbox)], capture_output=True,
                           env=env, timeout=120)
    assert b"labelling" not in piped.stderr and b"labelled 9 messages" in piped.stderr


def test_label_writes_to_a_pipe_or_device_named_as_its_output(small_model_path, tmp_path):
    """`-o /dev/stdout` in a pipeline (a pipe, which cannot be replaced atomically) gets the
    rows stdout would; `-o /dev/null` too; --resume there is refused in one line."""
    import subprocess
    import sys

    mbox = _mbox(tmp_path, [PITCH_TEXT, PARTNERSHIP_TEXT, OTHER_TEXT])
    env = {**os.environ, "PARTNERCHECK_MODEL": small_model_path, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "partnercheck", "label", "-q", str(mbox)]
    plain = subprocess.run(command, capture_output=True, env=env, timeout=120)
    piped = subprocess.run(command + ["-o", "/dev/stdout"], capture_output=True, env=env, timeout=120)
    assert piped.returncode == 0 and piped.stdout == plain.stdout and plain.stdout.count(b"\n") == 4
    assert subprocess.run(command + ["-o", "/dev/null"], capture_output=True, env=env, timeout=120).returncode == 0
    resumed = subprocess.run(command + ["-o", "/dev/stdout", "--resume"], capture_output=True, env=env, timeout=120)
    assert resumed.returncode == 1 and b"is a pipe or device" in resumed.stderr and b"Traceback" not in resumed.stderr


def test_model_from_config_file(small_model_path, tmp_path, monkeypatch):
    monkeypatch.delenv("PARTNERCHECK_MODEL", raising=False)
    config = write(tmp_path / "config.toml", f"model = '{tmp_path / 'missing.joblib'}'\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    result = CliRunner().invoke(cli, ["classify", "-"], input=message("a", PITCH_TEXT))
    assert result.exit_code == 1 and "missing.joblib" in result.output
    config.write_text(f"model = '{small_model_path}'\n")
    assert CliRunner().invoke(cli, ["classify", "-"], input=message("a", PITCH_TEXT)).exit_code == 0


def test_relative_paths_in_the_config_file_are_beside_it_whatever_the_folder(tmp_path, monkeypatch):
    """`store = "learned.sqlite3"` is one store, whether `learn` runs from cron in one folder
    or `filter` from the mail server in another."""
    folder = tmp_path / "conf"
    config = write(folder / "config.toml", "store = 'learned.sqlite3'\nmodel = 'my.model'\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    from partnercheck.settings import model_path, store_path

    assert store_path() == str(folder / "learned.sqlite3") and model_path() == str(folder / "my.model")
    config.write_text("store = 'learned.sqlite3'\n")
    result = CliRunner().invoke(cli, ["learn", "--as", "other", "--no-retrain", "-"], input=message("a", OTHER_TEXT))
    assert result.exit_code == 0, result.output
    assert (folder / "learned.sqlite3").exists() and not (tmp_path / "learned.sqlite3").exists()


def test_environment_variables_in_the_config_files_paths_are_expanded(tmp_path, monkeypatch):
    """`store = "$HOME/mail/learned.sqlite3"` is that file in the home folder, not a folder
    named `$HOME` beside the config file; a variable that is not set is one line."""
    folder = tmp_path / "conf"
    config = write(folder / "config.toml", "store = '$MAILDATA/learned.sqlite3'\nmodel = '${MAILDATA}/my.model'\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    monkeypatch.setenv("MAILDATA", str(tmp_path / "mail"))
    from partnercheck.settings import model_path, store_path

    assert store_path() == str(tmp_path / "mail" / "learned.sqlite3") and model_path() == str(tmp_path / "mail" / "my.model")
    config.write_text("store = '$MAILDATA/learned.sqlite3'\n")
    result = CliRunner().invoke(cli, ["learn", "--as", "other", "--no-retrain", "-"], input=message("a", OTHER_TEXT))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mail" / "learned.sqlite3").exists() and sorted(os.listdir(folder)) == ["config.toml"]
    monkeypatch.delenv("MAILDATA")
    result = CliRunner().invoke(cli, ["learn", "--as", "other", "--no-retrain", "-"], input=message("a", OTHER_TEXT))
    assert result.exit_code == 1 and "store names the environment variable $MAILDATA, which is not set" in result.output
    assert sorted(os.listdir(folder)) == ["config.toml"]


def test_an_imap_accounts_relative_files_are_beside_the_config_file(tmp_path, monkeypatch):
    """`password_file = "work.pass"` is read beside the config file when `imap` runs from
    cron in the home folder, as the config file's other relative paths are."""
    folder = tmp_path / "conf"
    config = write(folder / "config.toml", "[imap.work]\nhost = 'h'\nuser = 'u'\n"
                   "password_file = 'work.pass'\nca_file = 'ca.pem'\n")
    (folder / "work.pass").write_text("secret\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    from partnercheck.running.imap import account_from_config, read_password
    from partnercheck.settings import read_config

    account = account_from_config(read_config(), None)
    assert account.ca_file == str(folder / "ca.pem") and read_password(account, prompt=False) == "secret"


@pytest.mark.parametrize("text, error", [
    (b"modle = 'x.model'\n", "unknown key modle"),
    (b"store = 5\n", "store must be a path in quotes"),
    (b"model = ['a', 'b']\n", "model must be a path in quotes"),
    (b"[thresholds]\nmin_confidence = 7\n", "min_confidence must be between 0 and 1"),
    (b"[thresholds]\npartnership_guard = nan\n", "partnership_guard must be between 0 and 1"),
    (b"[thresholds]\nmin_confidnce = 0.5\n", "unknown key min_confidnce (the keys are min_confidence, partnership_guard"),
    (b"thresholds = 5\n", "bad [thresholds]: it must be a table"),
    (b"# caf\xe9\nallow = []\n", "must be UTF-8"),
    (b"block = ['*.vendor.example']\n", "block holds '*.vendor.example', which no sender matches"),
])
def test_a_config_file_that_cannot_mean_what_it_says_is_one_line(small_model_path, tmp_path, monkeypatch, text, error):
    """Never a file named '5' made by learn, a misspelt key quietly ignored, or every message unsure."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "config.toml", text)))
    for args in (["classify", "-"], ["learn", "--as", "pitch", "--no-retrain", "-"]):
        result = CliRunner().invoke(cli, args, input=message("a", PITCH_TEXT))
        assert result.exit_code == 1 and error in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["config.toml"]


def test_a_config_file_that_sets_one_cut_off_keeps_the_models_others(tmp_path, monkeypatch):
    """[thresholds] min_confidence = 0.5, the shipped model's own value: nothing changes. A pitch
    whose P(partnership) is 0.28 stays a pitch under the model's partnership guard of 0.4."""
    message_path = str(DATA / "pitch" / "b21-037.eml")
    before = CliRunner().invoke(cli, ["classify", message_path])
    assert "\tpitch\t" in before.output
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "config.toml", b"[thresholds]\nmin_confidence = 0.5\n")))
    after = CliRunner().invoke(cli, ["classify", message_path])
    assert after.exit_code == 0 and after.output == before.output


def test_train_refuses_an_output_it_cannot_write_before_training(runner, tmp_path):
    plain = write(tmp_path / "plain.txt", b"x")
    for output, words in ((tmp_path, "is a folder"), (plain / "m.model", "is a file, not a folder")):
        result = runner.invoke(cli, ["train", str(DATA), "-o", str(output), "--force"])
        assert result.exit_code == 1 and words in result.output and "cross-validated" not in result.output


def test_train_never_writes_its_model_over_what_it_reads(runner, tmp_path):
    """Sources are only read: `train labels.csv -o labels.csv --force` would replace the
    corrected labels with a model, and `train --personal -o` the learning store."""
    mbox = _mbox(tmp_path, [PITCH_TEXT, OTHER_TEXT])
    before = mbox.read_bytes()
    for args in (["--label", "pitch", str(mbox)], ["--personal", "--store", str(mbox)]):
        result = runner.invoke(cli, ["train", *args, "-o", str(mbox), "--force"])
        assert result.exit_code == 1 and "writing the model there would replace it" in result.output, result.output
        assert mbox.read_bytes() == before


def test_train_with_default_data_adds_the_bundled_corpus(runner, tmp_path, monkeypatch):
    import shutil

    small = tmp_path / "corpus"
    for label in ("partnership", "pitch", "other"):
        (small / label).mkdir(parents=True)
        for path in sorted((DATA / label).glob("*.eml"))[:15]:
            shutil.copy(path, small / label)
    monkeypatch.setattr("partnercheck.settings.default_corpus", lambda: str(small))
    mbox = _mbox(tmp_path, [PITCH_TEXT])
    model = tmp_path / "m.model"
    result = runner.invoke(cli, ["train", "--label", "pitch", str(mbox), "--with-default-data", "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert "messages: 46" in result.output and model.exists()


def test_ctrl_c_before_any_row_leaves_an_existing_output_alone(runner, tmp_path, monkeypatch):
    import partnercheck.running.batch as batch

    mbox = _mbox(tmp_path, [PITCH_TEXT, OTHER_TEXT])
    out = write(tmp_path / "labels.csv", "an earlier, finished file\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "classify_records", interrupted)
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(out)])
    assert result.exit_code == 130 and "nothing changed" in result.stderr
    assert out.read_text() == "an earlier, finished file\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_output_onto_a_folder_is_one_line(runner, tmp_path):
    mbox = _mbox(tmp_path, [PITCH_TEXT])
    (tmp_path / "somedir").mkdir()
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(tmp_path / "somedir")])
    assert result.exit_code == 1 and "cannot write here" in result.output
    assert "internal error" not in result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_label_never_writes_over_its_source_nor_waits_on_a_pipe_with_no_reader(runner, tmp_path):
    mbox = _mbox(tmp_path, [PITCH_TEXT])
    before = mbox.read_bytes()
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(mbox)])
    assert result.exit_code == 1 and "is a SOURCE" in result.output and mbox.read_bytes() == before
    os.mkfifo(tmp_path / "pipe")  # with no reader: said at once, rather than waiting for one
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(tmp_path / "pipe")])
    assert result.exit_code == 1 and "a pipe with no reader" in result.output
    # a symlink is written through, and the file keeps its mode
    target = write(tmp_path / "labels.csv", b"old")
    os.chmod(target, 0o600)
    os.symlink(target, tmp_path / "link.csv")
    assert runner.invoke(cli, ["label", str(mbox), "-o", str(tmp_path / "link.csv")]).exit_code == 0
    assert os.path.islink(tmp_path / "link.csv") and target.read_text().startswith("source,key")
    assert os.stat(target).st_mode & 0o777 == 0o600


def test_rows_with_undecodable_names_and_lone_surrogates_are_written(runner, tmp_path):
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / os.fsdecode(b"bad\xff.eml")).write_bytes(message("a", PITCH_TEXT))
    (folder / "utf7.eml").write_bytes(b"Subject: =?utf-7?q?+2AA-?=\nContent-Type: text/plain; charset=utf-7\n\n"
                                      + OTHER_TEXT.encode() + b" +2AA-\n")
    out = tmp_path / "labels.csv"
    for args in (["-o", str(out)], ["-o", str(out), "--resume"]):
        result = runner.invoke(cli, ["label", str(folder), *args])
        assert result.exit_code == 0, result.output
    rows = out.read_bytes().splitlines()
    assert len(rows) == 3 and any(b"bad\xff.eml" in row for row in rows)  # the name's own bytes, once
    assert "labelled 0 messages" in result.stderr  # --resume found both rows done


def test_a_maildir_message_renamed_by_the_mail_program_is_the_same_message(runner, tmp_path):
    """Reading or flagging a message renames its file (new/ to cur/, flags after ':2,'):
    --resume does not label it again, and a label file still finds it."""
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1700000000.1.host:2,S").write_bytes(message("a", PITCH_TEXT))
    (maildir / "new" / "1700000001.2.host").write_bytes(message("b", OTHER_TEXT))
    out = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(maildir), "-o", str(out)]).exit_code == 0
    (maildir / "cur" / "1700000000.1.host:2,S").rename(maildir / "cur" / "1700000000.1.host:2,RS")
    (maildir / "new" / "1700000001.2.host").rename(maildir / "cur" / "1700000001.2.host:2,S")
    result = runner.invoke(cli, ["label", str(maildir), "-o", str(out), "--resume"])
    assert result.exit_code == 0 and "labelled 0 messages" in result.stderr
    assert [r["subject"] for r in csv.DictReader(out.open())] == ["a", "b"]
    records = list(Source(str(out)))
    assert [(r.subject, r.label) for r in records] == [("a", "pitch"), ("b", "other")]


@pytest.mark.parametrize("command", [["label"], ["classify"], ["learn", "--as", "pitch"]])
def test_standard_input_named_twice_is_refused_not_read_as_an_empty_message(runner, command):
    result = runner.invoke(cli, [*command, "-", "-"], input=message("a", PITCH_TEXT))
    assert result.exit_code == 2 and "more than once" in result.output and "unreadable" not in result.output


def test_resume_refuses_a_file_of_other_columns(runner, tmp_path):
    mbox = _mbox(tmp_path, [PITCH_TEXT])
    other = write(tmp_path / "people.csv", b"name,email\nAna,ana@x.example\n")
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(other), "--resume"])
    assert result.exit_code == 1 and "cannot resume" in result.output
    assert other.read_bytes() == b"name,email\nAna,ana@x.example\n"
    lines = write(tmp_path / "l.jsonl", b"[1, 2]\n")
    result = runner.invoke(cli, ["label", str(mbox), "-o", str(lines), "--resume"])
    assert result.exit_code == 1 and "cannot resume" in result.output and "internal error" not in result.output


def test_a_full_disk_leaves_whole_rows(tmp_path, monkeypatch):
    from partnercheck.running import outputs

    writer = outputs.RowWriter(str(tmp_path / "l.csv"), "csv", ["source", "key", "verdict"])
    writer.write(["a.mbox", "1", "pitch"])
    real_write = os.write

    def disk_full(fd, data):
        real_write(fd, data[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "write", disk_full)
    with pytest.raises(outputs.OutputError, match="No space left"):
        writer.write(["a.mbox", "2", "other"])
    monkeypatch.undo()
    writer.close()
    assert (tmp_path / "l.csv").read_text() == "source,key,verdict\na.mbox,1,pitch\n"

