"""The e-mail connector: a shared mailbox as a link in the chain.

What a record is
    One *thread*. ``remote_id`` is the Message-ID of its first message, ``remote_key`` its
    reference token (``HR-42``) once the bridge gave it one. ``data`` is the first message
    (``message_id, subject, from, to, cc, date, body, in_reply_to, references, attachments``)
    with the later ones under ``replies`` (each also with ``direction`` in/out and ``public``),
    plus what the connector worked out: ``reference_token``, ``status`` (see "Status" below),
    ``fulfilled_at`` / ``confirmed_at`` (the mail dates that made it so; ``confirmed_by`` the
    confirming mail's sender, ``confirmed_via`` ``reply``, ``command`` or ``bridge``),
    ``held`` (why nobody was told of the call) and ``commands`` (every status command in the
    thread, with whether it was obeyed and why not).

Status
    A mailbox has no status field, so the thread's messages make one, the latest in thread
    order winning: a status the bridge announced (its ``X-USM-Status`` header), a status
    command obeyed (below), or the customer's answer to the bridge's last request for
    confirmation (``confirmed``, or ``in_progress`` for a "no"). Thread order is the order of
    the dates, except that a reply always comes after the message it answers (the clocks of
    mail clients are not exact).

Status commands (:mod:`.commands`)
    ``Status: fulfilled`` (or another status) at the top of a reply sets the call's status,
    through ``status`` in the record like any other change of the tool, when the sender may
    act on the call: one of the desk's ``agents`` (settings), or, in a thread the bridge
    opened by mailing a supplier, that supplier. Only a person's mail counts (never an
    automatic one, nor the mailbox's own address), and only a reply to a message of the
    thread (In-Reply-To or References: a reference token in the subject is easy to guess).
    Anybody can write any From: it counts only when the unit's receiving server vouches for
    it in an ``Authentication-Results`` header (an aligned DMARC, DKIM or SPF pass from one of
    the ``trusted_authserv_ids``, see :mod:`.authres`) or the unit trusts its relay
    (``trust_relay``); the sender is read from the raw header, never from a display name
    (:mod:`.addresses`), and a From with several addresses never commands.
    The command lines are taken out of the reply's text; a reply that was only a command is
    no comment at all. An obeyed command is announced to the requester the way the bridge
    announces a status (for ``fulfilled``, the request for confirmation), once, unless the
    bridge opened the thread itself (its customer is the bridge). A sender who may command but
    names no status we know is told why by mail; anybody else's command is not one (the mail
    stays an ordinary reply, the log says so). Agents never answer a request for
    confirmation: only the customer confirms.

Threading
    Messages are joined through Message-ID, In-Reply-To and References, a bounce through the
    Message-ID of the message it returns, and a message without any of those through the
    reference token in its subject. The whole mailbox's headers are indexed (and cached per
    UIDVALIDITY and UID, so a cycle fetches only new headers); a thread whose message is new is
    read again in full.

Message identity (no message vanishes)
    Every message delivered ends as one call, comment or dead letter. A message is known by its
    Message-ID; without one, by ``<digest@no-message-id.invalid>`` (:func:`.parsing.content_digest`
    of its significant headers and body; headers and size for one over ``max_message_bytes``,
    which is read only in part, see below). Messages
    under one Message-ID are read whole and compared by that digest: the same content is the
    same message delivered again (one outcome, ``deliveries`` counted; the bridge's own mail
    come back into the inbox, and a mailing list's copy of a message also sent to the mailbox
    directly, too), a different one is kept under
    ``<digest@reused-message-id.invalid>`` with a note; the first by :attr:`_Entry.rank` keeps
    the Message-ID. Never the UID: identities survive a new UIDVALIDITY.

Reading incrementally
    The cursor keeps (UIDVALIDITY, last UID) per folder (the inbox and the Sent folder or
    outbox). A changed UIDVALIDITY re-reads that folder: thread ids are Message-IDs, so the
    resync yields the same records again and never new ones.

A quiet cycle costs nothing
    A read asks the mailbox for UIDs only (``UID SEARCH UID n:*``, and for the Sent folder's
    pending copies a search by their mark) and fetches headers only above the last UID it
    indexed, so a read with nothing new fetches no header and no message and skips threading.
    A new process (no index yet) whose cursor finds both folders with the same UIDVALIDITY,
    nothing above the cursor and nothing pending answers with the same cursor without building
    the index; with anything new it indexes the whole mailbox's headers once, as threading
    needs. The pending mark of copies already indexed is taken from that search each read: a
    copy another process of the bridge finished is never handed to SMTP again. (CONDSTORE is
    not used: the one flag acted on is learned by that one search on every server.)

Dead letters
    A message that must not become a call (a mail loop, a bounce or auto-reply
    belonging to no thread, bulk mail, a refused sender) is yielded as a record whose ``data``
    holds ``dead_letter: {"reason": ...}`` and the message's headers. The connector's plugin
    answers ``usm_bridge_map_inbound`` for such records by raising ``MappingError(reason)``, so
    the engine dead-letters it with that reason, through the ordinary path, and the read goes on.

Mail over max_message_bytes (:mod:`.big_mail`)
    A mail is parsed whole up to ``max_message_bytes`` (parsing takes about eight times a
    mail's size in memory). A larger one is never held back for its size: it is read from
    the mail on disk (the Maildir file, or the IMAP message fetched into a temporary file by
    partial FETCHes), its headers and text as always and its files in order while the mail as
    read stays within the bound; each other file is listed with its size. A person's such
    file is refused: its ``problem`` says the mail's size and the limit ("raise it to carry
    this file"), and opening it raises :class:`~.mime_parts.UnreadablePart`, which the flow
    turns into a refused file (a note and a dead letter). The bridge's own mail (its Sent
    copy, with its marker) is never refused for its size: its files are listed with their
    SHA-256 and decoded from the mail on disk, so a retry after a crash finds a file in a
    large mail already sent (``_file_in``) and the copy is part of its thread, no dead letter.
    A mail that cannot be read within the bound (its headers and boundaries alone over it, a
    header block over 256 KB, multiparts nested over 100 deep, over 10 000 parts) is a dead
    letter saying why (:class:`~.big_mail.BeyondBound`), never parsed whole; the other mails
    go on.

Replies as comments (:mod:`.reply_text`)
    A person's reply's ``body`` in ``replies`` is only what it adds: its quoted history
    (``On ... wrote:`` and ``>`` lines, Outlook's header block), signature, legal disclaimer
    (``disclaimer_starts``) and any repeat of the bridge's own mails in the thread (its
    acknowledgement quoted back) are cut, in the ``reply_languages``. The whole text stays in
    ``full_body`` and what was cut is named in ``cleaned``. A reply that adds nothing is kept
    as an internal note saying so (``kind: quote_only``, ``no_new_text``), never an empty
    comment; after an obeyed status command, quoted history alone makes no comment at all.
    The first message of a thread (the call's description) is kept whole.

Writing
    Every outbound mail carries Message-ID, In-Reply-To, References, ``Auto-Submitted:
    auto-replied``, ``X-Auto-Response-Suppress: All`` and the bridge's ``X-USM-*`` headers. A
    copy goes to the Sent folder (IMAP) or outbox (Maildir) first, marked pending, then to SMTP,
    then the mark is cleared. Every Message-ID is derived from what the mail is for, so a retry
    of the same write finds its own copy instead of making another: a create's and a comment's
    from their correlation, an acknowledgement's from the mail it answers, an announcement's
    from the command, an update's from what it says and the thread it says it in (the same
    update on an unchanged thread is the same mail, said once).

Pending copies (every mail decided on is delivered once by Message-ID)
    A copy still marked pending was decided on but is not known to have reached the relay (a
    kill in mid-send, a relay that refused it for now). It is *finished* before anything judges
    the mailbox: every read, and every update or comment before it looks at its thread, first
    hands each pending copy to SMTP as stored (its own Message-ID) and clears the mark; only
    then are acknowledgements, announcements and statuses decided, so a pending copy is never
    taken for a mail sent, nor left behind when a retry writes anew. A relay that refuses a
    copy for good (5xx) has it removed and a dead letter saying so; one that refuses for now
    fails a write, which is retried with the copy still pending, and never a read (below).
    The only copies a
    read leaves alone are pending creates: ``find_by_correlation`` does not know them and only
    ``create`` (the engine's retry, which also links the record) finishes them, so their thread
    is not read before then. At least once: a copy the relay took just before a kill that came
    before the mark was cleared is handed over again, the very same message (same Message-ID,
    which receivers treat as one); never a second mail under another Message-ID.

Owed mail (the relay never stops intake)
    The mail a read itself decides on (an acknowledgement, the announcement of an obeyed
    command, the answer to a refused one) is owed: its copy is kept pending first, then the
    relay is tried once. A permanent refusal (5xx at MAIL FROM, RCPT TO or DATA: a forged or
    mistyped sender, a relay that will not relay) yields a dead letter for it (``remote_id``
    its Message-ID, derived from what it answers, so a re-read refused again is the same dead
    letter, its attempts counted), right after the call's record: the call is stored all the
    same and the read goes on. The copy is removed only when the cursor after that letter
    comes back to a later read (the letter is stored); a kill before leaves it pending, so the
    next process tries it again and its refusal is a dead letter again. A temporary refusal
    (4xx), a relay that is down, or one that refuses the bridge itself before any message (its TLS
    certificate, no STARTTLS, a refused sign-in: settings to put right, no message's fault)
    leaves the copy pending and the read goes on; later reads try the pending
    copies again, after a wait that starts at ``backoff_initial`` and doubles up to
    ``backoff_max`` (none at all is tried meanwhile), and each is sent once when the relay
    takes mail again.

Never answering machines (RFC 3834)
    Acknowledgements go only to people: never to auto-replies, bounces, lists, bulk mail, the
    bridge's own mail, senders held or refused, mail older than a limit, or a sender already
    answered too often within the hour; nor to robots (:mod:`.robots`: ``-request``,
    ``owner-``, ``-owner``, ``postmaster``, ``MAILER-DAEMON``, no-reply addresses, mail with
    ``X-Mailman-*`` headers or sent to an empty group such as ``Undisclosed-Recipients:;``),
    whose mail is still a call. No mail of the bridge in a thread (announcement, refusal,
    comment) is handed to SMTP for a robot: its copy is kept in the thread, the log says why.

One thing at a time
    The daemon uses one connector from several threads at once: its cycle reads, its push
    job writes (a comment, a status mail), other targets' pushes read its files. The
    connector's header index, pending copies and relay state are shared by all of them, so
    every operation holds the connector's lock, a read for each step up to the next record
    it yields: two threads finishing the same pending copy mailed it twice (measured: 313
    mails handed to the relay for 195 Message-IDs with a read, comments and file reads in
    three threads; once each with the lock), and a read threading the index while another
    thread added to it failed. Between two steps a read holds nothing: the engine reads the
    files of the records it was given (on its own thread, while the read-ahead thread waits
    with the read) and pushes write meanwhile; what they add to the index lies past the
    read's checkpoints, which the next read takes up. The watcher has a store of its own and
    takes no lock.

Files (:mod:`.mime_parts`, :mod:`.outbound_files`)
    In: every file part of every mail of a thread (attached files, inline images, forwarded
    mails, ``winmail.dat``) is listed by ``list_attachments`` under ``<message-id>#<part path>``
    (the part's IMAP section number: the same part of the same mail is the same file on every
    read), ``comment_id`` the reply's Message-ID; ``open_attachment`` fetches the mail and
    decodes the part in chunks. A part that does not decode (bad base64, a message cut short)
    is listed, and opening it raises :class:`~.mime_parts.UnreadablePart` (permanent): the
    flow refuses that file; the mail is a call or comment as always. A read fills each
    record's ``RawRecord.attachments`` with the same list, from the mails it parsed already
    (no fetch more), and each message's JSON lists its files in ``attachments`` too (path,
    name, type, size, SHA-256, ``problem``).
    Out: mail is sent once per comment, so ``put_attachment`` with a ``comment`` whose mail is
    not made yet makes it, with the file attached (the comment's own Message-ID: ``add_comment``
    later finds that copy and sends nothing more); a further file of a comment whose mail is
    made already, and a file without a comment, go in a short mail of their own (kind
    ``file``) to the requester, naming the call, in answer to the comment's mail if any. Such a
    mail's Message-ID is derived from the thread, the comment, the file's SHA-256 and name, and
    delivered like every mail of the bridge (copy first, pending, then SMTP): a retry finds its
    copy and sends nothing twice. An acknowledgement carries no file: it is written during a
    read, before the flow has any file for the call. A mail larger than the relay's SIZE (from
    its EHLO) is not made: the error is permanent (a dead letter for the file), and a comment's
    mail still goes, saying which file could not be attached; a relay refusing it at DATA (552)
    is handled the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import email.utils
import functools
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import BinaryIO, ClassVar, Concatenate, Final, ParamSpec, TypeVar, cast

from pydantic import JsonValue
from usm_bridge.attachments import SpooledFile, safe_file_name, spool
from usm_bridge.attachments.streams import scratch_folder
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    FileWrite,
    OutgoingFile,
    RawRecord,
    RemoteAttachment,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
    VocabularyValue,
)
from usm_bridge.errors import (
    AttachmentTooLarge,
    PermanentRemoteError,
    RemoteError,
    RetriableRemoteError,
)

from .authres import vouched
from .big_mail import BeyondBound, Reduced, dropped_chunks, reduce_mail
from .commands import TYPES_UNDERSTOOD, UNDERSTOOD, read_status, read_type, split_commands
from .idle import IdleWatch
from .maildir_watch import watch_maildir
from .mime_parts import (
    UnreadablePart,
    attachment_id,
    decoded_chunks,
    find_part,
    part_problem,
    split_attachment_id,
)
from .oauth import TokenSource
from .outbound_files import write_with_file, write_with_files
from .parsing import (
    BRIDGE_HEADER,
    REUSED_ID_DOMAIN,
    Attachment,
    ParsedMail,
    content_digest,
    derived_id,
    parse_headers,
    parse_message,
)
from .reply_text import CleanReply, clean_reply
from .robots import robot_address
from .settings import EmailSettings, ImapSettings, SmtpSettings
from .smtp import RelayRefusedBridge, SmtpSender
from .stores import FolderRole, ImapStore, MaildirStore, MailStore, StoredHeader
from .tls import tls_context

__all__ = ["DEAD_LETTER_KEY", "NO_NEW_TEXT", "EmailConnector"]

log = logging.getLogger(__name__)

#: The key of ``RawRecord.data`` that asks for a dead letter (see the module docstring).
DEAD_LETTER_KEY: Final = "dead_letter"
ROLES: Final[tuple[FolderRole, ...]] = ("inbox", "sent")
#: The comment a reply that only quoted earlier mail becomes (internal: kind ``quote_only``).
NO_NEW_TEXT: Final = (
    "(No new text: this reply only quoted earlier mail. The whole message is kept in the "
    "call's record.)"
)
STATUSES: Final = (
    "registered",
    "classified",
    "in_progress",
    "waiting:customer",
    "waiting:supplier",
    "waiting:secondary_process",
    "fulfilled",
    "confirmed",
    "closed",
    "cancelled",
)
#: Statuses a call keeps its fulfilment (and confirmation) date in.
_DONE: Final = frozenset({"fulfilled", "confirmed", "closed"})
#: Kinds of the bridge's automatic answers to a person (rate-limited per sender).
_ANSWERS: Final = frozenset({"ack", "command-refused"})
#: The shortest pause before the IDLE watcher connects again (seconds).
_RECONNECT_MIN: Final = 0.5
T = TypeVar("T")
P = ParamSpec("P")


def _one_at_a_time(
    method: Callable[Concatenate[EmailConnector, P], T],
) -> Callable[Concatenate[EmailConnector, P], T]:
    """``method`` run holding the connector's lock (see "One thing at a time")."""

    @functools.wraps(method)
    def locked(self: EmailConnector, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class _RefusedForGood(Exception):
    """Mail a read owes was refused for good by the relay: the refusal is kept for the read to
    yield as a dead letter (never out of the connector); the copy stays until the cursor after
    that letter comes back (see ``_condemned``)."""


@dataclass
class _Entry:
    """One message of the index: where it is, and its headers (its body once read)."""

    role: FolderRole
    uid: int
    size: int
    #: A copy of the bridge's not yet known to be handed to SMTP (see "Pending copies").
    pending: bool
    arrived: datetime
    head: ParsedMail
    full: ParsedMail | None = None
    #: Why this message is a dead letter on its own (unreadable, a loop), or None.
    rejected: str | None = None
    #: Why its identity is not its Message-ID (another message already holds that), or None.
    renamed: str | None = None

    @property
    def key(self) -> tuple[FolderRole, int]:
        return (self.role, self.uid)

    @property
    def content(self) -> str:
        """What makes it this message (:func:`.parsing.content_digest`): of the whole message
        once read, else of its headers and size."""
        return (self.full or self.head).digest

    @property
    def rank(self) -> tuple[int, datetime, int, str]:
        """Of several messages under one Message-ID the first keeps it: the bridge's own copy,
        then the earliest arrival (INTERNALDATE, a Maildir file's time), then the order the
        folder received them in (UIDs ascend with it: arrival times have whole seconds; a
        folder renumbered under a new UIDVALIDITY keeps its order), then the content."""
        return (0 if self.outbound else 1, self.arrived, self.uid, self.content)

    def rename(self, identity: str, why: str) -> None:
        """Give the message ``identity`` instead of the Message-ID it carries, saying ``why``."""
        self.renamed = why
        for mail in filter(None, (self.head, self.full)):
            mail.message_id = identity
            if why not in mail.defects:
                mail.defects.append(why)

    @property
    def outbound(self) -> bool:
        return self.role == "sent"

    @property
    def order(self) -> tuple[datetime, int, int]:
        return (self.head.when, ROLES.index(self.role), self.uid)


@dataclass
class _Thread:
    root: _Entry
    members: list[_Entry] = field(default_factory=list)
    #: Further deliveries of members (the same identity: see "Message identity").
    copies: list[_Entry] = field(default_factory=list)

    def deliveries(self, entry: _Entry) -> int:
        """How many times ``entry``'s message is in the mailbox (the Sent folder counted)."""
        return 1 + sum(1 for c in self.copies if c.head.message_id == entry.head.message_id)

    @property
    def token(self) -> str | None:
        for entry in self.members:
            if entry.outbound and entry.head.usm.get("reference"):
                return entry.head.usm["reference"]
        return None


@dataclass
class _Folder:
    validity: int
    entries: dict[int, _Entry] = field(default_factory=dict)


@dataclass(frozen=True)
class _Command:
    """A reply's status command and what became of it."""

    entry: _Entry
    #: The command lines as written.
    written: str
    #: The status it sets; ``None``: none (a ``Type`` alone), or not obeyed.
    status: str | None
    #: The reply's text without the command lines (only taken when obeyed).
    rest: str
    #: ``agent`` or ``supplier`` when the sender may command this call, else ``None``.
    by: str | None
    #: Why it was not obeyed.
    reason: str | None = None
    #: The call type a ``Type`` line gives (``service_request`` style); ``None``: none.
    call_type: str | None = None

    @property
    def obeyed(self) -> bool:
        return self.by is not None and self.reason is None

    @property
    def refused(self) -> bool:
        """An entitled sender's command that could not be obeyed: the sender is told why."""
        return self.by is not None and self.reason is not None

    def as_json(self) -> dict[str, JsonValue]:
        mail = self.entry.full or self.entry.head
        return {
            "message_id": mail.message_id,
            "from": mail.from_address,
            "date": mail.date,
            "command": self.written,
            "by": self.by,
            "status": self.status,
            "type": self.call_type,
            "reason": self.reason,
        }


@dataclass
class _Standing:
    """Where a thread's messages leave its status (see "Status" in the module docstring)."""

    status: str | None = None
    confirmed_at: str | None = None
    #: Who confirmed (the sender's address) and how: ``reply`` (the customer's answer to the
    #: request for confirmation), ``command`` (a "Status: confirmed" command), ``bridge``.
    confirmed_by: str | None = None
    confirmed_via: str | None = None
    fulfilled_at: str | None = None
    #: The Message-ID of the open request for confirmation, if one is open.
    asked: str | None = None
    #: An obeyed command no announcement of the bridge has followed yet.
    unannounced: _Command | None = None

    def move(self, status: str, date: str, *, by: str | None = None, via: str = "bridge") -> None:
        """The status becomes ``status`` (by the message dated ``date``, sent by ``by``)."""
        if status not in _DONE:
            self.fulfilled_at = None
        elif self.status not in _DONE or self.fulfilled_at is None:
            self.fulfilled_at = date
        if status not in ("confirmed", "closed"):
            self.confirmed_at = self.confirmed_by = self.confirmed_via = None
        elif status == "confirmed" and self.status != "confirmed":
            self.confirmed_at, self.confirmed_by, self.confirmed_via = date, by, via
        self.status = status


#: Statuses of work: USM classifies a call before anybody works on it.
_WORK: Final = frozenset(status for status in STATUSES if status.startswith(("in_", "waiting")))
_CLASSIFY_FIRST: Final = (
    "the call is not classified yet, and nobody works on a call before it is (USM): write its "
    "type above the status, e.g. 'Type: incident' then 'Status: {status}' "
    f"(types: {TYPES_UNDERSTOOD})"
)


def _unknown(values: list[str], known: list[str | None], problem: str) -> str | None:
    """``unknown`` and ``problem`` (holding ``{!r}``) for the first value not understood."""
    for value, meaning in zip(values, known, strict=True):
        if meaning is None:
            return "unknown " + problem.format(value)
    return None


def _correlation_id(correlation: str, domain: str, kind: str = "c") -> str:
    digest = hashlib.sha256(correlation.encode()).hexdigest()[:32]
    return f"<usm.{kind}.{digest}@{domain}>"


def _strip_re(subject: str) -> str:
    return re.sub(r"^\s*((re|aw|sv|fwd?|wg)\s*:\s*)+", "", subject, flags=re.I).strip()


def _first_line(body: str) -> str:
    for line in body.splitlines():
        if line.strip() and not line.lstrip().startswith(">"):
            return line
    return ""


class EmailConnector(Connector):
    """A shared mailbox read over IMAP or from a Maildir, answered over SMTP or into an outbox."""

    kind = "email"
    settings_model = EmailSettings
    description: ClassVar[str] = "Shared mailbox: IMAP or Maildir in, SMTP or Maildir outbox out"

    def __init__(
        self,
        name: str,
        settings: ConnectorSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        maildir_hook: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name, settings)
        self.config = cast(EmailSettings, settings)
        #: Held by every operation (see "One thing at a time"); reentrant, as operations call
        #: each other (a create looks for its marker first).
        self._lock = threading.RLock()
        self._sleep = sleep
        self._now = now
        self._maildir_hook = maildir_hook
        self._store: MailStore | None = None
        self._folders: dict[FolderRole, _Folder] = {}
        #: Pending copies the relay refused for good when they were finished, each with the
        #: refusal: the next read yields them as dead letters.
        self._refused: list[tuple[_Entry, PermanentRemoteError]] = []
        #: Sent-folder UID -> UIDVALIDITY of each such copy. It stays in the folder, pending
        #: (never tried again by this process), until its dead letter is stored: the read names
        #: it in the checkpoint after the letter, and the read that gets that cursor back (the
        #: engine committed the letter) removes it. A kill in between leaves the copy pending,
        #: so the next process tries it again and the refusal is a dead letter again: never lost.
        self._condemned: dict[int, int] = {}
        #: After the relay failed for now on mail a read owes, reads hand it owed mail again
        #: only from ``_relay_retry_at`` on (the wait doubling each time, up to backoff_max):
        #: meanwhile the mail waits in the Sent folder, pending, and reading goes on.
        self._relay_retry_at: datetime | None = None
        self._relay_delay = 0.0
        #: The relay's SIZE limit (in a tuple once asked: ``(None,)`` when it states none).
        self._relay_size: tuple[int | None] | None = None
        self._domain = self.config.address.rsplit("@", 1)[-1].lower()
        #: One token source per OAuth block: IMAP and SMTP sharing the connector-wide block
        #: share its token too.
        self._tokens: dict[int, TokenSource] = {}
        smtp = self.config.smtp
        self._smtp = (
            SmtpSender(
                smtp,
                helo_name=self._domain,
                oauth=self._token_source(smtp),
                oauth_user=self.config.oauth_user(smtp),
            )
            if smtp is not None
            else None
        )
        self._token = re.compile(rf"\[({re.escape(self.config.reference_prefix)}-(\d+))\]")
        self._confirm = re.compile(self.config.confirm_pattern)
        self._reopen = re.compile(self.config.reopen_pattern)

    # -- plumbing ------------------------------------------------------------------------------

    def _token_source(self, server: ImapSettings | SmtpSettings) -> TokenSource | None:
        """The token source ``server`` signs in with, or None when it uses a password."""
        oauth = self.config.oauth_for(server)
        if oauth is None:
            return None
        if id(oauth) not in self._tokens:
            self._tokens[id(oauth)] = TokenSource(oauth, now=self._now, sleep=self._sleep)
        return self._tokens[id(oauth)]

    def _imap_store(self, imap: ImapSettings, oauth: TokenSource | None) -> ImapStore:
        """A new connection to the IMAP server, signed in (with ``oauth`` when given)."""
        c = self.config
        where = f"imap://{imap.host}:{imap.port}"
        context = None if imap.security == "plain" else tls_context(imap.ca_file, where)
        return ImapStore(
            host=imap.host,
            port=imap.port,
            security=imap.security,
            username=c.oauth_user(imap) if oauth else imap.username,
            password=imap.password.get_secret_value() if imap.password else None,
            folders={"inbox": imap.inbox, "sent": imap.sent},
            timeout=imap.timeout,
            ssl_context=context,
            oauth=oauth,
        )

    def _open(self) -> MailStore:
        if self._store is not None:
            return self._store
        c = self.config
        if c.imap is not None:
            self._store = self._imap_store(c.imap, self._token_source(c.imap))
        else:
            assert c.maildir is not None  # the settings validator guarantees one of them
            outbox = c.maildir.outbox or c.maildir.path / ".Sent"
            self._store = MaildirStore(
                {"inbox": Path(c.maildir.path), "sent": Path(outbox)}, hook=self._maildir_hook
            )
        return self._store

    def _drop_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def _retrying(self, work: Callable[[MailStore], T]) -> T:
        """Run ``work`` against the store, reconnecting after temporary failures (bounded)."""
        delay = self.config.backoff_initial
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                return work(self._open())
            except RetriableRemoteError:
                self._drop_store()
                if attempt == self.config.max_attempts:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, self.config.backoff_max)
        raise AssertionError("unreachable")  # pragma: no cover

    def _smtp_send(self, raw: bytes, recipients: list[str]) -> None:
        if self._smtp is None:
            return
        delay = self.config.backoff_initial
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                self._smtp.send(raw, self.config.address, recipients)
                return
            except RetriableRemoteError:
                if attempt == self.config.max_attempts:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, self.config.backoff_max)

    def _relay_waiting(self) -> bool:
        """Whether the relay failed for now so recently that owed mail is not tried yet."""
        return self._relay_retry_at is not None and self._now() < self._relay_retry_at

    def _relay_failed(self, error: RemoteError) -> None:
        """The relay refused for now, is down, or refuses the bridge itself (its settings):
        owed mail waits, longer each time."""
        c = self.config
        first = self._relay_retry_at is None
        self._relay_delay = (
            c.backoff_initial
            if first
            else max(min(self._relay_delay * 2, c.backoff_max), c.backoff_initial)
        )
        self._relay_retry_at = self._now() + timedelta(seconds=self._relay_delay)
        log.warning("%s: the SMTP relay cannot take mail now (%s); the bridge's mail waits in "
                    "the Sent folder and is tried again in %.0f s; reading goes on", self.name,
                    error, self._relay_delay)  # fmt: skip

    def _relay_answered(self) -> None:
        self._relay_retry_at = None
        self._relay_delay = 0.0

    def close(self) -> None:
        self._drop_store()
        for tokens in self._tokens.values():
            tokens.close()  # the HTTP connection only: the token stays cached for the next cycle

    # -- watching (the daemon's watcher thread) ------------------------------------------------

    watches: ClassVar[bool] = True

    def watch(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """IDLE on the IMAP inbox (:mod:`.idle`), or the Maildir inbox's folders looked at
        every second (:mod:`.maildir_watch`), until ``stop``. On connections (and an OAuth
        token source) of its own: nothing the cycles use is touched from this thread."""
        c = self.config
        if c.imap is None:
            assert c.maildir is not None  # the settings validator guarantees one of them
            watch_maildir(Path(c.maildir.path), wake, stop)
            return
        imap = c.imap
        oauth = c.oauth_for(imap)
        tokens = TokenSource(oauth, now=self._now, sleep=self._sleep) if oauth else None
        try:
            IdleWatch(
                self.name,
                lambda: self._imap_store(imap, tokens),
                where=f"imap://{imap.host}:{imap.port}",
                renew=imap.idle_renew,
                # Never at once: a server that drops every connection must not be hammered.
                backoff_initial=max(c.backoff_initial, _RECONNECT_MIN),
                backoff_max=max(c.backoff_max, _RECONNECT_MIN),
            ).run(wake, stop)
        finally:
            if tokens is not None:
                tokens.close()

    # -- the index -----------------------------------------------------------------------------

    def _refresh(self, store: MailStore) -> None:
        """Bring the header index up to date: only new UIDs are fetched; a new UIDVALIDITY
        throws the folder's part away."""
        added = False
        for role in ROLES:
            validity = store.validity(role)
            folder = self._folders.get(role)
            if folder is None or folder.validity != validity:
                folder = self._folders[role] = _Folder(validity)
            since = max(folder.entries, default=0)
            for header in store.list_since(role, since):
                folder.entries[header.uid] = self._entry(store, role, header)
                added = True
            if role == "sent" and since:
                # The pending mark of copies indexed before may have changed since (cleared
                # by another process of the bridge that finished them): the server says which
                # are pending now, by UIDs alone, so none is handed to SMTP a second time.
                marked = set(store.pending(role))
                for uid, entry in folder.entries.items():
                    if uid <= since:
                        entry.pending = uid in marked
        if added:
            self._settle_identities(store)

    def _settle_identities(self, store: MailStore) -> None:
        """Give each message an identity of its own (see "Message identity").

        Messages under one Message-ID are read whole and compared by content: the first (by
        :attr:`_Entry.rank`) keeps the Message-ID, as does every further delivery of the same
        content (a copy: one outcome) and the bridge's own mail come back into the inbox; a
        different message gets an identity derived from its content, with a note saying so.
        """
        groups: dict[str, list[_Entry]] = {}
        for folder in self._folders.values():
            for entry in folder.entries.values():
                written = entry.head.written_id or (entry.full.written_id if entry.full else None)
                if written is not None:
                    groups.setdefault(written, []).append(entry)
        clashing = [group for group in groups.values() if len(group) > 1]
        # Without a Message-ID (or with one beyond the headers' fetch limit) the identity is
        # derived from the whole message: read now, before anything is threaded.
        unnamed = [
            entry
            for folder in self._folders.values()
            for entry in folder.entries.values()
            if entry.head.written_id is None and entry.full is None and entry.rejected is None
        ]
        self._read_full(store, [entry for group in clashing for entry in group] + unnamed)
        for group in clashing:
            group.sort(key=lambda e: e.rank)
            holder = group[0]
            for entry in group[1:]:
                if (
                    entry.content == holder.content
                    or self._came_back(entry, holder)
                    or self._list_copy(entry, holder)
                ):
                    continue  # the same message delivered again: one identity, one outcome
                written = entry.head.written_id or ""
                identity = derived_id(entry.content, REUSED_ID_DOMAIN)
                entry.rename(identity, f"Message-ID {written} reused by a different message "
                                       f"(other headers or body): kept as {identity}")  # fmt: skip

    @staticmethod
    def _list_copy(entry: _Entry, holder: _Entry) -> bool:
        """Whether one of the two is a mailing list's copy of the other, sent to the mailbox
        directly and through a list it is on: the same Message-ID, sender and date, one with
        list headers and the other without, the list's subject the other's with a tag in front
        (``[staff] ...``). The list adds its tag and footer, so the content differs; it is
        still one message, one outcome."""
        a, b = entry.full or entry.head, holder.full or holder.head
        if (a.auto_kind == "list") == (b.auto_kind == "list"):
            return False
        listed, direct = (a, b) if a.auto_kind == "list" else (b, a)
        return (
            direct.from_address is not None
            and (listed.from_address or "").lower() == direct.from_address.lower()
            and listed.when == direct.when
            and bool(direct.subject.strip())
            and listed.subject.strip().endswith(direct.subject.strip())
        )

    @staticmethod
    def _came_back(entry: _Entry, holder: _Entry) -> bool:
        """Whether ``entry`` is the bridge's own mail (``holder``, its Sent copy) delivered back
        into the inbox: a relay may have rewritten it on the way (transfer encoding, folding)."""
        marker = BRIDGE_HEADER.lower().removeprefix("x-usm-")
        return holder.outbound and not entry.outbound and marker in entry.head.usm

    def _entry(self, store: MailStore, role: FolderRole, header: StoredHeader) -> _Entry:
        if role != "sent" and header.pending:
            # Only the bridge's copies are pending; a person's draft flag in the inbox is not.
            header = dataclasses.replace(header, pending=False)
        try:
            head = parse_headers(header.header, arrived=header.arrived, size=header.size)
        except Exception as error:
            head = parse_headers(b"Subject: (unreadable)\r\n\r\n", arrived=header.arrived)
            # Its own identity (not the stand-in's): two unreadable messages are two letters.
            head.message_id = derived_id(content_digest(header.header, size=header.size))
            entry = _Entry(role, header.uid, header.size, header.pending, header.arrived, head)
            entry.rejected = f"unreadable message: {type(error).__name__}"
            return entry
        entry = _Entry(role, header.uid, header.size, header.pending, header.arrived, head)
        # A mail over max_message_bytes is no reason to refuse it: it is read within that
        # bound (see "Mail over max_message_bytes"), the bridge's own mail as any other.
        if head.received_hops > self.config.max_received_hops:
            entry.rejected = (
                f"mail loop: {head.received_hops} Received headers "
                f"(more than {self.config.max_received_hops})"
            )
        elif head.auto_kind == "bounce" and role == "inbox":
            self._read_full(store, [entry])  # a bounce threads through the message it returns
        return entry

    def _read_full(self, store: MailStore, entries: list[_Entry]) -> None:
        wanted = [e for e in entries if e.full is None and e.rejected is None]
        for entry in [e for e in wanted if e.size > self.config.max_message_bytes]:
            wanted.remove(entry)
            self._read_bounded(store, entry)
        for role in ROLES:
            uids = [e.uid for e in wanted if e.role == role]
            if not uids:
                continue
            raw = store.fetch(role, uids)
            for entry in wanted:
                if entry.role != role or entry.uid not in raw:
                    continue
                try:
                    full = parse_message(
                        raw[entry.uid],
                        arrived=entry.arrived,
                        max_body_chars=self.config.max_body_chars,
                        max_attachment_bytes=self.config.max_attachment_bytes,
                    )
                    if entry.renamed is not None:  # another message holds its Message-ID
                        full.message_id = entry.head.message_id
                        full.defects.append(entry.renamed)
                    else:  # without a Message-ID, the identity covers the body now
                        entry.head.message_id = full.message_id
                    entry.full = full
                except Exception as error:
                    entry.rejected = f"unreadable message: {type(error).__name__}: {error}"[:300]

    def _over_limit(self, size: int) -> str:
        """What a person is told of a mail of ``size`` bytes over ``max_message_bytes``."""
        limit = self.config.max_message_bytes
        return (f"the mail is {size / 1e6:.1f} MB ({size} bytes), over max_message_bytes "
                f"{limit / 1e6:.1f} MB ({limit} bytes)")  # fmt: skip

    def _reduced(self, handle: BinaryIO, size: int, *, measure: bool = True) -> Reduced:
        c = self.config
        # A text part longer than this holds more than max_body_chars characters in any
        # charset and encoding (4 bytes a character in UTF-8, 4/3 for base64, and its lines).
        bound = 6 * c.max_body_chars + 64 * 1024
        return reduce_mail(
            handle, size, budget=c.max_message_bytes, text_bound=bound, measure=measure
        )

    def _read_bounded(self, store: MailStore, entry: _Entry) -> None:
        """Read ``entry``, a mail over ``max_message_bytes``, within that bound (see "Mail
        over max_message_bytes"): its headers and text as always, each file left out listed
        with its size; a person's refused saying why, the bridge's own read from the mail."""
        try:
            with store.open_message(entry.role, entry.uid) as handle:
                if handle is None:
                    return  # expunged meanwhile: as a whole fetch that finds nothing
                reduced = self._reduced(handle, entry.size)
            full = parse_message(
                reduced.raw, arrived=entry.arrived, max_body_chars=self.config.max_body_chars,
                max_attachment_bytes=self.config.max_attachment_bytes,
            )  # fmt: skip
        except BeyondBound as error:  # never parsed whole: the mail is kept as a dead letter
            entry.rejected = f"{self._over_limit(entry.size)}, and {error.reason}"
            return
        except RemoteError:
            raise
        except Exception as error:
            entry.rejected = f"unreadable message: {type(error).__name__}: {error}"[:300]
            return
        listed = {a.path: a for a in full.attachments}
        for path, left_out in reduced.dropped.items():
            if path not in listed or listed[path].content_type != left_out.kind:
                # The stdlib reads the structure otherwise than the walk did (a broken mail):
                # no file is listed that is not the one at its place. The whole mail is kept.
                entry.rejected = (f"{self._over_limit(entry.size)}, and its MIME structure "
                                  f"cannot be read within that bound (part {path})")  # fmt: skip
                return
        over = self._over_limit(entry.size)
        own = self._own(entry)
        limit = self.config.max_attachment_bytes
        files: list[Attachment] = []
        for part in full.attachments:
            dropped = reduced.dropped.get(part.path)
            if dropped is None:
                files.append(part)
                continue
            problem = dropped.problem if own else f"{over}; raise it to carry this file"
            files.append(dataclasses.replace(
                part, size=dropped.size, sha256=dropped.sha256 if own else None,
                problem=problem, over_limit=dropped.size > limit,
            ))  # fmt: skip
        full.attachments = files
        # The notes of the parts left out (empty as read) are replaced by what became of them.
        full.defects = [
            d for d in full.defects
            if not any(d.startswith(f"attachment {p} (") for p in reduced.dropped)
        ]  # fmt: skip
        full.defects += [f"attachment {f.path} ({f.filename}): {f.problem}"
                         for f in files if f.path in reduced.dropped and f.problem]  # fmt: skip
        if reduced.text_cut:
            full.body_truncated = True
            full.defects.append(f"{over}: its text was read up to that bound")
        # Its identity is that of its headers and size, as when it was never read: the mail
        # as read depends on max_message_bytes, its identity must not.
        full.digest = entry.head.digest
        if full.written_id is None:
            full.defects = [d for d in full.defects if not d.startswith("no Message-ID:")]
            full.defects += [d for d in entry.head.defects if d.startswith("no Message-ID:")]
        full.message_id = entry.head.message_id
        if entry.renamed is not None and entry.renamed not in full.defects:
            full.defects.append(entry.renamed)
        entry.full = full

    @staticmethod
    def _own(entry: _Entry) -> bool:
        """Whether ``entry`` is the bridge's own mail: its copy in the Sent folder, with the
        bridge's marker (see "Message identity")."""
        return entry.outbound and BRIDGE_HEADER.lower().removeprefix("x-usm-") in entry.head.usm

    def _messages(self) -> tuple[dict[str, _Entry], list[_Entry]]:
        """Every readable message once by identity, and the further deliveries of those (the
        same identity: see "Message identity"). Of several deliveries the first by
        :attr:`_Entry.rank` is the message: the Sent copy wins over one that came back into the
        inbox (the bridge's own mail delivered to itself)."""
        found: dict[str, _Entry] = {}
        copies: list[_Entry] = []
        readable = [
            entry
            for role in ("sent", "inbox")
            if role in self._folders
            for entry in self._folders[role].entries.values()
            if entry.rejected is None
        ]
        first: dict[str, _Entry] = {}
        for entry in sorted(readable, key=lambda e: e.rank):
            if entry.head.message_id in first:
                copies.append(entry)
            else:
                first[entry.head.message_id] = entry
        # In folder and UID order (threading takes a reference token's owner in this order).
        for entry in readable:
            if first[entry.head.message_id] is entry:
                found[entry.head.message_id] = entry
        return found, copies

    def _threads(self) -> tuple[dict[str, _Thread], dict[tuple[FolderRole, int], str]]:
        """Threads by root Message-ID, and the root of every message by its place."""
        messages, copies = self._messages()
        parent: dict[str, str] = {mid: mid for mid in messages}

        def find(mid: str) -> str:
            while parent[mid] != mid:
                parent[mid] = parent[parent[mid]]
                mid = parent[mid]
            return mid

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        owners: dict[str, str] = {}
        for mid, entry in messages.items():
            token = entry.head.usm.get("reference") if entry.outbound else None
            if token:
                owners.setdefault(token, mid)
        has_parent: set[str] = set()
        for mid, entry in messages.items():
            mail = entry.full or entry.head
            links = [mail.in_reply_to, *mail.references, mail.bounce_of]
            linked = [link for link in links if link and link in messages and link != mid]
            for link in linked:
                union(mid, link)
            if linked:
                has_parent.add(mid)
                continue
            match = self._token.search(entry.head.subject)
            if match and match.group(1) in owners and owners[match.group(1)] != mid:
                union(mid, owners[match.group(1)])
                has_parent.add(mid)
        groups: dict[str, list[_Entry]] = {}
        for mid, entry in messages.items():
            groups.setdefault(find(mid), []).append(entry)
        threads: dict[str, _Thread] = {}
        where: dict[tuple[FolderRole, int], str] = {}
        for members in groups.values():
            members.sort(key=lambda e: e.order)
            roots = [e for e in members if e.head.message_id not in has_parent] or members
            root = roots[0]
            threads[root.head.message_id] = _Thread(root, members)
            for entry in members:
                where[entry.key] = root.head.message_id
        for copy in copies:
            # A further delivery is in its message's thread: one outcome, delivered twice.
            home = where[messages[copy.head.message_id].key]
            threads[home].copies.append(copy)
            where[copy.key] = home
        return threads, where

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _decode_cursor(
        cursor: str | None,
    ) -> tuple[dict[FolderRole, tuple[int, int]], list[tuple[int, int]]]:
        """The cursor's (UIDVALIDITY, last UID) per folder, and the refused copies
        ``(UIDVALIDITY, UID)`` whose dead letters it follows (``drop``)."""
        if not cursor:
            return {}, []
        try:
            state = json.loads(cursor)
            saved = {
                role: (int(state[role][0]), int(state[role][1])) for role in ROLES if role in state
            }
            drops = [(int(validity), int(uid)) for validity, uid in state.get("drop", [])]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise PermanentRemoteError(
                "the e-mail cursor is not one this connector wrote", remote_message=cursor[:100]
            ) from None
        return saved, drops

    def _is_condemned(self, uid: int) -> bool:
        """Whether the Sent folder's ``uid`` is a refused copy kept until its letter is stored
        (in this folder generation: after a UIDVALIDITY change the UID is another message)."""
        folder = self._folders.get("sent")
        return folder is not None and self._condemned.get(uid) == folder.validity

    def _drop(self, store: MailStore, drops: list[tuple[int, int]]) -> None:
        """Remove the refused copies whose dead letters are stored (their cursor came back)."""
        folder = self._folders.get("sent")
        for validity, uid in drops:
            self._condemned.pop(uid, None)
            entry = folder.entries.get(uid) if folder else None
            if folder is None or folder.validity != validity or entry is None:
                continue  # gone already, or another folder generation: nothing of ours
            if not entry.pending:
                continue  # sent after all (another process tried it again): keep the record
            store.delete("sent", uid)
            folder.entries.pop(uid, None)

    def _quiet_since(self, store: MailStore, saved: dict[FolderRole, tuple[int, int]]) -> bool:
        """Whether a connector that has no header index yet (a new process) may answer a read
        from ``saved`` with nothing: both folders keep their UIDVALIDITY, hold no UID above the
        cursor's and no copy is pending. Only UIDs are asked for, so a quiet cycle fetches no
        header; anything else builds the index as before (a thread's new message is threaded
        through the headers of the whole mailbox)."""
        if self._folders or self._refused or set(saved) != set(ROLES):
            return False  # an index (or owed dead letters) to go on with: the usual path
        for role in ROLES:
            validity, last = saved[role]
            if store.validity(role) != validity or store.list_since(role, last):
                return False
        return not store.pending("sent")

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Yield each thread with a message new since ``cursor``; see the module docstring.

        Each step of the read (up to the next record or checkpoint) holds the connector's lock;
        between two, the read holds nothing (see "One thing at a time")."""
        steps = self._read(cursor)
        try:
            while True:
                with self._lock:
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield item
        finally:
            with self._lock:
                steps.close()

    def _read(self, cursor: str | None) -> Generator[RawRecord | Checkpoint, None, None]:
        saved, drops = self._decode_cursor(cursor)
        if not drops and self._retrying(lambda store: self._quiet_since(store, saved)):
            # Nothing new, nothing pending: the cursor stands, and no header was fetched.
            yield Checkpoint(cursor=json.dumps({r: list(saved[r]) for r in ROLES}, sort_keys=True))
            return

        def prepare(store: MailStore) -> None:
            self._refresh(store)
            self._drop(store, drops)
            # Before anything is judged (see "Pending copies"); the relay's answer never
            # stops the read (see "Owed mail").
            self._finish_pending(store, hold=True)

        self._retrying(prepare)
        refused, self._refused = self._refused, []
        new: dict[FolderRole, list[int]] = {}
        top: dict[FolderRole, int] = {}
        for role in ROLES:
            folder = self._folders[role]
            validity, last = saved.get(role, (folder.validity, 0))
            if validity != folder.validity:
                last = 0  # a new UIDVALIDITY: every UID is new; ids are Message-IDs, no dupes
            new[role] = sorted(uid for uid in folder.entries if uid > last)
            top[role] = max([last, *folder.entries])
        # Threading the whole index is the costly part of a read: a read with nothing new in
        # it (a quiet cycle of a running daemon) skips it.
        threads, where = self._threads() if any(new.values()) else ({}, {})
        # A thread the bridge opens by a create still pending is no record yet: the engine
        # learns of it from ``create`` only (``find_by_correlation`` does not know it), so read
        # now it would be taken for a new call. Its first mail is passed over; a reply to it
        # (the relay took the mail just before a kill) waits, the cursor before it, until then.
        unborn = {mid for mid, t in threads.items() if t.root.outbound and t.root.pending}
        # What is new in this read: only its commands are logged (a thread is read again
        # whole whenever it grows, and its old commands are no news).
        fresh = {(role, uid) for role in ROLES for uid in new[role]}
        changed: dict[str, datetime] = {}
        lone: list[_Entry] = []
        done: set[tuple[FolderRole, int]] = set()
        for role in ROLES:
            for uid in new[role]:
                entry = self._folders[role].entries[uid]
                if entry.rejected is not None:
                    lone.append(entry)
                    continue
                root = where[entry.key]  # every readable message (and copy) is in a thread
                if root in unborn:
                    if entry.head.message_id == threads[root].root.head.message_id:
                        done.add(entry.key)  # the pending create (or a copy of it)
                else:
                    changed[root] = min(changed.get(root, entry.head.when), entry.head.when)
        order = sorted(changed, key=lambda mid: (changed[mid], mid))
        extra: dict[FolderRole, list[int]] = {role: [] for role in ROLES}

        #: The refused copies whose dead letters this read has yielded: the cursor names them.
        unsent: list[list[int]] = []

        def unsent_record(entry: _Entry, error: PermanentRemoteError) -> RawRecord:
            if self._is_condemned(entry.uid):
                unsent.append([self._condemned[entry.uid], entry.uid])
            return self._unsent_record(entry, error)

        def checkpoint() -> Checkpoint:
            state: dict[str, list[int] | list[list[int]]] = {}
            for role in ROLES:
                pending = [uid for uid in new[role] if (role, uid) not in done]
                upto = pending[0] - 1 if pending else top[role]
                if not pending:  # past our own acknowledgements, up to any other message
                    for uid in sorted(u for u in self._folders[role].entries if u > upto):
                        # A refused copy kept for now is ours too: its dead letter is yielded.
                        ours = uid in extra[role] or (role == "sent" and self._is_condemned(uid))
                        if not ours:
                            break
                        upto = uid
                state[role] = [self._folders[role].validity, upto]
            if unsent:
                state["drop"] = sorted(unsent)
            return Checkpoint(cursor=json.dumps(state, sort_keys=True))

        for entry, error in refused:
            yield unsent_record(entry, error)
        for entry in lone:
            yield self._dead_letter_record(entry, entry.rejected or "rejected")
            done.add(entry.key)
        if lone or refused:
            yield checkpoint()
        for start in range(0, len(order), self.config.page_size):
            batch = [threads[mid] for mid in order[start : start + self.config.page_size]]
            members = [e for t in batch for e in t.members]

            def fetch(store: MailStore, members: list[_Entry] = members) -> None:
                self._read_full(store, members)

            self._retrying(fetch)
            for thread in batch:
                for entry in [e for e in thread.members if e.rejected and e is not thread.root]:
                    # unreadable in full although its headers were fine: a letter of its own
                    yield self._dead_letter_record(entry, entry.rejected or "rejected")
                    thread.members.remove(entry)
                    done.add(entry.key)
                for copy in [c for c in thread.copies if c.rejected]:
                    yield self._dead_letter_record(copy, copy.rejected or "rejected")
                    thread.copies.remove(copy)
                    done.add(copy.key)
                if thread.root.rejected and len(thread.members) > 1:
                    # The first message is unreadable in full: a letter of its own; the others
                    # are the thread without it (as the next read will thread them), never
                    # carried away inside that letter.
                    yield self._dead_letter_record(thread.root, thread.root.rejected)
                    done.add(thread.root.key)
                    thread = self._without_root(thread)
                record, sent = self._record(thread, fresh)
                for entry in sent:
                    extra[entry.role].append(entry.uid)
                yield record
                done.update(entry.key for entry in [*thread.members, *thread.copies])
                # An answer the relay refused for good: the call above is stored all the same.
                refused, self._refused = self._refused, []
                for entry, error in refused:
                    yield unsent_record(entry, error)
            yield checkpoint()
        if not order:
            yield checkpoint()

    @_one_at_a_time
    def remote_ids(self) -> Iterator[str]:
        """The id (first Message-ID) of every thread the mailbox holds now, for the census.

        The header index is brought up to date, then every message no longer in its folder
        (deleted or moved away) is dropped from it, so a thread whose messages are all gone is
        no longer listed. A failure raises (after the usual reconnecting retries), so the
        census marks nothing on an incomplete listing.
        """

        def listing(store: MailStore) -> list[str]:
            self._refresh(store)
            for role in ROLES:
                present = set(store.uids(role))
                folder = self._folders[role]
                if store.validity(role) != folder.validity:
                    raise RetriableRemoteError(
                        f"the UIDVALIDITY of the {role} folder changed while listing threads"
                    )
                for uid in [uid for uid in folder.entries if uid not in present]:
                    del folder.entries[uid]
            threads, _ = self._threads()
            return sorted(threads)

        return iter(self._retrying(listing))

    @staticmethod
    def _without_root(thread: _Thread) -> _Thread:
        """``thread`` without its root: the next message in order is the first."""
        rest = sorted((e for e in thread.members if e is not thread.root), key=lambda e: e.order)
        ids = {e.head.message_id for e in rest}
        copies = [c for c in thread.copies if c.head.message_id in ids]
        return _Thread(rest[0], rest, copies)

    def _dead_letter_record(self, entry: _Entry, reason: str) -> RawRecord:
        head = entry.head
        data: dict[str, JsonValue] = {
            DEAD_LETTER_KEY: {"reason": reason},
            "message_id": head.message_id,
            "written_message_id": head.written_id,
            "subject": head.subject,
            "from": head.from_,
            "date": head.date,
            "size": entry.size,
            "folder": entry.role,
            "uid": entry.uid,
            "defects": list(head.defects),
        }
        return RawRecord(remote_id=head.message_id, updated=head.when, data=data)

    def _message_json(self, entry: _Entry, deliveries: int = 1) -> dict[str, JsonValue]:
        mail = entry.full or entry.head
        found: dict[str, JsonValue] = {
            "message_id": mail.message_id,
            "subject": mail.subject,
            "from": mail.from_ or None,
            "to": list(mail.to),
            "cc": list(mail.cc),
            "date": mail.date,
            "body": mail.body,
            "body_truncated": mail.body_truncated,
            "in_reply_to": mail.in_reply_to,
            "references": list(mail.references),
            "attachments": [a.as_json() for a in mail.attachments],  # type: ignore[misc]
            "direction": "out" if entry.outbound else "in",
            "public": entry.head.usm.get("visibility", "public") != "internal",
            "kind": entry.head.usm.get("kind") or mail.auto_kind,
            "no_answer": mail.no_answer,
            "pending": entry.pending,
            "defects": list(mail.defects),
        }
        if mail.written_id != mail.message_id:
            found["written_message_id"] = mail.written_id  # None: it had none
        if deliveries > 1:
            found["deliveries"] = deliveries  # the same message, in the mailbox that often
        return found

    def _record(
        self, thread: _Thread, fresh: set[tuple[FolderRole, int]]
    ) -> tuple[RawRecord, list[_Entry]]:
        """The thread as a record, after the answers it calls for: an acknowledgement of a
        new call from a person, the announcement of an obeyed status command, the reason a
        command was refused. Returns the record and the answers sent."""
        root = thread.root
        mail = root.full or root.head
        reason = self._refusal(thread)
        held = self._held(root)
        sent: list[_Entry] = []
        if reason is None and self._should_acknowledge(thread, held):
            acked = self._retrying(lambda store: self._acknowledge(store, thread))
            # None: refused for good, a dead letter; the call is made without its answer.
            if acked is not None:
                thread.members.append(acked)
                sent.append(acked)
        elif reason is None and mail.no_answer is not None and root.key in fresh:
            # The call is kept; only the answer is not sent (the record keeps ``no_answer``).
            log.info("%s: call %s from %s not acknowledged: %s", self.name, mail.message_id,
                     mail.from_address, mail.no_answer)  # fmt: skip
        commands = self._commands(thread)
        self._log_commands(thread, commands, fresh)
        standing = self._standing(thread, commands)
        if reason is None:
            sent += self._answer_commands(thread, commands, standing, held)
            if sent:
                standing = self._standing(thread, commands)
        data = self._message_json(root, thread.deliveries(root))
        subject, token = str(data["subject"]), thread.token
        if root.outbound and token and subject.startswith(f"[{token}] "):
            # The subject the bridge was asked to write, without the token it put in front:
            # read back otherwise, the title would look changed in the tool (a revert mail).
            data["subject"] = subject.removeprefix(f"[{token}] ")
        replies: list[JsonValue] = []
        bridge_texts = [(e.full or e.head).body for e in thread.members if e.outbound]
        for entry in thread.members:
            if entry is root:
                continue
            item = self._message_json(entry, thread.deliveries(entry))
            command = commands.get(entry.head.message_id)
            text = str(item["body"])
            if command is not None and command.obeyed:
                if not command.rest:
                    continue  # only a command: no comment
                text = command.rest
            if not entry.outbound:
                cleaned = self._clean_reply(text, bridge_texts)
                if not cleaned.text and command is not None and command.obeyed:
                    continue  # a command above quoted history: the command is the news
                self._comment_body(item, cleaned)
            replies.append(item)
        data["replies"] = replies
        data["reference_token"] = thread.token
        data["held"] = held
        if standing.status is not None:
            data["status"] = standing.status
        if standing.confirmed_at is not None:
            data["confirmed_at"] = standing.confirmed_at
            data["confirmed_via"] = standing.confirmed_via
            if standing.confirmed_by is not None:
                data["confirmed_by"] = standing.confirmed_by
        if standing.fulfilled_at is not None:
            data["fulfilled_at"] = standing.fulfilled_at
        call_type = self._typed_by_command(thread, commands)
        if call_type is not None:
            data["type"] = call_type
        if commands:
            data["commands"] = [command.as_json() for command in commands.values()]
        if reason is not None:
            data[DEAD_LETTER_KEY] = {"reason": reason}
        updated = max(e.head.when for e in thread.members)
        record = RawRecord(
            remote_id=mail.message_id, remote_key=thread.token, updated=updated, data=data,
            # Listed from the mails parsed above. A refused thread's too: its mapping makes it a
            # dead letter before any file is read, and a retry of that letter has them.
            attachments=self._files_of(thread),
        )  # fmt: skip
        return record, sent

    def _clean_reply(self, text: str, bridge_texts: list[str]) -> CleanReply:
        return clean_reply(
            text,
            languages=self.config.reply_languages,
            disclaimer_starts=self.config.disclaimer_starts,
            bridge_texts=bridge_texts,
        )

    @staticmethod
    def _comment_body(item: dict[str, JsonValue], cleaned: CleanReply) -> None:
        """A person's reply as the comment another tool receives: only the new text (see
        :mod:`.reply_text`); the whole message stays in ``full_body`` for the audit."""
        item["full_body"] = item["body"]
        item["cleaned"] = list(cleaned.removed)
        if cleaned.error is not None:
            item["defects"] = [*cast(list[JsonValue], item["defects"]), cleaned.error]
        if cleaned.text:
            item["body"] = cleaned.text
            return
        # Nothing new (the reply only quoted): still an outcome, an internal note saying so,
        # never an empty comment nor a quote travelling as if it were news.
        item["body"] = NO_NEW_TEXT
        item["no_new_text"] = True
        if item.get("kind") is None:
            item["kind"] = "quote_only"

    def _refusal(self, thread: _Thread) -> str | None:
        """Why this thread must be a dead letter rather than a call, or None."""
        root = thread.root
        mail = root.full or root.head
        if root.rejected is not None:
            return root.rejected
        if root.outbound:
            return None
        if mail.auto_kind == "loop" and mail.usm.get("kind") != "create":
            return f"automatic reply outside any thread, from another bridge ({mail.no_answer})"
        if mail.auto_kind == "bounce":
            return f"bounce for no message the bridge knows ({mail.no_answer})"
        if mail.auto_kind == "auto_reply":
            return f"automatic reply outside any thread ({mail.no_answer})"
        if mail.auto_kind in ("list", "bulk") and self.config.bulk_mail == "dead_letter":
            return f"bulk or list mail is not a call ({mail.no_answer})"
        if mail.from_address is None:
            return "no readable sender (From)"
        held = self._held(root)
        if held and self.config.outside_domains == "refuse":
            return f"sender not allowed: {held}"
        return None

    def _held(self, root: _Entry) -> str | None:
        mail = root.full or root.head
        if root.outbound:
            return None
        # Every From address must be inside: the first is no more the sender than the others.
        return next(filter(None, map(self._outside, mail.from_addresses)), None)

    def _outside(self, address: str) -> str | None:
        """Why mail from ``address`` counts as from outside (``allowed_domains``), or None."""
        allowed = [d.lower().lstrip("@") for d in self.config.allowed_domains]
        domain = address.rsplit("@", 1)[-1].lower()
        if not allowed or domain in allowed or any(domain.endswith("." + d) for d in allowed):
            return None
        return f"sender domain {domain!r} is not in allowed_domains"

    # -- status and commands -------------------------------------------------------------------

    @staticmethod
    def _in_thread_order(thread: _Thread) -> list[_Entry]:
        """The members by date, except that a reply comes after every message it refers to
        (clients' clocks are not exact: an answer can be dated before its question).

        Dates have whole seconds: of a person's mail and the bridge's dated the same second,
        the bridge's comes first unless it answers the person's (it refers to the newest
        message it knew), so a person's command is not undone by a mail the bridge wrote
        without knowing of it. A reply waits for what it refers to; nothing moves earlier.
        """
        members = sorted(thread.members, key=lambda e: (e.head.when, not e.outbound, e.uid))
        ids = {entry.head.message_id for entry in members}
        parents: dict[str, set[str]] = {}
        for entry in members:
            mail = entry.full or entry.head
            refs = {m for m in (mail.in_reply_to, *mail.references) if m in ids}
            parents[entry.head.message_id] = refs - {entry.head.message_id}
        order: list[_Entry] = []
        placed: set[str] = set()
        waiting: list[_Entry] = []
        for entry in members:
            waiting.append(entry)
            moved = True
            while moved:  # place every waiting reply whose references are all placed
                moved = False
                for candidate in list(waiting):
                    if parents[candidate.head.message_id] <= placed:
                        waiting.remove(candidate)
                        order.append(candidate)
                        placed.add(candidate.head.message_id)
                        moved = True
        # What still waits refers to itself through forged headers: by date, at the end.
        return order + waiting

    def _standing(self, thread: _Thread, commands: dict[str, _Command]) -> _Standing:
        """The thread's status: the latest in thread order of a status the bridge announced,
        an obeyed command, and the customer's answer to the bridge's request for confirmation
        (a reply to it, or any later mail of a person other than an agent)."""
        standing = _Standing()
        for entry in self._in_thread_order(thread):
            mail = entry.full or entry.head
            if entry.outbound and entry.pending:
                # Not finished (reads and writes finish pending copies before judging, so only
                # a create's, whose thread is not read yet): it has told nobody anything.
                continue
            if entry.outbound:
                status = entry.head.usm.get("status")
                if status:
                    standing.move(status, mail.date)
                    kind = entry.head.usm.get("kind")
                    standing.asked = mail.message_id if kind == "confirmation-request" else None
                    standing.unannounced = None
                continue
            command = commands.get(mail.message_id)
            if command is not None and command.status is not None:
                if command.status != standing.status:  # one that changes nothing is no news
                    standing.unannounced = command
                    standing.asked = None
                standing.move(command.status, mail.date, by=mail.from_address, via="command")
                continue
            if standing.asked is None or mail.no_answer is not None or entry is thread.root:
                continue
            if mail.from_address is not None and self._is_agent(mail.from_address):
                continue  # only the customer confirms; an agent's "ok" is no confirmation
            # The answer is what the customer wrote, wherever they wrote it: a YES under the
            # quoted request (bottom-posting) counts, the request's own "reply YES" never.
            said = [(e.full or e.head).body for e in thread.members if e.outbound]
            line = _first_line(self._clean_reply(mail.body, said).text)
            if self._confirm.search(line):
                standing.move("confirmed", mail.date, by=mail.from_address, via="reply")
            elif self._reopen.search(line):
                standing.move("in_progress", mail.date)
        return standing

    def _is_agent(self, address: str) -> bool:
        address = address.lower()
        domain = "@" + address.rsplit("@", 1)[-1]
        return any(agent in (address, domain) for agent in self.config.agents)

    @staticmethod
    def _mailed_to(root: _Entry) -> set[str]:
        """Whom the bridge mailed when it opened this thread (a supplier), or nobody."""
        if not root.outbound or root.head.usm.get("kind") != "create":
            return set()
        return {a.lower() for _, a in email.utils.getaddresses(root.head.to) if "@" in a}

    def _entitled(self, thread: _Thread, entry: _Entry) -> tuple[str | None, str]:
        """(``agent`` / ``supplier`` / None, why not) for the sender of ``entry``'s command.

        The From header is trusted no further than for any reply: a machine's mail, the
        mailbox's own address, a sender outside ``allowed_domains`` (an agent) and a mail
        threaded by nothing but a guessable subject token never command; nor does a From the
        unit's receiving server did not vouch for (``trusted_authserv_ids``), unless the unit
        trusts its relay (``trust_relay``): anybody can write any From.
        """
        mail = entry.full or entry.head
        if mail.no_answer is not None:
            return None, f"an automatic message ({mail.no_answer}) gives no commands"
        sender = (mail.from_address or "").lower()
        if not sender:
            return None, "no readable sender (From)"
        if sender == self.config.address.lower():
            return None, "mail from the mailbox's own address gives no commands"
        others = {e.head.message_id for e in thread.members if e is not entry}
        if not others.intersection({mail.in_reply_to, *mail.references}):
            return None, (
                "not a reply to a message of the thread (In-Reply-To, References); "
                "the reference token in the subject alone is easy to guess"
            )
        mailed_to = self._mailed_to(thread.root)
        if sender in mailed_to:
            by = "supplier"
        elif self._is_agent(sender):
            outside = self._outside(sender)
            if outside:
                return None, outside
            by = "agent"
        else:
            by = None
        if by is not None:
            if len(mail.from_addresses) > 1:
                return None, "a mail with several From addresses gives no commands"
            trusted, why = self._sender_vouched(mail)
            return (by, "") if trusted else (None, f"the From {sender} is not vouched for: {why}")
        whom = "one of the mailbox's agents (setting 'agents')"
        if mailed_to:
            whom += " nor the supplier this thread was mailed to"
        return None, f"{sender} is not {whom}"

    def _sender_vouched(self, mail: ParsedMail) -> tuple[bool, str]:
        """Whether the unit's receiving server vouches for the From (see :mod:`.authres`)."""
        if self.config.trust_relay:
            return True, "the relay is trusted (trust_relay)"
        return vouched(mail.auth_results, mail.from_address or "", self.config.trusted_authserv_ids)

    def _commands(self, thread: _Thread) -> dict[str, _Command]:
        """The status and type commands of the thread's replies by Message-ID, obeyed or not
        (in thread order: a ``Type`` given before classifies the call for a later status)."""
        found: dict[str, _Command] = {}
        typed = self._classified_from_the_start(thread)
        for entry in self._in_thread_order(thread):
            if entry is thread.root or entry.outbound or entry.full is None:
                continue  # a command acts on a call that exists; the first mail makes it
            block = split_commands(entry.full.body)
            if block is None:
                continue
            by, why = self._entitled(thread, entry)
            body = entry.full.body
            if by is None:
                found[entry.head.message_id] = _Command(entry, block.written, None, body, by, why)
                continue
            statuses = [read_status(value, STATUSES) for value in block.values]
            types = [read_type(value) for value in block.types]
            status = statuses[-1] if statuses else None
            call_type = types[-1] if types else None
            problem = _unknown(block.values, statuses, f"status {{!r}}: write one of {UNDERSTOOD}")
            problem = problem or _unknown(
                block.types, types, f"type {{!r}}: write one of {TYPES_UNDERSTOOD}"
            )
            if problem is None and by == "supplier" and status == "confirmed":
                problem = (
                    "only the customer confirms a call, and the customer of a call the bridge "
                    "mailed to a supplier is the bridge's unit: write 'Status: fulfilled'"
                )
            if problem is None and by == "supplier" and call_type is not None:
                problem = (
                    "the call the bridge mailed you has its type from the unit that asked for "
                    "it; only that unit's desk classifies it"
                )
            if problem is None and status in _WORK and call_type is None and not typed:
                # Named as the agent may write it back: "in progress", "waiting for customer".
                spoken = status.replace("_", " ").replace(":", " for ")
                problem = _CLASSIFY_FIRST.format(status=spoken)
            if problem is not None:
                found[entry.head.message_id] = _Command(
                    entry, block.written, None, body, by, problem
                )
            else:
                typed = typed or call_type is not None
                found[entry.head.message_id] = _Command(
                    entry, block.written, status, block.rest, by, call_type=call_type
                )
        return found

    def _classified_from_the_start(self, thread: _Thread) -> bool:
        """Whether the thread's call is classified before any command: the bridge opened it
        (a supplier call has its route's type), or its subject carries a type the mapping
        reads (``classified_subject``)."""
        if thread.root.outbound:
            return True
        pattern = self.config.classified_subject
        subject = (thread.root.full or thread.root.head).subject
        return bool(pattern) and re.search(pattern, subject[:10_000]) is not None

    def _typed_by_command(self, thread: _Thread, commands: dict[str, _Command]) -> str | None:
        """The call type the latest obeyed ``Type`` command in thread order gave, if any."""
        call_type = None
        for entry in self._in_thread_order(thread):
            command = commands.get(entry.head.message_id)
            if command is not None and command.obeyed and command.call_type is not None:
                call_type = command.call_type
        return call_type

    def _log_commands(
        self, thread: _Thread, commands: dict[str, _Command], fresh: set[tuple[FolderRole, int]]
    ) -> None:
        call = thread.token or thread.root.head.message_id
        for command in commands.values():
            if command.entry.key not in fresh:
                continue
            sender = (command.entry.full or command.entry.head).from_address
            written = command.written.replace("\n", " / ")
            if command.obeyed:
                log.info("%s: %r from %s (%s) on %s obeyed: status %s, type %s", self.name,
                         written, sender, command.by, call, command.status,
                         command.call_type)  # fmt: skip
            elif command.by is not None:
                log.warning("%s: %r from %s (%s) on %s refused: %s", self.name, written,
                            sender, command.by, call, command.reason)  # fmt: skip
            else:
                log.warning("%s: %r from %s on %s ignored as a command (kept as a reply): %s",
                            self.name, written, sender, call, command.reason)  # fmt: skip

    def _answer_commands(
        self,
        thread: _Thread,
        commands: dict[str, _Command],
        standing: _Standing,
        held: str | None,
    ) -> list[_Entry]:
        """Announce the obeyed command nobody was told of yet, and tell each entitled sender
        whose command was refused why; returns what was sent (added to the thread)."""
        sent: list[_Entry] = []
        oldest = self._now() - timedelta(hours=self.config.acknowledge_max_age_hours)
        pending = standing.unannounced
        # In a thread the bridge opened the customer is the bridge itself: nobody to tell.
        # A held call's sender is told nothing at all, and an old command (a first sync of
        # an old mailbox) is news to nobody.
        if (
            pending is not None
            and pending.status is not None
            and not thread.root.outbound
            and held is None
            and (pending.entry.full or pending.entry.head).when >= oldest
        ):
            status = pending.status
            announced = self._retrying(
                lambda store: self._announce(store, thread, pending.entry, status)
            )
            if announced is not None:  # None: refused for good, a dead letter
                if announced not in thread.members:  # else made before: found, not sent again
                    thread.members.append(announced)
                sent.append(announced)
        for command in commands.values():
            mail = command.entry.full or command.entry.head
            if not command.refused or mail.when < oldest or mail.from_address is None:
                continue
            told_before = self._find_sent(_correlation_id(mail.message_id, self._domain, "cmdno"))
            if told_before is not None and not told_before.pending:
                continue
            if self._answers_within_hour(mail.from_address, self._now()) >= (
                self.config.answers_per_sender_per_hour
            ):
                continue
            refused = command

            def tell(store: MailStore, refused: _Command = refused) -> _Entry | None:
                return self._refuse(store, thread, refused)

            told = self._retrying(tell)
            if told is None:
                continue  # refused for good: a dead letter
            if told not in thread.members:
                thread.members.append(told)
            sent.append(told)
        return sent

    def _status_text(self, token: str | None, status: str, *, confirm: bool) -> tuple[str, str]:
        """(kind, text) of the mail that announces ``status``."""
        label = status.replace("_", " ").replace(":", ", on ")
        lines = [f"The status of {token or 'your request'} is now: {label}."]
        kind = "status"
        if status in self.config.confirm_statuses and confirm:
            kind = "confirmation-request"
            lines.append(
                "Please reply YES if the service works for you again, or NO if it "
                "does not. We close the call only once you confirm."
            )
        return kind, "\n\n".join(lines)

    def _reply_subject(self, thread: _Thread) -> str:
        token = thread.token
        subject = _strip_re((thread.root.full or thread.root.head).subject)
        if token and f"[{token}]" not in subject:
            subject = f"[{token}] {subject}"
        return f"Re: {subject}"

    def _announce(
        self, store: MailStore, thread: _Thread, command: _Entry, status: str
    ) -> _Entry | None:
        """Tell the requester the status an agent's command set, as the bridge tells any."""
        kind, body = self._status_text(thread.token, status, confirm=True)
        message = self._compose(
            thread,
            kind=kind,
            body=body,
            subject=self._reply_subject(thread),
            # Derived from the command: announced once, even across a crash and a re-read.
            message_id=_correlation_id(command.head.message_id, self._domain, "cmd"),
            token=thread.token,
            status=status,
            parent=command,
        )
        return self._owe(store, message)

    def _refuse(self, store: MailStore, thread: _Thread, command: _Command) -> _Entry | None:
        """Tell the sender of a command that could not be obeyed why (only them)."""
        mail = command.entry.full or command.entry.head
        assert mail.from_address is not None
        body = (
            f"Your command {command.written!r} was not applied: {command.reason}.\n\n"
            f"The rest of your message is kept on {thread.token or 'the call'} as a reply. "
            "Put the command, corrected, at the top of a new reply in this thread.\n\n"
            "This is an automatic answer."
        )
        message = self._compose(
            thread,
            kind="command-refused",
            body=body,
            subject=self._reply_subject(thread),
            message_id=_correlation_id(mail.message_id, self._domain, "cmdno"),
            token=thread.token,
            to=[mail.from_address],
            parent=command.entry,
        )
        return self._owe(store, message)

    # -- answering -----------------------------------------------------------------------------

    def _should_acknowledge(self, thread: _Thread, held: str | None) -> bool:
        root = thread.root
        mail = root.full or root.head
        if not self.config.acknowledge or held or root.outbound or mail.no_answer is not None:
            return False
        if any(e.outbound or "bridge" in e.head.usm for e in thread.members):
            return False  # already answered (or the bridge's own)
        if mail.from_address is None or mail.from_address.lower() == self.config.address.lower():
            return False
        now = self._now()
        if mail.when < now - timedelta(hours=self.config.acknowledge_max_age_hours):
            return False
        return self._answers_within_hour(mail.from_address, now) < (
            self.config.answers_per_sender_per_hour
        )

    def _answers_within_hour(self, address: str, now: datetime) -> int:
        since = now - timedelta(hours=1)
        folder = self._folders.get("sent")
        return sum(
            1
            for e in (folder.entries.values() if folder else ())
            if e.head.usm.get("kind") in _ANSWERS
            and e.head.when >= since
            and any(address.lower() in to.lower() for to in e.head.to)
        )

    def _next_token(self) -> str:
        numbers = [0]
        for folder in self._folders.values():
            for entry in folder.entries.values():
                match = self._token.fullmatch(f"[{entry.head.usm.get('reference', '')}]")
                if match:
                    numbers.append(int(match.group(2)))
        return f"{self.config.reference_prefix}-{max(numbers) + 1}"

    def _acknowledge(self, store: MailStore, thread: _Thread) -> _Entry | None:
        root = thread.root
        mail = root.full or root.head
        token = self._next_token()
        # The requester's files are named, never sent back: they are theirs already.
        names = [part.filename for part in mail.attachments if part.filename]
        received = f"We received your files: {', '.join(names)}.\n" if names else ""
        body = (
            f"Thank you for your message. It is registered as {token}.\n{received}"
            f"Please keep [{token}] in the subject when you write about it.\n\n"
            "This is an automatic answer."
        )
        message = self._compose(
            thread,
            kind="ack",
            body=body,
            subject=f"[{token}] {_strip_re(mail.subject) or '(no subject)'}",
            message_id=_correlation_id(root.head.message_id, self._domain, "ack"),
            token=token,
        )
        return self._owe(store, message)

    def _recipients(self, thread: _Thread) -> list[str]:
        root = thread.root
        mail = root.full or root.head
        if root.outbound:
            return [a for _, a in email.utils.getaddresses(mail.to)] or [self.config.address]
        return [mail.reply_to or mail.from_address or self.config.address]

    def _compose(
        self,
        thread: _Thread | None,
        *,
        kind: str,
        body: str,
        subject: str,
        message_id: str,
        token: str | None,
        status: str | None = None,
        public: bool = True,
        to: list[str] | None = None,
        parent: _Entry | None = None,
    ) -> EmailMessage:
        """A mail of the bridge; in ``thread`` it answers ``parent`` (default: its newest)."""
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.config.address
        recipients = to if to is not None else (self._recipients(thread) if thread else [])
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = email.utils.format_datetime(self._now())
        message["Message-ID"] = message_id
        if thread is not None:
            # The newest in thread order (what the status reading follows), not in arrival
            # order: a mail dated the same second as a person's reply must answer that reply,
            # or it would be read as coming before it, and the reply as unanswered news after.
            answered = parent or self._in_thread_order(thread)[-1]
            last = answered.head.message_id
            chain = [thread.root.head.message_id]
            chain += [r for r in (answered.head.references or []) if r not in chain]
            if last not in chain:
                chain.append(last)
            message["In-Reply-To"] = last
            message["References"] = " ".join(chain[-20:])
        # RFC 3834: the bridge's mail is automatic, and asks others not to answer it by machine.
        message["Auto-Submitted"] = "auto-replied"
        message["X-Auto-Response-Suppress"] = "All"
        message[BRIDGE_HEADER] = self.name
        message["X-USM-Kind"] = kind
        if token:
            message["X-USM-Reference"] = token
        if status:
            message["X-USM-Status"] = status
        if not public:
            message["X-USM-Visibility"] = "internal"
        message.set_content(body)
        return message

    def _find_sent(self, message_id: str) -> _Entry | None:
        folder = self._folders.get("sent")
        for entry in folder.entries.values() if folder else ():
            if entry.head.message_id == message_id:
                return entry
        return None

    def _owe(self, store: MailStore, message: EmailMessage) -> _Entry | None:
        """Deliver mail a read owes (an acknowledgement, an announcement, a refused command's
        answer) without ever failing the read on the relay's answer (see "Owed mail").

        Returns the copy, sent, or pending when the relay failed for now (the next reads try
        it again); ``None`` when the relay refused it for good: the refusal is kept in
        ``_refused`` for this read to dead-letter (the copy goes once the letter is stored).
        """
        try:
            return self._deliver(store, message, hold=True)
        except _RefusedForGood:
            return None

    def _deliver(
        self,
        store: MailStore,
        message: EmailMessage,
        *,
        send: bool = True,
        hold: bool = False,
        raw: bytes | None = None,
    ) -> _Entry:
        """Record the message in the Sent folder (pending), send it, clear the mark.

        A copy with the message's Message-ID already there is this very write made before: sent,
        it is returned as it is (never twice); pending, it is finished. After a temporary SMTP
        failure the copy stays pending for the retry of this write, or the next read, to finish
        (see "Pending copies" in the module docstring); after a permanent one it is removed.
        ``send=False`` (an internal note) only keeps the copy. ``raw`` is the message as
        rendered already (a mail with a file, written around it: :mod:`.outbound_files`).
        """
        message_id = str(message["Message-ID"])
        entry = self._find_sent(message_id)
        robot = self._robot_recipient(message) if send else None
        if robot is not None:
            # Kept as the thread's record (nothing the tool said is lost), mailed to no machine.
            log.warning("%s: %s (%s) kept but not mailed: %s", self.name, message_id,
                        message["X-USM-Kind"], robot)  # fmt: skip
            send = False
        if entry is None:
            rendered = message.as_bytes() if raw is None else raw
            uid = store.append("sent", rendered, pending=send and self._smtp is not None)
            del rendered  # the mail with a file is large: held no longer than its APPEND
            self._refresh(store)
            entry = self._folders["sent"].entries.get(uid or -1) or self._find_sent(message_id)
            if entry is None:
                raise RetriableRemoteError(
                    f"the copy of {message_id} did not appear in the Sent folder",
                    remote_message="APPEND not visible",
                )
        if entry.pending and not self._finish(store, entry, hold=hold):
            raise RetriableRemoteError(
                f"the copy of {message_id} vanished from the Sent folder before it was sent",
                remote_message="copy gone",
            )
        return entry

    @staticmethod
    def _robot_recipient(message: EmailMessage) -> str | None:
        """Why a mail the bridge wrote in answer to a thread must not go to its recipients (a
        robot among them), or None. A create is mailed where the tool or the settings say."""
        if message["X-USM-Kind"] in (None, "create"):
            return None
        for _, address in email.utils.getaddresses(message.get_all("To", [])):
            kind = robot_address(address)
            if kind is not None:
                return f"{address} is {kind}"
        return None

    def _again(self, store: MailStore, message_id: str) -> _Entry:
        """The write whose copy ``message_id`` is in the Sent folder, made again: nothing is
        made; a copy still pending is finished."""
        stub = EmailMessage()
        stub["Message-ID"] = message_id
        return self._deliver(store, stub)

    def _finish(
        self, store: MailStore, entry: _Entry, *, hold: bool = False, owed: bool | None = None
    ) -> bool:
        """Hand the pending copy ``entry`` to SMTP as stored, then clear its mark.

        The stored bytes are sent, not a new rendering: the same Message-ID, the same text.
        Returns ``False`` when the copy is no longer in the folder (dropped from the index).
        A temporary refusal keeps the copy and raises. With ``hold`` (mail a read owes) the
        relay is tried once, and not at all while it waits after failing for now: a temporary
        failure keeps the copy pending and returns. A
        permanent refusal of ``owed`` mail (by default: with ``hold``) keeps the copy, pending,
        until its dead letter is stored (see ``_condemned``), keeps the refusal for the read,
        and raises _RefusedForGood; the copy of the write at hand is removed instead, and the
        refusal raised for the engine to dead-letter the write.
        """
        owed = hold if owed is None else owed
        folder = self._folders["sent"]
        if self._is_condemned(entry.uid):
            if owed:
                raise _RefusedForGood  # its dead letter is owed already
            raise PermanentRemoteError(
                f"the relay refused {entry.head.message_id} for good",
                remote_message="refused for good",
            )
        if self._smtp is not None:
            if hold and self._relay_waiting():
                return True  # still pending: a later read tries it
            raw = store.fetch("sent", [entry.uid]).get(entry.uid)
            if raw is None:
                folder.entries.pop(entry.uid, None)
                return False
            recipients = [a for _, a in email.utils.getaddresses(entry.head.to) if "@" in a]
            try:
                if not recipients:  # a relay's refusal of nobody reads as temporary: for good
                    raise PermanentRemoteError(
                        f"the copy of {entry.head.message_id} names no recipient (To)",
                        remote_message="no recipient",
                    )
                if hold:  # once: the read goes on, later reads try again after a wait
                    self._smtp.send(raw, self.config.address, recipients)
                else:
                    self._smtp_send(raw, recipients)
            except RetriableRemoteError as error:
                self._relay_failed(error)
                if not hold:
                    raise
                return True  # still pending: a later read tries it
            except PermanentRemoteError as error:
                if hold and isinstance(error, RelayRefusedBridge):
                    # The relay refuses the bridge itself (TLS, sign-in): no message is to
                    # blame, so owed mail waits for the settings to be put right.
                    self._relay_failed(error)
                    return True
                if owed:
                    # Never tried again; removed once its dead letter is stored.
                    self._condemned[entry.uid] = folder.validity
                    self._refused_for_good(entry, error)
                    raise _RefusedForGood from error
                # The write at hand: the engine dead-letters it, and retries it after a kill.
                store.delete("sent", entry.uid)
                folder.entries.pop(entry.uid, None)
                raise
            self._relay_answered()
        # Without a relay the outbox is where mail goes out: keeping the copy was the sending.
        store.mark_sent("sent", entry.uid)
        entry.pending = False
        return True

    def _finish_pending(self, store: MailStore, *, hold: bool = False) -> None:
        """Finish every pending copy in the Sent folder, oldest first, except creates.

        Run before the mailbox is judged (see "Pending copies" in the module docstring). A copy
        the relay refuses for good is removed and kept in ``_refused`` for the next read to
        dead-letter; a temporary refusal raises with the rest still pending (the caller's retry
        finishes them), or with ``hold`` (a read) leaves them pending for a later read. A
        pending create is ``create``'s to finish: the engine links its thread only through
        ``create``.
        """
        folder = self._folders.get("sent")
        waiting = sorted(
            (e for e in (folder.entries.values() if folder else ()) if e.pending),
            key=lambda e: e.uid,
        )
        for entry in waiting:
            if entry.head.usm.get("kind") == "create":
                continue
            if self._is_condemned(entry.uid):
                continue  # refused for good: its dead letter is owed, then it is removed
            try:
                if self._finish(store, entry, hold=hold, owed=True) and not entry.pending:
                    log.info("%s: sent %s, left unsent before (%s)", self.name,
                             entry.head.message_id, entry.head.usm.get("kind"))  # fmt: skip
            except _RefusedForGood:
                continue  # kept for the read to dead-letter

    def _refused_for_good(self, entry: _Entry, error: PermanentRemoteError) -> None:
        log.warning("%s: the relay refused %s (%s) for good; its copy goes once its dead "
                    "letter is stored: %s",
                    self.name, entry.head.message_id, entry.head.usm.get("kind"),
                    error)  # fmt: skip
        self._refused.append((entry, error))

    def _unsent_record(self, entry: _Entry, error: PermanentRemoteError) -> RawRecord:
        """The dead letter of a pending copy the relay refused for good while it was finished."""
        reason = f"the SMTP relay refused the bridge's mail for good: {error}"
        if error.remote_message:
            reason += f" ({error.remote_message})"
        record = self._dead_letter_record(entry, reason[:500])
        data = dict(record.data)
        data["to"] = list(entry.head.to)
        data["kind"] = entry.head.usm.get("kind")
        return RawRecord(remote_id=record.remote_id, updated=record.updated, data=data)

    def _thread(self, store: MailStore, remote_id: str) -> _Thread:
        """The thread ``remote_id``, read in full, after the mailbox's pending copies were
        finished: what it says is then what its people were told.

        Other threads' pending copies are tried once each and may stay pending (a greylisted
        customer elsewhere never holds up this write); this thread's must go first, or the
        write fails for now (its retry tries again).
        """
        self._refresh(store)
        self._finish_pending(store, hold=True)
        threads, _ = self._threads()
        thread = threads.get(remote_id)
        own = sorted(
            (e for e in thread.members if e.outbound and e.pending) if thread else (),
            key=lambda e: e.uid,
        )
        for entry in own:
            if entry.head.usm.get("kind") == "create":
                continue  # create's to finish (see _finish_pending)
            try:
                self._finish(store, entry, owed=True)
            except _RefusedForGood:
                continue  # kept for the next read to dead-letter; the write goes on
        if own:
            threads, _ = self._threads()
            thread = threads.get(remote_id)
        if thread is None:
            raise PermanentRemoteError(
                f"no thread {remote_id} in the mailbox", remote_message="no such thread"
            )
        self._read_full(store, thread.members)
        return thread

    # -- the contract --------------------------------------------------------------------------

    @_one_at_a_time
    def check(self) -> CheckResult:
        """Open the mailbox, read both folders' UIDVALIDITY, and greet the SMTP relay."""
        try:

            def probe(store: MailStore) -> dict[str, str]:
                return {f"{role} uidvalidity": str(store.validity(role)) for role in ROLES}

            facts = self._retrying(probe)
            if self._smtp is not None:
                self._smtp.check()
                facts["smtp"] = self._smtp.where
        except RemoteError as error:
            return CheckResult(ok=False, detail=str(error))
        facts["mailbox"] = self._open().where
        facts["address"] = self.config.address
        return CheckResult(ok=True, detail="mailbox readable", facts=facts)

    def discover(self) -> Vocabulary:
        """A mailbox has no vocabulary of its own: these are the statuses its mail announces."""
        return Vocabulary(
            statuses=[VocabularyValue(value=s) for s in STATUSES],
            types=[
                VocabularyValue(value=t, label=f"[{t}] in the subject")
                for t in ("incident", "request", "change", "wish")
            ],
            fields=[VocabularyValue(value=f) for f in ("subject", "body", "to")],
        )

    @_one_at_a_time
    def find_by_correlation(self, correlation: str) -> RemoteRef | None:
        """The thread holding the mail this bridge sent with ``correlation``, if it was sent."""
        message_id = _correlation_id(correlation, self._domain)

        def find(store: MailStore) -> RemoteRef | None:
            self._refresh(store)
            entry = self._find_sent(message_id)
            if entry is None or entry.pending:
                return None  # a pending copy was never handed over: create finishes it
            threads, where = self._threads()
            root = where.get(entry.key, message_id)
            thread = threads.get(root)
            return RemoteRef(remote_id=root, remote_key=thread.token if thread else None)

        return self._retrying(find)

    @_one_at_a_time
    def find_comment(
        self,
        remote_id: str,
        correlation: str,
        *,
        since: datetime,
        known: Collection[str] = (),
        public: bool = True,
    ) -> str | None:
        """The copy a lost :meth:`add_comment` made: the mail in the Sent folder under the
        Message-ID derived from ``correlation``, the bridge's own proof (nobody else writes
        that id). A copy still pending counts as made: the next read or retry finishes it."""
        message_id = _correlation_id(correlation, self._domain)

        def find(store: MailStore) -> str | None:
            self._refresh(store)
            entry = self._find_sent(message_id)
            if entry is None or entry.head.message_id in known:
                return None
            kind = entry.head.usm.get("kind")
            return message_id if kind == ("comment" if public else "note") else None

        return self._retrying(find)

    @_one_at_a_time
    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Open a thread: a mail to ``fields.to``, or else to the ``supplier_address``.

        A mailbox is a route's target when the unit's supplier is reached by mail, so the call
        is mailed to that supplier. Naming nobody, the create is refused (permanently: it is a
        setting to make), never mailed to the mailbox itself, where nobody outside would see it.
        """
        message_id = _correlation_id(correlation, self._domain)

        def work(store: MailStore) -> RemoteRef:
            self._refresh(store)
            entry = self._find_sent(message_id)
            if entry is not None:
                # Made before (a retry, or a crash before the engine's commit): finished if
                # still pending, and never made again.
                self._again(store, message_id)
                return RemoteRef(remote_id=message_id, remote_key=entry.head.usm.get("reference"))
            recipient = self._supplier(draft)
            token = self._next_token()
            subject = str(draft.fields.get("subject") or "(no subject)")
            message = self._compose(
                None,
                kind="create",
                body=str(draft.fields.get("body") or ""),
                subject=f"[{token}] {subject}",
                message_id=message_id,
                token=token,
                status=draft.status,
                to=[recipient],
            )
            self._deliver(store, message)
            return RemoteRef(remote_id=message_id, remote_key=token)

        return self._retrying(work)

    def _supplier(self, draft: RemoteDraft) -> str:
        """Whom a create mails: the draft's ``to``, else the ``supplier_address`` setting."""
        named = draft.fields.get("to")
        recipient = named.strip() if isinstance(named, str) and named.strip() else None
        recipient = recipient or self.config.supplier_address
        if recipient is None:
            raise PermanentRemoteError(
                f"{self.name} cannot open a supplier call: the draft names no recipient ('to') "
                "and the setting 'supplier_address' is not set. Set supplier_address (in "
                f"[instances.{self.name}.settings]) to the outside supplier's address that the "
                "calls this mailbox opens are mailed to",
                remote_message="no recipient: set supplier_address",
            )
        addresses = [a.lower() for _, a in email.utils.getaddresses([recipient])]
        if self.config.address.lower() in addresses:
            raise PermanentRemoteError(
                f"{self.name} cannot open a supplier call by mailing its own address "
                f"{self.config.address}: set supplier_address to the outside supplier's address",
                remote_message="recipient is the mailbox itself",
            )
        return recipient

    def _said_id(self, thread: _Thread, kind: str, said: dict[str, JsonValue]) -> str:
        """The Message-ID of a mail saying ``said`` in ``thread`` as it stands now.

        Derived from what is said and from the thread's messages other than the bridge's
        earlier mails saying the very same: the retry of a write (a kill in mid-send, a relay
        that refused it for now, a crash before the engine's commit) finds its own copy, while
        the same words after anything else happened in the thread are a new mail.
        """
        what = hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()[:16]
        prefix = f"<usm.{kind}.{what}."
        others = sorted(
            e.head.message_id for e in thread.members if not e.head.message_id.startswith(prefix)
        )
        where = hashlib.sha256("\n".join(others).encode()).hexdigest()[:24]
        return f"{prefix}{where}@{self._domain}>"

    @_one_at_a_time
    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """Tell the thread's requester what changed: a status, or new text."""
        body = str(draft.fields.get("body") or "").strip()
        title = draft.fields.get("subject")
        if not body and not draft.status and not title:
            return  # nothing to say: no no-op mail

        def work(store: MailStore) -> None:
            thread = self._thread(store, remote_id)
            confirm = draft.status_fields.get("confirm", True) is not False
            said: dict[str, JsonValue] = {
                "status": draft.status,
                "confirm": confirm,
                "title": str(title) if title else None,
                "body": body,
            }
            message_id = self._said_id(thread, "u", said)
            if self._find_sent(message_id) is not None:
                self._again(store, message_id)  # said in this thread as it stands: a retry
                return
            token = thread.token
            lines: list[str] = []
            kind = "update"
            # The thread already says this status (an update retried after a crash between
            # the send and the bridge's commit, or the status a command set): saying it again
            # is a no-op write.
            current = self._standing(thread, self._commands(thread)).status
            status = draft.status if draft.status != current else None
            if not body and not status and not title:
                return
            if status:
                kind, text = self._status_text(token, status, confirm=confirm)
                lines.append(text)
            if title:
                lines.append(f"Title: {title}")
            if body:
                lines.append(body)
            message = self._compose(
                thread,
                kind=kind,
                body="\n\n".join(lines),
                subject=self._reply_subject(thread),
                message_id=message_id,
                token=token,
                status=status,
            )
            self._deliver(store, message)

        self._retrying(work)

    @_one_at_a_time
    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """A public comment is mailed to the requester; an internal one only kept in Sent."""

        def work(store: MailStore) -> str:
            thread = self._thread(store, remote_id)
            message = self._comment_mail(thread, comment)
            entry = self._deliver(store, message, send=comment.public)
            return entry.head.message_id

        return self._retrying(work)

    def _comment_mail(self, thread: _Thread, comment: CommentDraft, note: str = "") -> EmailMessage:
        """The mail of ``comment`` in ``thread``; its Message-ID from the comment's correlation
        (or, without one, from what it says), so that a retry finds its copy."""
        # The body names its author already (the sync's attribution line).
        if comment.correlation:
            message_id = _correlation_id(comment.correlation, self._domain)
        else:
            said: dict[str, JsonValue] = {"body": comment.body, "public": comment.public}
            message_id = self._said_id(thread, "n", said)
        return self._compose(
            thread,
            kind="comment" if comment.public else "note",
            body=f"{comment.body}\n\n{note}" if note else comment.body,
            subject=self._reply_subject(thread),
            message_id=message_id,
            token=thread.token,
            public=comment.public,
        )

    # -- attachments (see "Files" in the module docstring) -------------------------------------

    carries_attachments: ClassVar[bool] = True

    @_one_at_a_time
    def list_attachments(self, remote_id: str) -> list[RemoteAttachment]:
        """Every file of the thread ``remote_id``'s mails, in thread order: the first mail's
        (the call's), then each reply's (``comment_id`` its Message-ID), the bridge's own
        mails' among them (``author`` the mailbox's address). A part whose content cannot be
        read is listed too, without a SHA-256: opening it raises :class:`UnreadablePart`."""

        def work(store: MailStore) -> _Thread:
            self._refresh(store)
            thread = self._threads()[0].get(remote_id)
            if thread is None:
                raise PermanentRemoteError(
                    f"no thread {remote_id} in the mailbox", remote_message="no such thread"
                )
            self._read_full(store, thread.members)
            return thread

        return self._files_of(self._retrying(work))

    def _files_of(self, thread: _Thread) -> list[RemoteAttachment]:
        """The files of ``thread``'s mails as read in full (see :meth:`list_attachments`):
        what a read lists on the record from the mails it parsed already, no fetch more."""
        found: list[RemoteAttachment] = []
        for entry in self._in_thread_order(thread):
            mail = entry.full
            if mail is None:
                continue  # unreadable in full: a dead letter of its own, with the whole mail
            author = self.config.address if entry.outbound else mail.from_address
            comment_id = None if entry is thread.root else mail.message_id
            found += [
                RemoteAttachment(
                    remote_id=attachment_id(mail.message_id, part.path),
                    name=part.filename,
                    declared_type=part.content_type,
                    size=part.size,
                    sha256=part.sha256,
                    comment_id=comment_id,
                    created=mail.when,
                    author=author,
                    inline=part.inline,
                )
                for part in mail.attachments
            ]
        return found

    @_one_at_a_time
    def open_attachment(self, attachment_id: str) -> AbstractContextManager[Iterator[bytes]]:
        """The decoded content of the file ``attachment_id`` (``<message-id>#<part path>``).

        The mail is fetched whole (IMAP ``BODY.PEEK[]``, a Maildir file) and parsed, as every
        read of a mail is: so a file costs what its mail costs to parse (the stdlib's parser
        peaks at about eight times the mail's size: 85 MB for an 11 MB mail, measured; a mail
        over ``max_message_bytes`` is read within that bound instead, see "Mail over
        max_message_bytes") plus one decoded chunk, never its decoded content whole
        (:func:`.mime_parts.decoded_chunks`).

        :raises PermanentRemoteError: no such mail or part (:class:`UnreadablePart`: a part
            whose content does not decode, raised as it is read).
        """
        try:
            message_id, path = split_attachment_id(attachment_id)
        except ValueError as error:
            raise PermanentRemoteError(str(error), remote_message="not an attachment id") from None

        def work(store: MailStore) -> tuple[_Entry, bytes | None]:
            self._refresh(store)
            entry = self._messages()[0].get(message_id)
            if entry is not None and entry.size > self.config.max_message_bytes:
                return entry, None  # read within the bound: see _bounded_part
            raw = store.fetch(entry.role, [entry.uid]).get(entry.uid) if entry else None
            if entry is None or raw is None:
                raise PermanentRemoteError(
                    f"no mail {message_id} in the mailbox", remote_message="no such mail"
                )
            return entry, raw

        entry, raw = self._retrying(work)
        if raw is None:
            return self._bounded_part(entry, attachment_id, path)
        return _part_content(raw, attachment_id, path)

    @contextlib.contextmanager
    def _bounded_part(
        self, entry: _Entry, attachment_id: str, path: str
    ) -> Iterator[Iterator[bytes]]:
        """The file at ``path`` of a mail over ``max_message_bytes``: from the mail as read
        when it is kept there; else a person's is refused (:class:`UnreadablePart`, saying by
        how much the mail is over) and the bridge's own decoded from the mail on disk."""
        with contextlib.ExitStack() as stack:

            def opened(store: MailStore) -> BinaryIO:
                handle = stack.enter_context(store.open_message(entry.role, entry.uid))
                if handle is None:
                    raise PermanentRemoteError(
                        f"no mail {entry.head.message_id} in the mailbox",
                        remote_message="no such mail",
                    )
                return handle

            with self._lock:  # the mailbox is the connector's (see "One thing at a time")
                handle = self._retrying(opened)
            # A person's file left out is refused: no need to decode the files to list them.
            try:
                reduced = self._reduced(handle, entry.size, measure=self._own(entry))
            except BeyondBound as error:  # a dead letter: its files are none of a call's
                problem = f"{self._over_limit(entry.size)}, and {error.reason}"
                raise UnreadablePart(f"attachment {attachment_id}: {problem}",
                                     remote_message=problem) from None  # fmt: skip
            dropped = reduced.dropped.get(path)
            if dropped is None:
                with _part_content(reduced.raw, attachment_id, path) as chunks:
                    yield chunks
            elif self._own(entry):
                yield dropped_chunks(handle, dropped)
            else:
                problem = f"{self._over_limit(entry.size)}; raise it to carry this file"
                raise UnreadablePart(f"attachment {attachment_id}: {problem}",
                                     remote_message=problem)  # fmt: skip

    @_one_at_a_time
    def put_attachment(
        self,
        remote_id: str,
        name: str,
        media_type: str,
        size: int,
        chunks: Iterable[bytes],
        *,
        comment: CommentDraft | None = None,
    ) -> str:
        """Mail a file of the call ``remote_id`` to its requester (see "Files" in the module
        docstring); returns the file's id (``<message-id>#<part path>``).

        :raises PermanentRemoteError: the content is not ``size`` bytes, or the mail would be
            larger than the relay takes (its SIZE): the file is not sent, a comment's mail
            still is, saying so.
        """
        safe = safe_file_name(name)
        with scratch_folder() as folder:
            try:
                spooled = spool(chunks, directory=Path(folder), cap=size)
            except AttachmentTooLarge:
                spooled = None
            if spooled is None or spooled.size != size:
                raise PermanentRemoteError(
                    f"file {safe} for {remote_id}: its content is not the {size} bytes stated",
                    remote_message="size mismatch",
                )
            file = _OutFile(safe, media_type, spooled, Path(folder) / "mail.eml")
            return self._retrying(lambda store: self._put(store, remote_id, file, comment))

    def _put(
        self, store: MailStore, remote_id: str, file: _OutFile, comment: CommentDraft | None
    ) -> str:
        thread = self._thread(store, remote_id)
        carrier = self._comment_mail(thread, comment) if comment is not None else None
        made = self._find_sent(str(carrier["Message-ID"])) if carrier is not None else None
        # An internal note's files are kept with it in the Sent folder, mailed to nobody.
        public = comment is None or comment.public
        if carrier is not None and made is None:
            # The comment's mail is not made yet: the file goes in it (add_comment, later,
            # finds that copy and sends nothing more).
            message = carrier
        else:
            if made is not None:
                self._read_full(store, [made])
                held = _file_in(made, file)
                if held is not None:
                    self._again(store, made.head.message_id)
                    return held  # this very file went with the comment's mail already
            # Made before (a retry, a crash before the flow's commit): _deliver finds its
            # copy by the Message-ID and sends nothing again.
            message = self._file_mail(thread, file, comment, made)
        message_id = str(message["Message-ID"])
        rendered = write_with_file(
            message, name=file.name, media_type=file.media_type,
            chunks=file.content.chunks(), target=file.mail,
        )  # fmt: skip
        too_large = self._over_relay_limit(rendered) if public else None  # no relay to fit
        try:
            if too_large is not None:
                raise PermanentRemoteError(too_large, remote_message="over the relay's SIZE")
            self._deliver(store, message, send=public, raw=file.mail.read_bytes())
        except RelayRefusedBridge:
            raise
        except PermanentRemoteError as error:
            if carrier is not None and made is None:
                # The comment itself still goes, saying what became of its file.
                note = f"(The file {file.name} could not be attached: {error}.)"
                self._deliver(store, self._comment_mail(thread, cast(CommentDraft, comment), note),
                              send=public)  # fmt: skip
            raise PermanentRemoteError(
                f"file {file.name} ({file.content.size} bytes) was not mailed: {error}",
                remote_message=error.remote_message,
            ) from None
        return attachment_id(message_id, "2")  # the text is part 1, the file part 2

    def _file_mail(
        self, thread: _Thread, file: _OutFile, comment: CommentDraft | None, made: _Entry | None
    ) -> EmailMessage:
        """A short mail of its own for a file: with a comment whose mail is made already (it
        answers that mail), or of the call without one (to the requester, naming the call)."""
        said = f"{thread.root.head.message_id} {comment.correlation if comment else ''} "
        said += f"{file.content.sha256} {file.name}"
        what = hashlib.sha256(said.encode()).hexdigest()[:32]
        call = thread.token or "your call"
        size = f"{file.name} ({file.content.size} bytes)"
        return self._compose(
            thread,
            kind="file",
            body=(
                f"The file {size} of the comment before, on {call}."
                if made is not None
                else f"A file was added to {call}: {size}."
            ),
            subject=self._reply_subject(thread),
            message_id=f"<usm.file.{what}@{self._domain}>",
            token=thread.token,
            public=comment.public if comment is not None else True,
            parent=made,
        )

    @_one_at_a_time
    def add_comment_with_files(
        self, remote_id: str, comment: CommentDraft, files: Sequence[OutgoingFile]
    ) -> tuple[str, list[FileWrite]]:
        """The comment's mail with its files attached, one mail (see "Files" in the module
        docstring). Its Message-ID comes from the comment's correlation: a retry after the mail
        was made (a crash, a lost answer) finds it and sends nothing again. A mail over the
        relay's SIZE goes without the files, saying so; they are reported refused."""

        def work(store: MailStore) -> tuple[str, list[FileWrite]]:
            thread = self._thread(store, remote_id)
            carrier = self._comment_mail(thread, comment)

            def bare(note: str) -> EmailMessage:
                return self._comment_mail(thread, comment, note)

            return self._with_files(store, carrier, files, public=comment.public, bare=bare)

        return self._retrying(work)

    creates_with_files: ClassVar[bool] = True

    @_one_at_a_time
    def create_with_files(
        self, draft: RemoteDraft, correlation: str, files: Sequence[OutgoingFile]
    ) -> tuple[RemoteRef, list[FileWrite]]:
        """:meth:`create` with the call's files in the opening mail (one mail to the supplier,
        not one more per file); a thread made already is returned with no file written."""
        message_id = _correlation_id(correlation, self._domain)

        def work(store: MailStore) -> tuple[RemoteRef, list[FileWrite]]:
            self._refresh(store)
            entry = self._find_sent(message_id)
            if entry is not None:
                self._again(store, message_id)
                ref = RemoteRef(remote_id=message_id, remote_key=entry.head.usm.get("reference"))
                return ref, [FileWrite() for _ in files]
            token = self._next_token()

            def opening(note: str) -> EmailMessage:
                body = str(draft.fields.get("body") or "")
                return self._compose(
                    None, kind="create", body=f"{body}\n\n{note}" if note else body,
                    subject=f"[{token}] {draft.fields.get('subject') or '(no subject)'}",
                    message_id=message_id, token=token, status=draft.status,
                    to=[self._supplier(draft)],
                )  # fmt: skip

            _, writes = self._with_files(store, opening(""), files, public=True, bare=opening)
            return RemoteRef(remote_id=message_id, remote_key=token), writes

        return self._retrying(work)

    def _with_files(
        self,
        store: MailStore,
        message: EmailMessage,
        files: Sequence[OutgoingFile],
        *,
        public: bool,
        bare: Callable[[str], EmailMessage],
    ) -> tuple[str, list[FileWrite]]:
        """Deliver ``message`` with ``files`` attached (parts 2, 3, ...), once: a copy made
        already is finished, not made again, and its files are looked up in it. Over the
        relay's SIZE, ``bare(note)`` goes instead, naming the files not attached."""
        message_id = str(message["Message-ID"])
        made = self._find_sent(message_id)
        if made is not None:
            self._read_full(store, [made])
            self._again(store, message_id)
            held = [_file_in(made, _OutKey(f.name, f.sha256)) for f in files]
            return message_id, [
                FileWrite(remote_id=h) if h else FileWrite(refused=f"{f.name}: not in the mail")
                for f, h in zip(files, held, strict=True)
            ]
        if not files:
            return self._deliver(store, message, send=public).head.message_id, []
        with scratch_folder() as folder:
            target = Path(folder) / "mail.eml"
            size = write_with_files(
                message, [(f.name, f.media_type, f.chunks()) for f in files], target
            )
            too_large = self._over_relay_limit(size) if public else None
            if too_large is None:
                try:
                    self._deliver(store, message, send=public, raw=target.read_bytes())
                except RelayRefusedBridge:
                    raise
                except PermanentRemoteError as error:
                    too_large = str(error)
                else:
                    return message_id, [
                        FileWrite(remote_id=attachment_id(message_id, str(number + 2)))
                        for number in range(len(files))
                    ]
        names = ", ".join(f.name for f in files)
        self._deliver(store, bare(f"(Not attached: {names}: {too_large}.)"), send=public)
        return message_id, [FileWrite(refused=f"{f.name}: {too_large}") for f in files]

    def _over_relay_limit(self, size: int) -> str | None:
        """Why a mail of ``size`` bytes is more than the relay takes (its EHLO's SIZE), or
        ``None``. Asked once per connector (a relay's limit is a setting of its own)."""
        if self._smtp is None:
            return None  # an outbox takes any size
        if self._relay_size is None:
            self._relay_size = (self._smtp.size_limit(),)
        limit = self._relay_size[0]
        if limit is None or size <= limit:
            return None
        return f"the mail would be {size} bytes, over the SMTP relay's SIZE limit of {limit}"


@dataclass(frozen=True)
class _OutFile:
    """A file on its way into a mail: its safe name, type, spooled content, and where the
    mail with it is written."""

    name: str
    media_type: str
    content: SpooledFile
    mail: Path


@dataclass(frozen=True)
class _OutKey:
    """What identifies a file in a mail: its name and SHA-256."""

    name: str
    sha256: str


def _file_in(entry: _Entry, file: _OutFile | _OutKey) -> str | None:
    """The id of ``file`` (same SHA-256 and name) among the files of the mail ``entry``."""
    mail = entry.full
    sha256 = file.content.sha256 if isinstance(file, _OutFile) else file.sha256
    for part in mail.attachments if mail is not None else ():
        if part.sha256 == sha256 and part.filename == file.name:
            return attachment_id(mail.message_id if mail else "", part.path)
    return None


@contextlib.contextmanager
def _part_content(raw: bytes, attachment_id: str, path: str) -> Iterator[Iterator[bytes]]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    del raw  # the parsed message holds the encoded content: one copy, not two
    problem = part_problem(message, path)
    if problem is not None:
        raise UnreadablePart(f"attachment {attachment_id}: {problem}", remote_message=problem)
    part = find_part(message, path)
    assert part is not None  # part_problem says so otherwise
    yield decoded_chunks(part)
