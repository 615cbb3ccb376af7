"""Real Dovecot LDA with Pigeonhole Sieve and its extprograms plugin, running the README's
Sieve script through the README's `partnercheck` wrapper: a pitch is filed into Pitch, a
partnership stays in the inbox, both with the X-Partnercheck header. Config, script and
Maildir live in one temporary folder (see tests/dovecot_server.py for who owns what)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import PARTNERSHIP_TEXT, PITCH_TEXT, ROOT, message
from dovecot_server import _users, as_mail_user, mail_user_can_run
from test_procmail import _partnercheck

LDA = next((p for p in ("/usr/lib/dovecot/dovecot-lda", shutil.which("dovecot-lda") or "") if p and os.path.exists(p)),
           None)
EXTPROGRAMS = any(Path(d).joinpath("lib90_sieve_extprograms_plugin.so").exists()
                  for d in ("/usr/lib/dovecot/modules/sieve", "/usr/lib64/dovecot/sieve"))


def _readme_sieve() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"```sieve\n(.*?)```", readme, re.S).group(1)


@pytest.fixture
def lda_root():
    """A temporary folder that the mail user (nobody, when the tests run as root) can use."""
    root = Path(tempfile.mkdtemp(prefix="pc-imaptest-lda-"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(LDA is None or not EXTPROGRAMS,
                    reason="dovecot-lda with Pigeonhole extprograms is not installed (.ci/run installs dovecot-sieve)")
def test_readme_sieve_recipe_files_pitches(lda_root):
    command = _partnercheck()
    users = _users()
    r = lda_root
    as_user = as_mail_user()
    if as_user and not mail_user_can_run([command, "--version"]):
        pytest.skip(f"the mail user {users['mail']} cannot run {command} (its Python lies in a private "
                    "folder); run the tests as an ordinary user or from a venv it can read")
    mail, bin_dir, sieve_dir, home = r / "mail", r / "sieve-bin", r / "sieve", r / "home"
    for folder in (mail, bin_dir, sieve_dir, home):
        folder.mkdir()
    # The README's wrapper, as an administrator would write it.
    wrapper = bin_dir / "partnercheck"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export PARTNERCHECK_MODEL={ROOT / 'models' / 'partnercheck.model'}\n"
        f"export PARTNERCHECK_SOCKET={r}/none.sock HOME={home}\n"
        f"exec {command} filter --exit-zero\n"
    )
    wrapper.chmod(0o755)
    (sieve_dir / "partnercheck.sieve").write_text(_readme_sieve())
    conf = r / "dovecot.conf"
    conf.write_text(f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/lda.log
info_log_path = {r}/lda.log
mail_location = maildir:{mail}
mail_uid = {users['mail']}
mail_gid = {users['mail_group']}
first_valid_uid = 1
default_internal_user = {users['internal']}
default_internal_group = {users['internal_group']}
default_login_user = {users['login']}
userdb {{
  driver = static
  args = uid={users['mail']} gid={users['mail_group']} home={home}
}}
passdb {{
  driver = static
  args = nopassword=y
}}
protocol lda {{
  mail_plugins = sieve
}}
lda_mailbox_autocreate = yes
plugin {{
  sieve = file:{sieve_dir}/partnercheck.sieve
  sieve_plugins = sieve_extprograms
  sieve_extensions = +vnd.dovecot.filter
  sieve_filter_bin_dir = {bin_dir}
  sieve_filter_exec_timeout = 120s
}}
""")
    if os.geteuid() == 0:
        owner = pwd.getpwnam(users["mail"])
        for folder in (mail, sieve_dir, home, r):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
    # Delivered as the mail user itself (Dovecot gives root no mail access), so the LDA needs
    # no running Dovecot to look the user up.
    env = {"HOME": str(home), "USER": users["mail"], "PATH": "/usr/bin:/bin"}
    for subject, text in (("quick question", PITCH_TEXT), ("bread and coffee", PARTNERSHIP_TEXT)):
        done = subprocess.run([LDA, "-c", str(conf), "-f", "ana@fernhollow.example"], input=message(subject, text),
                              capture_output=True, timeout=180, env=env, cwd=str(r), **as_user)
        log = (r / "lda.log").read_text() if (r / "lda.log").exists() else ""
        assert done.returncode == 0, done.stderr.decode() + log
    log = (r / "lda.log").read_text() if (r / "lda.log").exists() else ""
    pitches = list((mail / ".Pitch" / "new").iterdir()) if (mail / ".Pitch" / "new").exists() else []
    inbox = list((mail / "new").iterdir())
    assert len(pitches) == 1 and len(inbox) == 1, log
    assert b"Subject: quick question" in pitches[0].read_bytes()
    assert pitches[0].read_bytes().startswith(b"X-Partnercheck: pitch; score=")
    assert b"X-Partnercheck: partnership; score=" in inbox[0].read_bytes()
