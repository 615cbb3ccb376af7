"""Real maildrop with the README's recipe: a pitch lands in the Pitch Maildir, a partnership
in the inbox, both with the X-Partnercheck header."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PARTNERSHIP_TEXT, PITCH_TEXT, ROOT, message
from test_procmail import _partnercheck

MAILDROP = shutil.which("maildrop")


def _readme_recipe() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"### maildrop\n\n```\n(.*?)```", readme, re.S).group(1)


def _maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    return path


@pytest.mark.skipif(MAILDROP is None, reason="maildrop is not installed (.ci/run installs it)")
def test_readme_maildrop_recipe_files_pitches(tmp_path):
    command = _partnercheck()
    home = tmp_path / "home"
    inbox = _maildir(home / "Maildir")
    pitch = _maildir(home / "Maildir" / ".Pitch")
    rc = tmp_path / "mailfilter"
    rc.write_text(
        f'HOME="{home}"\nSHELL="/bin/sh"\nPATH="{Path(command).parent}:/usr/bin:/bin"\nDEFAULT="{inbox}/"\n'
        f'PARTNERCHECK_MODEL="{ROOT / "models" / "partnercheck.model"}"\n'
        f'PARTNERCHECK_SOCKET="{tmp_path}/none.sock"\nlogfile "{tmp_path}/maildrop.log"\n\n' + _readme_recipe()
    )
    rc.chmod(0o600)  # maildrop refuses a filter file others can write
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERCHECK")}
    env["HOME"] = str(home)
    for subject, text in (("quick question", PITCH_TEXT), ("bread and coffee", PARTNERSHIP_TEXT)):
        done = subprocess.run([MAILDROP, str(rc)], input=message(subject, text), env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()
    pitches = list((pitch / "new").iterdir())
    others = list((inbox / "new").iterdir())
    log = (tmp_path / "maildrop.log").read_text() if (tmp_path / "maildrop.log").exists() else ""
    assert len(pitches) == 1 and len(others) == 1, log
    assert b"Subject: quick question" in pitches[0].read_bytes()
    assert pitches[0].read_bytes().startswith(b"X-Partnercheck: pitch; score=")
    assert b"X-Partnercheck: partnership; score=" in others[0].read_bytes()
