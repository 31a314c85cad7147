"""Reading real mail without ever giving up on it.

Mail in a shared mailbox comes from every client ever written: declared charsets that lie,
headers that do not parse, HTML with no text alternative, bounces, vacation replies, mailing
lists. A parse never raises for any of that: it returns what it could read and notes what it
could not, because one bad message must not stop a sync cycle (the worst outcome for a message
is a dead letter with a reason, decided by the connector, never an exception here).

Whether a message may be *answered* follows RFC 3834 and the rules in API-FACTS.md: an
``Auto-Submitted`` other than ``no``, an empty ``Return-Path``, ``Precedence: bulk|junk|list``,
any ``List-*`` header, ``X-Auto-Response-Suppress``, a delivery-status report, or mail that
carries a bridge's own marker. :attr:`ParsedMail.no_answer` says why, or is ``None``.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from html import unescape
from html.parser import HTMLParser
from typing import Final

from .addresses import read_mailboxes
from .mime_parts import FilePart, file_parts
from .robots import robot_address, robot_mail

__all__ = [
    "BRIDGE_HEADER",
    "NO_ID_DOMAIN",
    "REUSED_ID_DOMAIN",
    "Attachment",
    "ParsedMail",
    "content_digest",
    "decode_text",
    "derived_id",
    "html_to_text",
    "message_ids",
    "parse_headers",
    "parse_message",
]

#: Every outbound mail of the bridge carries this header (its instance name): mail that has it
#: and arrives in an inbox is the bridge's own mail coming back, never to be answered.
BRIDGE_HEADER: Final = "X-USM-Bridge"
_MSGID: Final = re.compile(r"<[^<>\s]+>")
_BULK: Final = frozenset({"bulk", "junk", "list"})
_BLOCK_TAGS: Final = frozenset(
    {"p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "pre", "hr", "section", "article", "header", "footer"}
)  # fmt: skip
_SKIP_TAGS: Final = frozenset({"script", "style", "head", "title"})
#: The headers that make a message what it is (see :func:`content_digest`). Trace and transport
#: headers (Received, Return-Path, Delivered-To, Authentication-Results, spam scores, ...) are
#: not among them: each delivery of the same message writes its own.
_SIGNIFICANT: Final = (
    "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id", "in-reply-to",
    "references", "content-type", "content-transfer-encoding",
)  # fmt: skip
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
#: The domains of identities the bridge derives (never a real host: RFC 2606 ``.invalid``).
NO_ID_DOMAIN: Final = "no-message-id.invalid"
REUSED_ID_DOMAIN: Final = "reused-message-id.invalid"
#: Where a ``<blockquote>`` starts and ends in the extracted text (private-use characters).
_QUOTE_IN: Final = "\ue002"
_QUOTE_OUT: Final = "\ue003"


@dataclass(frozen=True)
class Attachment:
    """A file the mail carries (:mod:`.mime_parts`): what the record lists of it. Its content
    stays in the mailbox until the connector's ``open_attachment`` decodes it."""

    #: The part's place in the mail (its IMAP section number): ``<message-id>#<path>`` is its id.
    path: str
    #: The name its sender gave it, or one made from its type (``named`` False).
    filename: str
    content_type: str
    size: int
    sha256: str | None = None
    named: bool = True
    #: An image the HTML body shows (``cid:``), not a file listed beside it.
    inline: bool = False
    #: Larger than the configured limit: a person must fetch it from the mailbox.
    over_limit: bool = False
    #: Why its content cannot be read (bad base64, cut short), or ``None``.
    problem: str | None = None

    @classmethod
    def of(cls, part: FilePart, limit: int) -> Attachment:
        return cls(
            part.path, part.name, part.declared_type, part.size, part.sha256, part.named,
            part.inline, part.size > limit, part.problem,
        )  # fmt: skip

    def as_json(self) -> dict[str, str | int | bool | None]:
        return {
            "path": self.path,
            "filename": self.filename,
            "named": self.named,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "inline": self.inline,
            "over_limit": self.over_limit,
            "problem": self.problem,
        }


@dataclass
class ParsedMail:
    """One message as the connector uses it; every field has a usable value."""

    #: The message's identity: its Message-ID, or one derived from its content when it has none
    #: (``...@no-message-id.invalid``); the connector gives another message reusing a Message-ID
    #: already held its own (``...@reused-message-id.invalid``).
    message_id: str
    subject: str
    #: ``Name <address>`` as written (decoded), or ``""`` when no address could be read.
    from_: str
    from_address: str | None
    #: Every address of the From header (RFC 5322 allows several; only one may command).
    from_addresses: list[str]
    reply_to: str | None
    to: list[str]
    cc: list[str]
    #: Normalised RFC 2822 date (the mapping parses it); ``when`` is the same as a datetime.
    date: str
    when: datetime
    in_reply_to: str | None
    references: list[str]
    body: str = ""
    body_truncated: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    #: Why this message must never be answered (RFC 3834), or ``None``.
    no_answer: str | None = None
    #: ``bounce``, ``auto_reply``, ``list``, ``bulk``, ``loop`` or ``None`` for a person's mail.
    auto_kind: str | None = None
    #: The Message-ID a delivery-status report is about (threads the bounce).
    bounce_of: str | None = None
    received_hops: int = 0
    #: Each Authentication-Results header as written, with the Received headers above it.
    auth_results: list[tuple[int, str]] = field(default_factory=list)
    #: The bridge's own ``X-USM-*`` headers (lower-cased names without the prefix).
    usm: dict[str, str] = field(default_factory=dict)
    #: What could not be read cleanly (kept in the record so a person sees it).
    defects: list[str] = field(default_factory=list)
    #: The Message-ID as written, or ``None`` when the message has none.
    written_id: str | None = None
    #: :func:`content_digest` of what was parsed: the whole message (:func:`parse_message`), or
    #: the header block and the size given (:func:`parse_headers`).
    digest: str = ""


def _significant_headers(head: bytes) -> bytes:
    """The significant headers of a header block, unfolded, in their written order, one
    ``name: value`` line each with runs of white space made one space (folding and line ends
    differ between a Maildir file, an IMAP server's copy and a resend of the same message)."""
    lines: list[bytes] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b" " + line.strip()
        else:
            lines.append(line)
    kept: list[bytes] = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower().decode("latin-1") in _SIGNIFICANT:
            kept.append(name.strip().lower() + b": " + b" ".join(value.split()))
    return b"\n".join(kept)


def content_digest(raw: bytes, *, size: int | None = None) -> str:
    """What makes a message *this* message, as a SHA-256 hex digest: its significant headers
    (From, Sender, Reply-To, To, Cc, Subject, Date, Message-ID, In-Reply-To, References and
    the MIME type and encoding) and its body, line ends made LF and trailing blank lines
    dropped. Two deliveries of one message (two folders, a re-delivery, a resync after a new
    UIDVALIDITY) have the same digest; a different body or any of those headers changed (a
    reused Message-ID) another. Never the UID, the arrival time or trace headers.

    :param size: for a message only the headers of which are read (over the size limit): its
        size in bytes stands in for the body it was not read for.
    """
    found = _HEAD_END.search(raw)
    head, body = (raw[: found.start()], raw[found.end() :]) if found else (raw, b"")
    digest = hashlib.sha256(_significant_headers(head))
    digest.update(b"\n\n")
    digest.update(body.replace(b"\r\n", b"\n").rstrip(b"\n"))
    if size is not None:
        digest.update(f"\n\nsize {size}".encode())
    return digest.hexdigest()


def derived_id(digest: str, domain: str = NO_ID_DOMAIN) -> str:
    """The Message-ID-like identity the bridge gives a message from its :func:`content_digest`."""
    return f"<{digest[:32]}@{domain}>"


def message_ids(text: str | None) -> list[str]:
    """Every ``<id>`` in a Message-ID, In-Reply-To or References header, in order."""
    return _MSGID.findall(text or "")


def decode_text(raw: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode ``raw`` trusting the declared charset only as far as it works.

    :returns: the text and a note when the declared charset was unknown or wrong.
    """
    declared = (charset or "us-ascii").strip().strip('"').lower()
    try:
        return raw.decode(declared), None
    except LookupError:
        note = f"unknown charset {declared!r}"
    except UnicodeDecodeError:
        note = f"text does not match its declared charset {declared!r}"
    for guess in ("utf-8", "cp1252"):
        try:
            return raw.decode(guess), note
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), note  # every byte is a latin-1 character


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag == "blockquote":
            self.parts.append(f"\n{_QUOTE_IN}\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = []
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "blockquote":
            self.parts.append(f"\n{_QUOTE_OUT}\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag == "a" and self.href is not None:
            text = "".join(self.link_text).strip()
            if self.href.startswith(("http:", "https:", "mailto:")) and self.href != text:
                self.parts.append(f" ({self.href})")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.parts.append(data)
        if self.href is not None:
            self.link_text.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML mail: paragraphs kept, scripts and styles dropped, links shown,
    ``<blockquote>`` (how mail clients quote in HTML) marked ``>`` per level as in plain text,
    so a reply's quoted history is recognised there too (:mod:`.reply_text`)."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:
        return unescape(re.sub(r"<[^>]*>", " ", html)).strip()
    lines: list[str] = []
    depth = 0
    for raw in "".join(extractor.parts).splitlines():
        depth = max(0, depth + raw.count(_QUOTE_IN) - raw.count(_QUOTE_OUT))
        line = " ".join(raw.replace(_QUOTE_IN, "").replace(_QUOTE_OUT, "").split())
        lines.append(f"{'> ' * depth}{line}" if line and depth else line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _decode_header(value: str) -> str:
    """A header's text with encoded words decoded; never raises."""
    try:
        parts = email.header.decode_header(value)
    except Exception:
        return " ".join(value.split())
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(decode_text(chunk, charset)[0])
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def _raw_items(message: Message) -> list[tuple[str, str]]:
    """The headers in order as written (encoded words not decoded); never raises."""
    found: list[tuple[str, str]] = []
    items = message.raw_items() if isinstance(message, EmailMessage) else message.items()
    for name, value in items:
        text = value if isinstance(value, str) else str(value)
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            # Raw 8-bit bytes in a header (not allowed, but common): read them as text.
            text = decode_text(text.encode("utf-8", "surrogateescape"), "utf-8")[0]
        found.append((name.lower(), text))
    return found


def _headers(message: Message) -> dict[str, list[str]]:
    """Raw headers, decoded but not interpreted: a broken header cannot make this raise."""
    found: dict[str, list[str]] = {}
    for name, text in _raw_items(message):
        found.setdefault(name, []).append(_decode_header(text))
    return found


def _raw_headers(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    """The headers as written by lower-case name: addresses are read from these."""
    found: dict[str, list[str]] = {}
    for name, text in items:
        found.setdefault(name, []).append(text)
    return found


def _auth_results(items: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """Each Authentication-Results header (raw) with the number of Received headers above it:
    which hop added it (headers are prepended, so 0 means above every Received)."""
    found: list[tuple[int, str]] = []
    hops = 0
    for name, text in items:
        if name == "received":
            hops += 1
        elif name == "authentication-results":
            found.append((hops, text))
    return found


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name.lower())
    return values[0] if values else None


def _addresses(values: list[str] | None) -> list[tuple[str, str]]:
    """The mailboxes of a header's raw values: see :mod:`.addresses` (never from encoded words)."""
    return [(_decode_header(box.name), box.address) for box in read_mailboxes(values or [])]


def _format(pair: tuple[str, str]) -> str:
    """``Name <address>`` as text for people and mappings (not for a header: not encoded)."""
    name, address = pair
    if not name:
        return address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'"{quoted}" <{address}>' if re.search(r'[(),.:;<>@\[\]"]', name) else f"{name} <{address}>"
    )


def _no_answer(
    headers: dict[str, list[str]], content_type: str, report_type: str, senders: list[str]
) -> tuple[str | None, str | None]:
    """(why the message must not be answered, its kind) per RFC 3834 and API-FACTS.md."""
    if _first(headers, BRIDGE_HEADER) is not None:
        return "carries a bridge's own marker (the bridge's mail came back)", "loop"
    if content_type == "multipart/report" and report_type in (
        "delivery-status",
        "disposition-notification",
    ):
        return f"a {report_type} report (bounce or receipt)", "bounce"
    auto = (_first(headers, "Auto-Submitted") or "").strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        kind = "auto_reply" if auto.startswith("auto-replied") else "bulk"
        return f"Auto-Submitted: {auto}", kind
    return_path = _first(headers, "Return-Path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return "empty Return-Path (a notification or bounce)", "bounce"
    precedence = (_first(headers, "Precedence") or "").strip().lower()
    if precedence in _BULK:
        return f"Precedence: {precedence}", "list" if precedence == "list" else "bulk"
    lists = sorted(name for name in headers if name.startswith("list-"))
    if lists:
        return f"mailing list ({lists[0]})", "list"
    if "x-auto-response-suppress" in headers:
        return "X-Auto-Response-Suppress is set", "auto_reply"
    if any(name in headers for name in ("x-autoreply", "x-autorespond")):
        return "an automatic reply (X-Autoreply)", "auto_reply"
    if any(robot_address(sender) == "a mailer daemon" for sender in senders):
        return "sent by a mailer daemon", "bounce"
    return None, None


def _bounce_of(message: Message) -> str | None:
    """The Message-ID a delivery-status report returns, from its message or headers part."""
    for part in message.walk():
        kind = part.get_content_type()
        try:
            if kind == "message/rfc822":
                payload = part.get_payload()
                inner = payload[0] if isinstance(payload, list) and payload else None
                if isinstance(inner, Message):
                    ids = message_ids(_first(_headers(inner), "Message-ID"))
                    if ids:
                        return ids[0]
            elif kind == "text/rfc822-headers":
                raw = part.get_payload(decode=True)
                text = raw.decode("latin-1") if isinstance(raw, bytes) else str(part.get_payload())
                found = re.search(r"(?im)^message-id:\s*(<[^<>\s]+>)", text)
                if found:
                    return found.group(1)
        except Exception:  # noqa: S112 - a broken report part: try the next
            continue
    return None


def _date(headers: dict[str, list[str]], fallback: datetime) -> tuple[str, datetime, str | None]:
    raw = _first(headers, "Date")
    if raw:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return email.utils.format_datetime(when), when, None
    note = f"unreadable Date {raw[:60]!r}: arrival time used" if raw else "no Date: arrival used"
    return email.utils.format_datetime(fallback), fallback, note


def parse_headers(
    raw: bytes, *, arrived: datetime | None = None, size: int | None = None
) -> ParsedMail:
    """Parse the header block only: enough to thread, loop-check and size-check a message.

    Without a Message-ID its identity is derived from the headers and ``size`` (the message's
    size in bytes) only: the connector reads such a message whole and takes the identity of
    :func:`parse_message`, which covers the body, unless the mail is over its size limit (it is
    read only in part, and keeps this identity).
    """
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return _parse(message, content_digest(raw, size=size), arrived=arrived, with_body=False)


def parse_message(
    raw: bytes,
    *,
    arrived: datetime | None = None,
    max_body_chars: int = 100_000,
    max_attachment_bytes: int = 10_000_000,
) -> ParsedMail:
    """Parse a whole message: headers, readable body text, attachment metadata.

    :param arrived: when the mailbox received it (the fallback for a missing or broken Date).
    :param max_body_chars: the body text is cut here (and ``body_truncated`` set).
    :param max_attachment_bytes: larger attachments are flagged ``over_limit``. Each file is
        decoded once here to count and hash it (never held whole: see :mod:`.mime_parts`).
    """
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parsed = _parse(message, content_digest(raw), arrived=arrived, with_body=True)
    body, notes = _body(message)
    if len(body) > max_body_chars:
        body, parsed.body_truncated = body[:max_body_chars], True
    parsed.body = body
    parsed.defects.extend(notes)
    parsed.attachments, notes = _attachments(message, max_attachment_bytes)
    parsed.defects.extend(notes)
    return parsed


def _parse(
    message: Message, digest: str, *, arrived: datetime | None, with_body: bool
) -> ParsedMail:
    items = _raw_items(message)
    written = _raw_headers(items)
    headers = {name: [_decode_header(v) for v in values] for name, values in written.items()}
    defects = sorted({type(defect).__name__ for defect in message.defects})
    ids = message_ids(_first(headers, "Message-ID"))
    if ids:
        message_id = ids[0]
    else:
        # Stable across re-reads and UIDVALIDITY changes: derived from the content itself.
        message_id = derived_id(digest)
        covers = "headers and body" if with_body else "headers and size"
        defects.append(f"no Message-ID: {message_id} was derived from its {covers}")
    date, when, note = _date(headers, arrived or datetime.now(UTC))
    if note:
        defects.append(note)
    senders = _addresses(written.get("from"))
    if not senders and headers.get("from"):
        defects.append("unreadable From")
    if len(senders) > 1:
        defects.append(f"{len(senders)} addresses in From: the first is answered, none commands")
    replies = _addresses(written.get("reply-to"))
    content_type = message.get_content_type() if _safe_type(message) else "text/plain"
    report_type = str(message.get_param("report-type", "") or "").lower()
    no_answer, auto_kind = _no_answer(
        headers, content_type, report_type, [address for _, address in senders]
    )
    if no_answer is None:
        # Beyond RFC 3834: robots and lists known by address or header. Still a call (the
        # kind stays a person's), only never answered.
        no_answer = robot_mail(
            written, [address for _, address in senders], [address for _, address in replies]
        )
    usm = {
        name.removeprefix("x-usm-"): values[0]
        for name, values in headers.items()
        if name.startswith("x-usm-")
    }
    return ParsedMail(
        message_id=message_id,
        subject=_first(headers, "Subject") or "",
        from_=_format(senders[0]) if senders else "",
        from_address=senders[0][1] if senders else None,
        from_addresses=[address for _, address in senders],
        reply_to=replies[0][1] if replies else None,
        to=[_format(pair) for pair in _addresses(written.get("to"))],
        cc=[_format(pair) for pair in _addresses(written.get("cc"))],
        date=date,
        when=when,
        in_reply_to=next(iter(message_ids(_first(headers, "In-Reply-To"))), None),
        references=message_ids(" ".join(headers.get("references", []))),
        no_answer=no_answer,
        auto_kind=auto_kind,
        bounce_of=_bounce_of(message) if with_body and auto_kind == "bounce" else None,
        received_hops=len(headers.get("received", [])),
        auth_results=_auth_results(items),
        usm=usm,
        defects=defects,
        written_id=ids[0] if ids else None,
        digest=digest,
    )


def _safe_type(part: Message) -> bool:
    try:
        part.get_content_type()
    except Exception:
        return False
    return True


def _decoded(part: Message) -> tuple[str, str | None]:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        text = part.get_payload()
        return (text if isinstance(text, str) else ""), "undecodable part"
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_text(payload, charset)


def _is_attachment(part: Message) -> bool:
    try:
        disposition = part.get_content_disposition()
        filename = part.get_filename()
    except Exception:
        return True
    return disposition == "attachment" or (filename is not None and disposition != "inline")


def _leaves(message: Message) -> list[Message]:
    """Leaf parts in order, not descending into attached messages (a forward is an attachment)."""
    if message.get_content_type() == "message/rfc822":
        return [message]
    if message.is_multipart():
        payload = message.get_payload()
        parts = payload if isinstance(payload, list) else []
        return [leaf for part in parts if isinstance(part, Message) for leaf in _leaves(part)]
    return [message]


def _body(message: Message) -> tuple[str, list[str]]:
    notes: list[str] = []
    leaves = [part for part in _leaves(message) if _safe_type(part)]
    texts = [p for p in leaves if p.get_content_type() == "text/plain" and not _is_attachment(p)]
    htmls = [p for p in leaves if p.get_content_type() == "text/html" and not _is_attachment(p)]
    if texts:
        text, note = _decoded(texts[0])
    elif htmls:
        html, note = _decoded(htmls[0])
        text = html_to_text(html)
    else:
        return "", ["no readable text part"]
    if note:
        notes.append(note)
    return text.replace("\r\n", "\n").strip(), notes


def _attachments(message: Message, limit: int) -> tuple[list[Attachment], list[str]]:
    """The mail's files (:func:`.mime_parts.file_parts`), and a note for each that cannot be
    read: the mail is read all the same (see the module docstring)."""
    try:
        parts = file_parts(message)
    except Exception as error:  # the parser built a tree nothing else expects: say so
        return [], [f"attachments unreadable: {type(error).__name__}: {error}"[:300]]
    notes = [f"attachment {p.path} ({p.name}): {p.problem}" for p in parts if p.problem]
    return [Attachment.of(part, limit) for part in parts], notes
