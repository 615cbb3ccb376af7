"""Training: check labelled mail, cross-validate, choose cut-offs, fit the final model.

Used by ``train.py`` (the shipped model) and ``partnercheck train`` (a user's own model).
:func:`prepare` extracts each message's tokens once, as it reads it, and keeps only them,
as numbers (:mod:`~partnercheck.learning.kept_tokens`: memory grows with the tokens, not
with the mail); cross-validation refits only the vectorizer and classifier per fold, so
that it costs little more than one fit.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from ..deciding.model import Model
from ..deciding.verdict import Thresholds, decide
from ..errors import PartnercheckError
from ..labels import LABELS, PARTNERSHIP, PITCH, UNSURE
from ..reading.normalize import normalize
from ..understanding.features import extract
from ..understanding.rules import builtin_rules
from .evaluate import Scores
from .kept_tokens import KeptDoc, TokenStore
from .near_duplicates import NearCopyFolds, near_duplicate_groups, signature
from .pipeline import C, build_pipeline
from .lean_memory import LetGo, apart, pin_mmap_threshold, prepared_apart

#: Fewer examples of a label than this cannot be learned or cross-validated (5 folds,
#: each with a calibration split that needs every label; see :class:`NearCopyFolds` for a
#: label whose messages are near-copies of fewer than 5).
MIN_PER_LABEL = 10
#: The cost that sets the default cut-offs: at most this share of true partnerships may be
#: labelled pitch in out-of-fold predictions. Half a percent rather than one: held-out mail
#: labelled 1.7% of partnerships pitch with cut-offs chosen at 1% (round 4 of the corpus).
MAX_PARTNERSHIP_AS_PITCH = 0.005


class TrainingError(PartnercheckError):
    """Labelled mail that cannot be trained on; the message says what to fix."""


@dataclass
class Prepared:
    """What training keeps of each message: its key, its label, its tokens and rule hits
    (extracted once, reused by every fold and the final fit) and its group of near-copies
    (found once from the messages' MinHash signatures; every set of folds keeps a group in
    one fold; None when :func:`prepare` was told not to look for them). Never the records
    themselves: kept, 53,040 records took 237 MB (raw bytes, headers and parts of each) for
    nothing training reads again."""

    keys: list[str]
    labels: list[str]
    docs: list[KeptDoc] = field(repr=False)
    near_copies: np.ndarray | None = field(repr=False)
    duplicates: int = 0
    undecided: int = 0  # rows of a label file still marked unsure: no label to learn


#: Each label as one string object, so that the labels of a million messages are a million
#: references to three strings, in this process and pickled to another.
_ONE_OF = {label: label for label in LABELS}


def prepare(records, key=lambda record: record.key, near_copies: bool = True) -> Prepared:
    """Check labels and content, drop exact duplicates, and extract what training reads from
    each message as it comes, so that the records can go. ``key`` names a kept message in
    :attr:`Prepared.keys`. Without ``near_copies`` no signatures are computed and no groups
    found, and a fit's calibration then uses plain stratified folds (on corpus mail the
    signatures took 40-60% of extraction's CPU time).
    Raises :class:`TrainingError`."""
    rules = builtin_rules()
    store = TokenStore()
    keys, labels, docs, signatures = [], [], [], []
    unknown: dict[str, list[str]] = {}
    empty: list[str] = []
    seen: dict[bytes, tuple[str, str]] = {}  # the label and place of each message's first copy
    conflicts: list[str] = []
    duplicates = undecided = 0
    for record in records:
        where = f"{record.source}:{record.key}" if record.source else record.key
        if record.label == UNSURE:  # `label` wrote it and nobody corrected it, as `learn` skips it
            undecided += 1
            continue
        if record.label not in LABELS:
            unknown.setdefault(str(record.label), []).append(where)
            continue
        if not record.readable:
            empty.append(where)
            continue
        text = compared_text(record)
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if digest in seen:
            duplicates += 1
            first_label, first_where = seen[digest]
            if first_label != record.label:  # one copy corrected, the other not: which is meant?
                conflicts.append(f"{first_where} ({first_label}) and {where} ({record.label})")
            continue
        seen[digest] = (record.label, where)
        if unknown or empty or conflicts:
            continue  # training will be refused: extracting the rest would only delay saying why
        keys.append(key(record))
        labels.append(_ONE_OF[record.label])
        docs.append(store.keep(extract(record, rules)))
        if near_copies:
            signatures.append(signature(text))
    if list(unknown) == ["None"]:
        raise TrainingError(f"no labels: {len(unknown['None'])} message(s) have none, e.g. "
                            f"{', '.join(unknown['None'][:3])}; give them a label column, label-named "
                            "folders or --label")
    if unknown:
        details = "; ".join(f"{'no label' if label == 'None' else repr(label)} in {len(places)} message(s), "
                            f"e.g. {', '.join(places[:3])}" for label, places in unknown.items())
        raise TrainingError(f"unknown labels: {details}. Labels must be one of {', '.join(LABELS)}")
    if empty:
        raise TrainingError(f"{len(empty)} message(s) have no text, e.g. {', '.join(empty[:3])}; remove them")
    if conflicts:
        raise TrainingError(f"{len(conflicts)} message(s) come twice with different labels, e.g. "
                            f"{'; '.join(conflicts[:3])}; give both copies the label you mean")
    counts = Counter(labels)
    short = [f"{label} has {counts.get(label, 0)}" for label in LABELS if counts.get(label, 0) < MIN_PER_LABEL]
    if short:
        raise TrainingError(f"too few examples to learn from: {', '.join(short)}; "
                            f"each label needs at least {MIN_PER_LABEL}")
    near = np.array(near_duplicate_groups(signatures)) if near_copies else None
    return Prepared(keys, labels, docs, near, duplicates, undecided)


def compared_text(record) -> str:
    """What tells two messages apart as copies: the normalised subject and body (an exact
    copy of it is dropped, a near one grouped by its MinHash :func:`signature`)."""
    return normalize(record.subject + "\n" + record.body)


def _extracted(prepared: Prepared, seed: int, c: float):
    """The pipeline, the messages' tokens (extracted by :func:`prepare`), their labels and
    their groups of near-copies."""
    return build_pipeline(c=c, seed=seed), prepared.docs, np.array(prepared.labels), prepared.near_copies


def _calibrated_by_groups(rest, near, rows, seed: int):
    """``rest`` (the vectorizer and classifier) with the calibration's folds keeping the
    near-copies among ``rows`` together, when they are known."""
    if near is not None:
        rest.set_params(classify__cv=NearCopyFolds(near[rows], seed=seed))
    return rest


def out_of_fold(prepared: Prepared, seed: int = 0, folds: int = 5, c: float = C) -> np.ndarray:
    """Probabilities for every message from a model that saw neither it nor a near-copy of it
    (columns: sorted labels). Folds are stratified by label and keep each group of near-duplicates
    (:mod:`partnercheck.learning.near_duplicates`) together."""
    pipeline, docs, y, near = _extracted(prepared, seed, c)
    return _predict_folds(pipeline[1:], docs, y, near, seed, NearCopyFolds(near, folds, seed).split(None, y))


def leave_one_group_out(prepared: Prepared, groups: list[str | None], seed: int = 0, c: float = C) -> np.ndarray:
    """Probabilities for every message from a model trained without its whole group: a kind
    of sender or a writing style never seen in training, the way real mail differs from a
    corpus. Groups holding every message of a label are skipped, and messages in no group
    (None) are only ever trained on; their rows stay NaN."""
    pipeline, docs, y, near = _extracted(prepared, seed, c)
    groups_arr = np.array(groups, dtype=object)

    def splits():
        for group in sorted({g for g in groups if g is not None}):
            test = np.flatnonzero(groups_arr == group)
            train = np.flatnonzero(groups_arr != group)
            if len(set(y[train])) == len(LABELS):
                yield train, test

    return _predict_folds(pipeline[1:], docs, y, near, seed, splits(), fill=np.nan)


def _predict_folds(rest, docs, y, near, seed: int, splits, fill: float = 0.0) -> np.ndarray:
    probabilities = np.full((len(docs), len(LABELS)), fill)
    for train, test in splits:
        fold = _calibrated_by_groups(clone(rest), near, train, seed).fit([docs[i] for i in train], y[train])
        probabilities[test] = fold.predict_proba([docs[i] for i in test])
    return probabilities


#: What an ``unsure`` verdict costs against a wrong one when cut-offs are chosen: someone has
#: to look at it, but nothing was misfiled.
UNSURE_COST = 0.5


def choose_thresholds(probabilities: np.ndarray, truth: list[str]) -> tuple[Thresholds, Scores]:
    """The cut-offs that keep partnerships labelled pitch under :data:`MAX_PARTNERSHIP_AS_PITCH`
    and cost least otherwise.

    Searched on a grid. A wrong verdict costs 1 and an ``unsure`` costs :data:`UNSURE_COST`.
    With calibrated probabilities that cost sets a floor (Chow's rule): a top label whose
    probability is under 1 - 0.5 is more likely wrong than right, so ``min_confidence``
    starts at 0.5; above it, the grid point of least cost wins, ties going to fewer unsure
    verdicts, then to the lower ``min_confidence`` and ``min_margin`` and the stricter
    ``partnership_guard``. The grid is scored with numpy, all at once.
    """
    labels = sorted(LABELS)
    p = np.asarray(probabilities, dtype=np.float64)
    truth_index = np.array([labels.index(t) for t in truth])
    ordered = np.sort(p, axis=1)
    top, margin = p.argmax(axis=1), ordered[:, -1] - ordered[:, -2]
    best_p = ordered[:, -1]
    partnership, pitch = labels.index(PARTNERSHIP), labels.index(PITCH)
    p_partnership = p[:, partnership]
    is_partnership = truth_index == partnership
    best = None
    for min_confidence in np.round(np.arange(1 - UNSURE_COST, 0.81, 0.02), 2):
        for min_margin in np.round(np.arange(0.0, 0.31, 0.05), 2):
            confident = (best_p >= min_confidence) & (margin >= min_margin)
            for guard in np.round(np.arange(0.06, 0.41, 0.02), 2):
                decided = confident & ~((top == pitch) & (p_partnership >= guard))
                as_pitch = (decided & (top == pitch) & is_partnership).sum()
                if is_partnership.any() and as_pitch / is_partnership.sum() >= MAX_PARTNERSHIP_AS_PITCH:
                    continue
                unsure = int((~decided).sum())
                wrong = int((decided & (top != truth_index)).sum())
                key = (wrong + UNSURE_COST * unsure, unsure, min_confidence, min_margin, guard)
                if best is None or key < best[0]:
                    best = (key, Thresholds(float(min_confidence), float(guard), float(min_margin)))
    thresholds = best[1] if best is not None else Thresholds(0.8, 0.06, 0.3)  # the most careful grid point
    rows = [dict(zip(labels, map(float, row))) for row in p]
    return thresholds, Scores(list(truth), [decide(r, [], thresholds)[0] for r in rows])


def fit(prepared: Prepared, thresholds: Thresholds, seed: int = 0, c: float = C, info: dict | None = None,
        keep_tokens: bool = True) -> Model:
    """The final model on all prepared messages (the extraction step learns nothing, so the
    later steps are fitted on the tokens :func:`prepare` extracted). Without ``keep_tokens``
    the fit lets the messages' tokens go once it has built its matrix (:class:`LetGo`), and
    ``prepared.docs`` is empty after it."""
    pipeline, docs, y, near = _extracted(prepared, seed, c)
    if not keep_tokens:
        prepared.docs = docs = LetGo(docs)
    _calibrated_by_groups(pipeline[1:], near, np.arange(len(y)), seed).fit(docs, y)
    return Model.from_pipeline(pipeline, thresholds, info)


def train(records, seed: int = 0, c: float = C, info: dict | None = None,
          keep_tokens: bool = True) -> tuple[Model, Scores, Prepared]:
    """Prepare, cross-validate, choose thresholds and fit: the whole of training.

    Returns the model, the cross-validated scores under the chosen thresholds, and the
    prepared data (for reporting duplicates dropped, and with ``keep_tokens`` for scoring
    other splits of it). The mail is read, and the model cross-validated, in child
    processes (:mod:`~partnercheck.learning.lean_memory`, which says what that saves).
    """
    pin_mmap_threshold()
    prepared = prepared_apart(prepare, records)
    probabilities = apart(out_of_fold, prepared, seed=seed, c=c)
    thresholds, cv_scores = choose_thresholds(probabilities, prepared.labels)
    model = fit(prepared, thresholds, seed=seed, c=c, info=info, keep_tokens=keep_tokens)
    return model, cv_scores, prepared
