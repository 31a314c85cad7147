"""IMAP IDLE (RFC 2177): the daemon's watcher of a mailbox's inbox.

On a connection of its own (the cycle's stays the cycle's), signed in the way the connector's
settings say (:class:`~.stores.ImapStore`: TLS, STARTTLS, password or XOAUTH2), the inbox is
selected and IDLE issued. Every ``* n EXISTS``, ``RECENT``, ``EXPUNGE`` or ``FETCH`` the server
sends while idling wakes the instance's cycle, which reads the mailbox as always: a wake is a
hint, never data. IDLE is ended (``DONE``) and issued again every ``idle_renew`` seconds, before
the server's 30-minute limit. A lost connection (a ``* BYE``, a reset, silence past the
timeout) is opened again after a backoff, and the first IDLE of every connection wakes the cycle
once: mail may have come while nobody listened. A server without the IDLE capability is said
once in the log, and the inbox is polled only.

imaplib (Python 3.11) has no IDLE, so it is spoken here on imaplib's connection: ``send`` for
the commands, and imaplib's own buffered reader for the lines, read only once a line is known
to be there (bytes already buffered, or a readable socket) so that a stop is seen within a
fraction of a second.
"""

from __future__ import annotations

import contextlib
import imaplib
import io
import itertools
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Final, cast

from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError

from .stores import ImapStore

__all__ = ["IdleWatch"]

log = logging.getLogger(__name__)

#: Longest wait on the socket before the stop event is looked at again (seconds).
SLICE: Final = 0.25
#: The untagged responses that say the selected folder changed.
_CHANGE: Final = re.compile(rb"\* \d+ (EXISTS|RECENT|EXPUNGE|FETCH)\b", re.IGNORECASE)
#: A line that ends with a literal's announcement (``{123}``): the literal and the rest of
#: the response follow.
_LITERAL: Final = re.compile(rb"\{(\d+)\+?\}\r?\n\Z")


class ConnectionLost(Exception):
    """The IDLE connection ended (the server closed it, said BYE, or went silent)."""


class IdleWatch:
    """IDLE on the inbox of the store ``connect`` opens, until the stop event is set.

    :param connect: opens and signs in a new connection (a new :class:`ImapStore`).
    :param renew: seconds between the IDLE commands of one connection.
    :param backoff_initial: the first pause before a lost connection is opened again; it
        doubles up to ``backoff_max``, and comes back to the first once a connection lasted
        ``steady`` seconds.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], ImapStore],
        *,
        where: str,
        renew: float,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        steady: float = 60.0,
    ) -> None:
        self.name = name
        self.where = where
        self._connect = connect
        self.renew = renew
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self.steady = steady
        self._tags = itertools.count(1)
        #: IDLE commands sent and connections that reached IDLE (for logs and tests).
        self.idles = 0
        self.sessions = 0

    def run(self, wake: Callable[[], None], stop: threading.Event) -> None:
        """Watch until ``stop``; returns early only when the server offers no IDLE.

        :raises PermanentRemoteError: the server refused the sign-in or the folder (the
            daemon's watcher logs it and starts this again after its own backoff).
        """
        delay = self.backoff_initial
        while not stop.is_set():
            started = time.monotonic()
            try:
                store = self._connect()
            except RetriableRemoteError as exc:
                problem: str = str(exc)
            else:
                try:
                    if not store.offers("IDLE"):
                        extra = {"event": "idle_unsupported", "instance": self.name}
                        log.warning("%s: the IMAP server at %s does not offer IDLE: its inbox is "
                                    "polled only, every interval", self.name, self.where,
                                    extra=extra)  # fmt: skip
                        return
                    store.select("inbox")
                    self._session(store.session, wake, stop)
                    return  # stopped
                except (RetriableRemoteError, ConnectionLost) as exc:
                    problem = str(exc)
                except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
                    problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                finally:
                    store.abandon()
            if time.monotonic() - started >= self.steady:
                delay = self.backoff_initial
            log.warning("%s: the IDLE connection to %s is lost (%s); connecting again in %.1f s, "
                        "polling goes on meanwhile", self.name, self.where, problem, delay,
                        extra={"event": "idle_lost", "instance": self.name,
                               "error": problem, "next_in_s": round(delay, 1)})  # fmt: skip
            stop.wait(delay)
            delay = min(max(delay * 2.0, self.backoff_initial), self.backoff_max)

    # -- one connection -------------------------------------------------------------------------

    def _session(
        self, imap: imaplib.IMAP4, wake: Callable[[], None], stop: threading.Event
    ) -> None:
        sock = imap.socket()
        first = True
        while not stop.is_set():
            tag = self._idle(imap, wake)
            if first:
                first = False
                self.sessions += 1
                log.info("%s: idling on the inbox at %s", self.name, self.where,
                         extra={"event": "idle", "instance": self.name})  # fmt: skip
                # What came while nobody listened (before this connection's IDLE, or since the
                # last connection was lost) is read by the cycle this wakes.
                wake()
            ends = time.monotonic() + self.renew
            while not stop.is_set():
                left = ends - time.monotonic()
                if left <= 0:
                    break
                line = self._next_line(imap, sock, min(left, SLICE))
                if line is not None:
                    self._judge(line, wake)
            if stop.is_set():
                # Politely, without waiting for the answers: the stop must be prompt.
                with contextlib.suppress(OSError):
                    imap.send(f"DONE\r\n{tag}L LOGOUT\r\n".encode())
                return
            self._done(imap, tag, wake)

    def _idle(self, imap: imaplib.IMAP4, wake: Callable[[], None]) -> str:
        """Send IDLE and read up to the server's continuation; the command's tag."""
        tag = f"USMIDLE{next(self._tags)}"
        imap.send(f"{tag} IDLE\r\n".encode())
        self.idles += 1
        while True:
            line = self._read_line(imap)
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag.encode() + b" "):
                raise PermanentRemoteError(
                    f"IMAP IDLE refused at {self.where}",
                    remote_message=line.decode(errors="replace").strip()[:500],
                )
            self._judge(line, wake)

    def _done(self, imap: imaplib.IMAP4, tag: str, wake: Callable[[], None]) -> None:
        """End the IDLE (``DONE``) and read up to its tagged answer."""
        imap.send(b"DONE\r\n")
        prefix = tag.encode() + b" "
        while True:
            line = self._read_line(imap)
            if line.startswith(prefix):
                if line[len(prefix) :].upper().startswith(b"OK"):
                    return
                raise ConnectionLost(
                    "IDLE ended with " + line.decode(errors="replace").strip()[:200]
                )
            self._judge(line, wake)

    @staticmethod
    def _judge(line: bytes, wake: Callable[[], None]) -> None:
        if _CHANGE.match(line):
            wake()
        elif line[:5].upper() == b"* BYE":
            raise ConnectionLost("the server said " + line.decode(errors="replace").strip()[:200])

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _read_line(imap: imaplib.IMAP4) -> bytes:
        """One response line, literals included; blocks up to the connection's timeout."""
        line = imap.readline()
        if not line:
            raise ConnectionLost("the server closed the connection")
        chunk = line
        while match := _LITERAL.search(chunk):
            literal = imap.read(int(match.group(1)))
            chunk = imap.readline()
            if not chunk:
                raise ConnectionLost("the server closed the connection")
            line += literal + chunk
        return line

    def _next_line(self, imap: imaplib.IMAP4, sock: socket.socket, wait: float) -> bytes | None:
        """The next line if one comes within ``wait`` seconds, else None."""
        if not _buffered(imap, sock):
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                return None
            if not _buffered(imap, sock):
                # Readable without data to read: the end of the connection (which stays
                # readable: the read below finds it), or a TLS record of its own (consumed).
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    return None
        return self._read_line(imap)


def _buffered(imap: imaplib.IMAP4, sock: socket.socket) -> bool:
    """Whether a read finds bytes at once: buffered by imaplib's reader, held decrypted by
    TLS, or waiting in the socket. Never blocks (the socket is non-blocking meanwhile)."""
    reader = cast(io.BufferedReader, imap.file)
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
        return False
    finally:
        sock.settimeout(timeout)
