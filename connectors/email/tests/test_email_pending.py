"""Pending copies: a mail the bridge decided to send reaches the relay exactly once by
Message-ID, whatever cut its first sending short.

A kill is a :class:`Killed` (a ``BaseException``, so nothing in the connector catches it)
raised from SMTP's send, before the relay got the message or just after it took it; then a
fresh connector, a new process, works on the same mailbox. A relay that refuses for now is the
shared fault plan's ``451 4.3.0``. Both on a Maildir and on IMAP (pymap), with aiosmtpd.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import email.utils
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from email_harness import ImapHarness, MaildirHarness, customer_mail, read, relay, replies
from email_servers import FaultPlan, ImapServer, SmtpServer
from usm_bridge.connector import CommentDraft, RawRecord, RemoteDraft
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.testing import Fault

from usm_bridge_email import EmailConnector
from usm_bridge_email.plugin import dead_letter_reason
from usm_bridge_email.smtp import SmtpSender
from usm_bridge_email.stores import PENDING_FALLBACK, PENDING_KEYWORD, _pending_mark

ANN = "ann@customer.example"
SUPPLIER = "orders@supplier.example"
#: More 451s than one read or write tries (4 reconnects of 4 sends each, and IMAP connects).
REFUSALS = 40


class Killed(BaseException):
    """SIGKILL, as far as the code under test can tell: nothing after it runs."""


@contextlib.contextmanager
def killed_in_send(*, relay_took_it: bool = False) -> Iterator[None]:
    """The process dies in the first SMTP send made inside the block: before the relay got the
    message, or (``relay_took_it``) just after it took it, before the mark was cleared."""
    real = SmtpSender.send

    def send(self: SmtpSender, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        if relay_took_it:
            real(self, raw, sender, recipients)
        raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmtpSender, "send", send)
        with pytest.raises(Killed):
            yield


class Box:
    """One mailbox with an SMTP relay, on a Maildir or on IMAP, seen as a person would."""

    def __init__(
        self, harness: MaildirHarness | ImapHarness, smtp: SmtpServer, plan: FaultPlan
    ) -> None:
        self.harness, self.smtp, self.plan = harness, smtp, plan
        self.start = len(smtp.messages)
        self._made: list[EmailConnector] = []

    def connector(self, **overrides: Any) -> EmailConnector:
        """A new connector: a new process on the same mailbox (the last one's is abandoned)."""
        overrides.setdefault("smtp", relay(self.smtp))
        made = self.harness.make_connector(**overrides)
        assert isinstance(made, EmailConnector)
        self._made.append(made)
        return made

    def deliver(self, raw: bytes) -> None:
        self.harness.deliver(raw)

    @contextlib.contextmanager
    def refusing_for_now(self) -> Iterator[None]:
        """The relay refuses every mail of the block for now (``451 4.3.0``), so the block's
        write fails to be retried; afterwards it takes mail again."""
        self.plan.add(Fault.SERVER_ERROR, REFUSALS)
        try:
            with pytest.raises(RetriableRemoteError):
                yield
        finally:
            self.plan.clear()

    def relayed(self, address: str | None = None) -> list[email.message.EmailMessage]:
        """What the relay took since the test began (to ``address`` only, if given)."""
        return [
            email.message_from_bytes(raw, policy=email.policy.default)
            for _, rcpts, raw in self.smtp.messages[self.start :]
            if address is None or address in rcpts
        ]

    def relayed_ids(self, address: str | None = None) -> Counter[str]:
        """How often the relay took each Message-ID."""
        return Counter(str(m["Message-ID"]) for m in self.relayed(address))

    def copies(self) -> dict[str, bool]:
        """Each copy in the Sent folder (outbox): Message-ID -> still pending."""
        found: dict[str, bool] = {}
        if isinstance(self.harness, MaildirHarness):
            for sub in ("new", "cur"):
                folder = self.harness.outbox_path / sub
                for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                    message = email.message_from_bytes(path.read_bytes())
                    pending = "D" in path.name.rpartition(":2,")[2]
                    found[str(message["Message-ID"])] = pending
            return found
        client = self.harness.client
        client.select(f'"{self.harness.sent}"')
        _, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for item in data:
            if isinstance(item, tuple):
                message = email.message_from_bytes(item[1])
                flags = item[0].lower()  # the mark: a keyword, or \Draft where none is kept
                pending = b"$usmpending" in flags or b"\\draft" in flags
                found[str(message["Message-ID"])] = pending
        return found

    def close(self) -> None:
        for made in self._made:
            with contextlib.suppress(Exception):
                made.close()


@pytest.fixture(params=["maildir", "imap", "dovecot"])
def box(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: SmtpServer,
    fault_plan: FaultPlan,
) -> Iterator[Box]:
    # The shared fault plan is the relay's: the mailbox itself (the Maildir's file system, the
    # IMAP server, reached without the faulty proxy) never fails here.
    harness: MaildirHarness | ImapHarness
    if request.param == "maildir":
        harness = MaildirHarness(tmp_path)
    else:
        server: ImapServer = request.getfixturevalue(
            f"{request.param.replace('imap', 'pymap')}_server"
        )
        harness = ImapHarness(server, server.port, smtp_server, FaultPlan())
    made = Box(harness, smtp_server, fault_plan)
    try:
        yield made
    finally:
        fault_plan.clear()
        made.close()
        harness.close()


def thread_record(records: list[RawRecord], root: str) -> RawRecord:
    [record] = [r for r in records if r.remote_id == root]
    return record


def kinds(record: RawRecord) -> list[str]:
    return [str(r["kind"]) for r in replies(record) if r["direction"] == "out"]


def settled(box: Box) -> None:
    """Every copy kept reached the relay, each once, and none is pending any more."""
    copies = box.copies()
    assert not any(copies.values()), copies
    assert box.relayed_ids() == Counter(set(copies)), (box.relayed_ids(), copies)


def open_call(box: Box, connector: EmailConnector) -> tuple[str, str]:
    """Ann's mail, read and acknowledged; its root Message-ID and the cursor after it."""
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    box.deliver(raw)
    records, cursor = read(connector)
    assert kinds(thread_record(records, root)) == ["ack"]
    return root, cursor


# -- a kill between the copy and the relay -----------------------------------------------------


def test_a_killed_acknowledgement_is_sent_by_the_next_read(box: Box) -> None:
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    box.deliver(raw)
    with killed_in_send():
        read(box.connector())
    assert list(box.copies().values()) == [True] and box.relayed() == []

    records, _ = read(box.connector())
    record = thread_record(records, root)
    assert kinds(record) == ["ack"] and record.remote_key == "HR-1"
    [ack] = box.relayed(ANN)
    assert ack["X-USM-Kind"] == "ack" and "[HR-1]" in str(ack["Subject"])
    read(box.connector())  # and again: nothing more
    settled(box)
    assert len(box.relayed()) == 1


@pytest.mark.parametrize("next_step", ["read", "retry"])
def test_a_killed_status_announcement_reaches_the_customer_once(box: Box, next_step: str) -> None:
    root, cursor = open_call(box, box.connector())
    draft = RemoteDraft(status="fulfilled", fields={"body": "A new badge is at reception."})
    with killed_in_send():
        box.connector().update(root, draft)

    again = box.connector()
    if next_step == "read":  # the next cycle reads first ...
        [record], _ = read(again, cursor)
        assert record.data["status"] == "fulfilled"
    again.update(root, draft)  # ... then the engine retries the update, which says nothing new
    [record], _ = read(box.connector(), cursor)
    assert record.data["status"] == "fulfilled"
    assert kinds(record) == ["ack", "confirmation-request"]
    [request] = [m for m in box.relayed(ANN) if m["X-USM-Kind"] != "ack"]
    assert request["X-USM-Status"] == "fulfilled" and "reception" in request.get_content()
    settled(box)


def test_a_killed_announcement_of_an_agents_command_is_sent_by_the_next_read(box: Box) -> None:
    root, cursor = open_call(box, box.connector(agents=["hilda@hr.example"], trust_relay=True))
    _, raw = customer_mail(
        "Re: Badge broken", "Status: done", sender="Hilda <hilda@hr.example>", in_reply_to=root
    )
    box.deliver(raw)
    with killed_in_send():
        read(box.connector(agents=["hilda@hr.example"], trust_relay=True), cursor)

    # Unsent, it told Ann nothing: the next read sends that very mail, and no second one.
    [record], _ = read(box.connector(agents=["hilda@hr.example"], trust_relay=True), cursor)
    assert record.data["status"] == "fulfilled"
    assert kinds(record) == ["ack", "confirmation-request"]
    read(box.connector(agents=["hilda@hr.example"], trust_relay=True), cursor)
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack", "confirmation-request"]
    settled(box)


def test_a_killed_comment_is_sent_by_the_next_read_and_its_retry_sends_nothing(
    box: Box,
) -> None:
    root, cursor = open_call(box, box.connector())
    comment = CommentDraft(body="Your badge is ready.", correlation="comment-7")
    with killed_in_send():
        box.connector().add_comment(root, comment)

    again = box.connector()
    [record], cursor = read(again, cursor)  # the engine links its comment copy here ...
    assert [r["body"] for r in replies(record) if r["kind"] == "comment"] == [comment.body]
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack", "comment"]  # ... so: sent
    assert again.add_comment(root, comment) == again.add_comment(root, comment)
    [mail] = [m for m in box.relayed(ANN) if m["X-USM-Kind"] == "comment"]
    assert mail.get_content().strip() == comment.body
    settled(box)


def test_find_comment_proves_a_killed_add_by_its_message_id_only(box: Box) -> None:
    """The engine asks ``find_comment`` before a read when an add's answer was lost: the copy
    in Sent under the Message-ID derived from the correlation is the proof, never the text."""
    root, cursor = open_call(box, box.connector())
    comment = CommentDraft(body="Your badge is ready.", correlation="comment-11")
    with killed_in_send():
        box.connector().add_comment(root, comment)
    since = datetime.now(UTC) - timedelta(minutes=5)

    again = box.connector()
    found = again.find_comment(root, "comment-11", since=since)
    assert found is not None and found in box.copies()
    # Proof is the correlation and the kind: another correlation, an internal note asked for,
    # or the same words written by a person are no copy of this add.
    assert again.find_comment(root, "comment-12", since=since) is None
    assert again.find_comment(root, "comment-11", since=since, public=False) is None
    _, person = customer_mail("Re: Badge broken", "Your badge is ready.", in_reply_to=root)
    box.deliver(person)
    assert again.find_comment(root, "comment-12", since=since) is None
    # What it found is the add's own id: the retried add answers the very same one.
    assert again.add_comment(root, comment) == found
    read(again, cursor)
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack", "comment"]


def test_a_killed_create_is_made_by_its_retry_only_and_read_after(box: Box) -> None:
    draft = RemoteDraft(fields={"subject": "Replace reader 3", "body": "It is broken."})
    with killed_in_send():
        box.connector().create(draft, "usm-bridge:call-9")
    assert list(box.copies().values()) == [True]

    again = box.connector()
    # Unsent, the create is not made: no lookup finds it, no read yields its thread, and a
    # read sends nothing (only the engine's retry of the create, which links it, does).
    assert again.find_by_correlation("usm-bridge:call-9") is None
    records, cursor = read(again)
    assert records == [] and box.relayed() == []
    ref = again.create(draft, "usm-bridge:call-9")
    assert box.connector().create(draft, "usm-bridge:call-9") == ref
    found = box.connector().find_by_correlation("usm-bridge:call-9")
    assert found is not None and found.remote_id == ref.remote_id
    # Its thread is the bridge's own from now on (the cursor is past its first mail already:
    # the engine holds what it wrote; a full read shows it).
    assert read(box.connector(), cursor)[0] == []
    [record] = read(box.connector())[0]
    assert record.remote_id == ref.remote_id
    [mail] = box.relayed(SUPPLIER)
    assert mail["Message-ID"] == ref.remote_id
    settled(box)


def test_a_reply_to_a_create_left_pending_waits_for_the_create(box: Box) -> None:
    """The relay took the create just before the kill and the supplier answered at once: the
    answer is not read before the engine's retry of the create links the thread."""
    draft = RemoteDraft(fields={"subject": "Replace reader 3", "body": "It is broken."})
    with killed_in_send(relay_took_it=True):
        box.connector().create(draft, "usm-bridge:call-9")
    [sent] = box.relayed(SUPPLIER)
    answer, raw = customer_mail(
        "Re: Replace reader 3",
        "On it.",
        sender=f"Orders <{SUPPLIER}>",
        in_reply_to=str(sent["Message-ID"]),
    )
    box.deliver(raw)
    again = box.connector()
    records, cursor = read(again)
    assert records == []
    ref = again.create(draft, "usm-bridge:call-9")
    [record], _ = read(again, cursor)
    assert record.remote_id == ref.remote_id
    assert [r["message_id"] for r in replies(record)] == [answer]
    # At least once: the same mail handed over again, under its own Message-ID only.
    assert box.relayed_ids() == Counter({ref.remote_id: 2})
    assert not any(box.copies().values())


@pytest.mark.parametrize("kind", ["ack", "update", "comment"])
def test_a_mail_the_relay_took_before_the_kill_is_handed_over_again_as_itself(
    box: Box, kind: str
) -> None:
    """The documented at-least-once: the kill came after the relay took the mail and before
    the mark was cleared. The same message goes again (one Message-ID), never a second one."""
    cursor: str | None = None
    root = ""
    if kind != "ack":
        root, cursor = open_call(box, box.connector())
    start = box.relayed_ids()
    action: Callable[[EmailConnector], object]
    if kind == "ack":
        root, raw = customer_mail("Badge broken", "My badge does not open the door.")
        box.deliver(raw)
        action = read
    elif kind == "update":
        action = lambda c: c.update(root, RemoteDraft(status="in_progress"))  # noqa: E731
    else:
        action = lambda c: c.add_comment(root, CommentDraft(body="Ready.", correlation="c-1"))  # noqa: E731
    with killed_in_send(relay_took_it=True):
        action(box.connector())
    again = box.connector()
    [record], _ = read(again, cursor)
    action(again)
    read(box.connector(), cursor)
    new = box.relayed_ids() - start
    [(message_id, times)] = new.items()
    assert times == 2 and box.copies()[message_id] is False
    assert len([r for r in replies(record) if r["message_id"] == message_id]) == 1


# -- a relay that refuses for now, then takes mail again ---------------------------------------


def test_an_acknowledgement_refused_for_now_is_sent_once_the_relay_takes_mail(box: Box) -> None:
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    box.deliver(raw)
    box.plan.add(Fault.SERVER_ERROR, REFUSALS)
    try:  # the read that cannot answer makes the call all the same, its answer pending
        records, _ = read(box.connector())
    finally:
        box.plan.clear()
    outbound = [r for r in replies(thread_record(records, root)) if r["direction"] == "out"]
    assert [(r["kind"], r["pending"]) for r in outbound] == [("ack", True)]
    assert box.relayed(ANN) == []
    records, _ = read(box.connector())
    assert kinds(thread_record(records, root)) == ["ack"]
    read(box.connector())
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack"]
    settled(box)


def test_an_update_refused_for_now_is_said_once_when_retried(box: Box) -> None:
    connector = box.connector()
    root, cursor = open_call(box, connector)
    draft = RemoteDraft(status="waiting:customer", fields={"body": "Which door is it?"})
    with box.refusing_for_now():
        connector.update(root, draft)
    connector.update(root, draft)  # the engine's retry: its own copy, finished
    connector.update(root, draft)  # a crash before the engine's commit: said before
    [record], _ = read(box.connector(), cursor)
    assert kinds(record) == ["ack", "status"]
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack", "status"]
    settled(box)


def test_a_comment_refused_for_now_is_sent_by_the_next_read(box: Box) -> None:
    connector = box.connector()
    root, cursor = open_call(box, connector)
    comment = CommentDraft(body="Your badge is ready.", correlation="comment-8")
    with box.refusing_for_now():
        connector.add_comment(root, comment)
    [record], _ = read(connector, cursor)
    assert [r["pending"] for r in replies(record) if r["kind"] == "comment"] == [False]
    connector.add_comment(root, comment)  # the outbox item, retried: nothing more is sent
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack", "comment"]
    settled(box)


def test_a_pending_copy_the_relay_refuses_for_good_becomes_a_dead_letter(box: Box) -> None:
    root, cursor = open_call(box, box.connector())
    with killed_in_send():
        box.connector().add_comment(root, CommentDraft(body="Ready.", correlation="c-2"))
    box.plan.reject("no such user here")
    records, after = read(box.connector(), cursor)
    [letter] = [r for r in records if dead_letter_reason(r)]
    reason = dead_letter_reason(letter)
    assert reason is not None and "refused the bridge's mail for good" in reason
    assert "no such user here" in reason and letter.data["kind"] == "comment"
    # Kept, still pending, until the cursor after its dead letter comes back (it is stored):
    # a kill before that would leave the next process to try it, and to letter it, again.
    assert box.copies()[letter.remote_id] is True
    records, _ = read(box.connector(), after)
    assert letter.remote_id not in box.copies()
    assert [r for r in records if dead_letter_reason(r)] == []
    assert [m["X-USM-Kind"] for m in box.relayed(ANN)] == ["ack"]


@pytest.mark.parametrize("drop", ['"x"', '[["a", 1]]', "[[1]]", "7"])
def test_a_cursor_whose_drop_list_is_not_ours_is_refused_and_removes_nothing(
    box: Box, drop: str
) -> None:
    root, cursor = open_call(box, box.connector())
    with killed_in_send():
        box.connector().add_comment(root, CommentDraft(body="Ready.", correlation="c-2"))
    box.plan.reject("no such user here")
    _, after = read(box.connector(), cursor)
    copies = box.copies()
    tampered = after[:-1] + f', "drop": {drop}}}'
    with pytest.raises(PermanentRemoteError, match="cursor is not one this connector wrote"):
        read(box.connector(), tampered)
    assert box.copies() == copies  # the refused copy is still there, still pending


# -- what an update says, said once ------------------------------------------------------------


def test_the_same_words_are_said_again_only_after_the_thread_moved_on(box: Box) -> None:
    connector = box.connector(acknowledge=False)
    root, raw = customer_mail("Badge broken", "My badge does not open the door.")
    box.deliver(raw)
    read(connector)
    first = RemoteDraft(fields={"body": "The new badges come on Monday."})
    second = RemoteDraft(fields={"body": "They come on Tuesday after all."})
    connector.update(root, first)
    connector.update(root, first)  # the same, on the same thread: one mail
    connector.update(root, second)
    connector.update(root, first)  # back to the first words: news again
    connector.update(root, first)
    _, raw = customer_mail("Re: Badge broken", "Thanks!", in_reply_to=root)
    box.deliver(raw)
    connector.update(root, first)  # asked again after Ann wrote: said again
    bodies = [m.get_content().strip() for m in box.relayed(ANN)]
    monday, tuesday = "The new badges come on Monday.", "They come on Tuesday after all."
    assert bodies == [monday, tuesday, monday, monday], bodies
    assert len(set(box.relayed_ids())) == 4
    settled(box)


@pytest.mark.parametrize(
    ("permanent", "mark"),
    [
        ([b"(\\Answered \\Deleted \\Draft \\Flagged \\Seen \\*)"], PENDING_KEYWORD),
        ([b"(\\Seen $USMPending)"], PENDING_KEYWORD),
        ([], PENDING_KEYWORD),  # not said: every flag may be kept (RFC 3501)
        ([b"(\\Answered \\Deleted \\Draft \\Flagged \\Seen)"], PENDING_FALLBACK),  # pymap
    ],
)
def test_the_pending_mark_is_one_the_imap_folder_can_keep(permanent: list[Any], mark: str) -> None:
    assert _pending_mark(permanent) == mark
