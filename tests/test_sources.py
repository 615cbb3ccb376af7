"""Streaming readers: every export format, format detection, and errors as one clear line."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import FIXTURES, PITCH_TEXT, message, write
from dovecot_server import as_mail_user, mail_user_can_run

from partnercheck.reading.mail import parse_message
from partnercheck.reading.sources import Columns, Source, SourceError, detect_format

MBOX = (
    b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
    + message("first", "We could swap referrals.\n\nFrom here on, the plan is simple.\n>From the archive: hi")
    + b"\nFrom sam@quill.test Tue Jan  2 10:00:00 2024\n"
    + message("second", "Invoice attached.", sender="sam@quill.test")
)


def test_mbox_keeps_body_lines_that_start_with_from(tmp_path):
    path = write(tmp_path / "inbox.mbox", MBOX)
    records = list(Source(str(path)))
    assert [r.subject for r in records] == ["first", "second"]
    assert [r.key for r in records] == ["1", "2"]
    assert "From here on, the plan is simple." in records[0].body
    assert "From the archive: hi" in records[0].body  # mboxrd ">From " unescaped


def test_mbox_with_crlf_line_endings(tmp_path):
    path = write(tmp_path / "crlf.mbox", MBOX.replace(b"\n", b"\r\n"))
    records = list(Source(str(path)))
    assert [r.subject for r in records] == ["first", "second"]
    assert records[1].body == "Invoice attached."


def test_an_empty_mbox_message_is_split_off_wherever_a_read_block_ends(tmp_path, monkeypatch):
    """A separator line straight after another is an empty message of its own, whether the
    block boundary falls before it, inside it or after it (and for the first message too)."""
    from partnercheck.reading import sources

    separator = b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
    data = (separator + separator + message("one", "hello") + b"\n" + separator + separator
            + message("three", "bye"))
    path = write(tmp_path / "inbox.mbox", data)
    for block in range(1, len(data) + 2):
        monkeypatch.setattr(sources, "_BLOCK", block)
        records = list(Source(str(path)))
        assert [(r.key, r.subject, r.body) for r in records] == [
            ("1", "", ""), ("2", "one", "hello"), ("3", "", ""), ("4", "three", "bye")], block


def _mboxcl2(body: bytes, declared: int | None = None) -> bytes:
    """Two messages as mboxcl2 writes them: a Content-Length header, the body unescaped."""
    separator = b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
    length = len(body) if declared is None else declared
    return (separator + b"From: ana@fernhollow.example\nSubject: one\nContent-Length: %d\n\n" % length + body
            + b"\n" + separator + b"From: sam@quill.test\nSubject: two\nContent-Length: 4\n\nbye\n")


@pytest.mark.parametrize("body", [
    b"We could co-host.\nFrom bob@example.com Mon Jan  1 00:00:00 2024\nstill the body\n",
    b"From bob@example.com Mon Jan  1 00:00:00 2024\nthe body's first line looks like a separator\n",
])
def test_an_mboxcl2_body_line_that_looks_like_a_separator_stays_in_its_message(tmp_path, monkeypatch, body):
    """mboxcl2 does not escape body lines: its Content-Length says where the body ends,
    wherever the blocks the mbox is read in end."""
    from partnercheck.reading import sources

    data = _mboxcl2(body)
    path = write(tmp_path / "inbox.mbox", data)
    for block in range(1, len(data) + 2):
        monkeypatch.setattr(sources, "_BLOCK", block)
        records = list(Source(str(path)))
        assert [(r.subject, r.body) for r in records] == [("one", body.decode().strip()), ("two", "bye")], block


def test_an_mboxcl2_with_crlf_lines_and_an_upper_case_content_length(tmp_path):
    body = b"We could co-host.\nFrom bob@example.com Mon Jan  1 00:00:00 2024\nstill the body\n"
    data = _mboxcl2(body, declared=len(body) + body.count(b"\n"))
    data = data.replace(b"Content-Length", b"CONTENT-LENGTH").replace(b"\n", b"\r\n")
    records = list(Source(str(write(tmp_path / "inbox.mbox", data))))
    assert [r.subject for r in records] == ["one", "two"] and "still the body" in records[0].body


@pytest.mark.parametrize("declared", [10, 40, 10**9])
def test_a_content_length_that_ends_nowhere_near_a_separator_is_ignored(tmp_path, declared):
    body = b"Invoice attached.\nFrom bob@example.com Mon Jan  1 00:00:00 2024\nFrom: bob@example.com\n\nhi\n"
    records = list(Source(str(write(tmp_path / "inbox.mbox", _mboxcl2(body, declared)))))
    assert [r.subject for r in records] == ["one", "", "two"]


@pytest.mark.parametrize("body, declared", [(b"hi\n", 3), (b"hi\n\n", 4), (b"", 0)])
def test_a_content_length_that_ends_at_the_next_from_line_ends_its_message_there(tmp_path, body, declared):
    """A body whose declared length takes it to the next From line itself (no blank line
    between the messages, the blank line counted, an empty body) ends there."""
    separator = b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
    data = (separator + b"Subject: one\nContent-Length: %d\n\n" % declared + body
            + separator + b"Subject: two\nContent-Length: 4\n\nbye\n")
    assert [r.subject for r in Source(str(write(tmp_path / "inbox.mbox", data)))] == ["one", "two"]


def test_a_long_message_costs_about_what_as_many_bytes_of_short_ones_cost_to_read():
    """Reading one 96 MB message takes about as long as reading 96 messages of 1 MB (twice,
    here): the long one is not copied again with each block read (13 times as long)."""
    import time

    from partnercheck.reading.sources import read_mbox

    separator = b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
    megabyte = b"Subject: scan\n\n" + (b"x" * 75 + b"\n") * ((1 << 20) // 76)
    short = (separator + megabyte) * 96
    long = separator + b"Subject: scan\n\n" + (b"x" * 75 + b"\n") * (96 * (1 << 20) // 76)

    def seconds(data: bytes) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            count = sum(1 for _ in read_mbox(io.BytesIO(data)))
            best = min(best, time.perf_counter() - start)
        assert count == (96 if data is short else 1)
        return best

    assert seconds(long) < 5 * seconds(short)


def test_the_progress_of_a_read_mbox_is_its_whole_size(tmp_path):
    """The separator lines count as read: a progress bar ends at 100%, not at 90%."""
    source = Source(str(write(tmp_path / "inbox.mbox", MBOX)))
    assert len(list(source)) == 2 and source.position == source.total == len(MBOX)


@pytest.mark.parametrize("lead", [b"\n", b"\r\n\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n"])
def test_an_mbox_with_blank_lines_or_a_byte_order_mark_before_its_first_from_line(tmp_path, monkeypatch, lead):
    """An mbox edited or written on Windows can open so: no empty message before the first,
    and no first message without its headers, as a file, a file without a suffix or piped in."""
    from partnercheck.reading import sources

    data = lead + MBOX
    named, bare = write(tmp_path / "inbox.mbox", data), write(tmp_path / "Inbox", data)
    for block in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(sources, "_BLOCK", block)
        for source in (Source(str(named)), Source(str(bare)), Source("-", stdin=io.BytesIO(data))):
            assert [(r.key, r.subject) for r in source] == [("1", "first"), ("2", "second")], (block, source.path)


def test_mbox_detected_by_content_without_suffix(tmp_path):
    path = write(tmp_path / "Takeout-All-mail", MBOX)
    assert detect_format(str(path)) == "mbox"


def test_maildir_reads_cur_and_new(tmp_path):
    write(tmp_path / "md" / "cur" / "1700000000.1.host:2,S", message("seen", "old mail"))
    write(tmp_path / "md" / "new" / "1700000001.2.host", message("unseen", "new mail"))
    (tmp_path / "md" / "tmp").mkdir()
    source = Source(str(tmp_path / "md"))
    assert source.format == "maildir"
    assert sorted(r.subject for r in source) == ["seen", "unseen"]


def test_a_maildir_entry_that_cannot_be_read_is_reported_not_skipped(tmp_path):
    write(tmp_path / "md" / "cur" / "1700000000.1.host:2,S", message("seen", "old mail"))
    (tmp_path / "md" / "new" / "1700000002.3.host").mkdir(parents=True)
    os.symlink(tmp_path / "gone", tmp_path / "md" / "new" / "1700000001.2.host")
    records = list(Source(str(tmp_path / "md")))
    assert [r.subject for r in records] == ["seen", "", ""]
    assert all(not r.readable and r.problems for r in records[1:])


def test_empty_maildir_yields_nothing(tmp_path):
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "md" / sub).mkdir(parents=True)
    assert list(Source(str(tmp_path / "md"))) == []


def test_eml_folder_is_read_recursively(tmp_path):
    write(tmp_path / "export" / "a.eml", message("a", "one"))
    write(tmp_path / "export" / "2024" / "b.eml", message("b", "two"))
    write(tmp_path / "export" / ".hidden.eml", message("hidden", "no"))
    records = list(Source(str(tmp_path / "export")))
    assert [(r.key, r.subject) for r in records] == [("a.eml", "a"), ("2024/b.eml", "b")]


def test_message_files_of_any_name_in_a_folder_are_read_and_other_files_are_not(tmp_path):
    """A Maildir's files copied out of it, its `cur/` named alone, or `.mime` files had been
    passed over without a word: `label` gave no row and `evaluate` scored without them."""
    folder = tmp_path / "cur"
    write(folder / "1700000001.M2P1.host:2,S", b"Return-Path: <ana@fernhollow.example>\r\n" + message("a", "one"))
    write(folder / "2.mime", message("b", "two"))
    write(folder / "config.yaml", b"name: inbox\nversion: 2\n\nnotes: none\n")
    write(folder / "logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    records = list(Source(str(folder)))
    assert [(r.key, r.subject) for r in records] == [("1700000001.M2P1.host:2,S", "a"), ("2.mime", "b")]


def test_an_mbox_in_a_folder_gives_each_of_its_messages(tmp_path):
    """Thunderbird keeps a folder's mail in one mbox file without a suffix (Inbox, and
    Inbox.sbd/ beside it); Takeout names its mboxes .mbox. A file of one message stays one."""
    folder = tmp_path / "Local Folders"
    write(folder / "Inbox", MBOX)
    write(folder / "Inbox.msf", b"// mork index")
    write(folder / "Inbox.sbd" / "Work", MBOX.replace(b"\n", b"\r\n"))
    write(folder / "Takeout.mbox", MBOX)
    write(folder / "empty.mbox", b"")
    write(folder / "single.mbox", MBOX.split(b"\nFrom sam")[0])
    write(folder / "one.eml", b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n" + message("one", "hi"))
    records = list(Source(str(folder)))
    assert [(r.key, r.subject) for r in records] == [
        ("Inbox:1", "first"), ("Inbox:2", "second"), ("Takeout.mbox:1", "first"), ("Takeout.mbox:2", "second"),
        ("one.eml", "one"), ("single.mbox:1", "first"), ("Inbox.sbd/Work:1", "first"), ("Inbox.sbd/Work:2", "second")]


def test_a_maildir_in_a_folder_gives_the_messages_of_its_cur_and_new(tmp_path):
    """mbsync and offlineimap keep one Maildir a folder (~/Mail/account/INBOX/cur): a folder
    of them gives every message there, whatever its file name, and none of the Maildirs' own
    files; a message read since (new/ to cur/, flags added) keeps its stable key."""
    account = tmp_path / "Mail" / "account"
    write(account / "INBOX" / "cur" / "1700000001.M1P1.host,U=1:2,S", message("read", "one"))
    write(account / "INBOX" / "new" / "1700000002.M2P1.host,U=2", message("unread", "two"))
    write(account / "INBOX" / "tmp" / "1700000003.M3P1.host", message("in delivery", "three"))
    write(account / "INBOX" / "dovecot-uidlist", b"3 V1 N3\n")
    write(account / "INBOX" / "maildirfolder", b"")
    write(account / "Sent" / "cur" / "1700000004.M4P1.host:2,S",
          b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n" + message("sent", "four"))
    write(account / "notes.eml", message("note", "five"))
    source = Source(str(tmp_path / "Mail"))
    assert [(r.key, r.subject) for r in source] == [
        ("account/notes.eml", "note"), ("account/INBOX/cur/1700000001.M1P1.host,U=1:2,S", "read"),
        ("account/INBOX/new/1700000002.M2P1.host,U=2", "unread"),
        ("account/Sent/cur/1700000004.M4P1.host:2,S", "sent")]
    assert source.stable_key("account/INBOX/new/1700000002.M2P1.host,U=2") == source.stable_key(
        "account/INBOX/cur/1700000002.M2P1.host,U=2:2,RS") != source.stable_key("account/notes.eml")


def test_a_folder_with_a_new_sub_folder_of_its_own_is_not_taken_for_a_maildir(tmp_path):
    """Mail a person sorted into new/ and old/ beside messages of their own: every message is
    read, where the folder was taken for a Maildir and its own messages passed over."""
    write(tmp_path / "export" / "kept.eml", message("kept", "one"))
    write(tmp_path / "export" / "new" / "a.eml", message("a", "two"))
    write(tmp_path / "export" / "old" / "b.eml", message("b", "three"))
    assert [r.key for r in Source(str(tmp_path))] == ["export/kept.eml", "export/new/a.eml", "export/old/b.eml"]


def test_an_empty_thunderbird_folder_holds_no_message(tmp_path, capsys):
    """Thunderbird keeps an empty folder (Trash, Drafts, Templates) as an empty file without a
    suffix: an mbox of no messages, as an empty .mbox is, not an unreadable message."""
    folder = tmp_path / "Local Folders"
    write(folder / "Inbox", MBOX)
    for name in ("Drafts", "Templates", "Trash"):
        write(folder / name, b"")
        write(folder / f"{name}.msf", b"// <!-- <mdb:mork:z v=\"1.4\"/> -->")
    assert [(r.key, r.problems) for r in Source(str(folder))] == [("Inbox:1", []), ("Inbox:2", [])]
    write(tmp_path / "saved" / "lost.eml", b"")  # an .eml file is one message, empty or not
    assert [(r.key, r.problems) for r in Source(str(tmp_path / "saved"))] == [("lost.eml", ["empty message"])]


def test_a_thunderbird_folder_with_a_dot_in_its_name_is_read(tmp_path):
    """Thunderbird names a folder's mbox file as the folder is named ("Archives.2023",
    "J. Smith"): it is read as the mbox it is; files beside it that are not mail are not."""
    folder = tmp_path / "Local Folders"
    write(folder / "Archives.2023", MBOX)
    write(folder / "Archives.2023.msf", b"// <!-- <mdb:mork:z v=\"1.4\"/> -->")
    write(folder / "Inbox.sbd" / "J. Smith", MBOX)
    write(folder / "msgFilterRules.dat", b'version="9"\n')
    write(folder / "report.pdf", b"%PDF-1.4\nFrom here on, a document\n")
    records = list(Source(str(folder)))
    assert [(r.key, r.subject) for r in records] == [
        ("Archives.2023:1", "first"), ("Archives.2023:2", "second"),
        ("Inbox.sbd/J. Smith:1", "first"), ("Inbox.sbd/J. Smith:2", "second")]


def test_a_message_in_an_mbox_without_a_suffix_in_a_folder_keeps_its_key_when_the_mbox_grows(tmp_path):
    """Thunderbird's Drafts or a new folder hold one message at first: keyed Drafts:1, as
    they are once another arrives, so that --resume and a label file still find it."""
    drafts = tmp_path / "Local Folders" / "Drafts"
    first = MBOX.split(b"\nFrom sam")[0] + b"\n"
    write(drafts, first)
    assert [(r.key, r.subject) for r in Source(str(tmp_path / "Local Folders"))] == [("Drafts:1", "first")]
    write(drafts, MBOX)
    assert [(r.key, r.subject) for r in Source(str(tmp_path / "Local Folders"))] == [
        ("Drafts:1", "first"), ("Drafts:2", "second")]


def test_an_eml_file_in_a_folder_is_one_message_whatever_its_body_holds(tmp_path):
    body = "Let us co-host.\nFrom Berlin, Tue 2 January, it is a short trip.\nAna"
    write(tmp_path / "saved" / "a.eml", b"From ana@fernhollow.example Mon Jan  1 00:00:00 2024\n"
          + message("one", body))
    (record,) = list(Source(str(tmp_path / "saved")))
    assert (record.key, record.subject) == ("a.eml", "one") and "short trip" in record.body


def _emlx(raw: bytes) -> bytes:
    flags = (b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n<key>flags</key>\n'
             b"<integer>8590195713</integer>\n</dict>\n</plist>\n")
    return str(len(raw)).encode() + b"       \n" + raw + flags


def test_apple_mail_emlx_files_are_read_without_their_length_line_and_flags(tmp_path):
    """Apple Mail keeps each message as Messages/N.emlx (N.partial.emlx while attachments
    are stored apart) inside folders named INBOX.mbox: a line with the message's length,
    the message, then a property list."""
    messages = tmp_path / "Mail" / "V10" / "INBOX.mbox" / "Data" / "Messages"
    write(messages / "12.emlx", _emlx(message("one", "Shall we co-host the spring meetup?")))
    write(messages / "13.partial.emlx", _emlx(message("two", "Notes attached.")))
    records = list(Source(str(tmp_path / "Mail")))
    assert [(r.key, r.subject) for r in records] == [
        ("V10/INBOX.mbox/Data/Messages/12.emlx", "one"), ("V10/INBOX.mbox/Data/Messages/13.partial.emlx", "two")]
    assert all("plist" not in r.body and "flags" not in r.body for r in records)
    (single,) = list(Source(str(messages / "12.emlx")))
    assert single.subject == "one" and single.body.strip() == "Shall we co-host the spring meetup?"


def test_a_text_without_headers_that_opens_with_a_number_is_read_whole(tmp_path):
    """A line of digits is an .emlx file's length line only when the property list follows
    where that length ends: a note that opens "3" over a list is not cut to its first 3 bytes."""
    text = b"3\nways we could work together:\n- co-host the spring meetup\n- swap newsletter slots\n"
    for path in (write(tmp_path / "notes" / "ideas.txt", text), tmp_path / "notes"):
        (record,) = list(Source(str(path)))
        assert record.body == text.decode().strip()


def test_a_maildir_file_is_one_message_even_with_a_from_line(tmp_path):
    write(tmp_path / "Maildir" / "cur" / "1.host:2,S", MBOX)
    (record,) = list(Source(str(tmp_path / "Maildir")))
    assert record.key == "cur/1.host:2,S" and record.subject == "first"


def test_labelled_folder_gives_labels(tmp_path):
    write(tmp_path / "set" / "pitch" / "x.eml", message("x", "buy"))
    write(tmp_path / "set" / "other" / "y.eml", message("y", "hi"))
    assert {(r.subject, r.label) for r in Source(str(tmp_path / "set"))} == {("x", "pitch"), ("y", "other")}


def test_a_labelled_folder_passes_no_message_over(tmp_path, small_model_path, monkeypatch):
    """A label's folder in capitals still gives its label; a message anywhere else comes with
    none, so that training refuses it by name instead of training on what was left."""
    from click.testing import CliRunner

    from partnercheck.interface.cli import cli

    write(tmp_path / "set" / "pitch" / "x.eml", message("x", "buy"))
    write(tmp_path / "set" / "Other" / "y.eml", message("y", "hi"))
    write(tmp_path / "set" / "spam" / "z.eml", message("z", "cheap"))
    write(tmp_path / "set" / "loose.eml", message("w", "hello"))
    records = list(Source(str(tmp_path / "set")))
    assert [(r.subject, r.label) for r in records] == [("x", "pitch"), ("y", "other"), ("w", None), ("z", None)]
    write(tmp_path / "caps" / "Pitch" / "x.eml", message("x", "buy"))  # capitals only: still a labelled folder
    assert [r.label for r in Source(str(tmp_path / "caps"))] == ["pitch"]
    monkeypatch.setenv("PARTNERCHECK_MODEL", small_model_path)
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "set")])
    assert result.exit_code == 1 and "loose.eml: has no label" in result.output


def test_malformed_folder_reads_every_file():
    records = list(Source(str(FIXTURES / "malformed")))
    assert len(records) == len(list((FIXTURES / "malformed").iterdir()))


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_table_exports_with_default_and_named_columns(tmp_path, fmt):
    path = tmp_path / f"export.{fmt}"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
        writer.writerow(["Subject", "Sender", "Body Text", "Category"])
        writer.writerow(["Hello", "Ana <ana@x.example>", "Shall we, perhaps, co-host?\nYes.", "partnership"])
    with pytest.raises(SourceError, match="no body column"):
        list(Source(str(path)))
    records = list(Source(str(path), columns=Columns(body="Body Text", sender="Sender", label="Category")))
    assert len(records) == 1
    record = records[0]
    assert (record.subject, record.from_addr, record.label) == ("Hello", "ana@x.example", "partnership")
    assert record.body == "Shall we, perhaps, co-host?\nYes."


def test_an_outlook_csv_export_gives_the_sender_address(tmp_path):
    """Outlook names its columns "From: (Name)" and "From: (Address)", quoted."""
    text = ('"Subject","Body","From: (Name)","From: (Address)","From: (Type)"\r\n'
            '"Hello","Shall we co-host?\r\nAna","Ana Ruiz","ana@x.example","SMTP"\r\n')
    (record,) = list(Source(str(write(tmp_path / "outlook.csv", text.encode("cp1252")))))
    assert (record.subject, record.body, record.from_addr) == ("Hello", "Shall we co-host?\r\nAna", "ana@x.example")


def test_an_html_body_in_a_table_export_is_read_as_the_mail_would_show_it(tmp_path, shipped_model):
    """Exports that keep a message's HTML (a web mail's, an API's) give its text, links and
    tracking pixel, as the same message in an .eml is read; a body
    of plain text that speaks of <tags> stays as it is."""
    from partnercheck.deciding.classify import classify

    html = ('<html><head><style>.x{color:#333}</style></head><body><div dir="ltr">'
            + "".join(f"<p>{line}</p>" for line in PITCH_TEXT.split("\n"))
            + '<p><a href="https://cal.example/tom">Book a time</a></p><img src="https://t.example/o.gif" width="1" '
            'height="1"></div></body></html>')
    rows = [{"subject": "quick question", "from": "tom@vendor.example", "body": html},
            {"subject": "markup", "from": "tom@vendor.example", "body": "Use <p> for a paragraph."}]
    table = write(tmp_path / "export.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())
    record, plain = list(Source(str(table)))
    eml = parse_message(message("quick question", html, sender="tom@vendor.example").replace(
        b"text/plain", b"text/html"))
    assert "<" not in record.body and "Plans start at $3,500 per month." in record.body
    assert (record.body, record.links, record.tracking_pixel, record.html_only) == (
        eml.body, eml.links, eml.tracking_pixel, eml.html_only)
    assert [v.label for v in classify([record, eml], shipped_model)] == ["pitch", "pitch"]
    assert plain.body == "Use <p> for a paragraph."


def test_a_csv_export_with_semicolons_is_read_by_them(tmp_path):
    """Excel writes CSV with semicolons where a comma is the decimal mark (most of Europe)."""
    data = 'Subject;Body;From\r\nAtelier;"Un atelier commun, 50/50; on partage.";ana@x.example\r\n'.encode("cp1252")
    for records in (Source(str(write(tmp_path / "export.csv", data))), Source("-", stdin=io.BytesIO(data))):
        (record,) = list(records)
        assert (record.subject, record.body, record.from_addr) == ("Atelier", "Un atelier commun, 50/50; on partage.",
                                                                   "ana@x.example")


def test_jsonl_export(tmp_path):
    rows = [{"subject": "a", "from": "li@x.example", "text": "first", "label": "other"},
            {"subject": "b", "text": "second"}]
    path = write(tmp_path / "export.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    records = list(Source(str(path)))
    # A row with no label in a table with a label column is one nobody decided, as a cleared cell.
    assert [(r.subject, r.body, r.label) for r in records] == [("a", "first", "other"), ("b", "second", "unsure")]


def test_a_table_cell_holding_a_raw_message_is_read_as_one_however_it_opens(tmp_path):
    """Gmail's raw messages open with Delivered-To:, Python's with Content-Type: or
    MIME-Version:; they had been read as body text, headers and all."""
    rows = [{"id": "a", "raw_message": "Delivered-To: sam@quill.test\n" + message("offer", "hello").decode()},
            {"id": "b", "raw_message": "MIME-Version: 1.0\nContent-Type: text/plain\nFrom: a@b.example\n"
                                       "Subject: note\n\nhi there"}]
    path = write(tmp_path / "export.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    records = list(Source(str(path), columns=Columns(body="raw_message")))
    assert [(r.subject, r.body.strip()) for r in records] == [("offer", "hello"), ("note", "hi there")]


def test_an_eml_with_blank_lines_above_its_header_is_read_as_mbox_and_stdin_read_it(tmp_path):
    record = list(Source(str(write(tmp_path / "a.eml", b"\n\n" + message("offer", "hello")))))[0]
    assert (record.subject, record.body.strip()) == ("offer", "hello")


def test_an_id_of_0_is_a_key(tmp_path):
    """It had given way to the row number, so the next row's id 1 named two rows, and a
    label file made from the export could not be used."""
    rows = [{"id": n, "subject": s, "text": "hello"} for n, s in ((0, "a"), (1, "b"), (2, "c"))]
    path = write(tmp_path / "export.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [(r.key, r.subject) for r in Source(str(path))] == [("0", "a"), ("1", "b"), ("2", "c")]


def test_a_body_cell_is_read_alike_whether_its_column_is_found_or_named(tmp_path):
    """A web form's body opening with a "From:" line, in an export with subject and sender
    columns, is a body both ways (it was read as a whole message when the column was found,
    so a label file made one way did not find its rows the other way); in a table with a
    body column alone, a cell with headers is a whole message."""
    form = "From: Lorenzo <l@x.example>\nReason: advertising\n\nHi, we would like to buy an ad."
    path = write(tmp_path / "form.csv", "subject,from,body\n" + f'Ad placement,forms@site.example,"{form}"\n')
    for columns in (Columns(), Columns(body="body")):
        (record,) = list(Source(str(path), columns=columns))
        assert (record.subject, record.from_addr) == ("Ad placement", "forms@site.example")
        assert record.body.startswith("From: Lorenzo")
    raw = write(tmp_path / "raw.csv", "body\n" + f'"{form}"\n')
    for columns in (Columns(), Columns(body="body")):
        (record,) = list(Source(str(raw), columns=columns))
        assert record.from_addr == "l@x.example" and record.body.startswith("Hi, we would")


def test_bad_jsonl_is_one_clear_error_or_one_unreadable_row(tmp_path):
    path = write(tmp_path / "bad.jsonl", 'not json\n{"text": "ok"}\n')
    with pytest.raises(SourceError, match="line 1 is not JSON"):
        list(Source(str(path)))
    for array in ('[{"text": "one"}, {"text": "two"}]\n', '[\n  {"text": "one"}\n]\n'):  # a .json export
        with pytest.raises(SourceError, match=r"a JSON array, not JSON lines .*jq -c '\.\[\]' .*export\.json"):
            list(Source(str(write(tmp_path / "export.json", array))))
    # after a good first line, a bad line costs only itself
    path = write(tmp_path / "some.jsonl", '{"text": "ok"}\nnot json\n[1]\n{"text": 1' + "0" * 5000 + '}\n{"text": "last"}\n')
    records = list(Source(str(path)))
    assert [r.body for r in records] == ["ok", "", "", "", "last"]
    assert [p for r in records[1:4] for p in r.problems if p.startswith("line")] == [
        "line 2 is not JSON: Expecting value", "line 3 is not a JSON object",
        "line 4 is JSON too deeply nested or too large to read"]


def test_a_label_file_with_a_line_that_cannot_be_read_is_one_error(tmp_path):
    """A corrected label file names messages to read again: a broken line names none, and
    must not become a message source of "" (the current folder)."""
    write(tmp_path / "m.eml", message("hello", "hi"))
    good = json.dumps({"source": str(tmp_path / "m.eml"), "key": "m.eml", "verdict": "pitch"})
    path = write(tmp_path / "l.jsonl", good + "\n" + good[:-1] + "\n")
    with pytest.raises(SourceError, match="line 2 is not JSON"):
        list(Source(str(path)))
    path = write(tmp_path / "l2.jsonl", good + "\n" + json.dumps({"key": "m.eml", "verdict": "other"}) + "\n")
    with pytest.raises(SourceError, match="row 2 names no source"):
        list(Source(str(path)))


def _mbox_of(messages: list[bytes]) -> bytes:
    return b"".join(b"From x@y.example Mon Jan  1 00:00:00 2024\n" + m + b"\n" for m in messages)


def test_a_label_file_finds_its_messages_after_the_mbox_lost_one(tmp_path):
    """Taking a message out of an mbox moves every later one to another key: each row of a
    label file still gets its own message (by its Message-ID), never the one now at its key."""
    from click.testing import CliRunner

    from partnercheck.interface.cli import cli

    first, second, third, fourth = (message(f"subject {n}", f"text number {n}") for n in (1, 2, 3, 4))
    mbox = write(tmp_path / "in.mbox", _mbox_of([first, second, third]))
    labels = tmp_path / "labels.csv"
    assert CliRunner().invoke(cli, ["label", str(mbox), "-o", str(labels)]).exit_code == 0
    rows = list(csv.DictReader(labels.open()))
    for row, label in zip(rows, ("partnership", "pitch", "other")):  # the user's corrections
        row["verdict"] = label
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[1:])  # the first message's row is dropped with the message
    mbox.write_bytes(_mbox_of([second, third, fourth]))  # and new mail came in
    assert [(r.subject, r.label) for r in Source(str(labels))] == [("subject 2", "pitch"), ("subject 3", "other")]
    with labels.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerow(rows[0])
    with pytest.raises(SourceError, match="1 message.* no longer in it"):
        list(Source(str(labels)))


def test_a_label_file_finds_each_copy_of_a_message_after_the_mbox_lost_one(tmp_path):
    """Gmail's Takeout holds a message once per label: when an mbox lost a message, each
    row for a copy still finds a copy, not the same one twice."""
    gone, copy, other = message("gone", "text one"), message("copy", "same text"), message("other", "text three")
    mbox = write(tmp_path / "in.mbox", _mbox_of([gone, copy, other, copy]))
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "key", "message_id", "subject", "verdict"])
        for record, label in zip(Source(str(mbox)), ("pitch", "other", "partnership", "other")):
            if record.subject != "gone":
                writer.writerow([record.source, record.key, record.message_id, record.subject, label])
    mbox.write_bytes(_mbox_of([copy, other, copy]))
    assert [(r.subject, r.label) for r in Source(str(labels))] == [
        ("copy", "other"), ("other", "partnership"), ("copy", "other")]


def test_a_label_file_finds_maildir_messages_read_since(tmp_path):
    """A mail program moves a message it has shown from new/ to cur/ and adds its flags to
    the name: a label file's row still finds it, with or without a Message-ID."""
    texts = [message("with an id", "text one"), message("no id", "text two").replace(b"Message-ID", b"X-Old-ID")]
    for n, raw in enumerate(texts):
        write(tmp_path / "md" / "new" / f"170000000{n}.M1P1.host", raw)
    (tmp_path / "md" / "cur").mkdir()
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "key", "message_id", "subject", "verdict"])
        for record, label in zip(Source(str(tmp_path / "md")), ("pitch", "other")):
            writer.writerow([record.source, record.key, record.message_id, record.subject, label])
    for n in range(2):
        os.rename(tmp_path / "md" / "new" / f"170000000{n}.M1P1.host",
                  tmp_path / "md" / "cur" / f"170000000{n}.M1P1.host:2,S")
    assert [(r.subject, r.label) for r in Source(str(labels))] == [("with an id", "pitch"), ("no id", "other")]


def test_a_label_file_of_an_export_reads_it_with_the_columns_it_was_labelled_with(tmp_path):
    """`label export.csv --body-column Nachricht` writes rows that name the export: reading
    them again needs the same --body-column, which names the export's column, not one of
    the label file's."""
    export = write(tmp_path / "export.csv", "Betreff,Nachricht\nHallo,Shall we co-host a workshop?\n"
                                            "Plans,Our plans start at $99.\n")
    columns = Columns(body="Nachricht", subject="Betreff")
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "key", "message_id", "subject", "verdict"])
        for record, label in zip(Source(str(export), columns=columns), ("partnership", "pitch")):
            writer.writerow([record.source, record.key, record.message_id, record.subject, label])
    records = list(Source(str(labels), columns=columns))
    assert [(r.subject, r.body, r.label) for r in records] == [
        ("Hallo", "Shall we co-host a workshop?", "partnership"), ("Plans", "Our plans start at $99.", "pitch")]


def test_a_label_file_saved_by_a_spreadsheet_with_semicolons_is_read(tmp_path):
    """A label file corrected in a spreadsheet set to a language with decimal commas comes
    back with semicolons between its fields (and a BOM, and CRLF)."""
    mbox = write(tmp_path / "in.mbox", _mbox_of([message("first", "text one"), message("second", "text two")]))
    text = f"\ufeffsource;key;verdict;score\r\n{mbox};1;pitch;0,97\r\n{mbox};2;other;0,51\r\n"
    labels = write(tmp_path / "labels.csv", text.encode("utf-8"))
    assert [(r.subject, r.label) for r in Source(str(labels))] == [("first", "pitch"), ("second", "other")]
    export = write(tmp_path / "export.csv", "subject;body\nHello;Shall we co-host?\n")
    assert [(r.subject, r.body) for r in Source(str(export))] == [("Hello", "Shall we co-host?")]


def test_label_files_that_name_each_other_are_one_error(tmp_path):
    """A label file whose rows name another label file (which names the first) would be
    read for ever, down to a RecursionError: one line, naming the file."""
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write(first, f"source,key,verdict\n{second},1,pitch\n")
    write(second, f"source,key,verdict\n{first},1,pitch\n")
    with pytest.raises(SourceError, match="b.csv is a label file, named as the source of another"):
        list(Source(str(first)))


def test_a_lone_surrogate_in_a_json_string_is_read(tmp_path):
    body = "We would like to partner with you \\ud800 on a joint workshop."
    raw = "Subject: hi\\n\\n" + body
    fields = write(tmp_path / "fields.jsonl", '{"body": "%s"}\n' % body)
    whole = write(tmp_path / "raw.jsonl", '{"raw": "%s"}\n' % raw)
    records = list(Source(str(fields))) + list(Source(str(whole)))
    assert ["joint workshop" in r.body for r in records] == [True, True]
    for record in records:
        (record.subject + record.body).encode("utf-8")


def test_a_cp1252_export_reads_as_text(tmp_path):
    body = "Nous proposons un atelier commun à la médiathèque, café et goûter partagés."
    path = write(tmp_path / "old.csv", ("subject,body\nAtelier,\"" + body + "\"\n").encode("cp1252"))
    (record,) = list(Source(str(path)))
    assert record.body == body and record.readable


@pytest.mark.parametrize("name, codec, delimiter", [
    ("export.csv", "utf-16", ","), ("export.tsv", "utf-16-be", "\t"),
    ("export.txt", "utf-16", "\t"), ("Unicode Text", "utf-16-be", "\t"), ("export.txt", "utf-16", ","),
])
def test_a_utf16_export_with_its_byte_order_mark_reads_as_text(tmp_path, name, codec, delimiter):
    """Excel's "Unicode Text" (saved as .txt) and Outlook's Unicode exports are UTF-16 with
    a byte order mark."""
    body = "Nous proposons un atelier commun,\nà la médiathèque."
    text = f'Subject{delimiter}Body\r\nAtelier{delimiter}"{body}"\r\n'
    data = text.encode(codec) if codec == "utf-16" else b"\xfe\xff" + text.encode(codec)
    (record,) = list(Source(str(write(tmp_path / name, data))))
    assert (record.subject, record.body) == ("Atelier", body)
    (piped,) = list(Source("-", stdin=io.BufferedReader(io.BytesIO(data))))
    assert (piped.subject, piped.body) == ("Atelier", body)


def test_stdin_single_message_and_mbox():
    one = list(Source("-", stdin=io.BytesIO(message("solo", "hello"))))
    assert [r.subject for r in one] == ["solo"]
    many = list(Source("-", stdin=io.BytesIO(MBOX)))
    assert [r.subject for r in many] == ["first", "second"]


TABLES = {
    "csv": "\ufeffSubject,From,Body,Label\nHello,ana@x.example,\"Shall we, perhaps, co-host?\nYes.\",partnership\n"
           "Plans,sales@y.example,Our plans start at $99.,pitch\n",
    "tsv": "subject\ttext\nHello\tShall we co-host?\nPlans\tOur plans start at $99.\n",
    "jsonl": json.dumps({"subject": "Hello", "body": "x" * 100_000}) + "\n" + json.dumps({"body": "second"}) + "\n",
    "label": "source,key,verdict\n" + "{mbox},1,other\n{mbox},2,pitch\n",  # as `label` writes it, corrected
    "outlook": '"Subject","Body","From: (Name)","From: (Address)",""\r\n"Hi","Shall we co-host?","Ana","a@x",""\r\n'
               '"Plans","Our plans start at $99","S","s@y",""\r\n',
    "blank-jsonl": "\n" + json.dumps({"body": "first"}) + "\n" + json.dumps({"body": "second"}) + "\n",
}


@pytest.mark.parametrize("kind", sorted(TABLES))
def test_a_table_export_piped_in_is_read_as_the_file_is(tmp_path, kind):
    """`cat export.csv | partnercheck label -` gives the export's rows, as the file does, not
    one message made of the whole table: a stream's first line tells a table (a JSON object,
    or a header naming a body column, or source and key) from mail, and is read again."""
    mbox = write(tmp_path / "in.mbox", MBOX)
    text = TABLES[kind].replace("{mbox}", str(mbox))
    suffix = {"label": "csv", "outlook": "csv", "blank-jsonl": "jsonl"}.get(kind, kind)
    path = write(tmp_path / f"export.{suffix}", text.encode())
    from_file = [(r.key, r.subject, r.body, r.label) for r in Source(str(path))]
    piped = Source("-", stdin=io.BytesIO(text.encode()))
    assert [(r.key, r.subject, r.body, r.label) for r in piped] == from_file and len(from_file) == 2
    assert piped.is_table


def test_text_with_a_comma_piped_in_is_still_one_message():
    """A first line with commas, tabs or braces that is no table's header line is the start of
    a message, even when a word of it names a body column."""
    for text in (b"Hi Sam, we would love to partner, truly.\n", b"Subject: a, b\n\nbody, text\n", b"{not json\n", b"",
                 b"Content, SEO and paid ads for brands like yours.\nFrom $99, book a call.\n",
                 b'Text, pictures and video: we do it all.\n"Best agency" said one, so call.\n',
                 b"Message, please call me\nThanks\nAna\n", b'{"Hi there"} - let us partner.\n', b"{}\nhello\n",
                 b"Keywords: body,text\nSubject: x\n\nhello\n", b"\nFrom here on, we partner.\n"):
        records = list(Source("-", stdin=io.BytesIO(text)))
        assert len(records) == 1 and records[0].key == "-"


def test_a_fifo_is_opened_once_and_only_when_read(tmp_path):
    """Making a Source of a FIFO opens nothing, so no writer is needed yet; reading it opens
    it once, waiting for a writer as `cat` does, and guesses the format as for stdin."""
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made = []
    maker = threading.Thread(target=lambda: made.append(Source(str(fifo))), daemon=True)
    maker.start()
    maker.join(10)
    if maker.is_alive():  # it opened the FIFO and waits for a writer: give it one that writes nothing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        maker.join()
    assert made[0].format == "stream" and made[0].is_stream
    writer = threading.Thread(target=fifo.write_bytes, args=(MBOX,), daemon=True)
    writer.start()
    assert [r.subject for r in made[0]] == ["first", "second"]
    writer.join()


def test_a_stream_whose_first_bytes_come_in_pieces_is_still_read_as_an_mbox(tmp_path):
    """The format of a pipe is told from its first line, however the writer splits it."""
    import threading
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write_slowly():
        with open(fifo, "wb", buffering=0) as handle:
            handle.write(MBOX[:2])
            time.sleep(0.3)
            handle.write(MBOX[2:])

    writer = threading.Thread(target=write_slowly, daemon=True)
    writer.start()
    assert [r.subject for r in Source(str(fifo))] == ["first", "second"]
    writer.join()


def test_a_compressed_mailbox_in_a_folder_is_one_row_saying_how_to_read_it(tmp_path):
    """A Takeout folder or an archive of mail kept as inbox.mbox.gz: not passed over in
    silence, but not read as binary data either; another archive beside the mail is no mail."""
    import gzip

    write(tmp_path / "mail" / "a.eml", MBOX.split(b"\n", 1)[1])
    write(tmp_path / "mail" / "2019" / "inbox.mbox.gz", gzip.compress(MBOX))
    write(tmp_path / "mail" / "photos.tar.gz", gzip.compress(b"not mail"))
    records = {r.key: r for r in Source(str(tmp_path / "mail"))}
    assert sorted(records) == ["2019/inbox.mbox.gz", "a.eml"]
    assert not records["2019/inbox.mbox.gz"].readable
    assert "gzip-compressed; decompress it first, or name it as <(zcat " in records["2019/inbox.mbox.gz"].problems[0]


def test_a_fifo_or_device_inside_a_folder_is_reported_not_waited_on(tmp_path):
    write(tmp_path / "mail" / "a.eml", MBOX.split(b"\n", 1)[1])
    os.mkfifo(tmp_path / "mail" / "stuck.eml")
    os.mkfifo(tmp_path / "mail" / "pipe.fifo")  # a suffix that names no mail file: not even opened to look
    os.symlink("/dev/zero", tmp_path / "mail" / "zero.eml")
    records = {r.key: r for r in Source(str(tmp_path / "mail"))}
    assert "pipe.fifo" not in records
    assert records["a.eml"].readable
    assert all("not a regular file" in records[k].problems[0] for k in ("stuck.eml", "zero.eml"))


def test_forced_format(tmp_path):
    path = write(tmp_path / "mail.txt", MBOX)
    assert len(list(Source(str(path), fmt="eml"))) == 1
    assert len(list(Source(str(path), fmt="mbox"))) == 2


@pytest.mark.parametrize("path, error", [
    ("/nonexistent/inbox.mbox", "no such file or directory"),
])
def test_missing_path(path, error):
    with pytest.raises(SourceError, match=error):
        Source(path)


def test_unknown_format_and_label():
    with pytest.raises(SourceError, match="unknown format"):
        Source("-", fmt="pst")
    with pytest.raises(SourceError, match="unknown label"):
        Source("-", label="spam")


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs a file whose reading fails: Linux's /proc/self/mem")
def test_a_file_whose_reading_fails_is_one_clear_error_or_one_unreadable_message(tmp_path):
    """Reading /proc/self/mem at its start fails with EIO, as a failing disk does."""
    write(tmp_path / "f" / "a.eml", message("a", "one"))
    (tmp_path / "f" / "b.eml").symlink_to("/proc/self/mem")
    write(tmp_path / "f" / "c.eml", message("c", "three"))
    records = [(r.subject, r.problems) for r in Source(str(tmp_path / "f"))]
    assert [subject for subject, _ in records] == ["a", "", "c"]
    assert "cannot read it: Input/output error" in records[1][1][0]
    for name in ("inbox.mbox", "export.csv"):
        (tmp_path / name).symlink_to("/proc/self/mem")
        with pytest.raises(SourceError, match="cannot read it: Input/output error"):
            list(Source(str(tmp_path / name)))


def test_unreadable_file_in_folder_is_noted_and_reading_goes_on(tmp_path):
    """Root reads any file, so as root the folder is read by the mail user of the Dovecot
    tests (nobody), in a child process."""
    folder = tmp_path / "f" if os.geteuid() else Path(tempfile.mkdtemp(prefix="pc-unreadable-"))
    try:
        write(folder / "a.eml", message("a", "one"))
        locked = write(folder / "b.eml", message("b", "two"))
        locked.chmod(0)
        if os.geteuid():
            records = [[r.subject, r.problems] for r in Source(str(folder))]
        else:
            os.chmod(folder, 0o755)
            (folder / "a.eml").chmod(0o644)
            if not mail_user_can_run([sys.executable, "-c", "import partnercheck"]):
                pytest.skip(f"the mail user cannot run {sys.executable} (a Python under /root, for instance)")
            read = ("import json, sys; from partnercheck.reading.sources import Source; "
                    "print(json.dumps([[r.subject, r.problems] for r in Source(sys.argv[1])]))")
            done = subprocess.run([sys.executable, "-c", read, str(folder)], capture_output=True, text=True,
                                  timeout=120, cwd="/", **as_mail_user())
            assert done.returncode == 0, done.stderr
            records = json.loads(done.stdout)
        assert records[0][0] == "a" and "permission denied" in records[1][1][0]
    finally:
        if not os.geteuid():
            shutil.rmtree(folder, ignore_errors=True)


def _read_as_a_user(path: Path, fmt: str | None = None) -> list | str:
    """[key, subject, problems] of each message of ``path``, or the error's line, as read by a
    process that file permissions apply to: this one's user, or root without its right to
    read and list anything (setpriv)."""
    read = ("import json, sys; from partnercheck.reading.sources import Source, SourceError\n"
            "try: print(json.dumps([[r.key, r.subject, r.problems] for r in Source(*sys.argv[1:])]))\n"
            "except SourceError as exc: print(json.dumps(str(exc)))")
    argv = [sys.executable, "-c", read, str(path), *([fmt] if fmt else [])]
    if not os.geteuid():
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is needed to read as root without root's right to read everything")
        caps = "-dac_override,-dac_read_search"
        argv = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_folder_that_cannot_be_listed_is_one_clear_line(tmp_path):
    """A sub-folder or a Maildir's cur/ without read permission is one unreadable message
    saying so, and the rest is read; a source folder that cannot be listed is an error."""
    write(tmp_path / "export" / "a.eml", message("a", "one"))
    write(tmp_path / "export" / "locked" / "b.eml", message("b", "two"))
    write(tmp_path / "md" / "cur" / "1.host:2,S", message("c", "three"))
    write(tmp_path / "md" / "new" / "2.host", message("d", "four"))
    write(tmp_path / "closed" / "e.eml", message("e", "five"))
    for folder in ("export/locked", "md/cur", "closed"):
        (tmp_path / folder).chmod(0)
    try:
        assert _read_as_a_user(tmp_path / "export") == [
            ["a.eml", "a", []], ["locked", "", [f"{tmp_path}/export/locked: cannot list it: permission denied"]]]
        assert _read_as_a_user(tmp_path / "md") == [
            ["cur", "", [f"{tmp_path}/md/cur: cannot list it: permission denied"]], ["new/2.host", "d", []]]
        for fmt in (None, "folder", "maildir", "labelled"):  # whatever it is read as
            assert _read_as_a_user(tmp_path / "closed", fmt) == f"{tmp_path}/closed: cannot list it: permission denied"
    finally:
        for folder in ("export/locked", "md/cur", "closed"):
            (tmp_path / folder).chmod(0o755)


def test_sources_are_never_modified(tmp_path):
    mbox = write(tmp_path / "inbox.mbox", MBOX)
    write(tmp_path / "md" / "new" / "1.host", message("n", "new"))
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
              for p in tmp_path.rglob("*") if p.is_file()}
    listing = sorted(str(p) for p in tmp_path.rglob("*"))
    list(Source(str(mbox)))
    list(Source(str(tmp_path / "md")))
    after = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
             for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing  # no lock or temp files left


def test_csv_with_an_unclosed_quote_is_an_error_not_a_swallowed_row(tmp_path):
    path = write(tmp_path / "bad.csv", 'subject,body\na,one\nb,"two\nc,three\n')
    with pytest.raises(SourceError, match="not valid CSV"):
        list(Source(str(path)))
