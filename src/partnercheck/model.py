"""A trained model: classify records with it, save it, load it.

A :class:`Model` is made from a fitted scikit-learn pipeline (:mod:`partnercheck.pipeline`)
and keeps what classifying needs as plain numbers: the vocabulary and idf weights, the rule
columns, the linear SVM's coefficients and the sigmoid calibration of each class. It
applies them with numpy and scipy alone. That keeps scikit-learn (1.2 s to import here)
out of the mail filter and the worker processes of batch labelling; a test checks that the
probabilities are the pipeline's own.

A saved model is a zip archive holding ``model.json`` (format version, the versions that
made it, labels, vocabulary, rules, rule columns, cut-offs, provenance) and the numeric
arrays as ``.npy`` members, read with ``allow_pickle=False``. Loading one parses JSON and
numbers and runs no code from the file: a pickle or joblib file (the format before
version 4) is refused without being opened as one. The fitted pipeline is not saved; a
freshly trained model still carries it in memory.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from .atomic import atomic_file
from .features import extract, known_stems, remember_stems
from .labels import LABELS, UNSURE
from .mail import EmailRecord
from .rules import Rule, RuleSet
from .vectors import vectorize
from .verdict import Clue, Thresholds, Verdict, decide

#: Bumped whenever a saved model can no longer be read by this code.
FORMAT_VERSION = 4
#: The first bytes of a zip archive; anything else (a pickle, a joblib file) is refused unread.
_ZIP_MAGIC = b"PK\x03\x04"
#: A model file's members may not unpack to more than this (a zip bomb is refused).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_ARRAYS = ("idf", "coef", "intercept", "calibration")
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
                 pipeline=None) -> None:
        self.weights = weights
        self._names = [str(name) for name in weights.feature_names]  # indexing a list beats numpy here
        remember_stems(weights.stems)
        self.thresholds = thresholds or Thresholds()
        self.info = dict(info or {})
        self._pipeline = pipeline

    @classmethod
    def from_pipeline(cls, pipeline, thresholds: Thresholds | None = None, info: dict | None = None) -> "Model":
        return cls(Weights.from_pipeline(pipeline), thresholds, info, pipeline=pipeline)

    @property
    def pipeline(self):
        """The fitted scikit-learn pipeline of a model trained in this process (None once loaded)."""
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
        lists and threshold overrides; without one the model's own thresholds apply. A
        record with no text to judge (empty, or binary data) is ``unsure``, decided by
        "unreadable".
        """
        if not records:
            return []
        unreadable = [i for i, record in enumerate(records) if not record.readable]
        if unreadable:  # no text to judge: unsure, as the filter and every command say
            readable = iter(self.classify_many([r for r in records if r.readable], policy))
            return [Verdict(UNSURE, {label: 0.0 for label in self.labels}, decided_by="unreadable")
                    if not record.readable else next(readable) for record in records]
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
        w = self.weights
        meta = {
            "format": FORMAT_VERSION,
            "made_by": _versions(),
            "labels": list(w.labels),
            "vocabulary": sorted(((str(token), int(index)) for token, index in w.vocabulary.items()),
                                 key=lambda item: item[1]),
            "rule_index": {str(k): int(v) for k, v in w.rule_index.items()},
            "feature_names": [str(name) for name in w.feature_names],
            "rules": [{**asdict(rule), "patterns": list(rule.patterns)} for rule in w.rules.rules],
            "stems": w.stems,
            "thresholds": self.thresholds.to_dict(),
            "info": self.info,
        }
        arrays = {"idf": np.asarray(w.idf), "coef": np.asarray(w.coef, dtype=np.float32),
                  "intercept": np.asarray(w.intercept, dtype=np.float64),
                  "calibration": np.asarray(w.calibration, dtype=np.float64)}
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_file(path) as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
                archive.writestr("model.json", json.dumps(meta, ensure_ascii=False, default=_plain))
                for name, array in arrays.items():
                    with archive.open(f"{name}.npy", "w") as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)


def _plain(value):
    """JSON for the numpy numbers that end up in a model's info."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be saved in a model")


def _versions() -> dict:
    from . import __version__

    made_by = {"partnercheck": __version__, "numpy": np.__version__}
    try:
        from importlib import metadata

        made_by["scikit-learn"] = metadata.version("scikit-learn")
    except Exception:  # not installed: the model was still made by this code
        pass
    return made_by


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
    """Load a model saved by :meth:`Model.save`; any problem becomes one :class:`ModelError`.

    Nothing in the file is executed: it must be a zip archive of JSON and ``.npy`` arrays,
    which are read with ``allow_pickle=False``. A pickle or joblib file is refused unread.
    """
    fix = "rebuild it with `python train.py` (the default model) or `partnercheck train`"
    if not os.path.exists(path):
        raise ModelError(f"no model at {path}; {fix}")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read the model {path}: {exc.strerror or exc}") from None
    if magic != _ZIP_MAGIC:
        kind = "a pickle or joblib file" if magic[:1] in (b"\x80", b"x", b"\x1f", b"Z", b"(", b"}", b"]") \
            else "not a partnercheck model"
        raise ModelError(f"{path} is {kind}, which partnercheck no longer loads because loading one can run "
                         f"code; it was not opened; {fix}")
    try:
        meta, arrays = _read_archive(path)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ModelError(f"{path} is not a readable partnercheck model ({exc.__class__.__name__}); {fix}") from None
    try:
        weights, thresholds = _weights(meta, arrays)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}; {fix}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not a usable partnercheck model ({exc.__class__.__name__}: {exc}); {fix}") from None
    info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    model = Model(weights, thresholds, info)
    _fix_surface_words(weights)
    return model


def _fix_surface_words(weights: Weights) -> None:
    """Settle, from the model alone, the word shown for every vocabulary stem in reasons.

    ``features.surface`` otherwise picks the shortest word seen so far in the process, so a
    reason's wording depended on which messages a worker had read before: two identical
    ``label`` runs differed in 3 of 8,496 reason texts.
    """
    from . import features

    for word, stem in sorted(weights.stems.items()):
        known = features._SURFACE.get(stem)
        if known is None or len(word) < len(known) or (len(word) == len(known) and word < known):
            features._SURFACE[stem] = word
    for token in weights.vocabulary:
        for word in (*token.split(" "), token.partition(":")[2]):
            if word:
                features._SURFACE.setdefault(word, word)


def _read_archive(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if "model.json" not in members:
            raise ModelError("not a partnercheck model (no model.json in it)")
        if sum(info.file_size for info in members.values()) > MAX_UNPACKED_BYTES:
            raise ModelError(f"unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        meta = json.loads(archive.read("model.json").decode("utf-8"))
        if not isinstance(meta, dict) or "format" not in meta:
            raise ModelError("not a partnercheck model (no format version)")
        if meta["format"] != FORMAT_VERSION:
            made = meta.get("made_by") if isinstance(meta.get("made_by"), dict) else {}
            by = f" (made by partnercheck {made.get('partnercheck')})" if made.get("partnercheck") else ""
            raise ModelError(f"model format {meta['format']}{by}, this partnercheck reads format {FORMAT_VERSION}")
        _check_versions(meta.get("made_by"))
        arrays = {}
        for name in _ARRAYS:
            if f"{name}.npy" not in members:
                raise ModelError(f"not a partnercheck model ({name}.npy missing)")
            with archive.open(f"{name}.npy") as member:
                arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    return meta, arrays


def _check_versions(made_by) -> None:
    """The versions that made a model: recorded, and compatible with the ones running."""
    from . import __version__

    if not isinstance(made_by, dict) or not isinstance(made_by.get("partnercheck"), str):
        raise ModelError("the model does not say which partnercheck made it")
    ours, theirs = __version__.split(".")[:2], made_by["partnercheck"].split(".")[:2]
    if ours != theirs:
        raise ModelError(f"made by partnercheck {made_by['partnercheck']}, whose features differ from those of "
                         f"partnercheck {__version__}")
    numpy_major = str(made_by.get("numpy", "")).split(".")[0]
    if numpy_major and numpy_major.isdigit() and int(numpy_major) > int(np.__version__.split(".")[0]):
        raise ModelError(f"made with numpy {made_by['numpy']}, newer than this numpy {np.__version__}")


def _weights(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[Weights, Thresholds]:
    """Weights and cut-offs from a model file's contents, every shape and type checked."""
    labels = meta["labels"]
    if not isinstance(labels, list) or sorted(map(str, labels)) != sorted(LABELS):
        raise ModelError(f"not trained on the labels {', '.join(LABELS)}")
    vocabulary = {str(token): int(index) for token, index in meta["vocabulary"]}
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise ModelError("its vocabulary is damaged")
    rule_index = {str(k): int(v) for k, v in dict(meta["rule_index"]).items()}
    if sorted(rule_index.values()) != list(range(len(rule_index))):
        raise ModelError("its rule columns are damaged")
    names = [str(name) for name in meta["feature_names"]]
    n_labels, n_features = len(labels), len(vocabulary) + len(rule_index)
    expected = {"idf": (len(vocabulary),), "coef": (n_labels, n_features), "intercept": (n_labels,),
                "calibration": (n_labels, 2)}
    for name, shape in expected.items():
        array = arrays[name]
        if array.shape != shape or array.dtype.kind != "f" or not np.isfinite(array).all():
            raise ModelError(f"its {name} array is damaged")
    if len(names) != n_features:
        raise ModelError("its feature names are damaged")
    rules = []
    for item in meta["rules"]:
        rule = Rule(id=str(item["id"]), label=str(item["label"]), weight=float(item["weight"]),
                    description=str(item.get("description", "")),
                    patterns=tuple(str(p) for p in item["patterns"]), field=str(item.get("field", "all")),
                    decide=bool(item.get("decide", False)), user=bool(item.get("user", False)))
        rules.append(rule)
    stems = {str(k): str(v) for k, v in dict(meta.get("stems") or {}).items()}
    thresholds = Thresholds(**{str(k): float(v) for k, v in dict(meta.get("thresholds") or {}).items()})
    weights = Weights(
        rules=RuleSet(rules), vocabulary=vocabulary, idf=arrays["idf"], rule_index=rule_index,
        feature_names=np.array(names, dtype=object), labels=[str(label) for label in labels],
        coef=arrays["coef"].astype(np.float32), intercept=arrays["intercept"].astype(np.float64),
        calibration=arrays["calibration"].astype(np.float64), stems=stems,
    )
    return weights, thresholds
