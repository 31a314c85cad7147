"""The files a mail carries: which MIME parts are files, where each is, and its content in chunks.

A part is a *file* when it is not the mail's text: an attached file or an inline image
(``Content-Disposition`` ``attachment`` or ``inline`` with a file name, or a part with a file
name and no disposition), a part of another type than text (an image without a name, a PDF),
a forwarded mail (``message/rfc822``: the file is the forwarded mail, as a ``.eml``) and a TNEF
``winmail.dat`` (taken as it is: what Outlook wraps in it is not unwrapped). The mail's text is
not a file: the first ``text/plain`` or ``text/html`` part without a file name and not marked
``attachment``, and its alternatives; nor is the machinery of a delivery report
(``message/delivery-status``, ``text/rfc822-headers``), which the bounce logic reads; nor the
signature of an S/MIME-signed mail (the ``application/pkcs7-signature`` part of a
``multipart/signed``, ``smime.p7s``): it proves the sender to a mail client and means nothing
in a ticket, where each signed reply would otherwise add one more file.

A part is found again by its *path*, the IMAP section number (RFC 3501): ``2`` is the second
part of the top multipart, ``2.1`` the first part inside that; a mail that is a single part is
``1``. The same bytes always give the same paths, so ``<message-id>#<path>`` names the same file
on every read (:func:`attachment_id`).

Content is decoded chunk by chunk from the parsed part's encoded payload (base64,
quoted-printable, uuencode, or 7bit/8bit/binary as they are), never into one whole decoded copy
(:func:`decoded_chunks`). Decoding is strict where lenience would change the file: base64 with
characters outside its alphabet, data after its padding or a length that is not whole quanta,
uuencode without its ``begin`` line, and a part the message ends inside of (no closing boundary:
a truncated message) are *problems*. A part with a problem is still listed (so the flow notes
it and keeps a dead letter), and reading it raises :class:`UnreadablePart` naming the problem;
the mail itself is read as always.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import email.utils
import hashlib
import mimetypes
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Final

from usm_bridge.errors import PermanentRemoteError

__all__ = [
    "DECODE_CHUNK_CHARS",
    "FilePart",
    "PartHead",
    "UnreadablePart",
    "attachment_id",
    "decode_runs",
    "decoded_chunks",
    "file_parts",
    "find_part",
    "is_file",
    "part_head",
    "part_problem",
    "split_attachment_id",
    "transfer_encoding",
]

#: How many characters of encoded payload are decoded at a time (a multiple of 4 and of 76,
#: base64's line length: about 64 KiB decoded per chunk).
DECODE_CHUNK_CHARS: Final = 76 * 4 * 288
_BODY_TYPES: Final = frozenset({"text/plain", "text/html"})
_REPORT_MACHINERY: Final = frozenset({"message/delivery-status", "text/rfc822-headers"})
#: The signature part of a ``multipart/signed`` S/MIME mail (RFC 8551; the ``x-`` form is what
#: older clients, Outlook among them, still write).
_SIGNATURE_TYPES: Final = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature"}
)
_B64_ALPHABET: Final = re.compile(r"[^A-Za-z0-9+/=]")
_CID: Final = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)
_UU_BEGIN: Final = re.compile(r"^begin(?:-base64)? [0-7]{3,4} ?(.*)$")
#: The generator of a forwarded mail: its headers as its sender wrote them (never refolded into
#: encoded words, as the default policy does to a line over 78 characters), lines ended LF.
_AS_WRITTEN: Final = email.policy.default.clone(refold_source="none")


#: Python's own table of extensions only, never the host's ``/etc/mime.types``: a name made
#: from a type is part of the file's identity, and must not change when the bridge moves host.
_TYPES: Final = mimetypes.MimeTypes()


class UnreadablePart(PermanentRemoteError):
    """A file part whose content cannot be decoded as it is declared (bad base64, cut short):
    never retried; the flow refuses the file with this reason and keeps the mail."""


@dataclass(frozen=True)
class FilePart:
    """One file of a mail, as listed (its content is read with :func:`decoded_chunks`)."""

    #: The IMAP section number of the part (see the module docstring).
    path: str
    #: The name its sender gave it (RFC 2231 and 2047 decoded), or one made from its type
    #: (``image-2.png``, ``message-3.eml``) when it has none.
    name: str
    #: Whether ``name`` is the sender's (False: made from the type).
    named: bool
    #: The declared ``Content-Type`` (lower case, without parameters).
    declared_type: str
    #: The decoded size in bytes (0 for a part with a problem).
    size: int
    #: The SHA-256 of the decoded content (hex); ``None`` for a part with a problem.
    sha256: str | None
    #: Shown in the HTML body: an image it refers to by ``cid:``.
    inline: bool
    content_id: str | None
    #: Why the content cannot be taken, or ``None``.
    problem: str | None = None


def attachment_id(message_id: str, path: str) -> str:
    """The id of the file at ``path`` in the mail ``message_id``: ``<id@host>#2.1``."""
    return f"{message_id}#{path}"


def split_attachment_id(value: str) -> tuple[str, str]:
    """``(message_id, path)`` of an :func:`attachment_id` (a path never holds ``#``).

    :raises ValueError: not an attachment id of this connector.
    """
    message_id, hashmark, path = value.rpartition("#")
    if not hashmark or not message_id or not re.fullmatch(r"\d+(?:\.\d+)*", path):
        raise ValueError(f"{value!r} is not an e-mail attachment id (<message-id>#<part path>)")
    return message_id, path


def _kind(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _sections(message: Message) -> Iterator[tuple[str, Message, Message | None]]:
    """Every leaf part with its path and its parent multipart, in order; a forwarded mail is a
    leaf (its own parts belong to it)."""
    if not message.is_multipart() or _kind(message) == "message/rfc822":
        yield "1", message, None
        return

    def walk(part: Message, prefix: str) -> Iterator[tuple[str, Message, Message | None]]:
        payload = part.get_payload()
        listed = payload if isinstance(payload, list) else []
        children = [p for p in listed if isinstance(p, Message)]
        for number, child in enumerate(children, 1):
            path = f"{prefix}{number}"
            if child.is_multipart() and _kind(child) != "message/rfc822":
                yield from walk(child, f"{path}.")
            else:
                yield path, child, part

    yield from walk(message, "")


def find_part(message: Message, path: str) -> Message | None:
    """The leaf part at ``path`` (see :func:`_sections`), or ``None``."""
    for found, part, _ in _sections(message):
        if found == path:
            return part
    return None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _filename(part: Message) -> str | None:
    """The part's file name (``filename`` of its disposition, else ``name`` of its type), as
    its sender wrote it; ``None`` when it has none or the header cannot be read (a name is then
    made from the type: a name that cannot be read is no reason to refuse the content)."""
    try:
        name = part.get_filename() or part.get_param("name")
    except Exception:
        return None
    if isinstance(name, tuple):  # an RFC 2231 value the parser left undecoded
        name = email.utils.collapse_rfc2231_value(name)
    return str(name) if name else None


def _content_id(part: Message) -> str | None:
    try:
        value = part.get("Content-ID")
        text = "" if value is None else str(value).strip()
    except Exception:  # a header the parser cannot make sense of: no inline image, still a file
        return None
    return text[1:-1] if text.startswith("<") and text.endswith(">") else text or None


def _html_references(message: Message) -> set[str]:
    """Every ``cid:`` an HTML part of the mail refers to (lower case)."""
    found: set[str] = set()
    for _, part, _ in _sections(message):
        if _kind(part) != "text/html":
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # noqa: S112 - an unreadable body part refers to nothing
            continue
        if isinstance(payload, bytes):
            found.update(m.lower() for m in _CID.findall(payload.decode("latin-1")))
    return found


def _made_name(kind: str, path: str) -> str:
    if kind == "message/rfc822":
        stem, extension = "message", ".eml"
    else:
        stem = "image" if kind.startswith("image/") else "attachment"
        extension = _TYPES.guess_extension(kind, strict=False) or ".bin"
    return f"{stem}-{path.replace('.', '-')}{extension}"


@dataclass(frozen=True)
class PartHead:
    """What a leaf part's headers say of it: enough to tell whether it is a file."""

    kind: str
    disposition: str | None
    #: The name its sender gave it, or ``None``.
    name: str | None


def part_head(part: Message) -> PartHead:
    """The :class:`PartHead` of ``part`` (never raises: unreadable headers read as none)."""
    return PartHead(_kind(part), _disposition(part), _filename(part))


def is_file(head: PartHead, *, whole: bool, parent_kind: str | None) -> bool:
    """Whether a leaf part with ``head`` is a file (see the module docstring): ``whole`` when
    it is the mail itself (a single-part mail), ``parent_kind`` its multipart's type."""
    kind = head.kind
    if kind in _REPORT_MACHINERY:
        return False  # a bounce's machinery, read by the bounce logic
    if kind in _BODY_TYPES and head.disposition != "attachment" and head.name is None:
        return False  # the mail's text or one of its alternatives
    if whole and head.disposition != "attachment" and kind.startswith(("text/", "multipart/")):
        # A single-part mail of text is its body, whatever its subtype; a multipart whose
        # boundary is missing is nothing but its own (unreadable) body.
        return False
    # An S/MIME signature: the signed mail's proof of its sender, no file of the call.
    return not (kind in _SIGNATURE_TYPES and parent_kind == "multipart/signed")


def file_parts(message: Message) -> list[FilePart]:
    """The files of ``message`` in order, each decoded once to count and hash it (never held)."""
    sections = list(_sections(message))
    references: set[str] | None = None
    found: list[FilePart] = []
    for path, part, parent in sections:
        head = part_head(part)
        kind, name = head.kind, head.name
        parent_kind = _kind(parent) if parent is not None else None
        if not is_file(head, whole=part is message, parent_kind=parent_kind):
            continue
        if kind.startswith("multipart/") and not str(part.get_payload()).strip():
            continue  # an empty multipart: nothing in it
        content_id = _content_id(part)
        if references is None:
            references = _html_references(message)
        inline = content_id is not None and content_id.lower() in references
        problem = _structure_problem(part, parent)
        size, sha256 = 0, None
        if problem is None:
            try:
                digest = hashlib.sha256()
                for chunk in decoded_chunks(part):
                    digest.update(chunk)
                    size += len(chunk)
                sha256 = digest.hexdigest()
            except UnreadablePart as error:
                problem, size = error.remote_message or str(error), 0
        made = name or _made_name(kind, path)
        found.append(
            FilePart(path, made, name is not None, kind, size, sha256, inline, content_id, problem)
        )
    return found


def part_problem(message: Message, path: str) -> str | None:
    """Why the part at ``path`` cannot be read whatever its encoding (no such part, cut short,
    a multipart without boundaries), or ``None``; its encoding is checked as it is decoded."""
    for found, part, parent in _sections(message):
        if found == path:
            return _structure_problem(part, parent)
    return f"the mail has no part {path}"


def _structure_problem(part: Message, parent: Message | None) -> str | None:
    if parent is not None and any(
        isinstance(defect, email.errors.CloseBoundaryNotFoundDefect) for defect in parent.defects
    ):
        children = parent.get_payload()
        if isinstance(children, list) and children and children[-1] is part:
            return "the message ends inside this part (no closing boundary): it is cut short"
    if _kind(part).startswith("multipart/"):
        return "a multipart without part boundaries: its parts cannot be told apart"
    return None


def _unreadable(problem: str) -> UnreadablePart:
    return UnreadablePart(f"attachment cannot be read: {problem}", remote_message=problem)


def decoded_chunks(part: Message, chunk_chars: int = DECODE_CHUNK_CHARS) -> Iterator[bytes]:
    """The decoded content of the leaf ``part``, a chunk at a time.

    The encoded payload is the parsed part's (in memory with the mail); the decoded content is
    never whole: each chunk is decoded from a slice of it.

    :raises UnreadablePart: the content does not decode as its encoding declares.
    """
    kind = _kind(part)
    if kind == "message/rfc822":
        inner = part.get_payload()
        forwarded = inner[0] if isinstance(inner, list) and inner else None
        if not isinstance(forwarded, Message):
            raise _unreadable("a forwarded message (message/rfc822) without a message inside")
        # The forwarded mail as its sender wrote it: one copy, the decoded part itself.
        yield forwarded.as_bytes(policy=_AS_WRITTEN)
        return
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise _unreadable(f"a {kind} part without content")
    yield from decode_runs(transfer_encoding(part), _line_runs(payload, chunk_chars))


def transfer_encoding(part: Message) -> str:
    """The part's Content-Transfer-Encoding, lower case (``""`` when it has none)."""
    try:
        return str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
    except Exception:  # an unreadable header: the content is taken as it is
        return ""


def decode_runs(encoding: str, runs: Iterable[str]) -> Iterator[bytes]:
    """Decode a part's encoded content given as runs of whole lines (a slice of a parsed
    payload, or a stretch of a mail file read from disk): never whole, a run at a time.

    :raises UnreadablePart: the content does not decode as ``encoding`` declares.
    """
    if encoding == "base64":
        yield from _base64(runs)
    elif encoding == "quoted-printable":
        for run in runs:
            yield binascii.a2b_qp(_raw(run))
    elif encoding in ("x-uuencode", "uuencode", "uue", "x-uue"):
        yield from _uudecode(line for run in runs for line in run.splitlines())
    else:  # 7bit, 8bit, binary, none or unknown: the bytes as they are
        for run in runs:
            yield _raw(run)


def _line_runs(payload: str, chunk_chars: int) -> Iterator[str]:
    """``payload`` a run of whole lines of about ``chunk_chars`` at a time (a quoted-printable
    soft line break, a uuencoded line, is never split)."""
    start = 0
    while start < len(payload):
        end = payload.find("\n", start + chunk_chars)
        end = len(payload) if end < 0 else end + 1
        yield payload[start:end]
        start = end


def _raw(text: str) -> bytes:
    # The parser keeps 8-bit bytes as surrogate escapes: turned back into those very bytes.
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # a str payload set by a program, not parsed from bytes
        return text.encode("utf-8")


def _base64(runs: Iterable[str]) -> Iterator[bytes]:
    pending = ""
    ended = False
    for run in runs:
        text = "".join(run.split())
        bad = _B64_ALPHABET.search(text)
        if bad is not None:
            raise _unreadable(f"bad base64: the character {bad.group(0)!r} is not base64")
        if ended and text:
            raise _unreadable("bad base64: data after the padding that ends it")
        text = pending + text
        if "=" in text:
            end = text.index("=")
            if text[end:].strip("="):
                raise _unreadable("bad base64: data after the padding that ends it")
            if len(text) % 4:
                raise _unreadable("bad base64: padding where no 4-character group ends")
            ended = True
            whole = len(text)
        else:
            whole = len(text) - len(text) % 4
        text, pending = text[:whole], text[whole:]
        if text:
            try:
                yield base64.b64decode(text, validate=True)
            except binascii.Error as error:
                raise _unreadable(f"bad base64: {error}") from None
    if pending:
        raise _unreadable(
            f"bad base64: it ends {len(pending)} characters into a 4-character group "
            "(the part is cut short)"
        )


def _uudecode(text_lines: Iterable[str]) -> Iterator[bytes]:
    lines = iter(text_lines)
    for line in lines:
        if _UU_BEGIN.match(line.strip()):
            break
        if line.strip():
            raise _unreadable("uuencode without its 'begin' line")
    else:
        raise _unreadable("uuencode without its 'begin' line")
    batch: list[bytes] = []
    for line in lines:
        stripped = line.rstrip("\r\n")
        if stripped.strip() == "end":
            if batch:
                yield b"".join(batch)
            return
        if not stripped.strip() or stripped.strip() == "`":
            continue
        try:
            batch.append(binascii.a2b_uu(stripped))
        except binascii.Error:
            # Some encoders pad the last line short: Python's own uu decoder retries it so.
            try:
                length = ((ord(stripped[0]) - 32) & 63) * 4 // 3 + 1
                batch.append(binascii.a2b_uu(stripped[:length]))
            except (binascii.Error, IndexError):
                raise _unreadable("bad uuencode line") from None
        if len(batch) >= 1024:
            yield b"".join(batch)
            batch = []
    raise _unreadable("uuencode without its 'end' line (the part is cut short)")
