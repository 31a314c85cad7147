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

This module holds the store and puts a unit of work together from one mixin per concern (see
:mod:`.unit_of_work`); URLs and engines are in :mod:`.connect`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.errors import StoreError
from usm_bridge.model import Call
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import AuditLog
from usm_bridge.store.call_identity_rows import CallIdentityRows
from usm_bridge.store.call_rows import fingerprint_hash
from usm_bridge.store.chain_link_rows import ChainLinkRows
from usm_bridge.store.comment_links import CommentLinks
from usm_bridge.store.conflicts import CONFLICT_STATES, StoreConflictError
from usm_bridge.store.connect import (
    _WRITE_OPTION,
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    _create_engine,
    _driver_message,
    _not_made_yet,
    _parse_url,
    safe_url,
)
from usm_bridge.store.cursors_and_runs import CursorsAndRuns
from usm_bridge.store.dead_letter_rows import DeadLetterRows
from usm_bridge.store.file_retry_rows import FileRetryRows
from usm_bridge.store.locks import StoreLocks, open_locks
from usm_bridge.store.outbox_rows import OutboxRows
from usm_bridge.store.planner_statistics import StatisticsKeeper
from usm_bridge.store.queue_send_rows import QueueSendRows
from usm_bridge.store.schema_head import at_head_status, head_revision
from usm_bridge.store.upgrades import (
    Migration,
    SchemaPolicy,
    SchemaState,
    SchemaStatus,
    schema_status,
)

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where a store is not at the code's head (``_migrate``, ``_alembic_*``):
# importing it costs about 0.4 s, and opening a current store does without it (.schema_head).

__all__ = ["Store", "StoreConflictError", "Transaction", "content_hash", "safe_url"]

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
#: Serialises migrations of one PostgreSQL database across processes (any constant will do).
_MIGRATION_LOCK_KEY = 0x75736D62  # "usmb"
_MIN_SCRUBBED = 4


def content_hash(call: Call) -> str:
    """The sha256 (hex) of the call's content: ``Call.content_fingerprint()`` as JSON.

    The JSON is canonical (keys sorted, no spaces, non-ASCII escaped), so the same content gives
    the same hash in every process and on every back end.
    """
    return fingerprint_hash(call.content_fingerprint())


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
        #: When to analyze the tables a backfill fills (PostgreSQL), after a commit.
        self._statistics = StatisticsKeeper()

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
        if getattr(orig, "sqlstate", None) in CONFLICT_STATES:
            return StoreConflictError(message)
        return StoreError(message)

    # -- schema

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        config = Config()
        # ConfigParser interpolation would eat a '%' in the install path.
        config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
        return config

    def _alembic_status(self, conn: Connection) -> SchemaStatus:
        """Where the store's schema stands, as Alembic reads it (the migrations pending too)."""
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self._alembic_config())
        return schema_status(script, _current_revision(conn))

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
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two processes opening a fresh database at once would both create tables;
                    # the revision is read under the lock so the second sees the first's work.
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                if at_head_status(conn) is not None:
                    return ()  # the usual open: settled without Alembic
                applied = self._migrate(conn, upgrade=upgrade)
        except SQLAlchemyError as exc:
            raise self._error("cannot open the store", exc) from exc
        for migration in applied:
            log.info(
                "store %s: applied migration %s %s",
                self.display_url,
                migration.revision,
                migration.description,
            )
        return applied

    def _migrate(self, conn: Connection, *, upgrade: bool) -> tuple[Migration, ...]:
        """Alembic's part of :meth:`_prepare_schema`: refuse, create or upgrade on ``conn``."""
        from alembic import command
        from alembic.util import CommandError

        try:
            status = self._alembic_status(conn)
            refusal = status.refusal(self.display_url)
            if refusal is not None and not (upgrade and status.state is SchemaState.OLDER):
                raise refusal
            if not status.pending:
                return ()
            config = self._alembic_config()
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            finally:
                config.attributes.pop("connection", None)
        except CommandError as exc:
            raise StoreError(f"cannot migrate the store at {self.display_url}: {exc}") from exc
        return status.pending

    def schema_status(self) -> SchemaStatus:
        """Where the store's schema stands against the code's; reads, changes nothing."""
        self._check_open()
        try:
            with self._engine.connect().execution_options(**{_WRITE_OPTION: False}) as conn:
                return at_head_status(conn) or self._alembic_status(conn)
        except SQLAlchemyError as exc:
            raise self._error("cannot read the schema revision", exc) from exc

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before any migration)."""
        return self.schema_status().current

    def head_revision(self) -> str | None:
        """The newest revision this version of usm-bridge knows."""
        head = head_revision()
        if head is not None:
            return head
        from alembic.script import ScriptDirectory

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
        if not readonly:
            self._statistics.analyze_if_due(self._engine)


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": t.VERSION_TABLE})
    return context.get_current_revision()


# --- the unit of work ------------------------------------------------------------------------


class Transaction(
    CallIdentityRows,
    ChainLinkRows,
    OutboxRows,
    DeadLetterRows,
    AuditLog,
    CursorsAndRuns,
    CommentLinks,
    QueueSendRows,
    FileRetryRows,
):
    """The methods of one unit of work. Get one from :meth:`Store.begin`, never build it.

    Each table's methods come from one mixin per concern (:mod:`.unit_of_work` says which);
    this class only sets the state they share.
    """

    def __init__(self, conn: Connection, store: Store) -> None:
        self._conn = conn
        self._store = store
        self._ended = False
        self._pg = conn.dialect.name == "postgresql"

    def _end(self) -> None:
        self._ended = True

    @property
    def connection(self) -> Connection:
        """The connection of this unit of work, for queries the API does not offer."""
        return self._conn

    def note_calls_inserted(self, count: int) -> None:
        """``count`` new calls were inserted in a batch (:mod:`.page_transaction`); the store
        counts them to know when its planner statistics are due (:mod:`.planner_statistics`)."""
        self._store._statistics.note_inserted(count)

    def store_error(self, doing: str, exc: BaseException) -> StoreError:
        """The error to raise when ``doing`` failed in this unit of work (a conflict with
        another one is a :class:`StoreConflictError`), with the driver's reason and no
        password in it."""
        return self._store._error(doing, exc)
