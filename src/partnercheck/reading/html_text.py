"""Turn an HTML mail body into the text a mail client would show.

The HTML is parsed by Lexbor (through ``selectolax``), a C implementation of the HTML5
parsing algorithm that runs in linear time: unclosed, misnested and hostile markup ends up
as the tree a browser would build, so an element closed implicitly by its parent's end tag
is closed here too. The tree is then walked once, without recursion, and text is kept only
where a reader could see it. Dropped:

* comments, ``script``, ``style``, ``head``, ``title``, ``template``, ``noscript``;
* elements hidden by the ``hidden`` attribute, ``aria-hidden="true"``, or an inline style
  with ``display:none``, ``visibility:hidden``, ``font-size:0`` (or below 2 px),
  ``opacity:0``, ``max-height:0``, ``height:0``/``width:0`` with ``overflow:hidden``,
  ``mso-hide:all``, or a transparent text colour;
* elements whose class or id a ``<style>`` block hides with one of those declarations
  (top-level rules; rules inside ``@media`` are screen-size specific and ignored);
* text coloured like its background (a ``color`` set in the mail against the
  ``background``/``bgcolor`` inherited down the tree, white by default).

It also collects every visible link's URL and notes a tracking pixel (an image 0 or 1
pixel wide or high). Every step is linear in the input: the parser, the single walk, and
the style-block scan (capped at :data:`MAX_STYLE_CHARS`).
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

#: Text of <style> blocks beyond this many characters is not read for hiding rules.
MAX_STYLE_CHARS = 200_000
#: Block elements nested deeper than this are read as spans (see :func:`_limit_nesting`).
MAX_NESTING = 200
#: Start tags past :data:`MAX_NESTING` kept open at once because they may hide their content.
MAX_KEPT_PAST_NESTING = 100
#: Two colours closer than this on every channel count as the same (white on #fefefe).
_SAME_COLOUR = 24

_DROPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg",
                      "math", "select", "button"})
_BLOCK = frozenset({"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
                    "blockquote", "section", "article", "header", "footer", "hr", "td", "th", "center", "pre",
                    "dl", "dt", "dd", "form", "main", "nav", "aside", "address", "figure", "figcaption",
                    "tbody", "thead", "tfoot", "caption", "body", "html"})
# Elements that are empty or that the parser closes by itself: they never deepen the tree.
_UNNESTED = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                       "source", "track", "wbr", "keygen", "p", "li", "dd", "dt", "td", "th", "tr", "option",
                       "optgroup", "tbody", "thead", "tfoot", "colgroup", "caption", "html", "head", "body",
                       "rb", "rt", "rp", "frame", "basefont", "bgsound", "image"})
_TAG_NAME = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)")
#: Where a "<" starts no tag: comments and the raw text of scripts and style sheets, ended
#: where an HTML5 parser ends them ("<!-->" and "<!--->" are whole comments, "--!>" closes
#: one, "</script x>" closes a script). A region longer than the parser's would hide real
#: tags from the nesting limit, and the parse would be quadratic again.
_NO_TAGS = re.compile(r"<!--(?:-?>|.*?(?:--!?>|\Z))|<(script|style)\b.*?(?:</\1(?=[\s/>])[^>]*>|\Z)",
                      re.I | re.S)
#: The rest of a start tag up to its ">", quoted attribute values skipped as a parser skips
#: them; possessive, so that a tag that never ends costs one pass.
_TAG_REST = re.compile(r"""(?:[^>=]++|=\s*+"[^"]*+"|=\s*+'[^']*+'|=[^\s>]*+)*+>""")
#: An attribute through which a start tag can hide its content (see :func:`_judge`).
_MAY_HIDE = re.compile(r"\b(?:hidden|aria-hidden|style|class|id|color|bgcolor)\b", re.I)
_PIXEL_SIZES = frozenset({"0", "1", "0px", "1px"})
_NUMBER = re.compile(r"\s*(-?[0-9]*\.?[0-9]+)\s*([a-z%]*)")
_SIMPLE_SELECTOR = re.compile(r"[a-z0-9_-]*((?:[.#][a-z0-9_-]+)+)")
_SELECTOR_PART = re.compile(r"[.#][a-z0-9_-]+")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")

_NAMED = {
    "white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "green": (0, 128, 0),
    "blue": (0, 0, 255), "yellow": (255, 255, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
    "silver": (192, 192, 192), "whitesmoke": (245, 245, 245), "snow": (255, 250, 250),
    "ivory": (255, 255, 240), "ghostwhite": (248, 248, 255), "navy": (0, 0, 128), "orange": (255, 165, 0),
    "purple": (128, 0, 128), "lightgray": (211, 211, 211), "lightgrey": (211, 211, 211),
    "darkgray": (169, 169, 169), "darkgrey": (169, 169, 169), "gainsboro": (220, 220, 220),
}
_TRANSPARENT = (-1, -1, -1)
#: Text in the reader's default colour is always shown: clients differ in what it is.
_DEFAULT_TEXT, _DEFAULT_BACKGROUND = None, (255, 255, 255)


class HtmlText:
    """The readable text of an HTML document, its link URLs and a tracking-pixel flag."""

    __slots__ = ("text", "links", "tracking_pixel")

    def __init__(self, text: str, links: list[str], tracking_pixel: bool) -> None:
        self.text = text
        self.links = links
        self.tracking_pixel = tracking_pixel


def html_to_text(html: str) -> HtmlText:
    """Extract visible text, visible links and a tracking-pixel flag from ``html``."""
    if "\x00" in html:
        html = html.replace("\x00", "")
    tree = LexborHTMLParser(_limit_nesting(html))
    hidden_classes, hidden_ids = _hiding_rules(tree)
    out: list[str] = []
    links: list[str] = []
    pixel = False
    # A stack of (node, text colour, background) to visit, and "\n" markers to emit after a
    # block element's children; a node's next sibling is pushed before its children.
    stack: list = [(tree.root, _DEFAULT_TEXT, _DEFAULT_BACKGROUND)]
    while stack:
        item = stack.pop()
        if item.__class__ is str:
            out.append(item)
            continue
        node, colour, background = item
        if node is None:
            continue
        stack.append((node.next, colour, background))
        tag = node.tag
        if tag == "-text":
            if colour is None or not (colour == _TRANSPARENT or _same_colour(colour, background)):
                out.append(node.text_content)
            continue
        if not tag or tag[0] in "-#_!" or tag in _DROPPED:
            continue
        attrs = node.attributes
        if tag == "table":
            colour = None  # tables do not inherit the text colour in quirks mode, as most mail renders
        elif tag == "img":
            if attrs.get("width") in _PIXEL_SIZES or attrs.get("height") in _PIXEL_SIZES or _tiny_image(attrs):
                pixel = True
                continue
        if attrs:
            hidden, colour, background = _judge(attrs, colour, background, hidden_classes, hidden_ids)
            if hidden:
                continue
        if tag == "a":
            href = attrs.get("href")
            if href:
                links.append(href.strip())
        elif tag == "img":
            alt = attrs.get("alt")
            if alt and alt.strip():
                out.append(f" {alt.strip()} ")
            continue
        if tag in _BLOCK:
            out.append("\n")
            stack.append("\n")
        stack.append((node.child, colour, background))
    return HtmlText(_tidy("".join(out)), links, pixel)


def _limit_nesting(html: str) -> str:
    """``html`` without start tags nested deeper than :data:`MAX_NESTING`, nor ``<select>``.

    The HTML5 tree builder searches the stack of open elements (for a ``<p>`` to close, an
    element in scope, a formatting element to reconstruct) at many tags, which is quadratic
    in the nesting depth: 40,000 nested ``<div>`` took 1.8 s to parse, 150,000 nested
    ``<b><i><u><s><a>`` 9 s, 100,000 ``<option>`` in a ``<select>`` 20 s. No mail nests
    elements hundreds deep, so deeper start tags are cut out (their text stays), which keeps
    the stack short. Tags that close themselves or are usually left open do not count.

    Past the limit, a start tag with an attribute that can hide what it holds (``hidden``,
    ``style``, ``class``, ...) is kept, up to :data:`MAX_KEPT_PAST_NESTING` of them open at
    once (those closed again do not count), so that the parser closes it where a browser
    would and its content stays hidden when it is: cut, it let 250 unclosed tags turn a
    hidden decoy into visible text. A tag ends at the first ">" outside a quoted value.
    """
    if html.count("<") <= MAX_NESTING and "<select" not in html.lower():
        return html
    depth = 0
    kept: list[int] = []  # the depths of the kept start tags still open
    pieces: list[str] = []
    at = 0
    # A "<" inside a comment, script or style sheet is no tag: cutting from it to the next ">"
    # would eat the "-->" or "</script>" and turn what follows into hidden text.
    quiet = [(m.start(), m.end()) for m in _NO_TAGS.finditer(html)]
    region = 0
    for tag in _TAG_NAME.finditer(html):
        if tag.start() < at:
            continue
        while region < len(quiet) and quiet[region][1] <= tag.start():
            region += 1
        if region < len(quiet) and quiet[region][0] <= tag.start():
            continue
        name = tag.group(2).lower()
        if name in _UNNESTED:
            continue
        if tag.group(1):
            depth = max(depth - 1, 0)
            while kept and kept[-1] > depth:
                kept.pop()
            continue
        if name != "select":
            depth += 1
            if depth <= MAX_NESTING:
                continue
        rest = _TAG_REST.match(html, tag.end())
        end = rest.end() - 1 if rest else -1
        if name != "select" and len(kept) < MAX_KEPT_PAST_NESTING and _MAY_HIDE.search(html, tag.end(), end):
            kept.append(depth)
            continue
        pieces.append(html[at:tag.start()])
        at = len(html) if end == -1 else end + 1
    if not pieces:
        return html
    pieces.append(html[at:])
    return "".join(pieces)


def _tidy(text: str) -> str:
    """One space for any run of spaces, at most one blank line in a row, no blank ends."""
    lines: list[str] = []
    blank = True
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line).strip()
        if line:
            lines.append(line)
            blank = False
        elif not blank:
            lines.append("")
            blank = True
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _tiny_image(attrs: dict) -> bool:
    style = attrs.get("style")
    if not style:
        return False
    declarations = _declarations(style)
    return any(_length(declarations.get(name)) == 0 for name in ("width", "height", "max-width", "max-height")) \
        or declarations.get("display") == "none"


def _judge(attrs: dict, colour, background, hidden_classes: frozenset, hidden_ids: frozenset):
    """(hidden, text colour, background) for an element with these attributes."""
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return True, colour, background
    if hidden_classes:
        classes = attrs.get("class")
        if classes and not hidden_classes.isdisjoint(classes.lower().split()):
            return True, colour, background
    if hidden_ids:
        ident = attrs.get("id")
        if ident and ident.strip().lower() in hidden_ids:
            return True, colour, background
    bgcolor = attrs.get("bgcolor")
    if bgcolor:
        parsed = _colour(bgcolor)
        if parsed is not None and parsed != _TRANSPARENT:
            background = parsed
    font_colour = attrs.get("color")
    if font_colour:
        parsed = _colour(font_colour)
        if parsed is not None:
            colour = parsed
    style = attrs.get("style")
    if style:
        declarations = _declarations(style)
        if _hides(declarations):
            return True, colour, background
        value = declarations.get("color")
        if value:
            parsed = _colour(value)
            if parsed is not None:
                colour = parsed
        value = declarations.get("background-color") or declarations.get("background")
        if value:
            parsed = _background(value)
            if parsed is not None and parsed != _TRANSPARENT:
                background = parsed
    return False, colour, background


def _declarations(style: str) -> dict[str, str]:
    """An inline style or rule body as {property: value}, lower-cased, without ``!important``."""
    result = {}
    for declaration in style.lower().split(";"):
        name, colon, value = declaration.partition(":")
        if colon:
            result[name.strip()] = value.replace("!important", "").strip()
    return result


def _hides(d: dict[str, str]) -> bool:
    """Whether these declarations make an element's text invisible."""
    if d.get("display") == "none" or d.get("visibility") in ("hidden", "collapse"):
        return True
    if d.get("mso-hide") == "all":
        return True
    size = _length(d.get("font-size"))
    if size is not None and size < 2:
        return True
    opacity = _length(d.get("opacity"))
    if opacity is not None and opacity <= 0.05:
        return True
    if _length(d.get("max-height")) == 0 or _length(d.get("max-width")) == 0:
        return True
    clipped = d.get("overflow") == "hidden" or d.get("overflow-y") == "hidden" or d.get("overflow-x") == "hidden"
    if clipped and (_length(d.get("height")) == 0 or _length(d.get("width")) == 0):
        return True
    if d.get("color") in ("transparent",):
        return True
    return False


def _length(value: str | None) -> float | None:
    """A CSS length or number in pixels (em and rem as 16 px, % of 16 px, pt as px); None if unknown."""
    if not value:
        return None
    match = _NUMBER.match(value)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2)
    if unit in ("em", "rem"):
        return number * 16
    if unit == "%":
        return number * 0.16
    if unit in ("", "px", "pt", "ex", "ch", "vw", "vh", "cm", "mm", "in", "pc"):
        return number
    return None


def _colour(value: str):
    """A CSS or HTML colour as an (r, g, b) tuple, _TRANSPARENT, or None if not understood."""
    value = value.strip().lower()
    if not value:
        return None
    if value[0] == "#" or (len(value) in (3, 6) and all(c in "0123456789abcdef" for c in value)):
        digits = value.lstrip("#")
        if len(digits) in (3, 4):
            digits = "".join(c * 2 for c in digits[:3])
        if len(digits) >= 6:
            try:
                return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
            except ValueError:
                return None
        return None
    if value.startswith(("rgb(", "rgba(")):
        inner = value[value.find("(") + 1:].rstrip(")").replace("/", ",").replace(" ", ",")
        numbers = [part for part in inner.split(",") if part]
        try:
            channels = [float(p[:-1]) * 2.55 if p.endswith("%") else float(p) for p in numbers[:3]]
            if len(numbers) >= 4:
                alpha = float(numbers[3][:-1]) / 100 if numbers[3].endswith("%") else float(numbers[3])
                if alpha <= 0.05:
                    return _TRANSPARENT
        except ValueError:
            return None
        if len(channels) == 3:
            return tuple(int(c) for c in channels)
        return None
    if value == "transparent":
        return _TRANSPARENT
    return _NAMED.get(value)


def _background(value: str):
    """The colour in a ``background`` shorthand (or ``background-color``)."""
    if "url(" in value and "#" not in value and "rgb" not in value:
        return None
    if value.startswith("rgb"):
        return _colour(value[: value.find(")") + 1])
    for word in value.split():
        parsed = _colour(word)
        if parsed is not None:
            return parsed
    return None


def _same_colour(a, b) -> bool:
    return a != _TRANSPARENT and b != _TRANSPARENT and all(abs(x - y) < _SAME_COLOUR for x, y in zip(a, b))


def _hiding_rules(tree) -> tuple[frozenset, frozenset]:
    """The classes and ids that top-level rules in the document's <style> blocks hide."""
    styles = []
    total = 0
    for node in tree.css("style"):
        text = node.text(deep=True) or ""
        styles.append(text[: MAX_STYLE_CHARS - total])
        total += len(styles[-1])
        if total >= MAX_STYLE_CHARS:
            break
    if not styles:
        return frozenset(), frozenset()
    classes: set[str] = set()
    ids: set[str] = set()
    css = _strip_css_comments("\n".join(styles).lower())
    depth = 0
    at_rule_depth = None  # the depth inside which an @-rule's body is being skipped
    start = 0
    selector = ""
    for brace in re.finditer(r"[{}]", css):
        chunk = css[start:brace.start()]
        start = brace.end()
        if brace.group() == "{":
            if depth == 0 or (at_rule_depth is None and depth > 0):
                selector = chunk
            if at_rule_depth is None and chunk.lstrip().startswith("@"):
                at_rule_depth = depth
            depth += 1
            continue
        depth = max(depth - 1, 0)
        if at_rule_depth is not None:
            if depth <= at_rule_depth:
                at_rule_depth = None
            continue
        if depth == 0 and selector and _hides(_declarations(chunk)):
            for one in selector.split(","):
                _add_selector(one.strip(), classes, ids)
        selector = ""
    return frozenset(classes), frozenset(ids)


def _add_selector(selector: str, classes: set[str], ids: set[str]) -> None:
    """Note the class or id of a simple selector's last part (``.x``, ``div.x``, ``table #y``)."""
    if not selector or len(selector) > 200:
        return
    last = selector.split()[-1].lstrip(">+~")
    if not _SIMPLE_SELECTOR.fullmatch(last):
        return
    for part in _SELECTOR_PART.findall(last):
        (classes if part[0] == "." else ids).add(part[1:])
        break  # the first one is enough to recognise the element (over-hiding is rare)


def _strip_css_comments(css: str) -> str:
    if "/*" not in css:
        return css
    pieces = []
    at = 0
    while True:
        begin = css.find("/*", at)
        if begin == -1:
            pieces.append(css[at:])
            break
        pieces.append(css[at:begin])
        end = css.find("*/", begin + 2)
        if end == -1:
            break
        at = end + 2
    return "".join(pieces)
