"""Replies travel as clean comments: quoted history, signatures, disclaimers and the bridge's
own acknowledgement quoted back are cut (:mod:`usm_bridge_email.reply_text`, on the
mail-parser-reply library), the whole message stays in the record's ``full_body``.

Replies are written the way Gmail, Outlook, Apple Mail and Thunderbird write them in English,
Dutch, German and French; third-party samples (``replies/``, see its SOURCES.md) come from
other projects' test suites. The end-to-end test runs two Maildir desks through the real
SyncEngine: a customer's reply reaches the supplier's mailbox as only what the customer wrote.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import mailparser_reply
import pytest
from email_harness import (
    ADDRESS,
    MAPPING,
    MailBridge,
    MaildirHarness,
    connect,
    customer_mail,
    maildir_desk,
    read,
    replies,
    sent_to,
)
from email_servers import SmtpServer
from pydantic import ValidationError
from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.model import Call, Status
from usm_bridge.plugins import PluginHost

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.connector import NO_NEW_TEXT
from usm_bridge_email.parsing import html_to_text, parse_message
from usm_bridge_email.reply_text import DEFAULT_DISCLAIMER_STARTS, clean_reply

SAMPLES = Path(__file__).parent / "replies"
ANN = "ann@customer.example"
#: The bridge's acknowledgement, as connector._acknowledge writes it.
ACK = (
    "Thank you for your message. It is registered as HR-1.\n"
    "Please keep [HR-1] in the subject when you write about it.\n\n"
    "This is an automatic answer."
)
QUOTED_ACK = "> " + ACK.replace("\n", "\n> ").replace("> \n", ">\n")
NEW = "The badge still does not open door 3B."


def only(text: str, **kwargs: Any) -> str:
    return clean_reply(text, **kwargs).text


# -- what each client writes -------------------------------------------------------------------

_OUTLOOK_RULE = "________________________________"
CLIENTS: dict[str, str] = {
    # Gmail: top-posted, the attribution line then the quote.
    "gmail-en": f"{NEW}\n\nOn Mon, 3 Mar 2025 at 10:12, Service Desk <{ADDRESS}> wrote:\n\n"
    f"{QUOTED_ACK}\n",
    "gmail-nl": f"{NEW}\n\nOp ma 3 mrt 2025 om 10:12 schreef Service Desk <{ADDRESS}>:\n\n"
    f"{QUOTED_ACK}\n",
    "gmail-de": f"{NEW}\n\nAm Mo., 3. März 2025 um 10:12 Uhr schrieb Service Desk <{ADDRESS}>:"
    f"\n\n{QUOTED_ACK}\n",
    "gmail-fr": f"{NEW}\n\nLe lun. 3 mars 2025 à 10:12, Service Desk <{ADDRESS}> a écrit :\n\n"
    f"{QUOTED_ACK}\n",
    # Gmail wraps a long attribution line (and its address) over two lines.
    "gmail-en-wrapped": f"{NEW}\n\nOn Mon, 3 Mar 2025 at 10:12, The Very Long Name Service "
    f"Desk <\n{ADDRESS}> wrote:\n\n{QUOTED_ACK}\n",
    # Outlook: a rule, then a header block over the history, which is not marked at all.
    "outlook-en": f"{NEW}\n\n{_OUTLOOK_RULE}\nFrom: Service Desk <{ADDRESS}>\n"
    f"Sent: Monday, March 3, 2025 10:12 AM\nTo: Ann Customer <{ANN}>\n"
    f"Subject: [HR-1] Badge broken\n\n{ACK}\n",
    "outlook-nl": f"{NEW}\n\n{_OUTLOOK_RULE}\nVan: Service Desk <{ADDRESS}>\n"
    f"Verzonden: maandag 3 maart 2025 10:12\nAan: Ann Customer <{ANN}>\n"
    f"Onderwerp: [HR-1] Badge broken\n\n{ACK}\n",
    "outlook-de": f"{NEW}\n\n{_OUTLOOK_RULE}\nVon: Service Desk <{ADDRESS}>\n"
    f"Gesendet: Montag, 3. März 2025 10:12\nAn: Ann Customer <{ANN}>\n"
    f"Betreff: [HR-1] Badge broken\n\n{ACK}\n",
    "outlook-fr": f"{NEW}\n\n{_OUTLOOK_RULE}\nDe : Service Desk <{ADDRESS}>\n"
    f"Envoyé : lundi 3 mars 2025 10:12\nÀ : Ann Customer <{ANN}>\n"
    f"Objet : [HR-1] Badge broken\n\n{ACK}\n",
    # Outlook's older plain-text form.
    "outlook-original-message": f"{NEW}\n\n-----Original Message-----\nFrom: Service Desk "
    f"[mailto:{ADDRESS}]\nSent: Monday, March 3, 2025 10:12 AM\n\n{ACK}\n",
    # Outlook's older form in the other languages: the separator line goes with the block.
    "outlook-original-de": f"{NEW}\n\n-----Ursprüngliche Nachricht-----\nVon: Service Desk "
    f"<{ADDRESS}>\nGesendet: Montag, 3. März 2025 10:12\nAn: Ann\nBetreff: Badge\n\n{ACK}\n",
    "outlook-original-nl": f"{NEW}\n\n-----Oorspronkelijk bericht-----\nVan: Service Desk "
    f"<{ADDRESS}>\nVerzonden: maandag 3 maart 2025 10:12\nAan: Ann\nOnderwerp: Badge\n\n{ACK}\n",
    "outlook-original-fr": f"{NEW}\n\n-----Message d'origine-----\nDe : Service Desk "
    f"<{ADDRESS}>\nEnvoyé : lundi 3 mars 2025 10:12\nÀ : Ann\nObjet : Badge\n\n{ACK}\n",
    # Apple Mail on iOS: "Sent from my iPhone", the attribution inside the quote.
    "apple-en": f"{NEW}\n\nSent from my iPhone\n\n> On 3 Mar 2025, at 10:12, Service Desk "
    f"<{ADDRESS}> wrote:\n>\n{QUOTED_ACK}\n",
    "apple-nl": f"{NEW}\n\nOp 3 mrt 2025 om 10:12 heeft Service Desk <{ADDRESS}> het volgende "
    f"geschreven:\n\n{QUOTED_ACK}\n",
    "apple-de": f"{NEW}\n\nAm 03.03.2025 um 10:12 schrieb Service Desk <{ADDRESS}>:\n\n"
    f"{QUOTED_ACK}\n",
    "apple-fr": f"{NEW}\n\nLe 3 mars 2025 à 10:12, Service Desk <{ADDRESS}> a écrit :\n\n"
    f"{QUOTED_ACK}\n",
    # Thunderbird: a short attribution line without the address.
    "thunderbird-en": f"{NEW}\n\nOn 03/03/2025 10:12, Service Desk wrote:\n{QUOTED_ACK}\n",
    "thunderbird-nl": f"{NEW}\n\nOp 03-03-2025 om 10:12 schreef Service Desk:\n{QUOTED_ACK}\n",
    "thunderbird-de": f"{NEW}\n\nAm 03.03.25 um 10:12 schrieb Service Desk:\n{QUOTED_ACK}\n",
    "thunderbird-fr": f"{NEW}\n\nLe 03/03/2025 à 10:12, Service Desk a écrit :\n{QUOTED_ACK}\n",
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_each_clients_top_posted_reply_is_cut_to_what_the_person_wrote(client: str) -> None:
    cleaned = clean_reply(CLIENTS[client])
    assert cleaned.text == NEW, cleaned
    assert "quote" in cleaned.removed and cleaned.error is None


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("On Tue, 4 Mar 2025 at 09:00, Ann Customer <ann@customer.example> wrote:", "en"),
        ("Op di 4 mrt 2025 om 09:00 schreef Ann Customer <ann@customer.example>:", "nl"),
        ("Am Di., 4. März 2025 um 09:00 Uhr schrieb Ann Customer <ann@customer.example>:", "de"),
        ("Le mar. 4 mars 2025 à 09:00, Ann Customer <ann@customer.example> a écrit :", "fr"),
    ],
)
def test_a_bottom_posted_reply_keeps_the_text_below_the_quote(header: str, language: str) -> None:
    text = f"{header}\n> My badge does not open the door.\n>\n> Ann\n\n{NEW}\nRoom 3.14.\n"
    assert only(text, languages=[language]) == f"{NEW}\nRoom 3.14."


def test_inline_answers_between_quoted_lines_are_all_kept() -> None:
    text = (
        "On Tue, 4 Mar 2025 at 09:00, Hilda <hilda@hr.example> wrote:\n"
        "> Which door is it?\n"
        "Door 3B, on the third floor.\n"
        "> Since when?\n"
        "Since Monday morning.\n"
    )
    assert only(text) == "Door 3B, on the third floor.\nSince Monday morning."


def test_a_reply_that_only_quotes_has_no_new_text() -> None:
    for text in (
        f"On Mon, 3 Mar 2025 at 10:12, Service Desk <{ADDRESS}> wrote:\n{QUOTED_ACK}\n",
        f"{QUOTED_ACK}\n",
        f"\n\n{_OUTLOOK_RULE}\nFrom: Service Desk <{ADDRESS}>\nSent: Monday\nTo: Ann\n\n{ACK}",
    ):
        cleaned = clean_reply(text)
        assert cleaned.text == "" and "quote" in cleaned.removed, text


def test_html_quotes_are_marked_so_their_history_is_cut_too() -> None:
    html = (
        f"<div dir=ltr>{NEW}</div><br><div class=gmail_quote><div class=gmail_attr>On Mon, 3 "
        f"Mar 2025 at 10:12, Service Desk &lt;{ADDRESS}&gt; wrote:<br></div><blockquote "
        'class="gmail_quote">Thank you for your message.<br><blockquote>older</blockquote>'
        "</blockquote></div>"
    )
    text = html_to_text(html)
    assert "> Thank you for your message." in text and "> > older" in text
    assert only(text) == NEW


# -- the bridge's own text ---------------------------------------------------------------------


def test_the_bridges_acknowledgement_pasted_without_marks_is_removed() -> None:
    # Some clients (and people) paste the mail they answer below their text, no header at all.
    assert only(f"{NEW}\n\n{ACK}\n", bridge_texts=[ACK]) == NEW
    # ... or re-wrapped narrower, in another case, between two lines of their own.
    rewrapped = (
        "THANK YOU for your message. It is\nregistered as HR-1. Please keep\n"
        "[HR-1] in the subject when you\nwrite about it."
    )
    text = f"Hello,\n\n{rewrapped}\n\n{NEW}"
    cleaned = clean_reply(text, bridge_texts=[ACK])
    assert cleaned.text == f"Hello,\n\n{NEW}" and "bridge text" in cleaned.removed
    # Without the bridge's mails to compare with, the same text stays.
    assert only(text) == text


def test_a_short_phrase_that_the_bridge_also_wrote_is_the_persons_own() -> None:
    assert only("Thank you for your message.\nIt works.", bridge_texts=[ACK]) == (
        "Thank you for your message.\nIt works."
    )


# -- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nAnn Customer\nHR department, room 3.14\n+31 20 555 0100",
        "Best regards,\nAnn Customer",
        "Kind Regards\nAnn",
        "Met vriendelijke groet,\nAnn de Vries",
        "Mit freundlichen Grüßen\nJürgen Müller",
        "Viele Grüße\nJürgen",
        "Cordialement,\nMarie Dupont",
        "Sent from my iPhone",
        "Verzonden vanaf mijn iPhone",
        "Gesendet von meinem iPhone",
        "Envoyé depuis mon iPhone",
        "Get Outlook for Android",
    ],
)
def test_signatures_are_cut(signature: str) -> None:
    cleaned = clean_reply(f"{NEW}\n\n{signature}\n")
    assert cleaned.text == NEW and cleaned.removed == ("signature",), cleaned


def test_text_that_only_looks_like_a_sign_off_stays() -> None:
    # A sentence that starts like a sign-off, a list, and "--" inside a line.
    text = (
        "Hi,\nThanks, that fixed the badge. But the printer on floor 2 is down too.\n"
        "Steps:\n- open the tray\n- press reset\nA fix -- not a signature."
    )
    assert only(text) == text


# -- disclaimers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disclaimer",
    [
        "This email and any attachments are confidential and intended solely for the addressee."
        " If you received it in error, please delete it.",
        "Dit bericht is vertrouwelijk en uitsluitend bestemd voor de geadresseerde.",
        "Diese E-Mail enthält vertrauliche Informationen. Wenn Sie nicht der richtige Adressat "
        "sind, informieren Sie bitte sofort den Absender.",
        "Ce message et toutes les pièces jointes sont confidentiels et établis à l'intention "
        "exclusive de ses destinataires.",
    ],
)
def test_common_disclaimers_are_cut(disclaimer: str) -> None:
    cleaned = clean_reply(f"{NEW}\n\n{disclaimer}\n")
    assert cleaned.text == NEW and cleaned.removed == ("disclaimer",), cleaned


def test_a_units_own_disclaimer_is_cut_and_the_defaults_can_be_replaced() -> None:
    text = f"{NEW}\n\nACME Holding B.V. is registered at the Chamber of Commerce under 1234."
    assert only(text) == text  # no default knows ACME's footer
    starts = [*DEFAULT_DISCLAIMER_STARTS, "ACME Holding B.V. is registered"]
    assert only(text, disclaimer_starts=starts) == NEW
    # Spacing and case are ignored, the library's own guess ("Warning: ... mail") is not used.
    assert only(f"{NEW}\n\nacme  holding b.v. IS registered here", disclaimer_starts=starts) == NEW
    warning = "Warning: my mail client crashes when I open the attachment."
    assert only(warning) == warning
    assert only(f"{NEW}\n\nDisclaimer: none", disclaimer_starts=[]) == f"{NEW}\n\nDisclaimer: none"


def test_an_external_sender_banner_above_the_text_takes_only_its_paragraph() -> None:
    banner = "CAUTION: This email originated from outside of the organization.\nDo not click."
    assert only(f"{banner}\n\n{NEW}\n\nMet vriendelijke groet,\nAnn") == NEW


def test_signature_disclaimer_and_quote_together() -> None:
    text = (
        f"Hi,\n\n{NEW}\n\nKind regards,\nAnn Customer\nACME | HR\n\n"
        "The information contained in this e-mail is confidential.\n\n"
        f"{_OUTLOOK_RULE}\nFrom: Service Desk <{ADDRESS}>\nSent: Monday\nTo: Ann\n"
        f"Subject: Badge\n\n{ACK}"
    )
    cleaned = clean_reply(text)
    assert cleaned.text == f"Hi,\n\n{NEW}"
    assert set(cleaned.removed) == {"quote", "disclaimer", "signature"}


# -- never losing text -------------------------------------------------------------------------


def test_indentation_of_pasted_logs_is_kept() -> None:
    log = "Error:\n    at Badge.open (door.js:12)\n\tat main (app.js:3)"
    assert only(f"{log}\n\nOn Mon, 3 Mar 2025, Desk <{ADDRESS}> wrote:\n> hi\n") == log


def test_a_huge_line_is_kept_whole_and_never_taken_for_a_header() -> None:
    # The library's header patterns are quadratic in a line's length: such lines are hidden.
    line = "On " + "and on " * 20_000
    cleaned = clean_reply(f"{line}\n\nOn Mon, 3 Mar 2025, Desk <{ADDRESS}> wrote:\n> hi\n")
    assert cleaned.text == line.rstrip() and cleaned.removed == ("quote",)


def test_many_lines_that_start_like_sign_offs_are_all_kept() -> None:
    # Each is tried as a signature and refused (a sentence): every one of them stays.
    text = "Hi\n" + "Thanks, this sentence is no sign-off.\n" * 2000 + "- a list\n" * 2000
    assert only(text) == text.strip()


def test_a_failing_library_returns_the_whole_text_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: object) -> None:
        raise RuntimeError("pattern exploded")

    monkeypatch.setattr(mailparser_reply.EmailMessage, "HEADER_REGEX", property(broken))
    cleaned = clean_reply(f"  {NEW}\n\n> quoted\n")
    assert cleaned.text == f"{NEW}\n\n> quoted"
    assert cleaned.error == "RuntimeError: pattern exploded" and cleaned.removed == ()


# -- third-party samples (replies/SOURCES.md) --------------------------------------------------

THIRD_PARTY: dict[str, str] = {
    "mail-parser-reply--email_en_wrap.txt": "Hi Anna,\n\nThanks for the offer — the timing could"
    " work. Could you share the rate and\nthe start date?\n\n/B",
    "mail-parser-reply--email_nl_wrap.txt": "Hoi Anna,\n\ndank voor je bericht. De voorwaarden "
    "lijken passend; laten we morgen even\nbellen.\n\nGroet\nB",
    "mail-parser-reply--email_de_wrap.txt": "Hallo Anna,\n\ndanke für die Nachricht. Die "
    "Konditionen klingen passend, lass uns morgen\nkurz telefonieren.",
    "mail-parser-reply--email_fr_wrap.txt": "Bonjour Anna,\n\nMerci pour votre message. Les "
    "conditions me semblent correctes, je serai\ndisponible la semaine prochaine.",
    "mail-parser-reply--email_nl_1_2.txt": "Outlook met een antwoord",
    "mail-parser-reply--email_gmail.txt": "This is a test for inbox replying to a github message.",
    "email_reply_parser--quote_reply_german.txt": "This is a reply with German quote",
    "email_reply_parser--email_2nd_paragraph_starting_with_on.txt": "This emails tests that "
    "multiline header fix isn't catching things it shouldn't.\n\nOn friday when I tried it "
    "didn't work as expect.\n\nThis line would have been considered part of the header line.",
    "email_reply_parser--greedy_on.txt": "On your remote host you can run:\n\n     telnet "
    "127.0.0.1 52698\n\nThis should connect to TextMate (on your Mac, via the tunnel). If that"
    "\nfails, the tunnel is not working.",
    "email_reply_parser--email_sig_delimiter_in_middle_of_line.txt": "Hi there!\n\nStuff "
    "happened.\n\nAnd here is a fix -- this is not a signature.\n\nkthxbai",
}


def test_every_third_party_sample_is_checked() -> None:
    stored = {path.name for path in SAMPLES.glob("*.txt")}
    assert stored == set(THIRD_PARTY) | {
        "email_reply_parser--email_multiline_quote_header_from_to_date_subject.txt"
    }


@pytest.mark.parametrize("name", sorted(THIRD_PARTY))
def test_third_party_samples(name: str) -> None:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    assert only(text) == THIRD_PARTY[name]


def test_third_party_sample_with_a_long_line_above_an_outlook_block() -> None:
    name = "email_reply_parser--email_multiline_quote_header_from_to_date_subject.txt"
    text = (SAMPLES / name).read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    assert len(first) > 400  # hidden from the library's patterns, and kept whole
    assert only(text) == first


# -- settings ----------------------------------------------------------------------------------


def _settings(**values: Any) -> EmailSettings:
    return EmailSettings(address=ADDRESS, maildir={"path": "/tmp/unused"}, **values)


def test_reply_settings_have_defaults_and_refuse_what_would_cut_real_text() -> None:
    settings = _settings()
    assert settings.reply_languages == ["en", "nl", "de", "fr"]
    assert "Diese E-Mail enthält vertrauliche" in settings.disclaimer_starts
    assert _settings(reply_languages=[" DE ", "sv"]).reply_languages == ["de", "sv"]
    with pytest.raises(ValidationError, match="reply_languages: 'xx' not known"):
        _settings(reply_languages=["en", "xx"])
    with pytest.raises(ValidationError, match="'Note' is too short"):
        _settings(disclaimer_starts=["Note"])
    assert _settings(disclaimer_starts=["  ACME   Holding  "]).disclaimer_starts == ["ACME Holding"]


# -- through the connector ---------------------------------------------------------------------


def as_call(record: RawRecord) -> Call:
    host = PluginHost()
    context = MappingContext(unit="hr", instance="hr-mail", transforms=host.transforms())
    return host.map_inbound(load_mapping(MAPPING), record, context)


def _acknowledged(
    harness: MaildirHarness, smtp: SmtpServer, **settings: Any
) -> tuple[Any, str, EmailMessage, str]:
    """Ann's call, read and acknowledged: (connector, its Message-ID, the ack, the cursor)."""
    connector = connect(harness, smtp, **settings)
    start = len(smtp.messages)
    root, raw = customer_mail(
        "Badge broken", "My badge does not open the door.\n\n> a quote in the first mail stays"
    )
    harness.deliver(raw)
    _, cursor = read(connector)
    [ack] = sent_to(smtp, start, ANN)
    return connector, root, ack, cursor


def test_replies_become_clean_comments_and_the_record_keeps_the_whole(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector, _, ack, cursor = _acknowledged(harness, smtp)
    ack_text = ack.get_content().replace("\r\n", "\n").strip()
    assert ack_text.startswith("Thank you for your message.")
    quoted = "> " + ack_text.replace("\n", "\n> ")
    bodies = {
        "top": f"{NEW}\n\nBest regards,\nAnn\n\nOn Mon, 3 Mar 2025 at 10:12, Service Desk "
        f"<{ADDRESS}> wrote:\n{quoted}\n",
        "bottom": f"Op ma 3 mrt 2025 om 10:12 schreef Service Desk <{ADDRESS}>:\n{quoted}\n\n"
        "Room 3.14, since Monday.\n\n-- \nAnn",
        "pasted": f"Still broken.\n\n{ack_text}\n",
        "quote-only": f"Am 03.03.25 um 10:12 schrieb Service Desk:\n{quoted}\n",
    }
    ids = {}
    for name, body in bodies.items():
        ids[name], raw = customer_mail(f"Re: {ack['Subject']}", body, in_reply_to=ack["Message-ID"])
        harness.deliver(raw)
    [record], _ = read(connector, cursor)

    # The first mail (the call's description) is kept whole.
    assert "> a quote in the first mail stays" in str(record.data["body"])
    by_id = {r["message_id"]: r for r in replies(record)}
    # Four replies delivered, four comments (and the acknowledgement).
    assert set(by_id) == {*ids.values(), str(ack["Message-ID"])}
    expected = {
        "top": NEW,
        "bottom": "Room 3.14, since Monday.",
        "pasted": "Still broken.",
        "quote-only": NO_NEW_TEXT,
    }
    for name, message_id in ids.items():
        reply = by_id[message_id]
        assert reply["body"] == expected[name], name
        assert reply["full_body"] == bodies[name].strip(), name
        assert reply["cleaned"], name
    assert by_id[ids["quote-only"]]["no_new_text"] is True
    assert by_id[ids["quote-only"]]["kind"] == "quote_only"
    assert by_id[ids["pasted"]]["cleaned"] == ["bridge text"]

    call = as_call(record)
    public = sorted(c.body for c in call.comments if c.public)
    assert public == sorted([NEW, "Room 3.14, since Monday.", "Still broken."])
    # The reply with nothing new is an internal note, not lost, not travelling.
    [note] = [c for c in call.comments if c.remote_id == ids["quote-only"]]
    assert not note.public and note.body == NO_NEW_TEXT
    assert all("registered as" not in c.body for c in call.comments if c.public)


def test_a_command_above_quoted_history_is_no_comment_and_text_with_it_is_clean(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    settings = {"agents": ["hilda@hr.example"], "trust_relay": True}
    connector, root, _, cursor = _acknowledged(harness, smtp, **settings)
    history = f"On Mon, 3 Mar 2025 at 10:12, Ann <{ANN}> wrote:\n> My badge does not open.\n"
    agent = "Hilda Desk <hilda@hr.example>"
    bare, raw = customer_mail(
        # Classified with the same command block: nobody works on an unclassified call.
        "Re: Badge",
        f"Type: incident\nStatus: in progress\n\n{history}",
        sender=agent,
        in_reply_to=root,
    )
    harness.deliver(raw)
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "in_progress"
    assert bare not in [r["message_id"] for r in replies(record)]

    worded, raw = customer_mail(
        "Re: Badge",
        f"Status: fulfilled\n\nA new badge is at the reception.\n\nKind regards,\nHilda\n\n"
        f"{history}",
        sender=agent,
        in_reply_to=root,
    )
    harness.deliver(raw)
    [record], _ = read(connector, cursor)
    [reply] = [r for r in replies(record) if r["message_id"] == worded]
    assert reply["body"] == "A new badge is at the reception."
    assert reply["full_body"].startswith("Status: fulfilled") and "> My badge" in reply["full_body"]
    assert as_call(record).status is Status.FULFILLED


def test_a_units_disclaimer_setting_reaches_the_comments(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    footer = "ACME Holding B.V. is registered at the Chamber of Commerce."
    starts = [*DEFAULT_DISCLAIMER_STARTS, "ACME Holding B.V."]
    connector, root, _, cursor = _acknowledged(harness, smtp, disclaimer_starts=starts)
    reply, raw = customer_mail("Re: Badge", f"{NEW}\n\n{footer}\n", in_reply_to=root)
    harness.deliver(raw)
    [record], _ = read(connector, cursor)
    [item] = [r for r in replies(record) if r["message_id"] == reply]
    assert item["body"] == NEW and item["cleaned"] == ["disclaimer"]
    assert footer in item["full_body"]


def test_an_html_only_reply_is_cleaned_like_plain_text(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector, root, _, cursor = _acknowledged(harness, smtp)
    _, raw = customer_mail("Re: Badge", "x", in_reply_to=root)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    message.set_content(
        f"<p>{NEW}</p><div>On Mon, 3 Mar 2025 at 10:12, Desk &lt;{ADDRESS}&gt; wrote:</div>"
        "<blockquote>Thank you for your message.</blockquote>",
        subtype="html",
    )
    harness.deliver(message.as_bytes())
    parsed = parse_message(message.as_bytes())
    assert "> Thank you for your message." in parsed.body
    [record], _ = read(connector, cursor)
    [item] = [r for r in replies(record) if r["message_id"] == parsed.message_id]
    assert item["body"] == NEW


# -- end to end: the comment another tool gets -------------------------------------------------

SUPPLIER = "orders@chairs.example"
DESK = "suppliers@facilities.example"


@pytest.fixture
def chain(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[MailBridge]:
    """HR's desk, whose service requests go to Facilities' desk, which mails its supplier."""
    made = MailBridge(
        tmp_path,
        maildir_desk(tmp_path, smtp_server, "hr-mail", "hr", address=ADDRESS,
                     reference_prefix="HR"),
        maildir_desk(tmp_path, smtp_server, "fac-mail", "facilities", address=DESK,
                     reference_prefix="FAC", supplier_address=SUPPLIER),
        route=("hr", "facilities"),
    )  # fmt: skip
    with closing(made):
        yield made


def test_a_reply_travels_the_chain_as_a_clean_comment(
    chain: MailBridge, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    start = len(smtp_server.messages)
    root, raw = customer_mail("[request] A chair for desk 4.12", "Mine is broken.")
    chain.boxes["hr-mail"].add(raw)
    chain.run_clean("hr-mail", "fac-mail", "hr-mail")
    [ack] = [m for m in sent_to(smtp_server, start, ANN) if m["X-USM-Kind"] == "ack"]

    # Ann answers the acknowledgement from Outlook, in German, with signature and disclaimer.
    ack_text = ack.get_content().replace("\r\n", "\n").strip()
    body = (
        "Es ist der Bürostuhl mit der gebrochenen Armlehne.\n\n"
        "Mit freundlichen Grüßen\nAnn Customer\nPersonalabteilung\n\n"
        "Diese E-Mail enthält vertrauliche Informationen.\n\n"
        f"{_OUTLOOK_RULE}\nVon: Service Desk <{ADDRESS}>\nGesendet: Montag, 3. März 2025\n"
        f"An: Ann Customer <{ANN}>\nBetreff: {ack['Subject']}\n\n{ack_text}\n"
    )
    reply, raw = customer_mail(f"AW: {ack['Subject']}", body, in_reply_to=ack["Message-ID"])
    chain.boxes["hr-mail"].add(raw)
    before = len(smtp_server.messages)
    chain.run_clean("hr-mail", "fac-mail")

    # The supplier gets only what Ann wrote.
    [comment] = [m for m in sent_to(smtp_server, before, SUPPLIER) if m["X-USM-Kind"] == "comment"]
    text = comment.get_content()
    assert "Es ist der Bürostuhl mit der gebrochenen Armlehne." in text
    for gone in ("registered as", "automatic answer", "Mit freundlichen", "vertrauliche", "Von:"):
        assert gone not in text, gone
    calls = chain.calls()
    [travelled] = [c for c in calls["facilities"].comments if "Bürostuhl" in c.body]
    assert travelled.body.endswith("Es ist der Bürostuhl mit der gebrochenen Armlehne.")
    [own] = [c for c in calls["hr"].comments if c.remote_id == reply]
    assert own.body == "Es ist der Bürostuhl mit der gebrochenen Armlehne." and own.public

    # The raw record (and the mailbox) keeps the whole message.
    settings = EmailSettings(
        address=ADDRESS, reference_prefix="HR", maildir={"path": str(tmp_path / "hr-mail")},
        acknowledge=False,
    )  # fmt: skip
    reader = EmailConnector("hr-reader", settings)
    try:
        records = [r for r in reader.read_changes(None) if isinstance(r, RawRecord)]
        [record] = [r for r in records if r.remote_id == root]
        [item] = [r for r in replies(record) if r["message_id"] == reply]
        assert item["full_body"] == body.strip()
        assert item["body"] == "Es ist der Bürostuhl mit der gebrochenen Armlehne."
    finally:
        reader.close()
