"""Training reads its mail and cross-validates in child processes: the same result, the same
errors."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import DATA

from partnercheck.errors import PartnercheckError
from partnercheck.learning import lean_memory, pipeline, training
from partnercheck.learning.training import TrainingError
from partnercheck.reading.sources import Source
from partnercheck.understanding import features


@pytest.fixture(autouse=True)
def forking(monkeypatch):
    """Children are forked only from a process with one thread; a test before may have left
    one of its threads running in this one."""
    monkeypatch.setattr(lean_memory.threading, "active_count", lambda: 1)


@pytest.fixture
def corpus(tmp_path):
    for label in ("partnership", "pitch", "other"):
        (tmp_path / label).mkdir()
        for path in sorted((DATA / label).glob("*.eml"))[:12]:
            (tmp_path / label / path.name).write_bytes(path.read_bytes())
    return tmp_path


def _plain(prepared):
    return (prepared.keys, prepared.labels, [(doc.tokens, [hit.rule for hit in doc.hits])
                                              for doc in prepared.docs],
            prepared.near_copies.tolist(), prepared.duplicates)


def test_mail_read_in_a_child_is_prepared_as_here_and_its_stems_come_back(corpus, monkeypatch):
    monkeypatch.setattr(features, "_STEMS", {})
    here = training.prepare(Source(str(corpus)))
    stems = features.known_stems()
    monkeypatch.setattr(features, "_STEMS", {})
    apart = lean_memory.prepared_apart(training.prepare, Source(str(corpus)))
    assert _plain(apart) == _plain(here)
    assert features.known_stems() == stems and len(stems) > 500


def test_a_model_trained_in_child_processes_is_the_same_byte_for_byte(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_STEMS", {})  # a model keeps the stems of its words met so far
    model, _, _ = training.train(Source(str(corpus)))
    model.save(str(tmp_path / "apart.model"))
    monkeypatch.setattr(training, "prepared_apart", lambda prepare, records: prepare(records))
    for module in (training, pipeline):
        monkeypatch.setattr(module, "apart", lambda function, *args, **options: function(*args, **options))
    monkeypatch.setattr(features, "_STEMS", {})
    model, _, _ = training.train(Source(str(corpus)))
    model.save(str(tmp_path / "here.model"))
    assert (tmp_path / "apart.model").read_bytes() == (tmp_path / "here.model").read_bytes()


def test_training_that_lets_the_tokens_go_before_its_last_fit_makes_the_same_model(corpus, tmp_path, monkeypatch):
    """`partnercheck train` lets the messages' tokens go once the last fit has its matrix;
    train.py keeps them to score other splits of the same messages."""
    saved = {}
    for keep in (True, False):
        monkeypatch.setattr(features, "_STEMS", {})
        model, _, prepared = training.train(Source(str(corpus)), keep_tokens=keep)
        model.save(str(tmp_path / f"{keep}.model"))
        saved[keep] = (tmp_path / f"{keep}.model").read_bytes()
        assert len(prepared.docs) == (len(prepared.keys) if keep else 0)
    assert saved[True] == saved[False]


def test_tokens_kept_as_numbers_outgrow_two_bytes_and_stay_the_same():
    from partnercheck.learning.kept_tokens import TokenStore, numbered
    from partnercheck.understanding.features import Extracted
    from partnercheck.understanding.vectors import TermTable

    store = TokenStore()
    docs = [Extracted([f"w{i}", f"w{i + 1}", "common"], []) for i in range(0, 70_000, 2)]
    kept = [store.keep(doc) for doc in docs]
    assert store.ids.typecode == "i" and len(store.words) > 1 << 16
    assert [doc.tokens for doc in kept[::997]] == [doc.tokens for doc in docs[::997]]
    table = TermTable({"w69998": 0, "common": 1, "w1": 2})
    ids, lengths = numbered(kept, table)
    assert lengths.tolist() == [3] * len(docs)
    assert ids[:3].tolist() == [table.unknown, 2, 1] and ids[-3:].tolist() == [0, table.unknown, 1]


def test_what_stops_training_in_the_child_is_raised_here_as_it_was_said(corpus):
    (corpus / "partnership" / "empty.eml").write_bytes(b"Subject: \n\n")
    with pytest.raises(TrainingError, match=r"1 message\(s\) have no text, e.g. .*empty.eml; remove them"):
        lean_memory.prepared_apart(training.prepare, Source(str(corpus)))


def test_a_child_that_dies_reading_is_one_line_and_leaves_no_process(corpus, monkeypatch):
    parent, forked, fork = os.getpid(), [], os.fork

    def recorded_fork():
        forked.append(fork())
        return forked[-1]

    def killed(records):
        assert os.getpid() != parent, "run in this process, not in a child"
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(os, "fork", recorded_fork)
    with pytest.raises(PartnercheckError, match="^training stopped: its process was killed by signal 9$"):
        lean_memory.prepared_apart(killed, Source(str(corpus)))
    assert forked and forked[0] != 0
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(forked[0], os.WNOHANG)


@pytest.mark.parametrize("rows", [40, 400])  # more columns than rows (liblinear's dual) and fewer (primal)
def test_the_svm_fitted_on_float32_learns_what_linearsvc_learns_from_the_float64_copy(rows):
    """Training hands liblinear its float32 matrix without the float64 copy LinearSVC makes:
    the weights must not move by a bit."""
    import numpy as np
    from scipy import sparse
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(7)
    matrix = sparse.random(rows, 120, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    y = rng.choice(["other", "partnership", "pitch"], size=rows)
    options = dict(C=pipeline.C, class_weight="balanced", random_state=3)
    weights = rng.uniform(0.5, 2.0, size=rows)  # as a personal model weighs corrections
    single = pipeline.SinglePrecisionSVC(**options).fit(matrix, y, sample_weight=weights)
    double = LinearSVC(**options).fit(matrix.astype(np.float64), y, sample_weight=weights)
    assert single.coef_.tobytes() == double.coef_.tobytes()
    assert single.intercept_.tobytes() == double.intercept_.tobytes()
    assert single.n_iter_ == double.n_iter_ and list(single.classes_) == list(double.classes_)
    assert single.decision_function(matrix).tobytes() == double.decision_function(matrix).tobytes()


def test_prepared_messages_share_their_labels_and_each_set_of_rules_fired(corpus):
    """A million messages are three label strings and a few hundred tuples of hits, not a
    million of each: the peak of training on large mailboxes depends on it."""
    prepared = training.prepare(Source(str(corpus)))
    assert len({id(label) for label in prepared.labels}) == len(set(prepared.labels)) == 3
    fired = [doc.hits for doc in prepared.docs if doc.hits]
    assert fired and len({id(hits) for hits in fired}) == len({tuple(h.id for h in hits) for hits in fired})
    rules, records = training.builtin_rules(), {record.key: record for record in Source(str(corpus))}
    for key, doc in zip(prepared.keys, prepared.docs):
        assert [hit.id for hit in doc.hits] == [hit.id for hit in features.extract(records[key], rules).hits]
