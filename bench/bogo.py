"""bogofilter, trained on part of the corpus, for speed comparisons (when it is installed)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_bogofilter(folder: str) -> list[str] | None:
    """A bogofilter command line with a word list trained on 200 messages per label, or None."""
    bogofilter = shutil.which("bogofilter")
    if bogofilter is None:
        return None
    db = os.path.join(folder, "bogofilter")
    os.makedirs(db, exist_ok=True)
    for label, flag in (("pitch", "-s"), ("other", "-n"), ("partnership", "-n")):
        for path in sorted(glob.glob(os.path.join(ROOT, "data", label, "*.eml")))[:200]:
            with open(path, "rb") as handle:
                subprocess.run([bogofilter, "-d", db, flag], stdin=handle, check=True)
    return [bogofilter, "-d", db]
