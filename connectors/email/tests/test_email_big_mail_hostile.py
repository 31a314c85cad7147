"""Hostile mail over ``max_message_bytes`` (:mod:`usm_bridge_email.big_mail`): never held whole.

Each mail here once defeated the bound: a preamble or epilogue of megabytes kept whole, a mail
with CR-only line ends read as one preamble, part headers of 200 KB each on many parts, a
header block over 256 KB read as a text body, multiparts nested thousands deep (a walk
quadratic in the depth), hundreds of thousands of empty parts. Each is now read within the
bound (the mail as read never over it, the memory the read takes measured) or kept as a dead
letter saying why; the mail beside it goes on. Through the walk on a file on disk, and the
connector on a Maildir desk and Dovecot.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from email_harness import ImapHarness, MaildirHarness, read
from email_servers import SmtpServer
from test_email_attachments_in import mixed
from test_email_big_mail import SMALL_PDF, own_mail_harnesses, pdf_part

from usm_bridge_email import EmailConnector
from usm_bridge_email.big_mail import (
    MAX_DEPTH,
    MAX_PARTS,
    BeyondBound,
    Reduced,
    dropped_chunks,
    reduce_mail,
)
from usm_bridge_email.connector import DEAD_LETTER_KEY
from usm_bridge_email.mime_parts import file_parts

BUDGET = 1_000_000
#: The text bound the connector gives with max_body_chars 10 000 (smaller than the budget).
TEXT_BOUND = 6 * 10_000 + 64 * 1024
FILLER = b"".join(b"%07d " % i + b"A" * 68 + b"\r\n" for i in range(40_000))  # 3 MB of lines
SCAN = b"%PDF-1.4\n" + hashlib.sha256(b"scan").digest() * 60_000  # 1.9 MB: 2.6 MB encoded


def with_id(raw: bytes, name: str) -> bytes:
    return raw.replace(b"<files-1@customer.example>", f"<{name}@customer.example>".encode(), 1)


def epilogue() -> bytes:
    return with_id(mixed(pdf_part("form.pdf", SMALL_PDF)), "epilogue") + FILLER


def preamble() -> bytes:
    raw = with_id(mixed(pdf_part("form.pdf", SMALL_PDF)), "preamble")
    return raw.replace(b"\r\n\r\n--XX", b"\r\n\r\n" + FILLER + b"--XX", 1)


def cr_only() -> bytes:
    return with_id(mixed(pdf_part("scan.pdf", SCAN)), "cr-only").replace(b"\r\n", b"\r")


def big_part_headers() -> bytes:
    pad = "X-Pad: " + "p" * 200_000 + "\r\n"
    parts = [f"Content-Type: text/plain\r\n{pad}\r\nx" for _ in range(15)]
    return with_id(mixed(*parts), "part-headers")


def long_header() -> bytes:
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 990) for i in range(300))  # 300 KB
    raw = with_id(mixed(pdf_part("scan.pdf", SCAN)), "long-header")
    return raw.replace(b"MIME-Version", pad + b"MIME-Version", 1)


def long_part_header() -> bytes:
    pad = "".join(f"X-Pad-{i}: {'p' * 990}\r\n" for i in range(300))
    return with_id(mixed(pad + pdf_part("scan.pdf", SCAN)), "long-part-header")


def many_parts() -> bytes:
    return with_id(mixed(*[""] * 400_000), "many-parts")  # 3.2 MB of empty parts


def nested(depth: int, name: str = "nested") -> bytes:
    """A mail of ``depth`` multiparts one in the other (the innermost holding a file), then
    lines that look like boundaries and match none."""
    out = [b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    out += [
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i)
        for i in range(1, depth)
    ]
    out.append(b"--b%d\r\n" % (depth - 1) + pdf_part("deep.pdf", SCAN).encode() + b"\r\n")
    out.append(b"--zz\r\n" * (4 * depth))
    head = mixed().split(b"Content-Type: multipart/mixed", 1)[0]
    return with_id(head + b"".join(out), name)


READ = {"epilogue": epilogue, "preamble": preamble, "cr-only": cr_only}
REFUSED = {
    "part-headers": (big_part_headers, "its headers and MIME boundaries alone are over 1000000"),
    "long-header": (long_header, "the mail's header is over 256 KB"),
    "long-part-header": (long_part_header, "the header of part 2 is over 256 KB"),
    "nested": (lambda: nested(8_000), f"its MIME parts are nested over {MAX_DEPTH} deep"),
    "many-parts": (many_parts, f"it has over {MAX_PARTS} MIME parts"),
}


def reduce_on_disk(tmp_path: Path, raw: bytes) -> tuple[Reduced | BeyondBound, int]:
    """The mail read from a file on disk, and the most memory the read took."""
    path = tmp_path / "mail.eml"
    path.write_bytes(raw)
    tracemalloc.start()
    try:
        with path.open("rb") as handle:
            try:
                found: Reduced | BeyondBound = reduce_mail(
                    handle, len(raw), budget=BUDGET, text_bound=TEXT_BOUND
                )
            except BeyondBound as error:
                found = error
        return found, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.parametrize("name", sorted(READ))
def test_a_mail_whose_bulk_is_no_part_is_read_within_the_bound(tmp_path: Path, name: str) -> None:
    """The preamble, the epilogue and a CR-only mail's lines are no longer kept whole: the
    mail as read is within the budget, its text and files where the stdlib finds them."""
    raw = READ[name]()
    assert len(raw) > 2 * BUDGET
    less, peak = reduce_on_disk(tmp_path, raw)
    assert isinstance(less, Reduced)
    assert len(less.raw) <= BUDGET
    assert peak < 3 * BUDGET, peak  # the mail as read, and one chunk of the file
    whole, as_read = parse(raw), parse(less.raw)
    assert as_read.get_body(("plain",)).get_content().strip() == "Here are the forms."
    # The same files at the same places as the stdlib reads the whole mail.
    files = [(f.path, f.name) for f in file_parts(whole)]
    assert [(f.path, f.name) for f in file_parts(as_read)] == files
    assert files == ([("2", "scan.pdf")] if name == "cr-only" else [("2", "form.pdf")])
    if name == "cr-only":  # the file did not fit: left out, and decodes from disk whole
        assert sorted(less.dropped) == ["2"]
        assert b"".join(dropped_chunks(io.BytesIO(raw), less.dropped["2"])) == SCAN
    else:  # only the filler was left out: the file fits
        assert less.dropped == {}
        assert FILLER[:1000] not in less.raw


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_mail_that_cannot_be_read_within_the_bound_is_refused_saying_why(
    tmp_path: Path, name: str
) -> None:
    make, reason = REFUSED[name]
    raw = make()
    refused, peak = reduce_on_disk(tmp_path, raw)
    assert isinstance(refused, BeyondBound)
    assert reason in refused.reason
    assert peak < 3 * BUDGET, peak
    if name == "part-headers":  # the walk stops once past the bound, not at the mail's end
        stopped = int(refused.reason.rsplit("by byte ", 1)[1].rstrip(")"))
        assert BUDGET < stopped < len(raw) // 2


def test_nesting_up_to_the_cap_is_read_and_a_boundary_reused_inside_ends_the_inner_part() -> None:
    deep = nested(MAX_DEPTH, "deep")
    less = reduce_mail(io.BytesIO(deep), len(deep), budget=BUDGET, text_bound=TEXT_BOUND)
    [(path, _)] = [(f.path, f.name) for f in file_parts(parse(deep))]
    assert sorted(less.dropped) == [path] and path.count(".") == MAX_DEPTH - 1
    with pytest.raises(BeyondBound, match="nested over"):
        too_deep = nested(MAX_DEPTH + 1)
        reduce_mail(io.BytesIO(too_deep), len(too_deep), budget=BUDGET, text_bound=TEXT_BOUND)
    # An inner multipart that reuses its parent's boundary: the parent's line ends it (the
    # outermost wins, as in the stdlib's parser), and the next part is the parent's.
    inner = 'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n' + pdf_part(
        "inner.pdf", SCAN
    )
    raw = mixed(inner, pdf_part("outer.pdf", SCAN))
    less = reduce_mail(io.BytesIO(raw), len(raw), budget=0, text_bound=TEXT_BOUND)
    assert sorted(less.dropped) == sorted(f.path for f in file_parts(parse(raw)))


# -- through the connector: N mails in, N outcomes, on a Maildir desk and Dovecot ---------------

hostile_mail = pytest.fixture(params=["maildir", "dovecot"])(own_mail_harnesses)


def test_hostile_large_mails_are_calls_or_dead_letters_and_the_rest_goes_on(
    hostile_mail: MaildirHarness | ImapHarness, smtp_server: SmtpServer
) -> None:
    harness = hostile_mail
    ordinary = with_id(mixed(pdf_part("form.pdf", SMALL_PDF)), "ordinary")
    makers: list[Callable[[], bytes]] = [
        *READ.values(), *(make for make, _ in REFUSED.values())
    ]  # fmt: skip
    for make in makers:
        harness.deliver(make())
    harness.deliver(ordinary)
    connector = harness.make_connector(max_message_bytes=BUDGET, max_body_chars=10_000)
    assert isinstance(connector, EmailConnector)
    try:
        records, _ = read(connector)
    finally:
        connector.close()
    by_id = {r.remote_id: r for r in records}
    assert len(by_id) == len(makers) + 1
    over = "over max_message_bytes 1.0 MB (1000000 bytes)"
    for name in (*READ, "ordinary"):
        record = by_id[f"<{name}@customer.example>"]
        assert DEAD_LETTER_KEY not in record.data, name
        assert "Here are the forms." in str(record.data["body"]), name
        defects: Any = record.data["defects"]
        notes = [d for d in defects if d.startswith("attachment ")]
        if name == "cr-only":  # its file left out: refused, saying why
            assert [f.name for f in record.attachments] == ["scan.pdf"]
            assert len(notes) == 1 and "scan.pdf" in notes[0] and over in notes[0], notes
        else:  # the filler left out, the file carried
            assert [f.name for f in record.attachments] == ["form.pdf"], name
            assert notes == [], name
    for name, (_, reason) in REFUSED.items():
        letter: Any = by_id[f"<{name}@customer.example>"].data[DEAD_LETTER_KEY]
        assert over in letter["reason"] and reason in letter["reason"], letter
