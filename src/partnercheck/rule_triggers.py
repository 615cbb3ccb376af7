"""Cheap pre-checks that let most rule patterns skip most texts.

Python's ``re`` scans a text fast only when a pattern starts with a literal; a pattern that
starts with ``\\b`` or an alternation costs about 10 µs per kilobyte of text, and a hundred
of them cost more than all the rest of classifying a message. So for each pattern this
module lists every literal string a match can be, as far as that can be listed, picks from
each the rarest whole word (``\\b(?:our|your) budget\\b`` needs "budget"), and keeps the set
of those words as the pattern's trigger. A pattern none of whose trigger words is in the
text's word set cannot match and is not run. A pattern that cannot be listed (it starts
with ``\\d+`` or ``.``, or has too many spellings) is always run.
"""

from __future__ import annotations

import re
from re import _constants as C
from re import _parser

#: A word, as the pre-check sees it: a run of letters and digits.
WORD = re.compile(r"[^\W_]+")
_MAX_SPELLINGS = 20000
_BOUNDARY = "\x00"
_GAP = "\x01"  # stands for characters the pattern does not spell out
#: Words too common in mail to be good triggers: a pattern triggered by "you" or "month"
#: runs on nearly every message. Taken from the words found in most messages of the corpus.
_COMMON = frozenset(
    "a an and are as at be by can could did do for from get had has have i if in is it its "
    "just me my no not of on or our so that the their them they this to us was we were what "
    "will with would you your "
    "about account after all also any anything back best both bring build business call chat connect "
    "company cost customers day each either email even every fee first free give good great "
    "help here how keep know last let like list look make many meeting money month monthly more most "
    "much need new next nothing now off offer one only open other out over partner pay people "
    "price reply review sales see send set share short side small some split start take team "
    "than thanks then there these think time together two up use very want way week well when "
    "where which who why work year".split()
)


#: Matches longer than this are searched for over the whole text, not in windows.
_MAX_WINDOW = 400


class _Unlistable(Exception):
    pass


def word_starts(text: str, word: str) -> list[int]:
    """Where ``word`` starts a word in ``text`` ("we" in "we can", not in "answer")."""
    found = []
    at = text.find(word)
    while at != -1:
        if at == 0 or not text[at - 1].isalnum():
            found.append(at)
        at = text.find(word, at + len(word))
    return found


class TriggeredPattern:
    """A compiled pattern that runs only where its trigger words occur.

    When every match must start with one of a few words of two letters or more
    (``\\b(?:plans?|pricing) ...``), the pattern is tried anchored at each place one of them
    occurs: about half a microsecond a try, against some 18 µs to scan a 2 KB text for a
    pattern that starts with ``\\b``. Otherwise it is searched in windows around its
    trigger words, or over the whole text when they are everywhere.
    """

    __slots__ = ("regex", "triggers", "leading", "width")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        parsed = _parser.parse(pattern)
        if _ignores_case(parsed):
            # Spellings would be listed as written, not in every case: search everywhere.
            self.triggers = self.leading = self.width = None
            return
        spellings = _spellings(pattern)
        self.triggers = _triggers(spellings)
        self.leading = _leading_words(spellings)
        width = parsed.getwidth()[1]
        # A pattern that starts with a literal is scanned fast by the regex engine itself, and
        # one that looks around may look past a window's edge: both are searched whole.
        scans_fast = len(parsed) > 0 and parsed[0][0] is C.LITERAL
        looks_around = _uses(parsed, (C.ASSERT, C.ASSERT_NOT))
        self.width = width if width <= _MAX_WINDOW and not scans_fast and not looks_around else None

    def finditer(self, text: str, words: set[str], starts: dict[str, list[int]]):
        """Matches in ``text``, whose words (:data:`WORD`) are ``words``. ``starts`` caches,
        for the same text, where each word starts: patterns share their first words."""
        if self.triggers is None:
            return self.regex.finditer(text)
        if self.leading is not None:
            return self._anchored(text, self.leading & words, starts)
        if self.width is None:
            return self.regex.finditer(text)
        return self._in_windows(text, self.triggers & words)

    def _anchored(self, text: str, leading: frozenset[str], starts: dict[str, list[int]]):
        match = self.regex.match
        places: list[int] = []
        for word in leading:
            found = starts.get(word)
            if found is None:
                found = starts[word] = word_starts(text, word)
            places.extend(found)
        if not places:
            return ()
        places.sort()
        hits = []
        last_end = 0
        for at in places:
            if at >= last_end:
                hit = match(text, at)
                if hit is not None:
                    last_end = hit.end()
                    hits.append(hit)
        return hits

    def _in_windows(self, text: str, present: frozenset[str]):
        width, size = self.width, len(text)
        spans = []
        for word in present:
            at = text.find(word)
            while at != -1:
                spans.append((max(0, at - width), min(size, at + len(word) + width)))
                at = text.find(word, at + 1)
        if not spans:
            return ()
        spans.sort()
        begin, end = spans[0]
        merged = []
        for next_begin, next_end in spans[1:]:
            if next_begin <= end:
                end = max(end, next_end)
            else:
                merged.append((begin, end))
                begin, end = next_begin, next_end
        merged.append((begin, end))
        if sum(e - b for b, e in merged) > size // 2:
            return self.regex.finditer(text)
        hits = []
        last_end = 0
        for begin, end in merged:
            for found in self.regex.finditer(text, max(begin, last_end), end):
                last_end = found.end()
                hits.append(found)
        return hits


def trigger_words(pattern: str) -> frozenset[str] | None:
    """Words of which a text must contain one for ``pattern`` to match, or ``None``."""
    return _triggers(_spellings(pattern))


def _spellings(pattern: str) -> set[str] | None:
    try:
        return _expand(list(_parser.parse(pattern)), {""})
    except (_Unlistable, re.error, RecursionError):
        return None


def _triggers(spellings: set[str] | None) -> frozenset[str] | None:
    if spellings is None:
        return None
    triggers = set()
    for spelling in spellings:
        word = _rarest_whole_word(spelling)
        if word is None:
            return None
        triggers.add(word)
    return frozenset(triggers)


def _leading_words(spellings: set[str] | None) -> frozenset[str] | None:
    """The words every match starts with, if each spelling starts with a whole word of two
    letters or more right after a word boundary; else ``None``."""
    if spellings is None:
        return None
    leading = set()
    for spelling in spellings:
        match = WORD.match(spelling, 1) if spelling.startswith(_BOUNDARY) else None
        if match is None or len(match.group()) < 2:
            return None
        end = match.end()
        if end == len(spelling) or spelling[end] == _GAP:
            return None
        leading.add(match.group())
    return frozenset(leading) if len(leading) <= 40 else None


def _rarest_whole_word(spelling: str) -> str | None:
    """The most telling word of one spelling that is surely whole in any text it matches.

    Words under three letters are never chosen: finding them in a text would find them
    inside every other word.
    """
    best = None
    for match in WORD.finditer(spelling):
        start, end = match.span()
        if start == 0 or end == len(spelling) or _GAP in (spelling[start - 1], spelling[end]):
            continue  # the word may run on into letters the pattern does not spell out
        word = match.group(0)
        score = (word not in _COMMON, len(word))
        if len(word) >= 3 and (best is None or score > best[0]):
            best = (score, word)
    return None if best is None else best[1]


def _expand(items: list, spellings: set[str]) -> set[str]:
    for op, arg in items:
        spellings = _step(op, arg, spellings)
        if len(spellings) > _MAX_SPELLINGS:
            raise _Unlistable
    return spellings


def _step(op, arg, spellings):
    if op is C.AT:
        # Only \b marks a word boundary; \B and anchors say nothing a spelling can show.
        return _append(spellings, [_BOUNDARY if arg is C.AT_BOUNDARY else _GAP])
    if op is C.LITERAL:
        return _append(spellings, [chr(arg)])
    if op is C.IN:
        return _append(spellings, _class_chars(arg))
    if op is C.SUBPATTERN:
        return _expand(list(arg[-1]), spellings)
    if op is C.BRANCH:
        result = set()
        for alternative in arg[1]:
            result |= _expand(list(alternative), spellings)
        return result
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        low, high, body = arg
        if high > 3:
            return _append(spellings, [_GAP])
        result = set(spellings) if low == 0 else set()
        current = spellings
        for count in range(1, high + 1):
            current = _expand(list(body), current)
            if count >= low:
                result |= current
        return result
    return _append(spellings, [_GAP])


def _ignores_case(parsed) -> bool:
    if parsed.state.flags & re.IGNORECASE:
        return True
    return any(op is C.SUBPATTERN and arg[1] & re.IGNORECASE for op, arg in _walk(parsed))


def _uses(parsed, ops) -> bool:
    return any(op in ops for op, _ in _walk(parsed))


def _walk(items):
    """Every (op, argument) of a parsed pattern, nested ones included."""
    for op, arg in items:
        yield op, arg
        if op is C.SUBPATTERN:
            yield from _walk(arg[-1])
        elif op is C.BRANCH:
            for alternative in arg[1]:
                yield from _walk(alternative)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            yield from _walk(arg[2])
        elif op in (C.ASSERT, C.ASSERT_NOT):
            yield from _walk(arg[1])


def _append(spellings, chars):
    return {text if ch == _GAP and text.endswith(_GAP) else text + ch for text in spellings for ch in chars}


def _class_chars(items) -> list[str]:
    chars = []
    for op, arg in items:
        if op is C.LITERAL:
            chars.append(chr(arg))
        elif op is C.RANGE and arg[1] - arg[0] < 12:
            chars.extend(chr(c) for c in range(arg[0], arg[1] + 1))
        else:
            return [_GAP]
    return chars
