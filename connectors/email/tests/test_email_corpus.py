"""A corpus of awkward real-world mail: each message becomes a call, a comment or a dead letter
with a reason; none stops the read; no machine is ever answered.

The corpus (tests/corpus/*.eml) is shaped like real mail: nested multipart with inline images
and attachments, charsets that lie, HTML only, a reply that kept only the reference token, a
vacation reply, bounces (one for the bridge's acknowledgement, one for a stranger's mail), a
mailing-list digest, a bulk newsletter, a mail loop forty relays deep, another bridge's
automatic answer (two bridges must never talk to each other forever), broken headers, and a
message over the size limit. ``{{ACK_ID}}`` stands for the Message-ID of the bridge's
acknowledgement of the first thread, which the vacation reply and the bounce refer to.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from email_harness import MaildirHarness, desk_with_connector, relay
from email_servers import SmtpServer
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import CallType, Status
from usm_bridge.plugins import PluginHost

from usm_bridge_email.connector import EmailConnector, _correlation_id
from usm_bridge_email.plugin import dead_letter_reason

CORPUS = Path(__file__).parent / "corpus"
MAPPING = SHIPPED_MAPPINGS_DIR / "email-service-desk.yaml"
ROOT = "<corpus-root@customer.example>"
ACK_ID = _correlation_id(ROOT, "hr.example", "ack")

#: file -> (outcome, a word the dead letter's reason must hold)
EXPECTED: dict[str, tuple[str, str]] = {
    "01-thread-start.eml": ("call", ""),
    "02-nested-multipart.eml": ("call", ""),
    "03-broken-charset.eml": ("call", ""),
    "04-html-only.eml": ("call", ""),
    "05-reply-in-reply-to.eml": ("comment", ""),
    "06-reply-subject-token.eml": ("comment", ""),
    "07-auto-reply.eml": ("comment", ""),
    "08-bounce.eml": ("comment", ""),
    "09-bounce-unknown.eml": ("dead_letter", "bounce"),
    "10-mailing-list.eml": ("dead_letter", "list"),
    "11-bulk-newsletter.eml": ("dead_letter", "bulk"),
    "12-mail-loop.eml": ("dead_letter", "mail loop"),
    "13-loop-other-bridge.eml": ("dead_letter", "automatic reply"),
    "14-broken-headers.eml": ("call", ""),
    # Over max_message_bytes: still a call, its text read; its scan refused (see below).
    "15-oversized.eml": ("call", ""),
    "16-forwarded-wrong-charset.eml": ("call", ""),
}
PEOPLE = {
    "ann@customer.example",
    "bernd@customer.example",
    "chloe@customer.example",
    "dana@customer.example",
    "eve@customer.example",
    "frank@customer.example",
    "gina@customer.example",
}


def corpus_message(name: str) -> bytes:
    return (CORPUS / name).read_bytes().replace(b"{{ACK_ID}}", ACK_ID.encode())


def message_id_of(raw: bytes) -> str | None:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    value = message.get("Message-ID")
    return str(value).strip() if value else None


@pytest.fixture
def desk(
    tmp_path: Path, smtp_server: SmtpServer
) -> Iterator[tuple[MaildirHarness, EmailConnector]]:
    yield from desk_with_connector(
        tmp_path,
        smtp=relay(smtp_server),
        max_message_bytes=50_000,
        acknowledge_max_age_hours=24 * 365 * 30,  # the corpus is from 2016
    )


def read(connector: EmailConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint), "the read must end with a checkpoint"
    return [i for i in items if isinstance(i, RawRecord)], items[-1].cursor


def test_corpus_each_message_is_a_call_a_comment_or_a_dead_letter(
    desk: tuple[MaildirHarness, EmailConnector], smtp_server: SmtpServer
) -> None:
    harness, connector = desk
    sent_before = len(smtp_server.messages)
    harness.deliver(corpus_message("01-thread-start.eml"))
    first, cursor = read(connector, None)
    assert [r.remote_id for r in first] == [ROOT]
    assert first[0].remote_key == "HR-1"

    for name in sorted(EXPECTED)[1:]:
        harness.deliver(corpus_message(name))
    records, _ = read(connector, cursor)

    by_id = {r.remote_id: r for r in records}
    outcome: dict[str, tuple[str, RawRecord]] = {}
    for record in records:
        reason = dead_letter_reason(record)
        outcome[record.remote_id] = ("dead_letter" if reason else "call", record)
        replies: Any = record.data.get("replies") or []
        for reply in replies:
            outcome[reply["message_id"]] = ("comment", record)
    for name, (expected, word) in EXPECTED.items():
        mid = message_id_of(corpus_message(name))
        if name == "14-broken-headers.eml":  # no Message-ID: one is derived from its headers
            [mid] = [r.remote_id for r in records if "two weeks off" in str(r.data.get("body"))]
        assert mid in outcome, f"{name} ({mid}) became nothing"
        kind, record = outcome[mid]
        if name == "01-thread-start.eml":
            continue  # read in the first cycle, re-read with its comments in the second
        assert kind == expected, f"{name}: {kind}, expected {expected}"
        if expected == "dead_letter":
            reason = dead_letter_reason(record) or ""
            assert word in reason, f"{name}: reason {reason!r} lacks {word!r}"
        if expected == "comment":
            assert record.remote_id == ROOT, f"{name} threaded onto {record.remote_id}"

    # Bodies are readable text whatever the mail did to them.
    assert "Unterlagen für die Elternzeit" in str(by_id["<nested-1@customer.example>"].data["body"])
    attachments: Any = by_id["<nested-1@customer.example>"].data["attachments"]
    assert {a["filename"] for a in attachments} >= {"antrag.pdf"}
    assert "congés payés" in str(by_id["<charset-1@customer.example>"].data["body"])
    html = str(by_id["<html-1@customer.example>"].data["body"])
    assert "Main Street 1" in html and "alert" not in html and "<p>" not in html
    assert "https://intranet.example/form" in html
    big = by_id["<big-1@customer.example>"].data
    assert big["body"] == "All scans attached."
    [scan] = big["attachments"]  # type: ignore[misc]
    assert scan["filename"] == "scan.tif" and scan["sha256"] is None  # type: ignore[index]
    assert "over max_message_bytes 0.1 MB (50000 bytes)" in scan["problem"]  # type: ignore[index]
    forwarded = by_id["<fwd-1@customer.example>"].data
    assert "latin-1 declared as utf-8" in str(forwarded["body"])
    assert any(a["content_type"] == "message/rfc822" for a in forwarded["attachments"])  # type: ignore[index, union-attr]

    # No machine was ever answered; every person who opened a thread was, once.
    answered = [rcpt for _, rcpts, _ in smtp_server.messages[sent_before:] for rcpt in rcpts]
    assert set(answered) <= PEOPLE, f"answered a machine: {set(answered) - PEOPLE}"
    assert answered.count("ann@customer.example") == 1
    for _, _, raw in smtp_server.messages[sent_before:]:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message["Auto-Submitted"] == "auto-replied"
        assert message["Message-ID"] and message["In-Reply-To"] and message["References"]


def test_corpus_records_map_through_the_plugins(
    desk: tuple[MaildirHarness, EmailConnector],
) -> None:
    """What the engine does with each record: a call, or a MappingError (a dead letter)."""
    harness, connector = desk
    harness.deliver(corpus_message("01-thread-start.eml"))
    _, cursor = read(connector, None)  # acknowledged: the vacation reply and bounce answer it
    for name in sorted(EXPECTED)[1:]:
        harness.deliver(corpus_message(name))
    records, _ = read(connector, cursor)
    host = PluginHost()
    mapping = load_mapping(MAPPING)
    context = MappingContext(unit="hr", instance="hr-mail", transforms=host.transforms())
    calls, letters = [], []
    for record in records:
        try:
            calls.append(host.map_inbound(mapping, record, context))
        except MappingError as error:
            letters.append(str(error))
    assert len(letters) == sum(1 for kind, _ in EXPECTED.values() if kind == "dead_letter")
    assert all("e-mail connector refused the message" in letter for letter in letters)
    root = next(c for c in calls if c.source is not None and c.source.remote_id == ROOT)
    assert root.call_type is CallType.UNCLASSIFIED and root.status is Status.REGISTERED
    assert len(root.comments) == 5  # two replies, the acknowledgement, the vacation reply, bounce
    assert root.attributes["email"]["reference"] == "HR-1"
