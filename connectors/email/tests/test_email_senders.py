"""Who a mail is from, read so that nobody can pose as somebody else, and which senders are
robots the bridge never answers (issue 12, items 3 and 4).

The From corpus: each raw header (as bytes, as a client or a forger writes it) with the one
address the bridge must take for the sender, every address it must see, and the display name
people are shown. Encoded words (RFC 2047) may hold a display name only, never an address.
"""

from __future__ import annotations

import email.utils

import pytest
from email_harness import MaildirHarness, customer_mail, read, replies
from email_servers import SmtpServer
from test_email_commands import commands, connect
from usm_bridge.connector import CommentDraft

from usm_bridge_email.parsing import parse_message
from usm_bridge_email.robots import robot_address

#: raw From header -> (the sender's address, every address read, the name shown; None: no From)
FROM_CORPUS: list[tuple[bytes, str | None, list[str], str | None]] = [
    # The spoof: the encoded display name decodes to "é <hilda@example.com>".
    (
        b"=?utf-8?b?w6kgPGhpbGRhQGV4YW1wbGUuY29tPg==?= <evil@evil.example>",
        "evil@evil.example",
        ["evil@evil.example"],
        "é <hilda@example.com>",
    ),
    # An encoded word standing where the address belongs is no address at all.
    (b"=?utf-8?q?hilda=40example=2Ecom?=", None, [], None),
    (b"=?utf-8?b?aGlsZGFAZXhhbXBsZS5jb20=?=", None, [], None),
    (b"<=?utf-8?q?hilda?=@example.com>", None, [], None),
    # Text parsers read differently: an address not written out whole is none.
    (b'hilda@example.com"@evil.example', None, [], None),
    (b"<hilda@example.com@evil.example>", None, [], None),
    (b'"evil@evil.example" hilda@example.com', None, [], None),
    (
        b"Hilda <hilda@example.com> (via evil@evil.example)",
        "hilda@example.com",
        ["hilda@example.com"],
        "Hilda",
    ),
    # A quoted display name that looks like an address is only a name.
    (
        b'"hilda@example.com" <evil@evil.example>',
        "evil@evil.example",
        ["evil@evil.example"],
        "hilda@example.com",
    ),
    # Commas, quotes and non-ASCII in names, raw UTF-8 or encoded.
    (
        '"Müller, Jürgen" <j@example.com>'.encode(),
        "j@example.com",
        ["j@example.com"],
        "Müller, Jürgen",
    ),
    (
        b"=?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <j@example.com>",
        "j@example.com",
        ["j@example.com"],
        "Müller, Jürgen",
    ),
    (
        b'"O\'Brien, \\"Pat\\"" <pat@example.com>',
        "pat@example.com",
        ["pat@example.com"],
        'O\'Brien, "Pat"',
    ),
    (
        b"plain@example.com (Plain Person)",
        "plain@example.com",
        ["plain@example.com"],
        "Plain Person",
    ),
    # Folded across lines.
    (
        b"Hilda Desk\r\n <hilda@example.com>",
        "hilda@example.com",
        ["hilda@example.com"],
        "Hilda Desk",
    ),
    # Several addresses (RFC 5322 allows it): all seen, the first answered.
    (
        b"hilda@example.com, evil@evil.example",
        "hilda@example.com",
        ["hilda@example.com", "evil@evil.example"],
        "",
    ),
    # Two addresses without a comma (the stdlib CVE-2023-27043 shape): both seen, not one.
    (
        b"hilda@example.com <evil@evil.example>",
        "hilda@example.com",
        ["hilda@example.com", "evil@evil.example"],
        "",
    ),
    # Group syntax: an empty group names nobody; a group's members are its addresses.
    (b"Undisclosed-Recipients:;", None, [], None),
    (
        b"Desk: a@example.com, b@example.com;",
        "a@example.com",
        ["a@example.com", "b@example.com"],
        "",
    ),
    # No address at all.
    (b"just some words", None, [], None),
    (b"", None, [], None),
]


def _mail(from_header: bytes | None) -> bytes:
    head = b"" if from_header is None else b"From: " + from_header + b"\r\n"
    return head + (
        b"To: desk@hr.example\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n"
        b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )


def test_each_from_header_of_the_corpus_parses_to_its_expected_sender() -> None:
    outcomes = []
    for header, *_ in FROM_CORPUS:
        mail = parse_message(_mail(header))
        shown = email.utils.parseaddr(mail.from_)[0] if mail.from_ else None
        outcomes.append((mail.from_address, mail.from_addresses, shown))
    assert outcomes == [(address, every, name) for _, address, every, name in FROM_CORPUS]


def test_a_mail_without_from_has_no_sender() -> None:
    mail = parse_message(_mail(None))
    assert (mail.from_address, mail.from_addresses, mail.from_) == (None, [], "")


def test_reply_to_and_recipients_are_read_raw_too() -> None:
    raw = _mail(b"ann@customer.example").replace(
        b"To: desk@hr.example\r\n",
        b"To: =?utf-8?q?desk=40hr=2Eexample?= <evil@evil.example>\r\n"
        b"Reply-To: =?utf-8?b?aGlsZGFAZXhhbXBsZS5jb20=?= <thief@evil.example>\r\n",
    )
    mail = parse_message(raw)
    assert mail.reply_to == "thief@evil.example"
    assert [t.rsplit("<", 1)[-1].rstrip(">") for t in mail.to] == ["evil@evil.example"]


# -- robots ------------------------------------------------------------------------------------

ROBOTS: list[tuple[str, bool]] = [
    ("hr-list-request@lists.example", True),
    ("owner-hr-list@lists.example", True),
    ("hr-list-owner@lists.example", True),
    ("postmaster@example.com", True),
    ("MAILER-DAEMON@mx.example.com", True),
    ("noreply@shop.example", True),
    ("no-reply@shop.example", True),
    ("No_Reply+orders@shop.example", True),
    ("donotreply@bank.example", True),
    ("noreply-billing@cloud.example", True),
    ("ann@customer.example", False),
    ("request@customer.example", False),
    ("owner@customer.example", False),
    ("norene@customer.example", False),
    ("replyall@customer.example", False),
]


def test_robot_addresses_are_known_and_people_are_not() -> None:
    assert [robot_address(a) is not None for a, _ in ROBOTS] == [robot for _, robot in ROBOTS]


#: headers of a mail (From: Ann unless given) -> why it must not be answered (a word of it)
ROBOT_MAIL: list[tuple[dict[str, str], str]] = [
    ({"X-Mailman-Version": "2.1.39"}, "x-mailman-version"),
    ({"List-Id": "<hr.lists.example>"}, "list-id"),
    ({"To": "Undisclosed-Recipients:;"}, "Undisclosed-Recipients:;"),
    ({"To": "IETF-Announce:;"}, "IETF-Announce:;"),
    ({"Cc": "desk@hr.example, IETF-Announce:;"}, "IETF-Announce:;"),
    ({"Reply-To": "hr-list-request@lists.example"}, "an answer would go to"),
    ({"Reply-To": "noreply@shop.example"}, "a no-reply address"),
    ({"From": "noreply@shop.example"}, "an answer would go to a no-reply address"),
    # A web form: the answer goes to the customer.
    ({"From": "noreply@forms.example", "Reply-To": "ann@customer.example"}, ""),
    # A digest's Reply-To is the whole list: its robot From is never answered.
    (
        {"From": "hr-list-request@lists.example", "Reply-To": "hr-list@lists.example"},
        "sent from a mailing list's command address",
    ),
    ({"From": "owner-hr@lists.example"}, "owner address"),
    ({"From": "postmaster@customer.example"}, "mailer daemon"),
    ({"To": "desk@hr.example"}, ""),
]


def test_robot_mail_is_never_to_be_answered() -> None:
    reasons = []
    for headers, _ in ROBOT_MAIL:
        lines = [f"{k}: {v}" for k, v in headers.items()]
        if "To" not in headers:
            lines.append("To: desk@hr.example")
        if "From" not in headers:
            lines.append("From: ann@customer.example")
        raw = (
            "\r\n".join(lines) + "\r\nSubject: x\r\n"
            "Message-ID: <r@customer.example>\r\n\r\nbody\r\n"
        ).encode()
        reasons.append(parse_message(raw).no_answer)
    for (_, word), reason in zip(ROBOT_MAIL, reasons, strict=True):
        if word:
            assert reason is not None and word in reason
        else:
            assert reason is None


DIGEST = (
    "From: hr-list-request@lists.example\r\n"
    "To: hr-list@lists.example\r\n"
    "Reply-To: hr-list@lists.example\r\n"
    "Subject: hr-list Digest, Vol 12, Issue 3\r\n"
    "Message-ID: <digest-12-3@lists.example>\r\n"
    "X-Mailman-Version: 2.1.39\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    "Today's Topics:\r\n\r\n   1. Badge broken (Ann)\r\n"
)


@pytest.mark.parametrize(
    ("sender", "extra", "raw"),
    [
        ("Shop <noreply@shop.example>", {}, None),
        ("Ann <ann@customer.example>", {"X-Mailman-Version": "2.1.39"}, None),
        ("Ann <ann@customer.example>", {"Reply-To": "owner-hr@lists.example"}, None),
        (None, {}, DIGEST.encode()),
    ],
    ids=["noreply", "mailman-header", "reply-to-owner", "mailman-digest"],
)
def test_robot_mail_becomes_a_call_that_nobody_is_told_of(
    desk: tuple[MaildirHarness, SmtpServer],
    sender: str | None,
    extra: dict[str, str],
    raw: bytes | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    if raw is None:
        assert sender is not None
        _, raw = customer_mail("Order shipped", "Your order is on its way.", sender=sender,
                               extra=extra)  # fmt: skip
    start = len(smtp.messages)
    harness.deliver(raw)
    with caplog.at_level("INFO", logger="usm_bridge_email.connector"):
        [record], _ = read(connector)
    assert "dead_letter" not in record.data  # a call: nothing lost
    assert record.data["reference_token"] is None  # never acknowledged
    assert record.data["no_answer"]
    assert len(smtp.messages) == start
    assert "not acknowledged" in caplog.text


# -- the spoof end to end ----------------------------------------------------------------------


def test_an_encoded_display_name_passes_neither_as_agent_nor_past_allowed_domains(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp, allowed_domains=["hr.example", "customer.example"])
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    harness.deliver(raw)
    _, cursor = read(connector)
    forged = "=?utf-8?b?" + "w6kgPGhpbGRhQGhyLmV4YW1wbGU+" + "?= <evil@evil.example>"
    spoof, raw = customer_mail("Re: Badge broken", "Status: fulfilled", sender=forged,
                               in_reply_to=root)  # fmt: skip
    harness.deliver(raw)
    [record], _ = read(connector, cursor)
    [command] = commands(record)
    assert command["message_id"] == spoof
    assert (command["status"], command["by"]) == (None, None)
    assert "evil@evil.example is not one of the mailbox's agents" in command["reason"]
    assert record.data.get("status") is None
    [reply] = [r for r in replies(record) if r["message_id"] == spoof]
    assert reply["from"].endswith("<evil@evil.example>")
    # A new thread from the forger is held: outside allowed_domains, whatever its name says.
    _, raw = customer_mail("Hello", "Give me access.", sender=forged)
    harness.deliver(raw)
    records, _ = read(connector, cursor)
    held = [r for r in records if r.data.get("held")]
    assert len(held) == 1 and "evil.example" in str(held[0].data["held"])


def test_no_mail_of_the_bridge_goes_to_a_robot_but_each_is_kept_on_the_call(
    desk: tuple[MaildirHarness, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A call opened by a no-reply sender: an agent's command is obeyed and a tool's comment
    kept, each as the bridge's copy in the thread, but neither is mailed to the machine."""
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, raw = customer_mail(
        "Invoice 7 overdue", "Pay now.", sender="Billing <noreply@shop.example>"
    )
    harness.deliver(raw)
    _, cursor = read(connector)
    start = len(smtp.messages)
    _, raw = customer_mail(
        "Re: Invoice 7 overdue", "Status: fulfilled\nPaid.", sender="Hilda Desk <hilda@hr.example>",
        in_reply_to=root,
    )  # fmt: skip
    harness.deliver(raw)
    with caplog.at_level("WARNING", logger="usm_bridge_email.connector"):
        [record], cursor = read(connector, cursor)
        connector.add_comment(root, CommentDraft(body="Paid by transfer.", correlation="c-9"))
    assert record.data["status"] == "fulfilled"
    assert len(smtp.messages) == start  # nothing went to noreply@shop.example
    assert caplog.text.count("kept but not mailed") == 2
    assert "noreply@shop.example is a no-reply address" in caplog.text
    [record], _ = read(connector, cursor)
    kinds = [r["kind"] for r in replies(record) if r["direction"] == "out"]
    assert kinds == ["confirmation-request", "comment"]
    assert not any(r["pending"] for r in replies(record))


def test_a_web_forms_noreply_from_with_a_persons_reply_to_is_answered_to_the_person(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    start = len(smtp.messages)
    _, raw = customer_mail("Access request", "Please give me access.",
                           sender="Forms <noreply@forms.example>",
                           extra={"Reply-To": "Ann <ann@customer.example>"})  # fmt: skip
    harness.deliver(raw)
    [record], _ = read(connector)
    assert record.data["no_answer"] is None
    assert record.data["reference_token"] == "HR-1"
    [ack] = smtp.messages[start:]
    assert "ann@customer.example" in str(ack)


def test_a_from_with_one_address_outside_allowed_domains_is_held(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp, allowed_domains=["customer.example", "hr.example"])
    _, raw = customer_mail("Hello", "Access please.",
                           sender="ann@customer.example, evil@evil.example")  # fmt: skip
    harness.deliver(raw)
    [record], _ = read(connector)
    assert record.data["held"] == "sender domain 'evil.example' is not in allowed_domains"
    assert record.data["reference_token"] is None  # nobody told of a held call
