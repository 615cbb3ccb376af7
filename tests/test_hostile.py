"""Hostile mail: hidden text, pathological markup and look-alike characters.

Timing checks compare a hostile input with a benign input of the same size measured in
the same run, never with a fixed wall-clock limit.
"""

from __future__ import annotations

import time

import pytest

from partnercheck.html_text import html_to_text

MB = 1_000_000


def _fill(piece: str, size: int = MB) -> str:
    return (piece * (size // len(piece) + 1))[:size]


def _seconds(func, arg) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        func(arg)
        best = min(best, time.perf_counter() - start)
    return best


def _check_linear(func, benign: str, hostile: dict[str, str], factor: float = 10.0) -> None:
    """Every hostile input runs within ``factor`` times the benign one (plus 50 ms of slack)."""
    baseline = _seconds(func, benign)
    slow = {name: round(_seconds(func, text), 3) for name, text in hostile.items()}
    too_slow = {name: t for name, t in slow.items() if t > factor * baseline + 0.05}
    assert not too_slow, f"benign {baseline:.3f} s; too slow: {too_slow}"


# ------------------------------------------------------------------------- HTML stage

@pytest.mark.parametrize("html, shown, hidden", [
    ('<p>Buy our plan</p><span style="display:none">partnership</span>', "Buy our plan", "partnership"),
    ('<p>Buy</p><span style="font-size:0">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><span style="font-size:0px !important">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><span style="opacity:0">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><div style="max-height:0;overflow:hidden">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div style="mso-hide:all">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div style="visibility:hidden">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div aria-hidden="true">partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><div hidden>partnership</div>', "Buy", "partnership"),
    ('<p>Buy</p><span style="color:#ffffff">partnership</span>', "Buy", "partnership"),
    ('<p>Buy</p><font color="white">partnership</font>', "Buy", "partnership"),
    ('<body bgcolor="#000"><p style="color:#eee">Buy</p><font color="#010101">partnership</font></body>', "Buy", "partnership"),
    ('<div style="background:#fafafa"><p>Buy</p><span style="color:rgb(250,250,250)">partnership</span></div>',
     "Buy", "partnership"),
    ('<p>Buy</p><span style="color:rgba(0,0,0,0)">partnership</span>', "Buy", "partnership"),
    ('<style>.x{display:none}</style><p>Buy</p><div class="a x">partnership</div>', "Buy", "partnership"),
    ('<style>/* c */ div#y { font-size: 0 }</style><p>Buy</p><div id=y>partnership</div>', "Buy", "partnership"),
    # nested same-tag hidden element: all of it is hidden, the text after it is not
    ('<div style="display:none">partnership<div>joint</div>venture</div><p>Buy</p>', "Buy", "joint"),
    # an unclosed hidden element ends where its parent does, as in a browser
    ('<div><span style="display:none">partnership</div><p>Buy now</p>', "Buy now", "partnership"),
    ('<!-- partnership --><script>partnership()</script><p>Buy</p>', "Buy", "partnership"),
])
def test_hidden_text_is_dropped(html, shown, hidden):
    text = html_to_text(html).text
    assert shown in text
    assert hidden not in text


@pytest.mark.parametrize("html, shown", [
    ('<table bgcolor="#000000"><tr><td><font color="white">White on black</font></td></tr></table>', "White on black"),
    ('<style>@media (max-width:600px){.desktop{display:none}}</style><div class=desktop>Desktop text</div>',
     "Desktop text"),
    ('<div style="display:block">Shown</div>', "Shown"),
    ('<body bgcolor="#000000"><p>Default colour</p></body>', "Default colour"),
    ('<p style="font-size:14px;color:#333">Readable</p>', "Readable"),
    ('<img alt="Company logo" src="x.png"> Welcome', "Company logo Welcome"),
])
def test_visible_text_is_kept(html, shown):
    assert shown in html_to_text(html).text


def test_links_pixels_and_blocks():
    html = ('<p>One</p><p>Two <a href="https://x.example/a">link</a></p>'
            '<div style="display:none"><a href="https://hidden.example/">h</a></div>'
            '<img src="https://t.example/p.gif" width="1" height="1">')
    result = html_to_text(html)
    assert result.text == "One\n\nTwo link"
    assert result.links == ["https://x.example/a"]
    assert result.tracking_pixel


def test_html_stage_is_linear():
    benign = _fill('<p>Hello <b>there</b>, see <a href="http://x.example/">this</a> offer.</p>\n')
    hostile = {
        "a": _fill("<a "), "lt": _fill("<"), "div-style": _fill("<div style=x "),
        "nested-div": _fill("<div>"), "nested-ul": _fill("<ul><li>"), "formatting": _fill("<b><i><u><s><a>"),
        "select": "<select>" + _fill("<option>"), "table": _fill("<table><tr><td>x"),
        "adoption": _fill("<b><p>x</b>"), "end-tags": _fill("<span>", MB // 2) + _fill("</b>", MB // 2),
        "style": "<style>" + _fill(".a{") + "</style>", "comment": _fill("<!--"),
        "hidden": _fill('<span style="display:none">x'), "colours": _fill('<font color="#fff">x'),
        "entities": _fill("&amp;&#x41;&"), "attributes": "<a " + _fill("x=1 ") + ">",
    }
    _check_linear(html_to_text, benign, hostile)
