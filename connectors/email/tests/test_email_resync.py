"""A new UIDVALIDITY (the mailbox moved to a new server, or was rebuilt) means a resync that
yields the same threads again, with the same ids, and never a duplicate call, comment or mail."""

from __future__ import annotations

from pathlib import Path

from email_harness import ImapHarness, MaildirHarness, customer_mail, empty_on_a_new_server
from email_servers import FaultPlan, ImapServer, SmtpServer
from usm_bridge.connector import Checkpoint, RawRecord

from usm_bridge_email import EmailConnector


def read(connector: EmailConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [i for i in items if isinstance(i, RawRecord)], items[-1].cursor


def shape(records: list[RawRecord]) -> dict[str, list[str]]:
    """Each thread id with the ids of its comments (replies), as the store would key them."""
    found: dict[str, list[str]] = {}
    for record in records:
        replies = record.data.get("replies") or []
        assert isinstance(replies, list)
        found[record.remote_id] = sorted(str(r["message_id"]) for r in replies)  # type: ignore[index, call-overload]
    return found


def test_new_uidvalidity_resyncs_without_duplicates(
    moving_server: ImapServer, smtp_server: SmtpServer
) -> None:
    harness = ImapHarness(moving_server, moving_server.port, smtp_server, FaultPlan())
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector)
    try:
        roots = harness.seed(3)
        harness.touch(roots[0])
        first, cursor = read(connector, None)
        before = shape(first)
        assert set(before) == set(roots)
        assert all(len(replies) >= 1 for replies in before.values())  # acks, and one reply
        inbox, sent = harness.raw_messages(harness.inbox), harness.raw_messages(harness.sent)
        validity = connector._folders["inbox"].validity
        mails_sent = len(smtp_server.messages)

        # The server is replaced: same messages, new UIDs, new UIDVALIDITY.
        empty_on_a_new_server(moving_server, harness)
        for raw in reversed(inbox):  # even in another order
            harness.deliver(raw)
        for raw in sent:
            harness.deliver(raw, harness.sent)

        again, cursor = read(connector, cursor)  # the old connection died: reconnects
        assert connector._folders["inbox"].validity != validity
        assert shape(again) == before, "the resync changed threads or their comments"
        assert len(again) == len({r.remote_id for r in again}), "a thread was yielded twice"
        assert len(smtp_server.messages) == mails_sent, "the resync answered someone again"
        quiet, _ = read(connector, cursor)
        assert quiet == []
    finally:
        connector.close()
        harness.close()


def test_a_reset_maildir_uid_list_resyncs_without_duplicates(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector)
    roots = harness.seed(4)
    first, cursor = read(connector, None)
    (harness.inbox_path / ".usm-uidlist").unlink()  # a new UIDVALIDITY for the inbox
    _, raw = customer_mail("Re: door", "Fixed, thanks.", in_reply_to=roots[1])
    harness.deliver(raw)
    again, _ = read(connector, cursor)
    assert {r.remote_id for r in again} == set(roots)
    assert len(again) == len(roots)
    before, after = shape(first), shape(again)
    assert all(set(before[root]) <= set(after[root]) for root in roots)
    assert len(after[roots[1]]) == len(before[roots[1]]) + 1
