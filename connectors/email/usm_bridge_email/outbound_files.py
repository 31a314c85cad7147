"""A file attached to one of the bridge's mails, base64-encoded a chunk at a time into a spool file.

The stdlib's ``email`` package holds a part's whole content as one string (base64 of the whole
file) and renders the whole mail as one more; :func:`write_with_file` instead renders the mail
around a placeholder and writes the file's base64 lines in its place, chunk by chunk from its
spool file, so the file is never in memory whole, decoded or encoded. What the stdlib does not
allow: ``imaplib`` (the Sent copy's APPEND) and ``smtplib`` (``sendmail``) each take the mail as
one ``bytes``, so while it is handed over the mail is held once, encoded (about 4/3 of the
file's size plus a line end per 57 bytes); one copy at a time, since the Sent copy is appended,
then fetched back and sent.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Iterable, Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Final

from usm_bridge.attachments import GENERIC_TYPE, normal_media_type

__all__ = ["BASE64_LINE_BYTES", "base64_lines", "write_with_file", "write_with_files"]

#: Bytes of content per base64 line: 76 characters, the longest RFC 2045 allows.
BASE64_LINE_BYTES: Final = 57


def base64_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The base64 lines (without line ends) of the content in ``chunks``, whatever their sizes."""
    rest = b""
    for chunk in chunks:
        data = rest + chunk
        whole = len(data) - len(data) % BASE64_LINE_BYTES
        for start in range(0, whole, BASE64_LINE_BYTES):
            yield binascii.b2a_base64(data[start : start + BASE64_LINE_BYTES], newline=False)
        rest = data[whole:]
    if rest:
        yield binascii.b2a_base64(rest, newline=False)


def write_with_file(
    message: EmailMessage, *, name: str, media_type: str, chunks: Iterable[bytes], target: Path
) -> int:
    """Write ``message`` with the file attached (``name``, ``media_type``, content ``chunks``)
    into ``target`` as it goes on the wire (CRLF); returns its size in bytes.

    ``message`` (a text mail of the bridge, policy SMTP) becomes ``multipart/mixed``: its text
    first, then the file as ``attachment`` (a name beyond ASCII RFC 2231-encoded by the policy).
    """
    return write_with_files(message, [(name, media_type, chunks)], target)


def write_with_files(
    message: EmailMessage, files: Sequence[tuple[str, str, Iterable[bytes]]], target: Path
) -> int:
    """:func:`write_with_file` for several files (``(name, media_type, chunks)`` each), in
    order: the text is part 1, the files parts 2, 3, ... (a comment's mail with its files, a
    thread's opening mail with the call's). Each file is read from its chunks as it is written."""
    message.make_mixed()
    holders: list[bytes] = []
    for name, media_type, _ in files:
        placeholder = f"USMFILE{uuid.uuid4().hex}"
        part = EmailMessage(policy=message.policy)
        part["Content-Type"] = normal_media_type(media_type) or GENERIC_TYPE
        part.add_header("Content-Disposition", "attachment", filename=name)
        part["Content-Transfer-Encoding"] = "base64"
        # Base64 characters only: the generator writes it as it is, and the boundary it picks
        # is checked against it (base64 lines never hold "-", so never a boundary line).
        part.set_payload(placeholder)
        message.attach(part)
        holders.append(placeholder.encode("ascii"))
    rest = message.as_bytes()
    size = 0
    with target.open("wb") as out:
        for holder, (_, _, chunks) in zip(holders, files, strict=True):
            head, found, rest = rest.partition(holder)
            if not found:  # pragma: no cover - the generator writes a base64 payload as given
                raise AssertionError("a file's place was not found in the rendered mail")
            size += out.write(head)
            for number, line in enumerate(base64_lines(chunks)):
                size += out.write(b"\r\n" + line if number else line)
        size += out.write(rest)
    return size
