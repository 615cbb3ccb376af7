"""A trained model's weights: made from a fitted pipeline, saved and loaded.

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
from .errors import PartnercheckError
from .features import known_stems
from .labels import LABELS
from .rules import RuleSet, builtin_rules, rules_fingerprint
from .verdict import Thresholds

#: Bumped whenever a saved model can no longer be read by this code.
FORMAT_VERSION = 4


class ModelError(PartnercheckError):
    """A model that cannot be used; the message says how to fix it."""


@dataclass
class Weights:
    """The fitted numbers of a pipeline, all that classifying needs."""

    vocabulary: dict[str, int]
    idf: np.ndarray
    rule_index: dict[str, int]
    feature_names: np.ndarray
    labels: list[str]
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray  # (labels,)
    calibration: np.ndarray  # (labels, 2): sigmoid a and b per label
    stems: dict[str, str] = field(default_factory=dict)  # training word -> stem, to show stems as words
    rules_fingerprint: str = ""  # of the built-in rules it was trained with

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
            vocabulary=vectorizer.vocabulary_,
            idf=vectorizer.idf_,
            rule_index=vectorizer.rule_index_,
            feature_names=vectorizer.feature_names_,
            labels=[str(c) for c in classifier.classes_],
            coef=svm.coef_.astype(np.float32),
            intercept=svm.intercept_.astype(np.float64),
            calibration=np.array([[c.a_, c.b_] for c in calibrated.calibrators], dtype=np.float64),
            stems={word: stem for word, stem in known_stems().items()
                   if stem in vectorizer.vocabulary_ or "subject:" + stem in vectorizer.vocabulary_},
            rules_fingerprint=rules_fingerprint(),
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
        self.feature_names = [str(name) for name in weights.feature_names]  # indexing a list beats numpy here
        self._surface: dict[str, str] | None = None
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
        """The built-in rules, read from the package: the model keeps only what it learned
        about each rule (its column and weights), so a rule can be fixed without retraining."""
        return builtin_rules()

    @property
    def rules_changed(self) -> bool:
        """Whether the built-in rules differ from the ones this model was trained with."""
        return self.weights.rules_fingerprint != rules_fingerprint()

    def surface_word(self, stem: str) -> str:
        """A training word with this stem, for showing to people ("only" for "onli"): the
        shortest one, or the stem itself when training saw none."""
        if self._surface is None:
            surface: dict[str, str] = {}
            for word, word_stem in sorted(self.weights.stems.items()):
                known = surface.get(word_stem)
                if known is None or len(word) < len(known):
                    surface[word_stem] = word
            self._surface = surface
        return self._surface.get(stem, stem)

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
