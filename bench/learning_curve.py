"""Learning curve on real mail: learn k real messages, score the rest.

For k = 0, 10, 30, 60: draw k messages at random from ../shared/realworld (115 real
messages nobody here wrote), learn them into a fresh store as the user would (`learn --as`
their true label), retrain the personal model, and score it on the other 115 - k messages.
Repeated over several draws (seeded); prints mean, spread and range of macro-F1, the share
of partnerships labelled pitch, the unsure rate and accuracy where decided, and, paired per
draw, the gain over the shipped model scored on the very same remaining messages (macro-F1
on a random 55 of the 115 is not comparable with macro-F1 on all 115).

Two ways of scoring each draw:

* ``model``: the personal model alone, no sender memory. This is the honest figure for
  learning from content. (k = 0 is the shipped model.)
* ``model+memory``: the personal model with the sender memory the corrections built.
  Beware: in this sample 47 Enron messages share one synthetic sender
  (unknown@enron.invalid) and the GitHub posts share unknown@issue.invalid, so the memory
  allows or blocks whole groups of unrelated messages at once; real mail has real senders.

The realworld sample is only ever learned into a temporary store here; nothing is trained
on it for the shipped model.

    python bench/learning_curve.py [--draws 10] [--ks 0,10,30,60] [--weight 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from partnercheck.deciding.classify import classify_one  # noqa: E402
from partnercheck.deciding.model import load_model  # noqa: E402
from partnercheck.deciding.policy import Policy  # noqa: E402
from partnercheck.learning.corrections import CORRECTION_WEIGHT, Store, retrain_personal  # noqa: E402
from partnercheck.learning.evaluate import score_model  # noqa: E402
from partnercheck.reading.sources import Source  # noqa: E402
from partnercheck.settings import default_model_path  # noqa: E402

REALWORLD = os.path.join(os.path.dirname(ROOT), "shared", "realworld")


def run(records, k: int, seed: int, weight: float, tmp: str) -> dict[str, tuple]:
    """Scores of one draw: ``{"model": (macro_f1, p_as_pitch, unsure, acc), "model+memory": ...}``."""
    rnd = random.Random(seed)
    order = list(range(len(records)))
    rnd.shuffle(order)
    learned = [records[i] for i in order[:k]]
    rest = [records[i] for i in order[k:]]
    shipped = load_model(default_model_path())
    if not learned:
        model, mem = shipped, None
    else:
        path = os.path.join(tmp, f"k{k}-s{seed}.sqlite3")
        with Store.open(path) as store:
            for label in ("partnership", "pitch", "other"):
                judge_policy = Policy(memory=store.memory())
                store.learn([r for r in learned if r.label == label], label,
                            judge=lambda r: classify_one(r, shipped, judge_policy).label)
            model = load_model(retrain_personal(store, os.path.join(tmp, f"k{k}-s{seed}.model"), weight=weight).path)
            mem = store.memory()
    result = {}
    base = score_model(shipped, rest, Policy())  # the shipped model on the very same messages
    for name, policy in (("model", Policy()), ("model+memory", Policy(memory=mem) if mem else Policy())):
        scores = score_model(model, rest, policy)
        result[name] = (scores.macro_f1(), scores.partnership_as_pitch(), scores.unsure_rate(),
                        scores.accuracy_decided(), scores.macro_f1() - base.macro_f1(),
                        scores.partnership_as_pitch() - base.partnership_as_pitch())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--ks", default="0,10,30,60")
    parser.add_argument("--weight", type=float, default=CORRECTION_WEIGHT)
    parser.add_argument("--realworld", default=REALWORLD)
    args = parser.parse_args()
    records = [r for r in Source(args.realworld) if r.readable]
    print(f"{len(records)} real messages from {args.realworld}; correction weight {args.weight}; "
          f"{args.draws} draws per k", flush=True)
    header = ("| scoring | k | macro-F1 mean ± sd (min-max) | partnerships as pitch | unsure | accuracy where decided "
              "| macro-F1 gain over the shipped model on the same messages, mean ± sd | partnerships as pitch, change |")
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in map(int, args.ks.split(",")):
            draws = [run(records, k, seed, args.weight, tmp) for seed in range(1 if k == 0 else args.draws)]
            for name in ("model", "model+memory"):
                if k == 0 and name != "model":
                    continue
                values = list(zip(*[d[name] for d in draws]))
                f1 = values[0]
                sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
                cells = [f"{statistics.mean(f1):.3f} ± {sd:.3f} ({min(f1):.3f}-{max(f1):.3f})"]
                cells += [f"{statistics.mean(v):.1%}" for v in values[1:3]] + [f"{statistics.mean(values[3]):.3f}"]
                gain = values[4]
                cells.append(f"{statistics.mean(gain):+.3f} ± {statistics.stdev(gain) if len(gain) > 1 else 0.0:.3f}")
                cells.append(f"{statistics.mean(values[5]):+.1%}")
                rows.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
                print(rows[-1], flush=True)
    print(f"\n{header}\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
