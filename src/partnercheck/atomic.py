"""Write files so that a reader never sees half of one.

Everything partnercheck writes (models, label files) goes to a temporary file beside the
target and is renamed over it only when complete: a crash or Ctrl-C leaves either the old
file or the new one, never a torn mix.
"""

from __future__ import annotations

import os
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
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
