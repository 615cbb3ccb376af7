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


@pytest.mark.parametrize("text, expected", [
    ("\u202epihsrentrap", "partnership"),  # a right-to-left override, shown backwards
    ("We'd love a \u202epihsrentrap\u202c with you", "we'd love a partnership with you"),
    ("\u202epihs\u202c\u202erentrap\u202c", "partnership"),  # two overrides side by side show as one
    ("\u202eeno\nowt", "one\nowt"),  # an override ends with its line
    ("\u202e!cba\u202dxyz\u202cfed", "defxyzabc!"),  # a left-to-right one inside shows forwards
    ("\u202ee\u0301fac", "caf\u00e9"),  # an accent stays on its letter
    ("\u202a" * 62 + "\u202epihsrentrap", "partnership"),  # at level 125, the deepest there is
    ("\u202a" * 63 + "\u202epihsrentrap", "pihsrentrap"),  # past it: ignored, as clients ignore it
    ("\u202dpart\u202c\u202ane\u202b\u202cr\u2066ship\u2069", "partnership"),  # other controls: dropped
], ids=["override", "closed", "side by side", "line", "nested", "accent", "level 125", "past 125", "others"])
def test_text_under_a_right_to_left_override_reads_as_shown(text, expected):
    assert normalize(text) == expected
