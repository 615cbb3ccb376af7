"""Keeping training's memory down: the mail read in a child process, and freed memory given
back to the system before the last fit.

Training's peak is its last fit: liblinear holds the whole matrix in float64 and again in
its own nodes. Measured on ten perturbed copies of the corpus (53,439 messages after exact
duplicates, one process, RSS sampled every 5 ms), the process held 124 MB after its imports
and 296 MB once every message was read, of which the kept tokens were 34 MB: the rest is the
mail parser's and the rules' lazy imports, RE2's DFA states, the stem cache and a heap left
fragmented by a million short-lived objects, none of which the fit needs. :func:`prepared_apart`
reads and extracts in a forked child and takes back only what :func:`~partnercheck.learning.
training.prepare` returns, and the words it stemmed (a model keeps them to show clues as
words), so the model is the same byte for byte.

:func:`pin_mmap_threshold` keeps glibc from raising its mmap threshold as large arrays are
freed (it does so up to 32 MB by default), after which the next folds' matrices and
vectorizer arrays came from a heap that is not given back: on the same copies the last fit
alone peaked at 545 MB with it raised and 493 MB with it pinned at 128 KB.
:func:`give_back_freed` returns what cross-validation freed before the last fit: 17 MB there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import pickle
import signal
import threading

from ..errors import PartnercheckError
from ..understanding.features import known_stems, seed_stems

#: glibc's ``mallopt`` parameter for the mmap threshold, and the value pinned: its default
#: starting point, 128 KB.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 128 * 1024


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold, so that freed large arrays go back to the system; returns
    whether it was pinned (False on a C library without ``mallopt``)."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


def give_back_freed() -> None:
    """Collect garbage and hand the free pages of glibc's heap back to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, TypeError):
        return None


def prepared_apart(prepare, records, **options):
    """``prepare(records, **options)`` run in a forked child, its result and any
    :class:`Exception` it raised brought back. Run here where there is no ``fork``, or when
    this process has other threads, one of which might hold a lock the child would wait on.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return prepare(records, **options)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(reading)
        _send(writing, prepare, records, options)
    os.close(writing)
    try:
        with open(reading, "rb") as pipe:
            outcome, value, stems = pickle.load(pipe)
    except EOFError:
        outcome = None
    finally:
        try:
            os.kill(child, signal.SIGKILL)  # a child still reading when this one was stopped
        except ProcessLookupError:
            pass
        _, status = os.waitpid(child, 0)
    if outcome is None:
        raise PartnercheckError(f"reading the mail stopped: its process {_ended(status)}")
    if outcome == "raised":
        raise value
    seed_stems(stems)
    return value


def _send(writing: int, prepare, records, options) -> None:
    """The child's part: prepare, send the outcome and exit without running the parent's
    exit handlers or flushing its copies of the parent's buffers."""
    try:
        try:
            outcome = ("prepared", prepare(records, **options), known_stems())
        except Exception as error:  # raised again by the parent, as if read there
            outcome = ("raised", error, None)
        try:
            sent = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):  # an error that cannot travel
            sent = pickle.dumps(("raised", PartnercheckError(str(outcome[1])), None))
        with open(writing, "wb") as pipe:
            pipe.write(sent)
    except BaseException:  # interrupted, or the parent stopped reading: it says why
        pass
    finally:
        os._exit(0)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
