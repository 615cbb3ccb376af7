"""How real-mail scores grow with the corpus: would more of the same data help?

Fits the default pipeline on random fractions of the training corpus (data/ minus
data/heldout.txt; several draws per fraction) with the shipped model's cut-offs, and scores
each fit on ../shared/realworld. A curve still rising at the full corpus says more data of
the corpus's kinds would pay; a flat one says the next gain is in what the corpus does not
hold. Nothing is tuned on the real mail: this only reads the scores.

    python bench/corpus_size.py [--fractions 0.5 0.75 0.9 1] [--draws 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from train import DATA, REALWORLD, heldout_keys  # noqa: E402

from partnercheck.deciding.model import load_model  # noqa: E402
from partnercheck.learning import training  # noqa: E402
from partnercheck.learning.evaluate import score_model  # noqa: E402
from partnercheck.reading.sources import Source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.75, 0.9, 1.0])
    parser.add_argument("--draws", type=int, default=2, help="random draws per fraction below 1")
    args = parser.parse_args()
    if not REALWORLD.is_dir():
        sys.exit(f"no real mail at {REALWORLD}")
    held = heldout_keys()
    records = [r for r in Source(str(DATA)) if r.key not in held]
    real = list(Source(str(REALWORLD)))
    thresholds = load_model().thresholds
    print(f"training messages: {len(records)}; real mail: {len(real)}; cut-offs {thresholds.to_dict()}")
    print("fraction  messages  macro-F1  other->pitch  partnership->pitch  unsure")
    for fraction in args.fractions:
        results = []
        for draw in range(1 if fraction >= 1 else args.draws):
            rng = random.Random(draw + 1)
            chosen = records if fraction >= 1 else [r for r in records if rng.random() < fraction]
            model = training.fit(training.prepare(chosen), thresholds)
            scores = score_model(model, real)
            results.append((len(chosen), scores.macro_f1(), scores.other_as_pitch(), scores.partnership_as_pitch(),
                            scores.unsure_rate()))
            print(f"{fraction:8.2f}  {len(chosen):8d}  {results[-1][1]:8.3f}  {results[-1][2]:12.1%}  "
                  f"{results[-1][3]:18.1%}  {results[-1][4]:6.1%}", flush=True)
        if len(results) > 1:
            print(f"{fraction:8.2f}  median    {statistics.median(r[1] for r in results):8.3f}")


if __name__ == "__main__":
    main()
