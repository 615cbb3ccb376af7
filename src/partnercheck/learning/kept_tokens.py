"""What training keeps of each message while it cross-validates: tokens as numbers.

Training reads every message once and then fits the vectorizer and the SVM many times
(five folds, each calibrated on five more, and the final fit). On ten perturbed copies of
the corpus (53,434 messages, 8.1 million tokens), the process held 342 MB once every
message was read with its tokens kept as lists of strings, and 288 MB with them as numbers
in one array (33 MB of it), each distinct token stored once. Fits count terms
(:func:`counted_terms`) and look tokens up (:func:`numbered`) as numbers too, so that
building each fold's matrix again, as the calibration does (``CalibratedSVM`` in
:mod:`~partnercheck.learning.pipeline`), costs no more CPU on the corpus than one matrix
of strings did. A :class:`KeptDoc` otherwise reads like an
:class:`~partnercheck.understanding.features.Extracted`: its ``tokens`` are made again,
as strings shared with the store, when something asks for them.
"""

from __future__ import annotations

from array import array
from itertools import repeat

import numpy as np

from ..understanding.features import Extracted
from ..understanding.rules import Rule, RuleHit
from ..understanding.vectors import TermTable

#: Messages counted at once by :func:`counted_terms`: its arrays hold a few numbers per token of a chunk.
CHUNK = 4096


#: numpy's name for each array typecode :class:`TokenStore` uses.
_DTYPES = {"H": np.uint16, "i": np.int32}


class TokenStore:
    """The tokens of many messages: each distinct token numbered once (``words``), each
    message's tokens as a run of those numbers in one array (``ids``): two bytes a token
    while there are at most 65,536 distinct tokens, as on ten perturbed copies of the corpus
    (35,112 for 8.9 million tokens, 18 MB saved), four bytes after that.

    Rule hits are kept as what training reads of them, the rule, and each distinct set of
    rules fired is one tuple that all its messages share (``hit_sets``): the words that
    fired a rule are shown in explanations, which training makes none of."""

    __slots__ = ("words", "numbers", "ids", "hit_sets", "_translated")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.numbers: dict[str, int] = {}
        self.ids = array("H")
        self.hit_sets: dict[tuple[Rule, ...], tuple[RuleHit, ...]] = {}
        self._translated: tuple[TermTable, np.ndarray] | None = None

    def keep(self, doc: Extracted) -> "KeptDoc":
        """``doc`` as a :class:`KeptDoc`: its tokens numbered, its rules fired kept."""
        numbers, words = self.numbers, self.words
        new = [token for token in dict.fromkeys(doc.tokens) if token not in numbers]
        numbers.update(zip(new, range(len(words), len(words) + len(new))))
        words.extend(new)
        if len(words) > 1 << 16 and self.ids.typecode == "H":
            self.ids = array("i", self.ids)
        start = len(self.ids)
        self.ids.extend(map(numbers.__getitem__, doc.tokens))
        fired = tuple(hit.rule for hit in doc.hits)
        hits = self.hit_sets.get(fired)
        if hits is None:
            hits = self.hit_sets[fired] = tuple(RuleHit(hit.rule, ()) for hit in doc.hits)
        return KeptDoc(self, start, len(self.ids), hits)


class KeptDoc:
    """One message's tokens in a :class:`TokenStore`, and its rule hits."""

    __slots__ = ("store", "start", "end", "hits")

    def __init__(self, store: TokenStore, start: int, end: int, hits: tuple) -> None:
        self.store = store
        self.start = start
        self.end = end
        self.hits = hits

    @property
    def tokens(self) -> list[str]:
        return list(map(self.store.words.__getitem__, self.store.ids[self.start:self.end]))


def _of_one_store(docs) -> TokenStore | None:
    store = getattr(docs[0], "store", None) if len(docs) else None
    if store is None or not all(type(doc) is KeptDoc and doc.store is store for doc in docs):
        return None
    return store


def _gathered(store: TokenStore, docs) -> tuple[np.ndarray, np.ndarray]:
    """The tokens of ``docs`` as store numbers, in order, and each one's count of them."""
    everything = np.frombuffer(store.ids, dtype=_DTYPES[store.ids.typecode])
    try:
        lengths = np.fromiter((doc.end - doc.start for doc in docs), dtype=np.int64, count=len(docs))
        return np.concatenate([everything[doc.start:doc.end] for doc in docs]).astype(np.int64), lengths
    finally:
        del everything  # the array cannot grow while a view of it lives, even in a traceback


def numbered(docs, table: TermTable) -> tuple[np.ndarray, np.ndarray] | None:
    """Every token's id in ``table`` and each message's count of tokens, as
    :func:`~partnercheck.understanding.vectors.vectorize` takes them, looked up as numbers;
    None unless all ``docs`` are :class:`KeptDoc` of one store."""
    store = _of_one_store(docs)
    if store is None:
        return None
    if store._translated is None or store._translated[0] is not table or len(store._translated[1]) != len(store.words):
        ids = np.fromiter(map(table.index.get, store.words, repeat(table.unknown)), dtype=np.int64,
                          count=len(store.words))
        store._translated = (table, ids)
    ids, lengths = _gathered(store, docs)
    return store._translated[1][ids], lengths


def counted_terms(docs, least: int) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """:func:`~partnercheck.understanding.vectors.counted_terms` counted as numbers (tokens
    by store number, word pairs by two of them), with strings made only for the terms in at
    least ``least`` messages; None unless all ``docs`` are :class:`KeptDoc` of one store."""
    store = _of_one_store(docs)
    if store is None:
        return None
    width = len(store.words)
    is_word = np.fromiter((":" not in word for word in store.words), dtype=bool, count=width)
    token_df = np.zeros(width, dtype=np.int64)
    token_tf = np.zeros(width, dtype=np.int64)
    pair_keys, pair_df, pair_tf = [], [], []
    for start in range(0, len(docs), CHUNK):
        ids, lengths = _gathered(store, docs[start:start + CHUNK])
        rows = np.repeat(np.arange(len(lengths)), lengths)
        token_tf += np.bincount(ids, minlength=width)
        token_df += np.bincount(np.unique(rows * width + ids) % width, minlength=width)
        # A message's body words are contiguous among its tokens (see TermTable): two
        # adjacent words of one message are a pair.
        adjacent = is_word[ids[:-1]] & is_word[ids[1:]] & (rows[:-1] == rows[1:])
        keys = ids[:-1][adjacent] * width + ids[1:][adjacent]
        pair_rows = rows[:-1][adjacent]
        unique, tf = np.unique(keys, return_counts=True)
        order = np.lexsort((keys, pair_rows))  # by message, then pair: each message's pairs counted once
        keys, pair_rows = keys[order], pair_rows[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]) | (pair_rows[1:] != pair_rows[:-1])
        df = np.bincount(np.searchsorted(unique, keys[first]), minlength=len(unique))
        pair_keys.append(unique)
        pair_tf.append(tf)
        pair_df.append(df)
    keys, where = np.unique(np.concatenate(pair_keys or [np.zeros(0, np.int64)]), return_inverse=True)
    df = np.bincount(where, weights=np.concatenate(pair_df or [np.zeros(0)]), minlength=len(keys)).astype(np.int64)
    tf = np.bincount(where, weights=np.concatenate(pair_tf or [np.zeros(0)]), minlength=len(keys)).astype(np.int64)
    tokens = np.flatnonzero((token_df >= least) & (token_df > 0))  # the store may hold words these docs lack
    pairs = np.flatnonzero(df >= least)
    words = store.words
    names = [words[i] for i in tokens.tolist()]
    names += [words[key // width] + " " + words[key % width] for key in keys[pairs].tolist()]
    all_df = np.concatenate([token_df[tokens], df[pairs]])
    all_tf = np.concatenate([token_tf[tokens], tf[pairs]])
    order = sorted(range(len(names)), key=names.__getitem__)
    return [names[i] for i in order], all_df[order], all_tf[order]
