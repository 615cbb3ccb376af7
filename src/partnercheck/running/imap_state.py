"""What ``partnercheck imap`` remembers between runs, per account and folder.

For every folder it reads: the folder's UIDVALIDITY and the highest UID it has finished
with, so that a second run fetches nothing it has seen. For the account: short digests of
the messages it moved to the pitch folder (so that one the user moves back is recognised
as a correction, and one the user files there by hand is told apart from ours), and, while
a COPY + EXPUNGE move is under way on a server without MOVE, which messages it was copying
(so that a run cut off half way does not copy them a second time).

The file is JSON, written atomically after every batch (a crash leaves the old or the new
file), readable only by its owner. One run at a time works on an account (:meth:`ImapState.running`),
as isbg keeps one at a time with its lock file: two runs (a cron job beside a ``--watch``)
would fetch, judge and move the same messages, and each would save its own idea of where it
had got to.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Iterator

from ..atomic import atomic_file

#: Digests of moved messages kept per account; the oldest are forgotten first.
MAX_MOVED = 50_000


class StateError(Exception):
    """The state file cannot be read or written; the message names it."""


def digest(raw: bytes) -> str:
    """A short fingerprint of a message's bytes (MOVE and COPY keep them byte for byte)."""
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


class ImapState:
    def __init__(self, path: str, account: str) -> None:
        self.path = path
        self.account = account
        self._load()

    def _load(self) -> None:
        """This account's entry as the state file holds it now."""
        self._all = self._read()
        entry = self._all.setdefault("accounts", {}).setdefault(self.account, {})
        self._folders: dict = entry.setdefault("folders", {})
        moved = entry.setdefault("moved", [])
        self._moved_order: list = moved
        self._moved = set(moved)
        self._entry = entry

    @contextmanager
    def running(self) -> Iterator[None]:
        """This account claimed for one run, until the block ends (or the process does: the
        lock is the kernel's, so a killed run leaves nothing to clean up). Raises
        :class:`StateError` when another run holds it. Once claimed, the state is read
        again: a run that ended while this one was starting (asking for its password) has
        saved where it got to since this one first read the file."""
        try:
            import fcntl
        except ImportError:  # no flock on this system: runs are not kept apart
            yield
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        name = hashlib.blake2b(self.account.encode(), digest_size=6).hexdigest()
        path = os.path.join(folder, f".{os.path.basename(self.path)}.{name}.lock")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{path}: cannot open the imap run lock: {exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"{self.account}: another partnercheck imap run is working on this account "
                                 "(a --watch, or a run not finished yet); this one did nothing") from None
            self._load()
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict:
        if not os.path.exists(self.path):
            return {"version": 1}
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.path}: cannot read the imap state ({exc}); move it away to start afresh") from None
        if not isinstance(data, dict) or data.get("version") != 1 or not _well_formed(data.get("accounts", {})):
            raise StateError(f"{self.path}: not a partnercheck imap state file; move it away to start afresh")
        return data

    # ------------------------------------------------------------------ folders

    def folder(self, name: str) -> tuple[int | None, int]:
        """(UIDVALIDITY, last UID done) for a folder; (None, 0) if never read. INBOX, which
        runs now always name so, is also found under the letter case a run named it in
        before (``-f inbox``)."""
        entry = self._folders.get(name)
        if not entry and name == "INBOX":
            entry = next((value for key, value in self._folders.items() if key.upper() == "INBOX"), None)
        if not entry:
            return None, 0
        return int(entry["uidvalidity"]), int(entry["last_uid"])

    def set_folder(self, name: str, uidvalidity: int, last_uid: int) -> None:
        self._folders[name] = {"uidvalidity": int(uidvalidity), "last_uid": int(last_uid)}

    # -------------------------------------------------------------- moved mail

    def moved(self, key: str) -> bool:
        return key in self._moved

    def add_moved(self, keys) -> None:
        for key in keys:
            if key not in self._moved:
                self._moved.add(key)
                self._moved_order.append(key)
        if len(self._moved_order) > MAX_MOVED:
            for key in self._moved_order[: len(self._moved_order) - MAX_MOVED]:
                self._moved.discard(key)
            del self._moved_order[: len(self._moved_order) - MAX_MOVED]

    # ----------------------------------------- labelled pitch, not yet moved

    def unmoved(self, folder: str, uidvalidity: int) -> set[int]:
        """UIDs in ``folder`` we set our pitch keyword on and had not moved when a run was cut
        off. By UID, not by content: a message the user moves back later has a new UID."""
        folders = self._entry.get("unmoved")
        entry = folders.get(folder) if isinstance(folders, dict) else None
        if not isinstance(entry, dict) or entry.get("uidvalidity") != uidvalidity:
            return set()
        return set(entry.get("uids", ()))

    def set_unmoved(self, folder: str, uidvalidity: int, uids, pending: bool) -> None:
        uids = set(uids)
        now = self.unmoved(folder, uidvalidity)
        now = now | uids if pending else now - uids
        folders = self._entry.get("unmoved")
        if not isinstance(folders, dict):
            folders = self._entry["unmoved"] = {}
        if now:
            folders[folder] = {"uidvalidity": int(uidvalidity), "uids": sorted(now)}
        else:
            folders.pop(folder, None)
        if not folders:
            self._entry.pop("unmoved")

    # ------------------------------------------- COPY + EXPUNGE under way

    def copying(self, folder: str, uidvalidity: int) -> dict[int, list]:
        """UID -> [Message-ID, size, digest, the pitch folder's UIDNEXT before the copy] of
        messages a cut-off run was copying out of ``folder``."""
        entry = self._entry.get("copying")
        if not entry or entry.get("folder") != folder or entry.get("uidvalidity") != uidvalidity:
            return {}
        return {int(uid): list(value) for uid, value in entry.get("messages", {}).items()}

    def set_copying(self, folder: str, uidvalidity: int, messages: dict[int, list] | None) -> None:
        if messages:
            self._entry["copying"] = {"folder": folder, "uidvalidity": int(uidvalidity),
                                      "messages": {str(uid): list(value) for uid, value in messages.items()}}
        else:
            self._entry.pop("copying", None)

    # -------------------------------------------------------------------- save

    def save(self) -> None:
        """Write this account's entry into the file as it is now: another account's run (a
        second ``--watch``) may have saved its own since this one read the file, and writing
        back what was read then would undo that; the messages another run for this account
        moved are kept too."""
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            with _locked(folder):
                self._all = self._read()
                accounts = self._all.setdefault("accounts", {})
                # What another run for this account moved meanwhile (two at once, where no
                # flock keeps them apart) stays known, so that the user moving it back is
                # still recognised.
                self.add_moved(accounts.get(self.account, {}).get("moved", ()))
                accounts[self.account] = self._entry
                with atomic_file(self.path, "w", encoding="utf-8") as handle:
                    os.fchmod(handle.fileno(), 0o600)
                    json.dump(self._all, handle, indent=1, sort_keys=True)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write the imap state: {exc}") from None


def _well_formed(accounts) -> bool:
    """Whether the parts that every run reads have the shape this module writes."""
    if not isinstance(accounts, dict) or not all(isinstance(entry, dict) for entry in accounts.values()):
        return False
    for entry in accounts.values():
        folders, moved = entry.get("folders", {}), entry.get("moved", [])
        if not isinstance(folders, dict) or not isinstance(moved, list) \
                or not all(isinstance(key, str) for key in moved):
            return False
        for folder in folders.values():
            numbers = [folder.get(key) for key in ("uidvalidity", "last_uid")] if isinstance(folder, dict) else [None]
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
                return False
    return True


@contextmanager
def _locked(folder: str) -> Iterator[None]:
    """The state file's folder locked against other partnercheck runs saving at the same time."""
    try:
        import fcntl
    except ImportError:  # no flock on this system: saved unlocked, as before
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
