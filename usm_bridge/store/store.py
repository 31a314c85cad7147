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

This module holds the store and the calls, identities and chain links of a unit of work; URLs
and engines are in :mod:`.connect`, the other tables in a module each (see :mod:`.unit_of_work`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from usm_bridge.errors import StoreError
from usm_bridge.model import Call, utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import AuditLog
from usm_bridge.store.audit_log import audit_row as _audit_row
from usm_bridge.store.call_rows import (
    call_created,
    call_updated,
    changed_call_row,
    encode_call,
    fingerprint_hash,
    identity_linked,
    new_call_row,
)
from usm_bridge.store.chain_query import lock_page_chains
from usm_bridge.store.comment_links import CommentLinks
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
from usm_bridge.store.locks import StoreLocks, open_locks
from usm_bridge.store.outbox_rows import OutboxRows
from usm_bridge.store.planner_statistics import StatisticsKeeper
from usm_bridge.store.queue_send_rows import QueueSendRows
from usm_bridge.store.records import (
    ChainLink,
    Identity,
    StoredCall,
    UpsertResult,
)
from usm_bridge.store.schema_head import at_head_status, head_revision
from usm_bridge.store.unit_of_work import guarded as _guarded
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
#: SQLSTATEs of a unit of work the database gave up on because of another one running at the
#: same time: serialization_failure, deadlock_detected (PostgreSQL).
_CONFLICT_STATES = frozenset({"40001", "40P01"})


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
        if getattr(orig, "sqlstate", None) in _CONFLICT_STATES:
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


class Transaction(
    OutboxRows, DeadLetterRows, AuditLog, CursorsAndRuns, CommentLinks, QueueSendRows
):
    """The methods of one unit of work. Get one from :meth:`Store.begin`, never build it.

    The calls, identities and chain links are here; the other tables' methods come from one
    mixin per concern (:mod:`.unit_of_work` says which).
    """

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
        encoded = encode_call(call)
        new_hash = encoded.content_hash
        now = utcnow()
        # Written together at the end (and before any error this method raises), in order.
        audits: list[dict[str, Any]] = []
        if row is None:
            values = new_call_row(call, encoded, now)
            if new:
                if self._conn.execute(self._sql.insert_call_if_new, values).first() is None:
                    # The id is taken after all: store over that call, as upsert_call would.
                    return self.upsert_call(call, instance=instance, actor=actor)
            else:
                self._conn.execute(self._sql.insert_call, values)
            audits.append(call_created(call, encoded, instance=instance, actor=actor, now=now))
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
                values = changed_call_row(call, encoded, new_version, now)
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
                    call_updated(call, row, encoded, instance=instance, actor=actor, now=now)
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
        return lock_page_chains(self._conn, instance, [remote_id])

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
                audits.append(identity_linked(values, actor=actor, now=now))
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
            audits.append(identity_linked(values, actor=actor, now=now))
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


# --- rows to records -------------------------------------------------------------------------


def _stored_call(row: RowMapping) -> StoredCall:
    try:
        call = Call.model_validate(row["canonical"])
    except ValidationError as exc:
        raise StoreError(
            f"stored call {row['id']!r} no longer validates against the model: "
            f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
        ) from exc
    return StoredCall.from_row(call, row)


def _chain_link(row: RowMapping) -> ChainLink:
    return ChainLink(
        upstream_call_id=row["upstream_call_id"],
        supplier_call_id=row["supplier_call_id"],
        route=row["route"],
        created_at=row["created_at"],
    )
