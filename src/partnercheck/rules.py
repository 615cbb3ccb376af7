"""Keyword rules: readable evidence for a label, loaded from TOML and compiled once.

The built-in rules live in ``rules.toml`` beside this module; a user can add a rules file
of the same format (see :mod:`partnercheck.settings`). Every hit reports the words that
triggered it. ``decide = true`` in a user's rule makes a hit decide the verdict outright;
built-in rules only ever feed the model and the explanation. A pattern runs only on a text
that holds the words its matches need, and only where they are (see
:mod:`partnercheck.rule_triggers`); a test checks that this finds exactly what a plain
search would.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

from .errors import PartnercheckError
from .labels import LABELS
from .rule_triggers import WORD, TriggeredPattern

MACROS = {
    "__money__": r"(?:[$€£]\s?\d[\d,.]{0,12}\s?[km]?\b|\b\d[\d,.]{0,12}\s?(?:[km]\s)?(?:usd|eur|gbp|dollars|euros|pounds|€|\$)(?!\w))",
    "__pct__": r"(?:\d{1,3}(?:[.,]\d{1,2})?\s?%)",
    "__num__": r"(?:\d[\d,.]{0,12})",
}
#: At most this many distinct matched snippets are kept per rule hit.
MAX_SNIPPETS = 3
_FIELDS = ("all", "subject", "body")


class RulesError(PartnercheckError):
    """A rules file that cannot be used; the message says which file and which rule."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    label: str
    weight: float
    description: str
    patterns: tuple[str, ...]
    field: str = "all"
    decide: bool = False
    user: bool = False


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that fired, with the words that fired it."""

    rule: Rule
    matches: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.rule.id


class RuleSet:
    """Compiled rules; :meth:`match` returns the hits for one text."""

    def __init__(self, rules: list[Rule]) -> None:
        seen = set()
        for rule in rules:
            if rule.id in seen:
                raise RulesError(f"rule {rule.id} is defined twice")
            seen.add(rule.id)
        self.rules = tuple(rules)
        self._patterns: list[tuple[int, str, TriggeredPattern]] = [
            (index, rule.field, pattern) for index, rule in enumerate(rules) for pattern in _compile_patterns(rule)
        ]
        # Which patterns each trigger word can set off, and which patterns always run.
        self._by_word: dict[str, list[int]] = {}
        self._always: list[int] = []
        for number, (_, _, pattern) in enumerate(self._patterns):
            if pattern.triggers is None:
                self._always.append(number)
            for word in pattern.triggers or ():
                self._by_word.setdefault(word, []).append(number)

    def __len__(self) -> int:
        return len(self.rules)


    def match(self, subject: str, body: str) -> list[RuleHit]:
        """Hits on already normalised subject and body text, in rule order."""
        everything = f"{subject}\n{body}"
        words = set(WORD.findall(everything))
        candidates = set(self._always)
        by_word = self._by_word
        for word in words.intersection(by_word):
            candidates.update(by_word[word])
        snippets: dict[int, list[str]] = {}
        starts_in = {"all": {}, "subject": {}, "body": {}}
        texts = {"all": everything, "subject": subject, "body": body}
        patterns = self._patterns
        for number in sorted(candidates):
            index, field, pattern = patterns[number]
            found = snippets.get(index)
            if found is None:
                found = snippets[index] = []
            elif len(found) >= MAX_SNIPPETS:
                continue
            for match in pattern.finditer(texts[field], words, starts_in[field]):
                snippet = match.group(0).strip()
                if snippet not in found:
                    found.append(snippet)
                    if len(found) == MAX_SNIPPETS:
                        break
        return [RuleHit(self.rules[index], tuple(found)) for index, found in snippets.items() if found]

    def __add__(self, other: "RuleSet") -> "RuleSet":
        return RuleSet(list(self.rules) + list(other.rules))


@functools.cache
def builtin_rules() -> RuleSet:
    """The rules shipped with partnercheck, compiled once per process."""
    return RuleSet(parse_rules(_builtin_text(), "built-in rules.toml"))


@functools.cache
def rules_fingerprint() -> str:
    """SHA-256 of the built-in rules file: a model records the one it was trained with."""
    return hashlib.sha256(_builtin_text().encode("utf-8")).hexdigest()


def _builtin_text() -> str:
    return resources.files("partnercheck").joinpath("rules.toml").read_text(encoding="utf-8")


def load_rules(path: str, user: bool = True) -> RuleSet:
    """A rules file of the same format as the built-in one."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    return RuleSet(parse_rules(text, path, user=user))


def parse_rules(text: str, where: str, user: bool = False) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: not valid TOML: {exc}") from None
    rules = []
    for number, entry in enumerate(data.get("rule", []), start=1):
        rule_id = entry.get("id") or f"#{number}"
        context = f"{where}: rule {rule_id}"
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(rule_id)):
            raise RulesError(f"{context}: id must be UPPER_SNAKE_CASE")
        label = entry.get("label")
        if label not in LABELS:
            raise RulesError(f"{context}: label must be one of {', '.join(LABELS)}, not {label!r}")
        patterns = entry.get("patterns") or ([entry["pattern"]] if "pattern" in entry else [])
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise RulesError(f"{context}: needs a non-empty list of patterns")
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or not 0 < weight <= 10:
            raise RulesError(f"{context}: weight must be a number above 0 and at most 10")
        field = entry.get("field", "all")
        if field not in _FIELDS:
            raise RulesError(f"{context}: field must be one of {', '.join(_FIELDS)}")
        decide = bool(entry.get("decide", False))
        if decide and not user:
            raise RulesError(f"{context}: only a user's own rules may decide outright")
        rule = Rule(rule_id, label, float(weight), str(entry.get("description", "")), tuple(patterns), field,
                    decide, user)
        _compile_patterns(rule, context)
        rules.append(rule)
    return rules


def _compile_patterns(rule: Rule, context: str = "") -> list[TriggeredPattern]:
    """Each pattern of ``rule`` compiled, with the words its matches need."""
    compiled = []
    for pattern in rule.patterns:
        for macro, expansion in MACROS.items():
            pattern = pattern.replace(macro, expansion)
        try:
            compiled.append(TriggeredPattern(pattern))
        except re.error as exc:
            raise RulesError(f"{context or rule.id}: bad pattern {pattern!r}: {exc}") from None
    return compiled
