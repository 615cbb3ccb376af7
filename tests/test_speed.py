"""Speed work must not change what partnercheck decides: each faster path is checked
against the plain one it replaced."""

from __future__ import annotations

import numpy as np

from partnercheck.deciding.verdict import Thresholds, decide
from partnercheck.labels import LABELS
from partnercheck.learning import training
from partnercheck.learning.evaluate import Scores


def _choose_thresholds_per_message(probabilities, truth):
    """choose_thresholds the plain way: decide() per message and grid point."""
    labels = sorted(LABELS)
    rows = [dict(zip(labels, map(float, p))) for p in probabilities]
    best = None
    for min_confidence in np.round(np.arange(1 - training.UNSURE_COST, 0.81, 0.02), 2):
        for min_margin in np.round(np.arange(0.0, 0.31, 0.05), 2):
            for guard in np.round(np.arange(0.06, 0.41, 0.02), 2):
                thresholds = Thresholds(float(min_confidence), float(guard), float(min_margin))
                verdicts = [decide(r, [], thresholds)[0] for r in rows]
                scores = Scores(list(truth), verdicts)
                if scores.partnership_as_pitch() >= training.MAX_PARTNERSHIP_AS_PITCH:
                    continue
                wrong = sum(v not in (t, "unsure") for t, v in zip(truth, verdicts))
                unsure = verdicts.count("unsure")
                key = (wrong + training.UNSURE_COST * unsure, unsure, min_confidence, min_margin, guard)
                if best is None or key < best[0]:
                    best = (key, thresholds, verdicts)
    if best is None:
        thresholds = Thresholds(0.8, 0.06, 0.3)
        return thresholds, [decide(r, [], thresholds)[0] for r in rows]
    return best[1], best[2]


def test_vectorised_threshold_search_chooses_what_decide_per_message_chose():
    rng = np.random.default_rng(0)
    labels = sorted(LABELS)
    for trial in range(6):
        n = int(rng.integers(20, 200))
        truth = [labels[i] for i in rng.integers(0, 3, n)]
        p = rng.dirichlet(np.ones(3) * rng.uniform(0.2, 3), n)
        for i, t in enumerate(truth):  # informative, as a model's scores are
            if rng.random() < 0.7:
                p[i, labels.index(t)] += rng.uniform(0, 2)
        p /= p.sum(axis=1, keepdims=True)
        if trial % 4 == 0:
            p = np.round(p, 1)  # ties between labels
        expected, verdicts = _choose_thresholds_per_message(p, truth)
        chosen, scores = training.choose_thresholds(p, truth)
        assert chosen == expected and scores.verdicts == verdicts
