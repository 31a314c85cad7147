"""Files in: every MIME part that is a file is listed once, named, sized and hashed, and decodes in
chunks to the bytes the stdlib's own decoder gives; a broken part is listed with its problem and
never costs the mail (or the mails after it) its call.

The oracle of every decoded part is ``Message.get_payload(decode=True)`` of the stdlib (for a
forwarded mail, the inner message's bytes); the listing decodes on its own, chunk by chunk.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from email_harness import ADDRESS, ImapHarness, MaildirHarness, read
from usm_bridge.connector import RawRecord

from usm_bridge_email import EmailConnector
from usm_bridge_email.connector import DEAD_LETTER_KEY
from usm_bridge_email.mime_parts import (
    UnreadablePart,
    decoded_chunks,
    file_parts,
    find_part,
)

CORPUS = Path(__file__).parent / "corpus_thirdparty"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(
    range(256)
)
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
TNEF = bytes.fromhex("789f3e22") + bytes(range(200))
BIG = b"%PDF-1.4\n" + hashlib.sha256(b"big").digest() * 40_000  # 1.28 MB


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def oracle(part: Message) -> bytes:
    """What the stdlib decodes the part to."""
    if part.get_content_type() == "message/rfc822":
        return b"".join(decoded_chunks(part))  # the inner message re-rendered: checked apart
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def outcomes(raw: bytes) -> list[tuple[str, str, str, int, bool, str | None]]:
    """(path, name, type, size, inline, problem) of every file, each checked against the
    oracle: its listed size and SHA-256 are those of the bytes its chunks decode to."""
    message = parse(raw)
    found = []
    for file in file_parts(message):
        part = find_part(message, file.path)
        assert part is not None
        if file.problem is None:
            content = oracle(part)
            for chunk_chars in (4, 7, 76 * 4):  # chunk ends in every place of a line
                assert b"".join(decoded_chunks(part, chunk_chars)) == content, file.path
            assert (file.size, file.sha256) == (len(content), hashlib.sha256(content).hexdigest())
        else:
            assert file.sha256 is None
        found.append(
            (file.path, file.name, file.declared_type, file.size, file.inline, file.problem)
        )
    return found


# -- third-party messages: CPython's email test suite ------------------------------------------

CORPUS_FILES = {
    "cpython-msg_07.txt": [("2", "dingusfish.gif", "image/gif", 3512, False, None)],
    "cpython-msg_13.txt": [("2.2", "dingusfish.gif", "image/gif", 3512, False, None)],
    "cpython-msg_22.txt": [
        ("2", "wibble.JPG", "image/jpeg", 272, False, None),
        ("3", "wibble2.JPG", "image/jpeg", 317, False, None),
    ],
    "cpython-msg_26.txt": [("2", "clock.bmp", "application/riscos", 630, False, None)],
    "cpython-msg_45.txt": [("2", "signature.asc", "application/pgp-signature", 189, False, None)],
    "cpython-msg_46.txt": [("1", "message-1.eml", "message/rfc822", 375, False, None)],
    # A bounce: the returned mail is a file; its delivery-status part is the report's machinery.
    "cpython-msg_16.txt": [("3", "message-3.eml", "message/rfc822", 2646, False, None)],
    # Both parts say "XXX" for base64 (the stdlib decodes two junk bytes and a defect), after
    # a multipart reusing its parent's boundary (empty as parsed): refused, never guessed.
    "cpython-msg_39.txt": [
        ("1.2", "attachment-1-2.bin", "application/octet-stream", 0, False,
         "bad base64: it ends 3 characters into a 4-character group (the part is cut short)"),
        ("1.3", "attachment-1-3.bin", "application/octet-stream", 0, False,
         "bad base64: it ends 3 characters into a 4-character group (the part is cut short)"),
    ],
    # No files: a digest of messages is listed as one .eml each (msg_02's five); msg_12's
    # empty text parts and msg_35's body are text.
    "cpython-msg_12.txt": [],
    "cpython-msg_35.txt": [],
}  # fmt: skip


#: The third-party mails that carry files and are calls (msg_16 is a bounce of no thread here,
#: msg_39 names no sender: dead letters whatever their files).
CARRYING_FILES = [
    name
    for name, files in CORPUS_FILES.items()
    if files and name not in ("cpython-msg_16.txt", "cpython-msg_39.txt")
]


@pytest.mark.parametrize("name", sorted(CORPUS_FILES))
def test_third_party_messages_list_every_file_with_its_outcome(name: str) -> None:
    assert outcomes((CORPUS / name).read_bytes()) == CORPUS_FILES[name]


def test_a_forwarded_mail_keeps_its_headers_as_written() -> None:
    subject = "Subject: " + "the original form, " * 8  # a line longer than 78: not refolded
    inner = f"From: bob@customer.example\r\n{subject}\r\n\r\nOriginal text.\r\n"
    [file] = file_parts(parse(mixed(f"Content-Type: message/rfc822\r\n\r\n{inner}")))
    part = find_part(parse(mixed(f"Content-Type: message/rfc822\r\n\r\n{inner}")), file.path)
    assert part is not None
    assert b"".join(decoded_chunks(part)) == inner.replace("\r\n", "\n").encode()


def test_a_name_made_from_a_type_does_not_depend_on_the_host_s_mime_types() -> None:
    # Debian's /etc/mime.types knows text/calendar as .ics; Python's own table does not.
    invite = "Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
    [file] = file_parts(parse(mixed(invite)))
    assert (file.name, file.named) == ("attachment-2.bin", False)


def test_a_mail_whose_multipart_has_no_boundary_is_its_own_body() -> None:
    raw = mixed(EVERY_WAY[0]).replace(b'; boundary="XX"', b"")
    assert file_parts(parse(raw)) == []


def test_a_forwarded_mail_is_the_inner_message_as_written() -> None:
    message = parse((CORPUS / "cpython-msg_46.txt").read_bytes())
    part = find_part(message, "1")
    assert part is not None
    content = b"".join(decoded_chunks(part))
    inner = parse(content)
    assert inner["Subject"] == "GroupwiseForwardingTest" and b"Message-ID: <" in content


# -- our own messages: each way of carrying a file ---------------------------------------------


def b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def based(content_type: str, data: bytes) -> str:
    """A part of ``content_type`` holding ``data`` in base64."""
    return f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(data)}"


def uu(data: bytes, name: str) -> str:
    lines = [f"begin 644 {name}"]
    lines += [
        binascii.b2a_uu(data[i : i + 45]).decode().rstrip("\n") for i in range(0, len(data), 45)
    ]
    return "\r\n".join([*lines, "`", "end"])


def mixed(*parts: str, close: bool = True, message_id: str = "<files-1@customer.example>") -> bytes:
    head = [
        "From: Ann Customer <ann@customer.example>",
        f"To: {ADDRESS}",
        "Subject: Forms for my leave",
        "Date: Mon, 07 Dec 2026 10:00:00 +0000",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="XX"',
        "",
        "--XX",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Here are the forms.",
    ]
    body = "".join(f"\r\n--XX\r\n{part}" for part in parts)
    return ("\r\n".join(head) + body + ("\r\n--XX--\r\n" if close else "")).encode()


def related(html_cid: str, image_cid: str) -> str:
    return "\r\n".join([
        'Content-Type: multipart/related; boundary="RR"', "",
        "--RR", "Content-Type: text/html; charset=utf-8", "",
        f'<p>See the screenshot: <img src="cid:{html_cid}"></p>',
        "--RR", "Content-Type: image/png", f"Content-ID: <{image_cid}>",
        "Content-Transfer-Encoding: base64", "", b64(PNG),
        "--RR--",
    ])  # fmt: skip


EVERY_WAY = [
    # RFC 2231 name, base64
    "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
    f"filename*=utf-8''Antrag%20f%C3%BCr%20Elternzeit.pdf\r\nContent-Transfer-Encoding: base64"
    f"\r\n\r\n{b64(PDF)}",
    # RFC 2047 name in a quoted parameter (Outlook's way), quoted-printable content
    'Content-Type: text/plain; charset=utf-8; name="=?UTF-8?B?w5xiZXJzaWNodC50eHQ=?="\r\n'
    'Content-Disposition: attachment; filename="=?UTF-8?B?w5xiZXJzaWNodC50eHQ=?="\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    "Gr=C3=BC=C3=9Fe, eine sehr lange Zeile die mit einem weichen Umbruch =\r\nweitergeht.\r\n",
    # a file name and no disposition; uuencode
    f'Content-Type: application/octet-stream; name="log.bin"\r\nContent-Transfer-Encoding: '
    f"x-uuencode\r\n\r\n{uu(PDF[:500], 'log.bin')}",
    # an image without a name (named from its type)
    f"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(PNG)}",
    # an inline image the HTML shows (and an unreferenced one beside it)
    related("shot@ann", "shot@ann"),
    related("other@ann", "unshown@ann"),
    # a forwarded mail
    "Content-Type: message/rfc822\r\n\r\nFrom: bob@customer.example\r\nSubject: the original"
    "\r\n\r\nOriginal text.\r\n",
    # Outlook's TNEF, taken as it is
    "Content-Type: application/ms-tnef; name=winmail.dat\r\nContent-Disposition: attachment; "
    f"filename=winmail.dat\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(TNEF)}",
    # a text marked attachment, without a name
    "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment\r\n\r\n"
    "09:00 printer offline\r\n09:05 printer online\r\n",
    # a name of control characters only: a safe name is the core's to make, the content is kept
    "Content-Type: application/pdf\r\nContent-Disposition: attachment; "
    f'filename="\x01\x02\x1b"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64(PDF)}',
]


def test_every_way_of_carrying_a_file_is_listed_named_and_decoded() -> None:
    found = outcomes(mixed(*EVERY_WAY))
    assert [(p, n, t, i, problem) for p, n, t, _, i, problem in found] == [
        ("2", "Antrag für Elternzeit.pdf", "application/pdf", False, None),
        ("3", "Übersicht.txt", "text/plain", False, None),
        ("4", "log.bin", "application/octet-stream", False, None),
        ("5", "image-5.png", "image/png", False, None),
        ("6.2", "image-6-2.png", "image/png", True, None),
        ("7.2", "image-7-2.png", "image/png", False, None),
        ("8", "message-8.eml", "message/rfc822", False, None),
        ("9", "winmail.dat", "application/ms-tnef", False, None),
        ("10", "attachment-10.txt", "text/plain", False, None),
        ("11", "\x01\x02\x1b", "application/pdf", False, None),
    ]
    sizes = [size for _, _, _, size, _, _ in found]
    assert sizes[0] == sizes[-1] == len(PDF) and sizes[2] == 500 and sizes[7] == len(TNEF)
    assert sizes[8] == len(b"09:00 printer offline\r\n09:05 printer online\r\n")
    assert sizes[3] == sizes[4] == sizes[5] == len(PNG)


BROKEN = {
    "bad base64": "Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64"
    "\r\n\r\nJVBERi0x*LjQK\r\n",
    "data after padding": "Content-Type: application/pdf; name=b.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\nJVBERg==\r\n",
    "uuencode without begin": "Content-Type: application/pdf; name=c.pdf\r\n"
    "Content-Transfer-Encoding: x-uuencode\r\n\r\nM86)C9&5F\r\nend\r\n",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_part_is_listed_with_its_problem_and_the_others_are_not_lost(kind: str) -> None:
    good = based("image/png; name=ok.png", PNG)
    found = outcomes(mixed(good, BROKEN[kind], good))
    assert [(p, problem is None) for p, *_, problem in found] == [
        ("2", True),
        ("3", False),
        ("4", True),
    ]
    problem = found[1][5] or ""
    assert ("uuencode" if "uuencode" in kind else "bad base64") in problem
    part = find_part(parse(mixed(good, BROKEN[kind])), "3")
    assert part is not None
    for chunk_chars in (4, 8, 76 * 4, 1 << 20):  # the problem is found across chunk ends too
        with pytest.raises(UnreadablePart, match="attachment cannot be read") as raised:
            b"".join(decoded_chunks(part, chunk_chars))
        assert raised.value.remote_message == problem


def test_bad_base64_names_the_character() -> None:
    [file] = file_parts(parse(mixed(BROKEN["bad base64"])))
    assert file.problem == "bad base64: the character '*' is not base64"


def test_a_message_cut_short_refuses_only_the_part_it_ends_in() -> None:
    whole = mixed(based("image/png; name=a.png", PNG), based("application/pdf; name=b.pdf", PDF))
    cut = whole[: whole.index(b"Content-Type: application/pdf") + 400]
    found = outcomes(cut)
    assert [(p, n, size) for p, n, _, size, _, _ in found] == [
        ("2", "a.png", len(PNG)),
        ("3", "b.pdf", 0),
    ]
    assert "cut short" in (found[1][5] or "")


# -- through the connector: a Maildir desk and a real Dovecot ----------------------------------


def mailbox(records: list[RawRecord]) -> dict[str, RawRecord]:
    return {r.remote_id: r for r in records}


def expected_files(raw: bytes) -> list[tuple[str, int, str | None]]:
    message = parse(raw)
    return [
        (f.name, f.size, hashlib.sha256(oracle(find_part(message, f.path))).hexdigest()  # type: ignore[arg-type]
         if f.problem is None else None)
        for f in file_parts(message)
    ]  # fmt: skip


def read_every_file(connector: EmailConnector, remote_id: str) -> list[tuple[str, int, str | None]]:
    """(name, size, SHA-256 of what open_attachment decodes) of each file listed; a broken part
    must raise on opening (its SHA-256: None)."""
    found = []
    for listed in connector.list_attachments(remote_id):
        try:
            with connector.open_attachment(listed.remote_id) as chunks:
                content = b"".join(chunks)
        except UnreadablePart:
            assert listed.sha256 is None
            found.append((listed.name, listed.size or 0, None))
            continue
        digest = hashlib.sha256(content).hexdigest()
        assert (listed.size, listed.sha256) == (len(content), digest)
        found.append((listed.name, len(content), digest))
    return found


def deliver_and_read_all(harness: MaildirHarness | ImapHarness) -> None:
    """N mails (one with a broken part among good ones, one cut short): N calls, every file
    of each read back through the connector as the oracle decodes it."""
    mails = {
        "<files-1@customer.example>": mixed(*EVERY_WAY),
        "<files-2@customer.example>": mixed(
            BROKEN["bad base64"], EVERY_WAY[3], message_id="<files-2@customer.example>"
        ),
        "<files-3@customer.example>": mixed(
            EVERY_WAY[0], EVERY_WAY[3], close=False, message_id="<files-3@customer.example>"
        )[:-300],
        "<files-4@customer.example>": mixed(message_id="<files-4@customer.example>"),
        # over the desk's max_attachment_bytes: flagged, still listed and read (the policy's
        # cap is the flow's to apply), and never in the way of the mails after it
        "<files-5@customer.example>": mixed(
            based("application/pdf; name=big.pdf", BIG), message_id="<files-5@customer.example>"
        ),
    }
    # Third-party mails, most without a Message-ID (their calls' ids are derived): compared as
    # a whole, every file of theirs against every file read back from their calls.
    corpus = [(CORPUS / name).read_bytes() for name in CARRYING_FILES]
    for raw in [*mails.values(), *corpus]:
        harness.deliver(raw)
    connector = harness.make_connector(max_attachment_bytes=len(BIG) - 1)
    assert isinstance(connector, EmailConnector)
    try:
        records, _ = read(connector)
        by_id = mailbox(records)
        big: Any = by_id["<files-5@customer.example>"].data["attachments"]
        assert [(a["size"], a["over_limit"]) for a in big] == [(len(BIG), True)]
        assert len(records) == len(mails) + len(corpus)  # N mails, N calls
        assert set(mails) <= set(by_id)
        assert not any(DEAD_LETTER_KEY in r.data for r in records)
        for message_id, raw in mails.items():
            assert read_every_file(connector, message_id) == expected_files(raw), message_id
        # Each call's record lists what list_attachments lists (the flow takes them in from
        # there): N calls, each with its files, a broken part's without a SHA-256.
        for record in records:
            assert record.attachments == connector.list_attachments(record.remote_id)
        assert [len(by_id[m].attachments) for m in mails] == [
            len(file_parts(parse(raw))) for raw in mails.values()
        ]
        assert [f.sha256 is None for f in by_id["<files-2@customer.example>"].attachments] == [
            True, False,
        ]  # fmt: skip
        # Against the mails as the mailbox holds them: an IMAP server hands out CRLF line ends
        # (RFC 3501), so a 7bit text file of a mail delivered with LF ends reads with CRLF.
        read_back = [f for r in by_id if r not in mails for f in read_every_file(connector, r)]
        held = [raw for raw in harness.everything() if raw not in mails.values()]
        expected = [f for raw in held for f in expected_files(raw)]
        assert sorted(read_back, key=repr) == sorted(expected, key=repr)
        assert len(read_back) == sum(len(file_parts(parse(raw))) for raw in corpus) == 7
        listed: Any = by_id["<files-2@customer.example>"].data["attachments"]
        assert [bool(a["problem"]) for a in listed] == [True, False]
        defects: Any = by_id["<files-2@customer.example>"].data["defects"]
        assert "attachment 2 (a.pdf): bad base64: the character '*' is not base64" in defects
        assert by_id["<files-4@customer.example>"].data["attachments"] == []
    finally:
        connector.close()


def test_every_file_of_every_mail_is_read_back_through_a_maildir_desk(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    try:
        deliver_and_read_all(harness)
    finally:
        harness.close()


def test_every_file_of_every_mail_is_read_back_through_dovecot(
    dovecot_harness: ImapHarness,
) -> None:
    deliver_and_read_all(dovecot_harness)


def test_a_reply_s_files_are_listed_with_the_reply_as_their_comment(tmp_path: Path) -> None:
    harness = MaildirHarness(tmp_path)
    harness.deliver(mixed(EVERY_WAY[3]))
    reply = mixed(EVERY_WAY[0], message_id="<files-reply@customer.example>").replace(
        b"MIME-Version", b"In-Reply-To: <files-1@customer.example>\r\nMIME-Version", 1
    )
    harness.deliver(reply)
    connector = harness.make_connector()
    assert isinstance(connector, EmailConnector)
    try:
        [record], _ = read(connector)
        files = connector.list_attachments("<files-1@customer.example>")
        assert record.attachments == files  # the reply's file on the call's record, tied to it
        assert [(f.remote_id, f.comment_id, f.author) for f in files] == [
            ("<files-1@customer.example>#2", None, "ann@customer.example"),
            (
                "<files-reply@customer.example>#2",
                "<files-reply@customer.example>",
                "ann@customer.example",
            ),
        ]
        # The same part of the same mail is the same file on every read.
        again = harness.make_connector()
        assert isinstance(again, EmailConnector)
        read(again)
        assert again.list_attachments("<files-1@customer.example>") == files
        again.close()
    finally:
        connector.close()
        harness.close()
