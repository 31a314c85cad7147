"""Files out: a file goes with its comment's mail, or in a short mail of its own, once; the relay's
SIZE limit refuses a file (a permanent error) and never the comment; what the relay received
decodes to the very bytes put."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
from email_harness import ImapHarness, MaildirHarness, connect, customer_mail, read, sent_to
from email_servers import FaultPlan, SmtpServer, serving
from usm_bridge.connector import CommentDraft, CommentFile, OutgoingFile, RemoteDraft
from usm_bridge.errors import PermanentRemoteError

from usm_bridge_email import EmailConnector
from usm_bridge_email.mime_parts import split_attachment_id

ANN = "ann@customer.example"
FORM = b"%PDF-1.4\n" + os.urandom(150_000) + b"\n%%EOF\n"


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def files_of(message: EmailMessage) -> list[tuple[str | None, bytes]]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_filename(), payload))
    return found


@contextmanager
def opened_call(harness: MaildirHarness, smtp: SmtpServer) -> Iterator[tuple[EmailConnector, str]]:
    """Ann's call on ``harness``, read and acknowledged: its connector (closed at the end) and
    the call's id."""
    root, raw = customer_mail("Leave form", "Where is the form?")
    harness.deliver(raw)
    connector = connect(harness, smtp)
    read(connector)
    try:
        yield connector, root
    finally:
        connector.close()


@pytest.fixture
def call(
    desk: tuple[MaildirHarness, SmtpServer],
) -> Iterator[tuple[MaildirHarness, SmtpServer, EmailConnector, str]]:
    """Ann's call at the shared relay's desk: the desk, its relay, the connector, the call."""
    harness, smtp = desk
    with opened_call(harness, smtp) as (connector, root):
        yield harness, smtp, connector, root


def test_a_file_with_a_comment_goes_in_the_comment_s_mail_once(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    harness, smtp, connector, root = call
    start = len(smtp.messages)
    comment = CommentDraft(body="Here is the form to sign.", correlation="cmt-1")
    file_id = connector.put_attachment(
        root, "Antrag für Elternzeit.pdf", "application/pdf", len(FORM), chunks(FORM),
        comment=comment,
    )  # fmt: skip
    # The comment itself, added afterwards (or retried), is that very mail: nothing more.
    comment_id = connector.add_comment(root, comment)
    [mail] = sent_to(smtp, start, ANN)
    assert mail["Message-ID"] == comment_id == split_attachment_id(file_id)[0]
    assert "Here is the form to sign." in str(mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert files_of(mail) == [("Antrag für Elternzeit.pdf", FORM)]
    # Put again (the flow's retry after a crash before its commit): found, not sent again.
    again = connector.put_attachment(
        root, "Antrag für Elternzeit.pdf", "application/pdf", len(FORM), chunks(FORM),
        comment=comment,
    )  # fmt: skip
    assert again == file_id and len(sent_to(smtp, start, ANN)) == 1
    # Read back, the bridge's copy is listed as the mailbox's own, with the file's identity.
    [listed] = connector.list_attachments(root)
    assert (listed.remote_id, listed.name, listed.size) == (
        file_id,
        "Antrag für Elternzeit.pdf",
        len(FORM),
    )
    assert (
        listed.sha256 == hashlib.sha256(FORM).hexdigest()
        and listed.author == harness.settings().address
    )
    with connector.open_attachment(file_id) as content:
        assert b"".join(content) == FORM


def test_a_file_without_a_comment_and_a_second_file_get_a_short_mail_each_once(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    comment = CommentDraft(body="Two forms follow.", correlation="cmt-2")
    harness, smtp, connector, root = call
    start = len(smtp.messages)
    connector.add_comment(root, comment)
    [comment_mail] = sent_to(smtp, start, ANN)
    # Ann answers before the files come: the second file still answers the comment's mail.
    _, answer = customer_mail("Re: Leave form", "Thanks!", in_reply_to=comment_mail["Message-ID"])
    harness.deliver(answer)
    shot = os.urandom(3000)
    second = connector.put_attachment(
        root, "second.pdf", "application/pdf", len(FORM), chunks(FORM), comment=comment
    )
    lone = connector.put_attachment(root, "screen.png", "image/png", len(shot), [shot])
    assert connector.put_attachment(root, "screen.png", "image/png", len(shot), [shot]) == lone
    mails = sent_to(smtp, start, ANN)
    assert len(mails) == 3
    follow, own = mails[1], mails[2]
    assert follow["In-Reply-To"] == comment_mail["Message-ID"] and follow["X-USM-Kind"] == "file"
    assert files_of(follow) == [("second.pdf", FORM)] and files_of(own) == [("screen.png", shot)]
    assert "of the comment before" in follow.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "[HR-1]" in str(own["Subject"]) and "HR-1" in str(own.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert split_attachment_id(second)[0] == follow["Message-ID"]
    assert split_attachment_id(lone)[0] == own["Message-ID"]


def test_content_that_is_not_the_size_stated_is_refused_and_nothing_is_sent(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    _, smtp, connector, root = call
    start = len(smtp.messages)
    for stated in (len(FORM) - 1, len(FORM) + 1):
        with pytest.raises(PermanentRemoteError, match=r"not the \d+ bytes stated"):
            connector.put_attachment(root, "form.pdf", "application/pdf", stated, chunks(FORM))
    assert sent_to(smtp, start, ANN) == []


@pytest.fixture
def small_relay() -> Iterator[SmtpServer]:
    """A relay that takes mail of 60,000 bytes at most, and says so (EHLO: SIZE 60000)."""
    yield from serving(SmtpServer(FaultPlan(), data_size_limit=60_000))


@pytest.mark.parametrize("advertised", [True, False], ids=["size-in-ehlo", "refused-at-data"])
def test_over_the_relay_s_size_the_file_is_refused_and_the_comment_still_goes(
    tmp_path: Path, small_relay: SmtpServer, advertised: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = MaildirHarness(tmp_path)
    try:
        with opened_call(harness, small_relay) as (connector, root):
            refused_over_the_limit(connector, root, small_relay, advertised, monkeypatch)
    finally:
        harness.close()


def refused_over_the_limit(
    connector: EmailConnector,
    root: str,
    small_relay: SmtpServer,
    advertised: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file too large for the relay, with a comment and without, then a small one."""
    if not advertised:  # a relay that states no SIZE, and answers 552 when the mail comes
        monkeypatch.setattr(type(connector._smtp), "size_limit", lambda self: None)
    start = len(small_relay.messages)
    small = os.urandom(1000)
    comment = CommentDraft(body="The signed form.", correlation="cmt-3")
    not_mailed = r"form\.pdf \(\d+ bytes\) was not mailed"
    with pytest.raises(PermanentRemoteError, match=not_mailed) as refused:
        connector.put_attachment(
            root, "form.pdf", "application/pdf", len(FORM), chunks(FORM), comment=comment
        )
    assert ("SIZE" in str(refused.value)) == advertised
    [mail] = sent_to(small_relay, start, ANN)
    assert files_of(mail) == [] and "form.pdf could not be attached" in mail.get_content()
    assert connector.add_comment(root, comment) == mail["Message-ID"]  # said once
    # Without a comment: nothing at all is sent; a file within the limit still goes.
    with pytest.raises(PermanentRemoteError, match="was not mailed"):
        connector.put_attachment(root, "form.pdf", "application/pdf", len(FORM), chunks(FORM))
    connector.put_attachment(root, "small.bin", "application/octet-stream", len(small), [small])
    later = sent_to(small_relay, start, ANN)[1:]
    assert [files_of(m) for m in later] == [[("small.bin", small)]]


def test_every_received_part_decodes_to_the_bytes_put_whatever_the_chunks(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    _, smtp, connector, root = call
    start = len(smtp.messages)
    sizes = [0, 1, 56, 57, 58, 113, 114, 65_536, 100_003]
    for number, size in enumerate(sizes):
        data = os.urandom(size)
        connector.put_attachment(
            root, f"f{number}.bin", "application/octet-stream", size, chunks(data, 1000 + number)
        )
        assert len(sent_to(smtp, start + number, ANN)) == 1
        raw = smtp.messages[start + number][2]
        assert max(len(line) for line in raw.split(b"\r\n")) <= 78  # RFC 5322's line length
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert files_of(parsed) == [(f"f{number}.bin", data)], size


def test_a_file_s_sent_copy_on_dovecot_reads_back_as_the_bytes_put(
    dovecot_harness: ImapHarness,
) -> None:
    """The Sent copy goes through IMAP APPEND and is fetched back for SMTP: one copy, one mail."""
    smtp = dovecot_harness.smtp
    root, raw = customer_mail("Leave form", "Where is the form?")
    dovecot_harness.deliver(raw)
    connector = dovecot_harness.make_connector()
    assert isinstance(connector, EmailConnector)
    try:
        read(connector)
        start = len(smtp.messages)
        comment = CommentDraft(body="The form, signed.", correlation="cmt-imap")
        file_id = connector.put_attachment(
            root, "form.pdf", "application/pdf", len(FORM), chunks(FORM), comment=comment
        )
        assert connector.add_comment(root, comment) == split_attachment_id(file_id)[0]
        [mail] = sent_to(smtp, start, ANN)
        assert files_of(mail) == [("form.pdf", FORM)]
        with connector.open_attachment(file_id) as content:
            assert b"".join(content) == FORM
        assert [f.remote_id for f in connector.list_attachments(root)] == [file_id]
    finally:
        connector.close()


def test_an_internal_note_s_file_is_kept_with_it_and_mailed_to_nobody(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    _, smtp, connector, root = call
    start = len(smtp.messages)
    note = CommentDraft(body="Checked by HR.", public=False, correlation="note-1")
    file_id = connector.put_attachment(
        root, "check.pdf", "application/pdf", len(FORM), chunks(FORM), comment=note
    )
    assert smtp.messages[start:] == []
    [listed] = connector.list_attachments(root)
    assert (listed.remote_id, listed.comment_id) == (file_id, split_attachment_id(file_id)[0])
    with connector.open_attachment(file_id) as content:
        assert b"".join(content) == FORM


def _outgoing(name: str, media_type: str, data: bytes) -> OutgoingFile:
    return OutgoingFile(name, media_type, len(data), hashlib.sha256(data).hexdigest(),
                        lambda: chunks(data))  # fmt: skip


def test_a_comment_with_its_files_is_one_mail_and_a_retry_sends_nothing(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
) -> None:
    _, smtp, connector, root = call
    start = len(smtp.messages)
    shot = os.urandom(3000)
    files = [
        _outgoing("form.pdf", "application/pdf", FORM),
        _outgoing("shot.png", "image/png", shot),
    ]
    named = [CommentFile(name=f.name, size=f.size) for f in files]
    comment = CommentDraft(body="The form and a screenshot.", correlation="cmt-files", files=named)
    mail_id, writes = connector.add_comment_with_files(root, comment, files)
    [mail] = sent_to(smtp, start, ANN)
    assert mail["Message-ID"] == mail_id and mail["X-USM-Kind"] == "comment"
    assert files_of(mail) == [("form.pdf", FORM), ("shot.png", shot)]
    assert [w.remote_id for w in writes] == [f"{mail_id}#2", f"{mail_id}#3"]
    listed = {a.remote_id: a for a in connector.list_attachments(root)}
    ids = [w.remote_id for w in writes if w.remote_id]
    assert [(listed[i].name, listed[i].comment_id) for i in ids] == [
        ("form.pdf", mail_id), ("shot.png", mail_id),
    ]  # fmt: skip
    # The retry after a crash (or a lost answer): the mail is found, its files in it; nothing
    # is sent again, and the comment alone is that mail too.
    assert connector.add_comment_with_files(root, comment, files) == (mail_id, writes)
    assert connector.add_comment(root, comment) == mail_id
    assert len(sent_to(smtp, start, ANN)) == 1


def test_over_the_relay_s_size_a_comment_s_mail_goes_without_its_files_saying_so(
    tmp_path: Path, small_relay: SmtpServer
) -> None:
    harness = MaildirHarness(tmp_path)
    try:
        with opened_call(harness, small_relay) as (connector, root):
            start = len(small_relay.messages)
            files = [_outgoing("form.pdf", "application/pdf", FORM)]
            comment = CommentDraft(body="The signed form.", correlation="cmt-big")
            mail_id, writes = connector.add_comment_with_files(root, comment, files)
            [mail] = sent_to(small_relay, start, ANN)
            assert mail["Message-ID"] == mail_id and files_of(mail) == []
            assert "Not attached: form.pdf" in mail.get_content()
            [write] = writes
            assert write.remote_id is None and "SIZE" in str(write.refused)
    finally:
        harness.close()


def test_an_opening_mail_carries_the_files_and_a_retry_makes_nothing(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    harness = MaildirHarness(tmp_path)
    connector = connect(harness, smtp_server, supplier_address="parts@vendor.example")
    try:
        start = len(smtp_server.messages)
        draft = RemoteDraft(fields={"subject": "Reader 3", "body": "Broken; photo attached."})
        files = [_outgoing("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(500))]
        ref, writes = connector.create_with_files(draft, "usm-bridge:call-20", files)
        [mail] = sent_to(smtp_server, start, "parts@vendor.example")
        assert mail["Message-ID"] == ref.remote_id and mail["X-USM-Kind"] == "create"
        assert [name for name, _ in files_of(mail)] == ["photo.png"]
        assert [w.remote_id for w in writes] == [f"{ref.remote_id}#2"]
        [listed] = connector.list_attachments(ref.remote_id)
        assert (listed.remote_id, listed.comment_id) == (f"{ref.remote_id}#2", None)
        again, none = connector.create_with_files(draft, "usm-bridge:call-20", files)
        assert again.remote_id == ref.remote_id and [w.remote_id for w in none] == [None]
        assert len(smtp_server.messages) == start + 1
    finally:
        connector.close()
        harness.close()


def test_the_mail_being_made_lies_in_a_scratch_folder_the_sweep_knows_and_is_gone_after(
    call: tuple[MaildirHarness, SmtpServer, EmailConnector, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kill mid-send leaves the file and the whole mail on disk: they must lie where the
    # start-up sweep looks (a usm-spool-<host>-<pid>-...dir folder in the temporary folder),
    # never in a folder of another name nothing removes.
    import tempfile

    from usm_bridge.attachments.streams import spool_prefix

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _, smtp, connector, root = call
    seen: list[list[str]] = []

    def watched(data: bytes) -> Iterator[bytes]:
        for chunk in chunks(data):
            seen.append(sorted(p.name for p in scratch.iterdir()))
            yield chunk

    start = len(smtp.messages)
    connector.put_attachment(root, "form.pdf", "application/pdf", len(FORM), watched(FORM))
    assert seen and all(len(names) == 1 for names in seen), seen
    assert seen[0][0].startswith(spool_prefix()) and seen[0][0].endswith(".dir")
    assert list(scratch.iterdir()) == []
    [mail] = sent_to(smtp, start, ANN)
    assert files_of(mail) == [("form.pdf", FORM)]
