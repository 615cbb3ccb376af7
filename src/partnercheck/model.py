"""A trained model: classify records with it, save it, load it.

A :class:`Model` is made from a fitted scikit-learn pipeline (:mod:`partnercheck.pipeline`)
and keeps what classifying needs as plain numbers: the vocabulary and idf weights, the rule
columns, the linear SVM's coefficients and the sigmoid calibration of each class. It
applies them with numpy and scipy alone, and the pipeline itself is saved beside them and
unpickled only when asked for. That keeps scikit-learn (1.2 s to import here) out of the
mail filter and the worker processes of batch labelling; a test checks that the
probabilities are the pipeline's own.

Saved files are joblib pickles: loading one can run code, so load only models you trained
or trust.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from dataclasses import dataclass, field

import joblib
import numpy as np

from .atomic import atomic_file
from .features import extract, known_stems, remember_stems
from .labels import LABELS
from .mail import EmailRecord
from .rules import RuleSet
from .vectors import vectorize
from .verdict import Clue, Thresholds, Verdict, decide

#: Bumped whenever a saved model can no longer be read by this code.
FORMAT_VERSION = 3
#: How many clues for and against a verdict are reported.
CLUES = 5


_FUNCTION_WORDS = frozenset(
    "a an and or but of to in on at by for with from as is are was were be been it this that these those "
    "will would can could have has had do does did so if not than then there the".split()
)


class ModelError(Exception):
    """A model that cannot be used; the message says how to fix it."""


@dataclass
class Weights:
    """The fitted numbers of a pipeline, all that classifying needs."""

    rules: RuleSet
    vocabulary: dict[str, int]
    idf: np.ndarray
    rule_index: dict[str, int]
    feature_names: np.ndarray
    labels: list[str]
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray  # (labels,)
    calibration: np.ndarray  # (labels, 2): sigmoid a and b per label
    stems: dict[str, str] = field(default_factory=dict)  # the training words' stems, to warm the cache

    @classmethod
    def from_pipeline(cls, pipeline) -> "Weights":
        steps = pipeline.named_steps
        vectorizer, classifier = steps["vectorize"], steps["classify"]
        (calibrated,) = classifier.calibrated_classifiers_
        svm = calibrated.estimator
        order = [list(classifier.classes_).index(c) for c in svm.classes_]
        if order != list(range(len(order))):
            raise ModelError("the classifier's classes are not in the calibrator's order")
        return cls(
            rules=steps["extract"].rules_,
            vocabulary=vectorizer.vocabulary_,
            idf=vectorizer.idf_,
            rule_index=vectorizer.rule_index_,
            feature_names=vectorizer.feature_names_,
            labels=[str(c) for c in classifier.classes_],
            coef=svm.coef_.astype(np.float32),
            intercept=svm.intercept_.astype(np.float64),
            calibration=np.array([[c.a_, c.b_] for c in calibrated.calibrators], dtype=np.float64),
            stems=known_stems(),
        )

    def probabilities(self, matrix) -> np.ndarray:
        """Calibrated probabilities, as ``CalibratedClassifierCV.predict_proba`` computes them:
        a sigmoid of each one-vs-rest SVM score, normalised to sum to one."""
        scores = np.asarray(matrix @ self.coef.T, dtype=np.float64) + self.intercept
        a, b = self.calibration[:, 0], self.calibration[:, 1]
        proba = 1.0 / (1.0 + np.exp(a * scores + b))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / proba.shape[1])
        return np.divide(proba, total, out=uniform, where=total != 0)


class Model:
    """A trained classifier with its decision thresholds and its provenance."""

    def __init__(self, weights: Weights, thresholds: Thresholds | None = None, info: dict | None = None,
                 pipeline=None, pipeline_bytes: bytes | None = None) -> None:
        self.weights = weights
        self._names = [str(name) for name in weights.feature_names]  # indexing a list beats numpy here
        remember_stems(weights.stems)
        self.thresholds = thresholds or Thresholds()
        self.info = dict(info or {})
        self._pipeline = pipeline
        self._pipeline_bytes = pipeline_bytes

    @classmethod
    def from_pipeline(cls, pipeline, thresholds: Thresholds | None = None, info: dict | None = None) -> "Model":
        return cls(Weights.from_pipeline(pipeline), thresholds, info, pipeline=pipeline)

    @property
    def pipeline(self):
        """The fitted scikit-learn pipeline (unpickled on first use)."""
        if self._pipeline is None and self._pipeline_bytes is not None:
            self._pipeline = joblib.load(io.BytesIO(self._pipeline_bytes))
        return self._pipeline

    @property
    def labels(self) -> list[str]:
        return self.weights.labels

    @property
    def rules(self) -> RuleSet:
        return self.weights.rules

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
        w = self.weights
        extracted = [extract(record, w.rules) for record in records]
        matrix = vectorize(extracted, w.vocabulary, w.idf, w.rule_index)
        probabilities = w.probabilities(matrix)
        thresholds = policy.thresholds if policy is not None and policy.thresholds else self.thresholds
        verdicts = []
        for i, (record, doc) in enumerate(zip(records, extracted)):
            hits = list(doc.hits)
            sender_list = None
            if policy is not None:
                hits.extend(policy.user_hits(record))
                sender_list = policy.sender_list(record)
            scores = {label: float(p) for label, p in zip(w.labels, probabilities[i])}
            label, scores, decided_by = decide(scores, hits, thresholds, sender_list)
            if sender_list is not None:  # say so when the learned sender memory decided
                decided_by = policy.sender_reason(record, label, scores, decided_by)
            verdict = Verdict(label, scores, hits, decided_by=decided_by)
            self._add_clues(verdict, matrix, i, label if label in w.labels else max(scores, key=scores.get))
            verdicts.append(verdict)
        return verdicts

    def _add_clues(self, verdict: Verdict, matrix, row: int, label: str) -> None:
        w = self.weights
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns = matrix.indices[start:end]
        contributions = matrix.data[start:end] * w.coef[w.labels.index(label)][columns]
        order = np.argsort(contributions)
        verdict.clues_for = self._clues(columns, contributions, order[::-1], positive=True)
        verdict.clues_against = self._clues(columns, contributions, order, positive=False)

    def _clues(self, columns, contributions, order, positive: bool) -> list[Clue]:
        """The strongest contributions of one sign, leaving out words like "the" that count in
        the score but say nothing to a reader."""
        clues = []
        for j in order.tolist():
            value = float(contributions[j])
            if (value > 0) != positive or value == 0:
                break
            token = self._names[columns[j]]
            if token not in _FUNCTION_WORDS:
                clues.append(Clue(token, value))
                if len(clues) == CLUES:
                    break
        return clues

    def save(self, path: str) -> None:
        """Write the model atomically: a crash never leaves half a file at ``path``."""
        import sklearn

        pipeline = io.BytesIO()
        joblib.dump(self.pipeline, pipeline)
        payload = {
            "format": FORMAT_VERSION,
            "sklearn": sklearn.__version__,
            # Pickled apart: joblib unpickles with the pure-Python unpickler, which took
            # 0.25 s for these weights against 0.013 s for pickle's own.
            "weights": pickle.dumps(self.weights, protocol=pickle.HIGHEST_PROTOCOL),
            "pipeline": pipeline.getvalue(),
            "thresholds": self.thresholds.to_dict(),
            "info": self.info,
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_file(path) as handle:
            joblib.dump(payload, handle, compress=3)


_loaded: dict[str, tuple[int, Model]] = {}


def cached_model(path: str) -> Model:
    """:func:`load_model`, once per file and version of it in this process."""
    key = os.path.abspath(path)
    stamp = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
    cached = _loaded.get(key)
    if cached is None or cached[0] != stamp:
        cached = _loaded[key] = (stamp, load_model(path))
    return cached[1]


def load_model(path: str) -> Model:
    """Load a model saved by :meth:`Model.save`; any problem becomes one :class:`ModelError`."""
    fix = "rebuild it with `python train.py` (the default model) or `partnercheck train`"
    if not os.path.exists(path):
        raise ModelError(f"no model at {path}; {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = joblib.load(path)
    except Exception as exc:  # a truncated or foreign pickle fails in many different ways
        raise ModelError(f"{path} is not a readable partnercheck model ({exc.__class__.__name__}); {fix}") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise ModelError(f"{path} is not a partnercheck model; {fix}")
    if payload["format"] != FORMAT_VERSION or not isinstance(payload.get("weights"), bytes):
        raise ModelError(
            f"{path} has model format {payload.get('format')}, this partnercheck reads format {FORMAT_VERSION}; {fix}"
        )
    try:
        weights = pickle.loads(payload["weights"])
    except Exception as exc:
        raise ModelError(f"{path} is not a readable partnercheck model ({exc.__class__.__name__}); {fix}") from None
    if sorted(weights.labels) != sorted(LABELS):
        raise ModelError(f"{path} was not trained on the labels {', '.join(LABELS)}; {fix}")
    thresholds = Thresholds(**payload.get("thresholds", {}))
    return Model(weights, thresholds, payload.get("info", {}), pipeline_bytes=payload.get("pipeline"))
