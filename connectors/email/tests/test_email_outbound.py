"""Outbound mail: acknowledgements, confirmation of a fulfilled call, loop and rate rules,
allowed domains, and never sending twice across a crash."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from email_harness import ADDRESS, MAPPING, MaildirHarness, connect, customer_mail, read, sent_to
from email_servers import FaultPlan, FaultyProxy, PymapServer, SmtpServer
from pydantic import ValidationError
from usm_bridge.connector import CommentDraft, RemoteDraft
from usm_bridge.errors import RetriableRemoteError
from usm_bridge.mapping import MappingContext, load_mapping
from usm_bridge.model import Status
from usm_bridge.plugins import PluginHost
from usm_bridge.testing import Fault

from usm_bridge_email import EmailConnector, EmailSettings
from usm_bridge_email.plugin import dead_letter_reason


def test_acknowledgement_carries_token_threading_and_loop_headers(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    start = len(smtp.messages)
    root, raw = customer_mail("Laptop broken", "It does not boot.")
    harness.deliver(raw)
    connector = connect(harness, smtp)
    [record], _ = read(connector)
    [ack] = sent_to(smtp, start, "ann@customer.example")
    assert record.remote_key == "HR-1" and "[HR-1]" in str(ack["Subject"])
    assert ack["In-Reply-To"] == root and root in str(ack["References"])
    assert ack["Auto-Submitted"] == "auto-replied" and ack["X-Auto-Response-Suppress"] == "All"
    assert ack["Message-ID"] and ack["From"] == ADDRESS
    replies: Any = record.data["replies"]
    assert replies[0]["kind"] == "ack" and replies[0]["direction"] == "out"
    # A copy is in the outbox, not pending: a second connector (a restart) never re-sends it.
    again = connect(harness, smtp)
    read(again)
    assert len(sent_to(smtp, start, "ann@customer.example")) == 1


def fulfilled_call(
    harness: MaildirHarness, smtp: SmtpServer, subject: str, body: str
) -> tuple[EmailConnector, str, str, EmailMessage]:
    """Ann's mail, read, then fulfilled: the connector, the root, the cursor after the read,
    and the confirmation request she was sent."""
    root, raw = customer_mail(subject, body)
    harness.deliver(raw)
    connector = connect(harness, smtp)
    _, cursor = read(connector)
    start = len(smtp.messages)
    connector.update(root, RemoteDraft(status="fulfilled"))
    [request] = sent_to(smtp, start, "ann@customer.example")
    return connector, root, cursor, request


def test_fulfilled_asks_for_confirmation_and_a_yes_confirms(
    desk: tuple[MaildirHarness, SmtpServer],
) -> None:
    harness, smtp = desk
    root, raw = customer_mail("[Incident] VPN down", "No VPN since 9:00.")
    harness.deliver(raw)
    connector = connect(harness, smtp)
    _, cursor = read(connector)
    start = len(smtp.messages)
    connector.update(root, RemoteDraft(status="fulfilled", fields={"body": "Router restarted."}))
    [request] = sent_to(smtp, start, "ann@customer.example")
    assert request["X-USM-Kind"] == "confirmation-request"
    assert "reply YES" in request.get_content()
    [record], cursor = read(connector, cursor)
    assert record.data["status"] == "fulfilled"

    _, reply = customer_mail(
        "Re: VPN down",
        "Yes, it works again.\n> Please reply YES",
        in_reply_to=request["Message-ID"],
    )
    harness.deliver(reply)
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "confirmed" and record.data["confirmed_at"]
    host = PluginHost()
    context = MappingContext(unit="hr", instance="hr-mail", transforms=host.transforms())
    call = host.map_inbound(load_mapping(MAPPING), record, context)
    assert call.status is Status.CONFIRMED and call.confirmed is not None
    assert call.call_type == "incident"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (
            "On Mon, 7 Dec 2026 at 10:00, HR <{hr}> wrote:\n> {ask}\n\nYES, works again.",
            "confirmed",
        ),
        (
            "Op ma 7 dec 2026 om 10:00 schreef HR <{hr}>:\n> {ask}\n\nJa, het werkt weer.",
            "confirmed",
        ),
        ("Am Mo., 7. Dez. 2026 um 10:00 Uhr schrieb HR <{hr}>:\n> {ask}\n\nNein", "in_progress"),
        ("Le lun. 7 déc. 2026 à 10:00, HR <{hr}> a écrit :\n> {ask}\n\nYES", "confirmed"),
        ("{ask}\n\nThanks, no new text above.", "fulfilled"),
    ],
    ids=["en-bottom-yes", "nl-bottom-ja", "de-bottom-nein", "fr-bottom-yes", "pasted-request"],
)
def test_the_answer_is_read_below_the_quoted_request(
    desk: tuple[MaildirHarness, SmtpServer], answer: str, status: str
) -> None:
    """A bottom-posted YES (or NO) answers; the request's own "reply YES", quoted or pasted back
    without quote marks, is never taken for the customer's answer."""
    harness, smtp = desk
    connector, _, cursor, request = fulfilled_call(harness, smtp, "Badge", "My badge is broken.")
    ask = next(line for line in request.get_content().splitlines() if "YES" in line)
    body = answer.format(hr=ADDRESS, ask=ask)
    harness.deliver(customer_mail("Re: Badge", body, in_reply_to=request["Message-ID"])[1])
    [record], _ = read(connector, cursor)
    assert record.data["status"] == status


def test_a_no_reopens_the_call(desk: tuple[MaildirHarness, SmtpServer]) -> None:
    harness, smtp = desk
    connector, _, cursor, request = fulfilled_call(harness, smtp, "Printer", "Jams.")
    _, reply = customer_mail("Re: Printer", "No, still jams.", in_reply_to=request["Message-ID"])
    harness.deliver(reply)
    [record], _ = read(connector, cursor)
    assert record.data["status"] == "in_progress"


def test_answers_to_one_sender_are_rate_limited(desk: tuple[MaildirHarness, SmtpServer]) -> None:
    harness, smtp = desk
    start = len(smtp.messages)
    for i in range(5):
        harness.deliver(customer_mail(f"Question {i}", "?", sender="pat@customer.example")[1])
    records, _ = read(connect(harness, smtp, answers_per_sender_per_hour=2))
    assert len(records) == 5  # every mail is a call ...
    assert len(sent_to(smtp, start, "pat@customer.example")) == 2  # ... but only two answers


def test_outside_domains_are_held_or_refused(desk: tuple[MaildirHarness, SmtpServer]) -> None:
    harness, smtp = desk
    start = len(smtp.messages)
    harness.deliver(customer_mail("Hi", "from outside", sender="mallory@elsewhere.example")[1])
    harness.deliver(customer_mail("Hi", "from inside", sender="ann@customer.example")[1])
    held, _ = read(connect(harness, smtp, allowed_domains=["customer.example"]))
    by_sender = {str(r.data["from"]): r for r in held}
    assert by_sender["mallory@elsewhere.example"].data["held"]
    assert dead_letter_reason(by_sender["mallory@elsewhere.example"]) is None
    assert not sent_to(smtp, start, "mallory@elsewhere.example")
    assert sent_to(smtp, start, "ann@customer.example")
    refused, _ = read(
        connect(harness, smtp, allowed_domains=["customer.example"], outside_domains="refuse")
    )
    reason = dead_letter_reason(next(r for r in refused if "mallory" in str(r.data["from"])))
    assert reason is not None and "not allowed" in reason


def test_a_crash_between_send_and_commit_never_sends_twice(
    desk: tuple[MaildirHarness, SmtpServer], fault_plan: FaultPlan
) -> None:
    harness, smtp = desk
    draft = RemoteDraft(fields={"subject": "Move desk", "body": "Please move desk 4."})
    start = len(smtp.messages)
    # The relay is down: the create fails, its copy stays pending, and is not "created" yet.
    fault_plan.add(Fault.UNAVAILABLE, 1_000)
    with pytest.raises(RetriableRemoteError):
        connect(harness, smtp).create(draft, "corr-1")
    fault_plan.clear()
    assert connect(harness, smtp).find_by_correlation("corr-1") is None
    # The engine retries: the pending copy is sent, once.
    first = connect(harness, smtp).create(draft, "corr-1")
    # The engine crashed before committing: a new process creates again, and nothing is sent.
    second = connect(harness, smtp).create(draft, "corr-1")
    found = connect(harness, smtp).find_by_correlation("corr-1")
    assert first == second and found is not None and found.remote_id == first.remote_id
    assert len(smtp.messages) - start == 1


def test_internal_comments_stay_in_the_outbox(desk: tuple[MaildirHarness, SmtpServer]) -> None:
    harness, smtp = desk
    root, raw = customer_mail("Access", "Need access to payroll.")
    harness.deliver(raw)
    connector = connect(harness, smtp, acknowledge=False)
    _, cursor = read(connector)
    start = len(smtp.messages)
    connector.add_comment(root, CommentDraft(body="Check with the manager", public=False))
    connector.add_comment(root, CommentDraft(body="We are on it", correlation="c-1"))
    connector.add_comment(root, CommentDraft(body="We are on it", correlation="c-1"))
    assert len(smtp.messages) - start == 1
    [record], _ = read(connector, cursor)
    replies: Any = record.data["replies"]
    assert [(r["body"], r["public"]) for r in replies] == [
        ("Check with the manager", False),
        ("We are on it", True),
    ]


def test_plain_text_only_on_loopback() -> None:
    with pytest.raises(ValidationError, match="only on loopback"):
        EmailSettings.model_validate(
            {
                "address": ADDRESS,
                "imap": {
                    "host": "mail.example",
                    "security": "plain",
                    "username": "u",
                    "password": "p",
                },
            }
        )


def test_a_wrong_password_is_reported_without_the_password(
    pymap_server: PymapServer, imap_proxy: FaultyProxy
) -> None:
    secret = "s3cret-Password-do-not-log"
    settings = EmailSettings.model_validate(
        {
            "address": ADDRESS,
            "imap": {
                "host": "127.0.0.1",
                "port": pymap_server.port,
                "security": "plain",
                "username": "demouser",
                "password": secret,
            },
        }
    )
    result = EmailConnector("hr-mail", settings, sleep=lambda _: None).check()
    assert not result.ok and "AUTHENTICATIONFAILED" in result.detail
    assert secret not in result.detail and secret not in repr(settings)
