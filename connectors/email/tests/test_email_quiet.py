"""A quiet cycle costs nothing: a read with nothing new fetches no header and no message, and
asks the mailbox a small, fixed number of questions, whether the connector has read the mailbox
before (a running daemon) or not (a new process starting from the saved cursor).

Counted twice: at the connector's store (which operations, how many headers and messages they
returned: both backends) and, on IMAP, at the protocol (every command the client sends). pymap
offers neither CONDSTORE nor QRESYNC: on it these IMAP tests are the path of a server without
them, new mail by ``UID SEARCH UID n:*``, the pending mark by a search for it. Dovecot offers
both: there the pending mark is asked only when the folder's HIGHESTMODSEQ moved (see
test_email_condstore.py).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from email_harness import ImapHarness, MaildirHarness, customer_mail, read, relay
from email_servers import DovecotServer, FaultPlan, ImapServer, SmtpServer
from usm_bridge.testing import Fault

from usm_bridge_email import EmailConnector
from usm_bridge_email.stores import FolderRole, MaildirStore, MailStore, StoredHeader

#: The most IMAP commands a quiet read may send: per folder a SELECT, a NOOP and a UID SEARCH,
#: one search for pending copies, and a new process's CAPABILITY and LOGIN.
MOST_COMMANDS = 9
SEEDED = 12


class CountingStore:
    """A store that counts what the connector asks of it and what it gets back."""

    def __init__(self, inner: MailStore) -> None:
        self.inner = inner
        self.where = inner.where
        self.calls: Counter[str] = Counter()
        self.headers = 0
        self.messages = 0

    def validity(self, role: FolderRole) -> int:
        self.calls["validity"] += 1
        return self.inner.validity(role)

    def list_since(self, role: FolderRole, uid: int) -> list[StoredHeader]:
        self.calls["list_since"] += 1
        found = self.inner.list_since(role, uid)
        self.headers += len(found)
        return found

    def uids(self, role: FolderRole) -> list[int]:
        self.calls["uids"] += 1
        return self.inner.uids(role)

    def pending(self, role: FolderRole) -> list[int]:
        self.calls["pending"] += 1
        return self.inner.pending(role)

    def fetch(self, role: FolderRole, uids: list[int]) -> dict[int, bytes]:
        self.calls["fetch"] += 1
        found = self.inner.fetch(role, uids)
        self.messages += len(found)
        return found

    def open_message(
        self, role: FolderRole, uid: int
    ) -> contextlib.AbstractContextManager[BinaryIO | None]:
        self.calls["open_message"] += 1
        return self.inner.open_message(role, uid)

    def append(self, role: FolderRole, raw: bytes, *, pending: bool) -> int | None:
        self.calls["append"] += 1
        return self.inner.append(role, raw, pending=pending)

    def mark_sent(self, role: FolderRole, uid: int) -> None:
        self.calls["mark_sent"] += 1
        self.inner.mark_sent(role, uid)

    def delete(self, role: FolderRole, uid: int) -> None:
        self.calls["delete"] += 1
        self.inner.delete(role, uid)

    def close(self) -> None:
        self.inner.close()


def counted(connector: EmailConnector) -> CountingStore:
    """Put a counting store under ``connector`` (opening its mailbox now)."""
    store = CountingStore(connector._open())
    connector._store = store
    return store


@pytest.fixture
def imap_commands(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every IMAP command any client sends while the test runs (``UID FETCH`` and the like
    counted under their own names)."""
    sent: Counter[str] = Counter()
    real = imaplib.IMAP4._command

    def command(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
        sent[f"UID {args[0]}" if name == "UID" and args else name] += 1
        return real(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", command)
    return sent


class Desk:
    """A mailbox with a relay, on a Maildir or on pymap."""

    def __init__(
        self, harness: MaildirHarness | ImapHarness, smtp: SmtpServer, relay_plan: FaultPlan
    ) -> None:
        self.harness, self.smtp, self.relay_plan = harness, smtp, relay_plan
        self.made: list[EmailConnector] = []

    @property
    def imap(self) -> bool:
        return isinstance(self.harness, ImapHarness)

    @property
    def condstore(self) -> bool:
        """Whether the mailbox is on a server offering CONDSTORE (Dovecot; not pymap)."""
        return isinstance(self.harness, ImapHarness) and isinstance(
            self.harness.imap, DovecotServer
        )

    @contextlib.contextmanager
    def relay_refusing(self) -> Iterator[None]:
        """The relay refuses every mail of the block for now (``451``): the block's read goes on
        (a refusal never blocks intake) with its acknowledgement written and still pending."""
        self.relay_plan.add(Fault.SERVER_ERROR, 40)  # more than one read's retries
        try:
            yield
        finally:
            self.relay_plan.clear()

    def connector(self) -> EmailConnector:
        """A new connector: a new process of the bridge on the same mailbox."""
        made = self.harness.make_connector(smtp=relay(self.smtp))
        assert isinstance(made, EmailConnector)
        self.made.append(made)
        return made


@pytest.fixture(params=["maildir", "imap", "dovecot"])
def desk(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: SmtpServer,
    fault_plan: FaultPlan,
) -> Iterator[Desk]:
    # The shared fault plan is the relay's; the mailbox is reached without the faulty proxy.
    harness: MaildirHarness | ImapHarness
    if request.param == "maildir":
        harness = MaildirHarness(tmp_path)
    else:
        server: ImapServer = request.getfixturevalue(
            f"{request.param.replace('imap', 'pymap')}_server"
        )
        harness = ImapHarness(server, server.port, smtp_server, FaultPlan())
    made = Desk(harness, smtp_server, fault_plan)
    try:
        yield made
    finally:
        fault_plan.clear()
        for connector in made.made:
            connector.close()
        harness.close()


def assert_quiet(store: CountingStore, commands: Counter[str], desk: Desk, *, most: int) -> None:
    assert store.headers == 0 and store.messages == 0, (store.headers, store.messages)
    assert store.calls["fetch"] == 0 and store.calls["append"] == 0, store.calls
    if desk.imap:
        assert commands["UID FETCH"] == commands["FETCH"] == 0, commands
        assert sum(commands.values()) <= most, commands


def test_a_quiet_read_of_a_running_connector_fetches_nothing(
    desk: Desk, imap_commands: Counter[str]
) -> None:
    roots = desk.harness.seed(SEEDED)
    connector = desk.connector()
    records, cursor = read(connector)
    assert sorted(r.remote_id for r in records) == sorted(roots)
    relayed = len(desk.smtp.messages)
    if desk.condstore:
        # The first read changed marks itself (its acknowledgements, sent): the folder's
        # HIGHESTMODSEQ moved, and the next read reads those changes back, flags only.
        store = counted(connector)
        imap_commands.clear()
        assert read(connector, cursor) == ([], cursor)
        assert store.headers == store.messages == 0
        assert imap_commands["UID FETCH"] == 1, (
            imap_commands
        )  # UID FETCH 1:* (FLAGS) (CHANGEDSINCE n)

    for _ in range(3):  # every quiet cycle costs the same: nothing piles up
        store = counted(connector)
        imap_commands.clear()
        records, again = read(connector, cursor)
        assert records == [] and again == cursor
        assert_quiet(store, imap_commands, desk, most=MOST_COMMANDS - 2)  # no new login
    assert len(desk.smtp.messages) == relayed


def test_a_quiet_read_of_a_new_process_fetches_nothing(
    desk: Desk, imap_commands: Counter[str]
) -> None:
    desk.harness.seed(SEEDED)
    _, cursor = read(desk.connector())
    relayed = len(desk.smtp.messages)

    fresh = desk.connector()
    imap_commands.clear()
    store = counted(fresh)
    records, again = read(fresh, cursor)
    assert records == [] and again == cursor
    assert_quiet(store, imap_commands, desk, most=MOST_COMMANDS)
    assert fresh._folders == {}, "the quiet read built the header index"
    assert len(desk.smtp.messages) == relayed


def test_a_new_process_reads_what_came_after_a_quiet_read(desk: Desk) -> None:
    """The quiet answer is no shortcut past news: mail that arrives next is read, threaded
    into its call, by a new process and by the one that answered quietly."""
    roots = desk.harness.seed(4)
    _, cursor = read(desk.connector())
    quiet = desk.connector()
    _, cursor = read(quiet, cursor)
    _, raw = customer_mail("Re: stuck", "Still stuck.", in_reply_to=roots[2])
    desk.harness.deliver(raw)

    for connector in (desk.connector(), quiet):
        records, after = read(connector, cursor)
        assert [r.remote_id for r in records] == [roots[2]]
        replies = records[0].data["replies"]
        assert isinstance(replies, list)
        assert "Still stuck." in json.dumps(replies)
        assert after != cursor
    assert read(quiet, after)[0] == []


def test_an_old_cursor_loads_and_reads_quietly(desk: Desk) -> None:
    """The cursor keeps its shape (UIDVALIDITY and last UID per folder): one written before,
    spelled as JSON any way, still loads."""
    desk.harness.seed(3)
    connector = desk.connector()
    _, cursor = read(connector)
    state = json.loads(cursor)
    old = json.dumps({"sent": state["sent"], "inbox": state["inbox"]}, indent=1)
    store = counted(fresh := desk.connector())
    records, again = read(fresh, old)
    assert records == [] and json.loads(again) == state
    assert store.headers == 0


def test_a_pending_copy_makes_a_new_process_read_and_send_it(desk: Desk) -> None:
    """A copy left pending (the relay refused for now) is no quiet mailbox: the next process
    finishes it, once."""
    desk.harness.seed(1)
    _, cursor = read(desk.connector())  # acknowledged: the cursor is past everything
    root, raw = customer_mail("Lamp broken", "The lamp in room 4 is broken.")
    desk.harness.deliver(raw)
    with desk.relay_refusing():
        read(desk.connector(), cursor)  # the ack is written, pending; the read goes on
    before = len(desk.smtp.messages)
    records, _ = read(desk.connector(), cursor)
    assert [r.remote_id for r in records] == [root]
    sent = [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _, _, raw in desk.smtp.messages[before:]
    ]
    assert [m["X-USM-Kind"] for m in sent] == ["ack"]


def test_a_copy_another_process_finished_is_not_sent_again(desk: Desk) -> None:
    """Two processes on one mailbox (a daemon, and a ``sync`` run by hand): the daemon's index
    holds a copy as pending when the other process sends it and clears its mark. The daemon
    learns the mark is gone from the server and does not send the copy a second time."""
    desk.harness.seed(1)
    daemon = desk.connector()
    _, cursor = read(daemon)
    root, raw = customer_mail("Lamp broken", "The lamp in room 4 is broken.")
    desk.harness.deliver(raw)
    with desk.relay_refusing():
        read(daemon, cursor)  # the daemon's ack stays pending
    pending = [e for e in daemon._folders["sent"].entries.values() if e.pending]
    assert len(pending) == 1

    before = len(desk.smtp.messages)
    read(desk.connector(), cursor)  # by hand: sends the ack, clears its mark
    records, _ = read(daemon, cursor)
    assert [r.remote_id for r in records] == [root]
    acks = [
        str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])
        for _, _, raw in desk.smtp.messages[before:]
    ]
    assert acks == [pending[0].head.message_id], acks


def age(folder: Path, seconds: float) -> None:
    """Date a Maildir folder's ``new`` and ``cur`` back, as a folder still for a while is."""
    when = time.time() - seconds
    for sub in ("new", "cur"):
        os.utime(folder / sub, (when, when))


def test_a_still_maildir_is_not_scanned_again_and_any_change_is_seen(tmp_path: Path) -> None:
    """A Maildir folder untouched since the last look is taken from memory (a quiet read of a
    large one costs a few ``stat`` calls); a mail delivered, a flag changed or the uid list
    rewritten by another process each make the next look scan again."""
    harness = MaildirHarness(tmp_path)
    harness.seed(3)
    store = MaildirStore({"inbox": harness.inbox_path, "sent": harness.outbox_path})
    other = MaildirStore({"inbox": harness.inbox_path, "sent": harness.outbox_path})
    age(harness.inbox_path, 60)
    assert store.uids("inbox") == [1, 2, 3]
    scans: list[Path] = []
    real = MaildirStore._files

    def files(self: MaildirStore, path: Path) -> dict[str, Path]:
        scans.append(path)
        return real(self, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MaildirStore, "_files", files)
        assert store.list_since("inbox", 3) == [] and store.pending("inbox") == []
        assert scans == [], "a still folder was scanned again"

        _, raw = customer_mail("Window", "The window does not close.")
        harness.deliver(raw)
        age(harness.inbox_path, 50)  # delivered, and still again since: another time
        assert [h.uid for h in store.list_since("inbox", 3)] == [4]
        assert len(scans) == 1

        other.append("inbox", raw, pending=True)  # a flag in the name: a pending copy
        age(harness.inbox_path, 40)
        assert store.pending("inbox") == [5]
        other.mark_sent("inbox", 5)
        age(harness.inbox_path, 30)
        assert store.pending("inbox") == []

        validity = store.validity("inbox")
        (harness.inbox_path / ".usm-uidlist").unlink()
        other.uids("inbox")  # another process writes a new uid list: a new UIDVALIDITY
        assert store.validity("inbox") != validity
        assert store.uids("inbox") == [1, 2, 3, 4, 5]


def test_mail_that_arrives_while_the_inbox_stays_selected_is_read(
    desk: Desk, imap_commands: Counter[str]
) -> None:
    """The NOOP a quiet read saves is only the one straight after a SELECT: a folder left
    selected between reads (pymap shows such a session its folder as it was) is still asked
    for what arrived meanwhile."""
    roots = desk.harness.seed(2)
    connector = desk.connector()
    _, cursor = read(connector)
    store = connector._open()
    store.uids("sent")
    store.uids("inbox")  # the inbox is left selected, as after a read that ends fetching mail
    _, raw = customer_mail("Re: stuck", "Still stuck.", in_reply_to=roots[1])
    desk.harness.deliver(raw)
    imap_commands.clear()
    records, _ = read(connector, cursor)
    assert [r.remote_id for r in records] == [roots[1]]
    if desk.condstore:  # selected again instead: a SELECT answers the HIGHESTMODSEQ too
        assert imap_commands["NOOP"] == 0 and imap_commands["SELECT"] >= 1, imap_commands
    elif desk.imap:
        assert imap_commands["NOOP"] == 1, imap_commands
