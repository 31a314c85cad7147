"""Flag changes through CONDSTORE (RFC 7162): on Dovecot, which offers it, the pending mark is
read by ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE n)`` only when the folder's HIGHESTMODSEQ moved,
and not at all when it did not; on pymap, which does not offer it, by a search as before.

Every IMAP command the client sends is recorded with its arguments, so the tests see which
way each answer was found, and that no header or message was fetched on the way.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from typing import Any

import pytest
from email_harness import ImapHarness, customer_mail, read, relay
from email_servers import DovecotServer, FaultPlan, PymapServer, SmtpServer

from usm_bridge_email import EmailConnector
from usm_bridge_email.condstore import MarkedSince, flag_changes, offers_condstore
from usm_bridge_email.stores import PENDING_KEYWORD, ImapStore


@pytest.fixture
def sent_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every IMAP command sent while the test runs, as one line (name and arguments)."""
    sent: list[str] = []
    real = imaplib.IMAP4._command

    def command(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
        sent.append(" ".join([name, *(a if isinstance(a, str) else repr(a) for a in args)]))
        return real(self, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", command)
    return sent


def store_on(harness: ImapHarness, port: int) -> ImapStore:
    return ImapStore(
        host="127.0.0.1",
        port=port,
        security="plain",
        username="demouser",
        password="demopass",
        folders={"inbox": harness.inbox, "sent": harness.sent},
        timeout=10,
    )


@pytest.fixture
def dovecot_desk(
    dovecot_server: DovecotServer, smtp_server: SmtpServer
) -> Iterator[tuple[ImapHarness, ImapStore]]:
    """Folders of their own on Dovecot, three copies in Sent (the second pending), and the
    bridge's store on them (reached without the fault proxy)."""
    harness = ImapHarness(dovecot_server, dovecot_server.port, smtp_server, FaultPlan())
    for n in range(3):
        _, raw = customer_mail(f"Answer {n}", "Noted.")
        flags = f"(\\Seen {PENDING_KEYWORD})" if n == 1 else "(\\Seen)"
        status, _ = harness.client.append(harness.sent, flags, None, raw)
        assert status == "OK"
    store = store_on(harness, dovecot_server.port)
    try:
        yield harness, store
    finally:
        store.close()
        harness.close()


def look(store: ImapStore) -> list[int]:
    """What the connector does each read: list the Sent folder, then ask which are pending."""
    store.validity("inbox")  # another folder in between, as in a read: Sent is selected anew
    store.validity("sent")
    store.list_since("sent", 3)
    return store.pending("sent")


def other_client(harness: ImapHarness, *command: str) -> None:
    """Another client (a person's mail program, another bridge process) stores flags."""
    harness.client.select(f'"{harness.sent}"')
    status, _ = harness.client.uid("STORE", *command)
    assert status == "OK"


def fetches(sent: list[str]) -> list[str]:
    return [line for line in sent if line.startswith(("FETCH", "UID FETCH"))]


def test_dovecot_offers_condstore_and_a_changed_mark_is_read_by_changedsince(
    dovecot_desk: tuple[ImapHarness, ImapStore], sent_commands: list[str]
) -> None:
    harness, store = dovecot_desk
    assert store._condstore, "Dovecot's LOGIN reply lists CONDSTORE"
    assert look(store) == [2]  # the first look searches for the mark once
    assert any("SEARCH KEYWORD" in line for line in sent_commands)

    sent_commands.clear()
    assert look(store) == [2]  # nothing changed: HIGHESTMODSEQ says so, nothing is asked
    assert fetches(sent_commands) == [] and not any("KEYWORD" in c for c in sent_commands)

    other_client(harness, "2", "-FLAGS", f"({PENDING_KEYWORD})")  # finished elsewhere
    other_client(harness, "3", "+FLAGS", f"({PENDING_KEYWORD})")  # marked elsewhere
    sent_commands.clear()
    assert look(store) == [3]
    [fetch] = fetches(sent_commands)
    assert "1:* (FLAGS) (CHANGEDSINCE" in fetch, fetch
    assert not any("KEYWORD" in line for line in sent_commands), "searched for the mark"

    other_client(harness, "1", "-FLAGS", "(\\Seen)")  # a person marks a copy unread
    sent_commands.clear()
    assert look(store) == [3]  # a change, read by CHANGEDSINCE, that moves no mark
    [fetch] = fetches(sent_commands)
    assert "CHANGEDSINCE" in fetch and "BODY" not in fetch

    sent_commands.clear()
    assert look(store) == [3]
    assert fetches(sent_commands) == []


def test_the_bridges_own_marks_keep_the_known_marks_right(
    dovecot_desk: tuple[ImapHarness, ImapStore],
) -> None:
    """Appending a pending copy, finishing one and deleting one change the marks known, so
    an answer straight after (with no SELECT between) is right as well."""
    _, store = dovecot_desk
    assert look(store) == [2]
    _, raw = customer_mail("Answer 4", "Noted.")
    uid = store.append("sent", raw, pending=True)
    assert uid == 4 and store.pending("sent") == [2, 4]
    store.mark_sent("sent", 2)
    assert store.pending("sent") == [4]
    store.delete("sent", 4)
    assert store.pending("sent") == []
    assert look(store) == []  # and as the server has it


def test_a_new_uidvalidity_forgets_the_marks_known(
    dovecot_server: DovecotServer, dovecot_desk: tuple[ImapHarness, ImapStore]
) -> None:
    harness, store = dovecot_desk
    assert look(store) == [2]
    store.close()
    dovecot_server.recreate(harness.inbox, harness.sent)  # emptied, a new UIDVALIDITY
    _, raw = customer_mail("Answer", "Noted.")
    harness.client.logout()
    harness.client = dovecot_server.client()
    status, _ = harness.client.append(harness.sent, "(\\Seen)", None, raw)
    assert status == "OK"
    fresh = store_on(harness, dovecot_server.port)
    fresh._marked = store._marked  # as if the same connection lived through the move
    fresh._validity = store._validity
    try:
        fresh.validity("sent")
        assert fresh.pending("sent") == []
    finally:
        fresh.close()


def test_pymap_offers_no_condstore_and_the_mark_is_searched_for(
    pymap_server: PymapServer, smtp_server: SmtpServer, sent_commands: list[str]
) -> None:
    harness = ImapHarness(pymap_server, pymap_server.port, smtp_server, FaultPlan())
    store = store_on(harness, pymap_server.port)
    try:
        assert not store._condstore
        _, raw = customer_mail("Answer", "Noted.")
        uid = store.append("sent", raw, pending=True)  # marked as pymap can keep it
        for _ in range(2):
            sent_commands.clear()
            assert store.pending("sent") == [uid]
            assert not any("CONDSTORE" in c or "CHANGEDSINCE" in c for c in sent_commands)
            assert any(line.startswith("UID SEARCH") for line in sent_commands), sent_commands
    finally:
        store.close()
        harness.close()


def test_a_running_connector_on_dovecot_reads_quietly_without_searching_for_marks(
    dovecot_server: DovecotServer, smtp_server: SmtpServer, sent_commands: list[str]
) -> None:
    """The connector's quiet read on Dovecot: a SELECT and a UID SEARCH per folder, and no
    question about pending marks at all (pymap needs a search for them)."""
    harness = ImapHarness(dovecot_server, dovecot_server.port, smtp_server, FaultPlan())
    connector = harness.make_connector(smtp=relay(smtp_server))
    assert isinstance(connector, EmailConnector)
    try:
        harness.seed(4)
        _, cursor = read(connector)
        read(connector, cursor)  # the acknowledgements' own marks are read once
        sent_commands.clear()
        records, again = read(connector, cursor)
        assert records == [] and again == cursor
        names = [line.split(" (")[0].split(" ")[0] for line in sent_commands]
        assert names == ["SELECT", "UID", "SELECT", "UID"], sent_commands
        assert all("SEARCH UID" in c for c in sent_commands if c.startswith("UID")), sent_commands
    finally:
        connector.close()
        harness.close()


def test_condstore_is_read_from_the_login_reply_and_changes_from_the_fetch() -> None:
    before = ("IMAP4REV1", "AUTH=PLAIN")
    login = [b"[CAPABILITY IMAP4rev1 SASL-IR CONDSTORE QRESYNC ENABLE] Logged in"]
    assert offers_condstore(login, [], before)  # in the reply text
    assert offers_condstore([b"Logged in"], [b"IMAP4rev1 ENABLE CONDSTORE"], before)  # filed
    assert offers_condstore([b"Logged in"], [], ("IMAP4REV1", "QRESYNC"))  # before login
    assert not offers_condstore([b"Logged in"], [], ("IMAP4REV1", "IDLE"))
    # What the login said replaces what was said before it (pymap: no CONDSTORE either way).
    assert not offers_condstore([b"[CAPABILITY IMAP4rev1 IDLE] ok"], [], ("CONDSTORE",))
    fetched = [
        b"2 (UID 7 MODSEQ (41) FLAGS (\\Seen $USMPending))",
        (b"3 (UID 9 FLAGS (\\Seen) MODSEQ (44))", b""),
        b"garbage without a uid",
    ]
    changes = flag_changes(fetched)
    assert changes == {
        7: (41, frozenset({"\\seen", "$usmpending"})),
        9: (44, frozenset({"\\seen"})),
    }
    marked = MarkedSince(40, {9})
    marked.apply(changes, PENDING_KEYWORD)
    assert marked == MarkedSince(44, {7})
