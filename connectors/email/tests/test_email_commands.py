"""Status commands by mail: ``Status: fulfilled`` at the top of a reply, obeyed only from the
desk's agents and from the supplier a thread the bridge opened was mailed to; the status flows
through the record and the mapping, is announced once, and the customer's answer still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from email_harness import (
    ADDRESS,
    MAPPING,
    ImapHarness,
    MailBridge,
    MaildirHarness,
    customer_mail,
    maildir_desk,
    read,
    relay,
    replies,
    sent_to,
)
from email_harness import connect as connect_desk
from email_servers import SmtpServer, free_port
from pydantic import ValidationError
from usm_bridge.connector import RawRecord, RemoteDraft
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.model import Call, ConfirmationKind, Status, WaitingOn
from usm_bridge.plugins import PluginHost

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.commands import read_status, split_commands
from usm_bridge_email.connector import STATUSES

AGENT = "Hilda Desk <hilda@hr.example>"
ANN = "ann@customer.example"


# -- helpers -----------------------------------------------------------------------------------


def commands(record: RawRecord) -> list[dict[str, Any]]:
    found: Any = record.data.get("commands") or []
    return list(found)


def as_call(record: RawRecord) -> Call:
    host = PluginHost()
    context = MappingContext(unit="hr", instance="hr-mail", transforms=host.transforms())
    return host.map_inbound(load_mapping(MAPPING), record, context)


def connect(harness: MaildirHarness, smtp: SmtpServer, **overrides: Any) -> EmailConnector:
    """The desk's connector, Hilda one of its agents unless ``overrides`` say otherwise.

    These tests are about what a command does, so the desk trusts its relay (``trust_relay``)
    for the sender's From; test_email_senders proves the Authentication-Results trust."""
    overrides.setdefault("agents", ["hilda@hr.example"])
    overrides.setdefault("trust_relay", True)
    return connect_desk(harness, smtp, **overrides)


def answer(
    harness: MaildirHarness | ImapHarness,
    in_reply_to: str,
    body: str,
    *,
    sender: str = AGENT,
    subject: str = "Re: Badge broken",
) -> str:
    """``sender``'s (Hilda's) answer ``body`` to the mail ``in_reply_to``, delivered; its
    Message-ID."""
    message_id, raw = customer_mail(subject, body, sender=sender, in_reply_to=in_reply_to)
    harness.deliver(raw)
    return message_id


class Opened(NamedTuple):
    """Ann's call on a desk, read by a connector: its root Message-ID and the cursor after it."""

    harness: MaildirHarness
    smtp: SmtpServer
    connector: EmailConnector
    root: str
    cursor: str


def open_call(desk: tuple[MaildirHarness, SmtpServer], **overrides: Any) -> Opened:
    """Ann opens a call on ``desk``, read by a connector (:func:`connect`, with ``overrides``)."""
    harness, smtp = desk
    connector = connect(harness, smtp, **overrides)
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    harness.deliver(raw)
    _, cursor = read(connector)
    return Opened(harness, smtp, connector, root, cursor)


@pytest.fixture
def opened(desk: tuple[MaildirHarness, SmtpServer]) -> Opened:
    return open_call(desk)


# -- reading the command lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("fulfilled", "fulfilled"),
        ("Fulfilled.", "fulfilled"),
        ("done", "fulfilled"),
        ("Resolved", "fulfilled"),
        ("in progress", "in_progress"),
        ("IN_PROGRESS", "in_progress"),
        ("waiting for customer", "waiting:customer"),
        ("Waiting: customer", "waiting:customer"),
        ("waiting:supplier", "waiting:supplier"),
        ("on hold", "waiting:customer"),
        ("On hold - vendor", "waiting:supplier"),
        ("awaiting change", "waiting:secondary_process"),
        ("waiting_for_secondary_process", "waiting:secondary_process"),
        ("Canceled", "cancelled"),
        ("cancelled", "cancelled"),
        ("closed", "closed"),
        ("finished", None),
        ("waiting for godot", None),
        ("", None),
    ],
)
def test_status_values_are_read_tolerantly_and_never_guessed(
    value: str, status: str | None
) -> None:
    assert read_status(value, STATUSES) == status


def test_only_status_lines_at_the_top_are_commands() -> None:
    block = split_commands("\n  status: done\nStatus: closed\n\nThanks all.\nStatus: x")
    assert block is not None
    assert block.values == ["done", "closed"] and block.rest == "Thanks all.\nStatus: x"
    assert split_commands("Hi,\nStatus: done") is None  # not at the top: ordinary text
    assert split_commands("Note: later\nStatus: done") is None


# -- who may command ---------------------------------------------------------------------------


def test_an_agents_command_is_obeyed_stripped_and_announced_once(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    harness, smtp, connector, root, cursor = opened
    start = len(smtp.messages)
    command = answer(harness, root, "Status: fulfilled\n\nA new badge is at the reception desk.")
    with caplog.at_level(logging.INFO, logger="usm_bridge_email.connector"):
        [record], cursor = read(connector, cursor)

    assert record.data["status"] == "fulfilled" and record.data["fulfilled_at"]
    # The command line is no part of the comment; the rest of the reply is.
    [reply] = [r for r in replies(record) if r["message_id"] == command]
    assert reply["body"] == "A new badge is at the reception desk."
    [given] = commands(record)
    assert (given["by"], given["status"], given["reason"]) == ("agent", "fulfilled", None)
    assert "obeyed: status fulfilled" in caplog.text and "hilda@hr.example" in caplog.text
    # Ann is asked to confirm, as when the bridge fulfils; the agent is not mailed.
    [request] = sent_to(smtp, start, ANN)
    assert request["X-USM-Kind"] == "confirmation-request"
    assert request["X-USM-Status"] == "fulfilled" and "reply YES" in request.get_content()
    assert request["In-Reply-To"] == command
    assert not sent_to(smtp, start, "hilda@hr.example")
    call = as_call(record)
    assert call.status is Status.FULFILLED and call.fulfilled is not None
    assert all("Status:" not in c.body for c in call.comments)

    # Read again (a restart, a resync) and told the same status by the bridge: no new mail.
    again = connect(harness, smtp)
    [record], _ = read(again)
    assert record.data["status"] == "fulfilled"
    again.update(root, RemoteDraft(status="fulfilled"))
    # The agent says it again: that changes nothing, so there is nothing to announce.
    answer(harness, root, "Status: done")
    [record], _ = read(again)
    assert record.data["status"] == "fulfilled"
    assert len(sent_to(smtp, start, ANN)) == 1
    assert len(smtp.messages) - start == 1


def test_a_command_only_reply_adds_no_comment(opened: Opened) -> None:
    harness, _, connector, root, cursor = opened
    # Ann's "Badge broken" is unclassified: a wait needs a type first (USM), here with it.
    command = answer(harness, root, "Type: incident\nStatus: on hold\n")
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "waiting:customer"
    assert command not in [r["message_id"] for r in replies(record)]
    call = as_call(record)
    assert call.status is Status.WAITING and call.waiting_on is WaitingOn.CUSTOMER
    assert call.call_type == "incident"
    assert [c.remote_id for c in call.comments if c.public] == []


def test_a_strangers_command_is_no_command(
    desk: tuple[MaildirHarness, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    harness, smtp, connector, root, cursor = open_call(
        desk, allowed_domains=["hr.example", "customer.example"]
    )
    start = len(smtp.messages)
    attempts = [
        # The customer herself is no agent.
        customer_mail(
            "Re: Badge broken", "Status: fulfilled\nWorks now.", sender=ANN, in_reply_to=root
        ),
        # An agent's address, but threaded only by the (guessable) token in the subject.
        customer_mail("Re: [HR-1] Badge broken", "Status: cancelled", sender=AGENT),
        # An agent's address on an automatic message.
        customer_mail(
            "Re: Badge broken",
            "Status: fulfilled",
            sender=AGENT,
            in_reply_to=root,
            extra={"Auto-Submitted": "auto-replied"},
        ),
        # The mailbox's own address, without the bridge's marker: forged.
        customer_mail("Re: Badge broken", "Status: closed", sender=ADDRESS, in_reply_to=root),
    ]
    for _, raw in attempts:
        harness.deliver(raw)
    with caplog.at_level(logging.INFO, logger="usm_bridge_email.connector"):
        [record], _ = read(connector, cursor)

    assert record.data.get("status") is None  # still only acknowledged
    given = {c["message_id"]: c for c in commands(record)}
    assert len(given) == len(attempts)
    assert all(c["status"] is None and c["by"] is None for c in given.values())
    reasons = [given[message_id]["reason"] for message_id, _ in attempts]
    assert "is not one of the mailbox's agents" in reasons[0]
    assert "not a reply to a message of the thread" in reasons[1]
    assert "automatic message" in reasons[2]
    assert "own address" in reasons[3]
    # Each stays an ordinary reply, its text untouched.
    bodies = {r["message_id"]: r["body"] for r in replies(record)}
    assert bodies[attempts[0][0]] == "Status: fulfilled\nWorks now."
    assert bodies[attempts[1][0]] == "Status: cancelled"
    assert caplog.text.count("ignored as a command") == len(attempts)
    assert len(smtp.messages) == start  # nobody is answered about a command they may not give
    assert as_call(record).status is Status.REGISTERED


def test_agents_must_be_people_inside_the_allowed_domains() -> None:
    base: dict[str, Any] = {"address": ADDRESS, "maildir": {"path": "/tmp/unused"}}
    assert EmailSettings.model_validate({**base, "agents": [" Hilda@HR.example", "@hr.example"]})
    with pytest.raises(ValidationError, match="outside allowed_domains"):
        EmailSettings.model_validate(
            {**base, "agents": ["eve@elsewhere.example"], "allowed_domains": ["hr.example"]}
        )
    with pytest.raises(ValidationError, match="mailbox's own address"):
        EmailSettings.model_validate({**base, "agents": [ADDRESS]})
    with pytest.raises(ValidationError, match="neither an address"):
        EmailSettings.model_validate({**base, "agents": ["hilda"]})


def test_an_unknown_status_is_refused_and_the_agent_told_why(
    desk: tuple[MaildirHarness, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    harness, smtp, connector, root, cursor = open_call(desk, agents=["@hr.example"])
    start = len(smtp.messages)
    command = answer(harness, root, "Status: finished\n\nBadge replaced.")
    with caplog.at_level(logging.INFO, logger="usm_bridge_email.connector"):
        [record], cursor = read(connector, cursor)

    assert record.data.get("status") is None
    [given] = commands(record)
    assert given["by"] == "agent" and given["status"] is None
    assert "unknown status 'finished'" in given["reason"] and "fulfilled" in given["reason"]
    assert "refused: unknown status 'finished'" in caplog.text
    # Not obeyed, so not taken apart: the reply is kept as written.
    bodies = {r["message_id"]: r["body"] for r in replies(record)}
    assert bodies[command] == "Status: finished\n\nBadge replaced."
    # The agent (only) is told why, once; the customer hears nothing of it.
    [told] = sent_to(smtp, start, "hilda@hr.example")
    assert told["X-USM-Kind"] == "command-refused" and told["In-Reply-To"] == command
    assert "unknown status 'finished'" in told.get_content()
    assert not sent_to(smtp, start, ANN)
    read(connect(harness, smtp, agents=["@hr.example"]))
    assert len(smtp.messages) - start == 1
    # Kept on the call as an internal note, never a comment that travels.
    call = as_call(read(connector)[0][0])
    notes = [c for c in call.comments if "not applied" in c.body]
    assert len(notes) == 1 and notes[0].public is False


def test_an_old_command_is_obeyed_but_announced_to_nobody(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    days_ago = datetime.now(UTC) - timedelta(days=3)
    root, raw = customer_mail("Badge broken", "Badge dead.", sender=ANN, when=days_ago)
    harness.deliver(raw)
    _, raw = customer_mail(
        "Re: Badge broken",
        "Status: done",
        sender=AGENT,
        in_reply_to=root,
        when=days_ago + timedelta(hours=1),
    )
    harness.deliver(raw)
    start = len(smtp.messages)
    [record], _ = read(connect(harness, smtp))  # the first sync of an old mailbox
    assert record.data["status"] == "fulfilled"
    assert len(smtp.messages) == start


def test_an_announcement_the_relay_refused_is_sent_on_the_next_read(opened: Opened) -> None:
    harness, smtp, connector, root, cursor = opened
    answer(harness, root, "Status: fulfilled")
    start = len(smtp.messages)
    relay_down = harness.make_connector(
        agents=["hilda@hr.example"],
        trust_relay=True,
        smtp=relay(smtp, port=free_port(), timeout=2),  # nobody listens there
        max_attempts=1,
    )
    assert isinstance(relay_down, EmailConnector)
    # The relay's outage never stops the read: the call has the command's status, and the
    # announcement waits in the outbox, unsent.
    [record], _ = read(relay_down, cursor)
    assert record.data["status"] == "fulfilled"
    assert len(smtp.messages) == start
    # It has told nobody, so the status is the command's and the next read hands the very
    # same message over, once.
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "fulfilled"
    [request] = sent_to(smtp, start, ANN)
    assert request["X-USM-Kind"] == "confirmation-request"
    read(connect(harness, smtp), cursor)
    assert len(smtp.messages) - start == 1


# -- ordering: the latest of announcement, command and answer wins ---------------------------------


def test_fulfilled_by_command_then_yes_confirms_and_a_later_no_reopens(opened: Opened) -> None:
    harness, smtp, connector, root, cursor = opened
    # Classified first: the customer's "No" below sends the call back to work, and USM does no
    # work on an unclassified call.
    answer(harness, root, "Type: incident\nStatus: fulfilled")
    _, cursor = read(connector, cursor)
    [request] = sent_to(smtp, 0, ANN)[-1:]
    assert request["X-USM-Kind"] == "confirmation-request"

    # An agent's "ok" in the thread is no confirmation: only the customer confirms.
    answer(harness, request["Message-ID"], "OK, noted.")
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "fulfilled"

    _, raw = customer_mail(
        "Re: Badge broken", "Yes, the door opens.", in_reply_to=request["Message-ID"]
    )
    harness.deliver(raw)
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "confirmed" and record.data["confirmed_at"]
    call = as_call(record)
    assert call.status is Status.CONFIRMED and call.confirmed is not None
    assert call.fulfilled is not None and call.fulfilled <= call.confirmed
    # The customer's own reply: an explicit confirmation by her, at her mail's date.
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    assert call.confirmation.by is not None and call.confirmation.by.email == ANN
    assert call.confirmation.at == call.confirmed
    assert call.confirmation.how == "the customer's reply to the request for confirmation"

    _, raw = customer_mail(
        "Re: Badge broken", "No, it stopped working again.", in_reply_to=request["Message-ID"]
    )
    harness.deliver(raw)
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "in_progress"
    assert "confirmed_at" not in record.data and "fulfilled_at" not in record.data
    assert "confirmed_by" not in record.data and as_call(record).confirmation is None

    # The agent fulfils again: a new request, and the customer's answer to it counts.
    start = len(smtp.messages)
    answer(harness, root, "Status: done")
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "fulfilled"
    [second] = sent_to(smtp, start, ANN)
    assert second["X-USM-Kind"] == "confirmation-request"


def test_an_agents_confirmed_command_records_a_confirmation_by_the_agent(opened: Opened) -> None:
    """The customer confirmed on the phone; the agent says so in the thread."""
    harness, _, connector, root, cursor = opened
    answer(harness, root, "Status: fulfilled")
    _, cursor = read(connector, cursor)
    answer(harness, root, "Status: confirmed\nAnn called: the door opens.")
    [record], _ = read(connector, cursor)
    assert (record.data["status"], record.data["confirmed_via"]) == ("confirmed", "command")
    call = as_call(record)
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    assert call.confirmation.by is not None
    assert call.confirmation.by.email == "hilda@hr.example"
    assert call.confirmation.how is not None and "agent" in call.confirmation.how


def test_the_bridges_later_announcement_wins_over_an_earlier_command(opened: Opened) -> None:
    harness, smtp, connector, root, cursor = opened
    answer(harness, root, "Status: fulfilled")
    _, cursor = read(connector, cursor)
    # The bridge moves the call on (a supplier reopened it): its announcement is later.
    start = len(smtp.messages)
    connector.update(root, RemoteDraft(status="waiting:supplier"))
    [told] = sent_to(smtp, start, ANN)
    assert told["X-USM-Status"] == "waiting:supplier"
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "waiting:supplier"
    assert len(smtp.messages) - start == 1  # the old command is not announced again


# -- the supplier of a thread the bridge opened ------------------------------------------------


def test_the_supplier_a_bridge_thread_was_mailed_to_may_say_done(
    imap_harness: ImapHarness,
) -> None:
    harness, smtp = imap_harness, imap_harness.smtp
    connector = harness.make_connector(agents=["hilda@hr.example"], trust_relay=True)
    assert isinstance(connector, EmailConnector)
    try:
        vendor, subject = "orders@vendor.example", "Replace badge reader 3"
        draft = RemoteDraft(
            fields={"to": vendor, "subject": subject, "body": "It is broken."},
            status="registered",
        )
        ref = connector.create(draft, "usm-bridge:call-42")
        _, cursor = read(connector)
        start = len(smtp.messages)

        def vendor_says(body: str, sender: str = f"Vendor Orders <{vendor}>") -> str:
            return answer(harness, ref.remote_id, body, sender=sender, subject=f"Re: {subject}")

        # Someone else at the vendor is not the address the bridge wrote to.
        vendor_says("Status: done", sender="intern@vendor.example")
        [record], cursor = read(connector, cursor)
        assert record.data["status"] == "registered"
        [ignored] = commands(record)
        assert "nor the supplier this thread was mailed to" in ignored["reason"]

        # The supplier may not confirm its own work: refused, and told why.
        refused = vendor_says("Status: confirmed")
        [record], cursor = read(connector, cursor)
        assert record.data["status"] == "registered"
        [told] = sent_to(smtp, start, vendor)
        assert told["X-USM-Kind"] == "command-refused" and told["In-Reply-To"] == refused
        assert "only the customer confirms" in told.get_content()

        done = vendor_says("Status: done\n\nNew reader installed on Tuesday.")
        [record], _ = read(connector, cursor)
        assert record.remote_id == ref.remote_id and record.data["status"] == "fulfilled"
        given = {c["message_id"]: c for c in commands(record)}
        assert (given[done]["by"], given[done]["status"]) == ("supplier", "fulfilled")
        bodies = {r["message_id"]: r["body"] for r in replies(record)}
        assert bodies[done] == "New reader installed on Tuesday."
        # Its customer is the bridge: the supplier is not asked to confirm its own work.
        assert len(sent_to(smtp, start, vendor)) == 1
        assert as_call(record).status is Status.FULFILLED
    finally:
        connector.close()


# -- through the engine: the chain resumes, the customer confirms, nothing echoes --------------


@pytest.fixture
def chain(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[MailBridge]:
    """HR's desk, whose service requests go to the vendor's desk; both take agents' commands."""
    made = MailBridge(
        tmp_path,
        maildir_desk(
            tmp_path, smtp_server, "hr-mail", "hr", address=ADDRESS, reference_prefix="HR",
            agents=["hilda@hr.example"], trust_relay=True,
        ),
        maildir_desk(
            tmp_path, smtp_server, "vendor-mail", "vendor", address="desk@vendor.example",
            reference_prefix="VEN", agents=["vera@vendor.example"], trust_relay=True,
            supplier_address="orders@vendor.example",
        ),
        route=("hr", "vendor"),
    )  # fmt: skip
    try:
        yield made
    finally:
        made.close()


def test_through_the_engine_commands_move_the_chain_and_the_customer_confirms(
    chain: MailBridge, smtp_server: SmtpServer
) -> None:
    hr_box, vendor_box = chain.boxes["hr-mail"], chain.boxes["vendor-mail"]
    root, raw = customer_mail("[request] A chair for desk 4.12", "Mine is broken.")
    hr_box.add(raw)
    chain.run_clean("hr-mail", "vendor-mail", "hr-mail")
    assert chain.calls()["hr"].status is Status.WAITING
    vendor_call = chain.calls()["vendor"]
    assert vendor_call.source is not None

    # The vendor's agent says done in the thread the bridge opened: HR resumes.
    _, raw = customer_mail(
        "Re: chair",
        "Status: done",
        sender="Vera <vera@vendor.example>",
        in_reply_to=vendor_call.source.remote_id,
        to="desk@vendor.example",
    )
    vendor_box.add(raw)
    chain.run_clean("vendor-mail", "hr-mail")
    assert chain.calls()["vendor"].status is Status.FULFILLED
    hr = chain.calls()["hr"]
    assert hr.status is Status.IN_PROGRESS and hr.waiting_on is None

    # HR's agent fulfils: the bridge stores it and Ann is asked to confirm, once.
    start = len(smtp_server.messages)
    _, raw = customer_mail("Re: chair", "Status: fulfilled", sender=AGENT, in_reply_to=root)
    hr_box.add(raw)
    chain.run_clean("hr-mail", "vendor-mail", "hr-mail", "vendor-mail")
    assert chain.calls()["hr"].status is Status.FULFILLED
    [request] = sent_to(smtp_server, start, ANN)
    assert request["X-USM-Kind"] == "confirmation-request"
    # HR's fulfilment accepts the vendor's work (issue 16, sync/closure.py): the vendor's desk
    # is told its call is confirmed, then closed.
    told = [m.get_content().strip() for m in sent_to(smtp_server, start, "orders@vendor.example")]
    assert told == ["The status of VEN-1 is now: confirmed.", "The status of VEN-1 is now: closed."]
    assert len(smtp_server.messages) - start == 3  # no echo, no loop
    assert chain.calls()["vendor"].status is Status.CLOSED

    _, raw = customer_mail("Re: chair", "Yes, thank you!", in_reply_to=request["Message-ID"])
    hr_box.add(raw)
    chain.run_clean("hr-mail", "vendor-mail", "hr-mail")
    hr = chain.calls()["hr"]
    # Ann's YES confirms HR's call; the bridge closes it after its confirmation.
    assert hr.status is Status.CLOSED and hr.confirmed is not None
    assert chain.calls()["vendor"].status is Status.CLOSED

    # Quiet: more cycles write nothing, and no field went back and forth on the way.
    chain.run_clean("vendor-mail", "hr-mail")
    start = len(smtp_server.messages)
    chain.run_clean("hr-mail", "vendor-mail", "hr-mail", "vendor-mail")
    assert len(smtp_server.messages) == start
    with chain.store.begin(readonly=True) as tx:
        assert tx.list_audit(kind="conflict") == []
        assert tx.list_audit(kind="unresolvable") == []
