"""The state store: one :class:`Store` per process, units of work through :meth:`Store.begin`.

Everything a sync cycle decides is written in one transaction: the calls it stored, the audit
events, the outbox items for the remote writes it asked for, the dead letters, and the cursor
that says how far it got. Either all of it is there afterwards or none of it is.

SQLite (the embedded default) runs in WAL mode, so readers never wait for the writer; every
read-write unit of work starts with ``BEGIN IMMEDIATE`` so that two writers queue on the busy
timeout instead of failing half-way when one of them upgrades a read lock. PostgreSQL claims
outbox items with ``FOR UPDATE SKIP LOCKED`` so several workers can drain one outbox.

A store URL may carry a password: it is only ever shown through
``URL.render_as_string(hide_password=True)``, and driver messages are scrubbed of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pydantic import JsonValue, ValidationError
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from usm_bridge.errors import ConfigurationError, StoreError
from usm_bridge.file_modes import STORE_MODE, create_file
from usm_bridge.model import Call, utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.locks import StoreLocks, open_locks
from usm_bridge.store.records import (
    AuditEvent,
    ChainLink,
    CommentLink,
    CursorRecord,
    DeadLetter,
    DeadLetterAdded,
    DeadLetterStage,
    DeadLetterStatus,
    Enqueued,
    Identity,
    InstanceState,
    OutboxItem,
    OutboxOperation,
    OutboxStatus,
    StoredCall,
    UpsertResult,
)
from usm_bridge.store.upgrades import (
    Migration,
    SchemaPolicy,
    SchemaState,
    SchemaStatus,
    schema_status,
)

__all__ = ["Store", "StoreConflictError", "Transaction", "content_hash", "safe_url"]

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_EXPECTED_URL = "sqlite:///path/usm-bridge.db or postgresql+psycopg://user@host:5432/database"
#: What to install when a back end's driver is missing (the PostgreSQL driver is an extra).
_DRIVER_HINTS = {
    "postgresql": "; install the PostgreSQL driver with: pip install 'usm-bridge[postgresql]'",
}
#: Serialises migrations of one PostgreSQL database across processes (any constant will do).
_MIGRATION_LOCK_KEY = 0x75736D62  # "usmb"
#: How long a writer waits for another one before giving up, in seconds.
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: How long a claimed outbox item stays invisible to other workers before it is due again.
DEFAULT_LEASE = timedelta(minutes=5)
_WRITE_OPTION = "usm_bridge_write"
_MIN_SCRUBBED = 4
#: The fingerprint keys left out of audit diffs (they are not content).
_BOOKKEEPING_KEYS = frozenset({"id", "updated"})
#: SQLSTATEs of a unit of work the database gave up on because of another one running at the
#: same time: serialization_failure, deadlock_detected (PostgreSQL).
_CONFLICT_STATES = frozenset({"40001", "40P01"})

P = ParamSpec("P")
R = TypeVar("R")


class StoreConflictError(StoreError):
    """Another unit of work changed the same rows at the same time (a deadlock the database
    broke, a call updated under this one): this one was rolled back, and running it again from
    the start is the remedy. Sync cycles of different instances meet this on PostgreSQL when
    they touch calls of one chain at once; it says nothing about the data."""


def content_hash(call: Call) -> str:
    """The sha256 (hex) of the call's content: ``Call.content_fingerprint()`` as JSON.

    The JSON is canonical (keys sorted, no spaces, non-ASCII escaped), so the same content gives
    the same hash in every process and on every back end.
    """
    return _fingerprint_hash(call.content_fingerprint())


def _fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _fingerprint(call: Call, canonical: dict[str, Any]) -> dict[str, Any]:
    """``call.content_fingerprint()``, taken from its JSON dump when that is what it is.

    ``Call.content_fingerprint`` is the JSON dump without the bookkeeping keys, which is what
    :func:`_content` leaves of ``canonical``: one dump of the call then serves the row, the hash
    and the audit event. A subclass that fingerprints differently is asked.
    """
    if type(call).content_fingerprint is Call.content_fingerprint:
        return _content(canonical)
    return call.content_fingerprint()


def safe_url(url: URL) -> str:
    """The URL as it may be shown to a person: the password masked."""
    return url.render_as_string(hide_password=True)


def _json_dumps(value: Any) -> str:
    # NaN and Infinity are not JSON: PostgreSQL would refuse them and SQLite would keep them.
    return json.dumps(value, allow_nan=False)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise StoreError(f"{name} must be a time-zone aware timestamp")
    return value.astimezone(UTC)


# --- URL and engine --------------------------------------------------------------------------


def _parse_url(url: str | URL) -> URL:
    if isinstance(url, URL):
        parsed = url
    else:
        if not url.strip():
            raise ConfigurationError("the store URL is empty", expected=_EXPECTED_URL)
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError, TypeError):
            # SQLAlchemy's message quotes the whole URL, password included: do not chain it.
            raise ConfigurationError(
                "the store URL cannot be parsed", expected=_EXPECTED_URL
            ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed
    if backend in ("postgresql", "postgres"):
        # psycopg 3 is what usm-bridge[postgresql] installs; SQLAlchemy's bare default would be
        # psycopg2.
        if "+" not in parsed.drivername:
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif backend == "postgres":
            parsed = parsed.set(drivername="postgresql+" + parsed.get_driver_name())
        return parsed
    raise ConfigurationError(
        f"unsupported store back end {backend!r} in {safe_url(parsed)}", expected=_EXPECTED_URL
    )


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _create_engine(url: URL, *, connect_timeout: float, busy_timeout: float) -> Engine:
    options: dict[str, Any] = {
        # Parameters are ticket data: keep them out of exception messages and logs.
        "hide_parameters": True,
        "json_serializer": _json_dumps,
    }
    if url.get_backend_name() == "sqlite":
        connect_args: dict[str, Any] = {"timeout": busy_timeout}
        if _is_memory(url):
            # One shared connection, or every checkout would see its own empty database.
            connect_args["check_same_thread"] = False
            options["poolclass"] = StaticPool
        else:
            assert url.database is not None
            folder = Path(url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder {folder} for the store {safe_url(url)}: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from exc
            if not _is_uri(url):
                _create_store_file(url)
        options["connect_args"] = connect_args
    else:
        connect_args = {}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in url.query:
            connect_args["application_name"] = "usm-bridge"
        options["connect_args"] = connect_args
        # A daemon outlives server restarts and idle-connection reapers.
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **options)
    except (NoSuchModuleError, ImportError):
        raise ConfigurationError(
            f"no database driver for {url.drivername!r} is installed"
            + _DRIVER_HINTS.get(url.get_backend_name(), ""),
            expected=_EXPECTED_URL,
        ) from None
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the store URL {safe_url(url)} is not usable: {type(exc).__name__}",
            expected=_EXPECTED_URL,
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, busy_timeout=busy_timeout, memory=_is_memory(url))
    return engine


def _not_made_yet(url: URL) -> bool:
    """A SQLite store named by a plain file path that does not exist."""
    if url.get_backend_name() != "sqlite" or _is_memory(url) or _is_uri(url):
        return False
    assert url.database is not None
    return not Path(url.database).expanduser().exists()


def _is_uri(url: URL) -> bool:
    # sqlite:///file:name?mode=ro&uri=true names the file inside a URI SQLite parses itself.
    return str(url.query.get("uri", "")).lower() in ("true", "1")


def _create_store_file(url: URL) -> None:
    """Create a new SQLite store file owner-only before SQLite does (it would use 0644); its
    -wal and -shm files then get the same mode, as SQLite copies the database file's."""
    assert url.database is not None
    path = Path(url.database)
    try:
        create_file(path, STORE_MODE)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store file {path} for {safe_url(url)}: "
            f"{exc.strerror or type(exc).__name__}"
        ) from exc


def _configure_sqlite(engine: Engine, *, busy_timeout: float, memory: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would only BEGIN before
        # DML (not before reads) and so give no consistent snapshot to a unit of work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                mode = _wal_mode(cursor, busy_timeout)
                if str(mode).lower() != "wal":
                    log.warning("SQLite refused WAL mode (journal mode is %s)", mode)
                else:
                    # In WAL mode NORMAL never corrupts and loses nothing on a process crash;
                    # a power cut may undo the last commits, in order, cursor included, so the
                    # bridge re-reads and re-pushes idempotently. FULL would fsync every commit.
                    cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _wal_mode(cursor: Any, busy_timeout: float) -> str:
    """Put the database in WAL mode and return the journal mode it is in.

    WAL is a property of the file: once set, later connections find it and change nothing. The
    first switch needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy handler, when another connection opened the new file at the same moment
    (processes starting together on a fresh store): so the switch is tried again, briefly, for
    as long as a busy write would be waited for.
    """
    mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0])
    if mode.lower() == "wal":
        return mode
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _driver_message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = [line.strip() for line in str(source).strip().splitlines() if line.strip()]
    text = "; ".join(lines[:3]) if lines else type(source).__name__
    return text[:500]


# --- the store -------------------------------------------------------------------------------


class Store:
    """The bridge's state: calls, identities, chain links, cursors, outbox, dead letters, audit.

    Open with :meth:`open` (which creates a new store's schema), use units of work through
    :meth:`begin`, and :meth:`close` when done (or use the store as a context manager).
    """

    def __init__(self, engine: Engine, url: URL) -> None:
        """Prefer :meth:`open`, which also checks the schema; this wraps an engine as it is."""
        self._engine = engine
        self._url = url
        self._closed = False
        self._locks: StoreLocks | None = None
        self._locks_guard = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str | URL,
        *,
        schema: SchemaPolicy = SchemaPolicy.CREATE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> Store:
        """Connect to the store at ``url`` and return it once its schema is what ``schema``
        allows: by default a new empty store is created and any other must already be at the
        code's revision; :attr:`SchemaPolicy.UPGRADE` also upgrades an older one, and
        :attr:`SchemaPolicy.INSPECT` leaves the schema as it finds it; with
        :attr:`SchemaPolicy.READ` a SQLite file that does not exist is not created.

        :raises ConfigurationError: the URL is malformed or names an unsupported back end.
        :raises StoreSchemaError: the schema is newer than the code, or older and not to be
            upgraded (the message names the command to run).
        :raises StoreError: the database cannot be reached or migrated.
        """
        parsed = _parse_url(url)
        opened = parsed
        if schema is SchemaPolicy.READ and _not_made_yet(parsed):
            # Reading never creates: a store file that does not exist yet reads as the empty
            # store the first sync will make, held in memory, and no file or folder is left.
            opened = parsed.set(database=":memory:", query={})
        engine = _create_engine(opened, connect_timeout=connect_timeout, busy_timeout=busy_timeout)
        store = cls(engine, parsed)
        try:
            if schema is not SchemaPolicy.INSPECT:
                store._prepare_schema(upgrade=schema is SchemaPolicy.UPGRADE)
        except BaseException:
            engine.dispose()
            raise
        log.info("store opened at %s", store.display_url)
        return store

    # -- properties

    @property
    def display_url(self) -> str:
        """The store's URL with the password masked."""
        return safe_url(self._url)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tools and tests that need to go below the API."""
        return self._engine

    @property
    def locks(self) -> StoreLocks:
        """The named locks shared by every process on this store (:mod:`.locks`), one set per
        store object, released by :meth:`close` (or by the death of the process)."""
        self._check_open()
        with self._locks_guard:
            if self._locks is None:
                self._locks = open_locks(self._engine, self.display_url)
            return self._locks

    # -- lifecycle

    def close(self) -> None:
        """Close every pooled connection and release the store's locks. The store cannot be
        used afterwards."""
        if not self._closed:
            self._closed = True
            if self._locks is not None:
                self._locks.close()
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store at {self.display_url} is closed")

    def _error(self, doing: str, exc: BaseException) -> StoreError:
        """A StoreError saying what failed, with the driver's reason and no password in it."""
        message = f"{doing} (store {self.display_url}): {_driver_message(exc)}"
        password = str(self._url.password or "")
        # Drivers do not echo passwords today; this guards against one that would. A very short
        # "password" would also mask ordinary letters, so those are left alone.
        if len(password) >= _MIN_SCRUBBED:
            message = message.replace(password, "***")
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlstate", None) in _CONFLICT_STATES:
            return StoreConflictError(message)
        return StoreError(message)

    # -- schema

    def _alembic_config(self) -> Config:
        config = Config()
        # ConfigParser interpolation would eat a '%' in the install path.
        config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
        return config

    def upgrade(self) -> tuple[Migration, ...]:
        """Bring the schema to the code's revision; the migrations applied, oldest first (none
        when it was current already).

        :raises StoreSchemaError: the schema is newer than the code.
        :raises StoreError: the database cannot be reached or a migration failed.
        """
        self._check_open()
        return self._prepare_schema(upgrade=True)

    def _prepare_schema(self, *, upgrade: bool) -> tuple[Migration, ...]:
        """Create an empty store, upgrade an older one when ``upgrade``, refuse the rest;
        the migrations applied. One transaction, so nothing is half done."""
        config = self._alembic_config()
        script = ScriptDirectory.from_config(config)
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two processes opening a fresh database at once would both create tables;
                    # the revision is read under the lock so the second sees the first's work.
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                status = schema_status(script, _current_revision(conn))
                refusal = status.refusal(self.display_url)
                if refusal is not None and not (upgrade and status.state is SchemaState.OLDER):
                    raise refusal
                if not status.pending:
                    return ()
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise self._error("cannot open the store", exc) from exc
        except CommandError as exc:
            raise StoreError(f"cannot migrate the store at {self.display_url}: {exc}") from exc
        finally:
            config.attributes.pop("connection", None)
        for migration in status.pending:
            log.info(
                "store %s: applied migration %s %s",
                self.display_url,
                migration.revision,
                migration.description,
            )
        return status.pending

    def schema_status(self) -> SchemaStatus:
        """Where the store's schema stands against the code's; reads, changes nothing."""
        self._check_open()
        script = ScriptDirectory.from_config(self._alembic_config())
        try:
            with self._engine.connect().execution_options(**{_WRITE_OPTION: False}) as conn:
                current = _current_revision(conn)
        except SQLAlchemyError as exc:
            raise self._error("cannot read the schema revision", exc) from exc
        return schema_status(script, current)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before any migration)."""
        return self.schema_status().current

    def head_revision(self) -> str | None:
        """The newest revision this version of usm-bridge knows."""
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    # -- units of work

    @contextmanager
    def begin(self, *, readonly: bool = False) -> Iterator[Transaction]:
        """A unit of work: commits when the block ends normally, rolls back on any exception.

        ``readonly=True`` promises not to write: on SQLite it does not take the write lock (so
        it never waits for a writer), on PostgreSQL the server refuses writes.

        :raises StoreError: the database cannot be reached, or refused the commit.
        """
        self._check_open()
        try:
            conn = self._engine.connect().execution_options(**{_WRITE_OPTION: not readonly})
        except SQLAlchemyError as exc:
            raise self._error("cannot connect to the store", exc) from exc
        try:
            try:
                trans = conn.begin()
                if readonly and conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            except SQLAlchemyError as exc:
                raise self._error("cannot start a transaction", exc) from exc
            tx = Transaction(conn, self)
            try:
                yield tx
            except BaseException as exc:
                tx._end()
                if trans.is_active:
                    try:
                        trans.rollback()
                    except SQLAlchemyError:
                        # The original error matters more; the connection is discarded anyway.
                        log.warning("rollback failed on %s", self.display_url, exc_info=True)
                if isinstance(exc, SQLAlchemyError):
                    # Raw SQL through tx.connection: the caller still gets the store's error.
                    raise self._error("the unit of work failed", exc) from exc
                raise
            tx._end()
            try:
                trans.commit()
            except SQLAlchemyError as exc:
                raise self._error("the store refused to commit", exc) from exc
        finally:
            conn.close()


def _current_revision(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": t.VERSION_TABLE})
    return context.get_current_revision()


# --- prepared statements ----------------------------------------------------------------------
#
# Storing calls runs a few statements per call, thousands of times in a backfill. Statements
# built once, with bound parameters, let SQLAlchemy reuse their cache key and compiled SQL instead
# of building, coercing and hashing a new construct (and a literal per value) every time.
# Parameters of WHERE clauses are named ``b_...`` so they never clash with the columns an UPDATE
# or INSERT sets from the same parameter dictionary.

_calls = t.calls
_ids = t.identities


class _Statements:
    """The prepared statements of one back end (locking and ``ON CONFLICT`` differ)."""

    def __init__(self, *, pg: bool) -> None:
        dialect_insert = pg_dialect.insert if pg else sqlite_dialect.insert
        b_id: sa.BindParameter[Any] = sa.bindparam("b_id")
        b_instance: sa.BindParameter[Any] = sa.bindparam("b_instance")
        b_remote_id: sa.BindParameter[Any] = sa.bindparam("b_remote_id")
        b_call_id: sa.BindParameter[Any] = sa.bindparam("b_call_id")

        # -- calls
        self.select_call = sa.select(_calls).where(_calls.c.id == b_id)
        #: The call row, locked on PostgreSQL until the unit of work ends.
        self.lock_call = self.select_call.with_for_update() if pg else self.select_call
        self.insert_call = _calls.insert()
        #: Insert unless the id is taken; RETURNING says which (rowcount is not reliable).
        self.insert_call_if_new = (
            dialect_insert(_calls)
            .on_conflict_do_nothing(index_elements=[_calls.c.id])
            .returning(_calls.c.id)
        )
        self.update_call = _calls.update().where(
            _calls.c.id == b_id, _calls.c.version == sa.bindparam("b_version")
        )
        self.set_vanished = _calls.update().where(_calls.c.id == b_id)
        self.select_vanished = sa.select(_calls.c.vanished_at).where(_calls.c.id == b_id)
        linked = _calls.join(_ids, _ids.c.call_id == _calls.c.id)
        by_record = (_ids.c.instance == b_instance, _ids.c.remote_id == b_remote_id)
        self.find_call = sa.select(_calls).select_from(linked).where(*by_record)
        #: The call linked to a record, with that identity, the call locked on PostgreSQL.
        linked_call = (
            sa.select(
                _calls,
                _ids.c.id.label("identity_id"),
                _ids.c.remote_key.label("identity_remote_key"),
                _ids.c.url.label("identity_url"),
            )
            .select_from(linked)
            .where(*by_record)
        )
        self.lock_linked_call = linked_call.with_for_update(of=_calls) if pg else linked_call

        # -- identities
        self.identity_of_call = sa.select(_ids).where(
            _ids.c.call_id == b_call_id, _ids.c.instance == b_instance
        )
        self.identity_of_record = sa.select(_ids).where(*by_record)
        self.identity_by_correlation = sa.select(_ids).where(
            _ids.c.instance == b_instance, _ids.c.correlation == sa.bindparam("b_correlation")
        )
        #: The identity of the record and that of the call in the instance (each on its index).
        self.identity_claims = sa.union_all(self.identity_of_record, self.identity_of_call)
        self.insert_identity = _ids.insert()
        #: Insert unless the record (or the call's slot in the instance) is taken.
        self.insert_identity_if_free = (
            dialect_insert(_ids).on_conflict_do_nothing().returning(_ids.c.id)
        )
        self.update_identity = _ids.update().where(_ids.c.id == sa.bindparam("b_identity_id"))
        self.set_pushed_hash = (
            _ids.update()
            .where(_ids.c.call_id == b_call_id, _ids.c.instance == b_instance)
            .returning(*_ids.c)
        )

        # -- audit
        self.insert_audit = t.audit_log.insert()


_STATEMENTS = {False: _Statements(pg=False), True: _Statements(pg=True)}


# --- the unit of work ------------------------------------------------------------------------


def _guarded(
    method: Callable[Concatenate[Transaction, P], R],
) -> Callable[Concatenate[Transaction, P], R]:
    """Turn database errors into StoreError and refuse use after the unit of work ended."""

    @functools.wraps(method)
    def wrapper(self: Transaction, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._ended:
            raise StoreError("this unit of work has ended; open a new one with store.begin()")
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise self._store._error(f"{method.__name__} failed", exc) from exc

    return wrapper


class Transaction:
    """The methods of one unit of work. Get one from :meth:`Store.begin`, never build it."""

    def __init__(self, conn: Connection, store: Store) -> None:
        self._conn = conn
        self._store = store
        self._ended = False
        self._pg = conn.dialect.name == "postgresql"
        self._sql = _STATEMENTS[self._pg]

    def _end(self) -> None:
        self._ended = True

    @property
    def connection(self) -> Connection:
        """The connection of this unit of work, for queries the API does not offer."""
        return self._conn

    def _insert(self, table: sa.Table) -> Any:
        # Both dialects' insert constructs know ON CONFLICT DO NOTHING.
        return pg_dialect.insert(table) if self._pg else sqlite_dialect.insert(table)

    # -- calls ------------------------------------------------------------------------------

    @_guarded
    def upsert_call(
        self, call: Call, *, instance: str | None = None, actor: str = "bridge"
    ) -> UpsertResult:
        """Store ``call``; bump its version and audit it only if its content really changed.

        A call whose content hash equals the stored one is left as it is (no write, no version,
        no audit event): this is how a re-read, or the echo of the bridge's own write, is
        ignored. A call found vanished before is marked present again. When the call has a
        ``source``, that remote record is linked to it as an identity.

        :param instance: the connector instance the call was read from, for the audit log.
        :param actor: who made the change, for the audit log.
        """
        row = self._conn.execute(self._sql.lock_call, {"b_id": call.id}).mappings().first()
        return self._store_call(call, row, instance=instance, actor=actor)

    def _store_mapped_call(self, call: Call, *, instance: str) -> UpsertResult:
        """What :func:`usm_bridge.sync.ingest.store_mapped_call` does, in few statements.

        Equivalent to ``find_call`` on the call's source, then :meth:`upsert_call` of the call
        under the found call's id and chain links; but one statement finds (and, on PostgreSQL,
        locks) the stored call together with its identity, which then needs no other look-up,
        and a record never seen is inserted without first looking for its fresh id.
        """
        if self._ended:
            raise StoreError("this unit of work has ended; open a new one with store.begin()")
        source = call.source
        if source is None:
            return self.upsert_call(call, instance=instance)
        try:
            row = (
                self._conn.execute(
                    self._sql.lock_linked_call,
                    {"b_instance": source.instance, "b_remote_id": source.remote_id},
                )
                .mappings()
                .first()
            )
            if row is None:
                return self._store_call(call, None, instance=instance, actor="bridge", new=True)
            existing = _stored_call(row)
            # The chain between units is the bridge's; the forks inside the unit are the
            # tool's own links, as just read (and resolved by usm_bridge.sync.forks).
            chain = existing.call.chain.model_copy(update={"forks": call.chain.forks})
            call = call.model_copy(update={"id": existing.id, "chain": chain})
            return self._store_call(call, row, instance=instance, actor="bridge", linked=row)
        except SQLAlchemyError as exc:
            raise self._store._error("upsert_call failed", exc) from exc

    def _store_call(
        self,
        call: Call,
        row: RowMapping | None,
        *,
        instance: str | None,
        actor: str,
        new: bool = False,
        linked: RowMapping | None = None,
    ) -> UpsertResult:
        """:meth:`upsert_call` once the stored row (locked on PostgreSQL) is known.

        :param row: the stored call, ``None`` when there is none.
        :param new: ``row`` was not looked for: the call is inserted unless its id is taken.
        :param linked: the call's row as read with the identity of ``call.source`` (which is
            therefore linked to it already).
        """
        canonical = call.model_dump(mode="json")
        content = _fingerprint(call, canonical)
        new_hash = _fingerprint_hash(content)
        now = utcnow()
        # Written together at the end (and before any error this method raises), in order.
        audits: list[dict[str, Any]] = []
        if row is None:
            values = _new_call_row(call, canonical, new_hash, now)
            if new:
                if self._conn.execute(self._sql.insert_call_if_new, values).first() is None:
                    # The id is taken after all: store over that call, as upsert_call would.
                    return self.upsert_call(call, instance=instance, actor=actor)
            else:
                self._conn.execute(self._sql.insert_call, values)
            audits.append(
                _call_created(call, content, new_hash, instance=instance, actor=actor, now=now)
            )
            result = UpsertResult(
                call_id=call.id,
                created=True,
                changed=True,
                old_version=None,
                new_version=1,
                old_hash=None,
                content_hash=new_hash,
            )
        else:
            old_version = int(row["version"])
            old_hash = str(row["content_hash"])
            if row["vanished_at"] is not None:
                self._conn.execute(self._sql.set_vanished, {"b_id": call.id, "vanished_at": None})
                audits.append(
                    _audit_row(
                        "call_reappeared", call_id=call.id, instance=instance, actor=actor, now=now
                    )
                )
            if old_hash == new_hash:
                result = UpsertResult(
                    call_id=call.id,
                    created=False,
                    changed=False,
                    old_version=old_version,
                    new_version=old_version,
                    old_hash=old_hash,
                    content_hash=new_hash,
                )
            else:
                new_version = old_version + 1
                values = _changed_call_row(call, canonical, new_hash, new_version, now)
                updated = self._conn.execute(
                    self._sql.update_call, {"b_id": call.id, "b_version": old_version, **values}
                )
                if updated.rowcount != 1:
                    self._write_audits(audits)
                    raise StoreConflictError(
                        f"call {call.id} was changed concurrently; retry the cycle"
                    )
                # Only now is the old content needed: diff it, never on an unchanged re-read.
                audits.append(
                    _call_updated(
                        call, row, content, new_hash, instance=instance, actor=actor, now=now
                    )
                )
                result = UpsertResult(
                    call_id=call.id,
                    created=False,
                    changed=True,
                    old_version=old_version,
                    new_version=new_version,
                    old_hash=old_hash,
                    content_hash=new_hash,
                )
        source = call.source
        if source is not None:
            if linked is not None:
                # Linked already (that is how the call was found): only refresh key and URL.
                self._refresh_identity(
                    linked["identity_id"],
                    {"remote_key": linked["identity_remote_key"], "url": linked["identity_url"]},
                    remote_key=source.remote_key,
                    url=source.url,
                    correlation=None,
                )
            else:
                self._link(
                    call.id,
                    source.instance,
                    source.remote_id,
                    remote_key=source.remote_key,
                    url=source.url,
                    correlation=None,
                    actor=actor,
                    audits=audits,
                    new_call=result.created,
                )
        self._write_audits(audits)
        return result

    @_guarded
    def get_call(self, call_id: str) -> StoredCall | None:
        """The stored call with this canonical id, or ``None``."""
        found = self._conn.execute(self._sql.select_call, {"b_id": call_id}).mappings().first()
        return None if found is None else _stored_call(found)

    @_guarded
    def lock_chain(self, instance: str, remote_id: str) -> list[str]:
        """On PostgreSQL, lock until the unit of work ends the call of a remote record and every
        call chained to it (its upstream and suppliers, transitively); returns their ids.

        A sync cycle stores what it read and routes it along the chain in one unit of work,
        reading and rewriting the linked calls. Cycles of different instances run at once, so
        under READ COMMITTED one would write back a linked call as it read it before another
        one's change committed, losing that change; and two that lock the same calls in
        different orders deadlock. Taking the whole chain first, in id order, makes units of
        work on one chain take turns, and the reads that follow see the latest commit.

        SQLite needs none of it (every read-write unit of work holds the write lock from its
        start): nothing is looked up and ``[]`` is returned.
        """
        if not self._pg:
            return []
        chain = self._chain_of(instance, remote_id)
        lock = sa.select(_calls.c.id).order_by(_calls.c.id).with_for_update(of=_calls)
        locked = {str(i) for i in self._conn.execute(lock.where(_calls.c.id.in_(chain))).scalars()}
        # The chain may have grown while this waited for a lock (a supplier opened meanwhile):
        # what joined is locked too, until nothing new turns up. Only that rare second round
        # takes locks out of order; the database then breaks a deadlock (StoreConflictError).
        while grown := {str(i) for i in self._conn.execute(chain).scalars()} - locked:
            self._conn.execute(lock.where(_calls.c.id.in_(sorted(grown)))).all()
            locked |= grown
        return sorted(locked)

    @staticmethod
    def _chain_of(instance: str, remote_id: str) -> sa.Select[tuple[str]]:
        """The ids of the call of a remote record and of every call chained to it, in either
        direction, transitively (a recursive query: one round trip however long the chain)."""
        links = t.chain_links
        start = sa.select(_ids.c.call_id.label("id")).where(
            _ids.c.instance == instance, _ids.c.remote_id == remote_id
        )
        chain = start.cte("chain", recursive=True)
        # UNION, not UNION ALL: a call already found stops the walk, so it ends on any graph.
        step = sa.select(
            sa.case(
                (links.c.upstream_call_id == chain.c.id, links.c.supplier_call_id),
                else_=links.c.upstream_call_id,
            )
        ).join(
            chain,
            (links.c.upstream_call_id == chain.c.id) | (links.c.supplier_call_id == chain.c.id),
        )
        chain = chain.union(step)
        return sa.select(chain.c.id)

    @_guarded
    def find_call(self, instance: str, remote_id: str) -> StoredCall | None:
        """The call linked to the record ``remote_id`` of connector instance ``instance``."""
        found = (
            self._conn.execute(
                self._sql.find_call, {"b_instance": instance, "b_remote_id": remote_id}
            )
            .mappings()
            .first()
        )
        return None if found is None else _stored_call(found)

    @_guarded
    def list_calls(
        self,
        *,
        unit: str | None = None,
        include_vanished: bool = True,
        limit: int | None = None,
    ) -> list[StoredCall]:
        """Stored calls, oldest first, optionally of one unit only."""
        query = sa.select(t.calls).order_by(t.calls.c.created_at, t.calls.c.id)
        if unit is not None:
            query = query.where(t.calls.c.unit == unit)
        if not include_vanished:
            query = query.where(t.calls.c.vanished_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        return [_stored_call(row) for row in self._conn.execute(query).mappings()]

    @_guarded
    def mark_vanished(
        self, call_id: str, *, instance: str | None = None, actor: str = "bridge"
    ) -> bool:
        """Record that the call's remote record was deleted; the call itself is kept.

        :returns: False when it was already marked vanished.
        :raises StoreError: no such call.
        """
        now = utcnow()
        row = self._conn.execute(self._sql.select_vanished, {"b_id": call_id}).first()
        if row is None:
            raise StoreError(f"no call {call_id!r} to mark vanished")
        if row.vanished_at is not None:
            return False
        self._conn.execute(self._sql.set_vanished, {"b_id": call_id, "vanished_at": now})
        self._audit("call_vanished", call_id=call_id, instance=instance, actor=actor, now=now)
        return True

    # -- identities -------------------------------------------------------------------------

    @_guarded
    def link_identity(
        self,
        call_id: str,
        instance: str,
        remote_id: str,
        *,
        remote_key: str | None = None,
        url: str | None = None,
        correlation: str | None = None,
        actor: str = "bridge",
    ) -> Identity:
        """Link the canonical call to a remote record; linking the same pair again is a no-op.

        A call has at most one record per instance, and a record belongs to one call.
        ``remote_key``, ``url`` and ``correlation`` are updated when given.

        :raises StoreError: the record is linked to another call, or the call to another record.
        """
        audits: list[dict[str, Any]] = []
        values = self._link(
            call_id,
            instance,
            remote_id,
            remote_key=remote_key,
            url=url,
            correlation=correlation,
            actor=actor,
            audits=audits,
        )
        self._write_audits(audits)
        return Identity.model_validate(values)

    def _link(
        self,
        call_id: str,
        instance: str,
        remote_id: str,
        *,
        remote_key: str | None,
        url: str | None,
        correlation: str | None,
        actor: str,
        audits: list[dict[str, Any]],
        new_call: bool = False,
    ) -> dict[str, Any]:
        """:meth:`link_identity`, its audit event added to ``audits``; the identity's columns.

        :param new_call: the call was inserted in this unit of work, so no identity can name it
            yet and only the record can be taken: the identity is inserted straight away.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "call_id": call_id,
            "instance": instance,
            "remote_id": remote_id,
            "remote_key": remote_key,
            "url": url,
            "correlation": correlation,
            "pushed_hash": None,
            "pushed_at": None,
            "created_at": now,
            "updated_at": now,
        }
        if new_call:
            inserted = self._conn.execute(self._sql.insert_identity_if_free, values).first()
            if inserted is not None:
                values["id"] = int(inserted[0])
                audits.append(_identity_linked(values, actor=actor, now=now))
                return values
            # Taken: the checks below say by what.
        rows = (
            self._conn.execute(
                self._sql.identity_claims,
                {"b_instance": instance, "b_remote_id": remote_id, "b_call_id": call_id},
            )
            .mappings()
            .all()
        )
        existing = next((row for row in rows if row["remote_id"] == remote_id), None)
        if existing is not None and existing["call_id"] != call_id:
            self._write_audits(audits)
            raise StoreError(
                f"record {remote_id!r} of {instance!r} is already linked to call "
                f"{existing['call_id']!r}, not {call_id!r}"
            )
        if existing is None:
            other = next((row for row in rows if row["call_id"] == call_id), None)
            if other is not None:
                self._write_audits(audits)
                raise StoreError(
                    f"call {call_id!r} is already linked to record {other['remote_id']!r} of "
                    f"{instance!r}, not {remote_id!r}"
                )
            result = self._conn.execute(self._sql.insert_identity, values)
            assert result.inserted_primary_key is not None
            values["id"] = int(result.inserted_primary_key[0])
            audits.append(_identity_linked(values, actor=actor, now=now))
            return values
        found = dict(existing)
        found.update(
            self._refresh_identity(
                existing["id"], existing, remote_key=remote_key, url=url, correlation=correlation
            )
        )
        return found

    def _refresh_identity(
        self,
        identity_id: int,
        current: Mapping[Any, Any],
        *,
        remote_key: str | None,
        url: str | None,
        correlation: str | None,
    ) -> dict[str, Any]:
        """Update the given (not ``None``) values that differ from ``current``; the changes."""
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("remote_key", remote_key),
                ("url", url),
                ("correlation", correlation),
            )
            if value is not None and current[name] != value
        }
        if changes:
            changes["updated_at"] = utcnow()
            self._conn.execute(self._sql.update_identity, {"b_identity_id": identity_id, **changes})
        return changes

    @_guarded
    def get_identity(self, call_id: str, instance: str) -> Identity | None:
        """The call's record in ``instance``, or ``None``."""
        return self._one_identity(
            self._sql.identity_of_call, {"b_call_id": call_id, "b_instance": instance}
        )

    @_guarded
    def find_identity(self, instance: str, remote_id: str) -> Identity | None:
        """The identity of record ``remote_id`` in ``instance``, or ``None``."""
        return self._one_identity(
            self._sql.identity_of_record, {"b_instance": instance, "b_remote_id": remote_id}
        )

    @_guarded
    def find_identity_by_correlation(self, instance: str, correlation: str) -> Identity | None:
        """The identity the bridge created in ``instance`` with this correlation marker."""
        return self._one_identity(
            self._sql.identity_by_correlation,
            {"b_instance": instance, "b_correlation": correlation},
        )

    def _one_identity(self, query: sa.Select[Any], params: dict[str, Any]) -> Identity | None:
        row = self._conn.execute(query, params).mappings().first()
        return None if row is None else Identity.model_validate(dict(row))

    @_guarded
    def identities_of(self, call_id: str) -> list[Identity]:
        """Every remote record of the call, by instance name."""
        ids = t.identities
        rows = self._conn.execute(
            sa.select(ids).where(ids.c.call_id == call_id).order_by(ids.c.instance)
        ).mappings()
        return [Identity.model_validate(dict(row)) for row in rows]

    @_guarded
    def find_identities_by_reference(self, reference: str) -> list[Identity]:
        """Every remote record whose key (``IT-1``, ``RITM0010001``) or id is ``reference``,
        in any instance (``usm-bridge trace``); ordered by instance."""
        ids = t.identities
        rows = self._conn.execute(
            sa.select(ids)
            .where(sa.or_(ids.c.remote_key == reference, ids.c.remote_id == reference))
            .order_by(ids.c.instance, ids.c.id)
        ).mappings()
        return [Identity.model_validate(dict(row)) for row in rows]

    @_guarded
    def record_pushed_hash(self, call_id: str, instance: str, pushed_hash: str) -> Identity:
        """Remember the content hash last written to the call's record in ``instance``.

        :raises StoreError: the call has no record in that instance.
        """
        row = (
            self._conn.execute(
                self._sql.set_pushed_hash,
                {
                    "b_call_id": call_id,
                    "b_instance": instance,
                    "pushed_hash": pushed_hash,
                    "pushed_at": utcnow(),
                    "updated_at": utcnow(),
                },
            )
            .mappings()
            .first()
        )
        if row is None:
            raise StoreError(f"call {call_id!r} has no record in {instance!r}")
        return Identity.model_validate(dict(row))

    @_guarded
    def list_identities(self, instance: str) -> list[Identity]:
        """Every remote record of ``instance`` the store knows (for the census)."""
        ids = t.identities
        rows = self._conn.execute(
            sa.select(ids).where(ids.c.instance == instance).order_by(ids.c.id)
        ).mappings()
        return [Identity.model_validate(dict(row)) for row in rows]

    # -- chain ------------------------------------------------------------------------------

    @_guarded
    def link_chain(self, upstream_call_id: str, supplier_call_id: str, route: str) -> ChainLink:
        """Record that the supplier call was raised for the upstream call through ``route``.

        Linking the same pair again returns the existing link.

        :raises StoreError: the supplier call already serves another upstream call.
        """
        links = t.chain_links
        existing = (
            self._conn.execute(sa.select(links).where(links.c.supplier_call_id == supplier_call_id))
            .mappings()
            .first()
        )
        if existing is not None:
            if existing["upstream_call_id"] != upstream_call_id:
                raise StoreError(
                    f"call {supplier_call_id!r} already supplies {existing['upstream_call_id']!r}"
                )
            return _chain_link(existing)
        now = utcnow()
        self._conn.execute(
            links.insert().values(
                upstream_call_id=upstream_call_id,
                supplier_call_id=supplier_call_id,
                route=route,
                created_at=now,
            )
        )
        self._audit(
            "chain_linked",
            call_id=upstream_call_id,
            detail={"supplier_call_id": supplier_call_id, "route": route},
            now=now,
        )
        return ChainLink(
            upstream_call_id=upstream_call_id,
            supplier_call_id=supplier_call_id,
            route=route,
            created_at=now,
        )

    @_guarded
    def suppliers_of(self, call_id: str) -> list[ChainLink]:
        """The links from ``call_id`` to the supplier calls raised for it, oldest first."""
        links = t.chain_links
        rows = self._conn.execute(
            sa.select(links).where(links.c.upstream_call_id == call_id).order_by(links.c.id)
        ).mappings()
        return [_chain_link(row) for row in rows]

    @_guarded
    def upstream_of(self, call_id: str) -> ChainLink | None:
        """The link to the upstream call ``call_id`` was raised for, if any."""
        links = t.chain_links
        row = (
            self._conn.execute(sa.select(links).where(links.c.supplier_call_id == call_id))
            .mappings()
            .first()
        )
        return None if row is None else _chain_link(row)

    @_guarded
    def closure_candidates(self, instance: str) -> list[tuple[str, str]]:
        """``(call id, remote id)`` of ``instance``'s records whose link may be due to close
        (:mod:`usm_bridge.sync.closure`): chained calls that are ``fulfilled`` or
        ``confirmed``, and supplier calls ``closed`` by their tool (whose acceptance may not
        be recorded yet: the closure reads that from the call). Oldest call first."""
        calls, ids, links = t.calls, t.identities, t.chain_links
        chained = sa.select(links.c.supplier_call_id).union(sa.select(links.c.upstream_call_id))
        suppliers = sa.select(links.c.supplier_call_id)
        query = (
            sa.select(calls.c.id, ids.c.remote_id)
            .join(ids, (ids.c.call_id == calls.c.id) & (ids.c.instance == instance))
            .where(
                (calls.c.status.in_(("fulfilled", "confirmed")) & calls.c.id.in_(chained))
                | ((calls.c.status == "closed") & calls.c.id.in_(suppliers))
            )
            .order_by(calls.c.created_at, calls.c.id)
        )
        return [(str(row.id), str(row.remote_id)) for row in self._conn.execute(query)]

    # -- cursors ----------------------------------------------------------------------------

    @_guarded
    def get_cursor(self, instance: str) -> str | None:
        """The saved read position of ``instance`` (``None``: read everything)."""
        return self._conn.execute(
            sa.select(t.cursors.c.cursor).where(t.cursors.c.instance == instance)
        ).scalar_one_or_none()

    @_guarded
    def set_cursor(self, instance: str, cursor: str) -> CursorRecord:
        """Save the read position; call it in the unit of work that stored what it covers."""
        now = utcnow()
        statement = self._insert(t.cursors).values(instance=instance, cursor=cursor, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[t.cursors.c.instance],
            set_={"cursor": cursor, "updated_at": now},
        )
        self._conn.execute(statement)
        return CursorRecord(instance=instance, cursor=cursor, updated_at=now)

    @_guarded
    def list_cursors(self) -> list[CursorRecord]:
        """Every saved cursor, by instance name."""
        rows = self._conn.execute(sa.select(t.cursors).order_by(t.cursors.c.instance)).mappings()
        return [CursorRecord.model_validate(dict(row)) for row in rows]

    # -- outbox -----------------------------------------------------------------------------

    @_guarded
    def enqueue(
        self,
        target_instance: str,
        call_id: str,
        operation: OutboxOperation | str,
        payload: JsonValue,
        idempotency_key: str,
        *,
        not_before: datetime | None = None,
    ) -> Enqueued:
        """Ask for a remote write; enqueuing the same idempotency key again adds nothing.

        :param idempotency_key: names the write, not the attempt (it doubles as the remote
            correlation marker of a create), e.g. ``f"{call_id}:{instance}:create"``.
        :param not_before: when the write becomes due (now if not given).
        :raises StoreError: the key is already used for a different write.
        """
        op = OutboxOperation(operation)
        now = utcnow()
        due = now if not_before is None else _aware(not_before, "not_before")
        statement = (
            self._insert(t.outbox)
            .values(
                target_instance=target_instance,
                call_id=call_id,
                operation=op.value,
                payload=payload,
                idempotency_key=idempotency_key,
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=due,
                last_error=None,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[t.outbox.c.idempotency_key])
            # rowcount is not reliable for INSERT .. ON CONFLICT on every driver; RETURNING is.
            .returning(t.outbox.c.id)
        )
        created = self._conn.execute(statement).first() is not None
        row = (
            self._conn.execute(
                sa.select(t.outbox).where(t.outbox.c.idempotency_key == idempotency_key)
            )
            .mappings()
            .one()
        )
        item = _outbox_item(row)
        if (item.target_instance, item.call_id, item.operation) != (target_instance, call_id, op):
            raise StoreError(
                f"idempotency key {idempotency_key!r} is already used for a {item.operation} of "
                f"call {item.call_id!r} in {item.target_instance!r}"
            )
        return Enqueued(item=item, created=created)

    @_guarded
    def claim_outbox(
        self,
        *,
        instance: str | None = None,
        limit: int = 50,
        lease: timedelta = DEFAULT_LEASE,
        now: datetime | None = None,
        holder: str | None = None,
    ) -> list[OutboxItem]:
        """Take the due pending items (oldest first) for pushing.

        Each claimed item counts one attempt and is not due again until ``lease`` has passed,
        so a worker that dies mid-push leaves it to be retried rather than lost. On PostgreSQL,
        rows another worker is claiming are skipped instead of waited for.

        :param instance: only items for this target instance.
        :param holder: who claims (the identity of the store locks the claimer holds), kept
            with the item until it is settled, so that :meth:`reclaim_outbox` can tell a claim
            whose holder died.
        """
        now = utcnow() if now is None else _aware(now, "now")
        box = t.outbox
        query = (
            sa.select(box.c.id)
            .where(box.c.status == OutboxStatus.PENDING.value, box.c.next_attempt_at <= now)
            .order_by(box.c.next_attempt_at, box.c.id)
            .limit(limit)
        )
        if instance is not None:
            query = query.where(box.c.target_instance == instance)
        if self._pg:
            query = query.with_for_update(skip_locked=True)
        ids = list(self._conn.execute(query).scalars())
        if not ids:
            return []
        self._conn.execute(
            box.update()
            .where(box.c.id.in_(ids))
            .values(
                attempts=box.c.attempts + 1,
                next_attempt_at=now + lease,
                claimed_by=holder,
                updated_at=now,
            )
        )
        rows = self._conn.execute(
            sa.select(box).where(box.c.id.in_(ids)).order_by(box.c.id)
        ).mappings()
        by_id = {int(row["id"]): _outbox_item(row) for row in rows}
        return [by_id[item_id] for item_id in ids]

    @_guarded
    def reclaim_outbox(self, *, instance: str, holder: str, now: datetime | None = None) -> int:
        """Make the items of ``instance`` that another holder claimed and never settled due
        at ``now``, instead of when their lease runs out; how many there were.

        Only for a caller that holds the push lock of ``instance`` (see
        :mod:`usm_bridge.sync.exclusion`) under the identity ``holder``: every claim is made
        under that lock, so a claim of another identity is one whose holder let go of the lock
        without settling it (it died, or its drain ended on a broken store) and that nobody is
        pushing now. Its attempt stays counted. Claims made without a holder wait out their
        lease as before.
        """
        now = utcnow() if now is None else _aware(now, "now")
        box = t.outbox
        result = self._conn.execute(
            box.update()
            .where(
                box.c.target_instance == instance,
                box.c.status == OutboxStatus.PENDING.value,
                box.c.claimed_by.is_not(None),
                box.c.claimed_by != holder,
            )
            .values(next_attempt_at=now, claimed_by=None, updated_at=now)
        )
        return int(result.rowcount or 0)

    @_guarded
    def get_outbox_item(self, item_id: int) -> OutboxItem | None:
        row = (
            self._conn.execute(sa.select(t.outbox).where(t.outbox.c.id == item_id))
            .mappings()
            .first()
        )
        return None if row is None else _outbox_item(row)

    @_guarded
    def list_outbox(
        self,
        *,
        status: OutboxStatus | str | None = None,
        instance: str | None = None,
        call_id: str | None = None,
        limit: int | None = None,
    ) -> list[OutboxItem]:
        """Outbox items in the order they were enqueued."""
        box = t.outbox
        query = sa.select(box).order_by(box.c.id)
        if status is not None:
            query = query.where(box.c.status == OutboxStatus(status).value)
        if instance is not None:
            query = query.where(box.c.target_instance == instance)
        if call_id is not None:
            query = query.where(box.c.call_id == call_id)
        if limit is not None:
            query = query.limit(limit)
        return [_outbox_item(row) for row in self._conn.execute(query).mappings()]

    @_guarded
    def count_outbox(
        self, *, status: OutboxStatus | str | None = OutboxStatus.PENDING
    ) -> dict[str, int]:
        """How many outbox items each target instance has; by default the pending ones.

        Counted by the database (``COUNT ... GROUP BY``), so ``usm-bridge status`` and the
        daemon's gauges cost one short query however long the history of done items grows.
        An instance without items is absent from the result.
        """
        box = t.outbox
        query = sa.select(box.c.target_instance, sa.func.count()).group_by(box.c.target_instance)
        if status is not None:
            query = query.where(box.c.status == OutboxStatus(status).value)
        return {str(name): int(count) for name, count in self._conn.execute(query)}

    def _require_item(self, item_id: int) -> OutboxItem:
        item = self.get_outbox_item(item_id)
        if item is None:
            raise StoreError(f"no outbox item {item_id}")
        return item

    def _set_item(self, item_id: int, **values: Any) -> OutboxItem:
        # Every change of an item settles it (done, failed, dead, requeued): no claim stands.
        self._conn.execute(
            t.outbox.update()
            .where(t.outbox.c.id == item_id)
            .values(**values, claimed_by=None, updated_at=utcnow())
        )
        return self._require_item(item_id)

    @_guarded
    def mark_outbox_done(self, item_id: int) -> OutboxItem:
        """The write was made. Marking a done item again is a no-op.

        :raises StoreError: no such item, or it is dead.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DONE:
            return item
        if item.status is OutboxStatus.DEAD:
            raise StoreError(f"outbox item {item_id} is dead; requeue it before marking it done")
        return self._set_item(item_id, status=OutboxStatus.DONE.value, last_error=None)

    @_guarded
    def mark_outbox_failed(self, item_id: int, error: str, *, retry_at: datetime) -> OutboxItem:
        """The write failed for now: keep the item pending, due again at ``retry_at``.

        :raises StoreError: no such item, or it is not pending.
        """
        item = self._require_item(item_id)
        if item.status is not OutboxStatus.PENDING:
            raise StoreError(f"outbox item {item_id} is {item.status}, not pending")
        return self._set_item(
            item_id, last_error=error, next_attempt_at=_aware(retry_at, "retry_at")
        )

    @_guarded
    def mark_outbox_dead(self, item_id: int, reason: str) -> DeadLetter:
        """Give up on the write: the item becomes dead and a ``push`` dead letter records it.

        The dead letter's payload holds the whole request (operation, call, key, payload), so
        it can be inspected and requeued. Marking a dead item again returns its dead letter.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DEAD:
            existing = self._conn.execute(
                sa.select(t.dead_letters.c.id)
                .where(t.dead_letters.c.outbox_id == item_id)
                .order_by(t.dead_letters.c.id.desc())
            ).scalar()
            if existing is not None:
                return self._require_dead_letter(int(existing))
        if item.status is OutboxStatus.DONE:
            raise StoreError(f"outbox item {item_id} is already done")
        self._set_item(item_id, status=OutboxStatus.DEAD.value, last_error=reason)
        return self.add_dead_letter(
            item.target_instance,
            DeadLetterStage.PUSH,
            {
                "outbox_id": item.id,
                "operation": item.operation.value,
                "call_id": item.call_id,
                "target_instance": item.target_instance,
                "idempotency_key": item.idempotency_key,
                "payload": item.payload,
            },
            reason,
            call_id=item.call_id,
            outbox_id=item.id,
            attempts=max(1, item.attempts),
            subject=f"outbox:{item.id}",
        )

    @_guarded
    def requeue_outbox(self, item_id: int, *, at: datetime | None = None) -> OutboxItem:
        """Make a dead (or pending) item due again, at ``at`` or now.

        :raises StoreError: no such item, or it is done.
        """
        item = self._require_item(item_id)
        if item.status is OutboxStatus.DONE:
            raise StoreError(f"outbox item {item_id} is done; there is nothing to retry")
        due = utcnow() if at is None else _aware(at, "at")
        return self._set_item(item_id, status=OutboxStatus.PENDING.value, next_attempt_at=due)

    # -- dead letters -----------------------------------------------------------------------

    @_guarded
    def add_dead_letter(
        self,
        instance: str,
        stage: DeadLetterStage | str,
        payload: JsonValue,
        reason: str,
        *,
        call_id: str | None = None,
        outbox_id: int | None = None,
        attempts: int = 1,
        subject: str | None = None,
    ) -> DeadLetter:
        """Keep a record (``map``, ``store``) or write (``push``) that could not go through.

        The letter as stored; see :meth:`record_dead_letter`, which also says whether it is new.
        """
        return self.record_dead_letter(
            instance,
            stage,
            payload,
            reason,
            call_id=call_id,
            outbox_id=outbox_id,
            attempts=attempts,
            subject=subject,
        ).letter

    @_guarded
    def record_dead_letter(
        self,
        instance: str,
        stage: DeadLetterStage | str,
        payload: JsonValue,
        reason: str,
        *,
        call_id: str | None = None,
        outbox_id: int | None = None,
        attempts: int = 1,
        subject: str | None = None,
    ) -> DeadLetterAdded:
        """Open a dead letter, or count one more failure on the open one of the same subject.

        ``payload`` is stored exactly as given (any JSON value) with the ``reason``. With a
        ``subject`` (the remote record's id; ``outbox:<id>`` for a write) there is at most one
        open letter per (instance, subject, stage): a repeat adds ``attempts`` to it and takes
        the new payload, reason and last-seen time, in one ``INSERT ... ON CONFLICT`` so two
        processes failing on the same record at once still leave one letter. Only a new letter
        is audited (``dead_letter_added``).
        """
        if attempts < 1:
            raise StoreError(f"a dead letter counts at least one attempt, not {attempts}")
        now = utcnow()
        dl = t.dead_letters
        insert = self._insert(dl).values(
            instance=instance,
            stage=DeadLetterStage(stage).value,
            payload=payload,
            reason=reason,
            attempts=attempts,
            status=DeadLetterStatus.OPEN.value,
            call_id=call_id,
            outbox_id=outbox_id,
            resolution=None,
            created_at=now,
            updated_at=now,
            resolved_at=None,
            subject=subject,
            last_seen=now,
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[dl.c.instance, dl.c.subject, dl.c.stage],
            index_where=t.DEAD_LETTER_OPEN_SUBJECT,
            set_={
                "attempts": dl.c.attempts + insert.excluded.attempts,
                "payload": insert.excluded.payload,
                "reason": insert.excluded.reason,
                "call_id": sa.func.coalesce(insert.excluded.call_id, dl.c.call_id),
                "outbox_id": sa.func.coalesce(insert.excluded.outbox_id, dl.c.outbox_id),
                "updated_at": insert.excluded.updated_at,
                "last_seen": insert.excluded.last_seen,
            },
        ).returning(dl.c.id, dl.c.attempts)
        letter_id, stored_attempts = self._conn.execute(upsert).one()
        # An update adds to attempts that are at least 1: only a fresh row holds exactly ours.
        new = int(stored_attempts) == attempts
        if new:
            self._audit(
                "dead_letter_added",
                call_id=call_id,
                instance=instance,
                detail={"dead_letter_id": int(letter_id), "stage": str(stage), "reason": reason},
                now=now,
            )
        return DeadLetterAdded(letter=self._require_dead_letter(int(letter_id)), new=new)

    @_guarded
    def get_dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = (
            self._conn.execute(sa.select(t.dead_letters).where(t.dead_letters.c.id == letter_id))
            .mappings()
            .first()
        )
        return None if row is None else _dead_letter(row)

    def _require_dead_letter(self, letter_id: int) -> DeadLetter:
        letter = self.get_dead_letter(letter_id)
        if letter is None:
            raise StoreError(f"no dead letter {letter_id}")
        return letter

    @_guarded
    def list_dead_letters(
        self,
        *,
        status: DeadLetterStatus | str | None = DeadLetterStatus.OPEN,
        instance: str | None = None,
        stage: DeadLetterStage | str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Dead letters, oldest first; by default only the open ones."""
        dl = t.dead_letters
        query = sa.select(dl).order_by(dl.c.id)
        if status is not None:
            query = query.where(dl.c.status == DeadLetterStatus(status).value)
        if instance is not None:
            query = query.where(dl.c.instance == instance)
        if stage is not None:
            query = query.where(dl.c.stage == DeadLetterStage(stage).value)
        if limit is not None:
            query = query.limit(limit)
        return [_dead_letter(row) for row in self._conn.execute(query).mappings()]

    @_guarded
    def dead_letters_about(
        self,
        *,
        call_ids: Collection[str],
        records: Collection[tuple[str, str]],
        outbox_ids: Collection[int],
    ) -> list[DeadLetter]:
        """Every letter (any status) of the calls, of the remote records ``(instance,
        remote_id)`` or of the outbox items, oldest first (``usm-bridge trace``)."""
        dl = t.dead_letters
        about: list[sa.ColumnElement[bool]] = []
        if call_ids:
            about.append(dl.c.call_id.in_(list(call_ids)))
        if outbox_ids:
            about.append(dl.c.outbox_id.in_(list(outbox_ids)))
        about += [
            sa.and_(dl.c.instance == instance, dl.c.subject == remote_id)
            for instance, remote_id in records
        ]
        if not about:
            return []
        query = sa.select(dl).where(sa.or_(*about)).order_by(dl.c.id)
        return [_dead_letter(row) for row in self._conn.execute(query).mappings()]

    @_guarded
    def count_dead_letters(
        self, *, status: DeadLetterStatus | str | None = DeadLetterStatus.OPEN
    ) -> dict[str, int]:
        """How many dead letters each instance has; by default the open ones.

        Counted by the database (``COUNT ... GROUP BY``) rather than by loading the letters,
        whose payloads can be large. An instance without letters is absent from the result.
        """
        dl = t.dead_letters
        query = sa.select(dl.c.instance, sa.func.count()).group_by(dl.c.instance)
        if status is not None:
            query = query.where(dl.c.status == DeadLetterStatus(status).value)
        return {str(name): int(count) for name, count in self._conn.execute(query)}

    @_guarded
    def increment_dead_letter_attempts(
        self, letter_id: int, *, reason: str | None = None
    ) -> DeadLetter:
        """Count one more (failed) retry, optionally with the new reason."""
        dl = t.dead_letters
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": dl.c.attempts + 1,
            "updated_at": now,
            "last_seen": now,
        }
        if reason is not None:
            values["reason"] = reason
        done = self._conn.execute(dl.update().where(dl.c.id == letter_id).values(**values))
        if done.rowcount != 1:
            raise StoreError(f"no dead letter {letter_id}")
        return self._require_dead_letter(letter_id)

    @_guarded
    def resolve_dead_letter(
        self, letter_id: int, *, resolution: str | None = None, actor: str = "bridge"
    ) -> DeadLetter:
        """Close the dead letter (retried successfully, or dismissed by a person).

        Resolving a resolved letter again changes nothing.
        """
        letter = self._require_dead_letter(letter_id)
        if letter.status is not DeadLetterStatus.OPEN:
            return letter  # resolved already, or dismissed by a person: that decision stands
        return self._close_dead_letter(
            letter,
            DeadLetterStatus.RESOLVED,
            resolution=resolution,
            actor=actor,
            detail={"dead_letter_id": letter_id, "resolution": resolution},
        )

    @_guarded
    def dismiss_dead_letter(self, letter_id: int, *, reason: str, actor: str) -> DeadLetter:
        """Give up on an open dead letter: it stops counting as open and is kept, dismissed.

        ``actor`` (who) and ``reason`` (why) go to the audit log (``dead_letter_dismissed``) and
        to the letter's resolution. A letter that is not open is refused with its status.
        """
        if not reason.strip():
            raise StoreError(f"dismissing dead letter {letter_id} needs a reason")
        if not actor.strip() or len(actor) > 100:
            raise StoreError(
                f"dismissing dead letter {letter_id} needs who dismisses it (1 to 100 characters)"
            )
        letter = self._require_dead_letter(letter_id)
        if letter.status is not DeadLetterStatus.OPEN:
            raise StoreError(f"dead letter {letter_id} is {letter.status.value}, not open")
        return self._close_dead_letter(
            letter,
            DeadLetterStatus.DISMISSED,
            resolution=f"dismissed by {actor}: {reason}",
            actor=actor,
            detail={
                "dead_letter_id": letter_id,
                "stage": letter.stage.value,
                "subject": letter.subject,
                "reason": reason,
            },
        )

    def _close_dead_letter(
        self,
        letter: DeadLetter,
        status: DeadLetterStatus,
        *,
        resolution: str | None,
        actor: str,
        detail: JsonValue,
    ) -> DeadLetter:
        """Set an open letter's final status, audited as ``dead_letter_<status>``."""
        now = utcnow()
        self._conn.execute(
            t.dead_letters.update()
            .where(t.dead_letters.c.id == letter.id)
            .values(status=status.value, resolution=resolution, resolved_at=now, updated_at=now)
        )
        self._audit(
            f"dead_letter_{status.value}",
            call_id=letter.call_id,
            instance=letter.instance,
            actor=actor,
            detail=detail,
            now=now,
        )
        return self._require_dead_letter(letter.id)

    # -- sync runs --------------------------------------------------------------------------

    @_guarded
    def record_run(
        self,
        instance: str,
        *,
        started: datetime,
        finished: datetime,
        counters: Mapping[str, int],
        error: str | None = None,
    ) -> InstanceState:
        """Record how a cycle of ``instance`` went; ``error`` ``None`` means it succeeded.

        A success resets the consecutive failures but keeps the last error and its time, so
        ``usm-bridge status`` can still say what went wrong last.
        """
        started = _aware(started, "started")
        finished = _aware(finished, "finished")
        states = t.instance_states
        query = sa.select(states).where(states.c.instance == instance)
        if self._pg:
            query = query.with_for_update()
        row = self._conn.execute(query).mappings().first()
        values: dict[str, Any] = {
            "last_started": started,
            "last_finished": finished,
            "last_counters": {str(k): int(v) for k, v in counters.items()},
        }
        if error is None:
            values["last_success"] = finished
            values["consecutive_failures"] = 0
        else:
            values["last_error"] = error
            values["last_error_at"] = finished
        if row is None:
            values.setdefault("last_success", None)
            values.setdefault("last_error", None)
            values.setdefault("last_error_at", None)
            values["consecutive_failures"] = 0 if error is None else 1
            values["runs"] = 1
            self._conn.execute(states.insert().values(instance=instance, **values))
        else:
            if error is not None:
                values["consecutive_failures"] = states.c.consecutive_failures + 1
            values["runs"] = states.c.runs + 1
            self._conn.execute(
                states.update().where(states.c.instance == instance).values(**values)
            )
        found = self.get_instance_state(instance)
        assert found is not None
        return found

    @_guarded
    def record_census(self, instance: str, *, at: datetime) -> InstanceState | None:
        """Record that a census of ``instance``'s remote ids ran at ``at``.

        The daemon schedules the next census from it, also after a restart. A census follows
        a recorded cycle, so the instance has a state row; when it has none (no cycle of it was
        ever recorded) nothing is written and ``None`` is returned: inventing a row would show
        ``usm-bridge status`` a cycle that never ran.
        """
        at = _aware(at, "at")
        states = t.instance_states
        done = self._conn.execute(
            states.update().where(states.c.instance == instance).values(last_census=at)
        )
        if done.rowcount != 1:
            return None
        return self.get_instance_state(instance)

    @_guarded
    def get_instance_state(self, instance: str) -> InstanceState | None:
        row = (
            self._conn.execute(
                sa.select(t.instance_states).where(t.instance_states.c.instance == instance)
            )
            .mappings()
            .first()
        )
        return None if row is None else InstanceState.model_validate(dict(row))

    @_guarded
    def list_instance_states(self) -> list[InstanceState]:
        """How the last cycle of every instance that ever ran went, by instance name."""
        states = t.instance_states
        rows = self._conn.execute(sa.select(states).order_by(states.c.instance)).mappings()
        return [InstanceState.model_validate(dict(row)) for row in rows]

    # -- comment links ----------------------------------------------------------------------

    @_guarded
    def link_comment(
        self,
        call_id: str,
        instance: str,
        comment_id: str,
        *,
        source_comment_id: str,
        remote_comment_id: str | None = None,
    ) -> CommentLink:
        """Record that ``comment_id`` on the call's record in ``instance`` copies a comment.

        Linking the same copy again returns the existing link (adding the remote id if given).

        :raises StoreError: that comment was already copied onto the call under another id.
        """
        links = t.comment_links
        existing = self.find_comment_copy(call_id, source_comment_id)
        if existing is not None:
            if (existing.instance, existing.comment_id) != (instance, comment_id):
                raise StoreError(
                    f"comment {source_comment_id!r} is already copied onto call {call_id!r} "
                    f"as {existing.comment_id!r}"
                )
            if remote_comment_id is not None and existing.remote_comment_id is None:
                return self.set_comment_remote_id(instance, comment_id, remote_comment_id)
            return existing
        now = utcnow()
        self._conn.execute(
            links.insert().values(
                call_id=call_id,
                instance=instance,
                comment_id=comment_id,
                source_comment_id=source_comment_id,
                remote_comment_id=remote_comment_id,
                created_at=now,
                updated_at=now,
            )
        )
        found = self.find_comment_copy(call_id, source_comment_id)
        assert found is not None
        return found

    @_guarded
    def set_comment_remote_id(
        self, instance: str, comment_id: str, remote_comment_id: str
    ) -> CommentLink:
        """Remember the tool's id of the copy once the tool accepted it.

        :raises StoreError: no such comment link.
        """
        links = t.comment_links
        done = self._conn.execute(
            links.update()
            .where(links.c.instance == instance, links.c.comment_id == comment_id)
            .values(remote_comment_id=remote_comment_id, updated_at=utcnow())
        )
        if done.rowcount != 1:
            raise StoreError(f"no comment link {comment_id!r} in {instance!r}")
        row = (
            self._conn.execute(
                sa.select(links).where(
                    links.c.instance == instance, links.c.comment_id == comment_id
                )
            )
            .mappings()
            .one()
        )
        return CommentLink.model_validate(dict(row))

    @_guarded
    def find_comment_copy(self, call_id: str, source_comment_id: str) -> CommentLink | None:
        """The copy of ``source_comment_id`` on ``call_id``, if the bridge made one."""
        links = t.comment_links.c
        return self._one_comment_link(
            links.call_id == call_id, links.source_comment_id == source_comment_id
        )

    @_guarded
    def find_comment_link(self, instance: str, remote_comment_id: str) -> CommentLink | None:
        """The link of a remote comment, if it is the bridge's copy of another comment."""
        links = t.comment_links.c
        return self._one_comment_link(
            links.instance == instance, links.remote_comment_id == remote_comment_id
        )

    @_guarded
    def comment_links_of(self, call_id: str, instance: str) -> list[CommentLink]:
        """Every copy the bridge made (or asked for) on the call's record in ``instance``."""
        links = t.comment_links
        rows = self._conn.execute(
            sa.select(links)
            .where(links.c.call_id == call_id, links.c.instance == instance)
            .order_by(links.c.id)
        )
        return [CommentLink.model_validate(dict(row)) for row in rows.mappings()]

    def _one_comment_link(self, *conditions: sa.ColumnElement[bool]) -> CommentLink | None:
        row = self._conn.execute(sa.select(t.comment_links).where(*conditions)).mappings().first()
        return None if row is None else CommentLink.model_validate(dict(row))

    # -- audit ------------------------------------------------------------------------------

    @_guarded
    def append_audit(
        self,
        kind: str,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        actor: str = "bridge",
        before: JsonValue = None,
        after: JsonValue = None,
        detail: JsonValue = None,
    ) -> AuditEvent:
        """Append an event to the audit log (which the database keeps append-only)."""
        event_id = self._audit(
            kind,
            call_id=call_id,
            instance=instance,
            actor=actor,
            before=before,
            after=after,
            detail=detail,
            now=utcnow(),
        )
        row = (
            self._conn.execute(sa.select(t.audit_log).where(t.audit_log.c.id == event_id))
            .mappings()
            .one()
        )
        return AuditEvent.model_validate(dict(row))

    @_guarded
    def list_audit(
        self,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events in the order they were appended; ``after_id`` pages through them."""
        log_ = t.audit_log
        query = sa.select(log_).order_by(log_.c.id)
        if call_id is not None:
            query = query.where(log_.c.call_id == call_id)
        if instance is not None:
            query = query.where(log_.c.instance == instance)
        if kind is not None:
            query = query.where(log_.c.kind == kind)
        if after_id is not None:
            query = query.where(log_.c.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        rows = self._conn.execute(query).mappings()
        return [AuditEvent.model_validate(dict(row)) for row in rows]

    def _audit(
        self,
        kind: str,
        *,
        call_id: str | None = None,
        instance: str | None = None,
        actor: str = "bridge",
        before: JsonValue = None,
        after: JsonValue = None,
        detail: JsonValue = None,
        now: datetime,
    ) -> int:
        result = self._conn.execute(
            self._sql.insert_audit,
            _audit_row(
                kind,
                call_id=call_id,
                instance=instance,
                actor=actor,
                before=before,
                after=after,
                detail=detail,
                now=now,
            ),
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _write_audits(self, rows: list[dict[str, Any]]) -> None:
        """Append the events, in order, in one statement; the list is emptied."""
        if rows:
            self._conn.execute(self._sql.insert_audit, rows[0] if len(rows) == 1 else list(rows))
            rows.clear()


def _audit_row(
    kind: str,
    *,
    call_id: str | None = None,
    instance: str | None = None,
    actor: str = "bridge",
    before: JsonValue = None,
    after: JsonValue = None,
    detail: JsonValue = None,
    now: datetime,
) -> dict[str, Any]:
    """The parameters of one audit_log row."""
    return {
        "at": now,
        "call_id": call_id,
        "instance": instance,
        "kind": kind,
        "actor": actor,
        "before": before,
        "after": after,
        "detail": detail,
    }


def _changed_call_row(
    call: Call, canonical: dict[str, Any], content_hash: str, version: int, now: datetime
) -> dict[str, Any]:
    """The columns of a call row that a change of its content sets."""
    return {
        "unit": call.unit,
        "call_type": call.call_type.value,
        "status": call.status.value,
        "canonical": canonical,
        "version": version,
        "content_hash": content_hash,
        "updated_at": now,
    }


def _new_call_row(
    call: Call, canonical: dict[str, Any], content_hash: str, now: datetime
) -> dict[str, Any]:
    """Every column of a new call's row."""
    row = _changed_call_row(call, canonical, content_hash, 1, now)
    return {"id": call.id, **row, "created_at": now, "vanished_at": None}


def _call_created(
    call: Call, content: dict[str, Any], content_hash: str, *, instance: str | None, actor: str,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The audit row of a new call."""
    return _audit_row(
        "call_created",
        call_id=call.id,
        instance=instance,
        actor=actor,
        after=content,
        detail={"version": 1, "content_hash": content_hash, "process": _process(call)},
        now=now,
    )


def _call_updated(
    call: Call, row: Mapping[Any, Any], content: dict[str, Any], content_hash: str, *,
    instance: str | None, actor: str, now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The audit row of a change of content: the fields that changed since ``row`` (the call's
    row as it was), as they were and as they are."""
    before, after = _diff(_content(row["canonical"]), content)
    old_version = int(row["version"])
    return _audit_row(
        "call_updated",
        call_id=call.id,
        instance=instance,
        actor=actor,
        before=before,
        after=after,
        detail={
            "version": old_version + 1,
            "old_version": old_version,
            "content_hash": content_hash,
            "old_hash": row["content_hash"],
            "process": _process(call),
        },
        now=now,
    )


def _process(call: Call) -> str | None:
    """The call's process for its audit events: a report by process reads it from the event,
    whatever the call's type became later."""
    return call.process.value if call.process is not None else None


def _identity_linked(values: Mapping[str, Any], *, actor: str, now: datetime) -> dict[str, Any]:
    return _audit_row(
        "identity_linked",
        call_id=values["call_id"],
        instance=values["instance"],
        actor=actor,
        detail={
            "remote_id": values["remote_id"],
            "remote_key": values["remote_key"],
            "url": values["url"],
        },
        now=now,
    )


# --- rows to records -------------------------------------------------------------------------


def _content(canonical: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in canonical.items() if key not in _BOOKKEEPING_KEYS}


def _diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level fields that changed, as they were and as they are."""
    keys = [
        key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)
    ]
    return (
        {key: before.get(key) for key in keys},
        {key: after.get(key) for key in keys},
    )


def _stored_call(row: RowMapping) -> StoredCall:
    try:
        call = Call.model_validate(row["canonical"])
    except ValidationError as exc:
        raise StoreError(
            f"stored call {row['id']!r} no longer validates against the model: "
            f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
        ) from exc
    return StoredCall(
        call=call,
        version=row["version"],
        content_hash=row["content_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        vanished_at=row["vanished_at"],
    )


def _chain_link(row: RowMapping) -> ChainLink:
    return ChainLink(
        upstream_call_id=row["upstream_call_id"],
        supplier_call_id=row["supplier_call_id"],
        route=row["route"],
        created_at=row["created_at"],
    )


def _outbox_item(row: RowMapping) -> OutboxItem:
    return OutboxItem.model_validate(dict(row))


def _dead_letter(row: RowMapping) -> DeadLetter:
    return DeadLetter.model_validate(dict(row))
