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
token up, numpy finds the pairs (:class:`TermTable`), and numpy counts, weighs and
normalises the terms of a whole batch at once, straight into CSR form; then one column per
rule, holding the rule's weight when it fired. Built through scipy's COO format and a
product with the norms, the matrix cost 66-67 µs a message against 52-55 µs now (3,000
corpus messages in batches of 100), with the same values bit for bit; the product left
each row's columns out of order, so the scores then differed in the ninth decimal and
clues of equal weight could come in another order (90 of 20,000 benchmark rows), never a
verdict or a rounded score.
"""

from __future__ import annotations

from collections import Counter
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


def counted_terms(docs, least: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The :func:`terms` found in at least ``least`` of ``docs``, sorted, with the number of
    messages each is in and its number of occurrences in all of them."""
    doc_freq, term_freq = Counter(), Counter()
    for doc in docs:
        found = terms(doc)
        term_freq.update(found)
        doc_freq.update(set(found))
    names = sorted(term for term, count in doc_freq.items() if count >= least)
    return (names, np.fromiter(map(doc_freq.__getitem__, names), dtype=np.int64, count=len(names)),
            np.fromiter(map(term_freq.__getitem__, names), dtype=np.int64, count=len(names)))


class TermTable:
    """A vocabulary as numbers, so that :func:`vectorize` looks each token up once and numpy
    finds the word pairs: every term and every word of a pair has an id (``index``), each id
    its column (``column_of``, the vocabulary's size for a word that is no term) and its
    number as a pair word (``pair_word_of``, -1 for none); each pair has the key
    ``first * n + second``, kept sorted beside its column. Tagged tokens are never pair
    words and a message's body words are contiguous among its tokens, so two adjacent
    tokens that are both pair words are two adjacent body words.

    Measured on 3,000 corpus messages in batches of 100: pairs joined as strings and looked
    up made :func:`vectorize` take 76-84 µs a message; numbered pairs with two look-ups per
    word (one for the column, one for the pair word) 65-67 µs; with the one look-up here
    57-68 µs against 69-90 for two, alternating in one process. The matrices are the same
    bit for bit, and so is every verdict and clue (``bench/same_output.py``).
    """

    __slots__ = ("size", "index", "unknown", "column_of", "pair_word_of", "n", "keys", "columns")

    def __init__(self, vocabulary: dict[str, int]) -> None:
        # C-level passes only (25-34 ms for the shipped model): a cold filter pays it.
        self.size = size = len(vocabulary)
        terms = [term for term in vocabulary if " " in term]
        halves = " ".join(terms).split(" ")  # first, second, first, second, ...
        pair_words = dict(zip(dict.fromkeys(halves), range(len(halves))))
        self.n = len(pair_words)
        ids = np.fromiter(map(pair_words.__getitem__, halves), dtype=np.int64, count=len(halves))
        keys = ids[0::2] * self.n + ids[1::2]
        order = np.argsort(keys)
        self.keys = keys[order]
        self.columns = np.fromiter(map(vocabulary.__getitem__, terms), dtype=np.int64, count=len(terms))[order]
        self.index = dict(vocabulary)  # a term's id is its column
        words_only = [word for word in pair_words if word not in self.index]
        self.index.update(zip(words_only, range(size, size + len(words_only))))
        self.unknown = len(self.index)  # the id of every other token: the arrays' last entry
        self.column_of = np.full(self.unknown + 1, size, dtype=np.int64)
        self.column_of[:size] = np.arange(size)
        self.pair_word_of = np.full(self.unknown + 1, -1, dtype=np.int64)
        at = np.fromiter(map(self.index.__getitem__, pair_words), dtype=np.int64, count=self.n)
        self.pair_word_of[at] = np.arange(self.n)

    def pairs(self, ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every vocabulary pair among a batch's tokens, given each
        token's id and row."""
        words = self.pair_word_of[ids]
        first, second = words[:-1], words[1:]
        adjacent = (rows[:-1] == rows[1:]) & (first >= 0) & (second >= 0)
        keys = first[adjacent] * self.n + second[adjacent]
        if not len(self.keys) or not len(keys):
            return rows[:0], self.columns[:0]
        positions = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[positions] == keys
        return rows[:-1][adjacent][found], self.columns[positions[found]]


def vectorize(docs, table: TermTable, idf: np.ndarray, rule_index: dict[str, int], numbered=None):
    """A CSR matrix: TF-IDF columns in the vocabulary's order (``table`` is its
    :class:`TermTable`), then one column per rule. ``numbered``, when the caller has the
    tokens as numbers already, is every token's id in ``table`` and each message's count of
    tokens (:func:`~partnercheck.learning.kept_tokens.numbered`)."""
    size = table.size
    lookup, unknown = table.index.get, repeat(table.unknown)
    ids: list[int] = []
    tokens_per_row = []
    rows, cols, weights = [], [], []
    for row, doc in enumerate(docs):
        if numbered is None:
            tokens = doc.tokens
            ids.extend(map(lookup, tokens, unknown))
            tokens_per_row.append(len(tokens))
        for hit in doc.hits:
            col = rule_index.get(hit.id)
            if col is not None:
                rows.append(row)
                cols.append(col)
                weights.append(hit.rule.weight)
    if numbered is None:
        token_ids = np.asarray(ids, dtype=np.int64)
    else:
        token_ids, tokens_per_row = numbered
    n_rows = len(docs)
    token_rows = np.repeat(np.arange(n_rows), tokens_per_row)
    pair_rows, pair_columns = table.pairs(token_ids, token_rows)
    term_rows = np.concatenate([token_rows, pair_rows])
    term_columns = np.concatenate([table.column_of[token_ids], pair_columns])
    known = term_columns < size  # tokens outside the vocabulary are dropped
    # Each (row, column) as one key: sorted and counted, they are the CSR entries in order.
    width = size + len(rule_index)
    keys, counts = np.unique(term_rows[known] * width + term_columns[known], return_counts=True)
    entry_rows, entry_columns = np.divmod(keys, width)
    data = np.log(counts.astype(np.float32))
    data += 1
    data *= idf[entry_columns]
    # Row norms summed as scipy sums a row (np.add.reduceat), so the values are the same bit for bit.
    per_row = np.bincount(entry_rows, minlength=n_rows)
    starts = np.cumsum(per_row) - per_row
    squares = np.zeros(n_rows, dtype=np.float32)
    filled = per_row > 0
    if filled.any():
        squares[filled] = np.add.reduceat(data * data, starts[filled])
    norms = np.sqrt(squares, dtype=np.float32)
    norms[norms == 0] = 1
    data *= (1 / norms)[entry_rows]
    if rows:  # rule columns come after the vocabulary's: merged in by key, each row stays in column order
        rule_rows = np.asarray(rows, dtype=np.int64)
        rule_columns = size + np.asarray(cols, dtype=np.int64)
        order = np.argsort(np.concatenate([keys, rule_rows * width + rule_columns]), kind="stable")
        data = np.concatenate([data, np.asarray(weights, dtype=np.float32)])[order]
        entry_columns = np.concatenate([entry_columns, rule_columns])[order]
        per_row += np.bincount(rule_rows, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(per_row, out=indptr[1:])
    return sparse.csr_matrix((data, entry_columns.astype(np.int32), indptr), shape=(n_rows, width))
