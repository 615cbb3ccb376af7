"""`partnercheck imap` against a real Dovecot (tests/dovecot_server.py): labels and moves,
remembers what it saw, survives a UIDVALIDITY change and a server restart mid-run, never
loses, duplicates or alters a message, and says in one line what went wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, PARTNERSHIP_TEXT, PITCH_TEXT, ctrl_c_reaches, message
from dovecot_server import DOVEADM, DOVECOT, OPENSSL, PASSWORD, USER, Dovecot, crlf

pytestmark = pytest.mark.skipif(DOVECOT is None, reason="dovecot is not installed (.ci/run installs dovecot-imapd)")

OURS = {b"$partnership", b"$pitch", b"$unsure"}


def corpus_messages(per_label: int = 6) -> list[bytes]:
    picked = []
    for label in ("partnership", "pitch", "other"):
        picked += [crlf(p.read_bytes()) for p in sorted((DATA / label).glob("*.eml"))[:per_label]]
    return picked


def expected_verdicts(messages: list[bytes]) -> list[str]:
    from partnercheck.deciding.classify import classify
    from partnercheck.deciding.model import cached_model
    from partnercheck.reading.mail import parse_message
    from partnercheck.settings import default_model_path

    model = cached_model(default_model_path())
    records = [parse_message(m) for m in messages]
    return [v.label for v in classify(records, model)]


@pytest.fixture
def server():
    dovecot = Dovecot().start()
    yield dovecot
    dovecot.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PARTNERCHECK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def run(server: Dovecot, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(
        __import__("partnercheck.interface.cli", fromlist=["cli"]).cli,
        ["imap", "--host", "127.0.0.1", "--port", str(server.port), "--plain", "--user", USER,
         "--password-env", "PC_TEST_IMAP_PASSWORD", *args],
        catch_exceptions=False,
    )
    assert result.exit_code == code, result.output + server.logs()
    return result.output


def by_subject(folder: dict) -> dict[bytes, frozenset]:
    from partnercheck.reading.mail import parse_message

    return {parse_message(body).message_id: flags for body, flags in folder.values()}


def _keyword(label: str) -> bytes | None:
    return {"partnership": b"$Partnership", "pitch": b"$Pitch", "unsure": b"$Unsure"}.get(label)


def test_first_run_labels_and_moves_second_run_does_nothing(server, env, monkeypatch):
    from partnercheck.reading.mail import parse_message

    messages = corpus_messages()
    verdicts = expected_verdicts(messages)
    assert "pitch" in verdicts and "partnership" in verdicts
    server.append(messages[:3], flags=(b"\\Seen",))
    server.append(messages[3:])
    before = server.snapshot()

    out = run(server, "--move-to", "Pitch")
    n_pitch = verdicts.count("pitch")
    assert f"{len(messages)} new messages" in out and f"{n_pitch} moved" in out

    inbox, pitch = by_subject(server.folder("INBOX")), by_subject(server.folder("Pitch"))
    for raw, label in zip(messages, verdicts):
        mid = parse_message(raw).message_id
        where = pitch if label == "pitch" else inbox
        assert mid in where, (label, mid)
        keyword = _keyword(label)
        ours = {f for f in where[mid] if f.lower() in OURS}
        assert ours == ({keyword} if keyword else set())
    assert len(inbox) + len(pitch) == len(messages)
    # Nothing lost, duplicated or altered: same bytes, same flags apart from our keywords;
    # \Seen stayed where it was and was set nowhere else.
    assert server.snapshot(ignore=OURS) == before

    # Second run: no fetch at all.
    from imapclient import IMAPClient

    fetched = []
    original = IMAPClient.fetch
    monkeypatch.setattr(IMAPClient, "fetch", lambda self, *a, **k: fetched.append(a) or original(self, *a, **k))
    out = run(server, "--move-to", "Pitch")
    assert "0 new messages" in out and fetched == []

    # A new message arriving is handled, and only it.
    server.append([message("quick question", PITCH_TEXT)])
    out = run(server, "--move-to", "Pitch")
    assert "1 new message;" in out and "1 pitch" in out and "1 moved" in out
    assert len(fetched) == 2  # the new message in INBOX, then in Pitch (ours: not learned)
    assert b"Subject: quick question" in b"".join(body for body, _ in server.folder("Pitch").values())


def test_dry_run_changes_nothing(server, env):
    messages = corpus_messages(3)
    server.append(messages)
    before = server.snapshot()
    out = run(server, "--move-to", "Pitch", "--dry-run")
    assert "would set $Pitch" in out and "would be moved" in out and "would create folder 'Pitch'" in out
    assert server.snapshot() == before  # flags included
    assert not (env / "state").exists()
    # A real run afterwards still sees everything as new.
    assert f"{len(messages)} new messages" in run(server, "--move-to", "Pitch")


def test_a_dry_run_that_watches_reports_each_message_once(server, env, monkeypatch):
    """Remembering nothing on disk, it still remembers within the session: the next pass
    reads only mail that arrived since, not the whole folder again."""
    from partnercheck.deciding.model import cached_model
    from partnercheck.running import imap
    from partnercheck.running.imap_state import ImapState
    from partnercheck.settings import default_model_path

    server.append([message("quick question", PITCH_TEXT)])
    passes = []

    def wait(client, account, poll):
        passes.append(poll)
        if len(passes) == 2:
            server.append([message("bread and coffee", PARTNERSHIP_TEXT)])
        if len(passes) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(imap, "_wait", wait)
    account = imap.Account(host="127.0.0.1", port=server.port, user=USER, security="plain")
    lines: list[str] = []
    state = ImapState(str(env / "imap.json"), account.identity)
    with pytest.raises(KeyboardInterrupt):
        imap.run(account, PASSWORD, cached_model(default_model_path()), None, state, dry_run=True, watch=True,
                 echo=lines.append)
    assert sum("quick question" in line for line in lines) == 1, lines
    assert sum("bread and coffee" in line for line in lines) == 1, lines
    assert not (env / "imap.json").exists()


def test_keywords_only_and_move_only(server, env):
    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    run(server, "--no-keywords", "--move-to", "Pitch")
    pitch = server.folder("Pitch")
    assert len(pitch) == verdicts.count("pitch")
    assert all(not (flags & OURS) for _, flags in list(pitch.values()) + list(server.folder("INBOX").values()))


def test_a_keyword_of_digits_set_by_another_client_is_read_as_a_keyword(server, env):
    """IMAPClient reads a keyword such as 5 as a number; a message carrying one must not
    stop every run (it is labelled like any other, and a pitch folder's learning reads it)."""
    server.append([message("old thread", PARTNERSHIP_TEXT)], flags=(b"5",))
    server.append([message("filed by hand", PITCH_TEXT)], folder="Pitch", flags=(b"2024",))
    server.append([message("quick question", PITCH_TEXT)])
    out = run(server, "--move-to", "Pitch")
    assert "2 new messages" in out and "1 moved" in out
    assert "learned 1 message as pitch" in out
    inbox = server.folder("INBOX")
    assert len(inbox) == 1 and b"$Partnership" in next(iter(inbox.values()))[1]


def test_large_messages_are_fetched_a_few_at_a_time(server, env, monkeypatch):
    """A batch is at most BATCH_BYTES of mail (a larger message comes alone), not 500
    messages whatever their size: 500 with attachments held gigabytes."""
    from imapclient import IMAPClient

    from partnercheck.running import imap

    messages = [message(f"report {i}", PARTNERSHIP_TEXT + "\n" + "x" * 40_000 * (i % 3)) for i in range(9)]
    server.append(messages)
    server.append([message(f"filed {i}", PITCH_TEXT + "\n" + "y" * 40_000) for i in range(3)], folder="Pitch")
    monkeypatch.setattr(imap, "BATCH_BYTES", 100_000)
    fetched = []
    original = IMAPClient.fetch

    def fetch(self, uids, data, *args, **kwargs):
        if b"BODY.PEEK[]" in data:
            sizes = original(self, uids, [b"RFC822.SIZE"])
            fetched.append([sizes[uid][b"RFC822.SIZE"] for uid in uids])
        return original(self, uids, data, *args, **kwargs)

    monkeypatch.setattr(IMAPClient, "fetch", fetch)
    out = run(server, "--move-to", "Pitch")
    assert "9 new messages" in out and "learned 3 pitch" in out
    assert len(fetched) > 2 and all(len(sizes) == 1 or sum(sizes) <= 100_000 for sizes in fetched), fetched
    assert sum(len(sizes) for sizes in fetched) >= 12  # and the pitches moved into Pitch, read there again


def test_uidvalidity_change(server, env):
    if DOVEADM is None:
        pytest.skip("doveadm is not installed")
    messages = corpus_messages(3)
    server.append(messages)
    run(server, "--move-to", "Pitch")
    after_first = server.snapshot()
    server.doveadm("mailbox", "update", "-u", USER, "--uid-validity", "4242", "INBOX")
    server.append([message("bread and coffee", PARTNERSHIP_TEXT)])
    out = run(server, "--move-to", "Pitch")
    assert "UIDVALIDITY changed" in out
    # Messages carrying our keyword are left alone; ordinary mail (no keyword) is read again,
    # which changes nothing; the new one is labelled.
    assert "1 partnership; 1 keyworded; 0 moved" in out
    snapshot = server.snapshot(ignore=OURS)
    assert sum(snapshot.values()) == sum(after_first.values()) + 1
    assert all(n == 1 for n in snapshot.values())
    assert "0 new messages" in run(server, "--move-to", "Pitch")


def test_message_moved_back_by_user_is_not_moved_again(server, env):
    server.append([message("quick question", PITCH_TEXT), message("bread and coffee", PARTNERSHIP_TEXT)])
    run(server, "--move-to", "Pitch")
    client = server.client()
    client.select_folder("Pitch")
    (uid,) = client.search("ALL")
    client.move([uid], "INBOX")  # the user disagrees
    client.logout()
    out = run(server, "--move-to", "Pitch", "--no-learn")
    assert "1 moved back by you" in out and "0 moved" in out and "learned" not in out  # as --no-learn says
    inbox = server.folder("INBOX")
    assert len(inbox) == 2 and server.folder("Pitch") == {}
    returned = [flags for body, flags in inbox.values() if b"quick question" in body]
    assert returned and b"$Pitch" not in returned[0]
    assert "0 new messages" in run(server, "--move-to", "Pitch")
    # A $Pitch tag the user set in another mail program is not a message moved back.
    server.append([message("tagged by hand", PITCH_TEXT.replace("Tom", "Kai"))], flags=(b"$Pitch",))
    out = run(server, "--move-to", "Pitch")
    assert "0 new messages" in out and "moved back" not in out and "learned" not in out


def test_another_copy_of_a_moved_pitch_is_judged_not_taken_for_one_moved_back(server, env):
    """The same bytes in two folders (Gmail's labels, a second delivery): once one copy was
    moved, the other had been taken for one the user moved back, and learned as other."""
    pitch = message("quick question", PITCH_TEXT)
    server.append([pitch])
    server.append([pitch], folder="Leads")
    out = run(server, "--move-to", "Pitch", "-f", "INBOX", "-f", "Leads")
    assert "moved back" not in out and "learned" not in out
    assert server.folder("INBOX") == {} and server.folder("Leads") == {} and len(server.folder("Pitch")) == 2


def _restart_on_save(monkeypatch, server, at: int) -> list:
    """Restart Dovecot in the middle of the run: on the ``at``-th state save, that is after a
    batch's keywords and moves went through but before the run noted them as done."""
    from partnercheck.running.imap_state import ImapState

    calls = []
    original = ImapState.save

    def save(self):
        calls.append(1)
        if len(calls) == at:
            server.restart()
        return original(self)

    monkeypatch.setattr(ImapState, "save", save)
    monkeypatch.setattr("partnercheck.running.imap.time.sleep", lambda s: None)
    return calls


def test_server_restart_mid_run_loses_and_duplicates_nothing(server, env, monkeypatch):
    messages = corpus_messages(6)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    before = server.snapshot()
    monkeypatch.setattr("partnercheck.running.imap.BATCH", 4)
    _restart_on_save(monkeypatch, server, at=2)
    out = run(server, "--move-to", "Pitch")
    assert "connection lost" in out and "reconnecting" in out
    assert server.snapshot(ignore=OURS) == before
    assert len(server.folder("Pitch")) == verdicts.count("pitch")
    for body, flags in list(server.folder("INBOX").values()) + list(server.folder("Pitch").values()):
        assert len(flags & {b"$Partnership", b"$Pitch", b"$Unsure"}) <= 1
    monkeypatch.undo()
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PARTNERCHECK_STATE_DIR", str(env / "state"))
    assert "0 new messages" in run(server, "--move-to", "Pitch")


@pytest.fixture
def no_move_server():
    """A Dovecot that does not advertise MOVE: partnercheck must COPY, flag and UID EXPUNGE."""
    caps = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS MULTIAPPEND NAMESPACE CHILDREN"
    dovecot = Dovecot(capabilities=caps).start()
    yield dovecot
    dovecot.close()


def test_a_server_without_move_or_uidplus_refuses_a_pitch_folder_in_a_dry_run_too(env):
    """A plain EXPUNGE would remove what the user marked deleted, so no pitch folder there;
    the dry run had said it would move the pitches the real run then refused to touch."""
    caps = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE MULTIAPPEND NAMESPACE CHILDREN"
    server = Dovecot(capabilities=caps).start()
    try:
        server.append(corpus_messages(1))
        for dry in ([], ["-n"]):
            assert "neither MOVE nor UIDPLUS" in run(server, "--move-to", "Pitch", *dry, code=1)
        assert "3 new messages" in run(server)  # keywords alone are fine
    finally:
        server.close()


def test_copy_and_uid_expunge_without_move(no_move_server, env, monkeypatch):
    server = no_move_server
    messages = corpus_messages(6)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    # A message the user marked deleted themselves must survive our expunge.
    server.append([message("keep me", "Minutes of the meeting, see you Thursday.\n\nLi")], flags=(b"\\Deleted",))
    before = server.snapshot()
    monkeypatch.setattr("partnercheck.running.imap.BATCH", 5)
    # Cut the connection after the first COPY, before its EXPUNGE.
    from partnercheck.running import imap

    original = imap.Labeller._delete
    cut = []

    def delete(self, uids):
        if not cut:
            cut.append(1)
            server.restart()
        return original(self, uids)

    monkeypatch.setattr(imap.Labeller, "_delete", delete)
    monkeypatch.setattr("partnercheck.running.imap.time.sleep", lambda s: None)
    out = run(server, "--move-to", "Pitch")
    assert cut and "reconnecting" in out
    assert server.snapshot(ignore=OURS) == before
    assert len(server.folder("Pitch")) == verdicts.count("pitch")
    assert any(b"keep me" in body for body, _ in server.folder("INBOX").values())


def test_wrong_password_is_one_clear_line(server, env, monkeypatch):
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", "wrong")
    out = run(server, code=1)
    assert out.count("\n") == 1
    assert out.startswith(f"Error: {USER}@127.0.0.1:{server.port}: login failed: ")
    assert "wrong" not in out


@pytest.mark.parametrize("password", ["pässwörd", "wrong"])
def test_a_password_outside_ascii_is_tried_and_refused_in_one_line(server, env, monkeypatch, password):
    """IMAP LOGIN takes ASCII only: a password outside it had been an internal error, and can
    now log in (by AUTHENTICATE PLAIN); here it is the wrong one, said as any other."""
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", password)
    out = run(server, code=1)
    assert out.count("\n") == 1 and out.startswith(f"Error: {USER}@127.0.0.1:{server.port}: login failed: ")


def test_a_password_file_saved_with_a_byte_order_mark_or_crlf_logs_in(server, env):
    """Notepad writes a byte order mark before the text, and CRLF after it: neither is part
    of the password. A file that is not UTF-8 is one line."""
    from dovecot_server import PASSWORD

    secret = env / "secret"
    secret.write_bytes(b"\xef\xbb\xbf" + PASSWORD.encode() + b"\r\n")
    result = CliRunner().invoke(
        __import__("partnercheck.interface.cli", fromlist=["cli"]).cli,
        ["imap", "--host", "127.0.0.1", "--port", str(server.port), "--plain", "--user", USER,
         "--password-file", str(secret), "-n"])
    assert result.exit_code == 0, result.output
    secret.write_bytes(b"p\xe4ss\n")
    result = CliRunner().invoke(
        __import__("partnercheck.interface.cli", fromlist=["cli"]).cli,
        ["imap", "--host", "127.0.0.1", "--port", str(server.port), "--plain", "--user", USER,
         "--password-file", str(secret), "-n"])
    assert result.exit_code == 1 and "is not UTF-8 text" in result.output and "internal error" not in result.output


def test_nothing_listening_is_one_clear_line(env):
    from dovecot_server import free_port

    port = free_port()
    result = CliRunner().invoke(__import__("partnercheck.interface.cli", fromlist=["cli"]).cli,
                                ["imap", "--host", "127.0.0.1", "--port", str(port), "--plain", "--user", USER,
                                 "--password-env", "PC_TEST_IMAP_PASSWORD"])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot connect to 127.0.0.1:{port}: Connection refused\n"


def test_a_ca_file_that_cannot_be_used_is_one_clear_line_at_once(env):
    """Not a lost connection, tried three times and reported as one."""
    from dovecot_server import free_port

    not_pem = env / "not-a-cert.pem"
    not_pem.write_text("hello\n")
    cli = __import__("partnercheck.interface.cli", fromlist=["cli"]).cli
    for ca_file, said in ((env / "missing.pem", "cannot read ca_file"), (not_pem, "holds no PEM certificate")):
        result = CliRunner().invoke(cli, ["imap", "--host", "127.0.0.1", "--port", str(free_port()), "--user", USER,
                                          "--password-env", "PC_TEST_IMAP_PASSWORD", "--ca-file", str(ca_file)])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert result.output.startswith("Error: ") and said in result.output and str(ca_file) in result.output


def test_a_pitch_folder_the_server_will_not_create_is_one_clear_line(server, env):
    """Dovecot's Maildir separates levels with '.', and refuses a name with '/' in it."""
    server.append([message("quick question", PITCH_TEXT)])
    before = server.snapshot()
    out = run(server, "--move-to", "Spam/Pitch", code=1)
    assert out.startswith("Error: cannot create folder 'Spam/Pitch': ") and out.count("\n") == 1, out
    assert server.snapshot() == before  # not keyworded either: the next run, with a good name, moves it
    assert "1 moved" in run(server, "--move-to", "Spam.Pitch")


def test_the_pitch_folder_it_creates_is_subscribed(server, env):
    """Thunderbird and Roundcube list only subscribed folders: an unsubscribed Pitch folder
    would hide every pitch moved into it."""
    server.append([message("quick question", PITCH_TEXT)])
    assert "created folder 'Pitch'" in run(server, "--move-to", "Pitch")
    client = server.client()
    try:
        assert "Pitch" in [name for _, _, name in client.list_sub_folders()]
    finally:
        client.logout()


def test_server_without_keywords_gets_a_clear_message(server, env, monkeypatch):
    from imapclient import IMAPClient

    original = IMAPClient.select_folder

    def select(self, folder, readonly=False):
        info = original(self, folder, readonly)
        info[b"PERMANENTFLAGS"] = (b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft")
        return info

    monkeypatch.setattr(IMAPClient, "select_folder", select)
    server.append([message("quick question", PITCH_TEXT)])
    out = run(server, code=1)
    assert "does not let partnercheck set keywords in 'INBOX'" in out and "--no-keywords" in out
    assert out.count("\n") == 1


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_tls_and_starttls_with_a_self_signed_certificate(env):
    server = Dovecot(tls=True).start()
    try:
        server.append([message("quick question", PITCH_TEXT)])
        base = ["imap", "--host", "127.0.0.1", "--user", USER, "--password-env", "PC_TEST_IMAP_PASSWORD"]
        cli = __import__("partnercheck.interface.cli", fromlist=["cli"]).cli
        untrusted = CliRunner().invoke(cli, base + ["--port", str(server.tls_port)])
        assert untrusted.exit_code == 1
        assert "TLS certificate is not trusted" in untrusted.output and untrusted.output.count("\n") == 1
        tls = CliRunner().invoke(cli, base + ["--port", str(server.tls_port), "--ca-file", str(server.cert),
                                              "--dry-run"])
        assert tls.exit_code == 0 and "would set $Pitch" in tls.output, tls.output
        starttls = CliRunner().invoke(cli, base + ["--port", str(server.port), "--starttls", "--ca-file",
                                                   str(server.cert)])
        assert starttls.exit_code == 0 and "1 new message;" in starttls.output, starttls.output
    finally:
        server.close()


def test_account_from_config_with_password_command(server, env, monkeypatch):
    secret = env / "secret"
    secret.write_text(PASSWORD + "\n")
    config = env / "config.toml"
    config.write_text(
        f'[imap.test]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\nuser = "{USER}"\n'
        f'password_command = "cat {secret}"\nfolders = ["INBOX"]\npitch_folder = "Pitch"\n'
        f'keywords = {{ pitch = "$Pitch" }}\n'
    )
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    server.append([message("quick question", PITCH_TEXT), message("bread and coffee", PARTNERSHIP_TEXT)])
    result = CliRunner().invoke(__import__("partnercheck.interface.cli", fromlist=["cli"]).cli, ["imap"])
    assert result.exit_code == 0, result.output
    assert "1 moved" in result.output
    inbox = server.folder("INBOX")
    assert all(not (flags & OURS) for _, flags in inbox.values())  # only pitch has a keyword here
    # A password file works the same; a failing command is one line.
    config.write_text(config.read_text().replace(f'password_command = "cat {secret}"',
                                                 f'password_file = "{secret}"'))
    assert CliRunner().invoke(__import__("partnercheck.interface.cli", fromlist=["cli"]).cli, ["imap"]).exit_code == 0
    config.write_text(config.read_text().replace(f'password_file = "{secret}"', 'password_command = "exit 3"'))
    failed = CliRunner().invoke(__import__("partnercheck.interface.cli", fromlist=["cli"]).cli, ["imap"])
    assert failed.exit_code == 1 and failed.output == "Error: password_command failed (exit 3)\n"


class _Lines:
    """The watcher's output, line by line, read by a thread: a line is never left unseen in
    a read buffer while a select() on the pipe waits, as happens when lines come together."""

    def __init__(self, process: subprocess.Popen) -> None:
        import queue
        import threading

        self.lines: "queue.Queue[bytes]" = queue.Queue()
        self.seen: list[bytes] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in process.stdout], daemon=True).start()

    def next(self, seconds: float) -> bytes:
        """The next line, or a failure after ``seconds`` (never a hang)."""
        import queue

        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            raise AssertionError(f"no output from the watcher in {seconds} s after {self.seen!r}") from None
        self.seen.append(line)
        return line


def _watcher(server: Dovecot, env: Path, poll: str) -> subprocess.Popen:
    """The installed command watching the server's INBOX, moving pitches to Pitch."""
    command = Path(sys.executable).parent / "partnercheck"
    if not command.exists():
        pytest.skip("the partnercheck command is not installed")
    environment = {**os.environ, "PC_TEST_IMAP_PASSWORD": PASSWORD, "PARTNERCHECK_STATE_DIR": str(env / "state")}
    return subprocess.Popen(
        [str(command), "imap", "--host", "127.0.0.1", "--port", str(server.port), "--plain", "--user", USER,
         "--password-env", "PC_TEST_IMAP_PASSWORD", "--move-to", "Pitch", "--watch", "--poll", poll],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=ctrl_c_reaches)


def test_watch_labels_new_mail_until_interrupted(server, env):
    watcher = _watcher(server, env, "60")
    output = _Lines(watcher)
    try:
        first = output.next(120)  # the first pass over an empty INBOX
        assert b"0 new messages" in first and b"watching" in first, first
        # A second run for the account (cron beside the watch) is refused; a dry run is not.
        assert "another partnercheck imap run is working on this account" in run(server, "--move-to", "Pitch", code=1)
        assert "0 new messages" in run(server, "--dry-run")
        server.append([message("quick question", PITCH_TEXT)])
        line = output.next(55)  # woken by IDLE, before the 60 s poll
        if line.startswith(b"created folder"):
            line = output.next(30)
        assert b"1 new message;" in line and b"1 moved" in line, line
        # Moved back by the user: learned, the personal model retrained, and the next pass
        # (which loads that model) still labels new mail.
        client = server.client()
        client.select_folder("Pitch")
        client.move(client.search("ALL"), "INBOX")
        client.logout()
        lines = b"".join(output.next(240) for _ in range(3))  # a retrain under load is slow
        assert b"learned 1 message as other" in lines and b"personal model retrained" in lines, lines
        assert b"1 moved back by you" in lines, lines
        server.append([message("bread and coffee", PARTNERSHIP_TEXT)])
        line = output.next(120)
        assert b"1 new message;" in line and b"1 partnership" in line, line
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()  # not left running after the test, holding the server's folders
            watcher.wait()
            raise
    assert watcher.returncode == 130 and b"interrupted" in output.next(30)


def test_a_watch_whose_server_restarts_reconnects_and_labels_the_next_mail(server, env):
    """IMAPClient reads a connection the server closed during IDLE as no responses, at once
    and again: the watch spun on it, a core busy, and labelled nothing until its poll ended."""
    watcher = _watcher(server, env, "3600")
    output = _Lines(watcher)
    try:
        assert b"watching" in output.next(120)
        server.restart()
        server.append([message("quick question", PITCH_TEXT)])
        lines = [output.next(120)]
        while b"1 new message;" not in lines[-1]:
            lines.append(output.next(120))  # an hour's poll, had the lost connection gone unseen
        assert any(b"connection lost" in line and b"reconnecting" in line for line in lines), lines
        assert b"1 moved" in lines[-1], lines
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()
    assert len(server.folder("Pitch")) == 1


def test_an_interrupt_just_after_idle_was_sent_ends_the_watch_at_once(server, env, monkeypatch):
    """Ctrl-C lands between sending IDLE and reading the server's reply: the watcher hangs
    up rather than send a LOGOUT that the server, still waiting for DONE, never answers."""
    import threading

    from imapclient import IMAPClient

    from partnercheck.interface.cli import cli

    config = env / "config.toml"
    config.write_text(f'[imap.test]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
                      f'user = "{USER}"\npassword_env = "PC_TEST_IMAP_PASSWORD"\ntimeout = 600\n')
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))

    def interrupted_idle(self):
        self._imap._command("IDLE")
        raise KeyboardInterrupt

    monkeypatch.setattr(IMAPClient, "idle", interrupted_idle)
    results = []
    watcher = threading.Thread(target=lambda: results.append(CliRunner().invoke(cli, ["imap", "--watch"])),
                               daemon=True)
    watcher.start()
    watcher.join(120)  # the server's 600 s timeout would be the only way out of a LOGOUT
    assert results, "the watcher did not stop on the interrupt"
    assert results[0].exit_code == 130 and "interrupted; what was done is saved" in results[0].output


def _store_counts() -> dict:
    from partnercheck.learning.corrections import Store, store_path

    with Store.open(store_path()) as store:
        return store.counts()


def test_moved_back_is_learned_as_other_and_the_personal_model_retrained(server, env):
    server.append([message("quick question", PITCH_TEXT), message("bread and coffee", PARTNERSHIP_TEXT)])
    run(server, "--move-to", "Pitch")
    client = server.client()
    client.select_folder("Pitch")
    client.move(client.search("ALL"), "INBOX")  # the user says: not a pitch
    client.logout()
    out = run(server, "--move-to", "Pitch")
    assert "learned 1 message as other: 1 added" in out and "personal model retrained" in out
    assert _store_counts().get("other") == 1
    # The next run judges with the personal model, and has nothing new to learn.
    out = run(server, "--move-to", "Pitch")
    assert "0 new messages" in out and "learned" not in out


def test_mail_filed_by_the_user_is_learned_and_ours_is_not(server, env, monkeypatch):
    monkeypatch.setattr("partnercheck.learning.corrections.retrain_personal", _no_retrain)
    pitch, partnership = message("quick question", PITCH_TEXT), message("bread and coffee", PARTNERSHIP_TEXT)
    by_hand = message("a note from the printer", PITCH_TEXT.replace("Tom", "Rita"), sender="rita@print.example")
    server.append([pitch, partnership])
    run(server, "--move-to", "Pitch", "--partnership-folder", "Partners")
    assert _store_counts() == {}  # our own move into Pitch teaches nothing
    before = server.snapshot()
    server.append([by_hand], folder="Pitch")  # filed by the user, as isbg's --teachonly takes it
    client = server.client()
    client.create_folder("Partners")
    client.select_folder("INBOX")
    client.move(client.search("ALL"), "Partners")  # the partnership, filed by the user
    client.logout()
    before = server.snapshot(ignore=OURS)
    out = run(server, "--move-to", "Pitch", "--partnership-folder", "Partners")
    assert "learned 1 message as pitch: 1 added" in out and "learned 1 message as partnership: 1 added" in out
    assert _store_counts() == {"pitch": 1, "partnership": 1}
    assert server.snapshot(ignore=OURS) == before  # learning changes nothing on the server
    out = run(server, "--move-to", "Pitch", "--partnership-folder", "Partners")
    assert "learned" not in out
    # --no-learn and --dry-run learn nothing.
    server.append([message("another printer note", PITCH_TEXT.replace("Tom", "Ola"))], folder="Pitch")
    assert "would learn 1 pitch" in run(server, "--move-to", "Pitch", "--dry-run")
    assert "learned" not in run(server, "--move-to", "Pitch", "--no-learn")
    assert _store_counts() == {"pitch": 1, "partnership": 1}


def _no_retrain(store, *args, **kwargs):
    from partnercheck.learning.corrections import RetrainSummary

    return RetrainSummary(path="(not retrained in this test)")


def test_pitches_labelled_but_not_moved_are_moved_by_the_next_run(server, env, monkeypatch):
    """A run cut off between setting $Pitch and moving (a full pitch folder, a lost
    connection) strands nothing: the next run moves what carries our keyword."""
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError

    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    before = server.snapshot()

    def over_quota(self, *args, **kwargs):
        raise IMAPClientError("MOVE command error: NO [OVERQUOTA] Quota exceeded")

    monkeypatch.setattr(IMAPClient, "move", over_quota)
    out = run(server, "--move-to", "Pitch", code=1)
    assert "cannot move message" in out and "Quota exceeded" in out
    assert len(server.folder("Pitch")) == 0
    monkeypatch.undo()
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PARTNERCHECK_STATE_DIR", str(env / "state"))
    run(server, "--move-to", "Pitch")
    assert len(server.folder("Pitch")) == verdicts.count("pitch")
    assert not [flags for _, flags in server.folder("INBOX").values() if b"$Pitch" in flags]
    assert server.snapshot(ignore=OURS) == before
    # a $Pitch the user set by hand is theirs: the message stays where it is
    server.append([message("note to self", "Remember the invoices.")], flags=(b"$Pitch",))
    run(server, "--move-to", "Pitch")
    assert any(b"note to self" in body for body, _ in server.folder("INBOX").values())


@pytest.mark.parametrize("with_move", [True, False], ids=["move", "copy-and-expunge"])
def test_mail_another_client_deletes_mid_run_costs_nothing_else(request, env, monkeypatch, with_move):
    """Deleted between SEARCH and FETCH (Dovecot answers BODY[] NIL), or before the MOVE or
    the COPY (the whole command fails with EXPUNGEISSUED, and a COPY copies nothing)."""
    from imapclient import IMAPClient

    server = request.getfixturevalue("server" if with_move else "no_move_server")
    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    pitch = next(i + 1 for i, label in enumerate(verdicts) if label == "pitch" and i)
    victims = {"fetch": iter([1]), "move": iter([pitch]), "copy": iter([pitch])}  # each command's first call
    originals = {"fetch": IMAPClient.fetch, "move": IMAPClient.move, "copy": IMAPClient.copy}

    def delete_one_first(name):
        def call(self, *args, **kwargs):
            victim = next(victims[name], None)
            if victim is not None:
                other = server.client()
                other.select_folder("INBOX")
                other.delete_messages([victim])
                other.expunge()
                other.logout()
            return originals[name](self, *args, **kwargs)
        return call

    monkeypatch.setattr(IMAPClient, "fetch", delete_one_first("fetch"))
    monkeypatch.setattr(IMAPClient, "move", delete_one_first("move"))
    monkeypatch.setattr(IMAPClient, "copy", delete_one_first("copy"))
    out = run(server, "--move-to", "Pitch")
    assert "internal error" not in out
    remaining = len(server.folder("INBOX")) + len(server.folder("Pitch"))
    assert remaining == len(messages) - 2


def test_a_server_slow_to_come_back_is_tried_again(server, env, monkeypatch):
    from partnercheck.running import imap

    server.append(corpus_messages(2))
    real_connect, real_run = imap.connect, imap.Labeller.run
    calls = {"connect": 0, "run": 0}

    def connect(account, password):
        calls["connect"] += 1
        if calls["connect"] == 2:  # the first reconnection finds the server not yet back
            raise imap.ImapError("cannot connect to 127.0.0.1: Connection refused")
        return real_connect(account, password)

    def labeller_run(self):
        calls["run"] += 1
        if calls["run"] == 1:
            raise ConnectionResetError(104, "Connection reset by peer")
        return real_run(self)

    monkeypatch.setattr(imap, "connect", connect)
    monkeypatch.setattr(imap.Labeller, "run", labeller_run)
    monkeypatch.setattr("partnercheck.running.imap.time.sleep", lambda s: None)
    out = run(server, "--move-to", "Pitch")
    assert "connection lost (Connection reset by peer); reconnecting" in out
    assert "Connection refused); reconnecting" in out and calls["connect"] == 3


def test_a_cut_off_copy_is_not_taken_for_an_older_identical_copy(no_move_server, env, monkeypatch):
    """The same bytes already filed in the pitch folder are not the copy a cut-off run made."""
    from imapclient import IMAPClient

    server = no_move_server
    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    server.append([next(m for m, label in zip(messages, verdicts) if label == "pitch")], folder="Pitch")
    before = server.snapshot()
    original, cut = IMAPClient.copy, []

    def copy(self, *args, **kwargs):
        if not cut:  # the connection drops just before the COPY
            cut.append(1)
            server.restart()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IMAPClient, "copy", copy)
    monkeypatch.setattr("partnercheck.running.imap.time.sleep", lambda s: None)
    out = run(server, "--move-to", "Pitch")
    assert cut and "reconnecting" in out
    assert server.snapshot(ignore=OURS) == before  # nothing lost: the INBOX copy went to Pitch too
    assert len(server.folder("Pitch")) == verdicts.count("pitch") + 1


def test_a_cut_off_copy_whose_pitch_folder_was_deleted_since_is_finished(no_move_server, env, monkeypatch):
    """A run stopped between noting a COPY and making it; the user deletes the pitch folder
    before the next run, which had failed on every run after ("doesn't exist")."""
    from imapclient import IMAPClient

    server = no_move_server
    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)

    def stopped(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(IMAPClient, "copy", stopped)
    run(server, "--move-to", "Pitch", code=130)
    monkeypatch.undo()
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PARTNERCHECK_STATE_DIR", str(env / "state"))
    user = server.client()
    user.delete_folder("Pitch")
    user.logout()
    run(server, "--move-to", "Pitch")
    assert len(server.folder("Pitch")) == verdicts.count("pitch")
    assert len(server.folder("INBOX")) == len(messages) - verdicts.count("pitch")


def test_a_pitch_moved_back_after_a_lost_move_reply_stays_where_the_user_put_it(server, env, monkeypatch):
    """The MOVE went through but its reply was lost: a message the user later moves back
    (with a new UID) is theirs, not a pitch left behind by that run."""
    from imapclient import IMAPClient

    messages = corpus_messages(3)
    verdicts = expected_verdicts(messages)
    server.append(messages)
    original, lost = IMAPClient.move, []

    def move_then_drop(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not lost:
            lost.append(1)
            raise ConnectionResetError(104, "Connection reset by peer")
        return result

    monkeypatch.setattr(IMAPClient, "move", move_then_drop)
    monkeypatch.setattr("partnercheck.running.imap.time.sleep", lambda s: None)
    run(server, "--move-to", "Pitch")
    assert lost and len(server.folder("Pitch")) == verdicts.count("pitch")
    monkeypatch.undo()
    monkeypatch.setenv("PC_TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PARTNERCHECK_STATE_DIR", str(env / "state"))
    user = server.client()  # the user drags one back to INBOX
    user.select_folder("Pitch")
    user.move([min(user.search("ALL"))], "INBOX")
    user.logout()
    run(server, "--move-to", "Pitch")
    assert len(server.folder("Pitch")) == verdicts.count("pitch") - 1
