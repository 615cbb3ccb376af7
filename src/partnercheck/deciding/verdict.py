"""Probabilities, rule hits, sender lists and thresholds to one verdict with its reasons.

The decision, in order:

1. a sender on the user's block list is ``pitch``; one on the allow list can never be
   ``pitch``: the better of the other two stands if it reaches ``min_confidence``, as any
   verdict must, else ``unsure`` (a pitch-like message from a trusted sender is not
   thereby a partnership);
2. a user's own rule marked ``decide = true`` that fired decides its label;
3. otherwise the model's calibrated probabilities, nudged by the weights of the user's
   other rules (which the model never saw in training), give the top label; it stands only
   if its probability reaches ``min_confidence`` and leads the runner-up by ``min_margin``,
   and a ``pitch`` stands only if ``partnership`` scored below ``partnership_guard``.
   Anything else is ``unsure``: a close call is left to a person;
4. before that, a message with fewer than :data:`MIN_KNOWN_WORDS` words the model knows and
   no rule hit is ``unsure`` when the model reads it as a partnership or a pitch, decided by
   too little text (a short note it reads as ``other`` stays ``other``, as ordinary mail
   should): the shortest training message has 6 such words, and one word alone fills the
   whole of a message's TF-IDF vector ("hi" alone read as pitch at 99%).

The guard exists because the costly mistake is filing a genuine partnership as a pitch:
the default cut-offs are chosen by train.py on out-of-fold predictions so that fewer than
1% of partnerships become pitch, and are written into the model card.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..labels import OTHER, PARTNERSHIP, PITCH, UNSURE
from ..understanding.rules import RuleHit


#: Control characters (C0, DEL, C1): a terminal acts on them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """Text of the mail as a terminal may print it: each control character (an escape
    sequence's ESC that would set a title or the clipboard, a carriage return that would
    overwrite the verdict's line) as U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


@dataclass(frozen=True)
class Thresholds:
    """Cut-offs of the decision step (see the module docstring)."""

    min_confidence: float = 0.5
    partnership_guard: float = 0.25
    min_margin: float = 0.0

    def to_dict(self) -> dict:
        return {"min_confidence": self.min_confidence, "partnership_guard": self.partnership_guard,
                "min_margin": self.min_margin}


@dataclass(frozen=True)
class Clue:
    """A model feature that pushed the score for (``weight`` > 0) or against the verdict,
    with ``term``, the feature in plain words."""

    token: str
    weight: float
    term: str


@dataclass
class Verdict:
    """One message's verdict: label, a score per label, and why."""

    label: str
    scores: dict[str, float]
    hits: list[RuleHit] = field(default_factory=list)
    clues_for: list[Clue] = field(default_factory=list)
    clues_against: list[Clue] = field(default_factory=list)
    decided_by: str | None = None

    @property
    def score(self) -> float:
        """The probability behind the verdict (of the top label when unsure)."""
        if self.label in self.scores:
            return self.scores[self.label]
        return max(self.scores.values()) if self.scores else 0.0

    @property
    def rule_ids(self) -> list[str]:
        return [hit.id for hit in self.hits]

    def summary(self) -> str:
        """One line in plain English saying why."""
        if self.decided_by:
            return f"{self.label}: {self.decided_by}"
        top = max(self.scores, key=self.scores.get)
        parts = [f"{self.label} ({top} {self.scores[top]:.0%})"]
        if self.hits:
            parts.append("rules " + ", ".join(self.rule_ids))
        if self.clues_for:
            parts.append("words " + ", ".join(c.term for c in self.clues_for[:3]))
        return "; ".join(parts)

    def explanation(self, subject: str = "", sender: str = "") -> str:
        """The verdict and its reasons in plain words, for a person (``partnercheck explain``)."""
        lines = [f"Verdict: {self.label.upper()}"]
        if subject or sender:
            lines.append(f"Message: {_shown(subject) or '(no subject)'} — from {_shown(sender) or 'unknown sender'}")
        lines.append("Scores:  " + "   ".join(f"{k} {v:.0%}" for k, v in sorted(self.scores.items(), key=lambda kv: -kv[1])))
        if self.decided_by:
            lines.append(f"Decided by: {self.decided_by}")
        elif self.label == "unsure":
            lines.append("Unsure: no label was clear enough to trust (see the scores).")
        if self.hits:
            lines.append("\nRules that fired:")
            for hit in self.hits:
                lines.append(f"  {hit.id} ({hit.rule.label}): {hit.rule.description}")
                for match, sentence in zip(hit.matches, hit.sentences or [""] * len(hit.matches)):
                    lines.append(f'      matched "{_shown(match)}"' + (f' in: {_shown(sentence)}' if sentence else ""))
        else:
            lines.append("\nNo rules fired.")
        target = self.label if self.label in self.scores or not self.scores else max(self.scores, key=self.scores.get)
        if self.clues_for:
            lines.append(f"\nWhat points to {target}:")
            lines.extend(f"  + {c.term}" for c in self.clues_for)
        if self.clues_against:
            lines.append(f"\nWhat points away from {target}:")
            lines.extend(f"  - {c.term}" for c in self.clues_against)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "verdict": self.label,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "decided_by": self.decided_by,
            "rules": [
                {"id": h.id, "label": h.rule.label, "description": h.rule.description, "matched": list(h.matches),
                 "sentences": list(h.sentences)}
                for h in self.hits
            ],
            "clues_for": [{"term": c.term, "token": c.token, "weight": round(c.weight, 4)} for c in self.clues_for],
            "clues_against": [
                {"term": c.term, "token": c.token, "weight": round(c.weight, 4)} for c in self.clues_against
            ],
            "summary": self.summary(),
        }


#: Fewer distinct words than this that the model knows (body, subject and forwarded), with
#: no rule hit, are too little text to judge a partnership or a pitch.
MIN_KNOWN_WORDS = 4


def decide(
    probabilities: dict[str, float],
    hits: list[RuleHit],
    thresholds: Thresholds,
    sender_list: str | None = None,
    known_words: int | None = None,
) -> tuple[str, dict[str, float], str | None]:
    """The verdict label, the (possibly nudged) scores and what decided it outright, if anything.

    ``sender_list`` is ``"allow"`` or ``"block"`` when the sender is on one of the user's lists;
    ``known_words`` the message's count of words the model knows (``None``: not checked).
    """
    scores = _nudged(probabilities, [h for h in hits if h.rule.user and not h.rule.decide])
    if sender_list == "block":
        return PITCH, scores, "sender is on your block list"
    deciding = [h for h in hits if h.rule.decide]
    if deciding and sender_list != "allow":
        hit = max(deciding, key=lambda h: h.rule.weight)
        return hit.rule.label, scores, f"your rule {hit.id} matched \"{hit.matches[0]}\""
    if deciding:
        allowed = [h for h in deciding if h.rule.label != PITCH]
        if allowed:
            hit = max(allowed, key=lambda h: h.rule.weight)
            return hit.rule.label, scores, f"your rule {hit.id} matched \"{hit.matches[0]}\""
    ranked = sorted(scores, key=scores.get, reverse=True)
    if sender_list == "allow":
        ranked = [label for label in ranked if label != PITCH]
        top = ranked[0]
        label = top if scores[top] >= thresholds.min_confidence else UNSURE
        return label, scores, None
    top = ranked[0]
    if known_words is not None and known_words < MIN_KNOWN_WORDS and not hits and top != OTHER:
        return UNSURE, scores, f"too little text to judge ({known_words} of its words known to the model)"
    if scores[top] < thresholds.min_confidence or scores[top] - scores[ranked[1]] < thresholds.min_margin:
        return UNSURE, scores, None
    if top == PITCH and scores.get(PARTNERSHIP, 0.0) >= thresholds.partnership_guard:
        return UNSURE, scores, None
    return top, scores, None


def _nudged(probabilities: dict[str, float], hits: list[RuleHit]) -> dict[str, float]:
    """Add each hit's weight to its label's log-odds and renormalise."""
    if not hits:
        return dict(probabilities)
    logits = {label: math.log(max(p, 1e-9)) for label, p in probabilities.items()}
    for hit in hits:
        if hit.rule.label in logits:
            logits[hit.rule.label] += hit.rule.weight
    top = max(logits.values())
    exps = {label: math.exp(v - top) for label, v in logits.items()}
    total = sum(exps.values())
    return {label: v / total for label, v in exps.items()}
