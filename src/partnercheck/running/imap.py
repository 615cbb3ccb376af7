"""Label and file mail in a live IMAP mailbox: ``partnercheck imap``.

For each folder it watches, a run fetches the messages it has not seen (by UID, above the
last one it finished with under the folder's UIDVALIDITY), classifies them with the same
model and policy as every other command, and then, as configured, sets one IMAP keyword
per verdict (``$Partnership``, ``$Pitch``, ``$Unsure``; ordinary mail gets none) and moves
pitches to a pitch folder. Partnership mail is never moved, and nothing is ever deleted:
MOVE is used where the server has it, else COPY, ``\\Deleted`` and ``UID EXPUNGE`` of only
the messages just copied (never a plain EXPUNGE, which would remove whatever else the
user had marked deleted). Messages are read with ``BODY.PEEK[]``, so none is marked seen.

Protocol handling is IMAPClient's (a maintained library with MOVE, UIDPLUS, IDLE,
STARTTLS, folder-name encoding and response parsing); this module decides what to do.

What a run finished with is saved after every batch (:mod:`partnercheck.running.imap_state`), so a
run cut off by a dropped connection picks up where it stopped: a keyword set twice is
still one keyword, and a moved message is no longer in the folder to be moved again.
"""

from __future__ import annotations

import getpass
import os
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..labels import VERDICTS
from ..reading.mail import parse_message
from .batch import worker_setup
from .imap_state import ImapState, digest

#: Messages fetched and classified per round trip.
BATCH = 500
#: Bytes of mail fetched per round trip, at most (a larger message comes alone): read and
#: parsed, a message takes about 3.5 times its size in memory, and 500 messages with
#: attachments of a few megabytes each took gigabytes.
BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_KEYWORDS = {"partnership": "$Partnership", "pitch": "$Pitch", "unsure": "$Unsure"}
SECURITY = ("tls", "starttls", "plain")
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
PASSWORD_ENV = "PARTNERCHECK_IMAP_PASSWORD"
#: Folders with at least this many new messages are judged by worker processes (all cores),
#: while this process fetches the next batch and sets keywords; below, in this process.
PARALLEL_FROM = 2000
#: Connection failures survived in a row before a run gives up.
RETRIES = 3


class ImapError(Exception):
    """Anything that stops an IMAP run; the message is one line for the user."""


# ----------------------------------------------------------------------- accounts

@dataclass
class Account:
    """One IMAP account, as the config file's ``[imap.NAME]`` section and the options say."""

    name: str = ""
    host: str = ""
    port: int | None = None
    user: str = ""
    security: str = "tls"
    password_file: str | None = None
    password_command: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    folders: list[str] = field(default_factory=lambda: ["INBOX"])
    pitch_folder: str | None = None
    partnership_folder: str | None = None
    keywords: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYWORDS))
    learn: bool = True
    timeout: float = 60.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port or DEFAULT_PORTS[self.security]}"

    @property
    def identity(self) -> str:
        """What the state is kept under: the same mailbox however the account is named."""
        return f"{self.user}@{self.address}"


_KEYS = {"host", "port", "user", "security", "password_file", "password_command", "password_env", "ca_file",
         "folders", "pitch_folder", "partnership_folder", "keywords", "learn", "timeout"}


def account_from_config(config: dict, name: str | None, where: str = "config file") -> Account:
    """The account ``name`` from ``[imap.NAME]`` (the only one when ``name`` is None);
    an empty :class:`Account` when the config has no imap section and no name was asked for."""
    sections = config.get("imap", {})
    if not isinstance(sections, dict):
        raise ImapError(f"{where}: [imap] must hold one table per account, like [imap.work]")
    accounts = {k: v for k, v in sections.items() if isinstance(v, dict)}
    loose = sorted(k for k in sections if k not in accounts)
    if loose:  # `[imap]` then `host = ...`: the keys of an account with no name, which none would read
        raise ImapError(f"{where}: [imap] holds {', '.join(loose)} outside an account; put the keys under "
                        "a named one, like [imap.work]")
    if name is None:
        if not accounts:
            return Account()
        if len(accounts) > 1:
            raise ImapError(f"{where} has several imap accounts ({', '.join(sorted(accounts))}); name one with --account")
        name = next(iter(accounts))
    if name not in accounts:
        known = ", ".join(sorted(accounts)) or "none"
        raise ImapError(f"{where}: no [imap.{name}] section (accounts: {known})")
    section = accounts[name]
    unknown = set(section) - _KEYS
    if unknown:
        raise ImapError(f"{where}: [imap.{name}]: unknown key(s) {', '.join(sorted(unknown))}")
    account = Account(name=name)
    for key, value in section.items():
        if key == "keywords":
            account.keywords = _keywords(value, f"{where}: [imap.{name}] keywords")
        elif key == "folders":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ImapError(f"{where}: [imap.{name}] folders must be a list of folder names")
            account.folders = list(value)
        elif not _of_kind(key, value := _unquoted(key, value)):
            raise ImapError(f"{where}: [imap.{name}] {key} must be {_KINDS.get(key, 'a string in quotes')}")
        elif key == "timeout":
            account.timeout = float(value)
        else:
            setattr(account, key, os.path.expanduser(value) if key in ("password_file", "ca_file") else value)
    return account


#: What the keys that are not strings must be.
_KINDS = {"port": "a port number from 1 to 65535", "learn": "true or false",
          "timeout": "a number of seconds above 0"}


def _unquoted(key: str, value):
    """A port or timeout written in quotes (``port = "993"``), as earlier versions read it:
    its number; any other value as it is."""
    if key in ("port", "timeout") and isinstance(value, str):
        try:
            return int(value) if key == "port" else float(value)
        except ValueError:
            return value
    return value


def _of_kind(key: str, value) -> bool:
    if key == "learn":
        return isinstance(value, bool)  # not the string "false", which bool() takes for true
    if isinstance(value, bool):
        return False  # TOML's true and false are no numbers
    if key == "port":
        return isinstance(value, int) and 1 <= value <= 65535
    if key == "timeout":
        return isinstance(value, (int, float)) and value > 0
    return isinstance(value, str)


def _keywords(value, where: str) -> dict[str, str]:
    if value is True:
        return dict(DEFAULT_KEYWORDS)
    if value is False:
        return {}
    if not isinstance(value, dict) or not set(value) <= set(VERDICTS):
        raise ImapError(f"{where}: true, false, or a table of verdict = \"$Keyword\" ({', '.join(VERDICTS)})")
    keywords = {}
    for label, keyword in value.items():
        keyword = str(keyword)
        if not keyword or not keyword.isascii() or keyword.startswith("\\") \
                or any(c in keyword for c in ' ()[]{}%*"\\') or not keyword.isprintable():
            raise ImapError(f"{where}: {keyword!r} is not a valid IMAP keyword")
        keywords[label] = keyword
    return keywords


def check_account(account: Account) -> None:
    """Refuse settings that cannot work, before connecting."""
    if not account.host:
        raise ImapError("no IMAP server: give --host or an [imap.NAME] section with host = \"...\"")
    if not account.user:
        raise ImapError("no IMAP user: give --user or user = \"...\" in the account's section")
    if account.security not in SECURITY:
        raise ImapError(f"security must be one of {', '.join(SECURITY)}, not {account.security!r}")
    if not account.folders:
        raise ImapError("no folder to read")
    # INBOX in any letter case is one folder: read once, and remembered under one name.
    account.folders = list(dict.fromkeys(_folder_key(folder) for folder in account.folders))
    labelled = set(account.folders)
    for special in (account.pitch_folder, account.partnership_folder):
        if special and _folder_key(special) in labelled:
            raise ImapError(f"{special!r} is both a folder to label and the pitch or partnership folder")
    if account.pitch_folder and account.partnership_folder \
            and _folder_key(account.pitch_folder) == _folder_key(account.partnership_folder):
        raise ImapError(f"{account.pitch_folder!r} is both the pitch folder and the partnership folder: what you "
                        "file there could not be learned as both")

    if not account.keywords and not account.pitch_folder:
        raise ImapError("nothing to do: no keywords and no pitch folder (set keywords or --move-to)")


def _folder_key(folder: str) -> str:
    """A folder's name as the server compares it: INBOX in any letter case is INBOX (RFC 3501)."""
    return "INBOX" if folder.upper() == "INBOX" else folder


def read_password(account: Account, prompt: bool = True) -> str:
    """The password from the account's password file, command or environment variable
    (else $PARTNERCHECK_IMAP_PASSWORD, else a prompt on a terminal). Never from the command line."""
    if account.password_command:
        try:
            done = subprocess.run(account.password_command, shell=True, capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise ImapError("password_command took more than 2 minutes") from None
        if done.returncode != 0:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ImapError(f"password_command failed (exit {done.returncode})" + (f": {why[0]}" if why else ""))
        return _first_line(done.stdout.decode("utf-8", "replace"), "password_command printed nothing")
    if account.password_file:
        try:  # utf-8-sig: a file saved by Notepad opens with a byte order mark, not part of the password
            with open(account.password_file, encoding="utf-8-sig") as handle:
                return _first_line(handle.read(), f"{account.password_file} is empty")
        except OSError as exc:
            raise ImapError(f"cannot read the password file {account.password_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ImapError(f"the password file {account.password_file} is not UTF-8 text") from None
    if account.password_env:
        value = os.environ.get(account.password_env)
        if not value:
            raise ImapError(f"${account.password_env} (password_env) is not set")
        return value
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if prompt and sys.stdin.isatty():
        return getpass.getpass(f"IMAP password for {account.identity}: ")
    raise ImapError("no password: set password_file, password_command or password_env for the account, "
                    f"or ${PASSWORD_ENV}")


def _first_line(text: str, empty: str) -> str:
    line = text.split("\n", 1)[0].rstrip("\r")
    if not line:
        raise ImapError(empty)
    return line


# --------------------------------------------------------------------- connecting

#: What a dropped or refused connection raises, through IMAPClient and below it.
def _connection_errors() -> tuple[type[BaseException], ...]:
    import imaplib

    from imapclient.exceptions import IMAPClientAbortError

    return (OSError, EOFError, imaplib.IMAP4.abort, IMAPClientAbortError)


def connect(account: Account, password: str):
    """A logged-in IMAPClient; every failure is one :class:`ImapError` line."""
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError, LoginError

    port = account.port or DEFAULT_PORTS[account.security]
    context = _tls_context(account) if account.security != "plain" else None
    where = f"{account.host}:{port}"
    try:
        client = IMAPClient(account.host, port, ssl=account.security == "tls", ssl_context=context,
                            timeout=account.timeout)
        if account.security == "starttls":
            if not client.has_capability("STARTTLS"):
                raise ImapError(f"{where} does not offer STARTTLS; use security = \"tls\" (port 993)")
            client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(f"{where}: the server's TLS certificate is not trusted ({exc.verify_message}); "
                        "name the CA with ca_file if it is your own") from None
    except ssl.SSLError as exc:
        raise ImapError(f"{where}: TLS failed ({exc.reason or exc})") from None
    except socket.timeout:
        raise ImapError(f"cannot connect to {where}: timed out") from None
    except OSError as exc:
        raise ImapError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    except IMAPClientError as exc:
        raise ImapError(f"{where}: {_text(exc)}") from None
    try:
        if (account.user + password).isascii():
            client.login(account.user, password)
        elif client.has_capability("AUTH=PLAIN"):  # LOGIN takes ASCII only; AUTHENTICATE PLAIN takes UTF-8
            client.plain_login(account.user, password)
        else:
            _close(client)
            raise ImapError(f"{where}: a user name or password outside ASCII needs AUTHENTICATE PLAIN, "
                            "which this server does not offer")
    except LoginError as exc:
        _close(client)
        raise ImapError(f"{account.user}@{where}: login failed: {_text(exc)}") from None
    except _connection_errors() as exc:
        raise ImapError(f"{where}: connection lost while logging in: {_text(exc)}") from None
    return client


def _tls_context(account: Account) -> ssl.SSLContext:
    """The TLS context, trusting ``ca_file`` too when one is named; a CA file that cannot be
    read is the account's mistake, said at once (not a lost connection, tried again)."""
    try:
        return ssl.create_default_context(cafile=account.ca_file)
    except ssl.SSLError as exc:
        raise ImapError(f"ca_file {account.ca_file} holds no PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise ImapError(f"cannot read ca_file {account.ca_file}: {exc.strerror or exc}") from None


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # "Connection reset by peer", not "104"
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return " ".join(text.split()) or exc.__class__.__name__


def _close(client, log_out: bool = True) -> None:
    """Log out, or just hang up. An interrupt can cut an exchange in half (IDLE sent, its
    reply unread), and a LOGOUT would then wait for an answer that never comes."""
    if log_out:
        try:
            client.logout()
            return
        except Exception:
            pass
    try:
        client.shutdown()
    except Exception:
        pass


# ---------------------------------------------------------------------- labelling

@dataclass
class Summary:
    """What a run did (or, in a dry run, would have done)."""

    verdicts: Counter = field(default_factory=Counter)
    keyworded: int = 0
    moved: int = 0
    returned: int = 0
    learned: Counter = field(default_factory=Counter)

    def line(self, dry_run: bool = False) -> str:
        total = sum(self.verdicts.values())
        parts = [f"{total} new message{'s' * (total != 1)}"]
        if total:
            parts.append(", ".join(f"{n} {label}" for label, n in sorted(self.verdicts.items())))
        would = "would be " if dry_run else ""
        parts.append(f"{self.keyworded} {would}keyworded")
        parts.append(f"{self.moved} {would}moved")
        if self.returned:
            parts.append(f"{self.returned} moved back by you")
        if self.learned:
            parts.append(("would learn " if dry_run else "learned ") + ", ".join(f"{n} {label}" for label, n in sorted(self.learned.items())))
        return "; ".join(parts)


class Labeller:
    """One account's run over its folders, on a logged-in client."""

    def __init__(self, client, account: Account, model, policy, state: ImapState, *, dry_run: bool = False,
                 echo: Callable[[str], None] = print, batch: int | None = None, verbose: bool = False,
                 jobs: int | None = None, learner=None) -> None:
        self.client = client
        self.account = account
        self.model = model
        self.policy = policy
        self.state = state
        self.dry_run = dry_run
        self.echo = echo
        self.batch = batch or BATCH
        self.jobs = jobs or os.cpu_count() or 1
        self.learner = learner
        self.verbose = verbose or dry_run
        self.summary = Summary()
        #: (record, label) pairs the user taught by filing mail, learned before the batch that
        #: found them is noted as done (learning the same message again changes nothing).
        self.lessons: list[tuple[object, str]] = []
        self._unlearned: list[tuple[object, str]] = []
        self._ours = {k.lower().encode() for k in account.keywords.values()}
        self._pitch_kw = account.keywords.get("pitch", "").encode() or None
        self._checked_destination = False

    # --------------------------------------------------------------- run

    def run(self) -> Summary:
        caps = self.client.capabilities()
        self._can_move = b"MOVE" in caps
        self._can_uid_expunge = b"UIDPLUS" in caps
        if self.account.pitch_folder and not self._can_move and not self._can_uid_expunge:  # a dry run says so too
            raise ImapError(f"{self.account.address} has neither MOVE nor UIDPLUS, so moving one message would "
                            "expunge every message marked deleted; use keywords without a pitch folder")
        for folder in self.account.folders:
            self._folder(folder)
        if self.account.learn:
            for folder, label in ((self.account.pitch_folder, "pitch"), (self.account.partnership_folder, "partnership")):
                if folder:
                    self._learn_from(folder, label)
        return self.summary

    def _folder(self, folder: str) -> None:
        info = self._select(folder, readonly=self.dry_run)
        uidvalidity = int(info[b"UIDVALIDITY"])
        known, last = self.state.folder(folder)
        if known is not None and known != uidvalidity:
            self.echo(f"{folder}: UIDVALIDITY changed ({known} to {uidvalidity}): reading the whole folder again; "
                      "messages already carrying a partnercheck keyword are left as they are")
            last = 0
        if not self.dry_run:
            self._finish_copying(folder, uidvalidity)
        uidnext = info.get(b"UIDNEXT")
        exists = int(info.get(b"EXISTS", 1))
        if exists == 0 or (uidnext is not None and int(uidnext) <= last + 1):
            uids = []
        else:
            uids = sorted(u for u in self.client.search(["UID", f"{last + 1}:*"]) if u > last)
        if uids and self.account.keywords and not self.dry_run:
            self._check_keywords(folder, info)
        # Fetching the next batch overlaps judging this one when workers judge.
        judge = Judge(self.model, self.policy, folder, jobs=self.jobs if len(uids) >= PARALLEL_FROM else 1)
        try:
            pending = None
            for chunk in self._batches(uids):
                todo, returned, stranded = self._fetch(folder, uidvalidity, chunk)
                job = judge.submit(todo)
                if pending is not None:
                    self._finish(folder, uidvalidity, *pending)
                pending = (chunk, todo, returned, stranded, job)
            if pending is not None:
                self._finish(folder, uidvalidity, *pending)
        finally:
            judge.close()
        if not uids and (known != uidvalidity):
            self._done(folder, uidvalidity, last)

    def _batches(self, uids: list[int]) -> Iterator[list[int]]:
        """``uids`` in batches of at most :attr:`batch` messages and :data:`BATCH_BYTES` bytes
        (by the sizes the server gives), so that large messages are not all held at once."""
        for start in range(0, len(uids), self.batch):
            chunk = uids[start:start + self.batch]
            if len(chunk) == 1:  # one new message, as --watch mostly sees: no round trip for its size
                yield chunk
                continue
            sizes = self.client.fetch(chunk, [b"RFC822.SIZE"])
            batch, total = [], 0
            for uid in chunk:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE") or 0)
                if batch and total + size > BATCH_BYTES:
                    yield batch
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch:
                yield batch

    def _finish(self, folder: str, uidvalidity: int, chunk: list[int], todo, returned, stranded, job) -> None:
        self._act(folder, uidvalidity, todo, returned, job(), stranded)
        self._done(folder, uidvalidity, chunk[-1])

    def _done(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        if self._unlearned and not self.dry_run and self.learner is not None:
            self.learner.learn(self._unlearned)
        self._unlearned = []
        self.state.set_folder(folder, uidvalidity, last_uid)  # a dry run's next pass (--watch) too; never saved
        if not self.dry_run:
            done = [uid for uid in self.state.unmoved(folder, uidvalidity) if uid <= last_uid]
            self.state.set_unmoved(folder, uidvalidity, done, pending=False)  # moved, or gone by now
            self.state.save()

    def _select(self, folder: str, readonly: bool) -> dict:
        from imapclient.exceptions import IMAPClientError

        try:
            return self.client.select_folder(folder, readonly=readonly)
        except _connection_errors():
            raise
        except IMAPClientError as exc:
            raise ImapError(f"cannot open folder {folder!r}: {_text(exc)}") from None

    def _check_keywords(self, folder: str, info: dict) -> None:
        if b"PERMANENTFLAGS" not in info:
            return  # RFC 3501: without PERMANENTFLAGS, every flag may be set permanently
        permanent = _flags(info[b"PERMANENTFLAGS"])
        if b"\\*" in permanent or self._ours <= permanent:
            return
        raise ImapError(f"{self.account.address} does not let partnercheck set keywords in {folder!r} "
                        f"(PERMANENTFLAGS has no \\*); turn keywords off (--no-keywords, or keywords = false) "
                        "and move pitches to a folder instead")

    def _fetch(self, folder: str, uidvalidity: int, uids: list[int]) -> tuple[dict[int, bytes], list, list]:
        """The batch's messages to judge (UID -> bytes), those the user moved back, and those
        an earlier run labelled pitch and was cut off before moving (by the UIDs it noted)."""
        fetched = self.client.fetch(uids, [b"BODY.PEEK[]", b"FLAGS"])
        todo, returned, stranded = {}, [], []
        unmoved = self.state.unmoved(folder, uidvalidity) if self.account.pitch_folder else set()
        for uid in uids:
            raw = _body(fetched.get(uid))
            if raw is None:
                continue  # expunged since the search (by another client)
            flags = _flags(fetched[uid].get(b"FLAGS", ()))
            if self.account.pitch_folder and self.state.moved(digest(raw)) and (
                    self._pitch_kw is None or self._pitch_kw.lower() in flags):
                # We moved it to the pitch folder; the user moved it back. With our pitch
                # keyword on it, which a move keeps: another copy of the same bytes (a second
                # delivery, Gmail's labels) was never judged here and is judged as any mail.
                returned.append((uid, raw))
            elif uid in unmoved:
                stranded.append((uid, raw))  # we labelled it pitch; the run was cut off before moving it
            elif flags & self._ours:
                continue  # judged before (a folder whose UIDVALIDITY changed)
            else:
                todo[uid] = raw
        return todo, returned, stranded

    def _act(self, folder: str, uidvalidity: int, todo: dict[int, bytes], returned: list, judged: list,
             stranded: list = ()) -> None:
        """Keywords and moves for one batch, from its verdicts, and the move of pitches an
        earlier run labelled but did not move."""
        if returned:
            self._returned(folder, returned)
        by_label: dict[str, list[int]] = {}
        pitches = [(uid, raw, parse_message(raw).message_id) for uid, raw in stranded]
        if self.account.pitch_folder and (stranded or any(item.label == "pitch" for item in judged)):
            self._ensure_destination()  # before any keyword: a folder that cannot be made strands nothing
        for item in judged:
            self.summary.verdicts[item.label] += 1
            by_label.setdefault(item.label, []).append(item.uid)
            if item.label == "pitch" and self.account.pitch_folder:
                pitches.append((item.uid, todo[item.uid], item.message_id))
            if self.verbose:
                self._tell(folder, item)
        if pitches and not self.dry_run:  # noted before the keyword, so that a cut-off move is resumed
            self.state.set_unmoved(folder, uidvalidity, (uid for uid, _, _ in pitches), pending=True)
            self.state.save()
        for label, label_uids in by_label.items():
            keyword = self.account.keywords.get(label)
            if keyword:
                if not self.dry_run:
                    self.client.add_flags(label_uids, [keyword.encode()], silent=True)
                self.summary.keyworded += len(label_uids)
        if pitches:
            self._move(folder, uidvalidity, pitches)

    def _tell(self, folder: str, item: "Judged") -> None:
        acts = []
        keyword = self.account.keywords.get(item.label)
        if keyword:
            acts.append(f"set {keyword}")
        if item.label == "pitch" and self.account.pitch_folder:
            acts.append(f"move to {self.account.pitch_folder}")
        if self.dry_run and acts:
            acts[0] = "would " + acts[0]
        score = f" {item.score:.2f}" if item.score is not None else " unreadable"
        what = f"  ({', '.join(acts)})" if acts else ""
        self.echo(f"{folder} {item.uid}: {item.label}{score}  {item.sender or '-'}  {item.subject or '-'}{what}")

    def _returned(self, folder: str, returned: list[tuple[int, bytes]]) -> None:
        """Messages the user moved out of the pitch folder into a folder we label (known by the
        digest of what we moved: a $Pitch keyword alone may be the user's own tag): not pitches.
        They are not judged again; our pitch keyword is taken off, and they are learned as other."""
        self.summary.returned += len(returned)
        for uid, raw in returned:
            self._lesson(parse_message(raw, key=str(uid), source=self._source(folder)), "other")
            if self.verbose:
                self.echo(f"{folder} {uid}: moved back out of {self.account.pitch_folder} by you: "
                          f"{'would learn' if self.dry_run else 'learning'} it as other")
        if self._pitch_kw and not self.dry_run:
            self.client.remove_flags([uid for uid, _ in returned], [self._pitch_kw], silent=True)

    # ------------------------------------------------------------- learning

    def _source(self, folder: str) -> str:
        return f"imap://{self.account.identity}/{folder}"

    def _lesson(self, record, label: str) -> None:
        self.lessons.append((record, label))
        self._unlearned.append((record, label))

    def _learn_from(self, folder: str, label: str) -> None:
        """New messages in a folder the user files into: in the pitch folder, those not moved
        there by us are learned as pitch (as isbg's --teachonly does); in the partnership
        folder, every one is learned as partnership. Nothing in the folder is changed."""
        if not self.client.folder_exists(folder):
            return
        info = self._select(folder, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        known, last = self.state.folder(folder)
        if known is not None and known != uidvalidity:
            last = 0  # learning a message again changes nothing
        uidnext = info.get(b"UIDNEXT")
        if int(info.get(b"EXISTS", 1)) == 0 or (uidnext is not None and int(uidnext) <= last + 1):
            uids = []
        else:
            uids = sorted(u for u in self.client.search(["UID", f"{last + 1}:*"]) if u > last)
        for chunk in self._batches(uids):
            fetched = self.client.fetch(chunk, [b"BODY.PEEK[]", b"FLAGS"])
            for uid in chunk:
                raw = _body(fetched.get(uid))
                if raw is None:
                    continue
                flags = _flags(fetched[uid].get(b"FLAGS", ()))
                if label == "pitch" and ((self._pitch_kw and self._pitch_kw.lower() in flags)
                                         or self.state.moved(digest(raw))):
                    continue  # moved or labelled pitch by us: the user taught nothing
                record = parse_message(raw, key=str(uid), source=self._source(folder))
                self._lesson(record, label)
                if self.verbose:
                    self.echo(f"{folder} {uid}: filed there by you: {'would learn' if self.dry_run else 'learning'} "
                              f"it as {label}  {record.from_addr or '-'}  {record.subject or '-'}")
            self._done(folder, uidvalidity, chunk[-1])
        if not uids and known != uidvalidity:
            self._done(folder, uidvalidity, last)

    # -------------------------------------------------------------- moving

    def _ensure_destination(self) -> None:
        if self._checked_destination:
            return
        folder = self.account.pitch_folder
        if not self.client.folder_exists(folder):
            if self.dry_run:
                self.echo(f"would create folder {folder!r}")
            else:
                self._create(folder)
                self.echo(f"created folder {folder!r}")
        self._checked_destination = True

    def _create(self, folder: str) -> None:
        from imapclient.exceptions import IMAPClientError

        try:
            self.client.create_folder(folder)
        except _connection_errors():
            raise
        except IMAPClientError as exc:  # a name the server refuses ("Spam/Pitch" where "." separates)
            raise ImapError(f"cannot create folder {folder!r}: {_text(exc)}") from None
        try:  # mail programs that list only subscribed folders (Thunderbird, Roundcube) show it then
            self.client.subscribe_folder(folder)
        except _connection_errors():
            raise
        except IMAPClientError:
            pass  # a server without subscriptions: every folder is listed

    def _move(self, folder: str, uidvalidity: int, pitches: list[tuple[int, bytes, str]]) -> None:
        self._ensure_destination()
        if self.dry_run:
            self.summary.moved += len(pitches)
            return
        uids = [uid for uid, _, _ in pitches]
        destination = self.account.pitch_folder
        if self._can_move:
            gone = self._move_each(uids, destination)
            pitches = [p for p in pitches if p[0] not in gone]
        else:
            sizes = self.client.fetch(uids, [b"RFC822.SIZE"])
            first_new = int(self.client.folder_status(destination, [b"UIDNEXT"])[b"UIDNEXT"])
            self.state.set_copying(folder, uidvalidity, {
                uid: [mid, int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)), digest(raw), first_new]
                for uid, raw, mid in pitches})
            self.state.save()
            gone = self._copy_present(uids, destination)
            pitches = [p for p in pitches if p[0] not in gone]
            self._delete([uid for uid in uids if uid not in gone])
            self.state.set_copying(folder, uidvalidity, None)
        self.summary.moved += len(pitches)
        self.state.add_moved(digest(raw) for _, raw, _ in pitches)
        self.state.set_unmoved(folder, uidvalidity, uids, pending=False)  # moved, or expunged by another client

    def _move_each(self, uids: list[int], destination: str) -> set[int]:
        """MOVE the messages; returns those another client expunged first. One such message
        fails the whole command (Dovecot: NO [EXPUNGEISSUED]), so then they go one by one;
        one still there that will not move is an error (it keeps our keyword, and the next
        run moves it)."""
        from imapclient.exceptions import IMAPClientError

        try:
            self.client.move(uids, destination)
            return set()
        except _connection_errors():
            raise
        except IMAPClientError:
            pass
        gone = set()
        for uid in uids:
            try:
                self.client.move([uid], destination)
            except _connection_errors():
                raise
            except IMAPClientError as exc:
                if self.client.search(["UID", str(uid)]):
                    raise ImapError(f"cannot move message {uid} to {destination!r}: {_text(exc)}") from None
                gone.add(uid)
        return gone

    def _copy_present(self, uids: list[int], destination: str) -> set[int]:
        """COPY the messages; returns those another client expunged first. One such message
        fails the whole command, which then copies nothing (RFC 3501), so the rest are
        copied again without them; a COPY that fails with all of them there is an error."""
        from imapclient.exceptions import IMAPClientError

        try:
            self.client.copy(uids, destination)
            return set()
        except _connection_errors():
            raise
        except IMAPClientError as exc:
            present = set(self.client.search(["UID", ",".join(map(str, uids))])) & set(uids)
            if len(present) == len(uids):
                raise ImapError(f"cannot copy messages to {destination!r}: {_text(exc)}") from None
        if present:
            self.client.copy(sorted(present), destination)
        return set(uids) - present

    def _delete(self, uids: list[int]) -> None:
        """\\Deleted and UID EXPUNGE of exactly these messages, after their copy is in place."""
        from imapclient import DELETED

        self.client.add_flags(uids, [DELETED], silent=True)
        self.client.uid_expunge(uids)

    def _finish_copying(self, folder: str, uidvalidity: int) -> None:
        """A run cut off between COPY and EXPUNGE: copy what did not arrive, then expunge."""
        pending = self.state.copying(folder, uidvalidity)
        if not pending:
            return
        present = [u for u in self.client.search(["UID", ",".join(map(str, sorted(pending)))]) if u in pending]
        if present:
            self._ensure_destination()  # renamed or deleted since the cut-off copy: made again, and empty
            arrived = self._already_copied({uid: pending[uid] for uid in present})
            self._select(folder, readonly=False)
            missing = [uid for uid in present if uid not in arrived]
            if missing:
                self.client.copy(missing, self.account.pitch_folder)
            self._delete(present)
            self.state.add_moved(pending[uid][2] for uid in present)
        self.state.set_copying(folder, uidvalidity, None)
        self.state.save()

    def _already_copied(self, pending: dict[int, list]) -> set[int]:
        """Which pending messages arrived in the pitch folder, by size and bytes, among the
        messages it received since the copy began (a copy that was there before, the same
        bytes filed earlier, is not this one's)."""
        self._select(self.account.pitch_folder, readonly=True)
        arrived = set()
        for uid, (_, size, fingerprint, *since) in pending.items():
            first_new = since[0] if since else 1  # a state file from before the folder's UIDNEXT was kept
            candidates = [u for u in self.client.search(["UID", f"{first_new}:*", "LARGER", size - 1,
                                                         "SMALLER", size + 1]) if u >= first_new]
            if candidates:
                bodies = self.client.fetch(candidates, [b"BODY.PEEK[]"])
                if any(digest(body) == fingerprint for body in map(_body, bodies.values()) if body is not None):
                    arrived.add(uid)
        return arrived


def _flags(values) -> set[bytes]:
    """Flags and keywords, lower-cased; IMAPClient reads a keyword of digits only (``5``,
    which any client may set) as a number."""
    return {(str(f).encode() if isinstance(f, int) else f).lower() for f in values}


def _body(item: dict | None) -> bytes | None:
    """A fetched message's bytes; None when it was expunged in the meantime (no item, or
    ``BODY[] NIL`` as Dovecot answers for a message deleted between SEARCH and FETCH)."""
    return None if item is None else item.get(b"BODY[]")


# ------------------------------------------------------------------------ judging

@dataclass(slots=True)
class Judged:
    """One message's verdict, as much of it as acting and reporting need."""

    uid: int
    label: str
    score: float | None
    sender: str
    subject: str
    message_id: str


_worker: dict = {}


def _judge(items: list[tuple[int, bytes]], folder: str, model=None, policy=None) -> list[Judged]:
    """Read and classify raw messages (in a worker, with the model it was forked with)."""
    if model is None:
        model, policy = _worker["model"], _worker["policy"]
    from ..deciding.classify import classify

    records = [parse_message(raw, key=str(uid), source=folder) for uid, raw in items]
    verdicts = classify(records, model, policy, clues=False)
    return [Judged(uid, verdict.label, verdict.score if verdict.scores else None,
                   record.from_addr, record.subject, record.message_id)
            for (uid, _), record, verdict in zip(items, records, verdicts)]


class Judge:
    """Classifies batches in this process, or in forked workers that start with the model
    loaded (as `partnercheck label` does) so that judging overlaps fetching."""

    def __init__(self, model, policy, folder: str, jobs: int = 1) -> None:
        import multiprocessing

        self.model, self.policy, self.folder = model, policy, folder
        self.pool = None
        self.jobs = 1
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            import gc

            from ..understanding.features import snowball

            snowball()
            _worker.update(model=model, policy=policy)
            gc.freeze()  # the workers share the loaded model's memory instead of copying it
            self.pool = multiprocessing.get_context("fork").Pool(jobs, initializer=worker_setup)
            self.jobs = jobs

    def submit(self, todo: dict[int, bytes]) -> Callable[[], list[Judged]]:
        """Start judging; the returned function waits for and returns the verdicts, in order."""
        items = list(todo.items())
        if self.pool is None or len(items) < 2 * self.jobs:
            return lambda: _judge(items, self.folder, self.model, self.policy)
        size = -(-len(items) // self.jobs)
        parts = [self.pool.apply_async(_judge, (items[i:i + size], self.folder))
                 for i in range(0, len(items), size)]
        return lambda: [judged for part in parts for judged in part.get()]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
            _worker.clear()


# ------------------------------------------------------------------------- driver

def run(account: Account, password: str, model, policy, state: ImapState, *, dry_run: bool = False,
        watch: bool = False, poll: float = 300.0, echo: Callable[[str], None] = print, batch: int | None = None,
        verbose: bool = False, learner=None, retries: int = RETRIES, jobs: int | None = None,
        reload: Callable[[], tuple] | None = None) -> Summary:
    """Label the account's folders once (or, with ``watch``, until interrupted), reconnecting
    after a dropped connection; returns what the last pass did. ``reload`` gives the model
    and policy again before every pass after the first (a personal model retrained by the
    learner is then used from the next pass on). A dry run, which changes nothing, may run
    beside another run; any other run claims the account first (:meth:`ImapState.running`)."""
    with nullcontext() if dry_run else state.running():
        failures = passes = 0
        client = None
        total = Summary()
        while True:
            try:
                if client is None:
                    try:
                        client = connect(account, password)
                    except ImapError as exc:
                        if not failures:
                            raise  # the first connection: wrong host, port or password, said at once
                        raise ConnectionError(str(exc)) from None  # a server coming back: tried again
                if reload is not None and passes:
                    model, policy = reload()
                labeller = Labeller(client, account, model, policy, state, dry_run=dry_run, echo=echo,
                                    batch=batch, verbose=verbose, jobs=jobs, learner=learner)
                summary = labeller.run()
                if learner is not None and labeller.lessons and not dry_run:
                    learner.finish()
                for _, label in (labeller.lessons if account.learn else ()):  # --no-learn: nothing learned
                    summary.learned[label] += 1
                _add(total, summary)
                failures = 0
                if summary.verdicts or summary.returned or not watch or passes == 0:
                    watching = "; watching" if watch and passes == 0 else ""
                    echo(f"{account.identity}: {summary.line(dry_run)}{watching}")
                passes += 1
                if not watch:
                    return total
                _wait(client, account, poll)
            except _connection_errors() as exc:
                failures += 1
                if client is not None:
                    _close(client, log_out=False)
                    client = None
                if failures > retries:
                    raise ImapError(f"{account.address}: connection lost ({_text(exc)}); gave up after "
                                    f"{retries} reconnections; what was done is saved, run again to go on") from None
                echo(f"{account.address}: connection lost ({_text(exc)}); reconnecting")
                time.sleep(min(2 ** (failures - 1), 30) * 0.5)
            except BaseException as exc:
                if client is not None:
                    _close(client, log_out=not isinstance(exc, KeyboardInterrupt))
                raise


def _add(total: Summary, one: Summary) -> None:
    total.verdicts.update(one.verdicts)
    total.learned.update(one.learned)
    total.keyworded += one.keyworded
    total.moved += one.moved
    total.returned += one.returned


def _wait(client, account: Account, poll: float) -> None:
    """Until something may have changed: IDLE on the first folder where the server has it
    (woken by new mail, or after ``poll`` seconds to look at the other folders), else sleep."""
    if not client.has_capability("IDLE"):
        client.noop()
        time.sleep(poll)
        return
    client.select_folder(account.folders[0], readonly=True)
    client.idle()
    try:
        deadline = time.monotonic() + poll
        while time.monotonic() < deadline:
            timeout = min(30.0, max(0.1, deadline - time.monotonic()))
            started = time.monotonic()
            responses = client.idle_check(timeout=timeout)
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                break
            if not responses and time.monotonic() - started < timeout / 2:
                # Woken with nothing to read: IMAPClient reads a connection the server closed
                # (a restart, its own time limit) as no responses, at once and again; ending
                # IDLE tells a closed connection, which is then made again, from a spurious wake.
                break
    finally:
        client.idle_done()
