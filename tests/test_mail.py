"""Reading one message: headers, body text, quotes and signatures, and every kind of bad input."""

from __future__ import annotations

import base64

import pytest
from conftest import FIXTURES, message

from partnercheck.reading.mail import parse_message, split_reply

MALFORMED = FIXTURES / "malformed"


def read(name: str):
    return parse_message((MALFORMED / name).read_bytes(), key=name)


def test_headers_of_an_ordinary_message():
    raw = message("Coffee and bread", "Shall we swap referrals?", extra="Reply-To: other@elsewhere.example\n"
                  "List-Unsubscribe: <https://u.example/x>\nIn-Reply-To: <a@b.example>\n")
    record = parse_message(raw, key="k")
    assert (record.from_name, record.from_addr, record.from_domain) == ("Ana Ruiz", "ana@fernhollow.example",
                                                                        "fernhollow.example")
    assert record.reply_to == "other@elsewhere.example"
    assert record.to == ("sam@quill.test",)
    assert record.subject == "Coffee and bread"
    assert record.date_iso() == "2023-03-14T09:12:44-05:00"
    assert record.headers["list-unsubscribe"] == "<https://u.example/x>"
    assert record.headers["in-reply-to"] == "<a@b.example>"
    assert record.body == "Shall we swap referrals?"
    assert record.raw == raw and record.problems == []


def test_a_utf8_byte_order_mark_before_the_headers_hides_no_field():
    """Some Windows tools save a message with one; its first field is still read."""
    raw = b"\xef\xbb\xbf" + message("Coffee and bread", "Shall we swap referrals?")
    record = parse_message(raw)
    assert (record.from_addr, record.subject, record.body) == ("ana@fernhollow.example", "Coffee and bread",
                                                               "Shall we swap referrals?")
    assert record.raw == raw


@pytest.mark.parametrize("header, name, address", [
    ('"Boss <ceo@bank.example>" <x@elsewhere.example>', "Boss <ceo@bank.example>", "x@elsewhere.example"),
    ("=?utf-8?q?Boss_=3Cceo=40bank.example=3E?= <x@elsewhere.example>", "Boss <ceo@bank.example>",
     "x@elsewhere.example"),
    ('"Ann \\"Q\\"" <a@x.example>', 'Ann "Q"', "a@x.example"),
    ("Jas @ Velvet Reach <jas@velvet.example>", "Jas @ Velvet Reach", "jas@velvet.example"),
])
def test_the_sender_is_the_last_address_in_angle_brackets_not_one_in_the_name(header, name, address):
    """An allow or block list matches the address the mail came from, never one written into
    the display name, plain or encoded."""
    record = parse_message(f"From: {header}\nTo: {header}\n\nhi\n".encode())
    assert (record.from_name, record.from_addr) == (name, address)
    assert (record.to_names, record.to) == ((name,), (address,))


def test_recipients_display_names_are_kept_beside_their_addresses():
    raw = (b"From: ana@fernhollow.example\nTo: Sam Carter <SCarter@quill.test>, \"Doe, Jo\" <jo@x.test>, "
           b"bare@y.test\nSubject: hi\n\nHello\n")
    record = parse_message(raw)
    assert record.to == ("scarter@quill.test", "jo@x.test", "bare@y.test")
    assert record.to_names == ("Sam Carter", "Doe, Jo", "")


@pytest.mark.parametrize("text", ["Café, let's partner", "Café, let's partner!!"])  # one "=", then two
def test_base64_without_its_padding_keeps_its_last_bytes(text):
    encoded = base64.b64encode(text.encode()).rstrip(b"=")
    raw = (b"From: a@x.example\nSubject: x\nContent-Type: text/plain; charset=utf-8\n"
           b"Content-Transfer-Encoding: base64\n\n" + encoded + b"\n")
    assert parse_message(raw).body == text


def test_a_text_part_cut_for_its_size_says_so():
    """Markup past the part's first 400,000 bytes is not read: the message's problems say it."""
    raw = (b"From: a@x.example\nSubject: t\nContent-Type: text/html; charset=utf-8\n\n<p>Shall we co-host?</p>"
           + b"<div>" * 100_000 + b"<p>the rest</p>")
    record = parse_message(raw)
    assert record.body.startswith("Shall we co-host?") and any("the rest skipped" in p for p in record.problems)


def test_bad_base64_keeps_what_decodes_and_notes_it():
    record = read("bad-base64.eml")
    assert "joint workshop" in record.body
    assert any("base64" in p for p in record.problems)


def test_undeclared_8bit_header_bytes_are_decoded():
    record = read("8bit-headers.eml")
    assert record.subject == "Café collaboration — ideas"
    assert record.from_name == "José"  # RFC 2047 encoded word
    assert "undeclared 8-bit bytes in a header" in record.problems


def test_a_lying_charset_does_not_turn_text_into_mojibake():
    record = read("lying-charset.eml")
    assert record.body.startswith("København office: we’d split the stand at the fair — 50/50")
    assert any("not valid us-ascii" in p for p in record.problems)


def test_an_unknown_charset_is_read_as_utf8():
    record = read("unknown-charset.eml")
    assert record.body == "Plain words here, and café."
    assert any("unknown charset" in p for p in record.problems)


def test_html_only_mail_becomes_readable_text():
    record = read("html-only.eml")
    assert record.html_only and record.tracking_pixel
    assert "We book qualified meetings on your calendar." in record.body
    assert "Book a call" in record.body  # link text kept
    assert "Café owners" in record.body  # quoted-printable decoded
    for hidden in ("hidden script text", "hidden preheader", "color: red"):
        assert hidden not in record.body
    assert "https://cal.leadrocket.example/book/ana" in record.links


def test_deeply_nested_multipart_stops_with_a_note():
    record = read("deeply-nested.eml")
    assert record.subject == "Deeply nested"
    assert any("nesting deeper" in p for p in record.problems)


def test_forwarded_message_counts_as_quoted_not_new_text():
    record = read("forwarded.eml")
    assert record.body == "What do you think of this one? Looks like a sales pitch to me."
    assert "Our team of 200 developers" in record.quoted


def test_reply_splits_new_text_signature_and_quote():
    record = read("reply-with-quote.eml")
    assert record.body == "Sounds good, Thursday works."
    assert record.signature.startswith("--\nTom Reyes")
    assert "We split the venue" in record.quoted


def test_quoted_printable_latin1_and_encoded_subject():
    record = read("quoted-printable-latin1.eml")
    assert record.subject == "Réunion à Lyon"
    assert "co-organiser l'atelier à Lyon et partager les frais. Merci!" in record.body


def test_latin1_is_read_as_windows_1252_as_mail_programs_read_it():
    """Windows wrote curly quotes, dashes and the euro sign as bytes 0x80-0x9F under an
    ISO 8859-1 label; read as ISO 8859-1 they were control characters, and a price in euros
    was no price to the rules."""
    raw = (b"From: a@b.example\nSubject: =?iso-8859-1?q?=93Partner=94_offer?=\n"
           b"Content-Type: text/plain; charset=iso-8859-1\n\nwe\x92re offering \x93premium\x94 from \x80499 a month\n")
    record = parse_message(raw)
    assert record.subject == "\u201cPartner\u201d offer"
    assert record.body.strip() == "we\u2019re offering \u201cpremium\u201d from \u20ac499 a month"


@pytest.mark.parametrize("name", ["empty.eml", "binary-junk.eml", "truncated-mime.eml"])
def test_broken_input_becomes_a_record_with_a_problem(name):
    record = read(name)
    assert record.problems, name


def test_truncated_mime_keeps_the_text_it_has():
    assert "split the venue cost" in read("truncated-mime.eml").body


def test_a_huge_attachment_is_skipped_and_huge_text_is_cut():
    attachment = b"A" * (50 * 1024 * 1024)
    raw = (b"From: a@b.example\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n"
           b"--x\nContent-Type: text/plain\n\nsee attached\n--x\nContent-Type: application/octet-stream\n"
           b"Content-Transfer-Encoding: base64\n\n" + attachment + b"\n--x--\n")
    record = parse_message(raw)
    assert record.body == "see attached" and record.attachments == 1
    text = b"From: a@b.example\nSubject: long\n\n" + b"word " * 100_000
    assert any("cut at" in p for p in parse_message(text).problems)


def test_outlook_style_quote_block():
    text = ("Yes, let's do it.\n\nFrom: Ana Ruiz\nSent: Monday, 2 October 2023 10:00\nTo: Sam\n"
            "Subject: Joint webinar\n\nShall we co-host?")
    new, quoted, _ = split_reply(text)
    assert new == "Yes, let's do it." and quoted.endswith("Shall we co-host?")


def test_a_newsletter_with_underscore_dividers_keeps_its_text():
    """A line of underscores ends the text only before a few lines of sign-off; a digest
    that draws such lines above and between its sections is all text."""
    sections = "\n\n".join(f"SECTION {n}\n" + "\n".join(f"Item {n}.{i}: notes on the spring release."
                                                        for i in range(6)) for n in range(4))
    rule = "_" * 54
    new, quoted, signature = split_reply(f"{rule}\n\nTHE TOOLMAKERS DIGEST, ISSUE 9\n{rule}\n\n{sections}\n")
    assert "Item 3.5: notes on the spring release." in new and "TOOLMAKERS DIGEST" in new
    assert (quoted, signature) == ("", "")
    new, _, signature = split_reply(f"see you at the workshop\n\n{rule}\nGet the new Webmail app, free\n")
    assert (new, signature) == ("see you at the workshop", f"{rule}\nGet the new Webmail app, free")
    new, quoted, _ = split_reply(f"works for me\n\n{rule}\nFrom: Ana Lima\nSent: Monday\nTo: Bo\n"
                                 "Subject: dates\n\n" + "\n".join(f"line {i} of her note" for i in range(30)))
    assert new == "works for me" and "line 29 of her note" not in new


def test_sent_from_phone_is_a_signature():
    new, _, signature = split_reply("ok see you there\n\nSent from my iPhone")
    assert new == "ok see you there" and signature == "Sent from my iPhone"


@pytest.mark.parametrize("value", [b"=?utf-8?b?abcde?=", b"=?utf-8\xe9?q?x?=", b"=?no-such-charset?q?x?="])
def test_a_broken_encoded_word_is_a_problem_not_an_error(value):
    raw = b"From: " + value + b" <a@b.example>\nList-Id: " + value + b"\nSubject: " + value + b"\n\nhello there\n"
    record = parse_message(raw)
    assert record.body.strip() == "hello there" and "undecodable encoded word in a header" in record.problems


def test_text_that_no_utf8_can_hold_and_a_date_past_any_calendar_are_read():
    raw = (b"Subject: =?utf-7?q?+2AA-?=\nDate: Mon, 1 Jan 99999999999999999999 00:00:00 +0000\n"
           b"Content-Type: text/plain; charset=utf-7\n\n" + b"We would like to work with you on a joint event. " * 5
           + b"+2AA-\n")
    record = parse_message(raw)
    (record.subject + record.body).encode("utf-8")  # no lone surrogate left to fail an encoder
    assert "joint event" in record.body and record.date_iso() == record.date


def _alternative(*parts: tuple[str, str, bytes]) -> bytes:
    body = b"".join(b"--b\nContent-Type: " + ctype.encode() + b"\n" + (b"Content-Transfer-Encoding: " + cte.encode() + b"\n"
                    if cte else b"") + b"\n" + data + b"\n" for ctype, cte, data in parts)
    return b"Subject: offer\nContent-Type: multipart/alternative; boundary=b\n\n" + body + b"--b--\n"


@pytest.mark.parametrize("parts", [
    [("text/plain", "base64", b"ICAK"), ("text/html", "", b"<p>Plans start at $99 a month.</p>")],  # blank, encoded
    [("text/html", "", b"<p>Plans start at $99 a month.</p>"), ("text/plain", "", b"  ")],  # HTML first
    [("text/plain", "", b""), ("text/html", "", b"<p>Plans start at $99 a month.</p>"),
     ("text/calendar", "", b"BEGIN:VCALENDAR\nEND:VCALENDAR")],  # a calendar part last
])
def test_an_alternative_with_a_blank_plain_part_is_read_from_its_html(parts):
    assert "Plans start at $99 a month." in parse_message(_alternative(*parts)).body


@pytest.mark.parametrize("content_type, body, expected", [
    ("multipart/mixed", b"We would like to co-host the spring meetup with you.\n", "co-host the spring meetup"),
    ('multipart/alternative; boundary="b1"', b"<html><body><p>Plans start at <b>$99</b> a month.</p></body></html>\n",
     "Plans start at $99 a month."),
])
def test_a_multipart_whose_boundary_is_missing_or_never_comes_is_read_as_its_body(content_type, body, expected):
    """As mail programs show such a message (old bulk mail often has one): its text, not nothing."""
    record = parse_message(b"Subject: hello\nMIME-Version: 1.0\nContent-Type: " + content_type.encode() + b"\n\n" + body)
    assert expected in record.body and "<" not in record.body


_FULL_HTML = (b"<html><body><p>Hi there,</p><p>Our agency builds landing pages that convert. Plans start at "
              b"$99 a month, and this week we are offering a free audit of your site.</p><p>Book 15 minutes "
              b"on my calendar and I will show you three quick wins.</p></body></html>")


def test_a_stub_plain_part_beside_a_full_html_part_is_read_from_the_html():
    raw = _alternative(("text/plain", "", b"View this email in your browser: https://mail.example.com/v/81"),
                       ("text/html; charset=utf-8", "quoted-printable", _FULL_HTML))
    body = parse_message(raw).body
    assert "Plans start at $99 a month" in body and "View this email" not in body


def test_a_short_plain_part_with_the_same_text_in_html_is_read_as_plain():
    raw = _alternative(("text/plain", "", b"Thanks, see you at 3. (sent from my phone)"),
                       ("text/html", "", b"<div dir=ltr>Thanks, see you at 3.<br>(sent from my phone)</div>"))
    assert parse_message(raw).body == "Thanks, see you at 3. (sent from my phone)"


@pytest.mark.parametrize("cte", ["base64", "8bit"])
@pytest.mark.parametrize("charset, codec", [
    ("utf-16", "utf-16"),  # with a byte order mark
    ("utf-16", "utf-16-be"),  # without one, big-endian
    ("utf-16", "utf-16-le"),  # without one, little-endian: its zero bytes tell
    ("UTF-16LE", "utf-16-le"),
    ("utf-32", "utf-32"),
])
def test_a_part_in_utf16_or_utf32_is_text_not_binary_data(charset, codec, cte):
    text = "We'd love to partner with you on a joint workshop in May.\n"
    data = text.encode(codec)
    record = parse_message(_alternative((f"text/plain; charset={charset}", cte,
                                         base64.encodebytes(data) if cte == "base64" else data)))
    assert record.body == text.strip() and record.problems == []


def test_a_part_declared_utf16_that_is_not_stays_binary_data():
    not_utf16 = b"\x00\xd8\xd8\x00" * 100  # a high surrogate followed by no low one, in either byte order
    record = parse_message(_alternative(("text/plain; charset=utf-16", "base64", base64.encodebytes(not_utf16))))
    assert record.body == "" and "binary data, not text" in record.problems


@pytest.mark.parametrize("charset, codec", [("ISO-2022-JP", "iso2022_jp"), ("iso-2022-kr", "iso2022_kr")])
def test_text_in_an_iso_2022_charset_is_text_not_binary_data(charset, codec):
    """ISO-2022 text switches character sets with ESC bytes: declared so, it is decoded."""
    text = {"iso2022_jp": "提携のご提案です。収益を分け合いましょう。", "iso2022_kr": "공동 행사를 제안합니다. 수익을 나눕시다."}[codec]
    raw = (f"From: a@x.example\nSubject: x\nContent-Type: text/plain; charset={charset}\n\n".encode()
           + text.encode(codec) + b"\n")
    record = parse_message(raw)
    assert record.body == text and record.problems == []


@pytest.mark.parametrize("data, text", [
    (b"We would love to partner with you on this.\n", "We would love to partner with you on this."),  # odd length
    (b"Hello there, friend!\n", "Hello there, friend!"),  # even length
    ("Café crème, à bientôt.\n".encode("latin-1"), "Café crème, à bientôt."),
    ("Café crème, à bientôt.\n".encode("utf-8"), "Café crème, à bientôt."),
    ("合作伙伴计划：我们一起举办活动。\n".encode("utf-16-be"), "合作伙伴计划：我们一起举办活动。"),
    ("我们希望与贵公司合作举办活动。请回复。".encode("utf-16-le"), "我们希望与贵公司合作举办活动。请回复。"),
])
def test_a_part_labelled_utf16_without_a_bom_reads_as_what_it_is(data, text):
    """No byte order mark: 8-bit text under a wrong label is read as 8-bit text, and text
    with no Latin letter in the byte order whose characters Unicode assigns."""
    record = parse_message(_alternative(("text/plain; charset=utf-16", "base64", base64.encodebytes(data))))
    assert record.body == text
