"""Normalisation undoes the usual obfuscation tricks."""

import pytest

from partnercheck.reading.normalize import normalize


@pytest.mark.parametrize("text, expected", [
    ("Let's P.A.R.T.N.E.R up", "let's partner up"),
    ("p-a-r-t-n-e-r", "partner"),
    ("f r e e trial", "free trial"),
    ("\u0440\u0430rtner", "partner"),  # Cyrillic r and a
    ("ＦＲＥＥ", "free"),  # fullwidth
    ("par\u200btner\u00ad", "partner"),  # zero-width space, soft hyphen
    ("It\u2019s \u201cgreat\u201d", "it's \"great\""),
    ("A good day to all of you", "a good day to all of you"),
    ("PARTNERSH\u0130P in \u0130stanbul", "partnership in istanbul"),  # \u0130 lower-cases to i and U+0307
])
def test_normalize(text, expected):
    assert normalize(text) == expected
