"""Mail over ``max_message_bytes`` (:mod:`usm_bridge_email.big_mail`): never held back whole.

A person's large mail is still its call or comment (headers and text read within the bound),
each file that does not fit refused with a reason that names the mail's size and the limit (a
note and a dead letter in the bridge), the files that fit carried. The bridge's own large mail
(its Sent copy) is no dead letter, and a retry after a crash finds its files in it. Through a
Maildir desk and a real Dovecot; the walk is checked against the stdlib's parse of real mail.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from email_harness import (
    ADDRESS,
    Desk,
    ImapHarness,
    MailBridge,
    MaildirHarness,
    imap_desk,
    maildir_desk,
    read,
)
from email_servers import SmtpServer
from test_email_attachments_in import CORPUS, CORPUS_FILES, EVERY_WAY, PNG, b64, mixed, oracle
from usm_bridge.connector import CommentDraft, OutgoingFile
from usm_bridge.model import Attachment

from usm_bridge_email import EmailConnector, stores
from usm_bridge_email.big_mail import dropped_chunks, reduce_mail
from usm_bridge_email.connector import DEAD_LETTER_KEY
from usm_bridge_email.mime_parts import UnreadablePart, file_parts, find_part
from usm_bridge_email.parsing import parse_message

LIMIT = 200_000
BIG_PDF = b"%PDF-1.4\n" + hashlib.sha256(b"scan").digest() * 8_000  # 256 KB: 345 KB encoded
SMALL_PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def pdf_part(name: str, data: bytes) -> str:
    return (
        f'Content-Type: application/pdf; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64(data)}"
    )


def png_part() -> str:
    return (
        'Content-Type: image/png; name="logo.png"\r\nContent-Disposition: attachment; '
        f'filename="logo.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(PNG)}'
    )


def reply_to(raw: bytes, parent: str) -> bytes:
    thread = f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
    return raw.replace(b"MIME-Version", thread.encode() + b"MIME-Version", 1)


def reduced(raw: bytes, budget: int, text_bound: int = 10**9) -> Any:
    return reduce_mail(io.BytesIO(raw), len(raw), budget=budget, text_bound=text_bound)


# -- the walk against the stdlib's parse of real mail --------------------------------------------

WALKED = [*sorted(CORPUS_FILES), "every-way"]


def corpus_mail(name: str) -> bytes:
    return mixed(*EVERY_WAY) if name == "every-way" else (CORPUS / name).read_bytes()


@pytest.mark.parametrize("name", WALKED)
def test_every_file_left_out_is_where_the_stdlib_finds_it_and_decodes_the_same(name: str) -> None:
    """With no room every file is left out: each at the path the stdlib gives it, of its
    type, decoded from disk to the oracle's bytes; the mail as read lists the same files and
    the same text; with room for all, the mail as read is the mail."""
    raw = corpus_mail(name)
    whole = parse(raw)
    files = file_parts(whole)
    less = reduced(raw, budget=0)
    assert sorted(less.dropped) == sorted(f.path for f in files)
    for file in files:
        dropped = less.dropped[file.path]
        assert dropped.kind == file.declared_type
        if file.problem is not None:
            assert dropped.problem is not None and dropped.sha256 is None
            continue
        part = find_part(whole, file.path)
        assert part is not None
        content = b"".join(dropped_chunks(io.BytesIO(raw), dropped))
        if file.declared_type != "message/rfc822":  # a forwarded mail: as written, not refolded
            assert content == oracle(part), file.path
        assert (dropped.size, dropped.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    # The mail as read: the same files at the same places, the same text, none of the content.
    as_read = parse(less.raw)
    assert [(f.path, f.declared_type) for f in file_parts(as_read)] == [
        (f.path, f.declared_type) for f in files
    ]
    assert parse_message(less.raw).body == parse_message(raw).body
    assert len(less.raw) < len(raw) or not files
    # Room for everything: nothing is left out.
    assert reduced(raw, budget=len(raw)).raw == raw
    assert reduced(raw, budget=len(raw)).dropped == {}


def test_files_are_kept_in_order_while_they_fit_and_a_long_text_is_cut() -> None:
    raw = mixed(pdf_part("big.pdf", BIG_PDF), png_part(), pdf_part("form.pdf", SMALL_PDF))
    less = reduced(raw, budget=LIMIT)
    assert sorted(less.dropped) == ["2"]  # the big one; the two after it fit
    assert len(less.raw) <= LIMIT and not less.text_cut
    text = mixed().replace(b"Here are the forms.", b"All work and no play. " * 20_000)
    cut = reduced(text, budget=LIMIT, text_bound=50_000)
    assert cut.text_cut and len(cut.raw) < 60_000
    assert parse_message(cut.raw).body.startswith("All work and no play.")


# -- S/MIME: the signature of a signed mail is no file --------------------------------------------


def smime_signed(content: bytes) -> bytes:
    """A real S/MIME detached signature (multipart/signed, smime.p7s) over ``content``, made
    with a throwaway key and certificate as a mail client makes it."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ann@customer.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    signed = (
        pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )  # fmt: skip
    head = (
        "From: Ann Customer <ann@customer.example>\r\n"
        f"To: {ADDRESS}\r\nSubject: Signed leave form\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <signed-1@customer.example>\r\n"
    )
    return head.encode() + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


SIGNED_TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe desk is ready, thanks.\r\n"
SIGNED_WITH_FILE = (
    b'Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\n'
    + SIGNED_TEXT
    + b"--in\r\n"
    + pdf_part("leave.pdf", SMALL_PDF).encode()
    + b"\r\n--in--\r\n"
)


def test_an_s_mime_signature_is_no_file_and_the_signed_text_is_read() -> None:
    text_only = parse(smime_signed(SIGNED_TEXT))
    assert text_only.get_content_type() == "multipart/signed"
    kinds = [p.get_content_type() for p in text_only.walk()]
    assert "application/x-pkcs7-signature" in kinds or "application/pkcs7-signature" in kinds
    assert file_parts(text_only) == []
    assert parse_message(smime_signed(SIGNED_TEXT)).body == "The desk is ready, thanks."
    with_file = file_parts(parse(smime_signed(SIGNED_WITH_FILE)))
    assert [(f.path, f.name) for f in with_file] == [("1.2", "leave.pdf")]
    # Both types older and newer clients write, and only inside a multipart/signed.
    for kind in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
        p7s = (
            f'Content-Type: {kind}; name="smime.p7s"\r\nContent-Transfer-Encoding: base64\r\n'
            f'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n{b64(b"sig" * 40)}'
        )
        signed = mixed(p7s).replace(b"multipart/mixed;", b"multipart/signed; micalg=sha-256;")
        assert file_parts(parse(signed)) == []
        assert [f.name for f in file_parts(parse(mixed(p7s)))] == ["smime.p7s"]  # not signed


def test_a_signed_reply_adds_no_file_to_its_call(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    harness.deliver(mixed(pdf_part("form.pdf", SMALL_PDF)))
    harness.deliver(reply_to(smime_signed(SIGNED_TEXT), "<files-1@customer.example>"))
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector)
    try:
        [record], _ = read(connector)
        assert [f.name for f in record.attachments] == ["form.pdf"]
        replies: Any = record.data["replies"]
        [reply] = [r for r in replies if r["direction"] == "in"]  # (the other: the bridge's ack)
        assert reply["body"] == "The desk is ready, thanks." and reply["attachments"] == []
    finally:
        connector.close()
        harness.close()


# -- N mails over the limit in, N outcomes: a Maildir desk and Dovecot, through the engine -----


def refused(files: list[Attachment]) -> dict[str, str | None]:
    return {f.name: f.refused for f in files}


def big_mails_become_calls_and_comments(bridge: MailBridge, deliver: Any) -> None:
    """Four mails, three over the limit: three calls, one comment, a refused file (note and
    dead letter naming the size and the limit) for each file that did not fit; none lost."""
    first = mixed(pdf_part("form.pdf", SMALL_PDF), message_id="<small-1@customer.example>")
    big = mixed(
        pdf_part("scan.pdf", BIG_PDF), png_part(), message_id="<big-1@customer.example>"
    ).replace(b"Here are the forms.", b"My signed contract, scanned.")
    big_reply = reply_to(
        mixed(pdf_part("scan-2.pdf", BIG_PDF), message_id="<big-2@customer.example>"),
        "<small-1@customer.example>",
    ).replace(b"Here are the forms.", b"And the second page.")
    long_text = mixed(message_id="<big-3@customer.example>").replace(
        b"Here are the forms.", b"A very long complaint. " * 15_000
    )
    for raw in (first, big, big_reply, long_text):
        deliver(raw)
    for _ in range(2):
        for summary in bridge.cycle("hr-mail"):
            assert summary.ok, summary
    with bridge.store.begin(readonly=True) as tx:
        calls = {s.call.source.remote_id: s.call for s in tx.list_calls()}  # type: ignore[union-attr]
        letters = [(d.stage.value, d.reason) for d in tx.list_dead_letters()]
    assert sorted(calls) == [
        "<big-1@customer.example>", "<big-3@customer.example>", "<small-1@customer.example>",
    ]  # fmt: skip
    over = "over max_message_bytes 0.2 MB (200000 bytes); raise it to carry this file"
    scan = refused(calls["<big-1@customer.example>"].attachments)
    assert scan["logo.png"] is None  # it fits: carried
    assert "the mail is 0.4 MB" in (scan["scan.pdf"] or "") and over in (scan["scan.pdf"] or "")
    assert "My signed contract, scanned." in calls["<big-1@customer.example>"].description
    small = calls["<small-1@customer.example>"]
    assert refused(small.attachments) == {"form.pdf": None}
    [comment] = [c for c in small.comments if "second page" in c.body]
    assert over in (refused(comment.attachments)["scan-2.pdf"] or "")
    assert "A very long complaint." in calls["<big-3@customer.example>"].description
    # One dead letter per refused file, saying why; none for a mail.
    assert sorted(reason.split(":")[1].strip() for _, reason in letters) == [
        "scan-2.pdf", "scan.pdf",
    ]  # fmt: skip
    assert all(over in reason for _, reason in letters), letters


HR_DESK: dict[str, Any] = {
    "address": ADDRESS, "reference_prefix": "HR", "max_message_bytes": LIMIT,
}  # fmt: skip


def on_bridge(tmp_path: Path, desk: Desk, deliver: Callable[[bytes], None] | None) -> None:
    """:func:`big_mails_become_calls_and_comments` on a bridge of ``desk`` (its mail delivered
    by ``deliver``, else into its Maildir)."""
    bridge = MailBridge(tmp_path / "bridge", desk)
    try:
        big_mails_become_calls_and_comments(bridge, deliver or bridge.boxes[desk.instance].add)
    finally:
        bridge.close()


def test_large_mails_become_calls_and_comments_on_a_maildir_desk(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    desk = maildir_desk(tmp_path, smtp_server, "hr-mail", "hr", **HR_DESK)
    on_bridge(tmp_path, desk, None)


def test_large_mails_become_calls_and_comments_on_dovecot(
    tmp_path: Path,
    dovecot_harness: ImapHarness,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stores, "_FETCH_PIECE", 64 * 1024)  # each large mail in several pieces
    desk = imap_desk(dovecot_harness, smtp_server, "hr-mail", "hr", **HR_DESK)
    on_bridge(tmp_path, desk, dovecot_harness.deliver)


def test_a_file_left_out_of_a_person_s_mail_is_refused_on_opening(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    raw = mixed(pdf_part("scan.pdf", BIG_PDF), png_part())
    harness.deliver(raw)
    connector = harness.make_connector(max_message_bytes=LIMIT)
    assert isinstance(connector, EmailConnector)
    try:
        [record], _ = read(connector)
        assert DEAD_LETTER_KEY not in record.data
        listed = {f.name: f for f in connector.list_attachments(record.remote_id)}
        assert record.attachments == list(listed.values())
        assert (listed["scan.pdf"].size, listed["scan.pdf"].sha256) == (len(BIG_PDF), None)
        scan = listed["scan.pdf"].remote_id
        with (
            pytest.raises(UnreadablePart, match="over max_message_bytes"),
            connector.open_attachment(scan) as chunks,
        ):
            b"".join(chunks)
        with connector.open_attachment(listed["logo.png"].remote_id) as chunks:
            assert b"".join(chunks) == PNG
        defects: Any = record.data["defects"]
        assert any("scan.pdf" in d and "over max_message_bytes" in d for d in defects)
    finally:
        connector.close()
        harness.close()


# -- the bridge's own large mail -----------------------------------------------------------------


def own_mail_harnesses(
    tmp_path: Path, smtp_server: SmtpServer, request: pytest.FixtureRequest
) -> Iterator[MaildirHarness | ImapHarness]:
    # On IMAP each large mail comes in several partial fetches.
    request.getfixturevalue("monkeypatch").setattr(stores, "_FETCH_PIECE", 64 * 1024)
    if request.param == "maildir":
        harness = MaildirHarness(tmp_path)
        try:
            yield harness
        finally:
            harness.close()
    else:
        yield request.getfixturevalue("dovecot_harness")


own_mail = pytest.fixture(params=["maildir", "dovecot"])(own_mail_harnesses)


def test_the_bridge_s_own_large_mail_is_no_dead_letter_and_a_retry_finds_its_file(
    own_mail: MaildirHarness | ImapHarness, smtp_server: SmtpServer
) -> None:
    """A comment with a file over the limit is mailed once; its Sent copy is part of the
    thread (no dead letter), its file listed with its SHA-256 and read back from the mail on
    disk; a new process retrying the same write (a crash before the flow's commit) finds the
    file in the mail sent and mails nothing again."""
    harness = own_mail
    harness.deliver(mixed(message_id="<leave-1@customer.example>"))
    settings: dict[str, Any] = {"max_message_bytes": LIMIT, "smtp": {
        "host": "127.0.0.1", "port": smtp_server.port, "security": "plain"}}  # fmt: skip
    connector = harness.make_connector(**settings)
    assert isinstance(connector, EmailConnector)
    sha = hashlib.sha256(BIG_PDF).hexdigest()
    file = OutgoingFile(
        name="signed-form.pdf", media_type="application/pdf", size=len(BIG_PDF), sha256=sha,
        chunks=lambda: iter([BIG_PDF]),
    )  # fmt: skip
    comment = CommentDraft(body="The signed form.", correlation="c-1", public=True)
    try:
        read(connector)
        before = len(smtp_server.messages)
        _, writes = connector.add_comment_with_files("<leave-1@customer.example>", comment, [file])
        [written] = writes
        assert written.refused is None and written.remote_id is not None
        assert len(smtp_server.messages) == before + 1
        assert len(smtp_server.messages[-1][2]) > LIMIT  # the mail is over the limit
    finally:
        connector.close()
    again = harness.make_connector(**settings)  # a new process
    assert isinstance(again, EmailConnector)
    try:
        # The retry first, as after a crash: the file is found in the large mail already sent.
        _, retried = again.add_comment_with_files("<leave-1@customer.example>", comment, [file])
        assert [(w.remote_id, w.refused) for w in retried] == [(written.remote_id, None)]
        assert len(smtp_server.messages) == before + 1  # mailed once
        records, _ = read(again)
        assert not any(DEAD_LETTER_KEY in r.data for r in records)
        [record] = records
        [mine] = [f for f in record.attachments if f.name == "signed-form.pdf"]
        assert (mine.size, mine.sha256, mine.author) == (len(BIG_PDF), sha, ADDRESS)
        with again.open_attachment(mine.remote_id) as chunks:
            assert b"".join(chunks) == BIG_PDF
    finally:
        again.close()
