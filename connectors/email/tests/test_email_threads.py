"""One connector used from three threads at once, as the daemon uses it: its cycle reads, its
push job writes comments, another target's push reads a file. Every mail delivered becomes a
record, every comment is mailed once under its own Message-ID, every file read is the file; on a
Maildir and on a real Dovecot.

Without the connector's lock the threads finished the same pending copy twice (the relay took
313 mails for 195 Message-IDs in one 40 s run) and a read failed on the index another thread
was adding to.
"""

from __future__ import annotations

import email
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from email_harness import ImapHarness, MaildirHarness, connect
from email_servers import SmtpServer
from test_email_attachments_in import PDF, based, mixed
from usm_bridge.connector import Checkpoint, CommentDraft, RawRecord

from usm_bridge_email import EmailConnector

ROUNDS = 25


@pytest.fixture(params=["maildir", "dovecot"])
def desk_and_connector(
    request: pytest.FixtureRequest, smtp_server: SmtpServer
) -> Iterator[tuple[MaildirHarness | ImapHarness, EmailConnector]]:
    harness: MaildirHarness | ImapHarness
    if request.param == "maildir":
        harness, smtp = request.getfixturevalue("desk")
        connector = connect(harness, smtp)
    else:
        harness = request.getfixturevalue("dovecot_harness")
        made = harness.make_connector()
        assert isinstance(made, EmailConnector)
        connector = made
    try:
        yield harness, connector
    finally:
        connector.close()


def _mail(n: int) -> bytes:
    return mixed(
        based(f"application/pdf; name=f{n}.pdf", PDF + str(n).encode()),
        message_id=f"<thread-{n}@customer.example>",
    )


def test_reads_comments_and_file_reads_in_three_threads_lose_and_repeat_nothing(
    desk_and_connector: tuple[MaildirHarness | ImapHarness, EmailConnector],
    smtp_server: SmtpServer,
) -> None:
    harness, connector = desk_and_connector
    harness.deliver(_mail(0))
    first = list(connector.read_changes(None))
    cursor = first[-1]
    assert isinstance(cursor, Checkpoint)
    records = {i.remote_id for i in first if isinstance(i, RawRecord)}
    assert records == {"<thread-0@customer.example>"}
    (form,) = connector.list_attachments("<thread-0@customer.example>")
    since = len(smtp_server.messages)
    errors: list[tuple[str, str]] = []
    opened: list[str] = []
    comments: list[str] = []

    def reader() -> None:
        nonlocal cursor
        for n in range(1, ROUNDS + 1):
            harness.deliver(_mail(n))
            items = list(connector.read_changes(cursor.cursor))
            records.update(i.remote_id for i in items if isinstance(i, RawRecord))
            last = items[-1]
            assert isinstance(last, Checkpoint)
            cursor = last

    def writer() -> None:
        for n in range(ROUNDS):
            body = f"Status {n}: the desk is being prepared."
            connector.add_comment(
                "<thread-0@customer.example>",
                CommentDraft(body=body, public=True, correlation=f"status-{n}"),
            )
            comments.append(body)

    def opener() -> None:
        for _ in range(ROUNDS):
            with connector.open_attachment(form.remote_id) as chunks:
                opened.append(hashlib.sha256(b"".join(chunks)).hexdigest())

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # every failure is reported, not only the first
                errors.append((work.__name__, repr(exc)))

        return run

    threads = [threading.Thread(target=guarded(w)) for w in (reader, writer, opener)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread never finished"
    assert errors == []
    # Every mail delivered is a record (a last read picks up what the last round left).
    tail = list(connector.read_changes(cursor.cursor))
    records.update(i.remote_id for i in tail if isinstance(i, RawRecord))
    assert records == {f"<thread-{n}@customer.example>" for n in range(ROUNDS + 1)}
    # Every file read is the file listed.
    assert opened == [form.sha256] * ROUNDS
    # The relay took each mail once: the comments' once each, acknowledgements aside.
    taken = [email.message_from_bytes(raw) for _, _, raw in smtp_server.messages[since:]]
    ids = Counter(str(m["Message-ID"]) for m in taken)
    assert [i for i, count in ids.items() if count > 1] == []
    bodies: list[Any] = [m.get_payload(decode=True) for m in taken if not m.is_multipart()]
    for body in comments:
        assert sum(body.encode() in b for b in bodies if isinstance(b, bytes)) == 1, body
