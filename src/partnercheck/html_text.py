"""Turn an HTML mail body into readable text.

Mail HTML is written for clients, not parsers, so this is forgiving: it keeps visible text
and link text, drops ``script``, ``style``, ``head`` and elements hidden with ``hidden``,
``display:none`` or ``visibility:hidden`` (pre-header tricks and keyword stuffing live
there), and remembers every link's URL and whether the mail carries a tracking pixel.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "section", "article", "header", "footer", "hr", "td", "th"}
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.tracking_pixel = False
        self._skip_tag: str | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        attributes = dict(attrs)
        style = attributes.get("style") or ""
        hidden = "hidden" in attributes or bool(_HIDDEN_STYLE.search(style))
        if tag in _SKIP_TAGS or (hidden and tag not in _VOID_TAGS):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        elif tag == "img":
            if attributes.get("width") in ("0", "1") or attributes.get("height") in ("0", "1"):
                self.tracking_pixel = True
            if attributes.get("alt"):
                self.parts.append(" " + attributes["alt"] + " ")
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._skip_tag is None:
            self.parts.append(data)


class HtmlText:
    """The readable text of an HTML document, its link URLs and a tracking-pixel flag."""

    __slots__ = ("text", "links", "tracking_pixel")

    def __init__(self, text: str, links: list[str], tracking_pixel: bool) -> None:
        self.text = text
        self.links = links
        self.tracking_pixel = tracking_pixel


def html_to_text(html: str) -> HtmlText:
    """Extract readable text, links and a tracking-pixel flag from ``html``."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient, but a pathological document must not stop reading
        pass
    text = "".join(parser.parts)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return HtmlText(text, parser.links, parser.tracking_pixel)
