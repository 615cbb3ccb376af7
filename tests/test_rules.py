"""Keyword rules: the shipped file is valid, every rule is safe on hostile input, and the
RE2 scan finds exactly what Python's own regex search would."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner
from conftest import DATA, PARTNERSHIP_TEXT, PITCH_TEXT, write

from partnercheck.reading.normalize import normalize
from partnercheck.reading.sources import Source
from partnercheck.understanding.rules import (
    MACROS,
    RulesError,
    RuleSet,
    builtin_rules,
    load_rules,
    parse_rules,
)

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


def _seconds(rules, text: str) -> float:
    start = time.perf_counter()
    rules.match("", text)
    return time.perf_counter() - start


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda r: r.id)
def test_no_rule_backtracks_on_hostile_text(rule):
    """1 MB built from each rule's own words takes at most a few times as long as 1 MB of
    ordinary mail text, measured in the same run (no wall-clock limit to flake under load)."""
    single = RuleSet([rule])
    benign = (normalize(PITCH_TEXT + " " + PARTNERSHIP_TEXT) + " ") * (1_000_000 // len(PITCH_TEXT + PARTNERSHIP_TEXT))
    baseline = min(_seconds(single, benign[:1_000_000]) for _ in range(3))
    for text in _hostile_texts(rule):
        elapsed = _seconds(single, text[:1_000_000])
        assert elapsed <= 20 * baseline + 0.01, f"{rule.id}: {elapsed:.3f}s on 1 MB of {text[:30]!r}, benign {baseline:.3f}s"


def test_re2_scan_finds_exactly_what_python_search_finds():
    """Run every pattern over the whole corpus both ways: as the RE2 set scan does, and as
    Python's re over the same text. The engine must never change a result."""
    compiled = []
    for rule in RULES.rules:
        for pattern in rule.patterns:
            for macro, expansion in MACROS.items():
                pattern = pattern.replace(macro, expansion)
            compiled.append((rule.id, re.compile(pattern)))
    checked = 0
    for record in list(Source(str(DATA)))[::2]:  # every other message: half the time, all the kinds
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
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['(']", "cannot be compiled"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['budget(?= approved)']", "no look-arounds"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=[]", "non-empty list"),
    ("[[rule]]\nid='A'\nlabel='pitch'\nweight=99\npatterns=['x']", "weight"),
    ("[[rule]\n", "not valid TOML"),
    # wrong types that would otherwise change a rule's meaning or crash
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns='zzzqqq'", "non-empty list"),  # not one rule per letter
    ("[[rule]]\nid='A'\nlabel='pitch'\ndecide='false'\npatterns=['x']", "true or false"),
    ("[rule]\nid='A'\nlabel='pitch'\npatterns=['x']", r"\[\[rule\]\] table"),
    ("rule=['x']", r"\[\[rule\]\] table"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['x']\n[[rule]]\nid='A'\nlabel='other'\npatterns=['y']",
     "A: defined twice"),
    # misspellings that had been passed over, leaving a rule dead or not deciding
    ("[[rules]]\nid='A'\nlabel='pitch'\npatterns=['x']", "unknown key or table rules"),
    ("[[rule]]\nid='A'\nlabel='pitch'\nwieght=5\ndecid=true\npatterns=['x']", "unknown key decid, wieght"),
    ("[[rule]]\nid='SPAMMY_SHOUT'\nlabel='pitch'\npatterns=['x']", "a built-in rule has this id"),
    # RE2's \b knows ASCII letters only: these would never match where Python's re does
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['\\bübernahme\\b']", "next to 'ü', where it never matches"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['\\b(?:été|hiver)\\b']", "next to 'é'"),
    ("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['\\bcafé\\b']", "next to 'é'"),
])
def test_bad_rules_files_are_refused_clearly(text, error):
    with pytest.raises(RulesError, match=error):
        parse_rules(text, "mine.toml", user=True)


def test_boundaries_beside_ascii_letters_still_work_in_words_outside_ascii():
    rules = parse_rules("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['\\bgeschäft\\b', '\\b€\\s?\\d+']", "mine.toml",
                        user=True)
    hits = RuleSet(rules).match("", "ein gutes geschäft für 40 € 99")
    assert hits and hits[0].matches == ("geschäft",)


def test_a_match_is_kept_as_one_short_line():
    """Matched text is shown in one line of an explanation and in a row's reasons: a match
    across a line break or a pattern that takes a whole paragraph must not break either."""
    rules = RuleSet(parse_rules("[[rule]]\nid='A'\nlabel='pitch'\npatterns=['reseller\\s+program', 'x{200}']",
                                "mine.toml", user=True))
    hit = rules.match("", "join our reseller\n  program today " + "x" * 500)[0]
    assert hit.matches[0] == "reseller program"
    assert len(hit.matches[1]) == 80 and hit.matches[1].endswith("…")


def test_a_rules_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes("\ufeff[[rule]]\nid = 'A'\nlabel = 'pitch'\npatterns = ['toner']\n".encode())
    assert load_rules(str(path)).rules[0].id == "A"


def test_a_rules_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(b"[[rule]]\nid = 'A'\nlabel = 'pitch'\ndescription = 'caf\xe9'\npatterns = ['x']\n")
    with pytest.raises(RulesError, match="must be UTF-8"):
        load_rules(str(path))


def test_builtin_rules_may_not_decide():
    with pytest.raises(RulesError, match="only a user's own rules"):
        parse_rules("[[rule]]\nid='A'\nlabel='pitch'\ndecide=true\npatterns=['x']", "rules.toml")


@pytest.mark.parametrize("pattern, text", [
    (r"\Bsourcing\b", "we do outsourcing for you"),
    (r"(?i)\bAcme Corporation\b", "hello from acme corporation"),
    (r"(?i:\bToner) cartridges", "cheap toner cartridges"),
    (r"\b(?:a|an) budget\b.{0,40}\bapproved\b", "x " * 300 + "a budget and it was finally approved" + " y" * 300),
])
def test_user_patterns_match_as_python_would(pattern, text):
    from partnercheck.understanding.rules import Rule

    rules = RuleSet([Rule("MINE", "pitch", 1.0, "", (pattern,), user=True)])
    assert [hit.matches[0] for hit in rules.match("", text)] == [re.search(pattern, text).group(0)]


def test_hits_carry_the_sentence_they_matched_in():
    hit = RULES.match("", "hello there. our pricing starts at $99 a month for teams! see you")[0]
    assert hit.id == "PRICE_PLANS"
    assert hit.sentences[0] == "our pricing starts at $99 a month for teams!"


def test_sentences_are_found_only_for_an_explanation(tmp_path):
    """`label` rows never show the sentence around a match; `explain` does."""
    from partnercheck.interface.cli import cli

    text = "hello there. our pricing starts at $99 a month for teams! see you"
    bare = RULES.match("", text, sentences=False)
    assert [(h.id, h.matches) for h in bare] == [(h.id, h.matches) for h in RULES.match("", text)]
    assert all(h.sentences == () for h in bare)
    message = tmp_path / "m.eml"
    message.write_text(f"From: a@example.com\nSubject: plans\n\n{text}\n")
    result = CliRunner().invoke(cli, ["explain", str(message)])
    assert 'matched "' in result.output and "in: our pricing starts at $99 a month for teams!" in result.output
