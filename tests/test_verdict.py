"""The decision step: thresholds, the partnership guard, sender lists and user rules."""

from __future__ import annotations

import pytest
from conftest import PITCH_TEXT, message, write

from partnercheck.deciding.classify import classify_one
from partnercheck.deciding.policy import Policy, load_policy
from partnercheck.deciding.verdict import Thresholds, decide
from partnercheck.reading.mail import parse_message
from partnercheck.settings import ConfigError
from partnercheck.understanding.features import describe_token
from partnercheck.understanding.rules import Rule, RuleHit

T = Thresholds(min_confidence=0.5, partnership_guard=0.25)


@pytest.mark.parametrize("scores, expected", [
    ({"partnership": 0.1, "pitch": 0.8, "other": 0.1}, "pitch"),
    ({"partnership": 0.3, "pitch": 0.6, "other": 0.1}, "unsure"),  # the guard
    ({"partnership": 0.4, "pitch": 0.35, "other": 0.25}, "unsure"),  # not confident
    ({"partnership": 0.7, "pitch": 0.2, "other": 0.1}, "partnership"),
])
def test_thresholds(scores, expected):
    assert decide(scores, [], T)[0] == expected


def _user_rule(label, decide_outright, weight=2.0):
    rule = Rule("MINE", label, weight, "mine", ("x",), decide=decide_outright, user=True)
    return RuleHit(rule, ("x",))


def test_block_list_always_pitch_and_allow_list_never():
    scores = {"partnership": 0.05, "pitch": 0.9, "other": 0.05}
    assert decide(scores, [], T, "block")[0] == "pitch"
    assert decide({"partnership": 0.9, "pitch": 0.05, "other": 0.05}, [], T, "block")[0] == "pitch"
    label = decide(scores, [], T, "allow")[0]
    assert label != "pitch"
    # A pitch-like message from a trusted sender is not thereby a partnership: the runner-up
    # stands only at the confidence any verdict needs.
    assert decide({"partnership": 0.26, "pitch": 0.74, "other": 0.0}, [], T, "allow")[0] == "unsure"
    assert decide({"partnership": 0.02, "pitch": 0.4, "other": 0.58}, [], T, "allow")[0] == "other"


def test_a_note_of_a_few_words_is_too_little_text_to_judge(shipped_model):
    """The model never saw a message this short: a word or two fill its whole vector, and
    "hi" alone read as pitch at 99%."""
    verdict = classify_one(parse_message(message("hi", "hi")), shipped_model)
    assert verdict.label == "unsure" and verdict.decided_by.startswith("too little text to judge")
    assert "too little text" in verdict.summary()


@pytest.mark.parametrize("body", ["Thanks!", "ok sounds good", "lunch at 1?", "Invoice attached"])
def test_a_short_everyday_note_stays_other(shipped_model, body):
    """Too little text keeps a short note from being a pitch or a partnership, not from
    being ordinary mail: no $Unsure keyword and no exit 12 on every "Thanks!"."""
    verdict = classify_one(parse_message(message("hi", body)), shipped_model)
    assert verdict.label == "other" and verdict.decided_by is None


def test_a_few_words_that_fire_a_rule_are_judged(shipped_model):
    verdict = classify_one(parse_message(message("seo", "guaranteed first page rankings, plans from $99")),
                           shipped_model)
    assert verdict.hits and verdict.label == "pitch" and verdict.decided_by is None


def test_user_rule_decides_or_nudges():
    scores = {"partnership": 0.6, "pitch": 0.3, "other": 0.1}
    label, _, why = decide(scores, [_user_rule("pitch", True)], T)
    assert label == "pitch" and "your rule MINE" in why
    label, nudged, why = decide(scores, [_user_rule("other", False, weight=3.0)], T)
    assert why is None and nudged["other"] > scores["other"]


def test_policy_lists_match_addresses_and_domains(shipped_model):
    policy = Policy(allow=frozenset({"friend@roastery.example"}), block=frozenset({"outsourcely.example"}))
    pitch = parse_message(message("hi", PITCH_TEXT, sender="Rep <rep@mail.outsourcely.example>"))
    verdict = classify_one(pitch, shipped_model, policy)
    assert verdict.label == "pitch" and verdict.decided_by == "sender is on your block list"
    friendly_pitch = parse_message(message("hi", PITCH_TEXT, sender="friend@roastery.example"))
    assert classify_one(friendly_pitch, shipped_model, policy).label != "pitch"


def test_config_file_policy(tmp_path, monkeypatch):
    rules = write(tmp_path / "rules.toml", "[[rule]]\nid='TONER'\nlabel='pitch'\ndecide=true\n"
                  "description='toner'\npatterns=['\\btoner\\b']\n")
    config = write(tmp_path / "config.toml", f"rules = '{rules}'\nallow = ['Ana@Fernhollow.example']\n"
                   "[thresholds]\nmin_confidence = 0.7\npartnership_guard = 0.1\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    policy = load_policy()
    assert policy.cut_offs(Thresholds(0.5, 0.4, 0.1)) == Thresholds(0.7, 0.1, 0.1)
    assert policy.sender_list(parse_message(message("x", "y"))) == "allow"
    assert [h.id for h in policy.user_hits(parse_message(message("cheap TONER", "y")))] == ["TONER"]


def test_the_config_rules_file_named_again_is_read_once_and_a_shared_id_names_both(tmp_path, monkeypatch):
    rules = write(tmp_path / "rules.toml", "[[rule]]\nid='TONER'\nlabel='pitch'\npatterns=['toner']\n")
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "c.toml", f"rules = '{rules}'\n")))
    assert [rule.id for rule in load_policy(rules_option=str(rules)).rules.rules] == ["TONER"]
    other = write(tmp_path / "more.toml", "[[rule]]\nid='TONER'\nlabel='other'\npatterns=['ink']\n")
    with pytest.raises(ConfigError, match=f"TONER is in both {rules} and {other}"):
        load_policy(rules_option=str(other))


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_bytes("\ufeff[thresholds]\nmin_confidence = 0.7\n".encode())
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(config))
    assert load_policy().cut_offs(Thresholds(0.5, 0.4, 0.1)).min_confidence == 0.7


def test_broken_config_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "c.toml", "allow = [")))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_policy()
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_policy()


@pytest.mark.parametrize("token, text", [
    ("subject:partner", 'subject word "partner"'),
    ("free", '"free"'),
    ("MONEY", '"a money amount"'),
    ("shape:tracking-pixel", "a tracking pixel"),
    ("rule:PRICE_PLANS", "rule PRICE_PLANS"),
    ("revenu share", '"revenu share"'),
    ("per MONEY", '"per <amount>"'),
    ("fwd:split", 'forwarded word "split"'),
])
def test_tokens_are_described_in_plain_words(token, text):
    assert describe_token(token) == text


@pytest.mark.parametrize("text", ["thresholds = 5\n", "allow = 'friend@x.example'\n",
                                  "[thresholds]\nmin_confidence = true\n"])
def test_config_of_the_wrong_shape_is_one_clear_error(tmp_path, monkeypatch, text):
    monkeypatch.setenv("PARTNERCHECK_CONFIG", str(write(tmp_path / "c.toml", text)))
    with pytest.raises(ConfigError):
        load_policy()


def test_every_tagged_token_the_features_emit_has_a_description():
    from conftest import DATA

    from partnercheck.reading.sources import Source
    from partnercheck.understanding.features import TOKEN_DESCRIPTIONS, extract
    from partnercheck.understanding.rules import builtin_rules

    emitted = {token for record in Source(str(DATA)) for token in extract(record, builtin_rules()).tokens
               if token.startswith(("header:", "shape:"))}
    assert emitted <= set(TOKEN_DESCRIPTIONS), emitted - set(TOKEN_DESCRIPTIONS)
    assert set(TOKEN_DESCRIPTIONS) <= emitted, "described but never emitted: " + str(set(TOKEN_DESCRIPTIONS) - emitted)


def test_the_feature_matrix_is_scikit_learns_tfidf_over_words_and_word_pairs(monkeypatch):
    """MailVectorizer learns the vocabulary and idf weights TfidfVectorizer would, over the
    tokens and their word pairs, except that a cap on the vocabulary cuts terms tied in
    frequency in alphabetical order; vectorize computes the matrix it would, in batches or
    at once."""
    from collections import Counter

    import numpy as np
    from conftest import DATA
    from sklearn.feature_extraction.text import TfidfVectorizer

    from partnercheck.learning import pipeline
    from partnercheck.reading.sources import Source
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules
    from partnercheck.understanding.vectors import terms

    rules = builtin_rules()
    docs = [extract(record, rules) for record in Source(str(DATA / "pitch"))][:150]
    ours = pipeline.MailVectorizer().fit(docs[:100])  # fewer than 60,000 terms: no cut
    theirs = TfidfVectorizer(analyzer=terms, min_df=2, max_features=60_000, sublinear_tf=True,
                             dtype=np.float32).fit(docs[:100])
    assert any(" " in term for term in ours.vocabulary_)
    assert ours.vocabulary_ == theirs.vocabulary_
    assert ours.idf_.dtype == np.float32 and np.array_equal(ours.idf_, theirs.idf_)
    words = len(ours.vocabulary_)
    whole = ours.transform(docs[100:])
    np.testing.assert_allclose(whole[:, :words].toarray(), theirs.transform(docs[100:]).toarray(),
                               rtol=1e-5, atol=1e-6)
    # Capped at 300 terms, ours keeps the most frequent of those in two messages or more,
    # ties broken alphabetically; scikit-learn keeps the same terms above the tie.
    capped = pipeline.MailVectorizer(max_features=300).fit(docs[:100])
    theirs = TfidfVectorizer(analyzer=terms, min_df=2, max_features=300, sublinear_tf=True).fit(docs[:100])
    frequency = Counter(term for doc in docs[:100] for term in terms(doc))
    messages = Counter(term for doc in docs[:100] for term in set(terms(doc)))
    eligible = sorted((t for t in messages if messages[t] >= 2), key=lambda t: (-frequency[t], t))
    assert set(capped.vocabulary_) == set(eligible[:300])
    cut = frequency[eligible[299]]
    assert frequency[eligible[300]] == cut, "no tie at the cut: the test would not test tie-breaking"
    assert {t for t in theirs.vocabulary_ if frequency[t] > cut} == {t for t in eligible[:300] if frequency[t] > cut}
    monkeypatch.setattr(pipeline, "BATCH", 7)
    batched = ours.transform(docs[100:])
    assert (batched != whole).nnz == 0 and np.array_equal(batched.indptr, whole.indptr)


def test_tokens_kept_as_numbers_learn_and_make_the_same_matrix_as_strings(monkeypatch):
    """Training keeps tokens as numbers (kept_tokens) and counts and looks them up as
    numbers: the vocabulary, its order, the idf weights, the cut at a tie and every value of
    the matrix are those of the same messages' string tokens."""
    import numpy as np
    from conftest import DATA

    from partnercheck.learning import kept_tokens, pipeline
    from partnercheck.reading.sources import Source
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    rules = builtin_rules()
    docs = [extract(record, rules) for label in ("partnership", "pitch")
            for record in list(Source(str(DATA / label)))[:120]]
    store = kept_tokens.TokenStore()
    kept = [store.keep(doc) for doc in docs]
    assert [doc.tokens for doc in kept] == [doc.tokens for doc in docs]
    monkeypatch.setattr(kept_tokens, "CHUNK", 17)  # counts merged across chunks
    for settings in ({}, {"max_features": 300}, {"min_df": 3, "max_df": 0.5}, {"min_df": 0}):
        strings = pipeline.MailVectorizer(**settings).fit(docs[:180])
        numbers = pipeline.MailVectorizer(**settings).fit(kept[:180])
        assert list(numbers.vocabulary_.items()) == list(strings.vocabulary_.items())
        assert np.array_equal(numbers.idf_, strings.idf_) and numbers.rule_index_ == strings.rule_index_
        ours, theirs = numbers.transform(kept[180:]), strings.transform(docs[180:])
        assert ours.dtype == theirs.dtype and (ours != theirs).nnz == 0
        assert np.array_equal(ours.indptr, theirs.indptr) and np.array_equal(ours.indices, theirs.indices)
    mixed = kept[180:200] + docs[200:]  # corrections beside the kept corpus: looked up as strings
    assert (numbers.transform(mixed) != strings.transform(docs[180:])).nnz == 0


def test_names_of_sender_and_recipients_are_not_tokens_but_words_of_a_role_are():
    """"Hi Sam" to Sam Carter says who reads the mail, not what it asks; "partnerships" in a
    mailbox's name ("Partnerships <partnerships@...>") is a word the text still counts."""
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    raw = (b"From: Nina Falk <nina@a.example>\nTo: Sam Carter <scarter@b.example>, "
           b"Partnerships Team <partnerships@b.example>, Investor Relations <ir@b.example>\n"
           b"Subject: Sam, a partnership\n\n"
           b"Hi Sam and the partnerships team, Nina here: a partnership for your team? Our investor liked it.\n")
    tokens = set(extract(parse_message(raw), builtin_rules()).tokens)
    assert not {"sam", "carter", "nina", "falk", "subject:sam"} & tokens
    assert {"partnership", "team", "investor", "subject:partnership"} <= tokens  # "investor" as "investors"


_RELAYED = (b"From: Ann Lee <ann@a.example>\nTo: Bo Ray <bo@b.example>\nSubject: {subject}\n\n"
            b"Bo, {note}\n\n{marker}\n*From:* Cara Voss <cara@c.example>\nDate: Mon, 3 Jun 2024 09:00:00 +0000\n"
            b"Subject: a joint workshop\nCc: Dee Ash <dee@d.example>,\n Eve Lund <eve@e.example>\n\n"
            b"We would host the workshop and split the costs with your team.\n"
            b"A: each side keeps its own leads.\n\nBest,\nCara Voss\n")


@pytest.mark.parametrize("subject, marker", [
    (b"Fwd: a joint workshop", b"-----Original Message-----"),
    (b"a joint workshop", b"---------- Forwarded message ---------"),
    (b"a joint workshop", b"Begin forwarded message:"),
])
def test_a_forwarded_proposal_is_read_under_its_own_tag_and_a_quoted_reply_is_not(subject, marker):
    """What a forward carries decides with the relayer's note (``fwd:`` words, not the
    sender's own and not read by the rules); its marker and header block, and the names
    they give, are not words. A reply's quotes stay unread, so that a reply quoting a pitch
    is not read as one."""
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    raw = _RELAYED.replace(b"{subject}", subject).replace(b"{marker}", marker)
    extracted = extract(parse_message(raw.replace(b"{note}", b"they asked me to pass this on.")), builtin_rules())
    tokens = set(extracted.tokens)
    assert {"fwd:host", "fwd:split", "fwd:cost", "fwd:workshop", "fwd:each", "fwd:lead"} <= tokens
    assert not {"host", "split"} & tokens
    assert not {f"fwd:{word}" for word in ("cara", "voss", "dee", "ash", "eve", "lund", "date", "jun", "from",
                                           "messag", "origin", "forward", "begin", "EMAIL")} & tokens
    assert not any(hit.id == "SHARED_COSTS" for hit in extracted.hits)
    reply = raw.replace(b"Fwd: ", b"Re: ").replace(marker, b"On Monday, Cara Voss wrote:").replace(b"\n\nWe", b"\n> We")
    tokens = extract(parse_message(reply.replace(b"{note}", b"sounds good.")), builtin_rules()).tokens
    assert not any(token.startswith("fwd:") or token in ("host", "split") for token in tokens)


def test_a_message_attached_whole_is_read_as_forwarded_whatever_the_subject():
    """"Forward as attachment" carries the proposal as a ``message/rfc822`` part, under the
    relayer's own subject: its words are ``fwd:`` words, as an inline forward's are, and its
    headers give no words; a message without such a part, under the same subject, has none."""
    from partnercheck.understanding.features import extract
    from partnercheck.understanding.rules import builtin_rules

    head = (b"From: Ann Lee <ann@a.example>\nTo: Bo Ray <bo@b.example>\nSubject: have a look at this\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
            b"--b1\nContent-Type: text/plain\n\nBo, they asked me to pass this on.\n\n")
    inner = (b"--b1\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n"
             b"From: Cara Voss <cara@c.example>\nSubject: a joint workshop\nContent-Type: text/plain\n\n"
             b"We would host the workshop and split the costs with your team.\n\nBest,\nCara Voss\n")
    record = parse_message(head + inner + b"--b1--\n")
    assert record.body == "Bo, they asked me to pass this on." and "split the costs" in record.attached
    tokens = set(extract(record, builtin_rules()).tokens)
    assert {"fwd:host", "fwd:split", "fwd:cost", "fwd:workshop"} <= tokens
    assert not {"host", "split"} & tokens and not {"fwd:cara", "fwd:voss", "fwd:joint"} & tokens
    alone = parse_message(head + b"--b1--\n")
    assert alone.attached == "" and not any(t.startswith("fwd:") for t in extract(alone, builtin_rules()).tokens)


def test_a_forward_with_a_note_of_one_word_is_judged_by_what_it_carries(shipped_model):
    """"FYI" above a forwarded proposal is not too little text: the forwarded words count."""
    raw = _RELAYED.replace(b"{subject}", b"Fwd:").replace(
        b"{marker}", b"---------- Forwarded message ---------").replace(b"Bo, {note}", b"FYI")
    verdict = classify_one(parse_message(raw), shipped_model)
    assert "too little text" not in verdict.summary()
    assert all(not clue.term.endswith(('"we"', '"the"', '"and"')) for clue in verdict.clues_for + verdict.clues_against)
