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
_COMMON = frozenset(
    "a an and are as at be by can could did do for from get had has have i if in is it its "
    "just me my no not of on or our so that the their them they this to us was we were what "
    "will with would you your".split()
)


#: Matches longer than this are searched for over the whole text, not in windows.
_MAX_WINDOW = 400


class _Unlistable(Exception):
    pass


def word_positions(text: str) -> dict[str, list[int]]:
    """Each word of ``text`` with the offsets where it starts."""
    where: dict[str, list[int]] = {}
    for match in WORD.finditer(text):
        where.setdefault(match.group(), []).append(match.start())
    return where


class TriggeredPattern:
    """A compiled pattern that runs only where its trigger words occur."""

    __slots__ = ("regex", "triggers", "width")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        self.triggers = trigger_words(pattern)
        width = self.regex.pattern and _parser.parse(pattern).getwidth()[1]
        self.width = width if width <= _MAX_WINDOW else None

    def finditer(self, text: str, where: dict[str, list[int]], offset: int = 0):
        """Matches in ``text``; ``where`` holds word offsets, ``text`` starting at ``offset``."""
        if self.triggers is None:
            yield from self.regex.finditer(text)
            return
        starts = [start - offset for word in self.triggers for start in where.get(word, ())]
        if not starts:
            return
        if self.width is None:
            yield from self.regex.finditer(text)
            return
        end_of_last = -1
        for start in sorted(starts):
            begin = max(0, start - self.width, end_of_last)
            for found in self.regex.finditer(text, begin, min(len(text), start + 2 * self.width)):
                if found.start() >= end_of_last:
                    end_of_last = found.end()
                    yield found


def trigger_words(pattern: str) -> frozenset[str] | None:
    """Words of which a text must contain one for ``pattern`` to match, or ``None``."""
    try:
        spellings = _expand(list(_parser.parse(pattern)), {""})
    except (_Unlistable, re.error, RecursionError):
        return None
    triggers = set()
    for spelling in spellings:
        word = _rarest_whole_word(spelling)
        if word is None:
            return None
        triggers.add(word)
    return frozenset(triggers)


def _rarest_whole_word(spelling: str) -> str | None:
    """The most telling word of one spelling that is surely whole in any text it matches."""
    best = None
    for match in WORD.finditer(spelling):
        start, end = match.span()
        if start == 0 or end == len(spelling) or _GAP in (spelling[start - 1], spelling[end]):
            continue  # the word may run on into letters the pattern does not spell out
        word = match.group(0)
        score = (word not in _COMMON, len(word))
        if best is None or score > best[0]:
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
        return _append(spellings, [_BOUNDARY])
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
