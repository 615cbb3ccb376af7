"""The scikit-learn pipeline that partnercheck trains: two steps.

``extract``
    :class:`MailTokenizer`: records to tagged tokens and rule hits (:mod:`features`).
``classify``
    :class:`CalibratedSVM`: the vectorizer and a calibrated linear SVM, fitted on tokens.

    :class:`MailVectorizer` makes TF-IDF over the tokens and word pairs (sublinear term
    frequency, terms seen in at least two training messages, at most 60,000), next to one
    column per rule whose value is the rule's weight when it fired. Rule columns sit beside
    L2-normalised TF-IDF values of about 0.05 to 0.3, so a weight of 1 to 1.5 makes a rule
    hit count like a strong word.

    A linear SVM wrapped in :class:`~sklearn.calibration.CalibratedClassifierCV` (sigmoid,
    5 folds, one final estimator) gives calibrated probabilities and, through the SVM's
    coefficients, the terms that pushed hardest for and against each verdict. Training
    gives the calibration folds that keep near-copies together
    (:class:`~partnercheck.learning.near_duplicates.NearCopyFolds`) when it knows them.

C = 0.3 was chosen on the fourth corpus round (3,624 messages). Leave-one-style-out macro-F1
barely moves with C (0.890, 0.907, 0.919, 0.927 and 0.926 at C = 0.1, 0.2, 0.3, 1 and 3),
while on the real-mail sample (``partnercheck evaluate ../shared/realworld``) stronger
regularisation transferred better (macro-F1 0.838, 0.826, 0.817, 0.771 and 0.693): words
are where the corpus's writing habits live, and the keyword rules, which carry LABELS.md's
signals, need the words held back to count. 0.3 is the middle ground that keeps held-out
macro-F1 at 0.974; the real-mail sample took part in this one choice, so its figures in
the model card flatter the model a little. Logistic regression and complement naive Bayes
scored lower on both (0.74-0.79 and 0.59-0.65 on real mail). Classifying does not
need this module: :mod:`partnercheck.model` keeps the fitted numbers and applies them with
numpy alone, so that a mail filter does not pay for importing scikit-learn.
"""

from __future__ import annotations

import gc
from numbers import Integral
from typing import Iterable

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.svm._base import _fit_liblinear
from sklearn.svm._classes import _validate_dual_parameter
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ..reading.mail import EmailRecord
from ..understanding.features import Extracted, extract
from ..understanding.rules import builtin_rules
from ..understanding.vectors import TermTable, counted_terms, vectorize
from .kept_tokens import counted_terms as counted_as_numbers, numbered
from .lean_memory import LetGo, apart

#: The SVM's regularisation; the module docstring says what chose it.
C = 0.3
#: Messages vectorised at once. :func:`vectorize` holds a few integers per token of the whole
#: batch, so one batch of 53,040 messages peaked at 1,742 MB; rows do not depend on each other.
BATCH = 2048


class MailTokenizer(BaseEstimator, TransformerMixin):
    """Records to :class:`~partnercheck.understanding.features.Extracted` (tokens and rule hits), with the
    built-in rules read from the package (a model stores what it learned about each rule,
    never the rules themselves)."""

    def fit(self, records, y=None):
        return self

    def transform(self, records: Iterable[EmailRecord]) -> list[Extracted]:
        rules = builtin_rules()
        return [extract(record, rules) for record in records]


class MailVectorizer(BaseEstimator, TransformerMixin):
    """TF-IDF over tokens plus one weighted column per rule."""

    def __init__(self, min_df: int = 2, max_df: float = 1.0, max_features: int | None = 60_000) -> None:
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features

    def fit(self, docs: list[Extracted], y=None):
        """The vocabulary and idf weights ``TfidfVectorizer(min_df, max_df, max_features,
        sublinear_tf=True, dtype=np.float32)`` learns over :func:`terms`, computed from
        counts of each term (:func:`counted_terms`, or as numbers for tokens training keeps
        as numbers) instead of its matrix of every term of every message. Fitted on 52,043
        messages (ten perturbed copies of the corpus), it raised the process's peak memory by
        289 MB, two counters of strings by 47 MB. One difference, on purpose: terms tied in
        frequency at the ``max_features`` cut are kept in alphabetical order, where
        scikit-learn keeps what numpy's unstable sort leaves first, which can differ with the
        CPU's vector width (a test checks both learn the same otherwise)."""
        n_docs = len(docs)
        most = self.max_df if isinstance(self.max_df, Integral) else self.max_df * n_docs
        least = self.min_df if isinstance(self.min_df, Integral) else self.min_df * n_docs
        if most < least:
            raise ValueError("max_df corresponds to fewer messages than min_df")
        names, df, tf = counted_as_numbers(docs, least) or counted_terms(docs, least)
        keep = df <= most
        if self.max_features is not None and keep.sum() > self.max_features:
            chosen = np.flatnonzero(keep)[np.argsort(-tf[keep], kind="stable")[:self.max_features]]
            keep = np.zeros(len(names), dtype=bool)
            keep[chosen] = True
        kept = np.flatnonzero(keep)
        if not len(kept):
            raise ValueError("no term is in enough messages to learn from")
        self.vocabulary_ = {names[i]: column for column, i in enumerate(kept.tolist())}
        idf = np.full(len(kept), n_docs + 1, dtype=np.float32)
        idf /= df[kept].astype(np.float32) + np.float32(1)
        np.log(idf, out=idf)
        idf += 1
        self.idf_ = idf
        rule_ids = sorted({hit.id for doc in docs for hit in doc.hits})
        self.rule_index_ = {rule_id: i for i, rule_id in enumerate(rule_ids)}
        self.table_ = TermTable(self.vocabulary_)
        self.feature_names_ = np.array(list(self.vocabulary_) + ["rule:" + r for r in rule_ids], dtype=object)
        return self

    def transform(self, docs: list[Extracted]):
        batches = [docs[start:start + BATCH] for start in range(0, len(docs), BATCH)] or [docs]
        matrices = [vectorize(batch, self.table_, self.idf_, self.rule_index_, numbered(batch, self.table_))
                    for batch in batches]
        return matrices[0] if len(matrices) == 1 else sparse.vstack(matrices, format="csr")

    def get_feature_names_out(self, input_features=None):
        return self.feature_names_


class CalibratedSVM(ClassifierMixin, BaseEstimator):
    """The vectorizer and the calibrated SVM as one step that is fitted on tokens.

    The vectorizer is fitted once, on all the messages; the calibration then fits the SVM on
    each of its folds' tokens (:class:`VectorizedSVM`), so that a fold's matrix is built,
    fitted and freed in turn. Given the whole matrix, as it was when the vectorizer was a
    step of its own, the calibration held it in float32 while it fitted each fold on a
    float64 copy of its rows, which liblinear copied again into its own nodes. On ten
    perturbed copies of the corpus (53,434 messages), with the tokens kept as numbers
    (:mod:`~partnercheck.learning.kept_tokens`), training peaked at 687-698 MB against
    788-800 MB, with the same model byte for byte; the price is building each fold's matrix
    again, about 14% more CPU in a paired run there (216 against 190 s), none on the corpus
    itself. What is left at the peak is the final fit: the float32 matrix and liblinear's
    copy of it (:class:`SinglePrecisionSVC`). The vectorizer is fitted in a child process
    (:func:`~partnercheck.learning.lean_memory.apart`), whose counting would leave 38 MB of
    heap behind here on those copies.
    """

    def __init__(self, c: float = C, seed: int = 0, cv=5) -> None:
        self.c = c
        self.seed = seed
        self.cv = cv

    def fit(self, docs: list[Extracted], y, sample_weight=None):
        self.vectorizer_ = apart(MailVectorizer().fit, docs)
        svm = VectorizedSVM(FrozenEstimator(self.vectorizer_),
                            SinglePrecisionSVC(C=self.c, class_weight="balanced", random_state=self.seed))
        self.calibrated_ = CalibratedClassifierCV(svm, method="sigmoid", cv=self.cv, ensemble=False)
        self.calibrated_.fit(docs, y, sample_weight=sample_weight)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, docs: list[Extracted]) -> np.ndarray:
        return self.calibrated_.predict_proba(docs)

    def predict(self, docs: list[Extracted]) -> np.ndarray:
        return self.calibrated_.predict(docs)


class SinglePrecisionSVC(LinearSVC):
    """:class:`~sklearn.svm.LinearSVC` fitted on a float32 matrix as it is: its ``fit`` would
    first copy the matrix to float64, 12 bytes a non-zero against 8, while liblinear reads
    float32 values into its own nodes as doubles itself, so the values it learns from and
    the weights it learns are the same to the bit (a test checks it;
    :mod:`~partnercheck.learning.lean_memory` has what it saved). It calls the two private
    helpers of scikit-learn's that ``LinearSVC.fit`` calls, ``_fit_liblinear`` and
    ``_validate_dual_parameter``, with the same arguments. Crammer-Singer, which
    ``LinearSVC.fit`` reshapes after them for two classes, is refused."""

    @_fit_context(prefer_skip_nested_validation=True)  # checks the parameters, as LinearSVC.fit does
    def fit(self, X, y, sample_weight=None):
        if self.multi_class == "crammer_singer":
            raise ValueError("SinglePrecisionSVC fits one-vs-rest only")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=(np.float64, np.float32),
                             order="C", accept_large_sparse=False)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        dual = _validate_dual_parameter(self.dual, self.loss, self.penalty, self.multi_class, X)
        self.coef_, self.intercept_, n_iter = _fit_liblinear(
            X, y, C=self.C, fit_intercept=self.fit_intercept, intercept_scaling=self.intercept_scaling,
            class_weight=self.class_weight, penalty=self.penalty, dual=dual, verbose=self.verbose,
            max_iter=self.max_iter, tol=self.tol, random_state=self.random_state,
            multi_class=self.multi_class, loss=self.loss, sample_weight=sample_weight)
        self.n_iter_ = n_iter.max().item()
        return self


class VectorizedSVM(ClassifierMixin, BaseEstimator):
    """A linear SVM on the float32 matrix a fitted vectorizer makes of tokens
    (:class:`SinglePrecisionSVC`)."""

    def __init__(self, vectorizer: FrozenEstimator, svm: LinearSVC) -> None:
        self.vectorizer = vectorizer
        self.svm = svm

    def fit(self, docs: list[Extracted], y, sample_weight=None):
        matrix = self.vectorizer.transform(docs)
        if isinstance(docs, LetGo):
            docs.clear()
            gc.collect()
        self.svm_ = clone(self.svm).fit(matrix, y, sample_weight=sample_weight)
        self.classes_ = self.svm_.classes_
        return self

    def decision_function(self, docs: list[Extracted]) -> np.ndarray:
        return self.svm_.decision_function(self.vectorizer.transform(docs))

    def predict(self, docs: list[Extracted]) -> np.ndarray:
        return self.svm_.predict(self.vectorizer.transform(docs))


def build_pipeline(c: float = C, seed: int = 0) -> Pipeline:
    """An unfitted pipeline with the default settings (see the module docstring)."""
    return Pipeline([("extract", MailTokenizer()), ("classify", CalibratedSVM(c=c, seed=seed))])
