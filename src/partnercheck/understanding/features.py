"""From an email record to the tagged tokens and rule hits the model reads.

In the manner of SpamBayes' tokenizer, every token says where it came from:

============================  ===============================================
``partner``                   a stemmed word of the new body text
``subject:partner``           a stemmed word of the subject
``fwd:partner``               a stemmed word of the message a forward carries
``url:calendar``              a word from a link's path or host name
``header:list-unsubscribe``   how the mail was sent (bulk headers, a real or fake reply)
``shape:html-only``           how the mail is built (tracking pixel, booking link, ...)
``act:we-host``               who does what: the sender's side or the reader's, and a verb
============================  ===============================================

Numbers, money amounts, percentages, e-mail addresses and URLs become placeholder words
(``MONEY``, ``PCT``, ``NUM``, ``EMAIL``, ``URL``: upper case, which normalised text never
is) so the model learns that a price is quoted, not which price. Sender addresses and
domains and Message-IDs are deliberately not tokens: they identify a corpus's authors, not
what a message asks of its reader.
Quoted replies contribute only their share of the text (``shape:mostly-quoted``), so a reply
that quotes a pitch is not read as one; signatures reach only the rules. On the first three
corpus rounds, signature words and word pairs as tokens left cross-validated macro-F1 at
0.974 and lowered accuracy on the real-mail sample from 0.85 to 0.82: they told the
corpus's writers apart more than what a message asks of its reader. Word pairs came back,
as terms of the matrix, with a corpus two and a half times as large and far more varied
(:mod:`partnercheck.understanding.vectors` has the figures).

The message a forward carries is read under its own tag (``fwd:``), never by the rules: a
proposal relayed by an introducer and a pitch a colleague passes on with "what do you
think?" both carry a proposal, and only the relayer's own words, read as usual, and what was
forwarded together tell them apart. Unread, forwarded mail was judged by the relayer's note
alone: leaving out the corpus's 307 forwarded messages in training, a model labelled 61% of
them right. Read as ``fwd:`` words, over training seeds 0 to 3 (corpus rounds 1 to 9):
held-out macro-F1 0.957-0.958 to 0.964, real mail 0.909-0.916 to 0.912-0.915, its ordinary
mail labelled pitch 4-5 of 65 to 4 (no real message there is a forward: the other words
weigh a little differently). Read as the sender's own words instead, forwarded mail left out
of training scored 83%, but pitch words then came as often in colleagues' ordinary mail
(``other``) and real mail scored 0.888-0.922. The forward's marker and header lines, and the
names they give, were read as words at first (``fwd:messag`` in 343 corpus messages, a mail
program's mark); without them, on rounds 1 to 11 with seed 0, real mail and held-out scores
did not move (0.925 and 0.960).
"""

from __future__ import annotations

import functools
import importlib.abc
import re
import sys
from contextlib import contextmanager
from itertools import filterfalse

from ..reading.mail import EmailRecord
from ..reading.normalize import normalize
from .rules import RuleHit, RuleSet

#: Words that carry no content on their own; clues never consist of them alone, and a name
#: made of them ("All of Us") is not a name.
FUNCTION_WORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here hers herself him himself his how i if in into is it its itself just may me might "
    "more most must my myself no nor not now of off on once only or other our ours ourselves out over own "
    "same shall she should so some such than that the their theirs them themselves then there these they "
    "this those through to too under until up upon us very was we were what when where which while who "
    "whom whose why will with would you your yours yourself yourselves".split()
)
#: Words of display names and mailbox names that say what a mailbox is for, not who reads
#: it ("Partnerships Team <partnerships@...>", "Trading Desk"), compared by stem, so plurals
#: count too: they stay tokens where the text uses them. Every other word of a sender's or
#: recipient's name is a name. A longer list (brand, collaboration, affiliate, advertising,
#: growth, influencer, agency, vendor, talent and 40 more) lowered real-mail macro-F1 over
#: training seeds 0-3 from 0.912 to 0.899 on average (0.895-0.908 against 0.908-0.917).
_ROLE_WORDS = frozenset(
    "accounts admin administrator assistant billing board business care committee community "
    "company contact council crew customer customers department deputy desk dev developers "
    "development director editor editorial editors engineering enquiries events everyone executive "
    "finance folks founder founders general group head hello help hq hr inbox info information "
    "investors jobs leadership legal list mail maintainers management manager managers marketing "
    "media members news newsletter office officer operations ops organisers organizers owner "
    "owners partner partners partnership partnerships people practice press procurement product "
    "program programme projects reader readers registered relations research sales secretary "
    "service services site sponsors sponsorship staff student students subscriber subscribers "
    "support team teams user users volunteers webmaster".split()
)


@functools.lru_cache(maxsize=1)
def _role_stems() -> frozenset[str]:
    """The stems of :data:`_ROLE_WORDS`, made on first use (stemming loads nltk), outside
    the cache of words met in mail, which a model keeps (:func:`known_stems`)."""
    return frozenset(map(snowball().stem, _ROLE_WORDS))


_stemmer = None
_STEMS: dict[str, str] = {}
_MAX_STEM_CACHE = 200_000

_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+")
# Both begin only where a run of their first class begins ("(?<!...)"): tried from every
# character of a long run that ends in no "@" or "%", they took time quadratic in the run
# (33 s for 40,000 digits and one "5%"). The leftmost match starts there anyway.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SIGN_MONEY = re.compile(r"[$€£]\s?\d[\d,.]*\s?[km]?\b")
# "\b\d..." with the boundary written after the digit ("(?<!\w.)": no word character
# before it), so that re can skip from digit to digit: the same matches. An amount is at
# most 40 digits and separators long: unbounded, every digit of a long run such as
# "1,1,1,..." began a scan of the rest (5.7 s for 20,000 characters).
_WORD_MONEY = re.compile(r"\d(?<!\w.)[\d,.]{0,40}\s?(?:[km]\s)?(?:usd|eur|gbp|dollars|euros|pounds|€)(?!\w)")
# "(?<!\d)\d+" written as a digit with the look-behind after it, as above: the same matches,
# and re skips from digit to digit (46 to 20 µs on a corpus message with a "%").
_PERCENT = re.compile(r"\d(?<!\d\d)\d*(?:[.,]\d+)?\s?%")
# Starting with the digit class rather than \b lets the regex engine skip ahead quickly;
# a number glued to letters ("b2b") loses its digits, which carry nothing anyway.
_NUMBER = re.compile(r"\d[\d,.:/-]*")
_TOKEN = re.compile(r"[^\W\d_]{2,}")
# The same for text that is all ASCII, where a letter is [a-zA-Z]: 40% faster than the
# Unicode category test.
_ASCII_TOKEN = re.compile(r"[a-zA-Z]{2,}")
_SPACED_APOSTROPHE = re.compile(r"(\w) ' (s|t|ll|re|ve|d|m)\b")
_SPACED_CURRENCY = re.compile(r"([$€£]) (?=\d)")
_SPACED_DIGITS = re.compile(r"(\d) ([,.]) (\d)")
_SPACED_PUNCTUATION = re.compile(r" ([,.;:!?%)])(?= |$)", re.M)
# "\b(we|i|...)" written with the boundary after the first letter, as "(?<!\w.)": the same
# matches, but a pattern that starts with literal letters lets Python's re skip to the next
# w, i, o or y instead of trying the whole pattern at every position (22 to 15 µs a message).
_ACTION = re.compile(
    r"(w(?<!\w.)e|i(?<!\w.)|o(?<!\w.)ur team|y(?<!\w.)ou|y(?<!\w.)our team|y(?<!\w.)our company)(?:'d|'ll|'re| would| will| can| could| may| might| should)?"
    r"(?: (?:love|like|want|be (?:happy|glad|able)|are (?:happy|glad|able)|am (?:happy|glad|able)) to)?"
    r"(?: also| just| really| then| both)? ([a-z]{3,})\b"
)
_NOT_ACTIONS = frozenset("are were was have has had been being the that this these those and but not also all "
                         "just really".split())
_URL_WORDS = re.compile(r"[a-z]{3,}")
_BOOKING = re.compile(r"calendly|calendar|/book|booking|schedul|meetings?[./]|/meet\b|chili|savvycal|tidycal|zcal")
_UNSUBSCRIBE = re.compile(r"unsub|opt-?out|optout|preferences|remove")
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|r)\s*(?:\[\d+\])?\s*:", re.I)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|wg|tr|rv)\s*:", re.I)
_FORWARD_MARKER = re.compile(r"^\W*(?:-+ ?forwarded message|begin forwarded message)", re.I)
#: A line that opens a forwarded or pasted message, in the mail programs' languages.
_PASTED_MARKER = re.compile(
    r"^[\s>*-]*(?:forwarded message|original message|begin forwarded message|mensaje (?:original|reenviado)"
    r"|message (?:d'origine|transf[ée]r[ée])|urspr[üu]ngliche nachricht|weitergeleitete nachricht"
    r"|mensagem (?:original|encaminhada))\b[\s:*-]*$", re.I)
#: A header line of the block a forward shows above the message it carries; group 1 names
#: the field, group 2 holds its value.
_FORWARD_HEADER = re.compile(
    r"^[\s>*]*(from|to|cc|sent|date|subject|reply-to|von|an|gesendet|datum|betreff|de|para|enviado|fecha"
    r"|asunto|envoy[ée]|[àa]|objet|data|assunto)[\s*]*:(.*)$", re.I)
_DOMAIN = re.compile(r"@[\w.-]+")  # an address's domain: the local part may be a name
#: Header fields that name people: their names are not tokens, as the sender's are not.
_PEOPLE_FIELDS = frozenset(("from", "to", "cc", "reply-to", "von", "an", "de", "para", "à", "a"))
_URL_STOP = frozenset({"http", "https", "www", "com", "org", "net", "html", "php", "example", "test", "index"})

#: Body text beyond this is not tokenised: the opening of a mail says what it wants.
MAX_TOKEN_CHARS = 20_000


class Extracted:
    """What the model reads of one message: its tokens and its rule hits."""

    __slots__ = ("tokens", "hits")

    def __init__(self, tokens: list[str], hits: list[RuleHit]) -> None:
        self.tokens = tokens
        self.hits = hits


def extract(record: EmailRecord, rules: RuleSet, sentences: bool = False) -> Extracted:
    """Tokens and rule hits for one record; the hits hold the sentence around each match
    only when ``sentences`` (for an explanation)."""
    subject = untokenise(normalize(record.subject))
    body = _readable(record.body)
    signature = normalize(record.signature[:2000])
    hits = rules.match(subject, f"{body}\n{signature}" if signature else body, sentences)
    names = _name_stems(record)
    tokens = ["subject:" + w for w in _words(subject) if w not in names]
    words = _words(body)
    # Most bodies never use a name: then the whole list is kept, checked in one C-level pass;
    # else the names are dropped by filterfalse, also at C level (twice as fast as a loop).
    tokens.extend(words if names.isdisjoint(words) else filterfalse(names.__contains__, words))
    tokens.extend(_action_tokens(body))
    forwarded, forwarded_names = _forwarded(record)
    if forwarded:
        names |= forwarded_names
        tokens.extend("fwd:" + w for w in _words(forwarded) if w not in names)
    tokens.extend(_link_tokens(record.links))
    tokens.extend(_header_tokens(record))
    tokens.extend(_shape_tokens(record))
    return Extracted(tokens, hits)


def untokenise(text: str) -> str:
    """Undo the spacing of text that went through a word tokeniser, as exported research
    corpora and some gateways do: ``i ' ll pay $ 5 , 000 .`` reads ``i'll pay $5,000.``.

    Rules are written for ordinary punctuation, so without this a tokenised "we'd",
    "$5,000" or "10%" never matches them. Runs only on text that shows the spacing.
    """
    if " ' " not in text and " , " not in text and "$ " not in text:
        return text
    text = _SPACED_APOSTROPHE.sub(r"\1'\2", text)
    text = _SPACED_CURRENCY.sub(r"\1", text)
    text = _SPACED_DIGITS.sub(r"\1\2\3", text)
    return _SPACED_PUNCTUATION.sub(r"\1", text)


def _readable(text: str) -> str:
    """``text`` normalised, tokenised spacing undone, cut at :data:`MAX_TOKEN_CHARS` after
    normalising (invisible characters do not count)."""
    if len(text) > MAX_TOKEN_CHARS:
        return untokenise(normalize(text[:4 * MAX_TOKEN_CHARS])[:MAX_TOKEN_CHARS])
    return untokenise(normalize(text))


def _forwarded(record: EmailRecord) -> tuple[str, frozenset[str]]:
    """The message a forward carries, normalised, and the stems of the names its header
    blocks give: the quoted text of a message whose subject says it is forwarded (``Fwd:``,
    ``FW:``, ``WG:``, ...) or whose quoted text opens with a forwarded-message marker, else
    the messages it has attached whole, whatever its subject; ("", no names) for a reply,
    whose quotes stay unread.

    Marker lines ("---------- Forwarded message ---------") and the header block below each
    (From, To, Date, Subject, ... up to the first blank line or line of text, with wrapped
    continuation lines) are not the message: they say which mail program forwarded it and
    who wrote to whom, and their names, also in the carried message's sign-off, are not
    tokens."""
    quoted = record.quoted
    if quoted and (_FORWARD_SUBJECT.match(record.subject) or _FORWARD_MARKER.match(quoted)):
        carried = quoted
    else:
        carried = record.attached
    if not carried:
        return "", frozenset()
    text = _readable(carried)
    kept, people = [], []
    in_header, field = True, ""
    for line in text.split("\n"):
        if _PASTED_MARKER.match(line):
            in_header, field = True, ""
            continue
        if in_header:
            header = _FORWARD_HEADER.match(line)
            if header:
                field = header.group(1).lower()
                if field in _PEOPLE_FIELDS:
                    people.append(_DOMAIN.sub(" ", header.group(2)))
                continue
            if field and line[:1] in (" ", "\t") and line.strip():  # a wrapped header line
                if field in _PEOPLE_FIELDS:
                    people.append(_DOMAIN.sub(" ", line))
                continue
            if not line.strip():
                in_header = not field  # blank lines before the block, or the one that ends it
                continue
            in_header = False
        kept.append(line)
    return "\n".join(kept), _stems_of_names(people)


def _action_tokens(text: str) -> list[str]:
    """Who does what: ``act:we-host``, ``act:you-pay``, one per side and verb.

    "Who pays whom, and what does each side bring?" is a question about subjects and verbs,
    which a bag of words loses: "we'll host the meetup" and "you host our meetup" hold the
    same words. The sender's side (we, our team, i) and the reader's (you, your team) are
    kept apart, with the verb after any modal ("we would love to host" is ``act:we-host``).
    """
    tokens = []
    for side, verb in _ACTION.findall(text):
        if verb not in _NOT_ACTIONS:
            tokens.append(f"act:{'you' if side.startswith('you') else 'we'}-{_STEMS.get(verb) or _stem(verb)}")
    return tokens


def _name_stems(record: EmailRecord) -> frozenset[str]:
    """Stems of the sender's and recipients' names: a name says who wrote to whom in this
    corpus, never what a message asks of its reader, so it is not a token."""
    parts = [record.from_name, record.from_addr.partition("@")[0]]
    parts.extend(address.partition("@")[0] for address in record.to[:5])
    parts.extend(record.to_names[:5])
    return _stems_of_names(parts)


def _stems_of_names(parts: list[str]) -> frozenset[str]:
    """Stems of the words of names and addresses ("Ana Lima <ana.lima@...>"), but for
    function words and the words that say what a mailbox is for."""
    if not parts:
        return frozenset()
    words = _TOKEN.findall(normalize(" ".join(parts).replace(".", " ").replace("_", " ")))
    stems = {_STEMS.get(w) or _stem(w) for w in words if w not in FUNCTION_WORDS}
    return frozenset(stems - _role_stems())


def _words(text: str) -> list[str]:
    if not text:
        return []
    # Placeholders are upper case so that they cannot collide with (lower-cased) words.
    # Each substitution runs only on text that can contain what it replaces.
    if "http" in text or "www." in text:
        text = _URL.sub(" URL ", text)
    if "@" in text:
        text = _EMAIL.sub(" EMAIL ", text)
    if "$" in text or "£" in text:
        text = _SIGN_MONEY.sub(" MONEY ", text)
    if "usd" in text or "eur" in text or "gbp" in text or "dollar" in text or "pound" in text or "€" in text:
        text = _WORD_MONEY.sub(" MONEY ", text)
        if "$" in text or "€" in text or "£" in text:  # what _SIGN_MONEY needs to match
            text = _SIGN_MONEY.sub(" MONEY ", text)
    if "%" in text:
        text = _PERCENT.sub(" PCT ", text)
    text = _NUMBER.sub(" NUM ", text)
    words = (_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text)
    stems = list(map(_STEMS.get, words))  # cached stems in one C-level pass; new words below
    if not all(stems):  # a word not stemmed yet (None; all() tests that faster than "None in")
        stems = [stem or _stem(word) for word, stem in zip(words, stems)]
    return stems


def seed_stems(stems: dict[str, str], check: int = 200) -> bool:
    """Fill the stem cache from a model's own word -> stem map, so that worker processes do
    not stem the training vocabulary again (about 1 s a process). Only if every one of a
    sample of ``check`` entries is what this process's stemmer gives (a model made with
    another nltk might stem differently); returns whether the cache was filled. ``check=0``
    trusts the map without loading nltk: training does so with the stems its own child
    process made (:mod:`~partnercheck.learning.lean_memory`)."""
    if not stems:
        return False
    words = sorted(stems)
    if check:
        step = max(1, len(words) // check)
        if any((word if word.isupper() else snowball().stem(word)) != stems[word] for word in words[::step]):
            return False
    for word in words:
        if len(_STEMS) >= _MAX_STEM_CACHE:
            break
        _STEMS.setdefault(word, stems[word])
    return True


def known_stems() -> dict[str, str]:
    """Word -> stem for every word stemmed so far in this process (a memo, never read back
    as meaning: a model keeps the stems of its training words to show them as words)."""
    return dict(_STEMS)


#: Every tagged token the features can emit, in plain words; ``rule:`` columns, tagged
#: words and placeholders are described by :func:`describe_token` from the parts below.
TOKEN_DESCRIPTIONS = {
    "header:list-unsubscribe": "a List-Unsubscribe header (bulk mail)",
    "header:list-id": "a mailing-list header",
    "header:bulk": "a Precedence: bulk header",
    "header:reply": "a reply in an existing thread",
    "header:reply-without-thread": "a \"Re:\" subject with no thread behind it",
    "header:threaded": "In-Reply-To/References headers (part of a thread)",
    "header:forward": "a forwarded message",
    "shape:html-only": "HTML-only mail",
    "shape:tracking-pixel": "a tracking pixel",
    "shape:attachment": "an attachment",
    "shape:mostly-quoted": "mostly quoted text",
    "shape:some-quoted": "some quoted text",
    "shape:short": "a very short message",
    "shape:long": "a long message",
    "shape:booking-link": "a meeting-booking link",
    "shape:unsubscribe-link": "an unsubscribe link",
    "shape:many-links": "many links",
}
_TAGS = {"subject": "subject word", "url": "link word", "fwd": "forwarded word"}
_PLACEHOLDERS = {"MONEY": "a money amount", "PCT": "a percentage", "NUM": "a number",
                 "EMAIL": "an e-mail address", "URL": "a link"}
_IN_PAIRS = {"MONEY": "<amount>", "PCT": "<n>%", "NUM": "<number>", "EMAIL": "<address>", "URL": "<link>"}


def describe_token(token: str, surface_word=lambda stem: stem) -> str:
    """A model token in plain words: ``subject:partner`` is 'subject word "partner"'.
    ``surface_word`` turns a stem into a word people recognise (the model's own map)."""
    if token in TOKEN_DESCRIPTIONS:
        return TOKEN_DESCRIPTIONS[token]
    if token.startswith("rule:"):
        return f"rule {token[5:]}"
    if " " in token:  # a word pair: '"revenue share"', '"per <amount>"'
        return '"' + " ".join(_IN_PAIRS.get(word) or surface_word(word) for word in token.split(" ")) + '"'
    if token.startswith("act:"):
        side, _, verb = token[4:].partition("-")
        return f'"{side} {surface_word(verb)}"'
    tag, _, word = token.partition(":")
    if word and tag in _TAGS:
        return f'{_TAGS[tag]} "{_PLACEHOLDERS.get(word) or surface_word(word)}"'
    return '"' + (_PLACEHOLDERS.get(token) or surface_word(token)) + '"'


def _stem(word: str) -> str:
    """The Snowball stem of ``word``; stems are cached, as a mailbox reuses few thousand words."""
    stem = word if word.isupper() else snowball().stem(word)
    if len(_STEMS) < _MAX_STEM_CACHE:
        _STEMS[word] = stem
    return stem


def _link_tokens(links: list[str]) -> list[str]:
    tokens = set()
    for link in links[:30]:
        lowered = link.lower()
        tokens.update("url:" + w for w in _URL_WORDS.findall(lowered) if w not in _URL_STOP)
        if _BOOKING.search(lowered):
            tokens.add("shape:booking-link")
        if _UNSUBSCRIBE.search(lowered):
            tokens.add("shape:unsubscribe-link")
    if len(links) > 5:
        tokens.add("shape:many-links")
    return sorted(tokens)


def _header_tokens(record: EmailRecord) -> list[str]:
    headers = record.headers
    tokens = []
    if "list-unsubscribe" in headers:
        tokens.append("header:list-unsubscribe")
    if "list-id" in headers:
        tokens.append("header:list-id")
    if headers.get("precedence", "").lower() in ("bulk", "list", "junk"):
        tokens.append("header:bulk")
    threaded = "in-reply-to" in headers or "references" in headers
    if _REPLY_SUBJECT.match(record.subject):
        tokens.append("header:reply" if threaded else "header:reply-without-thread")
    elif threaded:
        tokens.append("header:threaded")
    if _FORWARD_SUBJECT.match(record.subject):
        tokens.append("header:forward")
    return tokens


def _shape_tokens(record: EmailRecord) -> list[str]:
    tokens = []
    if record.html_only:
        tokens.append("shape:html-only")
    if record.tracking_pixel:
        tokens.append("shape:tracking-pixel")
    if record.attachments:
        tokens.append("shape:attachment")
    new, quoted = len(record.body), len(record.quoted)
    if quoted:
        tokens.append("shape:mostly-quoted" if quoted > new else "shape:some-quoted")
    if new < 300:
        tokens.append("shape:short")
    elif new > 2500:
        tokens.append("shape:long")
    return tokens


def snowball():
    """nltk's English Snowball stemmer, which needs no downloaded nltk data.

    ``import nltk`` pulls in scikit-learn and scipy.stats for optional features of its own
    (1.1 s here), which the stemmer never uses. When neither is loaded yet, they are kept
    out while nltk loads (0.35 s): nltk treats both as optional, and only its own
    scikit-learn classifier wrapper and Fisher's exact test go without them, in that
    process. This is what makes a cold ``partnercheck filter`` start in under a second.
    """
    global _stemmer
    if _stemmer is None:
        with _without(("sklearn", "scipy.stats")):
            from nltk.stem.snowball import SnowballStemmer
        _stemmer = SnowballStemmer("english")
    return _stemmer


class _Skip(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name, path, target=None):
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ImportError(f"{name} is not loaded while nltk loads")
        return None


@contextmanager
def _without(names: tuple[str, ...]):
    missing = tuple(n for n in names if n not in sys.modules)
    if not missing:
        yield
        return
    finder = _Skip(missing)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
