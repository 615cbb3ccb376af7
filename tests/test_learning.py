"""Learning from corrections: the store, learn/forget, the sender memory and the personal model."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    DATA,
    OTHER_TEXT,
    PARTNERSHIP_TEXT,
    PITCH_TEXT,
    ROOT,
    message,
    write,
)
from dovecot_server import _descendants

from partnercheck.deciding.classify import classify_one
from partnercheck.deciding.policy import Policy, load_policy
from partnercheck.deciding.model import load_model
from partnercheck.interface.cli import cli
from partnercheck.learning import memory
from partnercheck.learning.corrections import (
    Store,
    content_key,
    corpus_features,
    read_memory,
    retrain_personal,
    store_path,
)
from partnercheck.reading.mail import parse_message
from partnercheck.reading.sources import Source
from partnercheck.settings import default_model_path, model_path, personal_model_path


def record(subject, body, sender="Ana Ruiz <ana@fernhollow.example>", extra=""):
    return parse_message(message(subject, body, sender, extra), key="m.eml")


# ------------------------------------------------------------------------ store paths

def test_store_path_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_path() == str(tmp_path / "xdg" / "partnercheck" / "learned.sqlite3")
    assert store_path(None, {"store": "~/s.sqlite3"}) == os.path.expanduser("~/s.sqlite3")
    monkeypatch.setenv("PARTNERCHECK_STORE", str(tmp_path / "env.sqlite3"))
    assert store_path(None, {"store": "/elsewhere"}) == str(tmp_path / "env.sqlite3")
    assert store_path(str(tmp_path / "opt.sqlite3")) == str(tmp_path / "opt.sqlite3")
    monkeypatch.delenv("PARTNERCHECK_STORE")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store_path() == str(tmp_path / "home" / ".local" / "share" / "partnercheck" / "learned.sqlite3")


# ---------------------------------------------------------------- learn, relearn, forget

def test_learn_relearn_under_another_label_and_forget(tmp_path):
    pitch = record("quick question", PITCH_TEXT)
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        first = store.learn([pitch], "pitch")
        assert (first.added, first.relabelled, first.unchanged) == (1, 0, 0)
        assert first.line().startswith("learned 1 message as pitch: 1 added, 0 relabelled, 0 unchanged")
        again = store.learn([pitch], "pitch")
        assert (again.added, again.relabelled, again.unchanged) == (0, 0, 1)
        other = store.learn([pitch], "other")
        assert (other.added, other.relabelled, other.unchanged) == (0, 1, 0)
        assert len(store) == 1 and store.counts() == {"other": 1}
        (stored,) = store.records()
        assert stored.label == "other" and stored.subject == "quick question" and "pre-vetted" in stored.body
        assert store.forget([pitch]) == 1
        assert len(store) == 0 and store.forget([pitch]) == 0


def test_same_message_by_message_id_or_content(tmp_path):
    raw = message("hello", PARTNERSHIP_TEXT)
    filtered = b"X-Partnercheck: pitch; score=0.90\n" + raw  # as the filter delivered it
    resent = raw.replace(b"No money changes hands otherwise.", b"No money changes hands.")  # same Message-ID
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.learn([parse_message(raw)], "partnership")
        assert store.learn([parse_message(filtered)], "partnership").unchanged == 1
        assert content_key(parse_message(raw)) == content_key(parse_message(filtered))
        assert store.learn([parse_message(resent)], "partnership").unchanged == 1
        assert len(store) == 1


def test_unreadable_messages_are_skipped(tmp_path):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        summary = store.learn([parse_message(b"")], "pitch")
    assert summary.unreadable == 1 and summary.added == 0 and "unreadable" in summary.line()


def test_table_rows_and_large_messages_keep_their_text(tmp_path):
    csv_path = write(tmp_path / "t.csv", "subject,body,from\nhello,\"" + OTHER_TEXT + "\",li@x.example\n")
    big = message("big", PITCH_TEXT + "\n" + "x" * 100 + ("\nfiller line" * 8000))
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.learn(Source(str(csv_path)), "other")
        store.learn([parse_message(big)], "pitch")
        records = {r.subject: r for r in store.records()}
    assert "Invoice #4411" in records["hello"].body and records["hello"].from_addr == "li@x.example"
    assert "pre-vetted developers" in records["big"].body


# ------------------------------------------------------------------------ command line

@pytest.fixture
def runner():
    return CliRunner()


def _folder(tmp_path, count=3):
    folder = tmp_path / "corrections"
    for i in range(count):
        write(folder / f"{i}.eml", message(f"partners {i}", PARTNERSHIP_TEXT + f"\n\nidea {i}",
                                           sender=f"Ana <ana{i}@fernhollow.example>"))
    return folder


@pytest.mark.parametrize("to", [
    "Jörg Brandt <jörg@beispiel.example>, info@bücher.example",
    '"Doe, Jo" <jd@x.example>, =?iso-8859-1?Q?M=FCller=2C_Hans?= <hans@x.example>',
    '"John \\"JJ\\" Smith" <j@x.example>',
    "=?utf-8?q?=3D=3Futf-8=3Fq=3FJo=3F=3D?= <jo@x.example>, b@x.example",  # a name that reads '=?utf-8?q?Jo?='
])
def test_a_large_message_is_stored_reduced_with_its_recipients_and_reads_back_the_same(tmp_path, to):
    """Past 64 KB the store keeps a plain-text message of what partnercheck reads; its To
    header must hold any name or address and give back the same recipients and tokens."""
    from partnercheck.learning.corrections import reduced_message
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    raw = (f"From: Ana <ana@a.example>\nTo: {to}\nSubject: Hi Jo\nMIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=utf-8\n\nHi Jörg, Hans and Jo, shall we run the meetup together?\n"
           + "x" * 70_000 + "\n").encode()
    record = parse_message(raw)
    again = parse_message(reduced_message(record))
    assert (again.to, again.to_names) == (record.to, record.to_names) and len(record.to) >= 1
    assert extract(again, builtin_rules()).tokens == extract(record, builtin_rules()).tokens
    store = tmp_path / "store.sqlite3"
    path = tmp_path / "big.eml"
    path.write_bytes(raw)
    result = CliRunner().invoke(cli, ["learn", "--as", "pitch", "--no-retrain", "--store", str(store), str(path)])
    assert result.exit_code == 0 and "learned 1 message as pitch" in result.output, result.output


def test_learn_a_folder_twice_changes_nothing(runner, tmp_path):
    folder = _folder(tmp_path)
    first = runner.invoke(cli, ["learn", "--as", "partnership", str(folder)])
    assert first.exit_code == 0, first.output
    assert "learned 3 messages as partnership: 3 added, 0 relabelled, 0 unchanged" in first.stderr
    personal = personal_model_path(store_path())
    assert os.path.exists(personal) and "personal model retrained" in first.stderr
    with Store.open() as store:
        before = (store.fingerprint(), store.sender_entries())
    stamp = os.stat(personal).st_mtime_ns
    second = runner.invoke(cli, ["learn", "--as", "partnership", str(folder)])
    assert second.exit_code == 0
    assert "0 added, 0 relabelled, 3 unchanged" in second.stderr and "retrained" not in second.stderr
    with Store.open() as store:
        assert (store.fingerprint(), store.sender_entries()) == before
    assert os.stat(personal).st_mtime_ns == stamp
    # A learn cut short before its retrain leaves the model behind; the next run catches up.
    os.unlink(personal)
    third = runner.invoke(cli, ["learn", "--as", "partnership", str(folder)])
    assert "3 unchanged" in third.stderr and "personal model retrained" in third.stderr
    assert os.path.exists(personal)


def test_a_personal_model_retrained_from_the_feature_cache_shows_words_not_stems(tmp_path):
    """A process that reads the corpus's tokens from the cache stems none of its words: the
    model it made had shown "pleas" and "everi" in every explanation."""
    folder = _folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for label in ("partnership", "pitch"):  # the second run finds the cache the first one left
        run = subprocess.run([sys.executable, "-m", "partnercheck", "learn", "--as", label, str(folder)],
                             env=env, capture_output=True, timeout=600)
        assert run.returncode == 0 and b"personal model retrained" in run.stderr, run.stderr
    assert load_model(personal_model_path(store_path())).surface_word("pleas") == "please"


def test_learn_says_when_commands_will_not_use_the_personal_model(runner, tmp_path):
    """With a model named by $PARTNERCHECK_MODEL (or the config file), a correction changes
    nothing that classify, filter or label say: learn must not let that pass unsaid."""
    from partnercheck.settings import default_model_path

    folder = _folder(tmp_path)
    result = runner.invoke(cli, ["learn", "--as", "partnership", str(folder)],
                           env={"PARTNERCHECK_MODEL": default_model_path()})
    assert result.exit_code == 0 and "personal model retrained" in result.stderr
    assert f"but classify, filter and label use {default_model_path()}" in result.stderr


def test_learn_a_maildir_folder_twice_changes_nothing(runner, tmp_path):
    maildir = tmp_path / "Maildir" / ".Learn.Pitch"
    write(maildir / "new" / "1.host", message("offer", PITCH_TEXT, sender="Tom <tom@vendor.example>"))
    write(maildir / "cur" / "2.host:2,S", message("offer again", PITCH_TEXT + "\nagain",
                                                   sender="Tom <tom@vendor.example>"))
    (maildir / "tmp").mkdir()
    first = runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", str(maildir)])
    assert "2 added" in first.stderr and "tom@vendor.example on the block list" in first.stderr
    second = runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", str(maildir)])
    assert "0 added, 0 relabelled, 2 unchanged" in second.stderr and "senders" not in second.stderr


@pytest.mark.parametrize("args", [["-"], []], ids=["dash", "no-source"])
def test_learn_from_stdin_list_export_and_forget(runner, tmp_path, args):
    """With - or no SOURCE, as `sa-learn --spam < message` reads it."""
    raw = message("quick question", PITCH_TEXT, sender="Tom <tom@vendor.example>")
    result = runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", *args], input=raw)
    assert result.exit_code == 0 and "1 added" in result.stderr
    listed = runner.invoke(cli, ["learned", "--nl"])
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["label"] == "pitch" and row["from"] == "tom@vendor.example" and row["origin"] == "stdin"
    assert "pitch 1" in listed.stderr
    csv_rows = runner.invoke(cli, ["learned"]).stdout.splitlines()
    assert csv_rows[0].startswith("key,message_id,label,from") and len(csv_rows) == 2
    exported = tmp_path / "corrections.jsonl"
    assert runner.invoke(cli, ["learned", "--export", str(exported)]).exit_code == 0
    (again,) = list(Source(str(exported)))
    assert again.label == "pitch" and again.subject == "quick question"
    again = runner.invoke(cli, ["learned", "--export", str(exported)])
    assert again.exit_code == 1 and "exists" in again.output  # an earlier export is not replaced unasked
    folder = tmp_path / "exported"
    assert runner.invoke(cli, ["learned", "--export", str(folder)]).exit_code == 0
    assert [r.label for r in Source(str(folder))] == ["pitch"]
    as_csv = runner.invoke(cli, ["learned", "--export", str(tmp_path / "corrections.csv")])
    assert as_csv.exit_code == 1 and ".jsonl file or a folder" in as_csv.output
    assert not (tmp_path / "corrections.csv").exists()
    unknown = runner.invoke(cli, ["learned", "--forget-key", "0" * 32 if row["key"] != "0" * 32 else "1" * 32])
    assert unknown.exit_code == 1 and "no correction has the key" in unknown.output
    forgot = runner.invoke(cli, ["learned", "--forget-key", row["key"][:6]])  # a start of it, as git takes
    assert forgot.exit_code == 0 and "forgot 1 correction; 0 left" in forgot.stderr
    assert runner.invoke(cli, ["learned"]).stdout.splitlines()[1:] == []


def test_labels_on_the_command_line_take_any_case_as_label_files_do(runner, tmp_path):
    result = runner.invoke(cli, ["learn", "--as", "PITCH", "--no-retrain", "-"], input=message("x", PITCH_TEXT))
    assert result.exit_code == 0, result.output
    assert [row.split(",")[2] for row in runner.invoke(cli, ["learned"]).stdout.splitlines()[1:]] == ["pitch"]


def test_learn_options_that_do_not_go_together(runner, tmp_path):
    path = write(tmp_path / "m.eml", message("x", OTHER_TEXT))
    assert runner.invoke(cli, ["learn", "--as", "pitch", "--forget", str(path)]).exit_code == 2
    assert runner.invoke(cli, ["learn", "--as", "unsure", str(path)]).exit_code == 2
    assert runner.invoke(cli, ["learn", "--as", "pitch", "--all", str(path)]).exit_code == 2
    assert not os.path.exists(store_path())
    result = runner.invoke(cli, ["learn", str(path)])  # no label anywhere: nothing to learn
    assert result.exit_code == 0 and "0 added" in result.stderr and "1 without a label" in result.stderr


def test_learn_from_a_corrected_label_file(runner, tmp_path):
    folder = tmp_path / "inbox"
    write(folder / "a.eml", message("quick question", PITCH_TEXT, sender="Tom <tom@vendor.example>"))
    write(folder / "b.eml", message("minutes", OTHER_TEXT, sender="Li <li@work.example>"))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(folder), "-o", str(labels), "-q"]).exit_code == 0
    text = labels.read_text()
    assert ",pitch," in text and ",other," in text
    labels.write_text(text.replace(",pitch,", ",partnership,"))  # the user's correction
    result = runner.invoke(cli, ["learn", str(labels), "--no-retrain"])
    assert result.exit_code == 0, result.output
    assert "learned 1 message under their own labels: 1 added" in result.stderr
    assert "1 already labelled so, skipped" in result.stderr
    with Store.open() as store:
        assert store.counts() == {"partnership": 1}
    everything = runner.invoke(cli, ["learn", "--all", str(labels), "--no-retrain"])
    assert "1 added, 0 relabelled, 1 unchanged" in everything.stderr
    # a typo in the verdict column is not taken for "no label": it is named, and the exit says so
    labels.write_text(labels.read_text().replace(",partnership,", ",spam,"))
    typo = runner.invoke(cli, ["learn", "--all", str(labels), "--no-retrain"])
    assert typo.exit_code == 1 and "'spam' 1x" in typo.stderr and "the others learned" in typo.stderr


def test_a_message_given_two_labels_in_one_label_file_is_named(runner, tmp_path):
    """Two copies of one message corrected differently: learn says which label it learned
    (train refuses such a file); one row repeated with another label is refused."""
    folder = tmp_path / "inbox"
    for name in ("a.eml", "copy-of-a.eml"):
        write(folder / name, message("quick question", PITCH_TEXT, sender="Tom <tom@vendor.example>"))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(folder), "-o", str(labels), "-q"]).exit_code == 0
    header, first, second = labels.read_text().splitlines()
    labels.write_text("\n".join([header, first.replace(",pitch,", ",partnership,"),
                                  second.replace(",pitch,", ",other,")]) + "\n")
    result = runner.invoke(cli, ["learn", "--all", str(labels), "--no-retrain"])
    assert result.exit_code == 0, result.output
    assert "1 message(s) given two labels, the later one learned: inbox:copy-of-a.eml (partnership, then other)" \
        in result.stderr
    with Store.open() as store:
        assert store.counts() == {"other": 1}
    labels.write_text("\n".join([header, first.replace(",pitch,", ",partnership,"),
                                  first.replace(",pitch,", ",other,")]) + "\n")
    repeated = runner.invoke(cli, ["learn", "--all", str(labels), "--no-retrain"])
    assert repeated.exit_code == 1 and "rows 1 and 2 both name" in repeated.output


def _corrected_label_file(runner, tmp_path) -> tuple[Path, list[dict]]:
    """Two messages of an mbox labelled, and both verdicts corrected in the label file."""
    mbox = tmp_path / "inbox.mbox"
    mbox.write_bytes(b"".join(b"From x@y.example Mon Jan  1 00:00:00 2024\n" + raw + b"\n" for raw in (
        message("quick question", PITCH_TEXT, sender="tom@vendor.example"),
        message("minutes", OTHER_TEXT, sender="li@work.example"))))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(mbox), "-o", str(labels), "-q"]).exit_code == 0
    rows = list(csv.DictReader(labels.open()))
    rows[0]["verdict"], rows[1]["verdict"] = "partnership", "pitch"
    return labels, rows


def _write_rows(labels: Path, rows: list[dict]) -> None:
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_label_file_naming_a_mailbox_that_is_gone_is_refused_before_anything_is_learned(runner, tmp_path):
    labels, rows = _corrected_label_file(runner, tmp_path)
    rows[1]["source"] = str(tmp_path / "moved.mbox")
    _write_rows(labels, rows)
    result = runner.invoke(cli, ["learn", str(labels)])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'moved.mbox'}: no such file or directory (named by {labels}, row 2)"]
    assert not os.path.exists(store_path()) or len(Store.open()) == 0


def test_a_message_gone_from_its_mailbox_stops_learn_after_the_others_are_learned_and_retrained(
        runner, tmp_path, monkeypatch):
    """As sa-learn goes on past a message it cannot read: what was read takes effect (the
    personal model retrained with it), and the exit status and last line say what was not."""
    from partnercheck.learning import corrections

    retrained = []
    monkeypatch.setattr(corrections, "retrain_personal",
                        lambda store: retrained.append(len(store)) or corrections.RetrainSummary("p.model", 1, 1))
    labels, rows = _corrected_label_file(runner, tmp_path)
    rows[1]["key"], rows[1]["message_id"] = "9", "<gone@work.example>"
    _write_rows(labels, rows)
    result = runner.invoke(cli, ["learn", str(labels)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and lines[0].startswith("learned 1 message under their own labels: 1 added")
    assert lines[-1] == f"Error: {labels}: 1 message(s) listed for {tmp_path / 'inbox.mbox'} are no longer in it"
    assert retrained == [1]
    with Store.open() as store:
        assert store.counts() == {"partnership": 1}


def test_label_file_cells_are_kept_from_spreadsheet_formulas(runner, tmp_path):
    """Text a spreadsheet would run as a formula is written with a ' before it and read back
    as it was: the rows still find their messages, one of them by its subject alone."""
    folder = tmp_path / "inbox"
    formula = '=HYPERLINK("https://x.example/","open")'
    pitch = message(formula, PITCH_TEXT, sender="Tom <tom@vendor.example>")
    write(folder / "=a.eml", b"".join(line for line in pitch.splitlines(True) if not line.startswith(b"Message-ID")))
    write(folder / "b.eml", message("'=minutes", OTHER_TEXT, sender="Li <li@work.example>"))
    labels = tmp_path / "labels.csv"
    assert runner.invoke(cli, ["label", str(folder), "-o", str(labels), "-q"]).exit_code == 0
    rows = list(csv.DictReader(labels.open(newline="")))
    assert [(r["key"], r["subject"]) for r in rows] == [("'=a.eml", "'" + formula), ("b.eml", "''=minutes")]
    as_json = runner.invoke(cli, ["label", str(folder), "--nl", "-q"]).stdout
    assert [json.loads(line)["subject"] for line in as_json.splitlines()] == [formula, "'=minutes"]
    resumed = runner.invoke(cli, ["label", str(folder), "-o", str(labels), "--resume"])
    assert resumed.exit_code == 0 and "2 already done" in resumed.stderr
    assert list(csv.DictReader(labels.open(newline=""))) == rows
    labels.write_text(labels.read_text().replace(",pitch,", ",partnership,"))  # the user's correction
    result = runner.invoke(cli, ["learn", str(labels), "--no-retrain"])
    assert result.exit_code == 0 and "1 added" in result.stderr, result.output


def test_a_broken_store_is_one_line(runner, tmp_path, monkeypatch):
    bad = write(tmp_path / "bad.sqlite3", b"this is not a database" * 100)
    monkeypatch.setenv("PARTNERCHECK_STORE", str(bad))
    result = runner.invoke(cli, ["learned"])
    assert result.exit_code == 1 and "learning store" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- crashes and the server

def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PARTNERCHECK_MODEL", "PARTNERCHECK_STORE")}
    env.update({"PYTHONPATH": str(ROOT / "src"), "XDG_DATA_HOME": str(tmp_path / "data")}, **extra)
    return env


def _mbox(path, files):
    with open(path, "wb") as out:
        for file in files:
            raw = file.read_bytes().replace(b"\r\n", b"\n")
            body = b"\n".join(b">" + line if line.startswith((b"From ", b">From ")) else line
                              for line in raw.split(b"\n"))
            out.write(b"From someone@example.org Mon Jan  1 00:00:00 2024\n" + body.rstrip(b"\n") + b"\n\n")
    return path


def _mounts_private_folders() -> bool:
    return os.geteuid() == 0 and subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _mounts_private_folders(), reason="needs root and unshare to mount a read-only folder")
def test_a_store_that_cannot_be_written_beside_still_gives_the_filter_its_sender_memory(tmp_path):
    """A store on a read-only file system (or in a folder the mail server's user may not
    write, where SQLite cannot make the -shm file that reading a WAL database asks for):
    filter and classify honour its blocked senders, where every message failed to classify."""
    folder, mail = tmp_path / "ro", write(tmp_path / "m.eml", message("hello", OTHER_TEXT, "x@spamvendor.example"))
    folder.mkdir()
    env = _env(tmp_path, PARTNERCHECK_STORE=str(folder / "learned.sqlite3"))
    cli_run = f"{sys.executable} -m partnercheck"
    script = (f"mount -t tmpfs tmpfs {folder} && {cli_run} senders block spamvendor.example && "
              f"mount -o remount,ro {folder} && {cli_run} classify {mail} && {cli_run} filter < {mail}")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True)
    assert "Read-only file system" not in result.stderr and "cannot read" not in result.stderr, result.stderr
    assert "\tpitch\t" in result.stdout and "learned: sender spamvendor.example" in result.stdout, result.stdout
    assert "X-Partnercheck: pitch" in result.stdout, result.stdout


@pytest.mark.skipif(not _mounts_private_folders(), reason="needs root and unshare to mount a read-only folder")
def test_a_store_on_a_read_only_file_system_can_be_listed_and_exported_and_says_it_cannot_be_written(tmp_path):
    folder, mail = tmp_path / "ro", write(tmp_path / "m.eml", message("hello", PITCH_TEXT, "x@vendor.example"))
    folder.mkdir()
    env = _env(tmp_path, PARTNERCHECK_STORE=str(folder / "learned.sqlite3"))
    cli_run = f"{sys.executable} -m partnercheck"
    script = (f"mount -t tmpfs tmpfs {folder} && {cli_run} learn --as pitch --no-retrain -q {mail} && "
              f"{cli_run} senders block spamvendor.example && mount -o remount,ro {folder} && "
              f"{cli_run} learned && {cli_run} senders && {cli_run} learned --export {tmp_path / 'out.jsonl'} && "
              f"{cli_run} senders block other.example")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, text=True)
    assert ",pitch,x@vendor.example,hello," in result.stdout and "spamvendor.example,block" in result.stdout
    assert [r.subject for r in Source(str(tmp_path / "out.jsonl"))] == ["hello"]
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"Error: {folder / 'learned.sqlite3'}: the learning store cannot be written here (unable to open database file)")


def test_kill_9_during_learn_keeps_the_store_whole(tmp_path):
    files = sorted(DATA.glob("*/*.eml"))
    mbox = _mbox(tmp_path / "all.mbox", files)
    total = len({content_key(r) for r in Source(str(mbox))})
    env = _env(tmp_path)
    path = os.path.join(env["XDG_DATA_HOME"], "partnercheck", "learned.sqlite3")
    proc = subprocess.Popen([sys.executable, "-m", "partnercheck", "learn", "--as", "other", "--no-retrain",
                             str(mbox)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stored = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(path):
                try:
                    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
                    stored = db.execute("SELECT count(*) FROM corrections").fetchone()[0]
                    db.close()
                except sqlite3.OperationalError:
                    stored = 0
                if stored >= 20:
                    break
            time.sleep(0.005)
        assert proc.poll() is None, "learn finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = db.execute("SELECT count(*) FROM corrections").fetchone()[0]
    db.close()
    assert stored <= kept < total
    with Store.open(path) as store:  # usable: learning again adds exactly what was missing
        summary = store.learn(Source(str(mbox)), "other")
        assert summary.added == total - kept and summary.unchanged == kept
        assert store.integrity() == "ok" and len(store) == total


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_running_server_picks_up_what_learn_changed(tmp_path):
    from partnercheck.interface import client

    sock = str(tmp_path / "pc.sock")
    env = _env(tmp_path, PARTNERCHECK_SOCKET=sock)
    log_path = tmp_path / "serve.log"
    mails = [write(tmp_path / f"m{i}.eml", message(f"catalogue {i}", OTHER_TEXT + f"\n\nref {i}",
                                                   sender="Tom <tom@vendor.example>")) for i in range(3)]
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "partnercheck", "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert _wait_for(lambda: os.path.exists(sock)), log_path.read_text()
        third = mails[2].read_bytes()
        before = client.classify_remote(third, sock)["label"]
        assert before != "pitch"
        learned = subprocess.run([sys.executable, "-m", "partnercheck", "learn", "--as", "pitch",
                                  str(mails[0]), str(mails[1])], env=env, capture_output=True, timeout=120)
        assert learned.returncode == 0, learned.stderr
        assert b"tom@vendor.example on the block list" in learned.stderr
        personal = personal_model_path(os.path.join(env["XDG_DATA_HOME"], "partnercheck", "learned.sqlite3"))
        assert os.path.exists(personal)
        # The sender memory and the personal model are picked up without a restart.
        assert _wait_for(lambda: client.classify_remote(third, sock)["label"] == "pitch", 30)
        assert _wait_for(lambda: f"reloaded {personal}" in log_path.read_text(), 30), log_path.read_text()
        reloads = log_path.read_text().count("reloaded")
        server.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: log_path.read_text().count("reloaded") > reloads, 30)
        assert client.classify_remote(third, sock)["label"] == "pitch"
        # A SIGHUP that reaches the workers too (a closed terminal signals the whole group)
        # leaves them serving: none is stuck in a reload of its own and answered "too slow".
        workers = _descendants(server.pid)
        assert workers
        for worker in workers:
            os.kill(worker, signal.SIGHUP)
        replies = [client.classify_remote(third, sock) for _ in range(2 * len(workers))]
        assert all(reply["label"] == "pitch" for reply in replies), replies
    finally:
        server.terminate()
        server.wait(timeout=10)


# ------------------------------------------------------------------------ sender memory

def _pitches(sender="Tom <tom@vendor.example>", threads=2, extra=""):
    return [record(f"offer {i}", PITCH_TEXT + f"\n\nref {i}", sender=sender, extra=extra) for i in range(threads)]


def test_marked_pitch_in_two_threads_blocks_the_sender_for_a_while(tmp_path, shipped_model):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        first, second = _pitches()
        assert store.learn([first], "pitch").senders == []
        assert store.learn([second], "pitch").senders == ["tom@vendor.example on the block list"]
        mem = store.memory()
    entry = mem.lookup("tom@vendor.example")
    assert entry.kind == "block" and entry.origin == "learned" and entry.expires is not None
    assert mem.lookup("tom@vendor.example", now=time.time() + (memory.LEARNED_BLOCK_DAYS + 1) * memory.DAY) is None
    assert mem.lookup("ana@vendor.example") is None  # an address, not the whole domain
    verdict = classify_one(record("hello", OTHER_TEXT, sender="tom@vendor.example"), shipped_model, Policy(memory=mem))
    assert verdict.label == "pitch" and verdict.decided_by.startswith("learned: sender tom@vendor.example")
    assert "learned: sender" in verdict.summary()


def test_one_junked_thread_does_not_block(tmp_path):
    thread = "In-Reply-To: <root@vendor.example>\nReferences: <root@vendor.example>\n"
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.learn(_pitches(threads=3, extra=thread), "pitch")
        assert not store.memory()


def test_corrected_away_from_pitch_is_never_pitch_again(tmp_path, shipped_model):
    pitchy = record("quick question", PITCH_TEXT, sender="Bo <bo@roastery.example>")
    assert classify_one(pitchy, shipped_model).label == "pitch"
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        summary = store.learn([pitchy], "partnership", judge=lambda r: classify_one(r, shipped_model).label)
        assert summary.senders == ["bo@roastery.example on the allow list"]
        mem = store.memory()
        later = record("pricing", PITCH_TEXT + "\nAnother offer.", sender="bo@roastery.example")
        verdict = classify_one(later, shipped_model, Policy(memory=mem))
        assert verdict.label != "pitch" and verdict.decided_by.startswith("learned: sender bo@roastery.example")
        # An explicit config block still wins over the learned allow, and says so.
        blocked = classify_one(later, shipped_model, Policy(memory=mem, block=frozenset({"roastery.example"})))
        assert blocked.label == "pitch" and blocked.decided_by == "sender is on your block list"
        # Forgetting the correction takes the allow back.
        assert store.forget([pitchy]) == 1 and not store.memory()


def test_relabelling_a_correction_away_from_pitch_keeps_the_sender_allowed(tmp_path):
    """Said partnership, then other: the message was still a pitch to begin with, though
    the allow list it earned makes partnercheck no longer say so."""
    path = tmp_path / "m.eml"
    path.write_bytes(message("quick question", PITCH_TEXT, sender="Bo <bo@roastery.example>"))
    runner = CliRunner()
    first = runner.invoke(cli, ["learn", "--no-retrain", "--as", "partnership", str(path)])
    assert "bo@roastery.example on the allow list" in first.stderr
    second = runner.invoke(cli, ["learn", "--no-retrain", "--as", "other", str(path)])
    assert second.exit_code == 0 and "off the allow list" not in second.stderr, second.stderr
    verdict = runner.invoke(cli, ["classify", str(path)])
    assert "\tpitch\t" not in verdict.stdout and "learned: sender bo@roastery.example" in verdict.stdout


def test_the_filter_header_tells_a_correction_away_from_pitch(tmp_path):
    raw = b"X-Partnercheck: pitch; score=0.91; rules=PRICE_PLANS\n" + message(
        "breakfast?", PARTNERSHIP_TEXT, sender="Bo <bo@roastery.example>")
    with Store.open(str(tmp_path / "s.sqlite3")) as store:  # no judge: as a library caller would
        assert store.learn([parse_message(raw)], "partnership").senders == ["bo@roastery.example on the allow list"]
        plain = message("hello", OTHER_TEXT, sender="Li <li@work.example>")
        assert store.learn([parse_message(plain)], "other").senders == []


def test_config_allow_wins_over_a_learned_block(tmp_path, shipped_model):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.learn(_pitches(), "pitch")
        mem = store.memory()
    policy = Policy(memory=mem, allow=frozenset({"tom@vendor.example"}))
    verdict = classify_one(record("hello", OTHER_TEXT, sender="tom@vendor.example"), shipped_model, policy)
    assert verdict.label == "other" and not (verdict.decided_by or "").startswith("learned")


def test_relabelling_pitch_to_other_turns_a_block_into_an_allow(tmp_path):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        first, second = _pitches()
        store.learn([first, second], "pitch")
        assert store.memory().lookup("tom@vendor.example").kind == "block"
        summary = store.learn([second], "other")
        assert summary.relabelled == 1 and store.memory().lookup("tom@vendor.example").kind == "allow"


def test_senders_commands_add_list_expire_and_remove(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["senders", "block", "spamvendor.example", "--expires", "30"]).exit_code == 0
    assert runner.invoke(cli, ["senders", "allow", "ana@partner.example", "--note", "our reseller"]).exit_code == 0
    assert runner.invoke(cli, ["senders", "block", "old.example", "--expires", "2020-01-01"]).exit_code == 0
    rows = {r["pattern"]: r for r in map(json.loads, runner.invoke(cli, ["senders", "--nl"]).stdout.splitlines())}
    assert rows["spamvendor.example"]["kind"] == "block" and rows["spamvendor.example"]["expires"]
    assert rows["ana@partner.example"]["note"] == "our reseller" and rows["ana@partner.example"]["active"]
    assert rows["old.example"]["active"] is False
    mem = read_memory()
    assert mem.lookup("x@mail.spamvendor.example").kind == "block" and mem.lookup("x@old.example") is None
    assert load_policy().sender_list(record("hi", OTHER_TEXT, sender="x@spamvendor.example")) == "block"
    assert runner.invoke(cli, ["senders", "remove", "spamvendor.example"]).exit_code == 0
    assert read_memory().lookup("x@spamvendor.example") is None
    assert runner.invoke(cli, ["senders", "block", "@bad"]).exit_code == 2
    assert runner.invoke(cli, ["senders", "block", "x.example", "--expires", "soon"]).exit_code == 2


def test_senders_refuses_entries_no_sender_would_match_and_adds_none_of_them(tmp_path):
    """A wildcard, a display name or a URL would be kept and match nobody: refused, and the
    good entries given with it are not added either (the command failed)."""
    runner = CliRunner()
    for bad in ("*.vendor.example", "Ana <ana@x.example>", "a@b@c.example", "https://vendor.example/", "x..example"):
        result = runner.invoke(cli, ["senders", "block", "good.example", bad])
        assert result.exit_code == 2 and "is not an address or a domain" in result.output, (bad, result.output)
    assert not read_memory()
    assert runner.invoke(cli, ["senders", "allow", "Ana@Partner.Example", "münchen.example"]).exit_code == 0
    assert {e.pattern for e in read_memory().entries.values()} == {"ana@partner.example", "münchen.example"}


def test_an_international_domain_matches_in_either_of_its_forms(tmp_path, monkeypatch):
    """Mail names an international domain in its ASCII form (info@xn--bcher-kva.example):
    `senders block bücher.example`, `allow = ["BÜCHER.example"]` and what is learned from
    that mail all count for it, and the entry is removed as the listing shows it."""
    puny, own = "Info <info@xn--bcher-kva.example>", "Info <info@bücher.example>"
    runner = CliRunner()
    assert runner.invoke(cli, ["senders", "block", "bücher.example"]).exit_code == 0
    for sender in (puny, own):
        assert load_policy().sender_list(record("hi", OTHER_TEXT, sender=sender)) == "block", sender
    assert runner.invoke(cli, ["senders", "remove", "bücher.example"]).exit_code == 0
    assert runner.invoke(cli, ["senders", "allow", "XN--BCHER-KVA.example"]).exit_code == 0
    assert load_policy().sender_list(record("hi", PITCH_TEXT, sender=own)) == "allow"
    assert runner.invoke(cli, ["senders", "remove", "xn--bcher-kva.example"]).exit_code == 0 and not read_memory()
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "config.toml", "allow = ['BÜCHER.example']\n")))
    assert load_policy().sender_list(record("hi", PITCH_TEXT, sender=puny)) == "allow"
    monkeypatch.delenv("PARTNERCHECK_CONFIG")
    with Store.open(store_path()) as store:
        assert store.learn(_pitches(sender=puny), "pitch").senders == ["info@bücher.example on the block list"]
    listed = runner.invoke(cli, ["senders"]).stdout
    assert "info@bücher.example,block,learned" in listed
    assert load_policy().sender_list(record("hi", OTHER_TEXT, sender=own)) == "block"
    assert runner.invoke(cli, ["senders", "remove", "info@bücher.example"]).stderr == "removed 1 of 1\n"
    assert not read_memory()


def test_an_entry_by_hand_that_ran_out_lets_learning_take_over(tmp_path):
    """`senders allow tom@... --expires 30`: once the 30 days are over, Tom's pitches learned
    in two threads block him, as they would have without the entry."""
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.set_sender("tom@vendor.example", "allow", time.time() - 1)
        store.learn(list(_pitches()), "pitch")
        entry = store.memory().lookup("tom@vendor.example")
        assert entry is not None and entry.kind == "block" and entry.origin == "learned"
        store.set_sender("tom@vendor.example", "allow", time.time() + 86400)  # one that lasts is kept
        store.learn([record("one more", PITCH_TEXT + "\nthird", sender="tom@vendor.example")], "pitch")
        assert store.memory().lookup("tom@vendor.example").kind == "allow"


def test_removing_a_learned_entry_by_hand_starts_learning_over(tmp_path):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        first, second = _pitches()
        store.learn([first, second], "pitch")
        assert store.remove_sender("tom@vendor.example")
        time.sleep(0.01)
        third = record("one more", PITCH_TEXT + "\nthird", sender="tom@vendor.example")
        store.learn([third], "pitch")
        assert not store.memory()  # one pitch since the removal: not yet a block
        store.learn([record("and more", PITCH_TEXT + "\nfourth", sender="tom@vendor.example")], "pitch")
        assert store.memory().lookup("tom@vendor.example").kind == "block"


def test_a_store_whose_folder_holds_a_hash_or_question_mark_is_the_one_read(tmp_path, monkeypatch):
    """`~/mail#work/learned.sqlite3`: the filter honours its sender memory, where it read an
    empty file it made at `~/mail` instead, and every blocked sender got through."""
    folder = tmp_path / "mail#work?old"
    monkeypatch.setenv("PARTNERCHECK_STORE", str(folder / "learned.sqlite3"))
    assert CliRunner().invoke(cli, ["senders", "block", "spamvendor.example"]).exit_code == 0
    assert load_policy().sender_list(record("hi", OTHER_TEXT, sender="x@spamvendor.example")) == "block"
    assert sorted(os.listdir(tmp_path)) == ["mail#work?old"]


def test_no_store_means_no_memory_and_nothing_created():
    assert not read_memory() and not load_policy().memory
    assert not os.path.exists(store_path())


# ------------------------------------------------------------------------ personal model

@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("small-corpus")
    for label in ("partnership", "pitch", "other"):
        (folder / label).mkdir()
        for path in sorted((DATA / label).glob("*.eml"))[:40]:
            shutil.copy(path, folder / label / path.name)
    return str(folder)


def test_personal_model_comes_and_goes_with_the_corrections(tmp_path, small_corpus):
    from partnercheck.deciding.model import load_model

    assert model_path() == default_model_path()
    with Store.open() as store:
        mail = record("quick question", PITCH_TEXT, sender="tom@vendor.example")
        store.learn([mail], "partnership")
        result = retrain_personal(store, corpus=small_corpus)
        personal = personal_model_path(store.path)
        assert result.path == personal and result.corrections == 1 and result.corpus == 120
        assert model_path() == personal  # filter, label and classify now use it
        model = load_model(personal)
        assert model.info["personal"] and model.info["corrections"] == 1
        assert model.thresholds == load_model(default_model_path()).thresholds
        # The correction counts: a pitch-worded message learned as partnership is one now.
        assert classify_one(mail, load_model(default_model_path())).label == "pitch"
        assert classify_one(mail, model).label == "partnership"
        store.forget([mail])
        assert retrain_personal(store, corpus=small_corpus).removed
    assert not os.path.exists(personal) and model_path() == default_model_path()


def test_a_corrected_campaign_stays_on_one_side_of_the_calibration_folds(tmp_path, small_corpus, monkeypatch):
    """The personal model's calibration never sees a copy of a campaign on both sides of a
    fold, or its sigmoids learn to be surer than the model (the shipped cut-offs were chosen
    with folds that keep copies together)."""
    from partnercheck.learning import pipeline

    built, real = [], pipeline.build_pipeline

    def spy(**settings):
        built.append(real(**settings))
        return built[-1]

    monkeypatch.setattr(pipeline, "build_pipeline", spy)
    campaign = [record(f"growth idea for {name}", f"Hi {name},\n\n{PITCH_TEXT}", sender=f"Tom <tom{i}@vendor.example>")
                for i, name in enumerate(["Ana", "Ben", "Caro", "Dev", "Eli", "Fay", "Gus", "Hal"])]
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        store.learn(campaign, "pitch")
        retrain_personal(store, corpus=small_corpus)
    folds = built[-1].named_steps["classify"].cv
    y = corpus_features(small_corpus)[1] + ["pitch"] * len(campaign)  # the rows as the fit saw them
    copies = set(range(len(y) - len(campaign), len(y)))
    tested = [copies & set(test.tolist()) for _, test in folds.split(None, y)]
    assert [len(rows) for rows in tested if rows] == [len(campaign)]


def test_an_explicit_model_wins_over_the_personal_one(tmp_path, monkeypatch, small_model_path):
    personal = personal_model_path(store_path())
    write(Path(personal), b"placeholder")
    assert model_path() == personal
    assert model_path(None, {"model": "/m.joblib"}) == "/m.joblib"
    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    assert model_path() == small_model_path


def test_train_personal(tmp_path):
    runner = CliRunner()
    raw = message("quick question", PITCH_TEXT)
    assert runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", "-"], input=raw).exit_code == 0
    assert not os.path.exists(personal_model_path(store_path()))
    result = runner.invoke(cli, ["train", "--personal"])
    assert result.exit_code == 0, result.output
    assert "personal model retrained" in result.output and os.path.exists(personal_model_path(store_path()))
    assert runner.invoke(cli, ["train", "--personal", "x.eml"]).exit_code == 2
    assert runner.invoke(cli, ["train"]).exit_code == 2


def test_train_personal_says_what_is_there_and_makes_no_store(tmp_path):
    """On a fresh install there is nothing to train on and nothing to remove: no store is
    made, and no personal model is said to be removed that never was."""
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--personal"])
    assert result.exit_code == 0 and "nothing learned yet" in result.output, result.output
    assert not os.path.exists(store_path())
    assert runner.invoke(cli, ["train", "--personal", "-o", str(tmp_path / "p.model")]).exit_code == 1
    raw = message("quick question", PITCH_TEXT)
    assert runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", "-"], input=raw).exit_code == 0
    assert runner.invoke(cli, ["learn", "--forget", "--no-retrain", "-"], input=raw).exit_code == 0
    result = runner.invoke(cli, ["train", "--personal"])
    assert result.exit_code == 0 and "removed" not in result.output and "no personal model" in result.output


def test_train_personal_never_overwrites_or_deletes_what_it_should_not(tmp_path):
    runner = CliRunner()
    raw = message("quick question", PITCH_TEXT)
    # a store whose name ends in .model keeps its corrections: its model goes beside it
    named = str(tmp_path / "collection.model")
    assert runner.invoke(cli, ["learn", "--store", named, "--as", "pitch", "--no-retrain", "-"], input=raw).exit_code == 0
    assert runner.invoke(cli, ["train", "--personal", "--store", named]).exit_code == 0
    assert personal_model_path(named) != named and os.path.exists(personal_model_path(named))
    with Store.open(named) as store:
        assert len(store) == 1
    # -o onto an existing file needs --force, and an empty store deletes nothing
    precious = tmp_path / "precious.model"
    precious.write_bytes(b"keep me")
    result = runner.invoke(cli, ["train", "--personal", "--store", named, "-o", str(precious)])
    assert result.exit_code == 1 and "--force" in result.output and precious.read_bytes() == b"keep me"
    empty = str(tmp_path / "empty.sqlite3")
    result = runner.invoke(cli, ["train", "--personal", "--store", empty, "-o", str(precious), "--force"])
    assert result.exit_code == 1 and "no corrections" in result.output and precious.read_bytes() == b"keep me"
    result = runner.invoke(cli, ["train", "--personal", "--store", named, "-o", str(tmp_path)])
    assert result.exit_code == 1 and "is a folder" in result.output


def test_a_locked_store_is_not_called_damaged(tmp_path, monkeypatch):
    import sqlite3

    path = str(tmp_path / "s.sqlite3")
    with Store.open(path) as store:
        store.learn([record("offer", PITCH_TEXT)], "pitch")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **{**k, "timeout": 0.1}))  # not 30 s
    try:
        for args in (["senders", "--store", path, "block", "y.example"],  # readers pass a WAL lock; writers wait
                     ["learn", "--store", path, "--as", "other", "--no-retrain", "-"]):
            result = CliRunner().invoke(cli, args, input=message("minutes", OTHER_TEXT))
            assert result.exit_code == 1 and "database is locked" in result.output, result.output
            assert "damaged" not in result.output and "not a usable" not in result.output
    finally:
        locker.rollback()
        locker.close()


def test_another_programs_database_named_as_the_store_is_left_as_it_was(tmp_path):
    """A --store that names some other SQLite file by mistake is refused in one line, byte
    for byte untouched: no tables added, no journal mode changed."""
    path = str(tmp_path / "notes.sqlite3")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes(text)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    before = Path(path).read_bytes()
    runner = CliRunner()
    for args in (["learn", "--store", path, "--as", "other", "--no-retrain", "-"], ["learned", "--store", path],
                 ["senders", "--store", path, "block", "y.example"]):
        result = runner.invoke(cli, args, input=message("minutes", OTHER_TEXT))
        assert result.exit_code == 1 and "another program's database" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert Path(path).read_bytes() == before and sorted(os.listdir(tmp_path)) == ["notes.sqlite3"]


def _stopped_before_its_tables(path):
    """What a learn stopped between switching the new store to WAL and making its tables leaves."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


@pytest.mark.parametrize("make, why", [(Path.touch, "is empty"), (_stopped_before_its_tables, "is a store with nothing in it")])
def test_an_empty_file_or_store_named_as_the_store_has_nothing_learned(tmp_path, make, why):
    path = tmp_path / "learned.sqlite3"
    make(path)
    before = path.read_bytes()
    runner = CliRunner()
    for args in (["learned", "--store", str(path)], ["senders", "--store", str(path)],
                 ["learned", "--store", str(path), "--forget-key", "3f2a9c"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and result.stderr == f"nothing learned yet ({path} {why})\n", result.output
    assert path.read_bytes() == before


def test_a_store_damaged_inside_is_one_line_naming_it(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    with Store.open(path) as store:
        store.learn([record(f"offer {i}", PITCH_TEXT + f"\n{i} " + "filler words " * 300) for i in range(30)], "pitch")
    size = os.path.getsize(path)
    assert size > 8 * 4096
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xde\xad" * (size // 2 - 2048))  # the first page (header and schema) intact
    runner = CliRunner()
    for args in (["learned", "--store", path], ["learn", "--store", path, "--as", "other", "--no-retrain", "-"]):
        result = runner.invoke(cli, args, input=message("new", OTHER_TEXT))
        assert result.exit_code == 1 and path in result.stderr and "damaged" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_crafted_store_cannot_export_outside_the_folder(tmp_path):
    """A correction's key names its file in an export: a store edited by hand to hold the
    key '../../x' (or a label that is a path) is refused, and nothing is written outside."""
    path = str(tmp_path / "s.sqlite3")
    with Store.open(path) as store:
        store.learn([record("offer", PITCH_TEXT)], "pitch")
    runner = CliRunner()
    for column, value in (("digest", "../../escaped"), ("label", "../../escaped")):
        db = sqlite3.connect(path)
        db.execute("PRAGMA ignore_check_constraints = ON")
        key, label = db.execute("SELECT digest, label FROM corrections").fetchone()
        db.execute(f"UPDATE corrections SET {column} = ?", (value,))
        db.commit()
        for args in (["--export", str(tmp_path / "a" / "b" / column)], ["--export", str(tmp_path / "c.jsonl")]):
            result = runner.invoke(cli, ["learned", "--store", path, *args])
            assert result.exit_code == 1 and "never writes" in result.output, result.output
        assert not list(tmp_path.rglob("*.eml"))
        db.execute("UPDATE corrections SET digest = ?, label = ?", (key, label))
        db.commit()
        db.close()


def test_learned_never_writes_its_list_over_the_store(tmp_path):
    """`learned -o` onto the store's own path would replace every correction with a list."""
    path = tmp_path / "s.sqlite3"
    with Store.open(str(path)) as store:
        store.learn([record("offer", PITCH_TEXT)], "pitch")
    for args in (["-o", str(path)], ["--export", str(path)]):
        result = CliRunner().invoke(cli, ["learned", "--store", str(path), *args])
        assert result.exit_code == 1 and "is the learning store" in result.output, result.output
    with Store.open(str(path)) as store:
        assert len(store) == 1


def test_an_export_cut_off_leaves_no_half_folder(tmp_path, monkeypatch):
    """An export into a folder stopped part-way (Ctrl-C, a full disk) leaves nothing behind
    that a second try would refuse as a folder that exists; it then exports everything."""
    path = str(tmp_path / "s.sqlite3")
    with Store.open(path) as store:
        store.learn([record(f"offer {i}", PITCH_TEXT + f" {i}") for i in range(3)], "pitch")
    original = Store.messages

    def interrupted(self):
        for n, item in enumerate(original(self)):
            if n == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(Store, "messages", interrupted)
    runner = CliRunner()
    target = tmp_path / "export"
    assert runner.invoke(cli, ["learned", "--store", path, "--export", str(target)]).exit_code != 0
    assert not target.exists() and not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    monkeypatch.setattr(Store, "messages", original)
    result = runner.invoke(cli, ["learned", "--store", path, "--export", str(target)])
    assert result.exit_code == 0, result.output
    assert len(list((target / "pitch").glob("*.eml"))) == 3


def test_an_expiry_past_any_calendar_and_an_export_nowhere_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["senders", "block", "vendor.example", "--expires", "999999999999999"])
    assert result.exit_code == 2 and "at most 36525 days" in result.output
    assert runner.invoke(cli, ["learn", "--as", "pitch", "--no-retrain", "-"], input=message("a", PITCH_TEXT)).exit_code == 0
    plain = tmp_path / "plain"
    plain.write_text("x")
    for target in (tmp_path / "missing" / "x.jsonl", plain / "x.jsonl"):
        result = runner.invoke(cli, ["learned", "--export", str(target)])
        assert result.exit_code == 1 and "cannot export" in result.output and "internal error" not in result.output


def test_learn_into_a_named_store_never_reads_the_configured_one(tmp_path, monkeypatch):
    broken = tmp_path / "configured.sqlite3"
    broken.write_bytes(b"not a database at all" * 100)
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "config.toml", f"store = '{broken}'\n")))
    good = str(tmp_path / "good.sqlite3")
    result = CliRunner().invoke(cli, ["learn", "--store", good, "--as", "pitch", "--no-retrain", "-"],
                                input=message("a", PITCH_TEXT))
    assert result.exit_code == 0, result.output
    with Store.open(good) as store:
        assert len(store) == 1


def test_nothing_is_learned_about_shared_or_list_addresses(tmp_path):
    with Store.open(str(tmp_path / "s.sqlite3")) as store:
        relay = [record(f"offer {i}", PITCH_TEXT + f"\n{i}", sender=f"{name} <notifications@hub.example>")
                 for i, name in enumerate(["Vic", "Ola"])]
        store.learn(relay, "pitch")
        listed = _pitches(sender="Tom <list@lists.example>", extra="List-Id: <deals.lists.example>\n")
        store.learn(listed, "pitch")
        assert not store.memory()
        store.learn([record(f"deal {i}", PITCH_TEXT + f"\nvic {i}", sender="Vic <vic@hub.example>")
                     for i in range(2)], "pitch")
        assert store.memory().lookup("vic@hub.example").kind == "block"


def test_with_no_corrections_everything_is_as_shipped(tmp_path):
    runner = CliRunner()
    folder = tmp_path / "mail"
    for name, text in (("a", PITCH_TEXT), ("b", PARTNERSHIP_TEXT), ("c", OTHER_TEXT)):
        write(folder / f"{name}.eml", message(name, text, sender=f"{name} <{name}@x.example>"))
    before = runner.invoke(cli, ["classify", "--json", str(folder)]).stdout
    raw = message("quick question", PITCH_TEXT, sender="Tom <tom@vendor.example>")
    assert runner.invoke(cli, ["learn", "--as", "partnership", "-"], input=raw).exit_code == 0
    assert os.path.exists(personal_model_path(store_path()))
    assert runner.invoke(cli, ["learn", "--forget", "-"], input=raw).exit_code == 0
    assert os.path.exists(store_path()) and not os.path.exists(personal_model_path(store_path()))
    assert model_path() == default_model_path() and not read_memory()
    assert runner.invoke(cli, ["classify", "--json", str(folder)]).stdout == before
