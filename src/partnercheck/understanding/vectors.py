"""Tokens and rule hits to the feature matrix, shared by training and classifying.

The terms are a message's tokens and its word pairs: each two adjacent words of the body
("revenu share", "you pay", "per MONEY"). Who pays whom is said in phrases more than in
words: "share" is in proposals and price lists alike, "revenue share" and "we pay" are
not. Measured on corpus round 6 against the same model without them: real-mail macro-F1
0.872 to 0.876 and other mail labelled pitch 16.9% to 10.8% (``partnercheck evaluate
../shared/realworld``), held-out 0.956 to 0.960, leave-one-style-out 0.931 to 0.936; on
round 5 0.872 to 0.881. They cost a larger vocabulary (capped at 60,000 terms) and about
twice the training time. Subject words, links and tagged tokens are not paired.

TF-IDF as scikit-learn's ``TfidfVectorizer(sublinear_tf=True)`` computes it over those
terms (a test checks they agree), about twice as fast: one C-level ``map`` looks every
token up, numpy finds the pairs (:class:`PairTable`), and scipy sums, weighs and
normalises the counts of a whole batch at once; then one column per rule, holding the
rule's weight when it fired.
"""

from __future__ import annotations

from itertools import islice, repeat

import numpy as np
from scipy import sparse


def word_pairs(tokens: list[str]) -> list[str]:
    """Each two adjacent body words (untagged tokens, placeholders included), joined by a space."""
    words = body_words(tokens)
    return [first + " " + second for first, second in zip(words, islice(words, 1, None))]


def body_words(tokens: list[str]) -> list[str]:
    """The untagged tokens: words of the body and placeholders, in order."""
    return [token for token in tokens if ":" not in token]


def terms(doc) -> list[str]:
    """What TF-IDF counts for one :class:`~partnercheck.understanding.features.Extracted`:
    its tokens, then its word pairs."""
    return doc.tokens + word_pairs(doc.tokens)


class PairTable:
    """A vocabulary's word pairs as numbers, so that a batch's pairs are found by numpy
    rather than joined and looked up one string at a time: each word of a pair has an id,
    each pair the key ``first * n + second``, kept sorted beside its column. :func:`vectorize`
    took 65-67 µs a message this way against 76-84 with joined strings (3,000 corpus
    messages in batches of 100, the same matrices bit for bit)."""

    __slots__ = ("word_ids", "n", "keys", "columns")

    def __init__(self, vocabulary: dict[str, int]) -> None:
        # C-level passes only (about 19 ms for the shipped model's pairs): a cold filter pays it.
        terms = [term for term in vocabulary if " " in term]
        halves = " ".join(terms).split(" ")  # first, second, first, second, ...
        self.word_ids = dict(zip(dict.fromkeys(halves), range(len(halves))))
        self.n = len(self.word_ids)
        ids = np.fromiter(map(self.word_ids.__getitem__, halves), dtype=np.int64, count=len(halves))
        keys = ids[0::2] * self.n + ids[1::2]
        order = np.argsort(keys)
        self.keys = keys[order]
        self.columns = np.fromiter(map(vocabulary.__getitem__, terms), dtype=np.int64, count=len(terms))[order]

    def find(self, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every vocabulary pair among a batch's body words, given each
        word's id (-1 for a word in no pair) and row."""
        first, second = ids[:-1], ids[1:]
        adjacent = (rows[:-1] == rows[1:]) & (first >= 0) & (second >= 0)
        keys = first[adjacent] * self.n + second[adjacent]
        if not len(self.keys) or not len(keys):
            return rows[:0], self.columns[:0]
        positions = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[positions] == keys
        return rows[:-1][adjacent][found], self.columns[positions[found]]


def vectorize(docs, vocabulary: dict[str, int], idf: np.ndarray, rule_index: dict[str, int], pairs: PairTable):
    """A CSR matrix: TF-IDF columns in ``vocabulary`` order, then one column per rule.
    ``pairs`` is the :class:`PairTable` of ``vocabulary``."""
    size = len(vocabulary)
    lookup, word_id = vocabulary.get, pairs.word_ids.get
    unknown, no_id = repeat(size), repeat(-1)  # tokens outside the vocabulary: dropped below
    columns: list[int] = []
    ids: list[int] = []
    tokens_per_row, words_per_row = [], []
    rows, cols, weights = [], [], []
    for row, doc in enumerate(docs):
        tokens = doc.tokens
        columns.extend(map(lookup, tokens, unknown))
        tokens_per_row.append(len(tokens))
        before = len(ids)
        ids.extend(map(word_id, body_words(tokens), no_id))
        words_per_row.append(len(ids) - before)
        for hit in doc.hits:
            col = rule_index.get(hit.id)
            if col is not None:
                rows.append(row)
                cols.append(col)
                weights.append(hit.rule.weight)
    row_numbers = np.arange(len(docs))
    pair_rows, pair_columns = pairs.find(np.asarray(ids, dtype=np.int64), np.repeat(row_numbers, words_per_row))
    term_rows = np.concatenate([np.repeat(row_numbers, tokens_per_row), pair_rows])
    term_columns = np.concatenate([np.asarray(columns, dtype=np.int64), pair_columns])
    known = term_columns < size
    # COO to CSR sums the repeats of a term and sorts each row's columns.
    counts = sparse.csr_matrix(
        (np.ones(int(known.sum()), dtype=np.float32), (term_rows[known], term_columns[known])),
        shape=(len(docs), size),
    )
    np.log(counts.data, out=counts.data)
    counts.data += 1
    counts.data *= idf[counts.indices]
    squares = counts.multiply(counts).sum(axis=1).A1
    norms = np.sqrt(squares, dtype=np.float32)
    norms[norms == 0] = 1
    counts = sparse.diags(1 / norms).dot(counts).astype(np.float32)
    rules = sparse.csr_matrix((weights, (rows, cols)), shape=(len(docs), len(rule_index)), dtype=np.float32)
    return sparse.hstack([counts, rules], format="csr")
