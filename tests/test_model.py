"""The model file: saving, loading, refusing what it cannot use, and explaining verdicts."""

from __future__ import annotations

import os
import shutil

import joblib
import pytest
from conftest import OTHER_TEXT, PARTNERSHIP_TEXT, PITCH_TEXT, message

from partnercheck.classify import classify_one
from partnercheck.mail import parse_message
from partnercheck.model import FORMAT_VERSION, ModelError, load_model


def test_verdicts_carry_scores_rules_and_clues(shipped_model):
    verdict = classify_one(parse_message(message("Quick question", PITCH_TEXT)), shipped_model)
    assert verdict.label == "pitch"
    assert set(verdict.scores) == {"partnership", "pitch", "other"}
    assert abs(sum(verdict.scores.values()) - 1) < 1e-6
    assert "PRICE_PLANS" in verdict.rule_ids
    assert verdict.clues_for and all(c.weight > 0 for c in verdict.clues_for)
    data = verdict.to_dict()
    assert data["verdict"] == "pitch" and data["rules"][0]["matched"]


@pytest.mark.parametrize("text, label", [(PARTNERSHIP_TEXT, "partnership"), (OTHER_TEXT, "other")])
def test_clear_cases(shipped_model, text, label):
    assert classify_one(parse_message(message("Hello", text)), shipped_model).label == label


def test_save_and_load_round_trip(small_model_path, tmp_path):
    model = load_model(small_model_path)
    copy = tmp_path / "copy.joblib"
    model.save(str(copy))
    record = parse_message(message("x", PITCH_TEXT))
    assert classify_one(record, load_model(str(copy))).scores == classify_one(record, model).scores
    assert [p.name for p in tmp_path.iterdir()] == ["copy.joblib"]  # no temporary file left


def test_missing_model_says_how_to_fix():
    with pytest.raises(ModelError, match="no model at .*python train.py.*partnercheck train"):
        load_model("/nonexistent/model.joblib")


def test_truncated_model_is_refused(small_model_path, tmp_path):
    broken = tmp_path / "broken.joblib"
    data = open(small_model_path, "rb").read()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable partnercheck model"):
        load_model(str(broken))


def test_foreign_file_and_other_format_are_refused(small_model_path, tmp_path):
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"hello": "world"}, foreign)
    with pytest.raises(ModelError, match="not a partnercheck model"):
        load_model(str(foreign))
    old = tmp_path / "old.joblib"
    payload = joblib.load(small_model_path)
    payload["format"] = FORMAT_VERSION + 1
    joblib.dump(payload, old)
    with pytest.raises(ModelError, match=f"format {FORMAT_VERSION + 1}"):
        load_model(str(old))


def test_a_failed_save_leaves_the_old_model(small_model_path, tmp_path, monkeypatch):
    target = tmp_path / "model.joblib"
    shutil.copy(small_model_path, target)
    before = target.read_bytes()
    model = load_model(small_model_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("partnercheck.model.joblib.dump", crash)
    with pytest.raises(OSError):
        model.save(str(target))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.joblib"]
