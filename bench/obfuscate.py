"""Obfuscation benchmark: the realworld sample, clean and obfuscated, scored by the same model.

    python bench/obfuscate.py                       # ../shared/realworld, the shipped model
    python bench/obfuscate.py --out /tmp/obf        # keep the obfuscated copy
    python bench/obfuscate.py --model my.model --seed 3

Every message of ../shared/realworld is rewritten the way a sender who wants to get past a
filter would (seeded, so the copy is always the same):

* invisible characters inside a quarter of the words (U+200B, U+200C, U+200D, U+200E,
  U+2060, U+2062, U+034F, U+FE0F, U+00AD);
* Latin letters swapped for look-alikes from Unicode's confusables (Cyrillic, Greek,
  Latin small capitals, ``ɑ``) in a fifth of the words, subject included;
* keywords spelled out with separators: ``p.a.r.t.n.e.r``, ``d-e-m-o``, ``p r i c i n g``;
* the body sent as HTML with a decoy paragraph of another label's wording that a mail
  client does not show, hidden one of eight ways (``display:none``, ``font-size:0``,
  ``opacity:0``, white on white, ``max-height:0``, ``mso-hide:all``, a class hidden in a
  ``<style>`` block, ``visibility:hidden``).

It prints accuracy, accuracy where decided, unsure rate and macro-F1 for both copies and the
difference. It only reads ../shared/realworld (nothing is trained on it).
"""

from __future__ import annotations

import argparse
import email
import html
import json
import random
import re
import sys
import tempfile
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from partnercheck.deciding.model import load_model  # noqa: E402
from partnercheck.learning.evaluate import score_model  # noqa: E402
from partnercheck.reading.sources import Source  # noqa: E402
from partnercheck.settings import default_model_path  # noqa: E402

REALWORLD = ROOT.parent / "shared" / "realworld"
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u2060", "\u2062", "\u034f", "\ufe0f", "\u00ad"]
KEYWORDS = {"partner", "partners", "partnership", "partnering", "pricing", "price", "prices", "demo", "offer",
            "discount", "free", "collaborate", "collaboration", "sponsor", "sponsorship", "revenue", "share",
            "joint", "together", "buy", "order", "sale", "deal", "services", "agency", "seo", "leads", "call"}
DECOYS = {
    "pitch": "We would love to explore a genuine partnership with you: a joint venture in which both sides "
             "bring something and share the risk and the upside, with co-marketing, a revenue share and a "
             "product we co-develop together.",
    "other": "Our pricing plans start at $99 a month. Book a demo today and get a limited-time discount: our "
             "agency offers SEO services, lead generation and staff augmentation.",
}
DECOYS["partnership"] = DECOYS["other"]
HIDING = [
    '<div style="display:none">{}</div>',
    '<div style="font-size:0px;line-height:0">{}</div>',
    '<div style="opacity:0">{}</div>',
    '<div style="color:#ffffff;background-color:#ffffff">{}</div>',
    '<div style="max-height:0;overflow:hidden">{}</div>',
    '<div style="mso-hide:all;display:none">{}</div>',
    '<style>.pre{{display:none !important}}</style><div class="pre">{}</div>',
    '<span style="visibility:hidden">{}</span>',
]
_WORD = re.compile(r"[A-Za-z]+")


def lookalikes() -> dict[str, list[str]]:
    """For each ASCII letter, the confusable characters an attacker would pick (from the
    table partnercheck ships, limited to Cyrillic, Greek and Latin letters)."""
    table = json.loads((ROOT / "src" / "partnercheck" / "reading" / "confusables.json").read_text(encoding="utf-8"))["latin"]
    result: dict[str, list[str]] = {}
    for char, letter in table.items():
        if 0x0180 <= ord(char) <= 0x04FF or 0x1D00 <= ord(char) <= 0x1D2B:
            result.setdefault(letter, []).append(char)
    return result


class Obfuscator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.swaps = lookalikes()

    def word(self, match: re.Match) -> str:
        word, rng = match.group(0), self.rng
        if word.lower() in KEYWORDS and rng.random() < 0.6:
            return rng.choice([".", "-", " ", "*"]).join(word)
        if rng.random() < 0.2:
            word = "".join(rng.choice(self.swaps[c.lower()]) if c.lower() in self.swaps and rng.random() < 0.5
                           else c for c in word)
        if len(word) > 2 and rng.random() < 0.25:
            at = rng.randrange(1, len(word))
            word = word[:at] + rng.choice(INVISIBLE) + word[at:]
        return word

    def text(self, text: str) -> str:
        return _WORD.sub(self.word, text)

    def html_text(self, markup: str) -> str:
        """Obfuscate only the text between tags (not inside <style> or <script>)."""
        pieces = re.split(r"(<[^>]*>)", markup)
        skipping = False
        for i, piece in enumerate(pieces):
            if piece.startswith("<"):
                lowered = piece.lower()
                if lowered.startswith(("<style", "<script")):
                    skipping = True
                elif lowered.startswith(("</style", "</script")):
                    skipping = False
            elif not skipping:
                pieces[i] = self.text(piece)
        return "".join(pieces)

    def decoy(self, label: str) -> str:
        return self.rng.choice(HIDING).format(html.escape(DECOYS[label]))


def obfuscate_message(raw: bytes, label: str, ob: Obfuscator) -> bytes:
    message = email.message_from_bytes(raw, policy=policy.default)
    if message["Subject"]:
        subject = ob.text(str(message["Subject"]))
        del message["Subject"]
        message["Subject"] = subject
    decoy_added = False
    for part in list(message.walk()):
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError):
            continue
        if ctype == "text/plain":
            if message.get_content_type() == "multipart/alternative":
                new, subtype = ob.text(content), "plain"  # the HTML alternative carries the decoy
            else:
                body = html.escape(ob.text(content)).replace("\n", "<br>\n")
                new, subtype = f"<html><body>{ob.decoy(label)}<p>{body}</p></body></html>", "html"
                decoy_added = True
        else:
            new, subtype = ob.html_text(content), "html"
            if not decoy_added:
                new = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + ob.decoy(label), new, count=1, flags=re.I) \
                    if re.search(r"<body", new, re.I) else ob.decoy(label) + new
                decoy_added = True
        part.set_content(new, subtype=subtype, charset="utf-8", cte="quoted-printable")
    # multipart/alternative: drop the plain part so that the reader reads the HTML one, as
    # an HTML-only sender's mail would be read.
    if message.get_content_type() == "multipart/alternative":
        parts = [p for p in message.iter_parts() if p.get_content_type() != "text/plain"]
        if parts and any(p.get_content_type() == "text/html" for p in parts):
            message.set_payload(parts)
    return message.as_bytes(policy=policy.SMTP.clone(linesep="\n"))


def write_copy(source: Path, target: Path, seed: int) -> int:
    ob = Obfuscator(seed)
    count = 0
    for path in sorted(source.glob("*/*.eml")):
        label = path.parent.name
        out = target / label / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(obfuscate_message(path.read_bytes(), label, ob))
        count += 1
    return count


def summary(scores) -> dict:
    correct = sum(t == v for t, v in zip(scores.truth, scores.verdicts))
    return {"accuracy": correct / scores.total, "accuracy_decided": scores.accuracy_decided(),
            "unsure": scores.unsure_rate(), "macro_f1": scores.macro_f1()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REALWORLD))
    parser.add_argument("--out", help="where to write the obfuscated copy (default: a temporary folder)")
    parser.add_argument("--model", default=default_model_path())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(args.out or tmp)
        count = write_copy(Path(args.source), target, args.seed)
        clean = summary(score_model(model, Source(args.source)))
        obfuscated = summary(score_model(model, Source(str(target))))
    print(f"{count} messages, seed {args.seed}, model {args.model}")
    print(f"{'':22s}{'clean':>8s}{'obfuscated':>12s}{'change':>9s}")
    for key in ("accuracy", "accuracy_decided", "unsure", "macro_f1"):
        change = obfuscated[key] - clean[key]
        print(f"{key:22s}{clean[key]:8.3f}{obfuscated[key]:12.3f}{change:+9.3f}")


if __name__ == "__main__":
    main()
