r"""Keyword rules: readable evidence for a label, loaded from TOML and compiled once.

The built-in rules live in ``rules.toml`` beside this module; a user can add a rules file
of the same format (see :mod:`partnercheck.settings`). Every hit reports the words that
triggered it. ``decide = true`` in a user's rule makes a hit decide the verdict outright;
built-in rules only ever feed the model and the explanation.

Patterns are matched by RE2 (``google-re2``): all of a field's patterns in one scan of the
text by an ``re2.Set``, then only the patterns that matched are searched again for their
positions and words. RE2 runs in time linear in the text whatever the pattern, so neither a
built-in nor a user's rule can be made to backtrack on hostile mail; in exchange it has no
look-arounds or back-references (a rules file that uses them is refused with one line), and
``\b`` and ``\w`` know ASCII letters only. Measured on 2,000 corpus messages: 64 µs a
message for the set scan, 111 µs with positions, against 204 µs for the former per-pattern
Python ``re`` with a trigger-word shortcut and 2,577 µs for plain ``re`` on every pattern;
the same patterns fired on every message. Hyperscan scanned as fast but took 0.6-1.0 s to
compile the rules, which every cold ``partnercheck filter`` would pay; RE2 compiles them
in about a millisecond.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Iterator

import re2

from ..errors import PartnercheckError
from ..labels import LABELS

MACROS = {
    "__money__": r"(?:[$€£]\s?\d[\d,.]{0,12}\s?[km]?\b|\b\d[\d,.]{0,12}\s?(?:[km]\s)?(?:(?:usd|eur|gbp|dollars|euros|pounds)\b|€|\$))",
    "__pct__": r"(?:\d{1,3}(?:[.,]\d{1,2})?\s?%)",
    "__num__": r"(?:\d[\d,.]{0,12})",
}
#: At most this many distinct matched snippets are kept per rule hit, from at most this
#: many matches read (text repeating one phrase a million times is read no further).
MAX_SNIPPETS = 3
_MAX_MATCHES_READ = 20
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
    sentences: tuple[str, ...] = ()  # the sentence around each match, as the rule read it

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
        # Per field: one RE2 set over its patterns, and for each set entry (rule, pattern).
        self._scans: dict[str, tuple[re2.Set, list[tuple[int, "re2._Regexp"]]]] = {}
        for index, rule in enumerate(rules):
            for pattern in _compile_patterns(rule):
                scan = self._scans.get(rule.field)
                if scan is None:
                    scan = self._scans[rule.field] = (re2.Set.SearchSet(_SET_OPTIONS), [])
                scan[0].Add(pattern.pattern)
                scan[1].append((index, pattern))
        for scanner, _ in self._scans.values():
            scanner.Compile()

    def __reduce__(self):
        # RE2's compiled sets cannot be pickled; a worker process compiles the rules again.
        return RuleSet, (list(self.rules),)

    def __len__(self) -> int:
        return len(self.rules)

    def match(self, subject: str, body: str, sentences: bool = True) -> list[RuleHit]:
        """Hits on already normalised subject and body text, in rule order; with the sentence
        around each match only when ``sentences`` (an explanation shows them, nothing else
        reads them: they cost 4% of labelling a mailbox)."""
        texts = {"all": f"{subject}\n{body}", "subject": subject, "body": body}
        snippets: dict[int, list[str]] = {}
        around_of: dict[int, list[str]] = {}
        for field, (scanner, patterns) in self._scans.items():
            text = texts[field]
            # RE2 reads UTF-8: the text is encoded once here, not once per pattern that matched
            # (which re2's str interface does, with a map of offsets back to characters).
            data = text.encode("utf-8")
            ascii_text = len(data) == len(text)
            for number in sorted(scanner.Match(data) or ()):
                index, pattern = patterns[number]
                found = snippets.setdefault(index, [])
                around = around_of.setdefault(index, [])
                for seen, (start, end) in enumerate(_spans(pattern, data)):
                    if len(found) == MAX_SNIPPETS or seen == _MAX_MATCHES_READ:
                        break
                    snippet = _one_line(data[start:end].decode("utf-8"))
                    if snippet and snippet not in found:
                        found.append(snippet)
                        if not sentences:
                            continue
                        if not ascii_text:  # byte offsets to character offsets
                            start, end = len(data[:start].decode("utf-8")), len(data[:end].decode("utf-8"))
                        around.append(sentence_around(text, start, end))
        return [RuleHit(self.rules[index], tuple(snippets[index]), tuple(around_of[index]))
                for index in sorted(snippets) if snippets[index]]

    def __add__(self, other: "RuleSet") -> "RuleSet":
        return RuleSet(list(self.rules) + list(other.rules))


#: Longest matched text a hit keeps: it is shown in one line of an explanation or a row.
MAX_SNIPPET_CHARS = 80


def _one_line(text: str) -> str:
    """Matched text as a hit keeps it: its white space (line breaks too) as single spaces,
    cut at :data:`MAX_SNIPPET_CHARS`."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_SNIPPET_CHARS else text[:MAX_SNIPPET_CHARS - 1] + "…"


def _spans(pattern: "re2._Regexp", data: bytes) -> Iterator[tuple[int, int]]:
    """Byte spans of the matches of ``pattern`` in UTF-8 ``data``: the same matches, in the
    same order, as ``pattern.finditer`` gives on the decoded text (after an empty match the
    search moves on by one character, not one byte)."""
    pos, size = 0, len(data)
    while True:
        match = pattern.search(data, pos)
        if match is None:
            return
        start, end = match.span()
        yield start, end
        if pos == size:
            return
        if end == pos:  # an empty match where the search started
            pos += 1
            while pos < size and 0x80 <= data[pos] < 0xC0:  # UTF-8 continuation bytes
                pos += 1
        else:
            pos = end


@functools.lru_cache(maxsize=1024)  # bounded: an unbounded cache kept every matched message's text
def sentence_around(text: str, start: int, end: int, limit: int = 160) -> str:
    """The sentence of ``text`` that holds ``text[start:end]``, cut to about ``limit``
    characters around the match: what a person reads to judge the rule's hit."""
    left = max(text.rfind(stop, max(0, start - limit), start) for stop in (". ", "! ", "? ", "\n"))
    left = start - limit if left == -1 and start > limit else left + 1 if left != -1 else 0
    ends = [i for i in (text.find(stop, end, end + limit) for stop in (". ", "! ", "? ", "\n")) if i != -1]
    right = min(ends) + 1 if ends else min(len(text), end + limit)
    sentence = " ".join(text[left:right].split())
    return ("…" if left > 0 and text[left - 1] not in ".!?\n " else "") + sentence


@functools.cache
def builtin_rules() -> RuleSet:
    """The rules shipped with partnercheck, compiled once per process."""
    return RuleSet(parse_rules(_builtin_text(), "built-in rules.toml"))


@functools.cache
def rules_fingerprint() -> str:
    """SHA-256 of the built-in rules file: a model records the one it was trained with."""
    return hashlib.sha256(_builtin_text().encode("utf-8")).hexdigest()


def _builtin_text() -> str:
    return resources.files("partnercheck.understanding").joinpath("rules.toml").read_text(encoding="utf-8")


def load_rules(path: str, user: bool = True) -> RuleSet:
    """A rules file of the same format as the built-in one."""
    try:
        with open(path, encoding="utf-8-sig") as handle:  # Notepad starts UTF-8 with a byte order mark
            text = handle.read()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: a rules file must be UTF-8 text") from None
    return RuleSet(parse_rules(text, path, user=user))


#: What a [[rule]] table may hold (``pattern`` is one pattern, for ``patterns``).
_RULE_KEYS = frozenset(("id", "label", "weight", "description", "patterns", "pattern", "field", "decide"))


def parse_rules(text: str, where: str, user: bool = False) -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: not valid TOML: {exc}") from None
    unknown = [key for key in data if key != "rule"]
    if unknown:
        raise RulesError(f"{where}: unknown key or table {', '.join(unknown)}: each rule is a [[rule]] table")
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise RulesError(f"{where}: each rule is a [[rule]] table")
    builtin_ids = {rule.id for rule in builtin_rules().rules} if user else set()
    rules = []
    for number, entry in enumerate(entries, start=1):
        rule_id = entry.get("id") or f"#{number}"
        context = f"{where}: rule {rule_id}"
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(rule_id)):
            raise RulesError(f"{context}: id must be UPPER_SNAKE_CASE")
        if any(rule.id == rule_id for rule in rules):
            raise RulesError(f"{context}: defined twice in this file")
        if rule_id in builtin_ids:
            raise RulesError(f"{context}: a built-in rule has this id; give yours another")
        unknown = sorted(set(entry) - _RULE_KEYS)
        if unknown:
            raise RulesError(f"{context}: unknown key {', '.join(unknown)} (a rule's keys are "
                             f"{', '.join(sorted(_RULE_KEYS - {'pattern'}))})")
        label = entry.get("label")
        if label not in LABELS:
            raise RulesError(f"{context}: label must be one of {', '.join(LABELS)}, not {label!r}")
        patterns = entry.get("patterns") or ([entry["pattern"]] if "pattern" in entry else [])
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise RulesError(f"{context}: needs a non-empty list of patterns")
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or not 0 < weight <= 10:
            raise RulesError(f"{context}: weight must be a number above 0 and at most 10")
        field = entry.get("field", "all")
        if field not in _FIELDS:
            raise RulesError(f"{context}: field must be one of {', '.join(_FIELDS)}")
        decide = entry.get("decide", False)
        if not isinstance(decide, bool):
            raise RulesError(f"{context}: decide must be true or false, without quotes")
        if decide and not user:
            raise RulesError(f"{context}: only a user's own rules may decide outright")
        rule = Rule(rule_id, label, float(weight), str(entry.get("description", "")), tuple(patterns), field,
                    decide, user)
        _compile_patterns(rule, context)
        rules.append(rule)
    return rules


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a bad pattern is reported once, as a RulesError
# The set of all patterns is one large automaton, whose DFA states RE2 builds as the scan
# meets them and keeps in a cache bounded by ``max_mem``. With RE2's default (8 MB, of which
# the DFA gets about two thirds) the built-in rules' states do not fit: the cache is
# thrown away and rebuilt within every message, and the scan cost 56 µs a message on 3,000
# benchmark messages; with room to keep them, 8 µs. The memory is only taken as states are
# built (a worker grows by a few MB), and the matches are the same: the DFA is exact, it
# only had to start over.
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 64 << 20


def _compile_patterns(rule: Rule, context: str = "") -> list["re2._Regexp"]:
    """Each pattern of ``rule``, macros expanded, compiled by RE2."""
    compiled = []
    for pattern in rule.patterns:
        for macro, expansion in MACROS.items():
            pattern = pattern.replace(macro, expansion)
        try:
            compiled.append(re2.compile(pattern, _OPTIONS))
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise RulesError(f"{context or rule.id}: pattern '{pattern}' cannot be compiled ({reason}); "
                             "patterns are RE2 syntax: no look-arounds or back-references") from None
        if (letter := _boundary_beside_wide_letter(pattern)) is not None:
            raise RulesError(f"{context or rule.id}: pattern '{pattern}' has \\b next to {letter!r}, where it never "
                             "matches (RE2's \\b knows only ASCII letters); drop that \\b, or match what "
                             "comes before the word with (?:^|[^\\pL])")
    return compiled


#: ``\b`` (not an escaped backslash and a b) with the literal character beside it, past any
#: group's opening or closing brackets.
_BOUNDARY = re.compile(r"(?<!\\)(?:\\\\)*\\b(?:\(\?:|\()*(.)?|(.)\)*(?<!\\)(?:\\\\)*\\b")


def _boundary_beside_wide_letter(pattern: str) -> str | None:
    """The first letter or digit outside ASCII written right beside a ``\\b`` of ``pattern``:
    RE2 reads ``\\b`` between ASCII word characters and the rest, so ``\\bübernahme`` can
    never match a word that starts with ``ü``, as Python's ``re`` would; None if there is none."""
    for match in _BOUNDARY.finditer(pattern):
        for letter in match.groups():
            if letter and not letter.isascii() and (letter.isalnum() or letter == "_"):
                return letter
    return None
