"""No message vanishes: N awkward messages delivered into the mailbox are N outcomes, counted.

Each message ends as a call, a comment on a call, or a dead letter with a reason, through the
real connector on a Maildir and on a real IMAP server (pymap). The corpus mixes messages
written here (tests/corpus/id-*.eml: no Message-ID, the same headers over another body, a
Message-ID a sloppy client reuses for another call and for a reply, re-deliveries of the
same message, an announcement to ``IETF-Announce:;``, a Mailman digest) with messages nobody
here wrote (tests/corpus_thirdparty/, see its SOURCES.md). A re-delivery of a message is the
same message: its outcome is the first delivery's, counted there as ``deliveries: 2``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from email_harness import ImapHarness, MailBridge, MaildirHarness, maildir_desk, read, relay
from email_servers import FaultPlan, PymapServer, SmtpServer
from usm_bridge.connector import RawRecord

from usm_bridge_email.connector import EmailConnector
from usm_bridge_email.parsing import NO_ID_DOMAIN, REUSED_ID_DOMAIN
from usm_bridge_email.plugin import dead_letter_reason

HERE = Path(__file__).parent
#: file -> (outcome, subject, a phrase of the body; for a dead letter a word of its reason).
#: ``same:<file>``: a re-delivery of that file's message, whose outcome it shares.
EXPECTED: dict[str, tuple[str, str, str]] = {
    "corpus/id-01-no-message-id.eml": ("call", "Printer", "floor 2 is jammed"),
    "corpus/id-02-same-headers-other-body.eml": ("call", "Printer", "coffee machine"),
    "corpus/id-03-no-message-id-again.eml": ("same:corpus/id-01-no-message-id.eml", "", ""),
    "corpus/id-04-reused-first.eml": ("call", "Badge does not open door 4", "since Friday"),
    "corpus/id-05-reused-other-body.eml": ("call", "Parking permit", "parking permit?"),
    "corpus/id-06-reused-reply.eml": ("comment", "Re: Badge does not open door 4", "door 5"),
    "corpus/id-07-reused-first-redelivered.eml": ("same:corpus/id-04-reused-first.eml", "", ""),
    "corpus/id-08-announcement.eml": ("call", "Last Call: <draft-ietf-mail-identity-00.txt>", ""),
    "corpus/id-09-mailman-digest.eml": ("dead_letter", "hr-talk Digest, Vol 3, Issue 7", "list"),
    "corpus/id-10-direct-and-listed.eml": ("call", "Desk lamp broken in room 12", "flickers"),
    # The list's copy of the mail above (its tag and footer): the same message, one outcome.
    "corpus/id-11-list-copy-of-direct.eml": ("same:corpus/id-10-direct-and-listed.eml", "", ""),
    # The same Message-ID through the list on another day: another message, list mail.
    "corpus/id-12-listed-other-date.eml": (
        "dead_letter",
        "[staff] Desk lamp broken in room 12",
        "list",
    ),
    "corpus_thirdparty/cpython-msg_02.txt": ("call", "Ppp digest, Vol 1 #2 - 5 msgs", "Send Ppp"),
    "corpus_thirdparty/cpython-msg_12.txt": ("call", "Lyrics", ""),
    "corpus_thirdparty/cpython-msg_35.txt": ("call", "here's something interesting", ""),
    "corpus_thirdparty/cpython-msg_44.txt": ("call", "a simple multipart", ""),
    "corpus_thirdparty/cpython-msg_47.txt": ("call", "VIARGA|CIALIS|LEVITRA", "PHARRMACY"),
}


@pytest.fixture(params=["maildir", "imap"])
def desk(
    request: pytest.FixtureRequest, tmp_path: Path, smtp_server: SmtpServer
) -> Iterator[tuple[MaildirHarness | ImapHarness, EmailConnector]]:
    harness: MaildirHarness | ImapHarness
    if request.param == "maildir":
        harness = MaildirHarness(tmp_path)
        settings: dict[str, Any] = {"smtp": relay(smtp_server)}
    else:
        harness = request.getfixturevalue("imap_harness")
        settings = {}
    connector = harness.make_connector(acknowledge_max_age_hours=24 * 365 * 30, **settings)
    assert isinstance(connector, EmailConnector)
    try:
        yield harness, connector
    finally:
        connector.close()
        if isinstance(harness, MaildirHarness):
            harness.close()  # the imap_harness fixture closes its own


def outcomes(records: list[RawRecord]) -> list[tuple[str, dict[str, Any], RawRecord]]:
    """Every message the records account for: (call | comment | dead_letter, its data, record).
    The bridge's own mail in a thread (acknowledgements) is none of the mailbox's messages."""
    found: list[tuple[str, dict[str, Any], RawRecord]] = []
    for record in records:
        data: dict[str, Any] = dict(record.data)
        if dead_letter_reason(record):
            found.append(("dead_letter", data, record))
            continue
        found.append(("call", data, record))
        for reply in data.get("replies") or []:
            if reply["direction"] == "in":
                found.append(("comment", reply, record))
    return found


def locate(
    found: list[tuple[str, dict[str, Any], RawRecord]], subject: str, phrase: str
) -> tuple[str, dict[str, Any], RawRecord]:
    """The one outcome with ``subject`` whose body (or dead letter's reason) has ``phrase``."""
    matching = []
    for kind, data, record in found:
        text = str(data.get("body") or "")
        if kind == "dead_letter":
            text = dead_letter_reason(record) or ""
        if data.get("subject") == subject and phrase in text:
            matching.append((kind, data, record))
    assert len(matching) == 1, f"{subject!r}/{phrase!r}: {len(matching)} outcomes"
    return matching[0]


def test_n_awkward_messages_are_n_outcomes(
    desk: tuple[MaildirHarness | ImapHarness, EmailConnector],
) -> None:
    harness, connector = desk
    for name in EXPECTED:
        harness.deliver((HERE / name).read_bytes())
    records, cursor = read(connector, None)
    found = outcomes(records)

    copies = [name for name, (kind, _, _) in EXPECTED.items() if kind.startswith("same:")]
    # Every message delivered is one outcome; a re-delivery is its message's outcome again.
    assert len(found) == len(EXPECTED) - len(copies), [
        (kind, data.get("subject")) for kind, data, _ in found
    ]
    assert len({data["message_id"] for _, data, _ in found}) == len(found)
    counted = {kind: sum(1 for k, _, _ in found if k == kind) for kind in ("call", "comment")}
    letters = sum(1 for kind, _, _ in found if kind == "dead_letter")
    assert counted["call"] + counted["comment"] + letters == len(EXPECTED) - len(copies)
    assert (counted["call"], counted["comment"], letters) == (11, 1, 2)

    for name, (expected, subject, phrase) in EXPECTED.items():
        if expected.startswith("same:"):
            continue
        kind, _, record = locate(found, subject, phrase)
        assert kind == expected, f"{name}: {kind}, expected {expected}"
        if expected == "comment":
            assert record.data["subject"] == "Badge does not open door 4", name

    # No Message-ID: an identity from headers and body; the same headers over another body
    # are another message, and the identical re-delivery is the same one, delivered twice.
    _, jammed, _ = locate(found, "Printer", "floor 2 is jammed")
    _, leaks, _ = locate(found, "Printer", "coffee machine")
    assert jammed["message_id"].endswith(f"@{NO_ID_DOMAIN}>")
    assert leaks["message_id"].endswith(f"@{NO_ID_DOMAIN}>")
    assert jammed["message_id"] != leaks["message_id"]
    assert jammed["written_message_id"] is None and jammed["deliveries"] == 2
    assert "deliveries" not in leaks
    # A reused Message-ID: the first message keeps it (and its re-delivery is the same); the
    # others are kept under an identity of their own, with a note saying so.
    _, first, _ = locate(found, "Badge does not open door 4", "since Friday")
    assert first["message_id"] == "<1@localhost>" and first["deliveries"] == 2
    for subject, phrase in (("Parking permit", "parking"), ("Re: Badge does not open door 4", "")):
        _, other, _ = locate(found, subject, phrase)
        assert other["message_id"].endswith(f"@{REUSED_ID_DOMAIN}>")
        assert other["written_message_id"] == "<1@localhost>"
        assert any("Message-ID <1@localhost> reused" in note for note in other["defects"])

    # Sent directly and through a list it is on: one message, the direct copy's words; the
    # list's copy on another day is another message (list mail: a dead letter, kept).
    _, lamp, _ = locate(found, "Desk lamp broken in room 12", "flickers")
    assert lamp["message_id"] == "<lamp-12@customer.example>" and lamp["deliveries"] == 2
    assert "staff mailing list" not in str(lamp["body"])
    _, _, later = locate(found, "[staff] Desk lamp broken in room 12", "list")
    assert later.remote_id.endswith(f"@{REUSED_ID_DOMAIN}>")

    # Read again by a new process, the identities are the same: nothing new, nothing lost.
    again = type(connector)("hr-mail", connector.config, sleep=lambda _: None)
    try:
        reread, _ = read(again, None)
    finally:
        again.close()
    assert sorted(d["message_id"] for _, d, _ in outcomes(reread)) == sorted(
        d["message_id"] for _, d, _ in found
    )
    quiet, _ = read(connector, cursor)
    assert quiet == []


def shape(records: list[RawRecord]) -> set[tuple[str, str, str]]:
    """Each outcome as (kind, identity, subject): what a resync must give again."""
    return {(k, d["message_id"], str(d.get("subject"))) for k, d, _ in outcomes(records)}


def test_a_new_maildir_uidvalidity_keeps_every_identity(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """The Maildir's UID list reset (a new UIDVALIDITY): every message gets the identity it
    had; the reused Message-ID stays with the message that held it."""
    harness = MaildirHarness(tmp_path)
    connector = harness.make_connector(smtp=relay(smtp_server))
    assert isinstance(connector, EmailConnector)
    try:
        for name in EXPECTED:
            harness.deliver((HERE / name).read_bytes())
        first, cursor = read(connector, None)
        validity = connector._folders["inbox"].validity
        (harness.inbox_path / ".usm-uidlist").unlink()
        again, _ = read(connector, cursor)
        assert connector._folders["inbox"].validity != validity
        assert shape(again) == shape(first)
    finally:
        connector.close()
        harness.close()


def test_a_new_imap_server_keeps_every_identity(smtp_server: SmtpServer) -> None:
    """The mailbox moved to a new IMAP server (pymap restarted empty, the messages appended
    again in their order): new UIDs, a new UIDVALIDITY, the same outcomes under the same
    identities, none twice."""
    server = PymapServer()
    server.start()
    harness = ImapHarness(server, server.port, smtp_server, FaultPlan())
    connector = harness.make_connector(acknowledge_max_age_hours=24 * 365 * 30)
    assert isinstance(connector, EmailConnector)
    try:
        for name in EXPECTED:
            harness.deliver((HERE / name).read_bytes())
        first, cursor = read(connector, None)
        inbox, sent = harness.raw_messages(harness.inbox), harness.raw_messages(harness.sent)
        validity = connector._folders["inbox"].validity
        harness.client.shutdown()
        server.restart()
        harness.client = server.client()
        harness.client.create(harness.inbox)
        harness.client.create(harness.sent)
        for raw in inbox:
            harness.deliver(raw)
        for raw in sent:
            harness.deliver(raw, harness.sent)
        again, _ = read(connector, cursor)
        assert connector._folders["inbox"].validity != validity
        assert shape(again) == shape(first)
        assert len(again) == len({r.remote_id for r in again})
    finally:
        connector.close()
        harness.close()
        server.stop()


# -- through the engine: a message that dead-letters, read again and again --------------------


def bounce_without_message_id(recipient: str) -> bytes:
    """A bounce for a message nobody here sent, without a Message-ID (many MTAs write none):
    its headers are the same for every recipient, only the body names another."""
    raw = (HERE / "corpus" / "09-bounce-unknown.eml").read_bytes()
    raw = re.sub(rb"(?m)^Message-ID: <bounce-2@mx.hr.example>\r?\n", b"", raw)
    assert b"Message-ID: <bounce-2" not in raw
    return raw.replace(b"nobody@else.example", recipient.encode())


def test_a_dead_letter_read_again_every_cycle_stays_one_open_letter(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """Each cycle re-reads the whole mailbox (its UID list is reset: a new UIDVALIDITY). The
    messages that dead-letter keep their identity, so each stays ONE open dead letter whose
    attempts count the cycles; two bounces with the same headers over different bodies are two
    letters; the calls stay two calls (a reused Message-ID included)."""
    desk = maildir_desk(
        tmp_path, smtp_server, "hr-mail", "hr", address="servicedesk@hr.example",
        reference_prefix="HR", acknowledge_max_age_hours=24 * 365 * 30,
    )  # fmt: skip
    bridge = MailBridge(tmp_path, desk)
    try:
        box = bridge.boxes["hr-mail"]
        for raw in (
            bounce_without_message_id("nobody@else.example"),
            bounce_without_message_id("someone@else.example"),
            (HERE / "corpus" / "id-09-mailman-digest.eml").read_bytes(),
            (HERE / "corpus" / "id-04-reused-first.eml").read_bytes(),
            (HERE / "corpus" / "id-05-reused-other-body.eml").read_bytes(),
        ):
            box.add(raw)
        cycles = 3
        for cycle in range(cycles):
            if cycle:
                (tmp_path / "hr-mail" / ".usm-uidlist").unlink()  # read it all again
            [summary] = bridge.cycle("hr-mail")
            assert summary.ok, summary
            with bridge.store.begin(readonly=True) as tx:
                letters = tx.list_dead_letters(instance="hr-mail")
                calls = [s.call.source.remote_id for s in tx.list_calls() if s.call.source]
            assert len(letters) == 3, [(d.subject, d.reason) for d in letters]
            assert all(d.attempts == cycle + 1 for d in letters), [d.attempts for d in letters]
            assert len(calls) == 2 and "<1@localhost>" in calls
        bounces = [d for d in letters if "bounce" in d.reason]
        assert len(bounces) == 2
        assert all(str(d.subject).endswith(f"@{NO_ID_DOMAIN}>") for d in bounces)
        assert bounces[0].subject != bounces[1].subject
        [digest] = [d for d in letters if d not in bounces]
        assert "list" in digest.reason
    finally:
        bridge.close()
