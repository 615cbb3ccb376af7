"""The trained classifier: build, fit, save, load, and classify records with it.

The model is a scikit-learn :class:`~sklearn.pipeline.Pipeline` of three steps:

``extract``
    :class:`MailTokenizer`: records to tagged tokens and rule hits (:mod:`features`).
``vectorize``
    :class:`MailVectorizer`: TF-IDF over the tokens (sublinear term frequency, words
    seen in at least two training messages), next to one column per rule whose value is
    the rule's weight when it fired. Rule columns sit beside L2-normalised TF-IDF values
    of about 0.05 to 0.3, so a weight of 1 to 1.5 makes a rule hit count like a strong word.
``classify``
    a linear SVM wrapped in :class:`~sklearn.calibration.CalibratedClassifierCV`
    (sigmoid, 5 folds, one final estimator), giving calibrated probabilities and, through
    the SVM's coefficients, the terms that pushed hardest for and against each verdict.

A :class:`Model` wraps the pipeline with its decision thresholds and its provenance, and is
what gets saved. Saved files are joblib pickles: loading one can run code, so load only
models you trained or trust.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import joblib
import numpy as np
import sklearn
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from .atomic import atomic_file
from .features import Extracted, extract
from .labels import LABELS
from .mail import EmailRecord
from .rules import RuleSet, builtin_rules
from .verdict import Clue, Thresholds, Verdict, decide

#: Bumped whenever a saved model can no longer be read by this code.
FORMAT_VERSION = 1
#: How many clues for and against a verdict are reported.
CLUES = 5


class ModelError(Exception):
    """A model that cannot be used; the message says how to fix it."""


def extracted_tokens(doc: Extracted) -> list[str]:
    """The analyzer TF-IDF uses: tokens were already made by :class:`MailTokenizer`."""
    return doc.tokens


class MailTokenizer(BaseEstimator, TransformerMixin):
    """Records to :class:`~partnercheck.features.Extracted` (tokens and rule hits).

    ``rules`` defaults to the built-in rules; the fitted set is kept in ``rules_`` so that a
    saved model always reads mail with the rules it was trained with.
    """

    def __init__(self, rules: RuleSet | None = None) -> None:
        self.rules = rules

    def fit(self, records, y=None):
        self.rules_ = self.rules if self.rules is not None else builtin_rules()
        return self

    def transform(self, records: Iterable[EmailRecord]) -> list[Extracted]:
        return [extract(record, self.rules_) for record in records]


class MailVectorizer(BaseEstimator, TransformerMixin):
    """TF-IDF over tokens plus one weighted column per rule."""

    def __init__(self, min_df: int = 2, max_features: int | None = 60_000) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, docs: list[Extracted], y=None):
        self.tfidf_ = TfidfVectorizer(
            analyzer=extracted_tokens, min_df=self.min_df, max_features=self.max_features,
            sublinear_tf=True, dtype=np.float32,
        ).fit(docs)
        rule_ids = sorted({hit.id for doc in docs for hit in doc.hits})
        self.rule_index_ = {rule_id: i for i, rule_id in enumerate(rule_ids)}
        self.feature_names_ = np.concatenate(
            [self.tfidf_.get_feature_names_out(), np.array(["rule:" + r for r in rule_ids], dtype=object)]
        )
        return self

    def transform(self, docs: list[Extracted]):
        words = self.tfidf_.transform(docs)
        rows, cols, values = [], [], []
        for row, doc in enumerate(docs):
            for hit in doc.hits:
                col = self.rule_index_.get(hit.id)
                if col is not None:
                    rows.append(row)
                    cols.append(col)
                    values.append(hit.rule.weight)
        rules = sparse.csr_matrix((values, (rows, cols)), shape=(len(docs), len(self.rule_index_)), dtype=np.float32)
        return sparse.hstack([words, rules], format="csr")

    def get_feature_names_out(self, input_features=None):
        return self.feature_names_


def build_pipeline(c: float = 0.5, seed: int = 0, rules: RuleSet | None = None) -> Pipeline:
    """An unfitted pipeline with the default settings (see the module docstring)."""
    svm = LinearSVC(C=c, class_weight="balanced", random_state=seed)
    return Pipeline([
        ("extract", MailTokenizer(rules=rules)),
        ("vectorize", MailVectorizer()),
        ("classify", CalibratedClassifierCV(svm, method="sigmoid", cv=5, ensemble=False)),
    ])


@dataclass
class Model:
    """A fitted pipeline, its thresholds, and where it came from."""

    pipeline: Pipeline
    thresholds: Thresholds = field(default_factory=Thresholds)
    info: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.pipeline.named_steps["classify"].classes_]

    @property
    def rules(self) -> RuleSet:
        return self.pipeline.named_steps["extract"].rules_

    def classify(self, record: EmailRecord, policy=None) -> Verdict:
        """The verdict for one record (see :meth:`classify_many`)."""
        return self.classify_many([record], policy)[0]

    def classify_many(self, records: list[EmailRecord], policy=None) -> list[Verdict]:
        """Verdicts for a batch of records, with reasons.

        ``policy`` is a :class:`partnercheck.policy.Policy` with the user's rules, sender
        lists and threshold overrides; without one the model's own thresholds apply.
        """
        if not records:
            return []
        steps = self.pipeline.named_steps
        extracted = steps["extract"].transform(records)
        matrix = steps["vectorize"].transform(extracted)
        probabilities = steps["classify"].predict_proba(matrix)
        thresholds = policy.thresholds if policy is not None and policy.thresholds else self.thresholds
        labels = self.labels
        verdicts = []
        for i, (record, doc) in enumerate(zip(records, extracted)):
            hits = list(doc.hits)
            sender_list = None
            if policy is not None:
                hits.extend(policy.user_hits(record))
                sender_list = policy.sender_list(record)
            scores = {label: float(p) for label, p in zip(labels, probabilities[i])}
            label, scores, decided_by = decide(scores, hits, thresholds, sender_list)
            verdict = Verdict(label, scores, hits, decided_by=decided_by)
            self._add_clues(verdict, matrix, i, max(scores, key=scores.get) if label not in labels else label)
            verdicts.append(verdict)
        return verdicts

    def _add_clues(self, verdict: Verdict, matrix, row: int, label: str) -> None:
        coef = self._coefficients()[self.labels.index(label)]
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns = matrix.indices[start:end]
        contributions = matrix.data[start:end] * coef[columns]
        order = np.argsort(contributions)
        names = self.pipeline.named_steps["vectorize"].feature_names_
        verdict.clues_for = [Clue(str(names[columns[j]]), float(contributions[j]))
                             for j in order[::-1][:CLUES] if contributions[j] > 0]
        verdict.clues_against = [Clue(str(names[columns[j]]), float(contributions[j]))
                                 for j in order[:CLUES] if contributions[j] < 0]

    def _coefficients(self) -> np.ndarray:
        cached = getattr(self, "_coef_cache", None)
        if cached is None:
            calibrated = self.pipeline.named_steps["classify"].calibrated_classifiers_
            cached = np.mean([c.estimator.coef_ for c in calibrated], axis=0).astype(np.float32)
            self._coef_cache = cached
        return cached

    def save(self, path: str) -> None:
        """Write the model atomically: a crash never leaves half a file at ``path``."""
        payload = {
            "format": FORMAT_VERSION,
            "sklearn": sklearn.__version__,
            "pipeline": self.pipeline,
            "thresholds": self.thresholds.to_dict(),
            "info": self.info,
        }
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with atomic_file(path) as handle:
            joblib.dump(payload, handle, compress=3)


def load_model(path: str) -> Model:
    """Load a model saved by :meth:`Model.save`; any problem becomes one :class:`ModelError`."""
    fix = "rebuild it with `python train.py` (the default model) or `partnercheck train`"
    if not os.path.exists(path):
        raise ModelError(f"no model at {path}; {fix}")
    try:
        payload = joblib.load(path)
    except Exception as exc:  # a truncated or foreign pickle fails in many different ways
        raise ModelError(f"{path} is not a readable partnercheck model ({exc.__class__.__name__}); {fix}") from None
    if not isinstance(payload, dict) or "pipeline" not in payload:
        raise ModelError(f"{path} is not a partnercheck model; {fix}")
    if payload.get("format") != FORMAT_VERSION:
        raise ModelError(
            f"{path} has model format {payload.get('format')}, this partnercheck reads format {FORMAT_VERSION}; {fix}"
        )
    if list(payload["pipeline"].named_steps["classify"].classes_) != sorted(LABELS):
        raise ModelError(f"{path} was not trained on the labels {', '.join(LABELS)}; {fix}")
    thresholds = Thresholds(**payload.get("thresholds", {}))
    return Model(payload["pipeline"], thresholds, payload.get("info", {}))
