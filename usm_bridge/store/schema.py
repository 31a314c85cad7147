"""The store's tables as SQLAlchemy Core objects, used to build queries.

The migrations in ``migrations/versions`` create these tables; they spell the columns out again
on purpose, because a migration must keep describing the schema *as it was* when later
revisions change this module. ``tests/store`` compares the two so they cannot drift apart.

Names are plain (``calls``, ``outbox`` ...); constraint names follow one naming convention so
later migrations can refer to them on both back ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from usm_bridge.store.call_facts import FACT_COLUMNS

__all__ = [
    "AUDIT_APPEND_ONLY_MESSAGE",
    "CALL_ROW",
    "CLOSURE_DUE",
    "DEAD_LETTER_OPEN_SUBJECT",
    "NAMING_CONVENTION",
    "OPEN_FORKS",
    "OUTBOX_PENDING",
    "VERSION_TABLE",
    "UTCDateTime",
    "audit_log",
    "calls",
    "chain_links",
    "comment_links",
    "conformance_scores",
    "cursors",
    "dead_letters",
    "file_retries",
    "identities",
    "instance_states",
    "metadata",
    "outbox",
    "queue_sends",
    "remote_states",
]

#: Alembic's bookkeeping table, named so that a PostgreSQL database shared with another
#: Alembic-managed application does not mix the two histories.
VERSION_TABLE = "usm_bridge_schema_version"

#: What the database says when something tries to change or remove an audit event.
AUDIT_APPEND_ONLY_MESSAGE = "audit_log is append-only"

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always time-zone aware UTC in Python, whatever the back end.

    SQLite has no time-zone type and hands back naive values; PostgreSQL hands back the
    session's zone. Both are normalised here so callers can compare timestamps safely.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store only accepts time-zone aware timestamps")
        value = value.astimezone(UTC)
        # SQLite stores the text of the value: one fixed zone keeps text order = time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSON columns that may be absent hold SQL NULL, not the JSON text "null".
_OptionalJSON = sa.JSON(none_as_null=True)

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: The condition of ``ix_calls_open_forks`` (revision 0011); a query uses that index when it
#: repeats this text.
OPEN_FORKS = sa.text("open_forks")

#: Revision 0010: the outbox items still to push, a few among the many done; the partial index
#: ``ix_outbox_pending`` holds them (a query uses it when it says ``status = 'pending'`` as
#: this text does, not through a bound parameter).
OUTBOX_PENDING = sa.text("status = 'pending'")

#: Revision 0010: the calls the closure pass may have to act on (``sync.closure``), by what the
#: call's own row says: a supplier call delivered or closed whose confirmation is not recorded
#: yet, or a chained call confirmed. Per back end, as each reads the JSON document; the partial
#: index ``ix_calls_closure_due`` holds exactly these rows, and a query uses it only when its
#: WHERE clause repeats the text (``store.scale_queries``).
CLOSURE_DUE: dict[str, str] = {
    "sqlite": "(status IN ('fulfilled', 'closed')"
    " AND json_extract(canonical, '$.chain.upstream') IS NOT NULL"
    " AND json_extract(canonical, '$.confirmation') IS NULL)"
    " OR (status = 'confirmed'"
    " AND (json_extract(canonical, '$.chain.upstream') IS NOT NULL"
    " OR json_array_length(canonical, '$.chain.suppliers') > 0))",
    "postgresql": "(status IN ('fulfilled', 'closed')"
    " AND (canonical -> 'chain' ->> 'upstream') IS NOT NULL"
    " AND (canonical ->> 'confirmation') IS NULL)"
    " OR (status = 'confirmed'"
    " AND ((canonical -> 'chain' ->> 'upstream') IS NOT NULL"
    " OR json_array_length(canonical -> 'chain' -> 'suppliers') > 0))",
}

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("unit", sa.String(63), nullable=False),
    sa.Column("call_type", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("canonical", sa.JSON(), nullable=False),
    # Revision 0015: the document without texts, people and attributes, as text: what a
    # conformance report reads of the call (see call_facts.py); NULL only for a row whose
    # document was not JSON when the revision derived them.
    sa.Column("facts", sa.Text(), nullable=True),
    # Revision 0016: the members the data checks read, as columns (call_facts.fact_columns):
    # NULL where the call has none, and on a row without facts. The tool's times are the
    # document's text (ISO 8601 with the tool's offset), as evidence repeats them.
    sa.Column("priority", sa.String(100), nullable=True),
    sa.Column("impact", sa.String(16), nullable=True),
    sa.Column("urgency", sa.String(16), nullable=True),
    sa.Column("service", sa.String(300), nullable=True),
    sa.Column("agreement", sa.String(300), nullable=True),
    sa.Column("customer_unit", sa.String(63), nullable=True),
    sa.Column("waiting_on", sa.String(32), nullable=True),
    sa.Column("waiting_process", sa.String(32), nullable=True),
    sa.Column("title", sa.String(200), nullable=True),
    sa.Column("source_instance", sa.String(63), nullable=True),
    sa.Column("source_remote_id", sa.String(300), nullable=True),
    sa.Column("source_remote_key", sa.String(300), nullable=True),
    sa.Column("source_url", sa.Text(), nullable=True),
    sa.Column("tool_created", sa.String(40), nullable=True),
    sa.Column("tool_updated", sa.String(40), nullable=True),
    sa.Column("tool_fulfilled", sa.String(40), nullable=True),
    sa.Column("tool_confirmed", sa.String(40), nullable=True),
    sa.Column("tool_closed", sa.String(40), nullable=True),
    sa.Column("upstream", sa.Text(), nullable=True),
    sa.Column("confirmation_kind", sa.String(32), nullable=True),
    sa.Column("confirmation_at", sa.String(40), nullable=True),
    sa.Column("confirmation_how", sa.String(300), nullable=True),
    sa.Column("forks", sa.Text(), nullable=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("vanished_at", UTCDateTime(), nullable=True),
    # Revision 0011: the call holds a fork to another process not resolved to a call yet (the
    # fork backfill after each page reads these calls only, through ix_calls_open_forks).
    sa.Column("open_forks", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.CheckConstraint("version >= 1", name="version_positive"),
    sa.Index(None, "unit", "status"),
    # Revision 0012 dropped the indexes of call_type and updated_at: no query reads them.
    # Revision 0010: the closure pass's candidates, oldest first, without reading the others.
    sa.Index(
        "ix_calls_closure_due",
        "created_at",
        "id",
        sqlite_where=sa.text(CLOSURE_DUE["sqlite"]),
        postgresql_where=sa.text(CLOSURE_DUE["postgresql"]),
    ),
    sa.Index("ix_calls_open_forks", "id", sqlite_where=OPEN_FORKS, postgresql_where=OPEN_FORKS),
    # Revision 0013: every call oldest first, as a conformance report reads them, unsorted.
    sa.Index("ix_calls_created_at_id", "created_at", "id"),
    # Revision 0017, SQLite only (SQLITE_ONLY): the conformance pass's columns in its order, so
    # that the pass reads this index, not the rows with their documents; and the rows whose
    # facts are missing, which the pass reads through the model.
    sa.Index(
        "ix_calls_pass_rows", "created_at", "id", "unit", "call_type", "status", *FACT_COLUMNS
    ).ddl_if(dialect="sqlite"),
    sa.Index("ix_calls_without_facts", "id", sqlite_where=sa.text("facts IS NULL")).ddl_if(
        dialect="sqlite"
    ),
)

#: The indexes only a SQLite store has (revision 0017): PostgreSQL keeps a row's documents out
#: of line and reads its narrow rows whole, and its B-tree refuses an entry over a third of a
#: page, which the pass's unbounded columns (a fork list, a URL) could exceed.
SQLITE_ONLY: frozenset[str] = frozenset({"ix_calls_pass_rows", "ix_calls_without_facts"})


def in_dialect(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic's ``include_object`` for a store on ``dialect``: every object of the tables but
    the indexes of another back end (:data:`SQLITE_ONLY`), which Alembic would otherwise
    compare on every back end (it does not read ``ddl_if``)."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "index" and name in SQLITE_ONLY and dialect != "sqlite")

    return include


#: The columns of ``calls`` the store's own reads take: all but revision 0016's fact columns,
#: which only a conformance report reads (a backfill reads a row per record: 23 columns more
#: each, for nothing).
CALL_ROW: tuple[sa.Column[Any], ...] = tuple(
    column for column in calls.c if column.name not in FACT_COLUMNS
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("instance", sa.String(63), nullable=False),
    sa.Column("remote_id", sa.String(300), nullable=False),
    sa.Column("remote_key", sa.String(300), nullable=True),
    sa.Column("url", sa.Text(), nullable=True),
    sa.Column("correlation", sa.String(200), nullable=True),
    sa.Column("pushed_hash", sa.String(64), nullable=True),
    sa.Column("pushed_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("instance", "remote_id"),
    sa.UniqueConstraint("call_id", "instance"),
    sa.UniqueConstraint("instance", "correlation"),
    # Revision 0012: the identities a page's forks name, by key or id in any instance (it
    # replaced the index of (instance, remote_key), which the key's index serves too).
    sa.Index(None, "remote_key"),
    sa.Index(None, "remote_id"),
)

chain_links = sa.Table(
    "chain_links",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("upstream_call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("supplier_call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("route", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # A supplier call is raised on behalf of exactly one upstream call (ChainLinks.upstream).
    sa.UniqueConstraint("supplier_call_id"),
    sa.CheckConstraint("upstream_call_id <> supplier_call_id", name="not_self"),
    sa.Index(None, "upstream_call_id"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("instance", sa.String(63), primary_key=True),
    sa.Column("cursor", sa.Text(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("target_instance", sa.String(63), nullable=False),
    sa.Column("call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # Revision 0008: who claimed the item and has not settled it yet (StoreLocks.identity).
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.UniqueConstraint("idempotency_key"),
    sa.CheckConstraint("operation IN ('create', 'update', 'comment')", name="operation"),
    sa.CheckConstraint("status IN ('pending', 'done', 'dead')", name="status"),
    sa.CheckConstraint("attempts >= 0", name="attempts"),
    # The drain query: due items per target, oldest first.
    sa.Index(None, "status", "target_instance", "next_attempt_at"),
    sa.Index(None, "call_id"),
    # Revision 0010: the pending items of a target in the order they were enqueued.
    sa.Index(
        "ix_outbox_pending",
        "target_instance",
        "id",
        sqlite_where=OUTBOX_PENDING,
        postgresql_where=OUTBOX_PENDING,
    ),
)

#: The rows the unique subject index of ``dead_letters`` covers (and ON CONFLICT must name).
DEAD_LETTER_OPEN_SUBJECT = sa.text("status = 'open' AND subject IS NOT NULL")

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("instance", sa.String(63), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=True),
    sa.Column("outbox_id", _Id, sa.ForeignKey("outbox.id"), nullable=True),
    sa.Column("resolution", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    # Revision 0005: what failed (the remote record's id for map/store, ``outbox:<id>`` for
    # push; NULL: unknown, never merged) and when it last failed (``created_at``: first time).
    sa.Column("subject", sa.String(300), nullable=True),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.CheckConstraint("stage IN ('map', 'store', 'push')", name="stage"),
    # Revision 0006: 'dismissed' (by a person, with a reason; kept, no longer open).
    sa.CheckConstraint("status IN ('open', 'resolved', 'dismissed')", name="status"),
    sa.CheckConstraint("attempts >= 1", name="attempts"),
    sa.Index(None, "status", "instance"),
    # One open letter per (instance, subject, stage): a repeat failure updates it (ON CONFLICT).
    sa.Index(
        "uq_dead_letters_open_subject",
        "instance",
        "subject",
        "stage",
        unique=True,
        sqlite_where=DEAD_LETTER_OPEN_SUBJECT,
        postgresql_where=DEAD_LETTER_OPEN_SUBJECT,
    ),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=True),
    sa.Column("instance", sa.String(63), nullable=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("before", _OptionalJSON, nullable=True),
    sa.Column("after", _OptionalJSON, nullable=True),
    sa.Column("detail", _OptionalJSON, nullable=True),
    sa.Index(None, "call_id", "id"),
    # Revision 0012 dropped the index of ``at``: no query reads it.
)

# --- revision 0002 ---------------------------------------------------------------------------

instance_states = sa.Table(
    "instance_states",
    metadata,
    # One row per connector instance: what `usm-bridge status` shows. The daemon keeps the
    # history in its logs and metrics; the store keeps only what a restart needs to know.
    sa.Column("instance", sa.String(63), primary_key=True),
    sa.Column("last_started", UTCDateTime(), nullable=False),
    sa.Column("last_finished", UTCDateTime(), nullable=False),
    sa.Column("last_success", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_error_at", UTCDateTime(), nullable=True),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False),
    sa.Column("runs", sa.Integer(), nullable=False),
    sa.Column("last_counters", sa.JSON(), nullable=False),
    # Revision 0004: when the instance's census last ran (NULL: never), so that the census
    # schedule survives a restart of the daemon.
    sa.Column("last_census", UTCDateTime(), nullable=True),
    sa.CheckConstraint("consecutive_failures >= 0", name="failures"),
)

comment_links = sa.Table(
    "comment_links",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    # The call whose remote record holds the bridge's copy, and that record's instance.
    sa.Column("call_id", sa.String(100), sa.ForeignKey("calls.id"), nullable=False),
    sa.Column("instance", sa.String(63), nullable=False),
    # The bridge's id for the copy (sent as CommentDraft.correlation) and the original's id.
    sa.Column("comment_id", sa.String(100), nullable=False),
    sa.Column("source_comment_id", sa.String(100), nullable=False),
    # Known once the tool accepted the comment.
    sa.Column("remote_comment_id", sa.String(300), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # A comment is copied onto a call once; a remote comment is the copy of one comment.
    sa.UniqueConstraint("call_id", "source_comment_id"),
    sa.UniqueConstraint("instance", "comment_id"),
    sa.UniqueConstraint("instance", "remote_comment_id"),
)

# --- revision 0003 ---------------------------------------------------------------------------

remote_states = sa.Table(
    "remote_states",
    metadata,
    # What the tool is known to hold for one remote record, as an outbound draft: what it held
    # when last read, updated with each write the bridge made since (the base of the merge).
    sa.Column("instance", sa.String(63), primary_key=True),
    sa.Column("remote_id", sa.String(300), primary_key=True),
    sa.Column("draft", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# --- revision 0007 ---------------------------------------------------------------------------

conformance_scores = sa.Table(
    "conformance_scores",
    metadata,
    # The scores of one recorded conformance report (``report conformance --record``): per
    # period and config, the enterprise (unit "") and each unit, overall (check_id "") and per
    # check. Empty strings rather than NULL, so that the unique key covers every row.
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("period_since", UTCDateTime(), nullable=False),
    sa.Column("period_until", UTCDateTime(), nullable=False),
    sa.Column("period_label", sa.String(100), nullable=False),
    sa.Column("config_digest", sa.String(64), nullable=False),
    sa.Column("unit", sa.String(63), nullable=False),
    sa.Column("check_id", sa.String(200), nullable=False),
    sa.Column("score", sa.Float(), nullable=True),
    sa.Column("verdict", sa.String(8), nullable=False),
    sa.Column("exceptions", sa.Integer(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    # Recording a period again with the same config replaces its rows instead of adding some.
    sa.UniqueConstraint(
        "period_since",
        "period_until",
        "config_digest",
        "unit",
        "check_id",
        name="uq_conformance_scores_period_scope",  # the convention's name is over 63 letters
    ),
    sa.CheckConstraint("exceptions >= 0", name="exceptions"),
    sa.Index(None, "period_until"),
)

# --- revision 0014 ---------------------------------------------------------------------------

queue_sends = sa.Table(
    "queue_sends",
    metadata,
    # One row per task sent to a RabbitMQ queue of the Celery workers, for ``usm-bridge
    # status``'s age of the oldest waiting task (usm_bridge.workers.send_log): RabbitMQ tells
    # a queue's length but shows no message without taking it. Rows whose task has expired
    # are deleted by the next send to the same queue.
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "queue", "sent_at"),
)

# --- revision 0018 ---------------------------------------------------------------------------

file_retries = sa.Table(
    "file_retries",
    metadata,
    # One row per file a tool would not let the bridge read for now (401, 403, a URL refused):
    # when it is tried again without a change of its record, and how often it was tried
    # (usm_bridge.sync.file_retry). The row goes when the file is read.
    sa.Column("instance", sa.String(200), primary_key=True),
    sa.Column("file_id", sa.String(500), primary_key=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_try_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("attempts >= 1", name="attempts"),
    sa.Index(None, "instance", "next_try_at"),
)
