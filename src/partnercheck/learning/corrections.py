"""Learning from the user's corrections: the store, ``learn``/``forget``, and the personal model.

The store is one SQLite database per user (:func:`store_path`), in WAL mode. Each
correction is one row: a content key, the Message-ID, the label, the sender, when it was
learned and the message itself (zlib-compressed; cut down to its headers and text when the
original is over :data:`MAX_RAW_BYTES`), which is all a retrain needs. Every message is
learned in its own transaction, so killing ``learn`` loses at most the message in flight
and never leaves the store half-written.

The same message learned twice counts once: a message matches a stored correction when its
content key (a hash of the subject and the body's bytes) or its Message-ID is the same.
Learning it under another label replaces the old label. The sender memory
(:mod:`partnercheck.learning.memory`) lives in the same database and is derived from the corrections.

The personal model (:func:`retrain_personal`) is the shipped corpus plus the corrections,
each correction weighing up to :data:`CORRECTION_WEIGHT` corpus messages (less once they
come to outnumber the corpus: :func:`correction_weight`), fitted without
cross-validation and with the shipped model's cut-offs; the corpus's extracted features
are cached by a fingerprint of the corpus and the code, so that a retrain costs one fit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import time
import zlib
from dataclasses import dataclass, field
from email.header import Header
from itertools import zip_longest
from typing import Callable, Iterable, Iterator

from ..errors import PartnercheckError
from ..labels import LABELS, PITCH, UNSURE
from ..reading.mail import EmailRecord, parse_message
from ..settings import personal_model_path, store_path  # noqa: F401  (store_path is part of this API)
from . import memory

#: Originals larger than this are stored as their headers and text only.
MAX_RAW_BYTES = 64 * 1024
#: How many corpus messages one correction weighs in the personal model.
CORRECTION_WEIGHT = 5.0
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS corrections(
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,       -- content key: hash of subject and body bytes
    message_id TEXT NOT NULL,          -- '' when the message has none
    label TEXT NOT NULL CHECK (label IN ('partnership', 'pitch', 'other')),
    sender TEXT NOT NULL,
    sender_name TEXT NOT NULL,         -- the display name, to tell a shared relay address
    list_mail INTEGER NOT NULL,        -- sent through a mailing list (List-Id): not the sender's own
    subject TEXT NOT NULL,
    date TEXT NOT NULL,                -- the message's own Date
    thread TEXT NOT NULL,              -- first Message-ID of the thread
    was_pitch INTEGER NOT NULL,        -- labelled (or learned as) pitch before this correction
    learned_at REAL NOT NULL,
    origin TEXT NOT NULL,              -- where it was learned from
    raw BLOB NOT NULL                  -- zlib-compressed message
);
CREATE INDEX IF NOT EXISTS corrections_message_id ON corrections(message_id) WHERE message_id != '';
CREATE INDEX IF NOT EXISTS corrections_sender ON corrections(sender);
"""

#: What :func:`content_key` gives: every key in a store that ``learn`` wrote.
_KEY = re.compile(r"[0-9a-f]{32}")
_LIST_FIELDS = ["key", "message_id", "label", "from", "subject", "date", "learned", "origin"]


#: The shortest start of a key that ``learned --forget-key`` takes for the whole key.
MIN_KEY_PREFIX = 6


class StoreError(PartnercheckError):
    """A store that cannot be used; the message says which and why."""


class NothingLearned(StoreError):
    """A store opened to be read that holds nothing yet: no file, an empty one, or a SQLite
    file without tables (a ``learn`` stopped before making them leaves one). Listing it is
    not a failure; the message says which."""


@dataclass
class LearnSummary:
    """What one ``learn`` changed."""

    label: str = ""
    added: int = 0
    relabelled: int = 0
    unchanged: int = 0
    unreadable: int = 0
    unlabelled: int = 0  # learning under the messages' own labels: those with none (or unsure)
    unknown: dict[str, int] = field(default_factory=dict)  # ... and those whose label is no label (a typo)
    agreed: int = 0  # left out by the caller: partnercheck already gives them their label
    senders: list[str] = field(default_factory=list)  # sender memory changes, in words
    labels_given: dict[str, str] = field(default_factory=dict, repr=False)  # this run's label of each message
    conflicts: list[str] = field(default_factory=list)  # messages this run gave two labels, the last one kept

    @property
    def changed(self) -> bool:
        return bool(self.added or self.relabelled)

    def unknown_labels(self) -> str:
        return ", ".join(f"{label!r} {count}x" for label, count in sorted(self.unknown.items()))

    def line(self) -> str:
        total = self.added + self.relabelled + self.unchanged
        as_what = f"as {self.label}" if self.label else "under their own labels"
        text = (f"learned {total} message{'s' if total != 1 else ''} {as_what}: {self.added} added, "
                f"{self.relabelled} relabelled, {self.unchanged} unchanged")
        if self.agreed:
            text += f"; {self.agreed} already labelled so, skipped"
        if self.unlabelled:
            text += f"; {self.unlabelled} without a label (or unsure) skipped"
        if self.unknown:
            text += f"; {sum(self.unknown.values())} with an unknown label skipped ({self.unknown_labels()})"
        if self.unreadable:
            text += f"; {self.unreadable} unreadable skipped"
        if self.conflicts:
            text += (f"; {len(self.conflicts)} message(s) given two labels, the later one learned: "
                     + ", ".join(self.conflicts[:3]) + (", ..." if len(self.conflicts) > 3 else ""))
        if len(self.senders) > 3:
            groups: dict[str, int] = {}
            for note in self.senders:
                where = note.partition(" ")[2]
                groups[where] = groups.get(where, 0) + 1
            text += "; senders: " + ", ".join(f"{n} {where}" for where, n in groups.items())
            text += " (`partnercheck senders` lists them)"
        elif self.senders:
            text += "; senders: " + ", ".join(self.senders)
        return text


def content_key(record: EmailRecord) -> str:
    """A hash of the subject and the body as sent: the same message read from an .eml, an
    mbox or a Maildir (with or without partnercheck's own header) has the same key."""
    digest = hashlib.sha256()
    digest.update(" ".join(record.subject.split()).lower().encode("utf-8", "surrogatepass") + b"\0")
    if record.raw is not None:
        digest.update(b"raw\0" + _body_bytes(record.raw))
    else:
        text = "\n".join((record.body, record.quoted, record.signature))
        digest.update(b"text\0" + " ".join(text.split()).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def _body_bytes(raw: bytes) -> bytes:
    raw = raw.replace(b"\r\n", b"\n")
    at = raw.find(b"\n\n")
    body = raw[at + 2:] if at != -1 else b""
    return body.rstrip()


_PITCH_HEADER = re.compile(rb"^x-partnercheck[ \t]*:[ \t]*pitch\b", re.I | re.M)


def filed_as_pitch(record: EmailRecord) -> bool:
    """Whether the message carries the filter's ``X-Partnercheck: pitch`` header."""
    if record.raw is None:
        return False
    head = record.raw[: _head_length(record.raw)]
    return bool(_PITCH_HEADER.search(head))


def _head_length(raw: bytes) -> int:
    lf, crlf = raw.find(b"\n\n"), raw.find(b"\r\n\r\n")
    ends = [i for i in (lf, crlf) if i != -1]
    return min(ends) if ends else len(raw)


def thread_of(record: EmailRecord, key: str) -> str:
    """The thread a message belongs to: the first Message-ID in References, else
    In-Reply-To, else its own Message-ID, else its content key."""
    for header in ("references", "in-reply-to"):
        ids = re.findall(r"<[^<>\s]+>", record.headers.get(header, ""))
        if ids:
            return ids[0].lower()
    return (record.message_id or key).lower()


def _message_id(record: EmailRecord) -> str:
    return (record.message_id or "").strip().lower()


def stored_bytes(record: EmailRecord) -> bytes:
    """The message as the store keeps it: the original bytes, or, for a table row or a very
    large message, its headers and text as a plain-text message."""
    if record.raw is not None and len(record.raw) <= MAX_RAW_BYTES:
        return record.raw
    return reduced_message(record)


def reduced_message(record: EmailRecord) -> bytes:
    """A plain-text message with what partnercheck reads of ``record``: the headers it keeps
    and the new text, quoted text and signature."""
    lines = []

    def add(name, value):
        if value:
            lines.append(f"{name}: {' '.join(str(value).split())}")

    add("From", f"{record.from_name} <{record.from_addr}>" if record.from_name and record.from_addr
        else record.from_addr)
    add("To", ", ".join(f"{_display_name(name)} <{address}>" if name else address
                        for name, address in zip_longest(record.to_names, record.to, fillvalue="")))
    add("Cc", ", ".join(record.cc))
    add("Reply-To", record.reply_to)
    add("Subject", record.subject)
    add("Date", record.date)
    add("Message-ID", record.message_id)
    for name, value in record.headers.items():
        add(name.title(), value)
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    body = record.body
    if record.quoted:
        body += "\n\n" + "\n".join("> " + line for line in record.quoted.splitlines())
    if record.signature:
        body += "\n\n-- \n" + record.signature
    return ("\n".join(lines) + "\n\n" + body + "\n").encode("utf-8", "surrogatepass")


def _display_name(name: str) -> str:
    """A display name as an RFC 5322 quoted string in UTF-8 (the message is 8-bit), or, when
    it holds what reads as an encoded word ("=?...?="), as an encoded word itself, so that
    reading the copy back does not decode it a second time."""
    if "=?" in name:
        return Header(name, "utf-8").encode()
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Correction:
    key: str
    message_id: str
    label: str
    sender: str
    subject: str
    date: str
    learned_at: float
    origin: str

    def row(self) -> list:
        learned = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.learned_at))
        return [self.key, self.message_id, self.label, self.sender, self.subject, self.date, learned, self.origin]


class Store:
    """The per-user store of corrections and sender memory (a SQLite database)."""

    def __init__(self, path: str, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db

    @classmethod
    def open(cls, path: str | None = None, read_only: bool = False) -> "Store":
        """Open (creating it and its folder if need be) the store at ``path`` or the default
        one. ``read_only``, for listing and exporting: nothing is created or changed, and a
        store this user may read but not write beside (a read-only file system) opens too."""
        path = path or store_path()
        if read_only:
            try:
                empty = not os.path.getsize(path)
            except (FileNotFoundError, NotADirectoryError):
                raise NothingLearned(f"nothing learned yet ({path} does not exist)") from None
            if empty:
                raise NothingLearned(f"nothing learned yet ({path} is empty)")
        try:
            if read_only:
                db = _connect_read_only(path)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                db = sqlite3.connect(path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the learning store: {exc}") from None
        try:
            # One statement, one snapshot: a store another process is creating is never half seen.
            version, tables = db.execute("SELECT (SELECT user_version FROM pragma_user_version), "
                                         "EXISTS (SELECT 1 FROM sqlite_master)").fetchone()
            if version == 0 and tables:
                # Another program's database, named by mistake: left exactly as it was.
                raise StoreError(f"{path}: another program's database, not a learning store; name a new file")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: made by a newer partnercheck (store version {version}); upgrade it")
            if read_only and version < SCHEMA_VERSION:
                raise NothingLearned(f"nothing learned yet ({path} is a store with nothing in it)")
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a crash never corrupts, commits survive kill
            if version < SCHEMA_VERSION:
                db.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\n{memory.SCHEMA}\n"
                                 f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
        except StoreError:
            db.close()
            raise
        except sqlite3.OperationalError as exc:  # locked by another program for 30 s, a full disk
            db.close()
            if "unable to open" in str(exc) or "readonly" in str(exc):
                raise StoreError(f"{path}: the learning store cannot be written here ({exc})") from None
            raise StoreError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{path}: not a usable learning store: {exc}") from None
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close()
        if isinstance(value, sqlite3.OperationalError):  # locked by another program, a full disk
            raise StoreError(f"{self.path}: {value}") from None
        if isinstance(value, sqlite3.DatabaseError):  # damaged past what open() reads: say which store
            raise StoreError(f"{self.path}: the learning store is damaged ({value}); "
                             "sqlite3's .recover command can save what is left") from None

    # ------------------------------------------------------------------ corrections

    def _matches(self, key: str, message_id: str) -> list[tuple]:
        columns = "id, label, sender, was_pitch"
        rows = self._db.execute(f"SELECT {columns} FROM corrections WHERE digest = ?", (key,)).fetchall()
        if message_id:
            rows += self._db.execute(f"SELECT {columns} FROM corrections WHERE message_id = ? AND digest != ?",
                                     (message_id, key)).fetchall()
        return rows

    def learn(self, records: Iterable[EmailRecord], label: str | None,
              judge: Callable[[EmailRecord], str] | None = None, summary: LearnSummary | None = None) -> LearnSummary:
        """Learn every record under ``label`` (``None``: each under its own ``record.label``);
        one transaction per message.

        Whether a correction moves a message away from pitch (which the sender memory
        needs) is known from an ``X-Partnercheck: pitch`` header the filter gave it, an
        earlier pitch label in the store or an earlier correction away from pitch (said
        partnership, then other), or ``judge``, which gives the verdict a record gets now,
        if the caller has one.
        """
        if label is not None and label not in LABELS:
            raise StoreError(f"unknown label {label!r}; choose one of {', '.join(LABELS)}")
        summary = summary or LearnSummary(label=label or "")
        for record in records:
            if not record.readable:
                summary.unreadable += 1
                continue
            if label is None and record.label not in LABELS:
                if record.label in (None, "", UNSURE):
                    summary.unlabelled += 1
                else:
                    summary.unknown[str(record.label)] = summary.unknown.get(str(record.label), 0) + 1
                continue
            label_now = label or record.label
            key, message_id = content_key(record), _message_id(record)
            earlier = summary.labels_given.setdefault(key, label_now)
            if earlier != label_now:  # two rows of one file, corrected differently: say which one counts
                where = f"{os.path.basename(record.source)}:{record.key}" if record.source else record.key
                summary.conflicts.append(f"{where} ({earlier}, then {label_now})")
                summary.labels_given[key] = label_now
            verdict = judge(record) if judge is not None else None
            with self._transaction():
                matches = self._matches(key, message_id)
                was_pitch = verdict == PITCH or any(m[1] == PITCH or m[3] for m in matches) or filed_as_pitch(record)
                senders = {m[2] for m in matches} | {record.from_addr.lower()}
                if matches and all(m[1] == label_now for m in matches) and len(matches) == 1:
                    summary.unchanged += 1
                    continue
                if matches:
                    self._db.execute(f"DELETE FROM corrections WHERE id IN ({','.join('?' * len(matches))})",
                                     [m[0] for m in matches])
                if not matches:
                    summary.added += 1
                elif all(m[1] == label_now for m in matches):
                    summary.unchanged += 1
                else:
                    summary.relabelled += 1
                self._db.execute(
                    "INSERT INTO corrections(digest, message_id, label, sender, sender_name, list_mail, subject, "
                    "date, thread, was_pitch, learned_at, origin, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, message_id, label_now, record.from_addr.lower(), " ".join(record.from_name.split()).lower(),
                     int(bool(record.headers.get("list-id"))), record.subject, record.date_iso(),
                     thread_of(record, key), int(was_pitch), time.time(), _origin(record),
                     zlib.compress(stored_bytes(record), 6)))
                for sender in sorted(senders):
                    note = memory.relearn(self._db, sender)
                    if note:
                        summary.senders.append(note)
        return summary

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One message's changes: all of them committed, or none (a crash or kill -9 in the
        middle leaves the store as it was before that message)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def forget(self, records: Iterable[EmailRecord]) -> int:
        """Forget the corrections for these messages; returns how many were removed."""
        removed = 0
        for record in records:
            key, message_id = content_key(record), _message_id(record)
            with self._transaction():
                matches = self._matches(key, message_id)
                if matches:
                    self._db.execute(f"DELETE FROM corrections WHERE id IN ({','.join('?' * len(matches))})",
                                     [m[0] for m in matches])
                    for sender in {m[2] for m in matches}:
                        memory.relearn(self._db, sender)
                removed += len(matches)
        return removed

    def forget_keys(self, keys: Iterable[str]) -> int:
        """Forget corrections by their key as ``partnercheck learned`` lists them, or by the
        start of one (:data:`MIN_KEY_PREFIX` characters or more, as git takes an abbreviated
        hash) that no other key shares. Raises :class:`StoreError`, having forgotten nothing,
        for a key that names no correction or several."""
        removed = 0
        for key in [self._one_key(key) for key in keys]:
            with self._transaction():
                rows = self._db.execute("SELECT id, sender FROM corrections WHERE digest = ?", (key,)).fetchall()
                self._db.execute("DELETE FROM corrections WHERE digest = ?", (key,))
                for _, sender in rows:
                    memory.relearn(self._db, sender)
                removed += len(rows)
        return removed

    def _one_key(self, key: str) -> str:
        found = self._db.execute("SELECT DISTINCT digest FROM corrections WHERE digest = ?", (key,)).fetchall()
        if not found and len(key) >= MIN_KEY_PREFIX:
            found = self._db.execute("SELECT DISTINCT digest FROM corrections WHERE substr(digest, 1, ?) = ?",
                                     (len(key), key)).fetchall()
        if not found:
            raise StoreError(f"no correction has the key {key!r}; `partnercheck learned` lists them")
        if len(found) > 1:
            raise StoreError(f"{len(found)} corrections have keys that start {key!r}; give more of the key")
        return found[0][0]

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM corrections").fetchone()[0]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT label, count(*) FROM corrections GROUP BY label")
        return {label: n for label, n in rows}

    def corrections(self) -> Iterator[Correction]:
        rows = self._db.execute("SELECT digest, message_id, label, sender, subject, date, learned_at, origin "
                                "FROM corrections ORDER BY learned_at, id")
        for row in rows:
            yield Correction(*row)

    def messages(self) -> Iterator[tuple[str, str, bytes]]:
        """``(key, label, raw message)`` for every correction. A key or label that ``learn``
        never writes (a store made or edited by hand) is refused: keys name the files of an
        export, and a key such as ``../x`` would put one outside it."""
        for key, label, raw in self._db.execute("SELECT digest, label, raw FROM corrections ORDER BY id"):
            if not (isinstance(key, str) and _KEY.fullmatch(key) and label in LABELS):
                raise StoreError(f"{self.path}: a correction has the key {key!r} and the label {label!r}, which "
                                 f"`learn` never writes; remove it with `partnercheck learned --forget-key`")
            try:
                yield key, label, zlib.decompress(raw)
            except (zlib.error, TypeError):
                raise StoreError(f"{self.path}: the message of correction {key} is damaged; remove it with "
                                 "`partnercheck learned --forget-key`") from None

    def records(self) -> Iterator[EmailRecord]:
        """Every correction as a labelled record, parsed again from the stored message."""
        for key, label, raw in self.messages():
            record = parse_message(raw, key=key, source=self.path)
            record.label = label
            yield record

    def fingerprint(self) -> str:
        """Changes whenever the corrections do."""
        digest = hashlib.sha256()
        for key, label in self._db.execute("SELECT digest, label FROM corrections ORDER BY digest"):
            digest.update(f"{key}:{label}\n".encode())
        return digest.hexdigest()

    # ------------------------------------------------------------------ sender memory

    def memory(self) -> memory.SenderMemory:
        return memory.load(self._db)

    def sender_entries(self) -> list[memory.Entry]:
        return memory.read_entries(self._db)

    def set_sender(self, pattern: str, kind: str, expires: float | None = None, note: str = "") -> None:
        with self._transaction():
            memory.set_entry(self._db, pattern, kind, expires, note)

    def remove_sender(self, pattern: str) -> bool:
        with self._transaction():
            return memory.remove_entry(self._db, pattern)

    def integrity(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


def _origin(record: EmailRecord) -> str:
    if record.source in ("", "-"):
        return "stdin" if record.source == "-" else ""
    if record.key and os.path.basename(record.source) != record.key:
        return f"{record.source}:{record.key}"
    return record.source


def read_memory(path: str | None = None, config: dict | None = None) -> memory.SenderMemory:
    """The sender memory of the store at ``path`` (or the configured one), read-only; empty
    when there is no store yet. Never creates anything."""
    path = path or store_path(None, config)
    if not os.path.exists(path):
        return memory.SenderMemory()
    try:
        db = _connect_read_only(path)
        try:
            return memory.load(db)
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return memory.SenderMemory()
        raise StoreError(f"{path}: cannot read the learning store: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot read the learning store: {exc}") from None


def _connect_read_only(path: str) -> sqlite3.Connection:
    """A connection that can only read the store at ``path``.

    Reading a WAL database asks to make its -shm file beside it. Where this user may read
    the store but not write beside it (a filter run as the mail server's user, a read-only
    file system), there is none, which means no learn at work on it (one would have made
    it), so the file is read as it is.
    """
    from urllib.parse import quote

    # quoted: a # or ? in the path would end the file name there, and open another file
    name = f"file:{quote(os.path.abspath(path))}"
    db = sqlite3.connect(f"{name}?mode=ro", uri=True, timeout=10)
    try:
        db.execute("PRAGMA user_version").fetchone()
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "unable to open" not in str(exc) or not os.access(path, os.R_OK):
            raise
    return sqlite3.connect(f"{name}?immutable=1", uri=True, timeout=10)


# ---------------------------------------------------------------------- personal model

@dataclass
class RetrainSummary:
    path: str
    corpus: int = 0
    corrections: int = 0
    seconds: float = 0.0
    removed: bool = False

    def line(self) -> str:
        if self.removed:
            return "no corrections left: personal model removed, the shipped model applies again"
        if not self.corrections:
            return "no corrections: no personal model, the shipped model applies"
        line = (f"personal model retrained on {self.corpus} corpus messages and {self.corrections} correction(s) "
                f"in {self.seconds:.1f} s: {self.path}")
        used = _model_in_use()
        if used and os.path.abspath(used) != os.path.abspath(self.path):
            line += f"; but classify, filter and label use {used} (-m, $PARTNERCHECK_MODEL or the config's model)"
        return line


def _model_in_use() -> str | None:
    """The model that commands read when none is named on their command line."""
    from ..settings import ConfigError, model_path

    try:
        return model_path()
    except ConfigError:
        return None


def retrain_personal(store: Store, output: str | None = None, weight: float = CORRECTION_WEIGHT,
                     corpus: str | None = None, base_model: str | None = None, seed: int = 0) -> RetrainSummary:
    """Train the personal model from the shipped corpus plus ``store``'s corrections and save
    it atomically beside the store (or at ``output``).

    No cross-validation: the cut-offs are the shipped model's (``base_model``), and the
    corpus's features come from a cache keyed by the corpus and the code. Each correction
    weighs up to ``weight`` corpus messages (:func:`correction_weight`); a corpus message
    with the same content as a correction is left out, so the user's label wins. The
    calibration's folds keep the corrections' near-copies together (a user corrects whole
    campaigns), as folds kept near-copies together when the shipped model's cut-offs were
    chosen. Each corpus message is a group of its own: the corpus's near-copies are few, and
    finding them would add its MinHash signatures to a cold feature cache (40-60% of the
    time extraction takes on corpus mail).
    With no corrections left, the personal model is removed and the shipped model applies again.
    """
    start = time.perf_counter()
    output = output or personal_model_path(store.path)
    with _exclusive(output + ".lock"):  # two learns at once: the later one trains on everything
        return _retrain(store, output, weight, corpus, base_model, seed, start)


def personal_is_current(store: Store) -> bool:
    """Whether the personal model beside ``store`` was trained on exactly its corrections
    (an empty store wants no model at all)."""
    path = personal_model_path(store.path)
    if not len(store):
        return not os.path.exists(path)
    if not os.path.exists(path):
        return False
    from ..deciding.model import ModelError, load_model

    try:
        return load_model(path).info.get("store_fingerprint") == store.fingerprint()
    except ModelError:
        return False


def _exclusive(path: str):
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def locked():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    return locked()


def _retrain(store: Store, output: str, weight: float, corpus: str | None, base_model: str | None, seed: int,
             start: float) -> RetrainSummary:
    from ..deciding.model import Model, load_model
    from ..settings import default_corpus, default_model_path
    from ..understanding.features import seed_stems
    from .kept_tokens import TokenStore
    from .near_duplicates import NearCopyFolds, near_duplicate_groups, signature
    from .pipeline import build_pipeline
    from .training import compared_text

    corrections = list(store.records())
    if not corrections:
        removed = os.path.exists(output)
        if removed:
            os.unlink(output)
        return RetrainSummary(output, removed=removed)
    corpus = corpus or default_corpus()
    if corpus is None:
        raise StoreError("the bundled corpus is not available in this installation, so no personal model")
    pipeline = build_pipeline(seed=seed)
    extract = pipeline.named_steps["extract"].fit([])
    docs, labels, keys = corpus_features(corpus)
    taken = {content_key(r) for r in corrections}
    keep = [i for i, key in enumerate(keys) if key not in taken]
    numbered = TokenStore()  # looked up as numbers by every fit of the calibration
    all_docs = [numbered.keep(doc) for doc in [docs[i] for i in keep] + extract.transform(corrections)]
    all_labels = [labels[i] for i in keep] + [r.label for r in corrections]
    weight = correction_weight(len(keep), len(corrections), weight)
    weights = [1.0] * len(keep) + [weight] * len(corrections)
    import warnings

    import numpy as np

    copies = near_duplicate_groups([signature(compared_text(r)) for r in corrections])
    near = np.concatenate([np.arange(len(keep)), len(keep) + np.asarray(copies, dtype=np.int64)])
    pipeline.set_params(classify__cv=NearCopyFolds(near, seed=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence notes are not the user's business
        pipeline[1:].fit(all_docs, np.array(all_labels), classify__sample_weight=np.array(weights))
    base = load_model(base_model or default_model_path())
    # The corpus's tokens came from a cache, unstemmed here: without the shipped model's own
    # words, explanations showed stems ("pleas", "everi") instead of the words.
    seed_stems(base.weights.stems)
    info = {"personal": True, "corpus_messages": len(keep), "corrections": len(corrections),
            "correction_weight": round(weight, 3), "store": os.path.abspath(store.path),
            "store_fingerprint": store.fingerprint(), "base_model": base.info.get("data_fingerprint", "")}
    model = Model.from_pipeline(pipeline, base.thresholds, info)
    model.save(output)
    return RetrainSummary(output, len(keep), len(corrections), time.perf_counter() - start)


def correction_weight(corpus: int, corrections: int, most: float = CORRECTION_WEIGHT) -> float:
    """How many corpus messages one correction weighs: ``most`` while corrections are few
    (so that a few dozen count against the corpus), falling to 1 as they come to outnumber it."""
    if corrections == 0:
        return float(most)
    return float(max(1.0, min(most, corpus / corrections)))


def _code_fingerprint() -> str:
    """Changes whenever the code that reads mail and extracts features does."""
    digest = hashlib.sha256()
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, _, names in sorted(os.walk(package)):
        for name in sorted(names):
            if name.endswith((".py", ".toml")):
                with open(os.path.join(folder, name), "rb") as handle:
                    where = os.path.relpath(os.path.join(folder, name), package)
                    digest.update(where.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def _corpus_fingerprint(corpus: str) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(corpus):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            stat = os.stat(path)
            digest.update(f"{os.path.relpath(path, corpus)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    heldout = os.path.join(corpus, "heldout.txt")
    if os.path.exists(heldout):
        with open(heldout, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def corpus_features(corpus: str) -> tuple[list, list[str], list[str]]:
    """The extracted features, labels and content keys of the corpus's training messages
    (all but those in its heldout.txt, as for the shipped model), cached in
    ``$XDG_CACHE_HOME/partnercheck/`` by a fingerprint of the corpus and the code. The cache
    is gzipped JSON (tokens, rule ids), so reading it runs no code."""
    import gzip
    import json

    from ..atomic import atomic_file
    from ..reading.sources import Source
    from ..settings import cache_home
    from ..understanding.features import Extracted
    from ..understanding.rules import RuleHit, builtin_rules
    from .training import prepare

    fingerprint = hashlib.sha256((_corpus_fingerprint(corpus) + _code_fingerprint()).encode()).hexdigest()[:24]
    cache = os.path.join(cache_home(), "partnercheck", f"corpus-features-{fingerprint}.json.gz")
    if os.path.exists(cache):
        try:
            with gzip.open(cache, "rt", encoding="utf-8") as handle:
                docs, labels, keys = json.load(handle)
            rules = {rule.id: rule for rule in builtin_rules().rules}
            return ([Extracted(tokens, [RuleHit(rules[rid], ()) for rid in hits]) for tokens, hits in docs],
                    labels, keys)
        except Exception:  # a cache from another version or a torn file: build it again
            pass
    held: set[str] = set()
    heldout = os.path.join(corpus, "heldout.txt")
    if os.path.exists(heldout):
        with open(heldout, encoding="utf-8") as handle:
            held = {line.strip() for line in handle if line.strip() and not line.startswith("#")}
    prepared = prepare((r for r in Source(corpus) if r.key not in held), key=content_key, near_copies=False)
    result = (prepared.docs, prepared.labels, prepared.keys)
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        for old in os.listdir(os.path.dirname(cache)):
            if old.startswith("corpus-features-"):
                os.unlink(os.path.join(os.path.dirname(cache), old))
        plain = [[doc.tokens, [hit.id for hit in doc.hits]] for doc in result[0]]
        # One json.dumps (its C encoder; json.dump streams through the pure-Python one)
        # and gzip's fastest level: writing the cache took 3.3 s of a cold learn's 15 under
        # the profiler, most of it in those two.
        with atomic_file(cache) as handle, gzip.open(handle, "wt", encoding="utf-8", compresslevel=1) as packed:
            packed.write(json.dumps([plain, result[1], result[2]]))
    except OSError:
        pass  # no cache folder: next time costs the same again
    return result
