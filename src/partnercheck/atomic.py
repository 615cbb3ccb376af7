"""Write files so that a reader never sees half of one.

Everything partnercheck writes (models, label files) goes to a temporary file beside the
target and is renamed over it only when complete: a crash or Ctrl-C leaves either the old
file or the new one, never a torn mix.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator


@contextmanager
def atomic_file(path: str, mode: str = "wb", **open_args) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block succeeds."""
    handle, temp = open_temp_beside(path, mode, **open_args)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        discard(temp)
        raise


def open_temp_beside(path: str, mode: str = "wb", **open_args) -> tuple[IO, str]:
    """A new temporary file in ``path``'s folder (so that renaming it is atomic), and its name."""
    folder = os.path.dirname(os.path.abspath(path))
    place = _place()
    if folder not in _swept:
        _swept.add(folder)
        _remove_dead_writers_files(folder, place)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{place}.{os.getpid()}.", suffix=".partial",
                                dir=folder)
    try:
        try:  # the file it replaces keeps its mode; mkstemp makes 0600, a new file gets the usual one
            os.fchmod(fd, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            os.fchmod(fd, 0o666 & ~_umask())
        return os.fdopen(fd, mode, **open_args), temp
    except BaseException:
        os.close(fd)
        discard(temp)
        raise


def discard(temp: str) -> None:
    try:
        os.unlink(temp)
    except FileNotFoundError:
        pass


#: Folders this process has already cleared of dead writers' temporary files: once is
#: enough (an export writes thousands of files into one folder, each would list it again).
_swept: set[str] = set()


@functools.lru_cache(maxsize=1)
def _place() -> str:
    """Where this process runs, as 16 hex digits: a hash of the host name (folders can be
    shared between machines), this boot of it (two hosts can share a name) and, on Linux,
    the PID namespace (a container can share the host name but not the host's PIDs). A PID
    is checked for life only against files written from the same place."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            parts.append(handle.read().strip())
    except OSError:
        parts.append("")
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _remove_dead_writers_files(folder: str, place: str) -> None:
    """Remove the temporary files in ``folder`` that writers at ``place`` left when they were
    killed: those whose PID no longer exists. Nothing here can fail a write."""
    try:
        names = [name for name in os.listdir(folder) if name.endswith(".partial")]
    except OSError:
        return
    for name in names:
        fields = name[: -len(".partial")].rsplit(".", 3)  # ".{target}", place, pid, random
        if len(fields) != 4 or not fields[0].startswith(".") or fields[1] != place or not fields[2].isdigit():
            continue
        try:
            os.kill(int(fields[2]), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
        except (OSError, OverflowError):  # alive under another user, or no PID at all: left alone
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
