"""No work while unclassified, by mail: an agent's status of work (in progress, waiting) on a
call nobody classified is refused with a note back saying to classify first, and obeyed with a
``Type:`` line in the same reply or after one in an earlier reply; the type reaches the call
through the record (``type``) and the shipped mapping. The mail is never lost or blocked: a
refused command stays an ordinary reply, and the call stays valid (USM: classify first)."""

from __future__ import annotations

import pytest
from email_harness import MaildirHarness, customer_mail, read, replies, sent_to
from email_servers import SmtpServer
from pydantic import ValidationError
from test_email_commands import ANN, Opened, answer, as_call, commands, connect, open_call
from usm_bridge.model import CallType, Status

from usm_bridge_email import EmailSettings
from usm_bridge_email.commands import read_type, split_commands


@pytest.fixture
def opened(desk: tuple[MaildirHarness, SmtpServer]) -> Opened:
    """Ann's "Badge broken" on a desk: a subject nobody classified."""
    return open_call(desk)


@pytest.mark.parametrize(
    ("value", "call_type"),
    [
        ("incident", "incident"),
        ("Service Request", "service_request"),
        ("service_request", "service_request"),
        ("request", "service_request"),
        ("RFC", "rfc"),
        ("change.", "rfc"),
        ("complaint", "wish"),
        ("problem", "risk"),
        ("bug", None),
        ("unclassified", None),
        ("", None),
    ],
)
def test_type_values_are_read_tolerantly_and_never_guessed(
    value: str, call_type: str | None
) -> None:
    assert read_type(value) == call_type


def test_type_and_status_lines_make_one_block() -> None:
    block = split_commands("Type: incident\nStatus: in progress\n\nOn it.\nType: rfc")
    assert block is not None
    assert (block.types, block.values, block.rest) == (
        ["incident"],
        ["in progress"],
        "On it.\nType: rfc",
    )
    only_type = split_commands("type: wish\n\nNoted.")
    assert only_type is not None and (only_type.types, only_type.values) == (["wish"], [])


def test_work_on_an_unclassified_call_is_refused_and_the_agent_told_to_classify(
    opened: Opened,
) -> None:
    harness, smtp, connector, root, cursor = opened
    start = len(smtp.messages)
    command = answer(harness, root, "Status: in progress\n\nLooking into it.")
    [record], _ = read(connector, cursor)
    assert record.data.get("status") is None and "type" not in record.data
    [given] = commands(record)
    assert given["by"] == "agent" and given["status"] is None and given["type"] is None
    assert given["reason"].startswith("the call is not classified yet, and nobody works on a")
    assert "'Type: incident' then 'Status: in progress'" in given["reason"]
    # The agent is told how to go on; the customer hears nothing of it.
    [told] = sent_to(smtp, start, "hilda@hr.example")
    assert told["X-USM-Kind"] == "command-refused" and told["In-Reply-To"] == command
    assert "write its type above the status, e.g. 'Type: incident'" in told.get_content()
    assert not sent_to(smtp, start, ANN)
    # The mail is kept as written, and the call is valid: registered and unclassified.
    bodies = {r["message_id"]: r["body"] for r in replies(record)}
    assert bodies[command] == "Status: in progress\n\nLooking into it."
    call = as_call(record)
    assert (call.call_type, call.status) == (CallType.UNCLASSIFIED, Status.REGISTERED)


def test_a_type_in_the_same_reply_lets_the_status_through(opened: Opened) -> None:
    harness, _, connector, root, cursor = opened
    answer(harness, root, "Type: service request\nStatus: waiting for supplier\n\nOrdered.")
    [record], _ = read(connector, cursor)
    assert (record.data["type"], record.data["status"]) == ("service_request", "waiting:supplier")
    [given] = commands(record)
    assert (given["type"], given["status"], given["reason"]) == (
        "service_request",
        "waiting:supplier",
        None,
    )
    call = as_call(record)
    assert (call.call_type, call.status) == (CallType.SERVICE_REQUEST, Status.WAITING)


def test_a_type_given_before_classifies_for_a_later_status_and_the_latest_type_wins(
    opened: Opened,
) -> None:
    harness, _, connector, root, cursor = opened
    first = answer(harness, root, "Type: rfc\n")
    [record], cursor = read(connector, cursor)
    assert record.data["type"] == "rfc" and record.data.get("status") is None
    assert first not in [r["message_id"] for r in replies(record)]  # only a command
    answer(harness, first, "Type: incident\nStatus: in progress\n")
    answer(harness, root, "Status: on hold\n")
    [record], _ = read(connector, cursor)
    obeyed = [c for c in commands(record) if c["reason"] is None]
    assert len(obeyed) == 3 == len(commands(record))
    call = as_call(record)
    assert call.call_type is CallType.INCIDENT and call.status is Status.WAITING


def test_an_unknown_type_is_refused_naming_the_types(opened: Opened) -> None:
    harness, smtp, connector, root, cursor = opened
    start = len(smtp.messages)
    answer(harness, root, "Type: bug\nStatus: in progress\n")
    [record], _ = read(connector, cursor)
    [given] = commands(record)
    assert given["reason"] == (
        "unknown type 'bug': write one of incident, service request (or request), "
        "rfc (or change), wish, risk"
    )
    assert "type" not in record.data and record.data.get("status") is None
    assert len(sent_to(smtp, start, "hilda@hr.example")) == 1


@pytest.mark.parametrize(
    ("settings", "status"),
    [
        # The subject's tag is what the shipped mapping classifies by: no Type line needed.
        ({}, Status.IN_PROGRESS),
        # With the setting emptied only a Type line classifies: the command is refused (the
        # mapping still reads the tag, so the call is a valid, registered incident).
        ({"classified_subject": ""}, Status.REGISTERED),
    ],
)
def test_a_subject_the_mapping_classifies_needs_no_type(
    desk: tuple[MaildirHarness, SmtpServer], settings: dict[str, str], status: Status
) -> None:
    harness, smtp = desk
    subject = "[incident] Door badge reader down"
    root, raw = customer_mail(subject, "Nobody gets in.")
    harness.deliver(raw)
    answer(harness, root, "Status: in progress\n", subject=f"Re: {subject}")
    [record], _ = read(connect(harness, smtp, **settings))
    [given] = commands(record)
    obeyed = status is Status.IN_PROGRESS
    assert (given["reason"] is None) is obeyed and "type" not in record.data
    assert obeyed or "not classified yet" in given["reason"]
    call = as_call(record)
    assert (call.call_type, call.status) == (CallType.INCIDENT, status)


def test_a_classified_subject_that_is_no_pattern_is_refused() -> None:
    refused = r"classified_subject\n.*not a regular expression: unterminated"
    with pytest.raises(ValidationError, match=refused):
        EmailSettings.model_validate(
            {"address": "desk@hr.example", "maildir": {"path": "m"}, "classified_subject": "[x"}
        )
