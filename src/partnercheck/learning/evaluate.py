"""Scores of verdicts against true labels: per-label precision, recall and F1, the
confusion matrix, the unsure rate, and how often each rule fired on each true label
(SpamAssassin's mass-check idea: a rule that fires as often on partnerships as on pitches
is noise, whatever its name says).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..labels import LABELS, OTHER, PARTNERSHIP, PITCH, UNSURE, VERDICTS


@dataclass
class Scores:
    """Verdicts against truth, with rule hit counts when known."""

    truth: list[str]
    verdicts: list[str]
    rule_hits: dict[str, Counter] = field(default_factory=dict)
    unreadable: int = 0
    groups: list[str] = field(default_factory=list)  # where each message came from, when known
    undecided: int = 0  # rows of a label file still marked unsure, which say no true label

    @property
    def total(self) -> int:
        return len(self.truth)

    def confusion(self) -> dict[str, dict[str, int]]:
        table = {t: {v: 0 for v in VERDICTS} for t in LABELS}
        for t, v in zip(self.truth, self.verdicts):
            table[t][v] += 1
        return table

    def per_label(self) -> dict[str, dict[str, float]]:
        """Precision, recall and F1 per label; ``unsure`` counts against recall."""
        table = self.confusion()
        result = {}
        for label in LABELS:
            tp = table[label][label]
            predicted = sum(table[t][label] for t in LABELS)
            actual = sum(table[label].values())
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            result[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
        return result

    def macro_f1(self) -> float:
        present = [s["f1"] for s in self.per_label().values() if s["support"]]
        return sum(present) / len(present) if present else 0.0

    def unsure_rate(self) -> float:
        return self.verdicts.count(UNSURE) / self.total if self.total else 0.0

    def partnership_as_pitch(self) -> float:
        """The costly mistake: the share of true partnerships labelled pitch."""
        partnerships = [v for t, v in zip(self.truth, self.verdicts) if t == PARTNERSHIP]
        return partnerships.count(PITCH) / len(partnerships) if partnerships else 0.0

    def other_as_pitch(self) -> float:
        """Ordinary mail flagged as a pitch: the share of true ``other`` labelled pitch."""
        others = [v for t, v in zip(self.truth, self.verdicts) if t == OTHER]
        return others.count(PITCH) / len(others) if others else 0.0

    def by_group(self) -> dict[str, "Scores"]:
        """The scores of each source of messages on its own (see :func:`source_group`)."""
        if len(set(self.groups)) < 2:
            return {}
        return {group: Scores([t for t, g in zip(self.truth, self.groups) if g == group],
                              [v for v, g in zip(self.verdicts, self.groups) if g == group])
                for group in sorted(set(self.groups))}

    def accuracy_decided(self) -> float:
        decided = [(t, v) for t, v in zip(self.truth, self.verdicts) if v != UNSURE]
        return sum(t == v for t, v in decided) / len(decided) if decided else 0.0

    def to_dict(self) -> dict:
        return {
            "messages": self.total,
            "unreadable": self.unreadable,
            "undecided": self.undecided,
            "macro_f1": round(self.macro_f1(), 4),
            "accuracy_of_decided": round(self.accuracy_decided(), 4),
            "unsure_rate": round(self.unsure_rate(), 4),
            "partnership_as_pitch": round(self.partnership_as_pitch(), 4),
            "other_as_pitch": round(self.other_as_pitch(), 4),
            "per_label": {k: {m: round(x, 4) if isinstance(x, float) else x for m, x in v.items()}
                          for k, v in self.per_label().items()},
            "confusion": self.confusion(),
            "rule_hits": {rule: {label: counts.get(label, 0) for label in LABELS}
                          for rule, counts in sorted(self.rule_hits.items())},
            "by_source": {group: {"messages": s.total, "accuracy_of_decided": round(s.accuracy_decided(), 4),
                                  "unsure_rate": round(s.unsure_rate(), 4), "confusion": s.confusion()}
                          for group, s in self.by_group().items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        lines = [
            f"messages: {self.total}" + "".join(f" ({count} {what}, skipped)" for count, what in (
                (self.unreadable, "unreadable"), (self.undecided, "still marked unsure or left blank")) if count),
            f"macro-F1: {self.macro_f1():.3f}   unsure: {self.unsure_rate():.1%}   "
            f"accuracy where decided: {self.accuracy_decided():.3f}",
            f"partnerships labelled pitch: {self.partnership_as_pitch():.1%}   "
            f"other mail labelled pitch: {self.other_as_pitch():.1%}",
            "",
            f"{'label':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}",
        ]
        for label, s in self.per_label().items():
            lines.append(f"{label:<12} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['f1']:>6.3f} {s['support']:>8}")
        lines += ["", "confusion (rows: truth, columns: verdict)",
                  f"{'':<12}" + "".join(f"{v:>12}" for v in VERDICTS)]
        for truth, row in self.confusion().items():
            lines.append(f"{truth:<12}" + "".join(f"{row[v]:>12}" for v in VERDICTS))
        by_group = self.by_group()
        if by_group:
            lines += ["", "by source (rows: source; truth -> verdict counts)",
                      f"{'source':<12} {'messages':>8} {'accuracy':>9} {'unsure':>7}  mistakes"]
            for group, s in by_group.items():
                mistakes = ", ".join(f"{t}->{v} {n}" for t, row in s.confusion().items() for v, n in row.items()
                                     if n and v != t)
                lines.append(f"{group:<12} {s.total:>8} {s.accuracy_decided():>9.3f} {s.unsure_rate():>7.1%}  "
                             f"{mistakes or '-'}")
        if self.rule_hits:
            lines += ["", "rule hits by true label",
                      f"{'rule':<24}" + "".join(f"{label:>12}" for label in LABELS)]
            for rule, counts in sorted(self.rule_hits.items()):
                lines.append(f"{rule:<24}" + "".join(f"{counts.get(label, 0):>12}" for label in LABELS))
        return "\n".join(lines)


def score_model(model, records, policy=None, batch: int = 256) -> Scores:
    """Classify labelled records and score the verdicts; unreadable records, and rows of a
    label file whose verdict was left ``unsure`` (no true label given), are counted apart."""
    from ..deciding.classify import classify

    truth, verdicts, groups = [], [], []
    rule_hits: dict[str, Counter] = defaultdict(Counter)
    unreadable = undecided = 0
    pending = []

    def flush():
        for record, verdict in zip(pending, classify(pending, model, policy, clues=False)):
            truth.append(record.label)
            verdicts.append(verdict.label)
            groups.append(source_group(record))
            for hit in verdict.hits:
                rule_hits[hit.id][record.label] += 1
        pending.clear()

    for record in records:
        if record.label == UNSURE:
            undecided += 1
            continue
        if record.label not in LABELS:
            what = "has no label" if record.label is None else f"label {record.label!r} is not one of {', '.join(LABELS)}"
            raise ValueError(f"{record.source}:{record.key}: {what}")
        if not record.readable:
            unreadable += 1
            continue
        pending.append(record)
        if len(pending) >= batch:
            flush()
    flush()
    return Scores(truth, verdicts, dict(rule_hits), unreadable, groups, undecided)


def source_group(record) -> str:
    """Where a message came from, by the prefix of its file name: ``iss`` for
    ``partnership/iss-0005.eml``, ``b19`` for a corpus batch; "" when there is none."""
    name = record.key.rsplit("/", 1)[-1]
    prefix, dash, _ = name.partition("-")
    return prefix if dash and prefix.isalnum() and len(prefix) <= 12 else ""
