"""Outages over several cycles, through the real SyncEngine and store, on real IMAP servers
(Dovecot, and pymap): what each message delivered ends as, and what the relay received.

test_email_refusal.py covers refusals (550, 451, a relay refusing the bridge) and a relay down
on a Maildir desk; here the mailbox is an IMAP server, whose Sent folder keeps the owed mail
(pending, by the ``$USMPending`` keyword or the Draft flag), and the faults last over cycles:

- the relay down for several cycles while new mail arrives: each cycle's mail becomes calls
  at once, and every owed acknowledgement reaches the relay exactly once when it is back;
- the mailbox moved to a new server (a new UIDVALIDITY, every UID new) while the relay is
  down: no call is made twice, no owed mail is lost or sent twice.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from email_harness import (
    ADDRESS,
    ImapHarness,
    MailBridge,
    customer_mail,
    empty_on_a_new_server,
    imap_desk,
)
from email_servers import FaultPlan, ImapServer, SmtpServer

#: Every acknowledgement goes to its sender; a sender of its own each keeps the hourly
#: per-sender answer limit from hiding one.
SENDERS = [f"person{n}@customer.example" for n in range(12)]


@pytest.fixture
def relay_server() -> Iterator[SmtpServer]:
    """A relay of this test's own, stopped and started again inside it."""
    server = SmtpServer(FaultPlan())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Desk:
    """An IMAP desk bridged by the SyncEngine; mail delivered the way a server does."""

    def __init__(self, root: Path, server: ImapServer, relay: SmtpServer) -> None:
        self.server, self.relay = server, relay
        self.harness = ImapHarness(server, server.port, relay, FaultPlan())
        desk = imap_desk(
            self.harness, relay, "hr-mail", "hr", address=ADDRESS, reference_prefix="HR"
        )
        self.bridge = MailBridge(root, desk)
        self.delivered: list[str] = []

    def mail_from(self, sender: str) -> None:
        root, raw = customer_mail(f"Help for {sender}", "Please help.", sender=sender)
        self.harness.deliver(raw)
        self.delivered.append(root)

    def cycle(self) -> None:
        """One cycle: ok, and no dead letter (nothing here is refused for good)."""
        [summary] = self.bridge.cycle("hr-mail")
        assert summary.ok and summary.dead_letters == 0, summary

    def call_roots(self) -> list[str]:
        with self.bridge.store.begin(readonly=True) as tx:
            roots = [s.call.source.remote_id for s in tx.list_calls() if s.call.source]
            assert tx.list_dead_letters(instance="hr-mail") == []
        return sorted(roots)

    def acks(self) -> Counter[str]:
        """The acknowledgements the relay received, by recipient."""
        found: Counter[str] = Counter()
        for _, rcpts, raw in self.relay.messages:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert message["X-USM-Kind"] == "ack", message["X-USM-Kind"]
            found.update(rcpts)
        return found

    def sent_copies(self) -> list[bytes]:
        return self.harness.raw_messages(self.harness.sent)

    def folders(self) -> dict[str, list[tuple[str, bytes]]]:
        """Each folder's messages with their flags, as a migration copies them."""
        found: dict[str, list[tuple[str, bytes]]] = {}
        for folder in (self.harness.inbox, self.harness.sent):
            self.harness.client.select(f'"{folder}"')
            _, data = self.harness.client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            found[folder] = []
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                    flags = match.group(1).decode() if match else ""
                    kept = " ".join(f for f in flags.split() if f.lower() != "\\recent")
                    found[folder].append((kept, item[1]))
        return found

    def move(self) -> None:
        """The mailbox moves to a new server: the same messages and flags (pending marks
        included), new UIDs, a new UIDVALIDITY for both folders."""
        before = self.folders()
        empty_on_a_new_server(self.server, self.harness)
        for folder, messages in before.items():
            for flags, raw in reversed(messages):  # in another order, too
                status, _ = self.harness.client.append(f'"{folder}"', f"({flags})", None, raw)
                assert status == "OK"

    def close(self) -> None:
        self.bridge.close()
        self.harness.close()


@pytest.fixture
def desk(tmp_path: Path, moving_server: ImapServer, relay_server: SmtpServer) -> Iterator[Desk]:
    with closing(Desk(tmp_path, moving_server, relay_server)) as made:
        yield made


def assert_each_answered_once(desk: Desk, senders: list[str]) -> None:
    """Every delivered mail is a call, and each sender got one acknowledgement: relayed once
    and copied to Sent once, none more."""
    assert desk.call_roots() == sorted(desk.delivered)
    assert desk.acks() == Counter({sender: 1 for sender in senders})
    assert len(desk.relay.messages) == len(senders)
    assert len(desk.sent_copies()) == len(senders)


def test_relay_down_for_cycles_while_mail_arrives_then_each_ack_goes_once(desk: Desk) -> None:
    desk.relay.stop()
    for down in range(3):
        for n in range(2):
            desk.mail_from(SENDERS[2 * down + n])
        desk.cycle()
        assert desk.call_roots() == sorted(desk.delivered), "a cycle's mail is no call yet"
    assert desk.relay.messages == []
    assert len(desk.sent_copies()) == 6  # each owed ack written once, waiting in Sent

    desk.relay.start()
    desk.mail_from(SENDERS[6])  # and mail keeps coming as the relay comes back
    for _ in range(3):
        desk.cycle()
    # Seven messages in: seven calls, seven acknowledgements relayed, each once, none more.
    assert_each_answered_once(desk, SENDERS[:7])


def test_a_new_uidvalidity_during_a_relay_outage_loses_and_repeats_nothing(desk: Desk) -> None:
    desk.mail_from(SENDERS[0])
    desk.cycle()  # answered while the relay is up
    assert desk.acks() == Counter({SENDERS[0]: 1})

    desk.relay.stop()
    desk.mail_from(SENDERS[1])
    desk.mail_from(SENDERS[2])
    desk.cycle()  # two calls, their acks owed (pending in Sent)
    assert desk.call_roots() == sorted(desk.delivered)

    desk.move()  # every UID new while two acks are owed
    desk.mail_from(SENDERS[3])
    desk.cycle()
    desk.cycle()
    assert desk.call_roots() == sorted(desk.delivered), "the resync made or lost a call"
    assert len(desk.relay.messages) == 1

    desk.relay.start()
    for _ in range(3):
        desk.cycle()
    # Four messages in: four calls; four acks, each relayed once (the first before the move).
    assert_each_answered_once(desk, SENDERS[:4])
