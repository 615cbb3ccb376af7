"""Keeping training's memory down: the work that leaves garbage behind is done in forked
children, and freed arrays go back to the system.

Training's peak is its last fit: the whole matrix (in float64 then, float32 since) and
liblinear's copy of it in its own nodes (113 and 151 MB on ten perturbed copies of the
corpus, 53,439 messages after exact duplicates). Whatever else the process holds then adds
to it. Measured there (MB as ``ru_maxrss`` counts them, 2**20 bytes; RSS sampled every
10-50 ms):

- Reading: the process held 124 MB after its imports and 296 MB once every message was
  read, of which the kept tokens and rule hits were about 80: the rest is the mail parser's
  and the rules' lazy imports, RE2's DFA states and a heap left fragmented by a million
  short-lived objects. :func:`prepared_apart` reads in a child and takes back only what
  :func:`~partnercheck.learning.training.prepare` returns, and the words it stemmed (a
  model keeps them to show clues as words), without loading nltk to check them (19 MB).
- Cross-validation (30 SVM fits) and each vectorizer fit leave heap that is not given back,
  about 30 and 38 MB: training runs them with :func:`apart` too, and the vectorizer's fit
  brings back 3.5 MB of vocabulary and weights.
- :func:`pin_mmap_threshold` keeps glibc from raising its mmap threshold as large arrays are
  freed (it does so up to 32 MB by default), after which later matrices came from a heap
  that is not given back: the last fit alone peaked 50 MB lower with it pinned at 128 KB.
  Mapping and unmapping every array of 128 KB or more costs CPU: 360-376 s against 313 s
  before on those copies. Pinned only for the last fit, training took 321 s but peaked at
  510 MB, in cross-validation's child.

With all of them, training on those copies peaked at 499 MB in its largest process, against
686 MB before, with the same model byte for byte (bench/README.md has the runs). Two more
since, on ten copies of a corpus grown to 6,024 messages (58,862 after exact duplicates),
one run each: tokens kept in two bytes while they fit (:class:`~partnercheck.learning.kept_tokens.TokenStore`)
and ``partnercheck train`` letting them go before liblinear copies the last fit's matrix
(:class:`LetGo`): 514 MB against 552. What is left at the peak is the imports (128 MB), what
the parent keeps beyond them (about 70 MB, most of it the Python heap left by reading the
prepared messages back), the float64 matrix (131 MB) and liblinear's nodes, which is over
500 MB at that size. On ten copies of the corpus after round 11 (63,578 messages, 12.6
million non-zeros), one run each: 552 MB; 503 MB with the matrix handed to liblinear in
float32 (:class:`~partnercheck.learning.pipeline.SinglePrecisionSVC`); 494 MB with a full
collection once the tokens are let go, which gave back arenas that the freed tokens' memory
had left pinned (at three copies 13 of the 19 arenas reading them back had taken); 476 MB
with each label one string and each set of rules fired one tuple, shared by the messages
(:class:`~partnercheck.learning.kept_tokens.TokenStore`). The parent then held 271 MB going
into the last fit, the matrix's 96 among them, and liblinear's nodes added 205.
"""

from __future__ import annotations

import ctypes
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


class LetGo(list):
    """Messages' tokens handed to the last fit of training, which lets them go (empties this
    list, then collects) once it has built its matrix, before liblinear copies that matrix:
    nothing reads them again, and the last fit is training's peak. Only the list itself is
    emptied; the folds of the calibration before it get lists of their own rows."""


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold, so that freed large arrays go back to the system; returns
    whether it was pinned (False on a C library without ``mallopt``)."""
    try:
        libc = ctypes.CDLL(None)  # this program's own symbols, the C library's among them
    except OSError:
        return False
    return hasattr(libc, "mallopt") and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


def prepared_apart(prepare, records, **options):
    """``prepare(records, **options)`` run :func:`apart`, and the words it stemmed seeded
    here (a model keeps them to show its clues as words)."""
    prepared, stems = apart(_with_stems, prepare, records, **options)
    seed_stems(stems, check=0)  # stemmed by this program's own nltk: loading it here costs 19 MB
    return prepared


def _with_stems(prepare, records, **options):
    return prepare(records, **options), known_stems()


def apart(function, *args, **options):
    """``function(*args, **options)`` run in a forked child, its result and any
    :class:`Exception` it raised brought back, pickled over a pipe that only the two hold
    (never from a file). Run here where there is no ``fork``, or when this process has other
    threads, one of which might hold a lock the child would wait on.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return function(*args, **options)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(reading)
        _send(writing, function, args, options)
    os.close(writing)
    try:
        with open(reading, "rb") as pipe:
            outcome, value = pickle.load(pipe)
    except EOFError:
        outcome = None
    finally:
        try:
            os.kill(child, signal.SIGKILL)  # a child still working when this one was stopped
        except ProcessLookupError:
            pass
        _, status = os.waitpid(child, 0)
    if outcome is None:
        raise PartnercheckError(f"training stopped: its process {_ended(status)}")
    if outcome == "raised":
        raise value
    return value


def _send(writing: int, function, args, options) -> None:
    """The child's part: run, send the outcome and exit without running the parent's exit
    handlers or flushing its copies of the parent's buffers."""
    try:
        try:
            outcome = ("returned", function(*args, **options))
        except Exception as error:  # raised again by the parent, as if raised there
            outcome = ("raised", error)
        try:
            sent = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):  # an error that cannot travel
            sent = pickle.dumps(("raised", PartnercheckError(str(outcome[1]))))
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
