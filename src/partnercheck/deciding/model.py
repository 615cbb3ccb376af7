"""A trained model's weights: made from a fitted pipeline, saved and loaded.

Classifying with it is :mod:`partnercheck.deciding.classify`'s job. A :class:`Model` is made from a fitted scikit-learn pipeline (:mod:`partnercheck.learning.pipeline`)
and keeps what classifying needs as plain numbers: the vocabulary and idf weights, the rule
columns, the linear SVM's coefficients and the sigmoid calibration of each class. It
applies them with numpy and scipy alone. That keeps scikit-learn (1.2 s to import here)
out of the mail filter and the worker processes of batch labelling; a test checks that the
probabilities are the pipeline's own.

A saved model is a zip archive holding ``model.json`` (format version, the versions that
made it, labels, vocabulary, the fingerprint of the built-in rules and their columns,
cut-offs, provenance) and the numeric
arrays as ``.npy`` members, read with ``allow_pickle=False``. Loading one parses JSON and
numbers and runs no code from the file: a pickle or joblib file (the format before
version 4) is refused without being opened as one. The fitted pipeline is not saved; a
freshly trained model still carries it in memory.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..atomic import atomic_file
from ..errors import PartnercheckError
from ..labels import LABELS
from ..understanding.features import known_stems
from ..understanding.rules import RuleSet, builtin_rules, rules_fingerprint
from ..understanding.vectors import TermTable
from .verdict import Thresholds

#: Bumped whenever a saved model can no longer be read by this code.
FORMAT_VERSION = 4
#: The first bytes of a zip archive; anything else (a pickle, a joblib file) is refused unread.
_ZIP_MAGIC = b"PK\x03\x04"
#: A model file's members may not unpack to more than this (a zip bomb is refused).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_ARRAYS = ("idf", "coef", "intercept", "calibration")


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
    table: TermTable | None = field(default=None, repr=False)  # the vocabulary as numbers, for vectorize

    def __post_init__(self) -> None:
        if self.table is None:
            self.table = TermTable(self.vocabulary)

    @classmethod
    def from_pipeline(cls, pipeline) -> "Weights":
        step = pipeline.named_steps["classify"]
        vectorizer, classifier = step.vectorizer_, step.calibrated_
        (calibrated,) = classifier.calibrated_classifiers_
        svm = calibrated.estimator.svm_
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
            calibration=_portable([[c.a_, c.b_] for c in calibrated.calibrators]),
            stems=_shown_stems(vectorizer.vocabulary_),
            rules_fingerprint=rules_fingerprint(),
            table=vectorizer.table_,
        )

    def known_words(self, matrix) -> np.ndarray:
        """Per row of ``matrix``, how many distinct body, subject and forwarded words of the
        vocabulary it holds (not word pairs, rules, links, headers or shapes)."""
        if getattr(self, "_word_columns", None) is None:
            words = (" " not in name and (":" not in name or name.startswith(("subject:", "fwd:")))
                     for name in self.feature_names)
            self._word_columns = np.fromiter(words, dtype=bool, count=len(self.feature_names))  # rules: "rule:ID"
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        return np.bincount(rows, weights=self._word_columns[matrix.indices], minlength=matrix.shape[0]).astype(int)

    def probabilities(self, matrix) -> np.ndarray:
        """Calibrated probabilities, as ``CalibratedClassifierCV.predict_proba`` computes them:
        a sigmoid of each one-vs-rest SVM score, normalised to sum to one."""
        scores = np.asarray(matrix @ self.coef.T, dtype=np.float64) + self.intercept
        a, b = self.calibration[:, 0], self.calibration[:, 1]
        proba = 1.0 / (1.0 + np.exp(a * scores + b))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / proba.shape[1])
        return np.divide(proba, total, out=uniform, where=total != 0)


def _portable(numbers) -> np.ndarray:
    """The calibration's sigmoids to 7 significant digits. scipy's L-BFGS fits them with
    sums whose order follows the CPU's vector width, so they differ from machine to machine:
    by 2e-16 between two machines, and on a third (AMD EPYC with AVX-512) by 3e-8, where
    the optimiser stopped elsewhere (12 digits, kept until then, did not hide that). Rounded,
    ``python train.py`` writes the same model file on all three, unless a sigmoid lies that
    close to a rounding boundary, which is rare. Rounding to 7 digits moved no probability by
    more than 4e-8 and no verdict (the corpus and ../shared/realworld, 5,563 messages)."""
    return np.array([[float(f"{x:.7g}") for x in row] for row in numbers], dtype=np.float64)


def _shown_stems(vocabulary: dict[str, int]) -> dict[str, str]:
    """Training word -> stem for every stem a clue can show: body, subject and forwarded
    words, the halves of word pairs and the verbs of who-does-what tokens."""
    shown: set[str] = set()
    for term in vocabulary:
        if ":" not in term:
            shown.update(term.split(" "))
        elif term.startswith(("subject:", "fwd:")):
            shown.add(term.partition(":")[2])
        elif term.startswith("act:"):
            shown.add(term.partition("-")[2])
    return {word: stem for word, stem in sorted(known_stems().items()) if stem in shown}  # sorted: the same file


class Model:
    """A trained classifier with its decision thresholds and its provenance."""

    def __init__(self, weights: Weights, thresholds: Thresholds | None = None, info: dict | None = None,
                 pipeline=None) -> None:
        self.weights = weights
        self.feature_names = [str(name) for name in weights.feature_names]  # indexing a list beats numpy here
        self._surface: dict[str, str] | None = None
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
        w = self.weights
        meta = {
            "format": FORMAT_VERSION,
            "made_by": _versions(),
            "labels": list(w.labels),
            "vocabulary": sorted(((str(token), int(index)) for token, index in w.vocabulary.items()),
                                 key=lambda item: item[1]),
            "rule_index": {str(k): int(v) for k, v in w.rule_index.items()},
            "feature_names": [str(name) for name in w.feature_names],
            "rules_fingerprint": w.rules_fingerprint,
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
                # Members opened by name get a fixed date (1980), so one training gives one file's bytes.
                with archive.open("model.json", "w") as member:
                    member.write(json.dumps(meta, ensure_ascii=False, default=_plain).encode())
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
    from .. import __version__

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


def load_model(path: str | None = None) -> Model:
    """Load a model saved by :meth:`Model.save` (by default the model in force, as
    :func:`partnercheck.settings.model_path` finds it); any problem becomes one
    :class:`ModelError`.

    Nothing in the file is executed: it must be a zip archive of JSON and ``.npy`` arrays,
    which are read with ``allow_pickle=False``. A pickle or joblib file is refused unread.
    """
    if path is None:
        from ..settings import model_path

        path = model_path()
    fix = "rebuild it with `python train.py` (the default model) or `partnercheck train`"
    if not os.path.exists(path):
        raise ModelError(f"no model at {path}; {fix}")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read the model {path}: {exc.strerror or exc}") from None
    if magic != _ZIP_MAGIC:
        if magic[:2] == b"\x1f\x8b":  # gzip: a compressed mailbox given by mistake, or a compressed joblib file
            raise ModelError(f"{path} is gzip-compressed, not a partnercheck model (a zip archive); partnercheck "
                             f"does not open compressed joblib models either, since loading one can run code; {fix}")
        if magic[:1] in (b"\x80", b"x", b"Z", b"(", b"}", b"]"):
            raise ModelError(f"{path} is a pickle or joblib file, which partnercheck no longer loads because "
                             f"loading one can run code; it was not opened; {fix}")
        raise ModelError(f"{path} is not a partnercheck model (not a zip archive); {fix}")
    try:
        meta, arrays = _read_archive(path)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}; {fix}") from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, zlib.error, zipfile.BadZipFile,
            zipfile.LargeZipFile) as exc:
        raise ModelError(f"{path} is not a readable partnercheck model ({exc.__class__.__name__}); {fix}") from None
    try:
        weights, thresholds = _weights(meta, arrays)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}; {fix}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not a usable partnercheck model ({exc.__class__.__name__}: {exc}); {fix}") from None
    info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
    return Model(weights, thresholds, info)


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
    from .. import __version__

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
    stems = {str(k): str(v) for k, v in dict(meta.get("stems") or {}).items()}
    cut_offs = {str(k): float(v) for k, v in dict(meta.get("thresholds") or {}).items()}
    if not all(0 <= v <= 1 for v in cut_offs.values()):  # NaN included: every verdict would be unsure
        raise ModelError("its cut-offs are damaged (each must be between 0 and 1)")
    thresholds = Thresholds(**cut_offs)
    weights = Weights(
        vocabulary=vocabulary, idf=arrays["idf"], rule_index=rule_index,
        feature_names=np.array(names, dtype=object), labels=[str(label) for label in labels],
        coef=arrays["coef"].astype(np.float32), intercept=arrays["intercept"].astype(np.float64),
        calibration=arrays["calibration"].astype(np.float64), stems=stems,
        rules_fingerprint=str(meta.get("rules_fingerprint", "")),
    )
    return weights, thresholds
