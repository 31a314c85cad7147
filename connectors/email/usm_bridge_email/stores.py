"""Where mail lives: an IMAP server, or Maildir folders on disk (the embedded default).

Both are seen through one small interface, :class:`MailStore`, built on what IMAP guarantees:
each folder has a UIDVALIDITY, and within it every message a UID that only grows. A Maildir
has neither, so :class:`MaildirStore` keeps them the way Dovecot does (a uid list file in the
folder, ``.usm-uidlist``): new files get the next UIDs in delivery order, and a lost or reset
list gets a new UIDVALIDITY, which the connector treats exactly like an IMAP server's.

A store has two folders by *role*: ``inbox`` (mail people sent) and ``sent`` (mail the bridge
sent: IMAP's Sent folder, or the Maildir outbox). A message the bridge has written but not yet
handed to SMTP is *pending* (IMAP keyword ``$USMPending``, Maildir flag ``D``), so a crash
between writing and sending is finished later instead of sent twice or lost. In an IMAP folder
that cannot keep keywords (its PERMANENTFLAGS lists no wildcard nor the keyword) the mark is the
Draft flag instead, the flag a Maildir uses: a keyword such a server dropped would leave every
unsent copy looking sent, and one it kept but cannot remove (pymap does) every sent copy
looking unsent, to be sent again.

Errors come out as the core's remote errors: temporary ones (a dropped connection, ``NO
[UNAVAILABLE]``, ``BYE``, a busy file system) as :class:`RetriableRemoteError`, the rest as
:class:`PermanentRemoteError` carrying the server's own words. Passwords never appear in them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import imaplib
import json
import os
import re
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol, cast

from imapclient import imap_utf7  # type: ignore[import-untyped]
from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError

from .condstore import MarkedSince, flag_changes, highest_modseq, offers_condstore
from .oauth import TokenSource, sign_in_with_token, xoauth2_response
from .tls import tls_context, tls_failure

__all__ = [
    "PENDING_FALLBACK",
    "PENDING_KEYWORD",
    "FolderRole",
    "ImapStore",
    "MailStore",
    "MaildirStore",
    "StoredHeader",
]

FolderRole = Literal["inbox", "sent"]
PENDING_KEYWORD: Final = "$USMPending"
#: The pending mark in an IMAP folder that cannot keep keywords (see the module docstring).
PENDING_FALLBACK: Final = "\\Draft"
#: IMAP response codes (RFC 5530) that mean "try again later".
_TEMPORARY_CODES: Final = (
    "UNAVAILABLE",
    "INUSE",
    "LIMIT",
    "SERVERBUG",
    "OVERQUOTA",
    "EXPUNGEISSUED",
)
_TEMPORARY_ERRNOS: Final = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EINTR,
     errno.ENFILE, errno.EMFILE, errno.ENOLCK}
)  # fmt: skip
_HEADER_LIMIT: Final = 256 * 1024
#: How much of a message one partial FETCH asks for (see ``ImapStore.open_message``).
_FETCH_PIECE: Final = 1024 * 1024


@dataclass(frozen=True)
class StoredHeader:
    """One message as listed: where it is, how big, whether pending, and its header block."""

    uid: int
    size: int
    pending: bool
    arrived: datetime
    header: bytes


class MailStore(Protocol):
    """The operations the connector needs from a mailbox; see the module docstring."""

    #: Says where the store is, for messages (never credentials).
    where: str

    def validity(self, role: FolderRole) -> int:
        """The folder's UIDVALIDITY: when it changes, every UID known before means nothing."""
        ...

    def list_since(self, role: FolderRole, uid: int) -> list[StoredHeader]:
        """Messages with a UID above ``uid``, in UID order, headers only."""
        ...

    def uids(self, role: FolderRole) -> list[int]:
        """The UID of every message the folder holds now, in UID order (no headers)."""
        ...

    def pending(self, role: FolderRole) -> list[int]:
        """The UIDs of the messages marked pending now, in UID order (no headers): the one
        flag the connector acts on, asked of the server so that a mark cleared elsewhere (or
        before a restart) is seen without fetching anything."""
        ...

    def fetch(self, role: FolderRole, uids: list[int]) -> dict[int, bytes]:
        """Whole messages by UID (missing ones, expunged meanwhile, are left out)."""
        ...

    def open_message(
        self, role: FolderRole, uid: int
    ) -> contextlib.AbstractContextManager[BinaryIO | None]:
        """One whole message as a file to read from (``None``: expunged meanwhile), never in
        memory whole: a mail too large to parse whole is read from it in bounded pieces."""
        ...

    def append(self, role: FolderRole, raw: bytes, *, pending: bool) -> int | None:
        """Store a message; returns its UID when the store tells it."""
        ...

    def mark_sent(self, role: FolderRole, uid: int) -> None:
        """Clear the pending mark: the message has been handed over for delivery."""
        ...

    def delete(self, role: FolderRole, uid: int) -> None:
        """Remove a message (a pending copy whose sending was refused for good)."""
        ...

    def close(self) -> None:
        """Release the connection or files."""
        ...


# ---------------------------------------------------------------------------------------------
# IMAP
# ---------------------------------------------------------------------------------------------


def _imap_text(error: BaseException) -> str:
    text = " ".join(str(arg.decode() if isinstance(arg, bytes) else arg) for arg in error.args)
    return text or type(error).__name__


def imap_error(error: BaseException, doing: str, where: str) -> RemoteError:
    """The core's error for an IMAP failure: temporary when the server or network says so."""
    tls = tls_failure(error, f"IMAP {doing}", where)
    if tls is not None:
        return tls
    text = _imap_text(error)
    temporary = (
        isinstance(error, imaplib.IMAP4.abort | OSError | EOFError)
        or "BYE" in text
        or any(f"[{code}" in text for code in _TEMPORARY_CODES)
    )
    kind = RetriableRemoteError if temporary else PermanentRemoteError
    return kind(f"IMAP {doing} failed at {where}", remote_message=text[:500])


def _imap_ok(result: tuple[str, Any], doing: str) -> list[Any]:
    """The data of an OK answer; a NO or BAD answer raised as imaplib would."""
    status, data = result
    if status != "OK":
        raise imaplib.IMAP4.error(
            f"{doing}: {status} "
            + " ".join(d.decode(errors="replace") for d in data if isinstance(d, bytes))
        )
    return list(data)


_META: Final = re.compile(
    rb"UID (\d+)|RFC822\.SIZE (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\""
)


def _pending_mark(permanent: list[Any]) -> str:
    """The pending mark a folder can keep, from the PERMANENTFLAGS of its SELECT."""
    if not permanent or not isinstance(permanent[0], bytes):
        return PENDING_KEYWORD  # none said: every flag may be kept (RFC 3501)
    flags = permanent[0].lower().replace(b"(", b" ").replace(b")", b" ").split()
    if b"\\*" in flags or PENDING_KEYWORD.lower().encode() in flags:
        return PENDING_KEYWORD
    return PENDING_FALLBACK


def _quote(name: str) -> str:
    """A folder name as IMAP spells it: in modified UTF-7 (RFC 3501 section 5.1.3: a Sent
    folder named "Éléments envoyés" is ``&AMk-l&AOk-ments envoy&AOk-s`` on the wire; sent as
    UTF-8 it is refused, and imaplib cannot send it at all), then quoted."""
    wire = str(imap_utf7.encode(name), "ascii")
    return '"' + wire.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _TokenRefused(imaplib.IMAP4.error):
    """The server answered NO to AUTHENTICATE XOAUTH2 (the connection is fine)."""


class ImapStore:
    """A mailbox on an IMAP server, over TLS, STARTTLS, or plain text on loopback."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Literal["tls", "starttls", "plain"],
        username: str,
        password: str | None,
        folders: dict[FolderRole, str],
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        oauth: TokenSource | None = None,
    ) -> None:
        """Connect and sign in: with ``password``, or with ``oauth`` (SASL XOAUTH2 for the
        mailbox ``username``) when it is given."""
        self.where = f"imap://{host}:{port}"
        self._folders = folders
        self._selected: str | None = None
        #: When :meth:`validity` selected the folder, if nothing was done since: a listing
        #: straight after it (every read asks for the validity first) needs no NOOP.
        self._just_selected: float | None = None
        self._validity: dict[str, int] = {}
        #: The pending mark of each folder, by what its PERMANENTFLAGS allow.
        self._marks: dict[str, str] = {}
        #: Whether the server offers CONDSTORE (see the ``condstore`` module): folders are then
        #: selected with it, and flag changes read by CHANGEDSINCE instead of a search.
        self._condstore = False
        #: The HIGHESTMODSEQ of each folder at its last SELECT (CONDSTORE only).
        self._highest: dict[str, int] = {}
        #: Which UIDs of each folder carry the pending mark, as of a mod-sequence.
        self._marked: dict[str, MarkedSince] = {}
        # Only plain text (loopback, the settings make sure) goes without a verifying context.
        context = None if security == "plain" else ssl_context or tls_context(None, self.where)
        try:
            if security == "tls":
                self._imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=timeout
                )
            else:
                self._imap = imaplib.IMAP4(host, port, timeout=timeout)
        except (imaplib.IMAP4.error, OSError, EOFError) as error:
            raise imap_error(error, "connect", self.where) from None
        if security == "starttls":
            assert context is not None
            self._starttls(context)
        with contextlib.suppress(OSError, AttributeError):  # IMAP is chatty: no Nagle stalls
            self._imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            # The sign-in's reply may widen the capabilities (CONDSTORE after LOGIN); after
            # AUTHENTICATE imaplib files that code as an untagged CAPABILITY, read below.
            reply: list[Any] = []
            if oauth is not None:
                self._xoauth2(oauth, username)
            else:
                _, reply = self._imap.login(username, password or "")
        except RemoteError:
            self._shutdown()
            raise
        except (imaplib.IMAP4.error, OSError, EOFError) as error:
            self._shutdown()
            raise imap_error(error, f"login as {username!r}", self.where) from None
        _, announced = self._imap.response("CAPABILITY")
        self._condstore = offers_condstore(reply, announced, tuple(self._imap.capabilities))

    def _xoauth2(self, source: TokenSource, user: str) -> None:
        """``AUTHENTICATE XOAUTH2``, once more with a fresh token when the server says NO."""
        if "AUTH=XOAUTH2" not in self._imap.capabilities:
            raise PermanentRemoteError(
                f"IMAP login as {user!r} failed at {self.where}: the server does not offer "
                "AUTH=XOAUTH2 (set a password instead of oauth, or check the host)",
                remote_message="no AUTH=XOAUTH2 capability",
            )

        def attempt(token: str) -> None:
            challenges = 0

            def respond(challenge: bytes) -> bytes:
                # The first continuation asks for the credentials; a second one carries the
                # server's error (JSON), which the client acknowledges with an empty line so
                # that the server finishes with NO.
                nonlocal challenges
                challenges += 1
                return xoauth2_response(user, token) if challenges == 1 else b""

            try:
                self._imap.authenticate("XOAUTH2", respond)
            except imaplib.IMAP4.abort:
                raise  # the connection broke: no verdict on the token
            except imaplib.IMAP4.error as error:
                raise _TokenRefused(*error.args) from None

        sign_in_with_token(source, attempt, _TokenRefused)

    def _starttls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS before the password is sent; a server without STARTTLS is refused."""
        if "STARTTLS" not in self._imap.capabilities:
            self._shutdown()
            raise PermanentRemoteError(
                f"IMAP connect failed at {self.where}: the server does not offer STARTTLS "
                "(security 'starttls'); the password is not sent in plain text",
                remote_message="no STARTTLS capability",
            )
        try:
            self._imap.starttls(ssl_context=context)
        except (imaplib.IMAP4.error, OSError, EOFError) as error:
            self._shutdown()
            raise imap_error(error, "STARTTLS", self.where) from None

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RemoteError:
            raise
        except (imaplib.IMAP4.error, OSError, EOFError) as error:
            raise imap_error(error, doing, self.where) from None

    def _select(self, role: FolderRole, *, again: bool = False) -> str:
        name = self._folders[role]
        self._just_selected = None
        if self._selected == name and not again:
            return name
        # SELECT with CONDSTORE (RFC 7162 section 3.1.8) enables it and answers HIGHESTMODSEQ.
        argument = _quote(name) + (" (CONDSTORE)" if self._condstore else "")
        status, _ = self._imap.select(argument)
        if status != "OK":
            if role == "sent":  # a Sent folder the account does not have yet
                self._imap.create(_quote(name))
            _imap_ok(self._imap.select(argument), f"SELECT {name}")
        _, data = self._imap.response("UIDVALIDITY")
        if not data or not isinstance(data[0], bytes):
            raise PermanentRemoteError(
                f"IMAP SELECT {name} at {self.where} gave no UIDVALIDITY",
                remote_message="no UIDVALIDITY",
            )
        validity = int(data[0])
        if self._validity.get(name) != validity:
            self._marked.pop(name, None)  # UIDs of another folder's life
        self._validity[name] = validity
        _, permanent = self._imap.response("PERMANENTFLAGS")
        self._marks[name] = _pending_mark(permanent)
        highest = highest_modseq(self._imap.response("HIGHESTMODSEQ")[1])
        if highest is None:
            self._highest.pop(name, None)
        else:
            self._highest[name] = highest
        self._selected = name
        return name

    def _mark(self, role: FolderRole) -> str:
        """The folder's pending mark (it is selected on the way)."""
        return self._marks.get(self._select(role), PENDING_KEYWORD)

    def validity(self, role: FolderRole) -> int:
        with self._errors(f"SELECT {self._folders[role]}"):
            selected = self._selected == self._folders[role]
            name = self._select(role)
            if not selected:  # the SELECT just sent shows the folder as it is now
                self._just_selected = time.monotonic()
            return self._validity[name]

    def _select_fresh(self, role: FolderRole) -> None:
        """Select the folder so that a listing sees what arrived since it was last selected.

        A server may keep showing a session its folder as it was when selected (pymap does)
        until a NOOP lets it report new messages: without one, mail arriving while the inbox
        stayed selected was listed a cycle late. With CONDSTORE the folder is selected again
        instead (one command all the same): a SELECT always answers the HIGHESTMODSEQ the
        pending marks are judged by, a NOOP need not.
        """
        just = self._just_selected
        if self._selected == self._folders[role] and (
            just is None or time.monotonic() - just > 1.0
        ):
            if self._condstore:
                self._select(role, again=True)
            else:
                _imap_ok(self._imap.noop(), "NOOP")
        self._select(role)

    def list_since(self, role: FolderRole, uid: int) -> list[StoredHeader]:
        with self._errors(f"listing {self._folders[role]}"):
            self._select_fresh(role)
            data = _imap_ok(self._imap.uid("SEARCH", f"UID {uid + 1}:*"), "UID SEARCH")
            raw = data[0] if data and isinstance(data[0], bytes) else b""
            # `UID SEARCH UID n:*` always answers the highest UID, even when n is above it.
            uids = sorted(u for u in (int(x) for x in raw.split()) if u > uid)
            found: list[StoredHeader] = []
            for start in range(0, len(uids), 200):
                chunk = ",".join(str(u) for u in uids[start : start + 200])
                items = "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER])"
                fetched = _imap_ok(self._imap.uid("FETCH", chunk, items), "UID FETCH headers")
                found.extend(self._headers(fetched, self._mark(role)))
            return sorted(found, key=lambda h: h.uid)

    def uids(self, role: FolderRole) -> list[int]:
        with self._errors(f"listing {self._folders[role]}"):
            self._select_fresh(role)
            data = _imap_ok(self._imap.uid("SEARCH", "ALL"), "UID SEARCH")
            raw = data[0] if data and isinstance(data[0], bytes) else b""
            return sorted(int(x) for x in raw.split())

    def pending(self, role: FolderRole) -> list[int]:
        with self._errors(f"searching {self._folders[role]}"):
            # No NOOP of its own: the connector lists the folder (which has one) just before.
            mark = self._mark(role)
            name = self._folders[role]
            highest, known = self._highest.get(name), self._marked.get(name)
            if highest is not None and known is not None:
                if highest != known.modseq:
                    # Something changed since: the flags of just what changed (RFC 7162).
                    changed = f"(CHANGEDSINCE {known.modseq})"
                    data = _imap_ok(
                        self._imap.uid("FETCH", "1:*", "(FLAGS)", changed),
                        "UID FETCH CHANGEDSINCE",
                    )
                    known.apply(flag_changes(data), mark)
                    known.modseq = max(known.modseq, highest)
                return sorted(known.uids)  # the folder is as it was: no command at all
            # A search by the mark answers with UIDs only: no header, no flag list is fetched.
            key = "DRAFT" if mark == PENDING_FALLBACK else f"KEYWORD {mark}"
            data = _imap_ok(self._imap.uid("SEARCH", key), "UID SEARCH")
            raw = data[0] if data and isinstance(data[0], bytes) else b""
            found = sorted(int(x) for x in raw.split())
            if highest is not None:
                self._marked[name] = MarkedSince(highest, set(found))
            return found

    def _headers(self, fetched: list[Any], mark: str) -> Iterator[StoredHeader]:
        for item in fetched:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            uid = size = 0
            flags = b""
            arrived = datetime.now(UTC)
            for match in _META.finditer(meta):
                if match.group(1):
                    uid = int(match.group(1))
                elif match.group(2):
                    size = int(match.group(2))
                elif match.group(3) is not None:
                    flags = match.group(3)
                elif match.group(4):
                    with contextlib.suppress(ValueError):
                        arrived = datetime.strptime(
                            match.group(4).decode(), "%d-%b-%Y %H:%M:%S %z"
                        ).astimezone(UTC)
            if uid:
                pending = mark.lower().encode() in flags.lower().split()
                yield StoredHeader(uid, size, pending, arrived, header[:_HEADER_LIMIT])

    def fetch(self, role: FolderRole, uids: list[int]) -> dict[int, bytes]:
        if not uids:
            return {}
        with self._errors(f"fetching from {self._folders[role]}"):
            self._select(role)
            data = _imap_ok(
                self._imap.uid("FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])"),
                "UID FETCH",
            )
            found: dict[int, bytes] = {}
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"UID (\d+)", item[0])
                    if match:
                        found[int(match.group(1))] = item[1]
            return found

    @contextlib.contextmanager
    def open_message(self, role: FolderRole, uid: int) -> Iterator[BinaryIO | None]:
        """The message fetched into a temporary file a piece at a time (partial FETCH of
        ``BODY.PEEK[]<offset.length>``, RFC 3501): at most one piece in memory."""
        with tempfile.TemporaryFile() as spool:
            with self._errors(f"fetching from {self._folders[role]}"):
                self._select(role)
                offset = 0
                while True:
                    wanted = f"(UID BODY.PEEK[]<{offset}.{_FETCH_PIECE}>)"
                    data = _imap_ok(self._imap.uid("FETCH", str(uid), wanted), "UID FETCH")
                    piece = next(
                        (item[1] for item in data
                         if isinstance(item, tuple) and re.search(rb"UID %d\b" % uid, item[0])),
                        None,
                    )  # fmt: skip
                    if piece is None:
                        break  # past the end (an empty piece is no literal), or expunged
                    spool.write(piece)
                    offset += len(piece)
                    if len(piece) < _FETCH_PIECE:
                        break
            if offset == 0:
                yield None
                return
            spool.seek(0)
            yield cast(BinaryIO, spool)

    def append(self, role: FolderRole, raw: bytes, *, pending: bool) -> int | None:
        name = self._folders[role]
        with self._errors(f"APPEND to {name}"):
            mark = self._mark(role)  # selecting creates the Sent folder when missing
            flags = f"(\\Seen {mark})" if pending else "(\\Seen)"
            data = _imap_ok(
                self._imap.append(_quote(name), flags, imaplib.Time2Internaldate(time.time()), raw),
                f"APPEND to {name}",
            )
            text = b" ".join(d for d in data if isinstance(d, bytes))
            match = re.search(rb"APPENDUID (\d+) (\d+)", text)
            uid = int(match.group(2)) if match else None
            known = self._marked.get(name)
            if known is not None and pending:
                if uid is None:
                    self._marked.pop(name)  # which UID is marked is unknown: search next time
                else:
                    known.uids.add(uid)
            return uid

    def mark_sent(self, role: FolderRole, uid: int) -> None:
        with self._errors(f"STORE in {self._folders[role]}"):
            mark = self._mark(role)
            _imap_ok(self._imap.uid("STORE", str(uid), "-FLAGS", f"({mark})"), "STORE")
            known = self._marked.get(self._folders[role])
            if known is not None:
                known.uids.discard(uid)

    def delete(self, role: FolderRole, uid: int) -> None:
        with self._errors(f"deleting from {self._folders[role]}"):
            self._select(role)
            _imap_ok(self._imap.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)"), "STORE")
            known = self._marked.get(self._folders[role])
            if known is not None:
                known.uids.discard(uid)
            if b"UIDPLUS" in b" ".join(c.encode() for c in self._imap.capabilities):
                self._imap.uid("EXPUNGE", str(uid))
            else:
                self._imap.expunge()

    # -- for IDLE (:mod:`.idle`), on a connection of its own ---------------------------------

    @property
    def session(self) -> imaplib.IMAP4:
        """The signed-in connection, for IDLE, which imaplib cannot speak."""
        return self._imap

    def offers(self, capability: str) -> bool:
        """Whether the server offers ``capability`` to this signed-in session. The greeting's
        list is asked again when it lacks it: a server may widen its list after sign-in."""
        wanted = capability.upper()
        if wanted in self._imap.capabilities:
            return True
        with self._errors("CAPABILITY"):
            data = _imap_ok(self._imap.capability(), "CAPABILITY")
        words = b" ".join(d for d in data if isinstance(d, bytes)).upper().split()
        return wanted.encode() in words

    def select(self, role: FolderRole) -> str:
        """Select the folder of ``role``; its name."""
        with self._errors(f"SELECT {self._folders[role]}"):
            return self._select(role)

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._imap.shutdown()

    def abandon(self) -> None:
        """Close the connection without a word (a LOGOUT could wait on a server gone)."""
        self._shutdown()

    def close(self) -> None:
        try:
            self._imap.logout()
        except Exception:
            self._shutdown()


# ---------------------------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------------------------


def fs_error(error: OSError, doing: str, where: str) -> RemoteError:
    """A file-system failure: busy, stale or I/O errors pass; the rest are for a person."""
    kind = RetriableRemoteError if error.errno in _TEMPORARY_ERRNOS else PermanentRemoteError
    return kind(f"Maildir {doing} failed at {where}", remote_message=str(error)[:500])


def _split_name(name: str) -> tuple[str, str]:
    """A Maildir file name's unique key and its flags (``key:2,FS`` or the ``!`` variant)."""
    for colon in (":", "!"):
        if f"{colon}2," in name:
            key, flags = name.split(f"{colon}2,", 1)
            return key, flags
    return name, ""


class MaildirStore:
    """Two Maildir folders (inbox and outbox) with UIDs kept in a uid list file in each.

    ``hook`` is called with the operation's name before every file-system operation; tests use
    it to make the file system answer like a busy or broken NFS server would.
    """

    def __init__(
        self,
        folders: dict[FolderRole, Path],
        *,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        self._folders = folders
        self._hook = hook
        self.where = f"maildir:{folders['inbox']}"
        for path in folders.values():
            for sub in ("tmp", "new", "cur"):
                try:
                    (path / sub).mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise fs_error(error, "creating folders", str(path)) from None
        self._counter = 0
        #: Each folder's uid list as last seen, with the stamps of its folders and file.
        self._seen: dict[
            Path,
            tuple[
                tuple[tuple[int, int], tuple[int, int, int]],
                dict[str, int],
                dict[str, Path],
                list[int],
            ],
        ] = {}

    @contextlib.contextmanager
    def _op(self, doing: str, role: FolderRole) -> Iterator[Path]:
        path = self._folders[role]
        try:
            if self._hook is not None:
                self._hook(doing)
            yield path
        except OSError as error:
            raise fs_error(error, doing, str(path)) from None

    def _files(self, path: Path) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for sub in ("new", "cur"):
            for entry in os.scandir(path / sub):
                if entry.is_file() and not entry.name.startswith("."):
                    files[_split_name(entry.name)[0]] = Path(entry.path)
        return files

    @contextlib.contextmanager
    def _uidlist(self, path: Path) -> Iterator[tuple[dict[str, int], dict[str, Path], list[int]]]:
        """The folder's uid list, locked and brought up to date; saved on exit when it changed.

        Yields (uid by key, file by key, [validity, next uid]), which the caller only reads.
        A folder whose ``new`` and ``cur`` and uid list file are as they were at the last look
        is not scanned again: a quiet read of a large Maildir costs a few ``stat`` calls (see
        :meth:`_folder_stamp`).
        """
        list_path = path / ".usm-uidlist"
        with open(path / ".usm-uidlist.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            folders = self._folder_stamp(path)
            seen = self._seen.get(path)
            if (
                seen is not None
                and folders is not None
                and seen[0]
                == (
                    folders,
                    self._file_stamp(list_path),
                )
            ):
                yield seen[1], seen[2], seen[3]
                return
            self._seen.pop(path, None)
            changed = False
            try:
                state = json.loads(list_path.read_text())
                uids: dict[str, int] = {str(k): int(v) for k, v in state["uids"].items()}
                head = [int(state["validity"]), int(state["next"])]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                uids, head = {}, [int(time.time() * 1000) % 2**31 or 1, 1]
                changed = True
            files = self._files(path)
            fresh = sorted(
                (key for key in files if key not in uids),
                key=lambda key: (files[key].stat().st_mtime_ns, key),
            )
            for key in fresh:
                uids[key] = head[1]
                head[1] += 1
            kept = {key: uid for key, uid in uids.items() if key in files}
            changed = changed or bool(fresh) or len(kept) != len(uids)
            yield kept, files, head
            if changed:
                tmp = path / f".usm-uidlist.{os.getpid()}"
                tmp.write_text(json.dumps({"validity": head[0], "next": head[1], "uids": kept}))
                tmp.replace(list_path)
            if folders is not None:
                self._seen[path] = ((folders, self._file_stamp(list_path)), kept, files, head)

    @staticmethod
    def _folder_stamp(path: Path) -> tuple[int, int] | None:
        """The modification times of ``new`` and ``cur``, taken before they are scanned, or
        None when one changed in the last two seconds: a file system that keeps coarse times
        (whole seconds on some NFS servers) could change it again without a new time, so such
        a folder is scanned every time until it has been still for a while."""
        times = ((path / "new").stat().st_mtime_ns, (path / "cur").stat().st_mtime_ns)
        return None if time.time_ns() - max(times) < 2_000_000_000 else times

    @staticmethod
    def _file_stamp(path: Path) -> tuple[int, int, int]:
        """The uid list file as it is now: another process's write of it is a new file."""
        try:
            found = path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def validity(self, role: FolderRole) -> int:
        with self._op("reading the uid list", role) as path, self._uidlist(path) as (_, _, head):
            return head[0]

    def list_since(self, role: FolderRole, uid: int) -> list[StoredHeader]:
        with self._op("listing", role) as path, self._uidlist(path) as (uids, files, _):
            found: list[StoredHeader] = []
            for key, number in uids.items():
                if number <= uid:
                    continue
                file = files[key]
                try:
                    with open(file, "rb") as handle:
                        header = _read_header(handle.read(_HEADER_LIMIT))
                    stat = file.stat()
                except FileNotFoundError:
                    continue  # moved or removed meanwhile; the next read sees it
                pending = "D" in _split_name(file.name)[1]
                arrived = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(StoredHeader(number, stat.st_size, pending, arrived, header))
            return sorted(found, key=lambda h: h.uid)

    def uids(self, role: FolderRole) -> list[int]:
        with self._op("listing", role) as path, self._uidlist(path) as (uids, _, _):
            return sorted(uids.values())

    def pending(self, role: FolderRole) -> list[int]:
        with self._op("listing", role) as path, self._uidlist(path) as (uids, files, _):
            # The mark is in the file name: no file is opened.
            return sorted(n for k, n in uids.items() if "D" in _split_name(files[k].name)[1])

    def fetch(self, role: FolderRole, uids: list[int]) -> dict[int, bytes]:
        wanted = set(uids)
        with self._op("reading", role) as path, self._uidlist(path) as (known, files, _):
            found: dict[int, bytes] = {}
            for key, number in known.items():
                if number in wanted:
                    with contextlib.suppress(FileNotFoundError):
                        found[number] = files[key].read_bytes()
            return found

    @contextlib.contextmanager
    def open_message(self, role: FolderRole, uid: int) -> Iterator[BinaryIO | None]:
        """The message's own file, opened (nothing is copied)."""
        with self._op("reading", role) as path, self._uidlist(path) as (known, files, _):
            file = next((files[key] for key, number in known.items() if number == uid), None)
        if file is None:
            yield None
            return
        try:
            handle = open(file, "rb")  # noqa: SIM115 - held open while the caller reads
        except FileNotFoundError:
            yield None  # moved or removed meanwhile
            return
        except OSError as error:
            raise fs_error(error, "reading", str(file)) from None
        with handle:
            yield handle

    def append(self, role: FolderRole, raw: bytes, *, pending: bool) -> int | None:
        with self._op("delivering", role) as path:
            self._counter += 1
            now = time.time()
            unique = f"M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._counter}"
            key = f"{int(now)}.{unique}.{socket.gethostname()}"
            tmp = path / "tmp" / key
            with open(tmp, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            target = path / "cur" / f"{key}:2,{'DS' if pending else 'S'}"
            os.replace(tmp, target)  # atomic: a reader sees all of the message or none
            with self._uidlist(path) as (uids, _, _):
                return uids.get(key)

    def _rename_flags(
        self, role: FolderRole, uid: int, change: Callable[[str], str | None]
    ) -> None:
        with self._op("updating", role) as path, self._uidlist(path) as (uids, files, _):
            for key, number in uids.items():
                if number == uid:
                    file = files[key]
                    flags = change(_split_name(file.name)[1])
                    if flags is None:
                        file.unlink(missing_ok=True)
                    else:
                        os.replace(file, path / "cur" / f"{key}:2,{flags}")
                    return

    def mark_sent(self, role: FolderRole, uid: int) -> None:
        self._rename_flags(role, uid, lambda flags: "".join(sorted(set(flags) - {"D"})))

    def delete(self, role: FolderRole, uid: int) -> None:
        self._rename_flags(role, uid, lambda flags: None)

    def close(self) -> None:
        """Nothing stays open between operations."""


def _read_header(data: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = data.find(separator)
        if index >= 0:
            return data[: index + len(separator)]
    return data
