"""HR's SMTP relay refusing for now (451) what the bridge mails: the mail still reaches the
requester once the relay takes mail again, exactly once.

The e-mail connector keeps a copy of each mail in the Maildir outbox, marked pending until the
relay took it (ARCHITECTURE.md: every requested remote write ends up done or dead-lettered).
"""

from __future__ import annotations

import email.policy
import time
from datetime import datetime, timedelta
from pathlib import Path

from e2e.e2e_env import (
    SmtpFault,
    Tools,
    adf,
    iter_instances,
    onboard,
    open_engine,
    settle,
)
from usm_bridge.model import utcnow

DESK_NOTE = "Desk 4.12 is reserved; badge at reception."
#: More than the connector's own tries of one send (``max_attempts`` = 3 in the config) and
#: more than the tries of a read that acknowledges (3 reconnects of 3 sends each).
REFUSALS = 20


class Clock:
    """The engine's "now", moved forward instead of waiting for an outbox backoff."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def _refuse_for_now(tools: Tools) -> None:
    tools.sink.fail_next(SmtpFault(refuse=True), times=REFUSALS)


def _times_taken(tools: Tools, message_id: str) -> int:
    """How many times the relay took the mail ``message_id``."""
    return [
        str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])
        for _, _, raw in tools.smtp_messages()
    ].count(message_id)


def test_a_comment_mail_the_relay_refused_for_now_reaches_the_requester_once(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url, clock=clock) as engine:
        onboard(tools, engine)
        (issue,) = tools.jira_issues()
        tools.jira_as_person("POST", f"issue/{issue.id}/comment", {"body": adf(DESK_NOTE)})
        _refuse_for_now(tools)
        for name in iter_instances(1):  # the copy for HR is made, the relay refuses it
            engine.run_cycle(name)
        tools.sink.clear_faults()
        clock.offset += timedelta(hours=2)  # past any backoff of the outbox item
        # The outbox item finds its copy pending in Sent (``find_comment``) and settles; the
        # read sends that copy once the relay's wait is over (backoff_max is 0.2 s).
        time.sleep(0.25)
        settle(engine)

        copies = [m for m in tools.sent_mails() if DESK_NOTE in m.get_content()]
        assert len(copies) == 1
        message_id = str(copies[0]["Message-ID"])
        assert _times_taken(tools, message_id) == 1, "the comment never reached the relay"
        assert tools.unsent_mails() == []
        with engine.store.begin(readonly=True) as tx:
            assert tx.list_outbox(status="pending") == []
            assert tx.list_dead_letters() == []


def test_an_acknowledgement_the_relay_refused_for_now_reaches_the_requester_once(
    tools: Tools, store_url: str, tmp_path: Path
) -> None:
    with open_engine(tools, tmp_path / "usm-bridge.toml", store_url) as engine:
        tools.mail_to_hr()
        _refuse_for_now(tools)
        summary = engine.run_cycle("hr-mail")  # reading acknowledges; the relay refuses
        assert summary.ok and summary.stored == 1, summary  # the call is made all the same
        tools.sink.clear_faults()
        time.sleep(0.25)  # past the wait of the mail the read owes (backoff_max is 0.2 s)
        settle(engine)

        acks = [m for m in tools.sent_mails() if m["X-USM-Kind"] == "ack"]
        assert len(acks) == 1
        message_id = str(acks[0]["Message-ID"])
        assert _times_taken(tools, message_id) == 1, "the acknowledgement never reached the relay"
        assert tools.unsent_mails() == []
