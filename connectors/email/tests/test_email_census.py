"""The census listing of the e-mail connector: ``remote_ids()`` is the thread ids (first
Message-IDs) the mailbox holds, on the Maildir store and over IMAP."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from email_harness import ImapHarness, MaildirHarness, customer_mail
from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import RemoteError
from usm_bridge.testing import Fault

from usm_bridge_email import EmailConnector


@pytest.fixture
def maildir(tmp_path: Path) -> MaildirHarness:
    return MaildirHarness(tmp_path)


@pytest.fixture(params=["imap_harness", "dovecot_harness"])
def imap(request: pytest.FixtureRequest) -> ImapHarness:
    """A mailbox on pymap, or on Dovecot (a real server expunges for good)."""
    harness: ImapHarness = request.getfixturevalue(request.param)
    return harness


def _connector(harness: MaildirHarness | ImapHarness) -> EmailConnector:
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector)
    return connector


def _read_all(connector: EmailConnector) -> list[str]:
    return [item.remote_id for item in connector.read_changes(None) if isinstance(item, RawRecord)]


def _remove(box: mailbox.Maildir, message_id: str) -> None:
    for key, message in list(box.items()):
        if message["Message-ID"] == message_id:
            box.remove(key)
            return
    raise AssertionError(f"{message_id} not in the Maildir")


def test_lists_every_thread_by_its_first_message_id(maildir: MaildirHarness) -> None:
    roots = maildir.seed(4)
    _, reply = customer_mail("Re: door", "Still stuck.", in_reply_to=roots[1])
    maildir.deliver(reply)  # a reply is part of its thread, not a thread of its own
    connector = _connector(maildir)
    assert sorted(connector.remote_ids()) == sorted(roots)
    try:
        assert sorted(set(_read_all(connector))) == sorted(roots)  # the ids records carry
        assert sorted(connector.remote_ids()) == sorted(roots)  # the index it keeps agrees
    finally:
        connector.close()


def test_an_empty_mailbox_lists_nothing(maildir: MaildirHarness) -> None:
    connector = _connector(maildir)
    try:
        assert list(connector.remote_ids()) == []
    finally:
        connector.close()


def test_a_deleted_thread_disappears_from_the_listing(maildir: MaildirHarness) -> None:
    roots = maildir.seed(4)
    connector = _connector(maildir)
    try:
        for item in connector.read_changes(None):  # the index knows every message now
            assert isinstance(item, RawRecord | Checkpoint)
        assert sorted(connector.remote_ids()) == sorted(roots)
        _remove(maildir.inbox, roots[2])
        listed = set(connector.remote_ids())
        # Its acknowledgement stays in the outbox (listed or not, it marks nothing); the
        # customer's thread is gone, every other one is still there.
        assert roots[2] not in listed
        assert listed >= set(roots) - {roots[2]}
        assert all(r.endswith("@hr.example>") for r in listed - set(roots))
    finally:
        connector.close()


def test_a_fault_while_listing_raises(maildir: MaildirHarness) -> None:
    maildir.seed(3)
    connector = _connector(maildir)
    try:
        maildir.inject_fault(Fault.SERVER_ERROR, times=50)  # beyond max_attempts
        with pytest.raises(RemoteError):
            list(connector.remote_ids())
        maildir.plan.clear()
        assert len(list(connector.remote_ids())) == 3
    finally:
        connector.close()


def test_over_imap_a_deleted_thread_disappears(imap: ImapHarness) -> None:
    roots = imap.seed(3)
    connector = _connector(imap)
    try:
        assert sorted(connector.remote_ids()) == sorted(roots)
        client = imap.imap.client()
        try:
            client.select(imap.inbox)
            _, found = client.search(None, "HEADER", "Message-ID", roots[0])
            for number in found[0].split():
                client.store(number.decode(), "+FLAGS", "\\Deleted")
            client.expunge()
        finally:
            client.logout()
        assert sorted(connector.remote_ids()) == sorted(roots[1:])
    finally:
        connector.close()


def test_over_imap_a_fault_while_listing_raises(imap: ImapHarness) -> None:
    imap.seed(2)
    connector = _connector(imap)
    try:
        imap.inject_fault(Fault.UNAVAILABLE, times=50)
        with pytest.raises(RemoteError):
            list(connector.remote_ids())
    finally:
        imap.plan.clear()
        connector.close()
