"""A message's identity: what "the same message" means, and what happens to the messages that
are not (see "Message identity" in connectors/email/README.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from email_harness import MaildirHarness, customer_mail, desk_with_connector, read, replies
from usm_bridge.connector import RawRecord

import usm_bridge_email.connector as connector_module
from usm_bridge_email import EmailConnector
from usm_bridge_email.parsing import (
    NO_ID_DOMAIN,
    REUSED_ID_DOMAIN,
    content_digest,
    parse_headers,
    parse_message,
)
from usm_bridge_email.plugin import dead_letter_reason

MAIL = (
    b"From: Ann <ann@customer.example>\n"
    b"To: servicedesk@hr.example\n"
    b"Subject: Printer\n"
    b"Date: Mon, 02 Nov 2026 09:00:00 +0100\n"
    b"\n"
    b"The printer is jammed.\n"
)


def test_the_digest_covers_the_body_and_the_significant_headers() -> None:
    other_body = MAIL.replace(b"jammed", b"on fire")
    other_subject = MAIL.replace(b"Subject: Printer", b"Subject: Printer 2")
    digests = {content_digest(raw) for raw in (MAIL, other_body, other_subject)}
    assert len(digests) == 3


def test_the_digest_ignores_what_each_delivery_writes_its_own_way() -> None:
    delivered = (
        b"Received: from mx2.hr.example by imap.hr.example; Mon, 02 Nov 2026 09:01:00 +0100\n"
        b"Return-Path: <ann@customer.example>\n"
        b"Delivered-To: servicedesk@hr.example\n"
        b"Authentication-Results: mx.hr.example; spf=pass\n" + MAIL
    )
    crlf = MAIL.replace(b"\n", b"\r\n")  # an IMAP server's copy of a Maildir file
    folded = MAIL.replace(b"Subject: Printer", b"Subject:\n Printer")
    trailing = MAIL + b"\n\n"
    assert {content_digest(raw) for raw in (MAIL, delivered, crlf, folded, trailing)} == {
        content_digest(MAIL)
    }


def test_without_a_message_id_the_identity_covers_the_body() -> None:
    first = parse_message(MAIL)
    other = parse_message(MAIL.replace(b"jammed", b"on fire"))
    assert first.message_id.endswith(f"@{NO_ID_DOMAIN}>") and first.written_id is None
    assert first.message_id != other.message_id
    assert parse_message(MAIL.replace(b"\n", b"\r\n")).message_id == first.message_id
    assert any(first.message_id in defect for defect in first.defects)
    # Headers alone (a message never read whole: over the size limit) are told apart by size.
    head = MAIL.split(b"\n\n")[0] + b"\n\n"
    assert parse_headers(head, size=100).message_id != parse_headers(head, size=101).message_id


def test_a_written_message_id_is_the_identity() -> None:
    mail = parse_message(MAIL.replace(b"Subject:", b"Message-ID: <x@customer.example>\nSubject:"))
    assert mail.message_id == mail.written_id == "<x@customer.example>"


# -- in the connector ----------------------------------------------------------------------


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[MaildirHarness, EmailConnector]]:
    yield from desk_with_connector(tmp_path)  # no SMTP: acknowledgements stay in the outbox


def choke(monkeypatch: pytest.MonkeyPatch, parser: str, marker: bytes, error: str) -> None:
    """The connector's ``parser`` raises ``error`` for every message holding ``marker`` (what
    no parser can read: the real one does its best with anything)."""
    real = getattr(connector_module, parser)

    def parse(raw: bytes, **options: Any) -> Any:
        if marker in raw:
            raise ValueError(error)
        return real(raw, **options)

    monkeypatch.setattr(connector_module, parser, parse)


def test_a_reused_message_id_read_later_is_a_call_of_its_own(
    desk: tuple[MaildirHarness, EmailConnector],
) -> None:
    """The first message keeps the Message-ID across reads; the later one is not dropped as a
    copy of it, nor taken for it (which would overwrite the first call)."""
    harness, connector = desk
    _, raw = customer_mail("Door", "Door 4 is stuck.", message_id="<1@localhost>")
    harness.deliver(raw)
    [first], cursor = read(connector)
    assert first.remote_id == "<1@localhost>"
    _, raw = customer_mail("Parking", "Where is my permit?", message_id="<1@localhost>")
    harness.deliver(raw)
    [second], cursor = read(connector, cursor)
    assert second.remote_id.endswith(f"@{REUSED_ID_DOMAIN}>")
    assert second.data["written_message_id"] == "<1@localhost>"
    assert "Where is my permit?" in str(second.data["body"])
    defects: Any = second.data["defects"]
    assert any(f"kept as {second.remote_id}" in note for note in defects)
    # The same message delivered again is no third outcome: its thread says it came twice.
    harness.deliver(raw)
    [again], _ = read(connector, cursor)
    assert again.remote_id == second.remote_id and again.data["deliveries"] == 2


def test_an_unreadable_first_message_does_not_carry_its_replies_into_its_dead_letter(
    desk: tuple[MaildirHarness, EmailConnector], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread's first message that cannot be read whole is a dead letter of its own; its
    reply is still a call (the thread without it), never hidden inside that letter."""
    harness, connector = desk
    choke(monkeypatch, "parse_message", b"POISON", "no parser reads this")
    root, raw = customer_mail("Badge", "POISON")
    harness.deliver(raw)
    reply, raw = customer_mail("Re: Badge", "Still broken.", in_reply_to=root)
    harness.deliver(raw)
    records, _ = read(connector)
    letters = [r for r in records if dead_letter_reason(r)]
    calls = [r for r in records if not dead_letter_reason(r)]
    assert [r.remote_id for r in letters] == [root]
    assert "no parser reads this" in (dead_letter_reason(letters[0]) or "")
    assert [r.remote_id for r in calls] == [reply]
    assert replies(calls[0]) == [] or all(r["direction"] == "out" for r in replies(calls[0]))


def test_two_unreadable_messages_are_two_dead_letters(
    desk: tuple[MaildirHarness, EmailConnector], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose headers cannot be parsed gets an identity from its own bytes, not the
    stand-in's: two of them are two letters, not one."""
    harness, connector = desk
    choke(monkeypatch, "parse_headers", b"BROKEN", "unparseable header block")
    for n in (1, 2):
        harness.deliver(f"Subject: BROKEN {n}\n\nbody {n}\n".encode())
    records: list[RawRecord]
    records, _ = read(connector)
    assert len(records) == 2 and len({r.remote_id for r in records}) == 2
    assert all("unreadable message" in (dead_letter_reason(r) or "") for r in records)


def test_the_bridges_own_mail_come_back_altered_is_the_same_message(
    desk: tuple[MaildirHarness, EmailConnector],
) -> None:
    """A relay that adds a footer changes the body, yet the acknowledgement delivered back into
    the inbox (its marker, a Message-ID the Sent folder holds) is the bridge's own mail: one
    message delivered twice, not a new comment under a reused Message-ID."""
    harness, connector = desk
    root, raw = customer_mail("Printer", "It is jammed.")
    harness.deliver(raw)
    [record], cursor = read(connector)
    [ack] = replies(record)
    assert ack["direction"] == "out"
    [copy] = [
        path.read_bytes()
        for path in (harness.outbox_path / "cur").iterdir()
        if ack["message_id"].encode() in path.read_bytes()
    ]
    harness.deliver(
        b"Received: from relay.hr.example\n" + copy.rstrip() + b"\n-- \nScanned by the relay.\n"
    )
    [again], _ = read(connector, cursor)
    assert again.remote_id == root
    [back] = replies(again)
    assert back["message_id"] == ack["message_id"] and back["deliveries"] == 2
