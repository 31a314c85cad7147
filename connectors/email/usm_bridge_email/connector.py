"""The e-mail connector: a shared mailbox as a link in the chain.

What a record is
    One *thread*. ``remote_id`` is the Message-ID of its first message, ``remote_key`` its
    reference token (``HR-42``) once the bridge gave it one. ``data`` is the first message
    (``message_id, subject, from, to, cc, date, body, in_reply_to, references, attachments``)
    with the later ones under ``replies`` (each also with ``direction`` in/out and ``public``),
    plus what the connector worked out: ``reference_token``, ``status`` (the last status the
    bridge announced, or ``confirmed`` / ``in_progress`` after the customer answered a
    confirmation request) and ``held`` (why nobody was told of the call).

Threading
    Messages are joined through Message-ID, In-Reply-To and References, a bounce through the
    Message-ID of the message it returns, and a message without any of those through the
    reference token in its subject. The whole mailbox's headers are indexed (and cached per
    UIDVALIDITY and UID, so a cycle fetches only new headers); a thread whose message is new is
    read again in full.

Reading incrementally
    The cursor keeps (UIDVALIDITY, last UID) per folder (the inbox and the Sent folder or
    outbox). A changed UIDVALIDITY re-reads that folder: thread ids are Message-IDs, so the
    resync yields the same records again and never new ones.

Dead letters
    A message that must not become a call (too large, a mail loop, a bounce or auto-reply
    belonging to no thread, bulk mail, a refused sender) is yielded as a record whose ``data``
    holds ``dead_letter: {"reason": ...}`` and the message's headers. The connector's plugin
    answers ``usm_bridge_map_inbound`` for such records by raising ``MappingError(reason)``, so
    the engine dead-letters it with that reason, through the ordinary path, and the read goes on.

Writing
    Every outbound mail carries Message-ID, In-Reply-To, References, ``Auto-Submitted:
    auto-replied``, ``X-Auto-Response-Suppress: All`` and the bridge's ``X-USM-*`` headers. A
    copy goes to the Sent folder (IMAP) or outbox (Maildir) first, marked pending, then to SMTP,
    then the mark is cleared. A write with a correlation gets a Message-ID derived from it, so
    ``find_by_correlation`` finds it in the Sent folder and a crash between the send and the
    engine's commit never sends twice; a crash between the send and clearing the mark re-sends
    the very same message (same Message-ID, which receivers treat as one).

Never answering machines (RFC 3834)
    Acknowledgements go only to people: never to auto-replies, bounces, lists, bulk mail, the
    bridge's own mail, senders held or refused, mail older than a limit, or a sender already
    answered too often within the hour.
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import ClassVar, Final, TypeVar, cast

from pydantic import JsonValue
from usm_bridge.connector import (
    Checkpoint,
    CheckResult,
    CommentDraft,
    Connector,
    ConnectorSettings,
    RawRecord,
    RemoteDraft,
    RemoteRef,
    Vocabulary,
    VocabularyValue,
)
from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError

from .parsing import BRIDGE_HEADER, ParsedMail, parse_headers, parse_message
from .settings import EmailSettings
from .smtp import SmtpSender
from .stores import FolderRole, ImapStore, MaildirStore, MailStore, StoredHeader
from .tls import tls_context

__all__ = ["DEAD_LETTER_KEY", "EmailConnector"]

#: The key of ``RawRecord.data`` that asks for a dead letter (see the module docstring).
DEAD_LETTER_KEY: Final = "dead_letter"
ROLES: Final[tuple[FolderRole, ...]] = ("inbox", "sent")
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
T = TypeVar("T")


@dataclass
class _Entry:
    """One message of the index: where it is, and its headers (its body once read)."""

    role: FolderRole
    uid: int
    size: int
    pending: bool
    arrived: datetime
    head: ParsedMail
    full: ParsedMail | None = None
    #: Why this message is a dead letter on its own (too large, unreadable), or None.
    rejected: str | None = None

    @property
    def key(self) -> tuple[FolderRole, int]:
        return (self.role, self.uid)

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
        self._sleep = sleep
        self._now = now
        self._maildir_hook = maildir_hook
        self._store: MailStore | None = None
        self._folders: dict[FolderRole, _Folder] = {}
        self._domain = self.config.address.rsplit("@", 1)[-1].lower()
        smtp = self.config.smtp
        self._smtp = SmtpSender(smtp, helo_name=self._domain) if smtp is not None else None
        self._token = re.compile(rf"\[({re.escape(self.config.reference_prefix)}-(\d+))\]")
        self._confirm = re.compile(self.config.confirm_pattern)
        self._reopen = re.compile(self.config.reopen_pattern)

    # -- plumbing ------------------------------------------------------------------------------

    def _open(self) -> MailStore:
        if self._store is not None:
            return self._store
        c = self.config
        if c.imap is not None:
            where = f"imap://{c.imap.host}:{c.imap.port}"
            context = None if c.imap.security == "plain" else tls_context(c.imap.ca_file, where)
            self._store = ImapStore(
                host=c.imap.host,
                port=c.imap.port,
                security=c.imap.security,
                username=c.imap.username,
                password=c.imap.password.get_secret_value(),
                folders={"inbox": c.imap.inbox, "sent": c.imap.sent},
                timeout=c.imap.timeout,
                ssl_context=context,
            )
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

    def close(self) -> None:
        self._drop_store()

    # -- the index -----------------------------------------------------------------------------

    def _refresh(self, store: MailStore) -> None:
        """Bring the header index up to date: only new UIDs are fetched; a new UIDVALIDITY
        throws the folder's part away."""
        for role in ROLES:
            validity = store.validity(role)
            folder = self._folders.get(role)
            if folder is None or folder.validity != validity:
                folder = self._folders[role] = _Folder(validity)
            since = max(folder.entries, default=0)
            for header in store.list_since(role, since):
                folder.entries[header.uid] = self._entry(store, role, header)

    def _entry(self, store: MailStore, role: FolderRole, header: StoredHeader) -> _Entry:
        try:
            head = parse_headers(header.header, arrived=header.arrived)
        except Exception as error:
            head = parse_headers(b"Subject: (unreadable)\r\n\r\n", arrived=header.arrived)
            entry = _Entry(role, header.uid, header.size, header.pending, header.arrived, head)
            entry.rejected = f"unreadable message: {type(error).__name__}"
            return entry
        entry = _Entry(role, header.uid, header.size, header.pending, header.arrived, head)
        if header.size > self.config.max_message_bytes:
            entry.rejected = (
                f"message of {header.size} bytes is over the limit of "
                f"{self.config.max_message_bytes} bytes (max_message_bytes)"
            )
        elif head.received_hops > self.config.max_received_hops:
            entry.rejected = (
                f"mail loop: {head.received_hops} Received headers "
                f"(more than {self.config.max_received_hops})"
            )
        elif head.auto_kind == "bounce" and role == "inbox":
            self._read_full(store, [entry])  # a bounce threads through the message it returns
        return entry

    def _read_full(self, store: MailStore, entries: list[_Entry]) -> None:
        wanted = [e for e in entries if e.full is None and e.rejected is None]
        for role in ROLES:
            uids = [e.uid for e in wanted if e.role == role]
            if not uids:
                continue
            raw = store.fetch(role, uids)
            for entry in wanted:
                if entry.role != role or entry.uid not in raw:
                    continue
                try:
                    entry.full = parse_message(
                        raw[entry.uid],
                        arrived=entry.arrived,
                        max_body_chars=self.config.max_body_chars,
                        max_attachment_bytes=self.config.max_attachment_bytes,
                    )
                except Exception as error:
                    entry.rejected = f"unreadable message: {type(error).__name__}: {error}"[:300]

    def _messages(self) -> dict[str, _Entry]:
        """Every readable message once by Message-ID; the Sent copy wins over one that came
        back into the inbox (the bridge's own mail delivered to itself)."""
        found: dict[str, _Entry] = {}
        for role in ("sent", "inbox"):
            folder = self._folders.get(role)
            for entry in folder.entries.values() if folder else ():
                if entry.rejected is None:
                    found.setdefault(entry.head.message_id, entry)
        return found

    def _threads(self) -> tuple[dict[str, _Thread], dict[tuple[FolderRole, int], str]]:
        """Threads by root Message-ID, and the root of every message by its place."""
        messages = self._messages()
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
        return threads, where

    # -- reading -------------------------------------------------------------------------------

    def _decode_cursor(self, cursor: str | None) -> dict[FolderRole, tuple[int, int]]:
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
            return {
                role: (int(state[role][0]), int(state[role][1])) for role in ROLES if role in state
            }
        except (ValueError, KeyError, TypeError, IndexError):
            raise PermanentRemoteError(
                "the e-mail cursor is not one this connector wrote", remote_message=cursor[:100]
            ) from None

    def read_changes(self, cursor: str | None) -> Iterator[RawRecord | Checkpoint]:
        """Yield each thread with a message new since ``cursor``; see the module docstring."""
        saved = self._decode_cursor(cursor)
        self._retrying(self._refresh)
        new: dict[FolderRole, list[int]] = {}
        top: dict[FolderRole, int] = {}
        for role in ROLES:
            folder = self._folders[role]
            validity, last = saved.get(role, (folder.validity, 0))
            if validity != folder.validity:
                last = 0  # a new UIDVALIDITY: every UID is new; ids are Message-IDs, no dupes
            new[role] = sorted(uid for uid in folder.entries if uid > last)
            top[role] = max([last, *folder.entries])
        threads, where = self._threads()
        changed: dict[str, datetime] = {}
        lone: list[_Entry] = []
        done: set[tuple[FolderRole, int]] = set()
        for role in ROLES:
            for uid in new[role]:
                entry = self._folders[role].entries[uid]
                root = where.get(entry.key)
                if entry.rejected is not None:
                    lone.append(entry)
                elif root is None:
                    done.add(entry.key)  # a second copy of a message indexed elsewhere
                else:
                    changed[root] = min(changed.get(root, entry.head.when), entry.head.when)
        order = sorted(changed, key=lambda mid: (changed[mid], mid))
        extra: dict[FolderRole, list[int]] = {role: [] for role in ROLES}

        def checkpoint() -> Checkpoint:
            state: dict[str, list[int]] = {}
            for role in ROLES:
                pending = [uid for uid in new[role] if (role, uid) not in done]
                upto = pending[0] - 1 if pending else top[role]
                if not pending:  # past our own acknowledgements, up to any other message
                    for uid in sorted(u for u in self._folders[role].entries if u > upto):
                        if uid not in extra[role]:
                            break
                        upto = uid
                state[role] = [self._folders[role].validity, upto]
            return Checkpoint(cursor=json.dumps(state, sort_keys=True))

        for entry in lone:
            yield self._dead_letter_record(entry, entry.rejected or "rejected")
            done.add(entry.key)
        if lone:
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
                record, acked = self._record(thread)
                if acked is not None:
                    extra[acked.role].append(acked.uid)
                yield record
                done.update(entry.key for entry in thread.members)
            yield checkpoint()
        if not order:
            yield checkpoint()

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

    def _dead_letter_record(self, entry: _Entry, reason: str) -> RawRecord:
        head = entry.head
        data: dict[str, JsonValue] = {
            DEAD_LETTER_KEY: {"reason": reason},
            "message_id": head.message_id,
            "subject": head.subject,
            "from": head.from_,
            "date": head.date,
            "size": entry.size,
            "folder": entry.role,
            "uid": entry.uid,
        }
        return RawRecord(remote_id=head.message_id, updated=head.when, data=data)

    def _message_json(self, entry: _Entry) -> dict[str, JsonValue]:
        mail = entry.full or entry.head
        return {
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

    def _record(self, thread: _Thread) -> tuple[RawRecord, _Entry | None]:
        """The thread as a record, acknowledging it first when it is a new call from a person."""
        root = thread.root
        mail = root.full or root.head
        reason = self._refusal(thread)
        held = self._held(root)
        acked: _Entry | None = None
        if reason is None and self._should_acknowledge(thread, held):
            acked = self._retrying(lambda store: self._acknowledge(store, thread))
            if acked is not None:
                thread.members.append(acked)
        data = self._message_json(root)
        data["replies"] = [self._message_json(e) for e in thread.members if e is not root]
        data["reference_token"] = thread.token
        data["held"] = held
        status, confirmed_at = self._status(thread)
        if status is not None:
            data["status"] = status
        if confirmed_at is not None:
            data["confirmed_at"] = confirmed_at
        if reason is not None:
            data[DEAD_LETTER_KEY] = {"reason": reason}
        updated = max(e.head.when for e in thread.members)
        record = RawRecord(
            remote_id=mail.message_id, remote_key=thread.token, updated=updated, data=data
        )
        return record, acked

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
        if self._held(root) and self.config.outside_domains == "refuse":
            return f"sender domain {mail.from_address.rsplit('@', 1)[-1]!r} is not allowed"
        return None

    def _held(self, root: _Entry) -> str | None:
        allowed = [d.lower().lstrip("@") for d in self.config.allowed_domains]
        address = (root.full or root.head).from_address
        if root.outbound or not allowed or address is None:
            return None
        domain = address.rsplit("@", 1)[-1].lower()
        if domain in allowed or any(domain.endswith("." + d) for d in allowed):
            return None
        return f"sender domain {domain!r} is not in allowed_domains"

    def _status(self, thread: _Thread) -> tuple[str | None, str | None]:
        """The last status the bridge announced, or the customer's answer to its last request
        for confirmation (a reply to it, or a later mail: dates of clients are not exact)."""
        announced = [e for e in thread.members if e.outbound and e.head.usm.get("status")]
        if not announced:
            return None, None
        last = announced[-1]
        status: str | None = last.head.usm["status"]
        confirmed_at: str | None = None
        if last.head.usm.get("kind") != "confirmation-request":
            return status, None
        asked = last.head.message_id
        for entry in thread.members:
            mail = entry.full or entry.head
            if entry.outbound or mail.no_answer is not None:
                continue
            answers = asked in (mail.in_reply_to, *mail.references)
            if not answers and mail.when <= last.head.when:
                continue
            line = _first_line(mail.body)
            if self._confirm.search(line):
                status, confirmed_at = "confirmed", mail.date
            elif self._reopen.search(line):
                status, confirmed_at = "in_progress", None
        return status, confirmed_at

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
            if e.head.usm.get("kind") == "ack"
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
        body = (
            f"Thank you for your message. It is registered as {token}.\n"
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
        return self._deliver(store, message, keep_pending=True)

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
    ) -> EmailMessage:
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.config.address
        recipients = to if to is not None else (self._recipients(thread) if thread else [])
        message["To"] = ", ".join(recipients)
        message["Subject"] = subject
        message["Date"] = email.utils.format_datetime(self._now())
        message["Message-ID"] = message_id
        if thread is not None:
            last = thread.members[-1].head.message_id
            chain = [thread.root.head.message_id]
            chain += [r for r in (thread.members[-1].head.references or []) if r not in chain]
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

    def _deliver(
        self, store: MailStore, message: EmailMessage, *, keep_pending: bool, send: bool = True
    ) -> _Entry:
        """Record the message in the Sent folder (pending), send it, clear the mark.

        ``keep_pending``: after a temporary SMTP failure, leave the pending copy for the retry
        with the same Message-ID to finish; otherwise remove it (a retry makes a new message).
        """
        message_id = str(message["Message-ID"])
        recipients = [a for _, a in email.utils.getaddresses([str(message["To"] or "")])]
        entry = self._find_sent(message_id)
        if entry is not None and not entry.pending:
            return entry  # sent before: never twice
        if entry is None:
            raw = message.as_bytes()
            pending = send and self._smtp is not None
            uid = store.append("sent", raw, pending=pending)
            self._refresh(store)
            entry = self._folders["sent"].entries.get(uid or -1) or self._find_sent(message_id)
            if entry is None:
                raise RetriableRemoteError(
                    f"the copy of {message_id} did not appear in the Sent folder",
                    remote_message="APPEND not visible",
                )
        else:
            raw = store.fetch("sent", [entry.uid]).get(entry.uid, message.as_bytes())
        if send and self._smtp is not None and entry.pending:
            try:
                self._smtp_send(raw, recipients)
            except RemoteError as error:
                if isinstance(error, PermanentRemoteError) or not keep_pending:
                    store.delete("sent", entry.uid)
                    self._folders["sent"].entries.pop(entry.uid, None)
                raise
            store.mark_sent("sent", entry.uid)
            entry.pending = False
        return entry

    def _thread(self, store: MailStore, remote_id: str) -> _Thread:
        self._refresh(store)
        threads, _ = self._threads()
        thread = threads.get(remote_id)
        if thread is None:
            raise PermanentRemoteError(
                f"no thread {remote_id} in the mailbox", remote_message="no such thread"
            )
        self._read_full(store, thread.members)
        return thread

    # -- the contract --------------------------------------------------------------------------

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

    def create(self, draft: RemoteDraft, correlation: str) -> RemoteRef:
        """Open a thread: a mail to ``fields.to`` (default: the mailbox itself)."""
        message_id = _correlation_id(correlation, self._domain)

        def work(store: MailStore) -> RemoteRef:
            self._refresh(store)
            entry = self._find_sent(message_id)
            token = entry.head.usm.get("reference") if entry else None
            if entry is None:
                token = self._next_token()
                to = draft.fields.get("to")
                recipients = [str(to)] if isinstance(to, str) and to else [self.config.address]
                subject = str(draft.fields.get("subject") or "(no subject)")
                message = self._compose(
                    None,
                    kind="create",
                    body=str(draft.fields.get("body") or ""),
                    subject=f"[{token}] {subject}",
                    message_id=message_id,
                    token=token,
                    status=draft.status,
                    to=recipients,
                )
            else:
                message = EmailMessage()
                message["Message-ID"] = message_id
                message["To"] = ", ".join(entry.head.to)
            self._deliver(store, message, keep_pending=True)
            return RemoteRef(remote_id=message_id, remote_key=token)

        return self._retrying(work)

    def update(self, remote_id: str, draft: RemoteDraft) -> None:
        """Tell the thread's requester what changed: a status, or new text."""
        body = str(draft.fields.get("body") or "").strip()
        title = draft.fields.get("subject")
        if not body and not draft.status and not title:
            return  # nothing to say: no no-op mail

        def work(store: MailStore) -> None:
            thread = self._thread(store, remote_id)
            token = thread.token
            lines: list[str] = []
            kind = "update"
            # The thread already announces this status (an update retried after a crash
            # between the send and the bridge's commit): announcing it again is a no-op write.
            status = draft.status if draft.status != self._status(thread)[0] else None
            if not body and not status and not title:
                return
            if status:
                kind = "status"
                label = status.replace("_", " ").replace(":", ", on ")
                lines.append(f"The status of {token or 'your request'} is now: {label}.")
                confirm = draft.status_fields.get("confirm", True) is not False
                if status in self.config.confirm_statuses and confirm:
                    kind = "confirmation-request"
                    lines.append(
                        "Please reply YES if the service works for you again, or NO if it "
                        "does not. We close the call only once you confirm."
                    )
            if title:
                lines.append(f"Title: {title}")
            if body:
                lines.append(body)
            subject = _strip_re((thread.root.full or thread.root.head).subject)
            if token and f"[{token}]" not in subject:
                subject = f"[{token}] {subject}"
            message = self._compose(
                thread,
                kind=kind,
                body="\n\n".join(lines),
                subject=f"Re: {subject}",
                message_id=email.utils.make_msgid(domain=self._domain),
                token=token,
                status=status,
            )
            self._deliver(store, message, keep_pending=False)

        self._retrying(work)

    def add_comment(self, remote_id: str, comment: CommentDraft) -> str:
        """A public comment is mailed to the requester; an internal one only kept in Sent."""

        def work(store: MailStore) -> str:
            thread = self._thread(store, remote_id)
            token = thread.token
            subject = _strip_re((thread.root.full or thread.root.head).subject)
            if token and f"[{token}]" not in subject:
                subject = f"[{token}] {subject}"
            message_id = (
                _correlation_id(comment.correlation, self._domain)
                if comment.correlation
                else email.utils.make_msgid(domain=self._domain)
            )
            body = comment.body if not comment.author else f"{comment.author}:\n{comment.body}"
            message = self._compose(
                thread,
                kind="comment" if comment.public else "note",
                body=body,
                subject=f"Re: {subject}",
                message_id=message_id,
                token=token,
                public=comment.public,
            )
            entry = self._deliver(
                store, message, keep_pending=comment.correlation is not None, send=comment.public
            )
            return entry.head.message_id

        return self._retrying(work)
