"""Shared fixtures: the repository's paths, the shipped model, and a small model trained
on part of the corpus (for tests that need a model file of their own to break or replace)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED_MODEL = ROOT / "models" / "partnercheck.model"


@pytest.fixture(scope="session")
def _shared_cache(tmp_path_factory):
    """One cache folder for the whole run: the personal model's corpus features are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch, _shared_cache):
    """No test reads the developer's own config file, model, learning store or socket."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_shared_cache))
    monkeypatch.delenv("PARTNERCHECK_STORE", raising=False)
    monkeypatch.setenv("PARTNERCHECK_SOCKET", str(home / "no-server.sock"))
    monkeypatch.delenv("PARTNERCHECK_MODEL", raising=False)
    monkeypatch.delenv("PARTNERCHECK_CONFIG", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


@pytest.fixture(scope="session")
def shipped_model():
    from partnercheck.deciding.model import load_model

    return load_model(str(SHIPPED_MODEL))


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory):
    """A model trained on the first 40 messages of each label: quick to build, a real model."""
    from partnercheck.learning import training
    from partnercheck.reading.sources import Source

    folder = tmp_path_factory.mktemp("small-corpus")
    for label in ("partnership", "pitch", "other"):
        (folder / label).mkdir()
        for path in sorted((DATA / label).glob("*.eml"))[:40]:
            shutil.copy(path, folder / label / path.name)
    model, _, _ = training.train(Source(str(folder)))
    path = tmp_path_factory.mktemp("models") / "small.model"
    model.save(str(path))
    return str(path)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def message(subject: str, body: str, sender: str = "Ana Ruiz <ana@fernhollow.example>", extra: str = "") -> bytes:
    """A small well-formed message for tests."""
    return (
        f"From: {sender}\nTo: sam@quill.test\nSubject: {subject}\n"
        f"Date: Tue, 14 Mar 2023 09:12:44 -0500\nMessage-ID: <{abs(hash(subject + body))}@fernhollow.example>\n"
        f"{extra}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    ).encode("utf-8")


PITCH_TEXT = (
    "Hi Sam,\n\nWe help companies like yours scale with our team of 120 pre-vetted developers. "
    "Plans start at $3,500 per month. Would you be open to a quick 15-minute call this week? "
    "Book a time on my calendar.\n\nJust bumping this in case it got buried.\n\nBest,\nTom"
)
PARTNERSHIP_TEXT = (
    "Hi Sam,\n\nI run a small coffee roastery two streets from your bakery, and a lot of our regulars "
    "ask where to get good bread. Your customers ask you for beans. Shall we swap referrals and "
    "co-host a breakfast tasting in May? We'd bring the coffee and the baristas, you'd bring the "
    "pastries, and we split the costs of the flyers 50/50. No money changes hands otherwise.\n\nAna"
)
OTHER_TEXT = (
    "Hi team,\n\nMinutes from today's meeting are attached. Invoice #4411 from the cleaning company "
    "was paid on Friday. See you on Thursday for the quarterly review.\n\nThanks,\nLi"
)


def ctrl_c_reaches() -> None:
    """For a child's ``preexec_fn``: Ctrl-C as a terminal gives it. A shell that starts the
    tests in the background (``pytest &``) hands every child SIGINT ignored, and Python then
    never turns it into KeyboardInterrupt, so the tests of Ctrl-C would test nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
