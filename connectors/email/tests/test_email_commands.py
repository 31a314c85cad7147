"""Status commands by mail: ``Status: fulfilled`` at the top of a reply, obeyed only from the
desk's agents and from the supplier a thread the bridge opened was mailed to; the status flows
through the record and the mapping, is announced once, and the customer's answer still counts.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from email_harness import ADDRESS, ImapHarness, MaildirHarness, customer_mail
from email_servers import FaultPlan, FaultyProxy, PymapServer, SmtpServer, free_port
from pydantic import ValidationError
from usm_bridge.config import load_config
from usm_bridge.connector import Checkpoint, RawRecord, RemoteDraft
from usm_bridge.errors import RemoteError
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.model import Call, Status, WaitingOn
from usm_bridge.plugins import PluginHost
from usm_bridge.store import Store
from usm_bridge.sync.engine import SyncEngine

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.commands import read_status, split_commands
from usm_bridge_email.connector import STATUSES

MAPPING = Path(__file__).resolve().parents[3] / "mappings" / "email-service-desk.yaml"
AGENT = "Hilda Desk <hilda@hr.example>"
ANN = "ann@customer.example"


# -- helpers -----------------------------------------------------------------------------------


def mail(
    subject: str,
    body: str,
    *,
    sender: str,
    in_reply_to: str | None = None,
    to: str = ADDRESS,
    when: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """A person's mail as a client sends it, dated ``when`` (default now)."""
    message_id = f"<{uuid.uuid4().hex}@client.example>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {email.utils.format_datetime(when or datetime.now(UTC))}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return message_id, "\r\n".join(lines).encode()


def read(connector: EmailConnector, cursor: str | None = None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [i for i in items if isinstance(i, RawRecord)], items[-1].cursor


def sent_to(smtp: SmtpServer, since: int, address: str) -> list[EmailMessage]:
    return [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _, rcpts, raw in smtp.messages[since:]
        if address in rcpts
    ]


def replies(record: RawRecord) -> list[dict[str, Any]]:
    found: Any = record.data["replies"]
    return list(found)


def commands(record: RawRecord) -> list[dict[str, Any]]:
    found: Any = record.data.get("commands") or []
    return list(found)


def as_call(record: RawRecord) -> Call:
    host = PluginHost()
    context = MappingContext(unit="hr", instance="hr-mail", transforms=host.transforms())
    return host.map_inbound(load_mapping(MAPPING), record, context)


@pytest.fixture
def desk(
    tmp_path: Path, smtp_server: SmtpServer, fault_plan: FaultPlan
) -> Iterator[tuple[MaildirHarness, SmtpServer]]:
    harness = MaildirHarness(tmp_path)
    harness.plan = fault_plan
    try:
        yield harness, smtp_server
    finally:
        fault_plan.clear()
        harness.close()


def connect(harness: MaildirHarness, smtp: SmtpServer, **overrides: Any) -> EmailConnector:
    overrides.setdefault("agents", ["hilda@hr.example"])
    connector = harness.make_connector(
        smtp={"host": "127.0.0.1", "port": smtp.port, "security": "plain"}, **overrides
    )
    assert isinstance(connector, EmailConnector)
    return connector


def open_call(
    harness: MaildirHarness, connector: EmailConnector, subject: str = "Badge broken"
) -> tuple[str, str]:
    """Ann opens a call; returns its root Message-ID and the cursor after reading it."""
    root, raw = customer_mail(subject, "My badge does not open the door.")
    harness.deliver(raw)
    _, cursor = read(connector)
    return root, cursor


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
    desk: tuple[MaildirHarness, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, cursor = open_call(harness, connector)
    start = len(smtp.messages)
    command, raw = mail(
        "Re: Badge broken",
        "Status: fulfilled\n\nA new badge is at the reception desk.",
        sender=AGENT,
        in_reply_to=root,
    )
    harness.deliver(raw)
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
    _, raw = mail("Re: Badge broken", "Status: done", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
    [record], _ = read(again)
    assert record.data["status"] == "fulfilled"
    assert len(sent_to(smtp, start, ANN)) == 1
    assert len(smtp.messages) - start == 1


def test_a_command_only_reply_adds_no_comment(desk: tuple[MaildirHarness, SmtpServer]) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, cursor = open_call(harness, connector)
    command, raw = mail("Re: Badge broken", "Status: on hold\n", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "waiting:customer"
    assert command not in [r["message_id"] for r in replies(record)]
    call = as_call(record)
    assert call.status is Status.WAITING and call.waiting_on is WaitingOn.CUSTOMER
    assert [c.remote_id for c in call.comments if c.public] == []


def test_a_strangers_command_is_no_command(
    desk: tuple[MaildirHarness, SmtpServer], caplog: pytest.LogCaptureFixture
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp, allowed_domains=["hr.example", "customer.example"])
    root, cursor = open_call(harness, connector)
    start = len(smtp.messages)
    attempts = [
        # The customer herself is no agent.
        mail("Re: Badge broken", "Status: fulfilled\nWorks now.", sender=ANN, in_reply_to=root),
        # An agent's address, but threaded only by the (guessable) token in the subject.
        mail("Re: [HR-1] Badge broken", "Status: cancelled", sender=AGENT),
        # An agent's address on an automatic message.
        mail(
            "Re: Badge broken",
            "Status: fulfilled",
            sender=AGENT,
            in_reply_to=root,
            extra={"Auto-Submitted": "auto-replied"},
        ),
        # The mailbox's own address, without the bridge's marker: forged.
        mail("Re: Badge broken", "Status: closed", sender=ADDRESS, in_reply_to=root),
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
    harness, smtp = desk
    connector = connect(harness, smtp, agents=["@hr.example"])
    root, cursor = open_call(harness, connector)
    start = len(smtp.messages)
    command, raw = mail(
        "Re: Badge broken", "Status: finished\n\nBadge replaced.", sender=AGENT, in_reply_to=root
    )
    harness.deliver(raw)
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
    root, raw = mail("Badge broken", "Badge dead.", sender=ANN, when=days_ago)
    harness.deliver(raw)
    _, raw = mail(
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


def test_an_announcement_the_relay_refused_is_sent_on_the_next_read(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, cursor = open_call(harness, connector)
    _, raw = mail("Re: Badge broken", "Status: fulfilled", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
    start = len(smtp.messages)
    relay_down = harness.make_connector(
        agents=["hilda@hr.example"],
        smtp={"host": "127.0.0.1", "port": free_port(), "security": "plain", "timeout": 2},
        max_attempts=1,
    )
    assert isinstance(relay_down, EmailConnector)
    with pytest.raises(RemoteError):
        read(relay_down, cursor)
    # Its copy waits in the outbox, unsent: it has told nobody, so the status is the command's
    # and the next read hands the very same message over, once.
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "fulfilled"
    [request] = sent_to(smtp, start, ANN)
    assert request["X-USM-Kind"] == "confirmation-request"
    read(connect(harness, smtp), cursor)
    assert len(smtp.messages) - start == 1


# -- ordering: the latest of announcement, command and answer wins ---------------------------------


def test_fulfilled_by_command_then_yes_confirms_and_a_later_no_reopens(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, cursor = open_call(harness, connector)
    _, raw = mail("Re: Badge broken", "Status: fulfilled", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
    _, cursor = read(connector, cursor)
    [request] = sent_to(smtp, 0, ANN)[-1:]
    assert request["X-USM-Kind"] == "confirmation-request"

    # An agent's "ok" in the thread is no confirmation: only the customer confirms.
    _, raw = mail("Re: Badge broken", "OK, noted.", sender=AGENT, in_reply_to=request["Message-ID"])
    harness.deliver(raw)
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

    _, raw = customer_mail(
        "Re: Badge broken", "No, it stopped working again.", in_reply_to=request["Message-ID"]
    )
    harness.deliver(raw)
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "in_progress"
    assert "confirmed_at" not in record.data and "fulfilled_at" not in record.data

    # The agent fulfils again: a new request, and the customer's answer to it counts.
    start = len(smtp.messages)
    _, raw = mail("Re: Badge broken", "Status: done", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "fulfilled"
    [second] = sent_to(smtp, start, ANN)
    assert second["X-USM-Kind"] == "confirmation-request"


def test_the_bridges_later_announcement_wins_over_an_earlier_command(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    connector = connect(harness, smtp)
    root, cursor = open_call(harness, connector)
    _, raw = mail("Re: Badge broken", "Status: fulfilled", sender=AGENT, in_reply_to=root)
    harness.deliver(raw)
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


@pytest.fixture
def imap_desk(
    pymap_server: PymapServer,
    imap_proxy: FaultyProxy,
    smtp_server: SmtpServer,
    fault_plan: FaultPlan,
) -> Iterator[ImapHarness]:
    harness = ImapHarness(pymap_server, imap_proxy.port, smtp_server, fault_plan)
    try:
        yield harness
    finally:
        harness.close()


def test_the_supplier_a_bridge_thread_was_mailed_to_may_say_done(imap_desk: ImapHarness) -> None:
    harness, smtp = imap_desk, imap_desk.smtp
    connector = harness.make_connector(agents=["hilda@hr.example"])
    assert isinstance(connector, EmailConnector)
    try:
        vendor = "orders@vendor.example"
        draft = RemoteDraft(
            fields={"to": vendor, "subject": "Replace badge reader 3", "body": "It is broken."},
            status="registered",
        )
        ref = connector.create(draft, "usm-bridge:call-42")
        _, cursor = read(connector)
        start = len(smtp.messages)

        # Someone else at the vendor is not the address the bridge wrote to.
        _, raw = mail(
            "Re: Replace badge reader 3",
            "Status: done",
            sender="intern@vendor.example",
            in_reply_to=ref.remote_id,
        )
        harness.deliver(raw)
        [record], cursor = read(connector, cursor)
        assert record.data["status"] == "registered"
        [ignored] = commands(record)
        assert "nor the supplier this thread was mailed to" in ignored["reason"]

        # The supplier may not confirm its own work: refused, and told why.
        refused, raw = mail(
            "Re: Replace badge reader 3",
            "Status: confirmed",
            sender=f"Vendor Orders <{vendor}>",
            in_reply_to=ref.remote_id,
        )
        harness.deliver(raw)
        [record], cursor = read(connector, cursor)
        assert record.data["status"] == "registered"
        [told] = sent_to(smtp, start, vendor)
        assert told["X-USM-Kind"] == "command-refused" and told["In-Reply-To"] == refused
        assert "only the customer confirms" in told.get_content()

        done, raw = mail(
            "Re: Replace badge reader 3",
            "Status: done\n\nNew reader installed on Tuesday.",
            sender=f"Vendor Orders <{vendor}>",
            in_reply_to=ref.remote_id,
        )
        harness.deliver(raw)
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


CHAIN_CONFIG = """\
[store]
url = "sqlite:///{root}/bridge.db"

[units.hr]
[units.vendor]

[instances.hr-mail]
unit = "hr"
kind = "email"
mapping = "{mapping}"

[instances.hr-mail.settings]
address = "{hr}"
reference_prefix = "HR"
maildir = {{ path = "{root}/hr" }}
smtp = {{ host = "127.0.0.1", port = {port}, security = "plain" }}
agents = ["hilda@hr.example"]
backoff_initial = 0.0

[instances.vendor-mail]
unit = "vendor"
kind = "email"
mapping = "{mapping}"

[instances.vendor-mail.settings]
address = "desk@vendor.example"
reference_prefix = "VEN"
maildir = {{ path = "{root}/vendor" }}
smtp = {{ host = "127.0.0.1", port = {port}, security = "plain" }}
agents = ["vera@vendor.example"]
supplier_address = "orders@vendor.example"
backoff_initial = 0.0

[[routes]]
name = "hr-to-vendor"
from = "hr"
to = "vendor"
when = {{ call_type = ["service_request"] }}
"""


def test_through_the_engine_commands_move_the_chain_and_the_customer_confirms(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    import mailbox

    (tmp_path / "usm-bridge.toml").write_text(
        CHAIN_CONFIG.format(root=tmp_path, mapping=MAPPING, hr=ADDRESS, port=smtp_server.port),
        encoding="utf-8",
    )
    config = load_config(tmp_path / "usm-bridge.toml")
    hr_box = mailbox.Maildir(tmp_path / "hr", create=True)
    vendor_box = mailbox.Maildir(tmp_path / "vendor", create=True)
    with Store.open(config.store.url) as store:
        engine = SyncEngine(config, store, PluginHost())

        def cycle(*names: str) -> None:
            for name in names:
                summary = engine.run_cycle(name)
                assert summary.ok and summary.dead_letters == 0, summary

        def calls() -> dict[str, Call]:
            with store.begin(readonly=True) as tx:
                return {s.call.unit: s.call for s in tx.list_calls()}

        root, raw = customer_mail("[request] A chair for desk 4.12", "Mine is broken.")
        hr_box.add(raw)
        cycle("hr-mail", "vendor-mail", "hr-mail")
        assert calls()["hr"].status is Status.WAITING
        vendor_call = calls()["vendor"]
        assert vendor_call.source is not None

        # The vendor's agent says done in the thread the bridge opened: HR resumes.
        _, raw = mail(
            "Re: chair",
            "Status: done",
            sender="Vera <vera@vendor.example>",
            in_reply_to=vendor_call.source.remote_id,
            to="desk@vendor.example",
        )
        vendor_box.add(raw)
        cycle("vendor-mail", "hr-mail")
        assert calls()["vendor"].status is Status.FULFILLED
        hr = calls()["hr"]
        assert hr.status is Status.IN_PROGRESS and hr.waiting_on is None

        # HR's agent fulfils: the bridge stores it and Ann is asked to confirm, once.
        start = len(smtp_server.messages)
        _, raw = mail("Re: chair", "Status: fulfilled", sender=AGENT, in_reply_to=root)
        hr_box.add(raw)
        cycle("hr-mail", "vendor-mail", "hr-mail", "vendor-mail")
        assert calls()["hr"].status is Status.FULFILLED
        [request] = sent_to(smtp_server, start, ANN)
        assert request["X-USM-Kind"] == "confirmation-request"
        assert len(smtp_server.messages) - start == 1  # no echo, no loop

        _, raw = customer_mail("Re: chair", "Yes, thank you!", in_reply_to=request["Message-ID"])
        hr_box.add(raw)
        cycle("hr-mail", "vendor-mail", "hr-mail")
        hr = calls()["hr"]
        assert hr.status is Status.CONFIRMED and hr.confirmed is not None
        assert calls()["vendor"].status is Status.FULFILLED

        # Quiet: more cycles write nothing, and no field went back and forth on the way.
        cycle("vendor-mail", "hr-mail")
        start = len(smtp_server.messages)
        cycle("hr-mail", "vendor-mail", "hr-mail", "vendor-mail")
        assert len(smtp_server.messages) == start
        with store.begin(readonly=True) as tx:
            assert tx.list_audit(kind="conflict") == []
            assert tx.list_audit(kind="unresolvable") == []
        engine.close()
