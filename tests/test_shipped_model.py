"""The shipped model: built from the committed data, as good as promised on held-out mail,
and reproducible."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time

import numpy as np
from conftest import DATA, ROOT

from partnercheck.deciding.classify import classify
from partnercheck.deciding.verdict import Thresholds
from partnercheck.learning.evaluate import score_model
from partnercheck.reading.sources import Source


def _train_module():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_model_matches_committed_data(shipped_model):
    fingerprint = _train_module().data_fingerprint()
    assert shipped_model.info["data_fingerprint"] == fingerprint, (
        "data/ changed since models/ was built: run `python train.py` and commit both"
    )


def test_committed_model_matches_the_shipped_rules(shipped_model):
    assert not shipped_model.rules_changed, (
        "rules.toml changed since models/ was built: run `python train.py` and commit both"
    )


def test_heldout_quality(shipped_model):
    held = _train_module().heldout_keys()
    records = [r for r in Source(str(DATA)) if r.key in held]
    scores = score_model(shipped_model, records)
    assert scores.total == len(held)
    assert scores.macro_f1() >= 0.95
    # 3 of 236 since the held-out split took in round 4's issue posts and bulk affiliate mail
    # (0 of 141 before); cut-offs are set on out-of-fold predictions at 0.5%, never here.
    assert scores.partnership_as_pitch() <= 0.015


def test_classifying_needs_no_scikit_learn_and_matches_the_pipeline(tmp_path):
    """A saved and loaded model gives the probabilities of the pipeline it was made from."""
    from partnercheck.deciding.model import load_model
    from partnercheck.learning import training

    train = [r for label in ("partnership", "pitch", "other") for r in list(Source(str(DATA / label), label=label))[:30]]
    trained, _, _ = training.train(train, seed=0)
    trained.save(str(tmp_path / "m.model"))
    loaded = load_model(str(tmp_path / "m.model"))
    records = list(Source(str(DATA / "partnership")))[:40] + list(Source(str(DATA / "pitch")))[:40]
    verdicts = classify(records, loaded)
    ours = np.array([[v.scores[label] for label in loaded.labels] for v in verdicts])
    theirs = trained.pipeline.predict_proba(records)
    assert np.abs(ours - theirs).max() < 1e-5


def test_training_is_deterministic(tmp_path):
    from partnercheck.learning import training

    records = [r for label in ("partnership", "pitch", "other") for r in list(Source(str(DATA / label), label=label))[:30]]
    first, _, _ = training.train(records, seed=7)
    second, _, _ = training.train(records, seed=7)
    probe = list(Source(str(DATA / "other")))[30:60]
    assert [v.scores for v in classify(probe, first)] == [v.scores for v in classify(probe, second)]
    assert first.thresholds == second.thresholds
    first.save(str(tmp_path / "first.model"))
    time.sleep(2)  # a zip member's date has a two-second grain: a clock in the file would show
    second.save(str(tmp_path / "second.model"))
    assert (tmp_path / "first.model").read_bytes() == (tmp_path / "second.model").read_bytes()


def test_training_writes_the_same_file_in_another_process(tmp_path):
    """String hashing differs from one Python process to the next: nothing that follows a
    set's order may reach the model file (it once did through the stems it keeps)."""
    import subprocess

    code = ("import sys; from partnercheck.learning import training; from partnercheck.reading.sources import Source;"
            f"records = [r for label in ('partnership', 'pitch', 'other') for r in list(Source({str(DATA)!r} + '/' + label,"
            " label=label))[:30]];"
            "training.train(records, seed=7)[0].save(sys.argv[1])")
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{hash_seed}.model")], env=env, check=True)
    assert (tmp_path / "1.model").read_bytes() == (tmp_path / "2.model").read_bytes()


def test_cold_classification_imports_no_scikit_learn(tmp_path):
    import subprocess

    code = ("import sys; from partnercheck.deciding.model import load_model; from partnercheck.reading.mail import parse_message;"
            "from partnercheck.deciding.classify import classify_one;"
            f"m = load_model({str(ROOT / 'models' / 'partnercheck.model')!r});"
            f"classify_one(parse_message(open({str(DATA / 'pitch' / 'b1-004.eml')!r}, 'rb').read()), m);"
            "print('sklearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_cross_validation_keeps_near_copies_of_a_message_together():
    """A campaign's copies (a name or a few words changed) are one near-duplicate group, so
    that no fold is tested on a copy of what it trained on; different messages are not grouped."""
    from partnercheck.learning import training

    records = [r for label in ("partnership", "pitch", "other")
               for r in list(Source(str(DATA / label), label=label))[:12]]
    original = records[15]
    for name in ("Dana", "Priya", "Tomasz"):
        words = original.body.split(" ")
        words[len(words) // 2] = name
        records.append(dataclasses.replace(original, key=f"copy-{name}", body=" ".join(words)))
    # A shorter message (95 words) with three words changed: most of its 5-grams differ, and
    # 6 bands of 4 hashes did not join it to its original.
    short = records[20]
    words = short.body.split(" ")
    for at in (len(words) // 5, len(words) // 2, 4 * len(words) // 5):
        words[at] = "Tomasz"
    records.append(dataclasses.replace(short, key="copy-short", body=" ".join(words)))
    prepared = training.prepare(records)
    groups = prepared.near_copies
    position = prepared.keys.index(original.key)
    copies = [groups[prepared.keys.index(f"copy-{name}")] for name in ("Dana", "Priya", "Tomasz")]
    assert copies == [groups[position]] * 3
    assert groups[prepared.keys.index("copy-short")] == groups[prepared.keys.index(short.key)]
    assert len(set(groups)) == len(groups) - 4
    # The calibration inside the fit keeps them together too.
    pipeline = training.fit(prepared, Thresholds()).pipeline
    folds = pipeline.named_steps["classify"].cv
    y = np.array(prepared.labels)
    for train, test in folds.split(None, y):
        assert set(np.asarray(groups)[train]).isdisjoint(np.asarray(groups)[test])


def test_folds_keep_groups_whole_and_labels_balanced():
    from partnercheck.learning.near_duplicates import NearCopyFolds

    rng = np.random.default_rng(3)
    groups = np.concatenate([np.arange(600), np.repeat(np.arange(600, 640), 10)])  # 600 alone, 40 of 10
    y = np.concatenate([rng.integers(0, 3, 600), np.repeat(rng.integers(0, 3, 40), 10)])
    splits = NearCopyFolds(groups, 5, seed=0).split(None, y)
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == list(range(len(y)))
    for train, test in splits:
        assert set(groups[train]).isdisjoint(groups[test])
    per_fold = np.array([np.bincount(y[test], minlength=3) for _, test in splits])
    assert (per_fold.max(axis=0) - per_fold.min(axis=0)).max() <= 10  # at most one group of ten apart
    assert NearCopyFolds(groups, 5, seed=0).split(None, y)[0][1].tolist() == splits[0][1].tolist()


def test_a_label_written_by_two_campaigns_still_trains():
    """Twelve partnerships that are copies of two messages: grouped calibration folds would
    leave some fold without a partnership, so the calibration takes plain folds there and
    training goes through instead of failing."""
    from partnercheck.learning import training

    records = [r for label in ("pitch", "other") for r in list(Source(str(DATA / label), label=label))[:12]]
    for original in list(Source(str(DATA / "partnership"), label="partnership"))[:2]:
        for name in ("Dana", "Priya", "Tomasz", "Ines", "Kwame", "Lotte"):
            words = original.body.split(" ")
            words[len(words) // 2] = name
            records.append(dataclasses.replace(original, key=f"{original.key}-{name}", body=" ".join(words)))
    model, scores, prepared = training.train(records)
    assert prepared.labels.count("partnership") == 12
    assert set(scores.truth) == {"partnership", "pitch", "other"}
