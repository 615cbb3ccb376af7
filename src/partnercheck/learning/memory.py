"""Sender memory: senders the user's corrections (or their own commands) put on an allow or
block list, kept in the learning store beside the corrections (:mod:`partnercheck.learning.corrections`).

What is learned, per sender address, from the corrections in the store, in the order they
were made:

* a message from the sender that the user corrected *away from* ``pitch`` (it was labelled
  pitch, or had been learned as pitch, and the user said ``partnership`` or ``other``)
  puts the sender on the allow list: never labelled ``pitch`` again;
* messages from the sender learned as ``pitch`` in two different threads (after the last
  allow) put it on the block list: labelled ``pitch``. A learned block expires
  :data:`LEARNED_BLOCK_DAYS` days after the last pitch correction. Two messages of one
  thread count once, so junking a whole thread does not block a correspondent.

Nothing is learned about an address that is not one person's: mail that came through a
mailing list (a List-Id header) does not count, and an address seen under two or more
display names in the corrections (a relay such as a notifications address, or a list
that rewrites From) gets no learned entry at all.

Learned entries are derived from the corrections, so forgetting a correction takes back
what it taught. Entries added by hand (``partnercheck senders allow/block``) may name a
domain, may carry an expiry, and are never changed by learning while they last. Removing an entry by hand
also makes learning start over for that sender, from the corrections made after it.

An explicit ``allow``/``block`` list in the config file is consulted first and always wins;
every verdict the memory decides says so in its reasons (``learned: sender ...``). This
module uses the standard library only.
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from dataclasses import dataclass, field

ALLOW, BLOCK = "allow", "block"
LEARNED, MANUAL = "learned", "manual"
#: A learned block lasts this long after the last message the user marked pitch.
LEARNED_BLOCK_DAYS = 90
#: Messages in this many different threads, learned as pitch, block a sender.
PITCH_THREADS_TO_BLOCK = 2
DAY = 86400.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS senders(
    pattern TEXT PRIMARY KEY,          -- an address (with @) or a domain
    kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
    origin TEXT NOT NULL CHECK (origin IN ('learned', 'manual')),
    added REAL NOT NULL,
    expires REAL,                      -- unix time, NULL: never
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sender_resets(
    pattern TEXT PRIMARY KEY,          -- learning for this sender considers only later corrections
    at REAL NOT NULL
);
"""


#: An allow or block entry: an address (one ``@``) or a domain, with nothing a list entry is
#: matched without (a wildcard, a display name, a URL's slash).
_PATTERN = re.compile(r"(?:[^\s@<>()\[\],;:\"\\*]+@)?[^\s@<>()\[\],;:\"\\*/?#=!]+")


def sender_pattern(value: str) -> str | None:
    """``value`` as an allow or block entry, lower-cased: an address or a domain; None for
    anything that no sender would ever match (``*.example``, ``@vendor.example``,
    ``Ana <ana@x.example>``), which would otherwise be kept and do nothing."""
    value = value.strip().lower()
    domain = value.rpartition("@")[2]
    if not _PATTERN.fullmatch(value) or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return None
    return canonical(value)


def canonical(address: str) -> str:
    """An address or a domain as entries are kept and compared: lower-cased, with the labels
    of an international domain in their own letters. Mail names such a domain in its ASCII
    form (``info@xn--bcher-kva.example``), a user as it is written (``bücher.example``): both
    are ``bücher.example`` here, so that either matches the other."""
    address = address.lower()
    if address.isascii() and "xn--" not in address:
        return address
    local, at, domain = address.rpartition("@")
    labels = []
    for label in unicodedata.normalize("NFC", domain).split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode").lower()
            except UnicodeError:
                pass  # not an encoded label after all: compared as it is
        labels.append(label)
    return local + at + unicodedata.normalize("NFC", ".".join(labels))


@dataclass(frozen=True)
class Entry:
    pattern: str
    kind: str
    origin: str
    added: float
    expires: float | None = None
    note: str = ""

    def active(self, now: float | None = None) -> bool:
        return self.expires is None or self.expires > (time.time() if now is None else now)

    def to_row(self) -> dict:
        return {
            "pattern": self.pattern, "kind": self.kind, "origin": self.origin,
            "added": _iso(self.added), "expires": _iso(self.expires) if self.expires else "",
            "active": self.active(), "note": self.note,
        }


@dataclass
class SenderMemory:
    """The entries in force, for lookups while classifying (picklable, no open database)."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def lookup(self, address: str, now: float | None = None) -> Entry | None:
        """The entry for an address: the address itself first, then its domain and parents."""
        if not self.entries or not address:
            return None
        address = canonical(address)
        candidates = [address]
        parts = address.rpartition("@")[2].split(".")
        candidates += [".".join(parts[i:]) for i in range(len(parts))]
        for pattern in candidates:
            entry = self.entries.get(pattern)
            if entry is not None and entry.active(now):
                return entry
        return None


def reason(entry: Entry) -> str:
    """What a verdict decided by ``entry`` says about it."""
    how = "you marked it pitch" if entry.kind == BLOCK else "you corrected it away from pitch"
    if entry.origin == MANUAL:
        how = f"you put it on the {entry.kind} list"
    text = f"learned: sender {entry.pattern} ({how})"
    if entry.expires:
        text += f", until {_iso(entry.expires)[:10]}"
    return text


def _iso(stamp: float | None) -> str:
    if not stamp:
        return ""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
    except (OverflowError, ValueError, OSError):  # a store edited by hand: the date is shown as a number
        return str(stamp)


# ------------------------------------------------------------------ database side

def read_entries(db: sqlite3.Connection) -> list[Entry]:
    rows = db.execute("SELECT pattern, kind, origin, added, expires, note FROM senders ORDER BY pattern")
    return [Entry(*row) for row in rows]


def load(db: sqlite3.Connection) -> SenderMemory:
    now = time.time()
    entries: dict[str, Entry] = {}
    for entry in read_entries(db):  # keyed as lookups ask (a store may hold an entry from before)
        key = canonical(entry.pattern)
        if entry.active(now) and (key not in entries or entries[key].origin != MANUAL):
            entries[key] = entry
    return SenderMemory(entries)


def set_entry(db: sqlite3.Connection, pattern: str, kind: str, expires: float | None = None, note: str = "") -> None:
    """Add or replace an entry by hand (inside the caller's transaction)."""
    db.execute("INSERT OR REPLACE INTO senders(pattern, kind, origin, added, expires, note) VALUES (?,?,?,?,?,?)",
               (canonical(pattern), kind, MANUAL, time.time(), expires, note))


def remove_entry(db: sqlite3.Connection, pattern: str) -> bool:
    """Remove an entry by hand; learning for that sender starts over from now."""
    given, pattern = pattern.lower(), canonical(pattern)
    gone = db.execute("DELETE FROM senders WHERE pattern IN (?, ?)", (given, pattern)).rowcount
    db.execute("INSERT OR REPLACE INTO sender_resets(pattern, at) VALUES (?, ?)", (pattern, time.time()))
    return bool(gone)


def relearn(db: sqlite3.Connection, address: str) -> str | None:
    """Derive the learned entry for one sender from its corrections (see the module
    docstring) and write it; returns a note on what changed, or None."""
    address = address.lower()
    if not address or "@" not in address:
        return None
    pattern = canonical(address)  # the entry's name; the corrections keep the address as the mail gave it
    if pattern != address:  # an entry a store from before keeps under the mail's form
        db.execute("UPDATE OR IGNORE senders SET pattern = ? WHERE pattern = ?", (pattern, address))
        db.execute("DELETE FROM senders WHERE pattern = ? AND origin = ?", (address, LEARNED))
    old = db.execute("SELECT kind, origin, expires FROM senders WHERE pattern = ?", (pattern,)).fetchone()
    if old is not None and old[1] == MANUAL:
        if old[2] is None or old[2] > time.time():
            return None
        old = None  # an entry by hand that has run out: learning takes over again (it stays listed until then)
    reset = db.execute("SELECT at FROM sender_resets WHERE pattern IN (?, ?) ORDER BY at DESC",
                       (address, pattern)).fetchone()
    since = reset[0] if reset else 0.0
    names = db.execute("SELECT count(DISTINCT sender_name) FROM corrections WHERE sender = ? AND sender_name != ''",
                       (address,)).fetchone()[0]
    rows = db.execute(
        "SELECT label, was_pitch, thread, learned_at FROM corrections WHERE sender = ? AND learned_at >= ? "
        "AND list_mail = 0 ORDER BY learned_at, id", (address, since)).fetchall()
    state: tuple[str, float | None] | None = None
    threads: set[str] = set()
    for label, was_pitch, thread, learned_at in rows if names < 2 else ():
        if label == "pitch":
            threads.add(thread)
            if len(threads) >= PITCH_THREADS_TO_BLOCK:
                state = (BLOCK, learned_at + LEARNED_BLOCK_DAYS * DAY)
        elif was_pitch:
            state = (ALLOW, None)
            threads.clear()
    new = (state[0], LEARNED, state[1]) if state else None
    if new == (tuple(old) if old else None):
        return None
    if state is None:
        db.execute("DELETE FROM senders WHERE pattern = ?", (pattern,))
        return f"{pattern} off the {old[0]} list"
    db.execute("INSERT OR REPLACE INTO senders(pattern, kind, origin, added, expires, note) VALUES (?,?,?,?,?,?)",
               (pattern, state[0], LEARNED, time.time(), state[1], ""))
    if old is not None and old[0] == state[0]:
        return None  # a block extended: not worth a line
    return f"{pattern} on the {state[0]} list"
