"""Real procmail with the README's recipe: a pitch lands in the pitch folder, a partnership in
the inbox, both with the X-Partnercheck header."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PARTNERSHIP_TEXT, PITCH_TEXT, ROOT, message

PROCMAIL = shutil.which("procmail")


def _readme_recipe() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"```procmail\n(.*?)```", readme, re.S).group(1)


def _partnercheck() -> str:
    beside = Path(sys.executable).parent / "partnercheck"
    found = str(beside) if beside.exists() else shutil.which("partnercheck")
    if not found:
        pytest.skip("the partnercheck command is not installed")
    return found


@pytest.mark.skipif(PROCMAIL is None, reason="procmail is not installed (.ci/run installs it)")
def test_readme_procmail_recipe_files_pitches(tmp_path, shipped_model):
    command = _partnercheck()
    maildir = tmp_path / "Mail"
    maildir.mkdir()
    rc = tmp_path / "procmailrc"
    rc.write_text(
        f"SHELL=/bin/sh\nPATH={Path(command).parent}:/usr/bin:/bin\nMAILDIR={maildir}\nDEFAULT={maildir}/inbox/\n"
        f"LOGFILE={tmp_path}/procmail.log\n"
        f"PARTNERCHECK_MODEL={ROOT / 'models' / 'partnercheck.model'}\n"
        f"PARTNERCHECK_SOCKET={tmp_path}/none.sock\n\n" + _readme_recipe()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERCHECK")}
    for subject, text in (("quick question", PITCH_TEXT), ("bread and coffee", PARTNERSHIP_TEXT)):
        subprocess.run([PROCMAIL, "-m", str(rc)], input=message(subject, text), env=env, check=True, timeout=120)
    pitch = list((maildir / "pitch" / "new").iterdir())
    inbox = list((maildir / "inbox" / "new").iterdir())
    assert len(pitch) == 1 and len(inbox) == 1, (tmp_path / "procmail.log").read_text()
    assert b"Subject: quick question" in pitch[0].read_bytes()
    assert pitch[0].read_bytes().startswith(b"X-Partnercheck: pitch; score=")
    assert b"X-Partnercheck: partnership; score=" in inbox[0].read_bytes()
