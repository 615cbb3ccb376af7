"""Label every message of a source, on all cores, into result rows.

Message formats are split into raw messages in this process (cheap) and parsed and
classified in small chunks (:data:`CHUNK` messages) by a ``multiprocessing`` pool, each
worker loading the model once. Where the platform forks, the workers are forked after
this process has loaded the model and nltk, so they start with both in memory. At most
a few chunks per worker are in flight, and rows are handed on chunk by chunk in source
order as soon as the next one is done: output is stable and streams, progress is real,
``--resume`` can skip what an earlier run wrote, and an interruption loses only the
chunks in flight (well under a second of work each). Workers ignore Ctrl-C (the main
process stops them) and die with the main process even when it is killed with SIGKILL
(Linux), so no worker prints a traceback or outlives its run; the pool uses pipes only,
so nothing is left in /dev/shm. Small inputs are classified in-process: starting workers
costs about as much as classifying a few thousand messages.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
from collections import Counter, deque
from itertools import islice
from typing import TYPE_CHECKING, Iterable, Iterator

from ..labels import UNREADABLE, UNSURE
from ..reading.mail import EmailRecord, header_fields, header_text
from ..reading.sources import RawMessage, Source, SourceError, to_record

if TYPE_CHECKING:
    from ..deciding.model import Model

ROW_FIELDS = [
    "source", "key", "message_id", "date", "from", "subject", "verdict", "score",
    "partnership", "pitch", "other", "rules", "reasons", "problems",
]
CHUNK = 100
#: Chunks in flight per worker: enough to keep every worker busy, few enough to lose little.
IN_FLIGHT = 3
#: Below this many bytes (message files) or messages (folders), stay in one process.
PARALLEL_FROM_BYTES = 8 * 1024 * 1024
PARALLEL_FROM_MESSAGES = 4000

def model_at(path: str) -> "Model":
    """The model at ``path``, loaded once per process (numpy and scipy imported only here)."""
    from ..deciding.model import cached_model

    return cached_model(path)


def verdict_row(record: EmailRecord, verdict) -> list:
    """One output row, values in :data:`ROW_FIELDS` order, for a classified record. Lists
    rather than dicts: rows cross from worker processes, and a list pickles in a fraction of
    the time."""
    problems = "; ".join(record.problems)
    head = [record.source, record.key, record.message_id, record.date_iso(), record.from_addr, record.subject]
    if verdict.decided_by == UNREADABLE:
        return head + [UNSURE, "", "", "", "", "", f"{UNREADABLE}: " + (problems or "no text"), problems]
    scores = verdict.scores
    return head + [
        verdict.label, round(verdict.score, 4), round(scores.get("partnership", 0.0), 4),
        round(scores.get("pitch", 0.0), 4), round(scores.get("other", 0.0), 4),
        ",".join(verdict.rule_ids), verdict.summary(), problems,
    ]


_VERDICT = ROW_FIELDS.index("verdict")
_REASONS = ROW_FIELDS.index("reasons")


def classify_records(model: "Model", records: list[EmailRecord], policy=None) -> list[list]:
    """Rows for a chunk of records, unreadable ones included, in order."""
    from ..deciding.classify import classify

    # Rows show the clues for a verdict (in its reasons), never those against it.
    return [verdict_row(r, v) for r, v in zip(records, classify(records, model, policy, clues="for"))]


def _classify_raw_chunk(model_path: str, policy, source: str, messages: list[RawMessage]) -> list[list]:
    return classify_records(model_at(model_path), [to_record(m, source) for m in messages], policy)


class SourceChanged(SourceError):
    """A message of ``--resume``'s earlier run is no longer where its row says."""


def label_source(
    source: Source, model_path: str, policy=None, jobs: int | None = None,
    skip: dict[tuple[str, str], str] | None = None,
) -> Iterator[list[list]]:
    """Lists of rows, chunk by chunk, for every message of ``source`` not in ``skip``
    (the (source, key) of each row an earlier run wrote, and the Message-ID it gave).

    ``jobs`` is the number of worker processes (``None``: all cores when the input is
    large, else one). Raises :class:`SourceChanged` when a message in ``skip`` now has
    another Message-ID: keys count positions in an mbox, a stream or a table, so a message
    deleted since the earlier run shifts every later one, whose rows would then name the
    wrong mail.
    """
    skip = skip or {}
    if source.is_table:
        records = iter(source)
        if skip:
            records = (r for r in records if _not_done(source, skip.get((r.source, r.key)), r.key, r.message_id))
        for chunk in _chunks(records):
            yield classify_records(model_at(model_path), chunk, policy)
        return
    done = {source.stable_key(key): mid for (name, key), mid in skip.items() if name == source.name}
    messages = source.messages()
    if done:
        messages = (m for m in messages if _not_done(source, done.get(source.stable_key(m.key)), m.key, m))
    if jobs is None:
        jobs = (os.cpu_count() or 1) if _large(source) else 1
    if jobs <= 1:
        for chunk in _chunks(messages):
            yield classify_records(model_at(model_path), [to_record(m, source.name) for m in chunk], policy)
        return
    # Forked workers start with what this process has loaded (0.6 s of imports and loading
    # saved per worker); spawned ones load it themselves.
    fork = "fork" in multiprocessing.get_all_start_methods()
    if fork:
        from ..understanding.features import seed_stems, snowball

        snowball()
        seed_stems(model_at(model_path).weights.stems)  # the workers inherit the filled stem cache
        gc.freeze()  # the workers then share these objects' memory instead of copying it
    context = multiprocessing.get_context("fork" if fork else "spawn")
    pool = context.Pool(jobs, initializer=worker_setup)
    try:
        pending: deque = deque()
        for chunk in _chunks(messages, CHUNK):
            pending.append(pool.apply_async(_classify_raw_chunk, (model_path, policy, source.name, chunk)))
            while len(pending) >= IN_FLIGHT * jobs or (pending and pending[0].ready()):
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _not_done(source: Source, earlier: str | None, key: str, message) -> bool:
    """Whether the message at ``key`` is still to be labelled: ``earlier`` is the Message-ID
    the earlier run's row gave it (None: no such row; "": the row gave none, so there is
    nothing to compare). ``message`` is its Message-ID, or its raw message, whose header
    alone is read."""
    if earlier is None:
        return True
    if earlier:
        now = message if isinstance(message, str) else _message_id(message.raw)
        if now != earlier:
            raise SourceChanged(f"{source.name}: message {key} is no longer the one the earlier run labelled "
                                f"(Message-ID {now or 'none'}, its row says {earlier}): the source changed "
                                "since; label it again without --resume")
    return False


def _message_id(raw: bytes) -> str:
    """A message's Message-ID as :func:`~partnercheck.reading.mail.parse_message` reads it,
    from its header alone."""
    try:
        fields, _ = header_fields(raw, [])
    except Exception:  # parse_message gives such a message no Message-ID either
        return ""
    return header_text(next((value for name, value in fields if name.lower() == "message-id"), None))


def worker_setup() -> None:
    """In each worker (of `label`, and of `imap`'s judging): leave Ctrl-C to the main
    process, die on the SIGTERM with which the pool ends its workers (a handler inherited
    from a program that labels from within could keep one waiting for ever on the pool's
    queue lock), and die with the main process (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the main process died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _large(source: Source) -> bool:
    if source.is_stream:  # its size is not known beforehand
        return True
    if source.format in ("eml", "mbox"):
        return os.path.getsize(source.path) >= PARALLEL_FROM_BYTES
    return _count_files_over(source, PARALLEL_FROM_MESSAGES)


def _count_files_over(source: Source, limit: int) -> bool:
    count = 0
    for _, _, files in os.walk(source.path):
        count += len(files)
        if count >= limit:
            return True
    return False


def _chunks(items: Iterable, size: int | None = None) -> Iterator[list]:
    iterator, size = iter(items), size or CHUNK
    while chunk := list(islice(iterator, size)):
        yield chunk


def tally(rows: list[list], counts: Counter) -> None:
    """Add a chunk's verdicts to ``counts`` (unreadable rows counted apart)."""
    for row in rows:
        counts[UNREADABLE if row[_REASONS].startswith(UNREADABLE + ":") else row[_VERDICT]] += 1
