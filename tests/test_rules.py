"""Keyword rules: the shipped file is valid, every rule is safe on hostile input, and the
word-trigger shortcut never loses a match that a plain regex search would find."""

from __future__ import annotations

import re
import time

import pytest
from conftest import DATA, PARTNERSHIP_TEXT, PITCH_TEXT, write

from partnercheck.normalize import normalize
from partnercheck.rules import (
    MACROS,
    RulesError,
    builtin_rules,
    load_rules,
    parse_rules,
)
from partnercheck.sources import Source

RULES = builtin_rules()


def test_builtin_rules_are_complete_and_cover_both_sides():
    labels = {rule.label for rule in RULES.rules}
    assert labels == {"partnership", "pitch", "other"}
    for rule in RULES.rules:
        assert rule.description and rule.patterns and 0 < rule.weight <= 10


def test_hits_report_the_words_that_matched():
    hits = {hit.id: hit.matches for hit in RULES.match("", normalize(PITCH_TEXT))}
    assert "plans start at" in hits["PRICE_PLANS"]
    assert "just bumping this" in hits["FOLLOW_UP_BUMP"]
    hits = {hit.id for hit in RULES.match("", normalize(PARTNERSHIP_TEXT))}
    assert {"REFERRAL_BOTH_WAYS", "JOINT_WORK"} <= hits


def test_obfuscated_words_still_match():
    text = normalize("Our r\u0435v\u200benue-share: w.e p.a.y y.o.u 20% on every sale")
    assert "REV_SHARE" in {hit.id for hit in RULES.match("", text)}


def _hostile_texts(rule) -> list[str]:
    """1 MB strings built from the rule's own words: near-misses repeated, no separators,
    long runs of one character, everything the patterns' repeats could chew on."""
    words = re.findall(r"[a-z]{2,}", " ".join(rule.patterns).replace("__money__", "").replace("__pct__", ""))
    near = " ".join(words)
    size = 1_000_000
    return [
        (near + " ") * (size // (len(near) + 1) + 1),
        ("".join(words)) * (size // max(1, len("".join(words))) + 1),
        "a" * size,
        " " * size,
        "1" * size,
        ("$1," * (size // 3)),
        ("we " * (size // 3)),
    ]


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda r: r.id)
def test_no_rule_backtracks_catastrophically(rule):
    from partnercheck.rules import RuleSet

    single = RuleSet([rule])
    for text in _hostile_texts(rule):
        start = time.perf_counter()
        single.match("", text[:1_000_000])
        elapsed = time.perf_counter() - start
        assert elapsed < 0.5, f"{rule.id} took {elapsed:.2f}s on 1 MB of {text[:30]!r}"


def test_triggers_find_exactly_what_plain_search_finds():
    """Run every pattern over the whole corpus both ways: with word triggers and windows,
    and as a plain regex over the whole text. The shortcut must never change a result."""
    compiled = []
    for rule in RULES.rules:
        for pattern in rule.patterns:
            for macro, expansion in MACROS.items():
                pattern = pattern.replace(macro, expansion)
            compiled.append((rule.id, re.compile(pattern)))
    checked = 0
    for record in Source(str(DATA)):
        subject, body = normalize(record.subject), normalize(record.body + "\n" + record.signature)
        everything = f"{subject}\n{body}"
        expected = {rule_id for rule_id, regex in compiled if regex.search(everything)}
        got = {hit.id for hit in RULES.match(subject, body)}
        assert got == expected, f"{record.key}: {got ^ expected}"
        checked += 1
    assert checked > 100


def test_user_rules_file(tmp_path):
    path = write(tmp_path / "mine.toml", '''
[[rule]]
id = "MY_VENDOR"
label = "pitch"
weight = 3
decide = true
description = "the printer vendor who never stops"
patterns = ['\\bacme toner\\b']
''')
    rules = load_rules(str(path))
    assert rules.rules[0].decide and rules.rules[0].user
    assert rules.match("", "fresh acme toner for you")[0].matches == ("acme toner",)


@pytest.mark.parametrize("text, error", [
    ("[[rule]]\nid='lower'\nlabel='pitch'\npatterns=['x']", "UPPER_SNAKE"),
    ("[[rule]]\nid='A'\nlabel='spam'\npatterns=['x']", "label must be one of"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['(']", "bad pattern"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=[]", "non-empty list"),
    ("[[rule]]\nid='A'\nlabel='pitch'\nweight=99\npatterns=['x']", "weight"),
    ("[[rule]\n", "not valid TOML"),
])
def test_bad_rules_files_are_refused_clearly(text, error):
    with pytest.raises(RulesError, match=error):
        parse_rules(text, "mine.toml", user=True)


def test_builtin_rules_may_not_decide():
    with pytest.raises(RulesError, match="only a user's own rules"):
        parse_rules("[[rule]]\nid='A'\nlabel='pitch'\ndecide=true\npatterns=['x']", "rules.toml")


@pytest.mark.parametrize("pattern, text", [
    (r"\Bsourcing\b", "we do outsourcing for you"),
    (r"(?i)\bAcme Corporation\b", "hello from acme corporation"),
    (r"(?i:\bToner) cartridges", "cheap toner cartridges"),
    (r"\b(?:a|an) budget\b(?=.{0,40}\bapproved\b)", "x " * 300 + "a budget and it was finally approved" + " y" * 300),
])
def test_user_patterns_the_shortcut_cannot_list_still_match(pattern, text):
    from partnercheck.rules import Rule, RuleSet

    rules = RuleSet([Rule("MINE", "pitch", 1.0, "", (pattern,), user=True)])
    assert [hit.matches[0] for hit in rules.match("", text)] == [re.search(pattern, text).group(0)]
