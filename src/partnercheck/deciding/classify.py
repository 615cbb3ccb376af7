"""The classification stage: records in, verdicts out, the same way for every caller.

Every command (``classify``, ``explain``, ``filter``, ``label``, ``evaluate``, ``serve``),
training's scoring and the library call :func:`classify` and only format what it returns.
For each record, in order:

1. **readable?** A message with no text to judge is ``unsure``, decided by
   :data:`UNREADABLE`, and goes no further;
2. **features**: tokens and built-in rule hits (:func:`partnercheck.understanding.features.extract`);
3. **probabilities**: the model's calibrated scores for the three labels;
4. **policy**: the user's own rules and sender lists (:class:`partnercheck.deciding.policy.Policy`);
5. **decision**: cut-offs, guards and overrides (:func:`partnercheck.deciding.verdict.decide`);
6. **clues**: the model features that pushed hardest for and against the verdict, in
   words; skipped with ``clues=False`` where nothing shows them (the mail filter's header),
   and only those for it with ``clues="for"`` (``label``'s rows, whose reasons name them).
   Only a full explanation (``clues=True``: ``classify``, ``explain``) carries the sentence
   around each rule match.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..labels import UNREADABLE, UNSURE
from ..reading.mail import EmailRecord
from ..understanding.features import FUNCTION_WORDS, describe_token, extract, snowball
from ..understanding.vectors import vectorize
from .verdict import Clue, Verdict, decide

if TYPE_CHECKING:
    from .model import Model
    from .policy import Policy

#: How many clues for and against a verdict are reported.
CLUES = 5


#: Greetings and sign-offs, which open and close mail of every label: like function words,
#: they say nothing to a reader as a clue ("hi we" is no reason for a verdict).
_GREETINGS = frozenset("hi hello hey dear thanks thank regards cheers sincerely".split())


@functools.lru_cache(maxsize=1)
def _function_stems() -> frozenset:
    """The function words, greetings and their Snowball stems ("does" is the token "doe"): a
    clue of them alone says nothing to a reader. Made on first use: only clues need the stemmer."""
    words = FUNCTION_WORDS | _GREETINGS
    return words | {snowball().stem(word) for word in words}


#: A feature whose contribution to the SVM's score is under this share of the message's
#: strongest one, or under the floor, did not carry the decision and is not shown as a clue.
_CLUE_SHARE = 0.15
_CLUE_FLOOR = 0.02
#: Words in more than about a fifth of the training messages ("new", "contact") count in the
#: score but say little to a reader about this message; they are not shown as clues.
_COMMON_IDF = 1 + float(np.log(5))


def classify(records: Iterable[EmailRecord], model: "Model", policy: "Policy | None" = None,
             clues: bool | str = True) -> list[Verdict]:
    """One verdict per record, in order, with its reasons (see the module docstring)."""
    records = list(records)
    verdicts: list[Verdict | None] = [None] * len(records)
    readable = []
    for i, record in enumerate(records):
        if record.readable:
            readable.append(i)
        else:
            verdicts[i] = Verdict(UNSURE, {}, decided_by=UNREADABLE)
    if readable:
        weights = model.weights
        docs = [extract(records[i], model.rules, sentences=clues is True) for i in readable]
        matrix = vectorize(docs, weights.table, weights.idf, weights.rule_index)
        probabilities = weights.probabilities(matrix)
        known_words = weights.known_words(matrix).tolist()
        thresholds = policy.cut_offs(model.thresholds) if policy is not None else model.thresholds
        decided: list[Verdict] = []  # one per matrix row
        for row, (i, doc) in enumerate(zip(readable, docs)):
            record = records[i]
            hits = list(doc.hits)
            sender_list = None
            if policy is not None:
                hits.extend(policy.user_hits(record, sentences=clues is True))
                sender_list = policy.sender_list(record)
            scores = {label: float(p) for label, p in zip(weights.labels, probabilities[row])}
            label, scores, decided_by = decide(scores, hits, thresholds, sender_list, known_words[row])
            if sender_list is not None:  # say so when the learned sender memory decided
                decided_by = policy.sender_reason(record, label, scores, decided_by)
            verdict = Verdict(label, scores, hits, decided_by=decided_by)
            decided.append(verdict)
            verdicts[i] = verdict
        if clues:
            _add_clues(decided, model, matrix, against=clues != "for")
    return verdicts  # type: ignore[return-value]


def classify_one(record: EmailRecord, model: "Model", policy: "Policy | None" = None,
                 clues: bool = True) -> Verdict:
    """:func:`classify` for a single record."""
    return classify([record], model, policy, clues)[0]


def _add_clues(verdicts: list[Verdict], model: "Model", matrix, against: bool = True) -> None:
    """The clues of each row's verdict, with the numpy work done for the whole batch at once
    (per row it cost more in calls than in arithmetic); the same values as row by row."""
    weights = model.weights
    labels = weights.labels
    # Each row's features weighed by the coefficients of its verdict (or of its best label).
    label_rows = [labels.index(v.label if v.label in labels else max(v.scores, key=v.scores.get)) for v in verdicts]
    indptr = matrix.indptr
    lengths = np.diff(indptr)
    contributions = matrix.data * weights.coef[np.repeat(label_rows, lengths), matrix.indices]
    magnitudes = np.abs(contributions)
    strongest = np.zeros(len(verdicts), dtype=magnitudes.dtype)  # 0 for a row with no feature
    nonempty = lengths > 0
    if nonempty.any():
        strongest[nonempty] = np.maximum.reduceat(magnitudes, indptr[:-1][nonempty])
    least = [max(_CLUE_FLOOR, _CLUE_SHARE * value) for value in strongest.tolist()]
    # Only the few features at or above their row's floor can be clues: they are picked out
    # in one numpy step (compared as Python floats are, in double precision) and sorted in
    # Python, strongest first, ties in the order a stable argsort gives (reversed for the
    # ones for).
    strong = np.flatnonzero(magnitudes.astype(np.float64) >= np.repeat(least, lengths))
    candidates: list[list] = [[] for _ in verdicts]
    rows = np.searchsorted(indptr, strong, side="right") - 1
    for row, value, position, column in zip(rows.tolist(), contributions[strong].tolist(), strong.tolist(),
                                            matrix.indices[strong].tolist()):
        candidates[row].append((value, position, column))
    for verdict, found in zip(verdicts, candidates):
        verdict.clues_for = _clues(model, sorted((c for c in found if c[0] > 0), reverse=True))
        if against:
            verdict.clues_against = _clues(model, sorted(c for c in found if c[0] < 0))


def _clues(model: "Model", candidates: list[tuple[float, int, int]]) -> list[Clue]:
    """The strongest contributions of one sign (``candidates``: value, position, column, in
    order), leaving out words like "the" or "new" that count in the score but say nothing
    to a reader."""
    clues = []
    terms = _clue_terms(model)
    for value, _, column in candidates:
        found = terms.get(column)
        if found is None:
            found = terms[column] = _clue_term(model, column)
        if found:
            clues.append(Clue(found[0], value, found[1]))
            if len(clues) == CLUES:
                break
    return clues


def _clue_terms(model: "Model") -> dict:
    """Column -> (token, words for people), or () for a column never shown, kept per model:
    the same few thousand columns come up message after message."""
    terms = model.__dict__.get("_clue_terms")
    if terms is None:
        terms = model.__dict__["_clue_terms"] = {}
    return terms


def _clue_term(model: "Model", column: int) -> tuple:
    names, idf = model.feature_names, model.weights.idf
    token = names[column]
    common = column < len(idf) and idf[column] < _COMMON_IDF and ":" not in token
    words = token.removeprefix("subject:").removeprefix("fwd:").split(" ")  # a word, a tagged word or a pair
    if common or _function_stems().issuperset(words):
        return ()
    return token, describe_token(token, model.surface_word)
