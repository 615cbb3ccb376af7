"""Rebuild partnercheck's shipped model from data/ and write its model card.

    python train.py            # models/partnercheck.model and models/MODEL_CARD.md

Deterministic: the same data, seed and library versions give the same model file, byte for
byte (nothing in it records when or how fast it was built). The messages listed in
data/heldout.txt are never trained on; they give the scores in the card. Cut-offs are
chosen on out-of-fold predictions over the training messages only. If
../shared/realworld (real mail nobody here wrote) is beside the checkout, the model is also
scored on it, for the card only: it is never trained or tuned on.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

import joblib  # noqa: E402
import nltk  # noqa: E402
import numpy  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402

from partnercheck import __version__  # noqa: E402
from partnercheck.deciding.verdict import decide  # noqa: E402
from partnercheck.labels import LABELS  # noqa: E402
from partnercheck.learning import training  # noqa: E402
from partnercheck.learning.evaluate import Scores, score_model  # noqa: E402
from partnercheck.reading.sources import Source  # noqa: E402

DATA = ROOT / "data"
MODELS = ROOT / "models"
HELDOUT = DATA / "heldout.txt"
REALWORLD = ROOT.parent / "shared" / "realworld"
SEED = 0


def data_fingerprint(data: Path = DATA) -> str:
    """SHA-256 over every corpus message and the held-out list: changes whenever data/ does."""
    digest = hashlib.sha256()
    files = sorted(data.glob("*/*.eml")) + [data / "heldout.txt"]
    for path in files:
        digest.update(path.relative_to(data).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def heldout_keys() -> set[str]:
    return {line.strip() for line in HELDOUT.read_text().splitlines() if line.strip() and not line.startswith("#")}


def make_heldout(share: float = 0.2) -> None:
    """Write data/heldout.txt: about ``share`` of each (label, kind of sender) group, picked by
    hash of the file name so that the choice is fixed and owes nothing to content."""
    import csv
    from collections import defaultdict

    groups = defaultdict(list)
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            groups[(row["label"], row["sender_kind"])].append(row["file"])
    chosen = []
    for files in groups.values():
        files.sort(key=lambda f: hashlib.sha256(f.encode()).hexdigest())
        chosen += files[: round(len(files) * share)]
    header = "# Held-out messages: never trained on; train.py scores the model on them. Fixed; see data/README.md.\n"
    HELDOUT.write_text(header + "\n".join(sorted(chosen)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(MODELS / "partnercheck.model"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--new-split", action="store_true", help="Write a new data/heldout.txt first.")
    args = parser.parse_args()
    if args.new_split:
        make_heldout()

    start = time.perf_counter()
    held = heldout_keys()
    records = list(Source(str(DATA)))
    train_records = [r for r in records if r.key not in held]
    test_records = [r for r in records if r.key in held]
    info = {
        "partnercheck": __version__,
        "data_fingerprint": data_fingerprint(),
        "trained_on": "data/ minus data/heldout.txt",
        "seed": args.seed,
    }
    model, cv_scores, prepared = training.train(train_records, seed=args.seed, info=info)
    train_seconds = time.perf_counter() - start
    heldout = score_model(model, test_records)
    realworld = score_model(model, Source(str(REALWORLD))) if REALWORLD.is_dir() else None
    held_apart = {column: leave_one_group_out(prepared, column, model.thresholds, args.seed)
                  for column in ("sender_kind", "style")}
    model.info.update({
        "heldout": heldout.to_dict(),
        "cross_validated": cv_scores.to_dict(),
        "leave_one_group_out": {column: scores.to_dict() for column, scores in held_apart.items()},
        "realworld": realworld.to_dict() if realworld else None,
        "versions": versions(),
    })
    model.save(args.out)
    size = os.path.getsize(args.out)
    card = model_card(model, prepared, len(train_records), len(test_records), cv_scores, heldout, realworld,
                      train_seconds, size, held_apart)
    (Path(args.out).parent / "MODEL_CARD.md").write_text(card)
    print(f"trained on {len(prepared.keys)} messages in {train_seconds:.1f} s; model {size / 1e6:.1f} MB")
    print(f"held-out macro-F1 {heldout.macro_f1():.3f}, partnerships labelled pitch "
          f"{heldout.partnership_as_pitch():.1%}, unsure {heldout.unsure_rate():.1%}")
    for column, scores in held_apart.items():
        print(f"leave one {column} out: macro-F1 {scores.macro_f1():.3f}, partnerships labelled pitch "
              f"{scores.partnership_as_pitch():.1%}, unsure {scores.unsure_rate():.1%}")
    if realworld:
        print(f"realworld: macro-F1 {realworld.macro_f1():.3f}, partnerships labelled pitch "
              f"{realworld.partnership_as_pitch():.1%}, other labelled pitch {realworld.other_as_pitch():.1%}, "
              f"unsure {realworld.unsure_rate():.1%}")


def leave_one_group_out(prepared, column: str, thresholds, seed: int) -> Scores:
    """Scores of models that never saw a whole kind of sender or writing style (a manifest
    column), each on the group it did not see: the corpus's stand-in for mail unlike it."""
    import csv

    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as handle:
        group_of = {row["file"]: row[column] for row in csv.DictReader(handle)}
    groups = [group_of.get(key) for key in prepared.keys]
    probabilities = training.leave_one_group_out(prepared, groups, seed=seed)
    labels = sorted(LABELS)
    kept = [i for i, row in enumerate(probabilities) if not numpy.isnan(row[0])]
    verdicts = [decide(dict(zip(labels, probabilities[i])), [], thresholds)[0] for i in kept]
    return Scores([prepared.labels[i] for i in kept], verdicts, groups=[groups[i] for i in kept])


def versions() -> dict:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "nltk": nltk.__version__, "joblib": joblib.__version__}


def _block(scores) -> str:
    return "```\n" + scores.to_text() + "\n```"


def model_card(model, prepared, n_train, n_test, cv_scores, heldout, realworld, seconds, size, held_apart) -> str:
    v = model.info["versions"]
    t = model.thresholds
    lines = [
        "# partnercheck default model",
        "",
        "Rebuilt by `python train.py` from `data/`; do not edit by hand.",
        "",
        "## What it is",
        "",
        "A scikit-learn pipeline: tagged tokens, word pairs and keyword-rule hits",
        "(`src/partnercheck/understanding/`: `features.py`, `vectors.py`, `rules.toml`), TF-IDF plus one",
        "weighted column per rule, and a linear SVM with sigmoid-calibrated probabilities (5 folds). A",
        "decision step turns the probabilities into `partnership`, `pitch`, `other` or `unsure` (see",
        "`deciding/verdict.py`).",
        "",
        "## Made from",
        "",
        f"- data fingerprint: `{model.info['data_fingerprint']}`",
        f"- training messages: {n_train} ({len(prepared.keys)} after dropping {prepared.duplicates} duplicates); "
        f"held out: {n_test} (`data/heldout.txt`, never trained on)",
        f"- seed {model.info['seed']}; built {datetime.date.today().isoformat()} in {seconds:.1f} s on "
        f"{os.cpu_count()} cores; file size {size / 1e6:.2f} MB",
        f"- Python {v['python']}, scikit-learn {v['scikit-learn']}, numpy {v['numpy']}, scipy {v['scipy']}, "
        f"nltk {v['nltk']}, joblib {v['joblib']}",
        "",
        "## Cut-offs",
        "",
        f"- `min_confidence = {t.min_confidence}`: below this top probability the verdict is `unsure`",
        f"- `partnership_guard = {t.partnership_guard}`: a `pitch` verdict needs P(partnership) below this",
        f"- `min_margin = {t.min_margin}`: a top label closer than this to the runner-up is `unsure`",
        "",
        "Chosen on out-of-fold predictions over the training messages (never the held-out ones), as the",
        "grid point that costs least, a wrong verdict counting 1 and an unsure 0.5, among those that",
        f"label fewer than {training.MAX_PARTNERSHIP_AS_PITCH:.1%} of partnerships as pitch; on ties, the",
        "stricter guard. Override them in the config file (`[thresholds]`).",
        "",
        "## Held-out scores",
        "",
        "The held-out messages were written by the same hands as the training mail, so these figures",
        "flatter the model; the real-mail figures below are the more honest ones.",
        "",
        _block(heldout),
        "",
        "## Cross-validated on the training messages (5 folds, with the chosen cut-offs)",
        "",
        "Folds keep near-duplicates together (MinHash over word 5-grams, `near_duplicates.py`).",
        "",
        _block(cv_scores),
    ]
    for column, scores in held_apart.items():
        what = {"sender_kind": "kind of sender", "style": "writing style"}[column]
        lines += [
            "",
            f"## Leave one {what} out",
            "",
            f"Each {what} in `data/manifest.csv` in turn is left out of training and scored by a model",
            "that never saw it: the corpus's own stand-in for mail unlike the corpus, without touching",
            "real mail. Groups holding every message of a label are skipped.",
            "",
            _block(scores),
        ]
    if realworld:
        counts = ", ".join(f"{n} {label}" for label, n in
                           ((label, realworld.truth.count(label)) for label in LABELS) if n)
        lines += [
            "",
            f"## Real mail nobody here wrote (`../shared/realworld`, {realworld.total} messages: {counts})",
            "",
            "Only scored, never trained or tuned on; `partnercheck evaluate ../shared/realworld` prints",
            "the same. Sources: `enr` Enron-Spam (lower-cased, tokenised), `sa` SpamAssassin public",
            "corpus, `iss` first posts of public GitHub issues, `pg` outreach quoted on a public page.",
            "",
            _block(realworld),
        ]
    history = MODELS / "HISTORY.md"
    if history.exists():
        lines += ["", history.read_text().strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
