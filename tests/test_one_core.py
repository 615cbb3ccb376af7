"""One classification core: the library, `classify`, `label`, `evaluate`, `explain` and the
filter (cold and through `serve`) give every message the same verdict, scores and reasons,
over the whole corpus, the real-mail sample beside the checkout and the malformed fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import DATA, FIXTURES, ROOT, SHIPPED_MODEL

from partnercheck.deciding.classify import classify
from partnercheck.interface.cli import cli
from partnercheck.reading.sources import Source
from partnercheck.running.filtering import filter_message, header_for

REALWORLD = ROOT.parent / "shared" / "realworld"
SOURCES = [DATA, FIXTURES / "malformed"] + ([REALWORLD] if REALWORLD.is_dir() else [])


@pytest.fixture(scope="module")
def library(shipped_model):
    """(source, key) -> (record, verdict) as the library gives them."""
    found = {}
    for folder in SOURCES:
        records = list(Source(str(folder)))
        for record, verdict in zip(records, classify(records, shipped_model)):
            found[(str(folder), record.key)] = (record, verdict)
    return found


def _scores(verdict) -> dict:
    return {label: round(verdict.scores.get(label, 0.0), 4) for label in ("partnership", "pitch", "other")}


@pytest.mark.parametrize("folder", SOURCES, ids=lambda p: p.name)
def test_label_and_classify_say_what_the_library_says(library, folder):
    runner = CliRunner()
    label = runner.invoke(cli, ["label", str(folder), "--nl", "--quiet", "--model", str(SHIPPED_MODEL)])
    assert label.exit_code == 0, label.output
    rows = [json.loads(line) for line in label.stdout.splitlines()]
    classified = runner.invoke(cli, ["classify", str(folder), "--json", "--model", str(SHIPPED_MODEL)])
    assert classified.exit_code == 0, classified.output
    answers = [json.loads(line) for line in classified.stdout.splitlines()]
    expected = {key: verdict for (where, key), (_, verdict) in library.items() if where == str(folder)}
    assert len(rows) == len(answers) == len(expected)
    for row, answer in zip(rows, answers):
        verdict = expected[row["key"]]
        assert row["verdict"] == answer["verdict"] == verdict.label, row["key"]
        assert answer["scores"] == {k: round(v, 4) for k, v in verdict.scores.items()}, row["key"]
        if verdict.scores:
            assert {k: row[k] for k in ("partnership", "pitch", "other")} == _scores(verdict), row["key"]
            assert row["reasons"] == answer["summary"] == verdict.summary(), row["key"]


def test_the_cold_filter_says_what_the_library_says(library, monkeypatch):
    monkeypatch.setenv("PARTNERCHECK_MODEL", str(SHIPPED_MODEL))
    for (where, key), (record, verdict) in library.items():
        with open(os.path.join(where, key), "rb") as handle:
            raw = handle.read()
        output, code, error = filter_message(raw, use_server=False)
        assert error is None, (key, error)
        ours = next(line for line in output.splitlines() if line.startswith(b"X-Partnercheck:"))
        assert ours.decode() == f"X-Partnercheck: {header_for(verdict)}", key


def test_evaluate_counts_what_the_library_says(library):
    result = CliRunner().invoke(cli, ["evaluate", str(DATA), "--json", "--model", str(SHIPPED_MODEL)])
    assert result.exit_code == 0, result.output
    confusion = json.loads(result.stdout)["confusion"]
    for truth, row in confusion.items():
        for verdict_label, count in row.items():
            assert count == sum(1 for (where, _), (record, verdict) in library.items()
                                if where == str(DATA) and record.label == truth and verdict.label == verdict_label)


def test_explain_and_the_server_say_what_the_library_says(library, tmp_path):
    """A sample (every 60th corpus message, every malformed fixture and real message), since
    each goes through its own process."""
    sample = [(where, key) for i, (where, key) in enumerate(sorted(library))
              if where != str(DATA) or i % 60 == 0]
    sock = str(tmp_path / "pc.sock")
    env = {**os.environ, "PARTNERCHECK_SOCKET": sock, "PARTNERCHECK_MODEL": str(SHIPPED_MODEL),
           "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen([sys.executable, "-m", "partnercheck", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        from partnercheck.interface.client import classify_remote

        runner = CliRunner()
        for where, key in sample:
            _, verdict = library[(where, key)]
            path = os.path.join(where, key)
            with open(path, "rb") as handle:
                reply = classify_remote(handle.read(), sock)
            assert (reply["label"], reply["header"]) == (verdict.label, header_for(verdict)), key
            explained = runner.invoke(cli, ["explain", path, "--json", "--model", str(SHIPPED_MODEL)])
            assert explained.exit_code == 0, (key, explained.output)
            answer = json.loads(explained.stdout)
            assert answer["verdict"] == verdict.label and answer["summary"] == verdict.summary(), key
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_three_names_of_the_library_give_the_same_verdicts(library, monkeypatch):
    import partnercheck

    monkeypatch.setenv("PARTNERCHECK_MODEL", str(SHIPPED_MODEL))
    folder = FIXTURES / "malformed"
    verdicts = partnercheck.classify(partnercheck.Source(str(folder)), partnercheck.load_model())
    assert [v.to_dict() for v in verdicts] == [verdict.to_dict() for (where, _), (_, verdict) in library.items()
                                               if where == str(folder)]


def test_the_library_with_the_users_policy_says_what_label_says(tmp_path, monkeypatch):
    """An allow-listed sender is never pitch, from the library as from `label`."""
    import partnercheck

    monkeypatch.setenv("PARTNERCHECK_MODEL", str(SHIPPED_MODEL))
    folder = DATA / "pitch"
    first = sorted(folder.glob("*.eml"))[:20]
    mail = tmp_path / "mail"
    mail.mkdir()
    for path in first:
        (mail / path.name).write_bytes(path.read_bytes())
    senders = {r.from_addr for r in partnercheck.Source(str(mail)) if r.from_addr}
    config = tmp_path / "config.toml"
    config.write_text("allow = [" + ", ".join(f'"{s}"' for s in sorted(senders)) + "]\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    verdicts = partnercheck.classify(partnercheck.Source(str(mail)), partnercheck.load_model(),
                                     partnercheck.load_policy())
    rows = [json.loads(line) for line in
            CliRunner().invoke(cli, ["label", str(mail), "--nl"]).stdout.splitlines()]
    assert [v.label for v in verdicts] == [r["verdict"] for r in rows]
    assert "pitch" not in [v.label for v in verdicts]

