"""A relay's refusal never blocks intake (issue 12, item 1).

The mail a read owes (an acknowledgement, an announcement) goes through a real aiosmtpd relay
on loopback that refuses chosen recipients at RCPT TO, for good (``550 5.1.1``) or for now
(``451 4.7.1``), and that is stopped and started again inside a test. Through the real
SyncEngine and store: every message delivered becomes a call, a refused answer is one dead
letter carrying the relay's reply, and owed mail waits while the relay is down, then reaches it
exactly once (counted at the relay).
"""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from email_harness import (
    ADDRESS,
    ImapHarness,
    MailBridge,
    MaildirHarness,
    customer_mail,
    maildir_desk,
    read,
    relay,
    replies,
)
from email_servers import FaultPlan, ImapServer, SmtpServer
from usm_bridge.connector import CommentDraft, RawRecord
from usm_bridge.store import DeadLetter

from usm_bridge_email import EmailConnector
from usm_bridge_email.plugin import dead_letter_reason
from usm_bridge_email.settings import EmailSettings
from usm_bridge_email.smtp import SmtpSender

#: A forged or mistyped sender: the relay knows no such recipient.
NOBODY = "aperson@dom.ain"
USER_UNKNOWN = f"550 5.1.1 <{NOBODY}>: Recipient address rejected: User unknown"


@pytest.fixture
def plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def relay_server(plan: FaultPlan) -> Iterator[SmtpServer]:
    """A relay of this test's own, so stopping it leaves the other tests' relay alone."""
    server = SmtpServer(plan)
    server.start()
    try:
        yield server
    finally:
        plan.clear()
        server.stop()


@pytest.fixture
def bridge(tmp_path: Path, relay_server: SmtpServer) -> Iterator[MailBridge]:
    made = MailBridge(
        tmp_path,
        maildir_desk(
            tmp_path, relay_server, "hr-mail", "hr", address=ADDRESS, reference_prefix="HR"
        ),
    )
    try:
        yield made
    finally:
        made.close()


def person(n: int) -> str:
    """A sender of its own each: the per-sender answer limit never hides an answer here."""
    return f"person{n}@customer.example"


def mail_from(bridge: MailBridge, sender: str, subject: str) -> str:
    """``sender``'s new mail in the desk's inbox; its Message-ID."""
    root, raw = customer_mail(subject, "Please help.", sender=f"Someone <{sender}>")
    bridge.boxes["hr-mail"].add(raw)
    return root


def call_roots(bridge: MailBridge) -> list[str]:
    """The first Message-ID of every stored call's thread."""
    with bridge.store.begin(readonly=True) as tx:
        found = []
        for stored in tx.list_calls():
            assert stored.call.source is not None
            found.append(stored.call.source.remote_id)
    return sorted(found)


def open_letters(bridge: MailBridge) -> list[DeadLetter]:
    with bridge.store.begin(readonly=True) as tx:
        return tx.list_dead_letters(instance="hr-mail")


def relayed(server: SmtpServer) -> list[EmailMessage]:
    return [
        email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in server.messages
    ]


def acks_by_recipient(server: SmtpServer) -> Counter[str]:
    """How many acknowledgements the relay took for each recipient."""
    return Counter(str(m["To"]) for m in relayed(server) if m["X-USM-Kind"] == "ack")


def cycle_ok(bridge: MailBridge, dead_letters: int = 0) -> None:
    [summary] = bridge.cycle("hr-mail")
    assert summary.ok, summary
    assert summary.dead_letters == dead_letters, summary


# -- a refusal for good -----------------------------------------------------------------------


def test_a_550_for_one_answer_is_one_dead_letter_and_later_mail_still_becomes_calls(
    bridge: MailBridge, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    plan.refuse_recipient(NOBODY)
    roots = [mail_from(bridge, NOBODY, "Printer jammed")]
    roots += [mail_from(bridge, person(n), f"Question {n}") for n in range(2)]
    cycle_ok(bridge, dead_letters=1)
    assert call_roots(bridge) == sorted(roots)

    # Later mail: today's bug left every later cycle failing at the refused answer.
    for n in range(2, 5):
        roots.append(mail_from(bridge, person(n), f"Question {n}"))
    cycle_ok(bridge)
    cycle_ok(bridge)  # and a quiet one after it
    # Six messages in: six calls, one dead letter (the refused answer), five answers relayed.
    assert call_roots(bridge) == sorted(roots)
    [letter] = open_letters(bridge)
    assert USER_UNKNOWN in letter.reason, letter.reason
    assert "refused the bridge's mail for good" in letter.reason
    assert letter.attempts == 1
    assert isinstance(letter.payload, dict)
    data = letter.payload["data"]
    assert isinstance(data, dict) and data["kind"] == "ack" and data["to"] == [NOBODY]
    assert acks_by_recipient(relay_server) == Counter({person(n): 1 for n in range(5)})


def test_a_thread_read_again_and_refused_again_is_still_one_dead_letter(
    bridge: MailBridge, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    plan.refuse_recipient(NOBODY)
    root = mail_from(bridge, NOBODY, "Printer jammed")
    cycle_ok(bridge, dead_letters=1)
    for attempt in (2, 3):
        # Each reply makes the thread new again: it is read again, its answer tried again.
        _, raw = customer_mail(
            "Re: Printer jammed", f"Still jammed ({attempt}).", sender=NOBODY, in_reply_to=root
        )
        bridge.boxes["hr-mail"].add(raw)
        cycle_ok(bridge)  # no new dead letter: the open one counts the attempt
        [letter] = open_letters(bridge)
        assert letter.attempts == attempt and USER_UNKNOWN in letter.reason
    assert call_roots(bridge) == [root]
    assert relayed(relay_server) == []


# -- a refusal for now, and a relay that is down ----------------------------------------------


def test_a_451_for_one_answer_holds_it_while_mail_becomes_calls_and_sends_it_once_later(
    bridge: MailBridge, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    plan.refuse_recipient(NOBODY, for_now=True)  # greylisted
    roots = [mail_from(bridge, NOBODY, "Printer jammed"), mail_from(bridge, person(0), "Q 0")]
    cycle_ok(bridge)
    cycle_ok(bridge)  # tried again, refused again: still no dead letter
    assert call_roots(bridge) == sorted(roots)
    assert acks_by_recipient(relay_server) == Counter({person(0): 1})
    plan.accept_recipient(NOBODY)
    roots.append(mail_from(bridge, person(1), "Q 1"))
    cycle_ok(bridge)
    cycle_ok(bridge)
    assert call_roots(bridge) == sorted(roots)
    assert acks_by_recipient(relay_server) == Counter({NOBODY: 1, person(0): 1, person(1): 1})
    assert open_letters(bridge) == []


def test_a_relay_down_for_several_cycles_stops_no_call_and_owed_mail_goes_once_after(
    bridge: MailBridge, relay_server: SmtpServer
) -> None:
    relay_server.stop()
    roots: list[str] = []
    for down in range(3):
        roots += [mail_from(bridge, person(2 * down + n), f"Q {down}.{n}") for n in range(2)]
        cycle_ok(bridge)
        assert call_roots(bridge) == sorted(roots)  # each cycle's mail is a call at once
    assert relayed(relay_server) == []
    relay_server.start()
    cycle_ok(bridge)
    cycle_ok(bridge)
    # Six calls, six answers owed: each reached the relay exactly once, as itself.
    assert acks_by_recipient(relay_server) == Counter({person(n): 1 for n in range(6)})
    assert len({str(m["Message-ID"]) for m in relayed(relay_server)}) == 6
    assert call_roots(bridge) == sorted(roots)
    assert open_letters(bridge) == []


def test_owed_mail_waits_longer_after_each_failure_and_the_read_never_waits(
    tmp_path: Path, relay_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = MaildirHarness(tmp_path)
    start = datetime.now(UTC)
    clock = [start]
    connector = EmailConnector(
        "hr-mail",
        harness.settings(smtp=relay(relay_server), backoff_initial=10.0, backoff_max=40.0),
        sleep=lambda seconds: pytest.fail(f"a read slept {seconds} s for the relay"),
        now=lambda: clock[0],
    )
    tries: list[str] = []
    real = SmtpSender.send

    def counted(self: SmtpSender, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        tries.append(recipients[0])
        real(self, raw, sender, recipients)

    monkeypatch.setattr(SmtpSender, "send", counted)

    def read_at(seconds: int, *senders: str) -> list[str]:
        """Mail from ``senders`` arrives, then a read ``seconds`` after the start; returns the
        relay attempts it made. Every new mail is a record of that very read."""
        roots = []
        for sender in senders:
            root, raw = customer_mail("Help", "Please.", sender=sender)
            harness.deliver(raw)
            roots.append(root)
        clock[0] = start + timedelta(seconds=seconds)
        before = len(tries)
        records, _ = read(connector)
        assert {r.remote_id for r in records} >= set(roots)
        return tries[before:]

    relay_server.stop()
    try:
        assert read_at(0, person(0)) == [person(0)]  # tried once, then waits 10 s
        assert read_at(5, person(1)) == []  # waiting: the new call's answer is not tried
        assert read_at(11) == [person(0)]  # the relay still refuses: now it waits 20 s
        assert read_at(30) == []
    finally:
        relay_server.start()
    assert read_at(31) == [person(0), person(1)]  # 11 + 20 s: both go, oldest first
    assert read_at(32) == []
    assert acks_by_recipient(relay_server) == Counter({person(0): 1, person(1): 1})
    connector.close()


# -- on IMAP as on a Maildir: the connector's records ------------------------------------------


@pytest.fixture(params=["maildir", "imap", "dovecot"])
def mailbox_harness(
    request: pytest.FixtureRequest, tmp_path: Path, relay_server: SmtpServer
) -> Iterator[MaildirHarness | ImapHarness]:
    harness: MaildirHarness | ImapHarness
    if request.param == "maildir":
        harness = MaildirHarness(tmp_path)
    else:
        server: ImapServer = request.getfixturevalue(
            f"{request.param.replace('imap', 'pymap')}_server"
        )
        harness = ImapHarness(server, server.port, relay_server, FaultPlan())
    with closing(harness):
        yield harness


def test_the_refused_answer_follows_its_call_and_the_read_goes_on(
    mailbox_harness: MaildirHarness | ImapHarness, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    plan.refuse_recipient(NOBODY)
    connector = mailbox_harness.make_connector(smtp=relay(relay_server))
    assert isinstance(connector, EmailConnector)
    refused, raw = customer_mail("Printer jammed", "Help.", sender=NOBODY)
    mailbox_harness.deliver(raw)
    later, raw = customer_mail("Badge", "Broken.", sender=person(0))
    mailbox_harness.deliver(raw)
    records, cursor = read(connector)
    ids = [r.remote_id for r in records]
    [letter] = [r for r in records if dead_letter_reason(r)]
    # Both mails are calls; the refused answer's dead letter comes right after its call.
    assert sorted(ids) == sorted([refused, later, letter.remote_id])
    assert ids.index(letter.remote_id) == ids.index(refused) + 1
    assert USER_UNKNOWN in (dead_letter_reason(letter) or "")
    [call] = [r for r in records if r.remote_id == refused]
    assert dead_letter_reason(call) is None
    assert [r for r in replies(call) if r["direction"] == "out"] == []  # nobody was told
    assert acks_by_recipient(relay_server) == Counter({person(0): 1})
    # The cursor went past both: a quiet read yields nothing and mails nobody.
    records, _ = read(connector, cursor)
    assert records == []
    assert len(relay_server.messages) == 1
    connector.close()


def test_an_answer_greylisted_in_one_thread_never_holds_up_a_comment_in_another(
    mailbox_harness: MaildirHarness | ImapHarness, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    plan.refuse_recipient(NOBODY, for_now=True)
    connector = mailbox_harness.make_connector(smtp=relay(relay_server))
    assert isinstance(connector, EmailConnector)
    waiting, raw = customer_mail("Printer jammed", "Help.", sender=NOBODY)
    mailbox_harness.deliver(raw)
    other, raw = customer_mail("Badge", "Broken.", sender=person(0))
    mailbox_harness.deliver(raw)
    _, cursor = read(connector)
    # The outbox pushes a comment to the other call: it goes at once, the greylisted answer
    # stays pending (tried, refused for now, not a dead letter).
    connector.add_comment(other, CommentDraft(body="A new badge is ready.", correlation="c-1"))
    kinds = Counter((str(m["To"]), str(m["X-USM-Kind"])) for m in relayed(relay_server))
    assert kinds == Counter({(person(0), "ack"): 1, (person(0), "comment"): 1})
    plan.accept_recipient(NOBODY)
    records, _ = read(connector, cursor)
    assert not [r for r in records if dead_letter_reason(r)]
    assert acks_by_recipient(relay_server) == Counter({person(0): 1, NOBODY: 1})
    records, _ = read(connector)  # read whole again: the answer is sent, pending no more
    [call] = [r for r in records if r.remote_id == waiting]
    assert [(r["kind"], r["pending"]) for r in replies(call) if r["direction"] == "out"] == [
        ("ack", False)
    ]
    connector.close()


def test_a_relay_refusing_the_bridge_itself_holds_owed_mail_for_the_settings_to_be_fixed(
    mailbox_harness: MaildirHarness | ImapHarness, relay_server: SmtpServer
) -> None:
    # No message is to blame when the relay refuses the session (here: no STARTTLS, which the
    # settings ask for): nothing is given up as a dead letter, mail waits and intake goes on.
    misconfigured = mailbox_harness.make_connector(smtp=relay(relay_server, security="starttls"))
    assert isinstance(misconfigured, EmailConnector)
    root, raw = customer_mail("Badge", "Broken.", sender=person(0))
    mailbox_harness.deliver(raw)
    records, _ = read(misconfigured)
    assert [r.remote_id for r in records] == [root]
    assert not [r for r in records if dead_letter_reason(r)]
    assert [(r["kind"], r["pending"]) for r in replies(records[0])] == [("ack", True)]
    records, _ = read(misconfigured)  # read again: still nothing given up, nothing sent
    assert not [r for r in records if dead_letter_reason(r)]
    assert relay_server.messages == []
    misconfigured.close()
    fixed = mailbox_harness.make_connector(smtp=relay(relay_server))
    assert isinstance(fixed, EmailConnector)
    read(fixed)
    read(fixed)
    assert acks_by_recipient(relay_server) == Counter({person(0): 1})
    fixed.close()


def test_a_kill_before_the_dead_letter_is_stored_keeps_the_copy_and_the_next_read_letters_it(
    tmp_path: Path, bridge: MailBridge, relay_server: SmtpServer, plan: FaultPlan
) -> None:
    """The refused answer's copy outlives a kill between the refusal and the engine's commit:
    the next process's read tries it again, and its refusal is the dead letter, stored once;
    only then, at the read after, does the copy leave the Sent folder."""
    plan.refuse_recipient(NOBODY)
    root = mail_from(bridge, NOBODY, "Printer jammed")
    # A process reads (the relay refuses the answer) and is killed before anything is stored.
    desk = maildir_desk(
        tmp_path, relay_server, "hr-mail", "hr", address=ADDRESS, reference_prefix="HR"
    )
    killed = EmailConnector("hr-mail", EmailSettings.model_validate(desk.settings))
    read_before_kill = list(killed.read_changes(None))
    killed.close()
    sent = mailbox.Maildir(tmp_path / "hr-mail" / ".Sent", create=False)
    letters = [r for r in read_before_kill if isinstance(r, RawRecord) and dead_letter_reason(r)]
    assert len(letters) == 1 and USER_UNKNOWN in (dead_letter_reason(letters[0]) or "")
    assert open_letters(bridge) == [] and call_roots(bridge) == []
    assert [m["X-USM-Kind"] for m in sent] == ["ack"], "the refused copy is still there"

    # The next process: the call and the dead letter, once; the copy goes at the read after.
    cycle_ok(bridge, dead_letters=1)
    assert call_roots(bridge) == [root]
    [letter] = open_letters(bridge)
    assert USER_UNKNOWN in letter.reason and letter.attempts == 1
    assert [m["X-USM-Kind"] for m in sent] == ["ack"]
    cycle_ok(bridge)
    assert list(sent) == [], "removed once its dead letter was stored"
    cycle_ok(bridge)
    [letter] = open_letters(bridge)
    assert letter.attempts == 1
    assert relayed(relay_server) == []
