"""Locks that die with their holder: mutual exclusion among every process on one store.

A daemon, a ``sync --once`` started by cron and (later) Celery workers may all work on one
store. What must not run twice at once (a cycle of an instance, a push to a target, the daemon
itself) takes a named lock here, and the lock is one the operating system or the database
server drops the moment its holder dies: a SIGKILLed process never leaves a lock behind for
anyone to wait out or clean up.

- **PostgreSQL**: session-level advisory locks (``pg_try_advisory_lock``) on a 64-bit key
  derived from the lock's name, held by one dedicated connection of this process. It is
  detached from the pool (a pooled connection would carry its locks on to whoever checks it out
  next) and ends with the process, and the server then drops the session and its locks. The
  session's ``application_name`` names the process (pid and host), so that whoever finds a
  lock taken can say who holds it (``pg_locks`` joined with ``pg_stat_activity``; a role that
  may not see other sessions gets no name, and the lock is "held by another process").
- **SQLite**: ``flock`` on one file per name in the folder ``<database>.locks`` beside the
  database file. The kernel drops the lock with the last descriptor of the dead process. The
  holder writes its pid, host and since when into the file, for the same purpose. (``flock``
  over NFS is not to be trusted; neither is SQLite there.)
- An in-memory SQLite store (tests, a ``status`` on a store not made yet) lives and dies with
  its process, so the locks there are this process's alone. So are they on a system without
  ``flock`` (not POSIX) and for a store named by a SQLite URI (``uri=true``), whose file is
  SQLite's to find.

On every back end a name is held by at most one thread of this process too, re-entrantly:
the thread holding it may take it again (and must release it as often), another thread of
the same process finds it held like any other process would.

Taking a lock never waits: :meth:`StoreLocks.acquire` answers at once, with who holds it when
it cannot be had, and the caller decides to skip, wait or give up.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.errors import StoreError, UsmBridgeError
from usm_bridge.file_modes import STORE_MODE

__all__ = [
    "Busy",
    "Holder",
    "LockHeldError",
    "StoreLocks",
    "lock_key",
    "open_locks",
]

log = logging.getLogger(__name__)

#: How much of a lock file is read back (a holder line is far shorter).
_HOLDER_LIMIT = 512
#: PostgreSQL truncates ``application_name`` to 63 bytes.
_APPLICATION_NAME_LIMIT = 63
_APPLICATION_PREFIX = "usm-bridge"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class LockHeldError(UsmBridgeError):
    """What must run alone already runs in another process (another daemon on the store)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as the holder wrote it down (``since`` may be unknown)."""

    pid: int
    host: str
    since: datetime | None = None

    def __str__(self) -> str:
        text = f"pid {self.pid} on {self.host}"
        if self.since is not None:
            text += f" since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        return text

    def line(self) -> str:
        """The one line a lock file holds: ``pid=… host=… since=…``."""
        since = f" since={self.since.astimezone(UTC).isoformat()}" if self.since else ""
        return f"pid={self.pid} host={self.host}{since}"

    @classmethod
    def parse(cls, text: str, *, since: datetime | None = None) -> Holder | None:
        """The holder :meth:`line` wrote, or ``None`` for anything else (an empty file, a
        line cut off, a stranger's text)."""
        fields = dict(
            part.split("=", 1) for part in text.strip().split() if "=" in part and part[0] != "="
        )
        pid, host = fields.get("pid", ""), fields.get("host", "")
        if not pid.isdigit() or not host:
            return None
        if "since" in fields:
            try:
                since = datetime.fromisoformat(fields["since"])
            except ValueError:
                return None
            if since.tzinfo is None:
                return None
        return cls(int(pid), host[:255], since)

    @classmethod
    def this_process(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), datetime.now(UTC))


@dataclass(frozen=True)
class Busy:
    """A lock that could not be had: its name and, when known, who holds it."""

    name: str
    holder: Holder | None
    #: Held by another thread of this process (not by another process).
    here: bool = False

    @property
    def who(self) -> str:
        if self.here:
            return "this process"
        return str(self.holder) if self.holder is not None else "another process"

    def __str__(self) -> str:
        return f"the lock {self.name!r} is held by {self.who}"


def lock_key(name: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``name``: the same in every process
    and every release, and namespaced so that it does not meet another application's keys."""
    digest = hashlib.sha256(f"usm-bridge lock:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Backend(Protocol):
    """Where locks live across processes; called under :class:`StoreLocks`'s mutex."""

    def try_lock(self, name: str, holder: Holder) -> bool: ...

    def unlock(self, name: str) -> None: ...

    def holder(self, name: str) -> Holder | None:
        """Who holds ``name`` (taken elsewhere), if it can be told."""
        ...

    def close(self) -> None: ...


class _InProcess:
    """An in-memory store is this process's alone: nobody else can hold its locks."""

    def try_lock(self, name: str, holder: Holder) -> bool:
        return True

    def unlock(self, name: str) -> None:
        return None

    def holder(self, name: str) -> Holder | None:
        return None

    def close(self) -> None:
        return None


class _Files:
    """One ``flock``-ed file per lock name in ``<database>.locks``."""

    def __init__(self, database: Path) -> None:
        self.folder = database.with_name(database.name + ".locks")
        self._fds: dict[str, int] = {}

    def _path(self, name: str) -> Path:
        # Readable where the name allows it; the hash keeps two names that clean alike apart.
        clean = _SAFE.sub("_", name)[:80]
        return self.folder / f"{clean}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.lock"

    def try_lock(self, name: str, holder: Holder) -> bool:
        import fcntl

        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, STORE_MODE)
        except OSError as exc:
            raise StoreError(
                f"cannot open the lock file for {name!r} in {self.folder}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self._path(name)}: {exc.strerror}") from exc
        # Who holds it, for whoever finds it taken; the lock itself is the flock, not this.
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder.line() + "\n").encode(), 0)
        self._fds[name] = fd
        return True

    def unlock(self, name: str) -> None:
        import fcntl

        fd = self._fds.pop(name)
        try:
            os.ftruncate(fd, 0)  # a free lock names nobody
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self, name: str) -> Holder | None:
        try:
            with self._path(name).open("rb") as file:
                text = file.read(_HOLDER_LIMIT).decode("utf-8", "replace")
        except OSError:
            return None
        return Holder.parse(text)

    def close(self) -> None:
        for name in list(self._fds):
            with suppress(OSError):
                self.unlock(name)


#: The advisory lock session's statements, built once (the store's one query style).
_NAME_SESSION = sa.text("SELECT set_config('application_name', :b_name, false)")
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:b_key)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:b_key)")
_UNLOCK_ALL = sa.text("SELECT pg_advisory_unlock_all()")


class _Advisory:
    """PostgreSQL session-level advisory locks on a dedicated, unpooled connection."""

    _HOLDER = sa.text(
        "SELECT a.application_name, a.backend_start FROM pg_locks AS l "
        "LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = CAST(:b_high AS oid) AND l.objid = CAST(:b_low AS oid)"
    )

    def __init__(self, engine: Engine, display: str) -> None:
        self._engine = engine
        self._display = display
        self._conn: Connection | None = None

    def _session(self, holder: Holder) -> Connection:
        if self._conn is None:
            try:
                conn = self._engine.connect()
                # No transaction left open for hours ("idle in transaction").
                conn.execution_options(isolation_level="AUTOCOMMIT")
                # Closed, not pooled, when done: its locks must end with it, never pass on.
                conn.detach()
                # No "since" here: 63 bytes may cut it, and the server knows when it began.
                who = Holder(holder.pid, holder.host).line()
                name = f"{_APPLICATION_PREFIX} {who}"[:_APPLICATION_NAME_LIMIT]
                conn.execute(_NAME_SESSION, {"b_name": name})
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"cannot open the lock session on the store {self._display}: "
                    f"{type(exc).__name__}"
                ) from exc
            self._conn = conn
        return self._conn

    def try_lock(self, name: str, holder: Holder) -> bool:
        conn = self._session(holder)
        try:
            got = conn.execute(_TRY_LOCK, {"b_key": lock_key(name)}).scalar_one()
        except SQLAlchemyError as exc:
            # The session is gone (a server restart, a terminated backend), and the locks it
            # held with it: the next lock asked for opens a new one instead of failing forever.
            self.close()
            raise StoreError(
                f"cannot take the lock {name!r} on {self._display}: the lock session failed "
                f"({type(exc).__name__})"
            ) from exc
        return bool(got)

    def unlock(self, name: str) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(_UNLOCK, {"b_key": lock_key(name)})
        except SQLAlchemyError:
            # The session is gone (a server restart): so are its locks.
            log.warning("cannot release the lock %r on %s", name, self._display, exc_info=True)

    def holder(self, name: str) -> Holder | None:
        if self._conn is None:
            return None
        key = lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF
        try:
            row = self._conn.execute(
                self._HOLDER, {"b_high": key >> 32, "b_low": key & 0xFFFF_FFFF}
            ).first()
        except SQLAlchemyError:
            return None
        if row is None or not row[0] or not str(row[0]).startswith(_APPLICATION_PREFIX):
            return None
        return Holder.parse(str(row[0])[len(_APPLICATION_PREFIX) :], since=row[1])

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(SQLAlchemyError):
                # Released before the session ends: the server drops a closed session's locks
                # only once its backend has exited, a moment after close() returns, and a
                # store opened right after must find them free (seen as a flaky test).
                conn.execute(_UNLOCK_ALL)
            with suppress(SQLAlchemyError):
                conn.close()  # detached: the session ends, and the server drops its locks


class StoreLocks:
    """The named locks of one store, as this process holds them; see the module docstring.

    :attr:`identity` names this holder (the process and this store object) wherever a
    record says who claimed it, e.g. an outbox claim: a holder that finds the lock free again
    knows the holder of any other identity is gone.
    """

    def __init__(self, backend: _Backend, *, kind: str) -> None:
        self._backend = backend
        self.kind = kind
        self.me = Holder.this_process()
        self.identity = f"{self.me.host}:{self.me.pid}:{secrets.token_hex(4)}"[-100:]
        self._mutex = threading.Lock()
        #: name -> (the thread holding it, how many times it took it)
        self._held: dict[str, tuple[int, int]] = {}
        self._closed = False

    def acquire(self, name: str) -> Busy | None:
        """Take ``name`` if no other process or thread holds it: ``None`` when taken (release
        it with :meth:`release`), else who holds it. Never waits.

        :raises StoreError: the lock cannot be asked for (the store is unreachable).
        """
        me = threading.get_ident()
        with self._mutex:
            if self._closed:
                raise StoreError("the store's locks are closed")
            held = self._held.get(name)
            if held is not None:
                thread, count = held
                if thread != me:
                    return Busy(name, self.me, here=True)
                self._held[name] = (thread, count + 1)
                return None
            if not self._backend.try_lock(name, self.me):
                return Busy(name, self._backend.holder(name))
            self._held[name] = (me, 1)
            return None

    def release(self, name: str) -> None:
        """Give back one :meth:`acquire` of ``name`` by this thread.

        :raises RuntimeError: this thread does not hold it.
        """
        with self._mutex:
            held = self._held.get(name)
            if held is None or held[0] != threading.get_ident():
                raise RuntimeError(f"the lock {name!r} is not held by this thread")
            thread, count = held
            if count > 1:
                self._held[name] = (thread, count - 1)
                return
            del self._held[name]
            self._backend.unlock(name)

    @contextmanager
    def hold(self, name: str) -> Iterator[Busy | None]:
        """``name`` held for the block when it yields ``None``; else the block runs without it,
        told who holds it."""
        busy = self.acquire(name)
        try:
            yield busy
        finally:
            if busy is None:
                self.release(name)

    def close(self) -> None:
        """Release every lock this process holds (ending the PostgreSQL lock session)."""
        with self._mutex:
            self._closed = True
            self._held.clear()
            self._backend.close()


def open_locks(engine: Engine, display: str) -> StoreLocks:
    """The locks for the store behind ``engine`` (nothing is opened before the first lock).

    :param display: the store's URL as it may be shown (password masked), for messages.
    """
    url = engine.url
    if engine.dialect.name == "postgresql":
        return StoreLocks(_Advisory(engine, display), kind="PostgreSQL advisory locks")
    database = url.database or ""
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    if database in ("", ":memory:") or uri or os.name != "posix":
        return StoreLocks(_InProcess(), kind="in-process locks")
    return StoreLocks(_Files(Path(database).expanduser()), kind="lock files")
