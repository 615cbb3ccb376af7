"""The corpus in data/: complete, labelled by the three labels, free of near-duplicates,
on reserved domains only, and with nothing but content to give a label away."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter, defaultdict
from dataclasses import replace
from email import message_from_bytes
from email.utils import parsedate_to_datetime

import pytest
from conftest import DATA

from partnercheck.labels import LABELS
from partnercheck.reading.sources import Source

RESERVED = re.compile(r"(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$")
#: A feature in at least this share of one label and in no other label gives the label away.
ARTEFACT_SHARE = 0.10


@pytest.fixture(scope="module")
def corpus():
    return list(Source(str(DATA)))


@pytest.fixture(scope="module")
def manifest():
    with open(DATA / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_message_parses_and_is_labelled(corpus):
    counts = Counter(record.label for record in corpus)
    assert set(counts) == set(LABELS)
    assert all(count >= 400 for count in counts.values()), counts
    for record in corpus:
        assert record.body.strip() and record.subject and record.from_addr and record.message_id, record.key
        assert record.date_iso()[:2] == "20", record.key
        assert not [p for p in record.problems if "8-bit" not in p], (record.key, record.problems)


def test_manifest_lists_every_message_once(corpus, manifest):
    assert sorted(r["file"] for r in manifest) == sorted(record.key for record in corpus)
    for row in manifest:
        assert row["file"].split("/")[0] == row["label"] and row["label"] in LABELS
        assert row["hard_case"] in ("yes", "no") and row["language"] in ("en", "es", "fr", "de", "pt")
        assert row["format"] in ("plain", "html", "multipart")
    for label in LABELS:
        rows = [r for r in manifest if r["label"] == label]
        assert len({r["sender_kind"] for r in rows}) >= 15
        assert sum(r["hard_case"] == "yes" for r in rows) >= len(rows) / 4
    assert len({r["industry"] for r in manifest}) >= 40


STYLES = {"polished", "short-note", "markdown", "lowercase-tokenised", "hard-wrapped", "bulk-html",
          "forwarded", "contact-form", "non-native", "non-english"}


def test_every_writing_style_is_written_under_every_label(manifest):
    """Style must not give the label away: each style appears under all three labels, none
    more than three times as often under one label as under another."""
    counts = Counter((row["style"], row["label"]) for row in manifest)
    assert {row["style"] for row in manifest} == STYLES
    for style in STYLES:
        per_label = [counts[(style, label)] for label in LABELS]
        assert min(per_label) * 3 >= max(per_label), (style, dict(zip(LABELS, per_label)))


def test_only_reserved_domains(corpus):
    for record in corpus:
        for address in (record.from_addr, record.reply_to, *record.to, *record.cc):
            if address:
                assert RESERVED.search(address.rpartition("@")[2]), (record.key, address)
        for link in record.links:
            host = re.sub(r"^[a-z]+://", "", link.lower()).split("/")[0].split(":")[0].split("?")[0]
            if host and "." in host and not host.replace(".", "").isdigit():
                assert RESERVED.search(host), (record.key, link)


def _shingles(text: str) -> set[int]:
    words = re.findall(r"\w+", text.lower())
    return {hash(tuple(words[i:i + 5])) for i in range(len(words) - 4)}


def test_no_near_duplicates(corpus):
    """No two bodies share more than half of their word 5-grams (Jaccard similarity)."""
    shingles = [_shingles(r.subject + " " + r.body) for r in corpus]
    where = defaultdict(list)
    for i, found in enumerate(shingles):
        for shingle in found:
            where[shingle].append(i)
    shared = Counter()
    for ids in where.values():
        if len(ids) < 40:  # a 5-gram in 40 messages is a phrase, not a copy
            shared.update(itertools.combinations(ids, 2))
    worst = max(((n / len(shingles[a] | shingles[b]), a, b) for (a, b), n in shared.items()), default=(0, 0, 0))
    assert worst[0] <= 0.5, (corpus[worst[1]].key, corpus[worst[2]].key, worst[0])


def _give_aways(corpus, features_of) -> list:
    per_label = Counter(r.label for r in corpus)
    seen = defaultdict(Counter)
    for record in corpus:
        for feature in set(features_of(record)):
            seen[feature][record.label] += 1
    return sorted(
        (count, label, feature)
        for feature, counts in seen.items()
        for label, count in counts.items()
        if count >= ARTEFACT_SHARE * per_label[label] and sum(counts.values()) == count
    )


def _headers(record):
    return message_from_bytes(record.raw).items()


ARTEFACT_VIEWS = {
    "header name": lambda r: [name.lower() for name, _ in _headers(r)],
    "header value": lambda r: [f"{n.lower()}: {v}" for n, v in _headers(r)
                               if n.lower() not in ("subject", "date", "message-id", "in-reply-to", "references")],
    "sender domain": lambda r: [r.from_domain],
    "top-level domain": lambda r: [r.from_domain.rsplit(".", 1)[-1]],
    "message-id shape": lambda r: [re.sub(r"\d+", "9", re.sub(r"[a-z]+", "a", r.message_id.lower())),
                                   r.message_id.rsplit("@", 1)[-1].rstrip(">")],
    "date month": lambda r: [r.date_iso()[:7], r.date_iso()[-6:]],
    "signature line": lambda r: [line.strip().lower() for line in r.signature.splitlines() if line.strip()],
    "body line": lambda r: [line.strip().lower() for line in r.body.splitlines() if len(line.strip()) > 3],
}


@pytest.mark.parametrize("view", sorted(ARTEFACT_VIEWS))
def test_nothing_but_content_gives_the_label_away(corpus, view):
    assert _give_aways(corpus, ARTEFACT_VIEWS[view]) == []


def test_the_artefact_test_catches_artefacts(corpus):
    """Plant a signature line in a fifth of the pitches: the test above must see it."""
    planted = [replace(r, signature="Sent with Outreachly") if r.label == "pitch" and i % 5 == 0 else r
               for i, r in enumerate(corpus)]
    assert _give_aways(planted, ARTEFACT_VIEWS["signature line"])


def test_dates_spread_alike_across_labels(corpus):
    years = {label: Counter(parsedate_to_datetime(r.date).year for r in corpus if r.label == label)
             for label in LABELS}
    for label, counts in years.items():
        total = sum(counts.values())
        assert set(counts) <= {2023, 2024, 2025, 2026}
        assert all(counts[year] / total >= 0.15 for year in (2023, 2024, 2025, 2026)), (label, counts)


def test_heldout_split_is_fixed_stratified_and_about_a_fifth(corpus, manifest):
    listed = [line.strip() for line in (DATA / "heldout.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    keys = {r.key for r in corpus}
    assert set(listed) <= keys and len(listed) == len(set(listed))
    kinds = {r["file"]: (r["label"], r["sender_kind"]) for r in manifest}
    per_label = Counter(kinds[f][0] for f in listed)
    totals = Counter(r.label for r in corpus)
    for label in LABELS:
        assert 0.17 <= per_label[label] / totals[label] <= 0.23
    groups = Counter(kinds.values())
    held_groups = Counter(kinds[f] for f in listed)
    for group, size in groups.items():
        if size >= 5:
            assert held_groups[group] >= 1, group


def test_datasheet_points_to_the_label_definition():
    text = (DATA / "README.md").read_text()
    assert "LABELS.md" in text and "heldout.txt" in text
