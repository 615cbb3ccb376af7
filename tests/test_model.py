"""The model file: saving, loading, refusing what it cannot use, and explaining verdicts."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import OTHER_TEXT, PARTNERSHIP_TEXT, PITCH_TEXT, message

from partnercheck.deciding.classify import classify_one
from partnercheck.deciding.model import FORMAT_VERSION, ModelError, load_model
from partnercheck.reading.mail import parse_message


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
    copy = tmp_path / "copy.model"
    model.save(str(copy))
    record = parse_message(message("x", PITCH_TEXT))
    assert classify_one(record, load_model(str(copy))).scores == classify_one(record, model).scores
    assert [p.name for p in tmp_path.iterdir()] == ["copy.model"]  # no temporary file left


def test_missing_model_says_how_to_fix():
    with pytest.raises(ModelError, match="no model at .*python train.py.*partnercheck train"):
        load_model("/nonexistent/model.model")


def test_truncated_model_is_refused(small_model_path, tmp_path):
    broken = tmp_path / "broken.model"
    data = open(small_model_path, "rb").read()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a readable partnercheck model"):
        load_model(str(broken))


def _rewrite(source: str, target, change) -> None:
    """Copy a model archive, passing its model.json through ``change``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "model.json":
                meta = json.loads(data)
                change(meta)
                data = json.dumps(meta).encode()
            new.writestr(item.filename, data)


def test_damaged_insides_are_one_error_naming_the_file(small_model_path, tmp_path):
    """A model file damaged in ways a zip reader does not check first: a deflated member
    whose data is not deflate, JSON nested past Python's recursion limit, plain junk."""
    def member_data_corrupted(path):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("model.json", b"{" * 10)
        data = bytearray(open(path, "rb").read())
        start = data.index(b"model.json") + len(b"model.json")
        data[start:start + 4] = b"\xff\xff\xff\xff"  # the member's first deflate bytes
        open(path, "wb").write(bytes(data))

    corrupt = tmp_path / "corrupt.model"
    member_data_corrupted(corrupt)
    nested = tmp_path / "nested.model"
    with zipfile.ZipFile(nested, "w") as archive:
        archive.writestr("model.json", "[" * 100_000 + "]" * 100_000)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"GIF89a not a model")
    for path, words in ((corrupt, "not a readable"), (nested, "not a readable"), (junk, "not a zip archive")):
        with pytest.raises(ModelError, match=words) as caught:
            load_model(str(path))
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_foreign_file_and_other_format_are_refused(small_model_path, tmp_path):
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("hello.txt", "world")
    with pytest.raises(ModelError, match="not a partnercheck model"):
        load_model(str(foreign))
    old = tmp_path / "old.model"
    _rewrite(small_model_path, old, lambda meta: meta.update(format=FORMAT_VERSION + 1))
    with pytest.raises(ModelError, match=f"format {FORMAT_VERSION + 1}"):
        load_model(str(old))
    other = tmp_path / "other.model"
    _rewrite(small_model_path, other, lambda meta: meta["made_by"].update(partnercheck="9.9.0"))
    with pytest.raises(ModelError, match="made by partnercheck 9.9.0"):
        load_model(str(other))
    damaged = tmp_path / "damaged.model"
    _rewrite(small_model_path, damaged, lambda meta: meta["vocabulary"].pop())
    with pytest.raises(ModelError, match="damaged"):
        load_model(str(damaged))


@pytest.mark.parametrize("value", [float("nan"), 7.0, -0.5])
def test_a_model_whose_cut_offs_make_no_sense_is_refused(small_model_path, tmp_path, value):
    """A cut-off outside 0 to 1 (NaN included) would make every verdict unsure, or none:
    refused as damaged, as the config file's [thresholds] are."""
    damaged = tmp_path / "cut-offs.model"
    _rewrite(small_model_path, damaged, lambda meta: meta["thresholds"].update(min_confidence=value))
    with pytest.raises(ModelError, match="cut-offs are damaged"):
        load_model(str(damaged))


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch " + os.environ["PARTNERCHECK_PWNED"],))


@pytest.mark.parametrize("kind", ["pickle", "joblib", "joblib-compressed", "npy-object"])
def test_a_model_file_runs_no_code_when_loaded(small_model_path, tmp_path, monkeypatch, kind):
    import numpy as np

    marker = tmp_path / "pwned"
    monkeypatch.setenv("PARTNERCHECK_PWNED", str(marker))
    path = tmp_path / "evil.model"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"format": FORMAT_VERSION, "weights": _Boom()}))
    elif kind.startswith("joblib"):
        import joblib

        joblib.dump({"format": 3, "weights": _Boom()}, path, compress=3 if kind.endswith("compressed") else 0)
    else:  # a zip model whose array is a pickled object array
        with zipfile.ZipFile(small_model_path) as good, zipfile.ZipFile(path, "w") as evil:
            for item in good.infolist():
                if item.filename != "coef.npy":
                    evil.writestr(item.filename, good.read(item.filename))
            with evil.open("coef.npy", "w") as member:
                np.lib.format.write_array(member, np.array([_Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError) as error:
        load_model(str(path))
    assert not marker.exists()
    assert "\n" not in str(error.value)
    if kind != "npy-object":
        assert "pickle or joblib" in str(error.value) and "not opened" in str(error.value)


def test_a_failed_save_leaves_the_old_model(small_model_path, tmp_path, monkeypatch):
    target = tmp_path / "model.model"
    shutil.copy(small_model_path, target)
    before = target.read_bytes()
    model = load_model(small_model_path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("partnercheck.deciding.model.np.lib.format.write_array", crash)
    with pytest.raises(OSError):
        model.save(str(target))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.model"]


# Saves the file named by its argument, stopping half-way until a line comes on its input.
_WRITER = """
import sys
from partnercheck.atomic import atomic_file
with atomic_file(sys.argv[1]) as handle:
    handle.write(b"half")
    handle.flush()
    print("writing", flush=True)
    sys.stdin.readline()
    handle.write(b" and the rest")
"""


def _writer_at_half_way(target):
    import partnercheck

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(partnercheck.__file__)))
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env)
    assert writer.stdout.readline() == b"writing\n"
    return writer


def _partial(folder) -> set[str]:
    return {name for name in os.listdir(folder) if name.endswith(".partial")}


def test_a_save_removes_what_killed_saves_left_and_keeps_what_live_ones_are_writing(small_model_path, tmp_path):
    """``kill -9`` during a save leaves its temporary file behind; the next save removes it,
    but never the file of a writer that is still alive (two runs may save the same model)."""
    target = tmp_path / "model.model"
    unknown = tmp_path / ".model.model.ab12cd34.partial"  # named before writers said who they were
    unknown.write_bytes(b"half")
    live = _writer_at_half_way(target)
    try:
        live_temp = _partial(tmp_path) - {unknown.name}
        killed = _writer_at_half_way(target)
        killed.kill()
        killed.wait()
        assert len(_partial(tmp_path)) == 3
        load_model(small_model_path).save(str(target))
        assert _partial(tmp_path) == live_temp | {unknown.name}
        live.communicate(b"go on\n", timeout=30)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 0 and target.read_bytes() == b"half and the rest"
    assert _partial(tmp_path) == {unknown.name}


def test_a_writer_on_another_host_keeps_its_temporary_file_whatever_the_host_names(tmp_path, monkeypatch):
    """Hosts sharing a folder check no PID of each other's: "node.1" and "node-1", or two
    hosts both called "localhost", are told apart (by a hash of the name and the boot)."""
    from partnercheck import atomic

    places = set()
    for host, boot in (("node.1", "b1"), ("node-1", "b1"), ("localhost", "b2"), ("localhost", "b3")):
        monkeypatch.setattr(atomic.socket, "gethostname", lambda host=host: host)
        real_open = open
        monkeypatch.setattr("builtins.open", lambda path, *a, boot=boot, **k: io.StringIO(boot)
                            if path == "/proc/sys/kernel/random/boot_id" else real_open(path, *a, **k))
        atomic._place.cache_clear()
        places.add(atomic._place())
    monkeypatch.undo()
    atomic._place.cache_clear()
    assert len(places) == 4
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    other = tmp_path / f".out.csv.{sorted(places)[0]}.{int(dead.stdout)}.x1.partial"
    other.write_bytes(b"half")
    atomic._swept.discard(str(tmp_path))
    with atomic.atomic_file(str(tmp_path / "out.csv")) as handle:
        handle.write(b"done")
    assert other.exists() and (tmp_path / "out.csv").read_bytes() == b"done"


def test_clues_are_never_function_words_greetings_or_names(shipped_model):
    """The reasons a person reads carry meaning: no "the", no subject word "for", no pair
    like "of the" or "hi we", and never a word of the sender's or recipients' names."""
    from conftest import DATA

    from partnercheck.deciding.classify import classify
    from partnercheck.reading.sources import Source
    from partnercheck.understanding.features import FUNCTION_WORDS, _role_stems, snowball

    function_words = {"the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "this", "that",
                      "they", "them", "until", "both", "my", "he", "she", "your", "our", "veri", "onli",
                      "hi", "hello", "dear", "thank", "regard", "cheer"}
    records = list(Source(str(DATA)))[::9]
    shown = 0
    for record, verdict in zip(records, classify(records, shipped_model)):
        names = {snowball().stem(word) for name in (record.from_name, *record.to_names)
                 for word in re.findall(r"[a-z]{3,}", name.lower()) if word not in FUNCTION_WORDS} - _role_stems()
        for clue in verdict.clues_for + verdict.clues_against:
            if clue.token.startswith(("rule:", "act:", "url:", "header:", "shape:")):
                continue
            words = clue.token.removeprefix("subject:").split(" ")
            shown += 1
            assert not set(words) <= function_words, (record.key, clue.term)
            assert not names & set(words), (record.key, clue.term)
    assert shown > len(records)  # words and pairs are shown, not only rules
