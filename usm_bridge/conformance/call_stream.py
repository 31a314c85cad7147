"""Reading a report's calls a page at a time, with what the checks ask about each page.

A report over a million calls cannot hold them all: the calls are read with one streamed query
(a server-side cursor on PostgreSQL; SQLite's own cursor reads row by row), oldest first as
``Transaction.list_calls`` orders them, and cut into pages. Beside it, three streamed queries
read what the checks ask about those calls, in the same order (:class:`_RelatedStreams`): their
change events, identities and chain links; each page takes the rows of its own calls, and one
keyed query reads the other calls they name (a supplier call's upstream, a fork's target). The
pass runs in one read-only transaction (``REPEATABLE READ`` on PostgreSQL), so every page sees the
same snapshot even while the daemon keeps syncing.

The pass reads each call from its row's fact columns (revision 0016) through a plain DB-API
cursor, as a :class:`~.call_rows.CallRow` (no model object per call); a row that reader
doubts, and every call when :data:`BY_MODEL_ENV` is set (the reference the tests compare
with), is read as its facts (:mod:`usm_bridge.store.call_facts`) through the model: the call
without its texts, people, comments and attributes, which no built-in check or view reads.
The related streams are read alike: plain cursors, each row a light object of
:mod:`.related_rows` (a row it doubts, and every row when :data:`BY_MODEL_ENV` is set, read
through SQLAlchemy and validated as its record). On SQLite the calls' columns are read from
an index that holds them (revision 0017, :class:`_PassPlan`), and the identities and chain
links looked up call by call in that order (:func:`_calls_first`, :func:`_read_in_file_order`).
A check that asks for a unit's list (:meth:`CallSource.unit_page`) or for one call
(:meth:`CallSource.call`) gets whole calls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine

from ..call_view import CallView, StoredCallView
from ..model import Call, Status
from ..store import AuditEvent, ChainLink, Identity, StoredCall
from ..store import schema as tables
from ..store.connect import _WRITE_OPTION
from .call_rows import ROW_COLUMNS, call_row
from .related_rows import (
    EVENT_COLUMNS,
    IDENTITY_COLUMNS,
    LINK_COLUMNS,
    EventView,
    IdentityView,
    LinkView,
    event_row,
    identity_row,
    link_row,
)
from .stored_rows import (
    UnreadableCall,
    read_stored_calls,
    stored_calls_query,
    stored_facts_query,
)

__all__ = ["BY_MODEL_ENV", "CallPage", "CallSource", "LinkedBy", "Transition", "transition_of"]

#: Calls per page: the keyed queries of a page name this many ids (well under SQLite's limit).
PAGE_SIZE = 2000
#: Set (to anything but ``""``) to read the pass's calls through the model, as before the
#: rows (:mod:`.call_rows`): the reference the tests and the bench compare the rows with.
BY_MODEL_ENV = "USM_BRIDGE_REPORT_BY_MODEL"


#: PostgreSQL settings of the report's snapshot, whose cursors are read to their end, set with
#: ``SET LOCAL`` so they end with its transaction (never the server's configuration). A cursor
#: is planned for its first tenth by default (``cursor_tuple_fraction``): for the calls an
#: index walk fetching each row from the table in the index's order, for the related tables
#: nested loops over that walk. Read whole at 1,000,000 calls (bench/README.md), those took
#: 17-65 s (calls), 46 s (identities) and 10 s (chain links) against 9, 8 and 2 s for a scan
#: and a sort each. ``work_mem`` (what each sort may hold, for this transaction only) lets the
#: calls' sort (some 640 bytes a row) run in memory at 100,000 calls and choose the sort over
#: the index walk at a million.
_WHOLE_READS = ("SET LOCAL cursor_tuple_fraction = 1.0", "SET LOCAL work_mem = '64MB'")


@dataclass(frozen=True)
class Transition:
    """A status change of a call seen in the audit log."""

    call_id: str
    event_id: int
    at: datetime
    before: Status
    after: Status


def transition_of(event: EventView) -> Transition | None:
    """The status change an audit event records, if it records one."""
    if event.kind != "call_updated" or event.call_id is None:
        return None
    before, after = event.before, event.after
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return None
    old, new = before.get("status"), after.get("status")
    if not (isinstance(old, str) and isinstance(new, str)) or old == new:
        return None
    try:
        return Transition(event.call_id, event.id, event.at, Status(old), Status(new))
    except ValueError:
        return None


@dataclass(frozen=True)
class LinkedBy:
    """A supplier call's chain link, with its place among all links (the order they were
    recorded in, which orders the routes the data alone names)."""

    order: int
    link: LinkView


@dataclass
class CallPage:
    """Some calls, oldest first, with everything the checks look up about them."""

    calls: list[StoredCallView]
    #: Each call's audit events, in the order they were appended.
    audit: dict[str, list[EventView]] = field(default_factory=dict)
    #: Each call's status changes, in the order they were recorded.
    transitions: dict[str, list[Transition]] = field(default_factory=dict)
    identities: dict[str, list[IdentityView]] = field(default_factory=dict)
    #: The chain link of each supplier call of the page.
    links: dict[str, LinkedBy] = field(default_factory=dict)
    #: The page's calls and the calls they name, by id.
    by_id: dict[str, CallView] = field(default_factory=dict)
    #: The page's stored calls the model refuses (listed by the report, never read).
    unreadable: list[UnreadableCall] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        calls: Sequence[StoredCallView],
        audit: Iterable[EventView],
        identities: Iterable[IdentityView],
        links: Iterable[LinkedBy],
        related: Iterable[CallView] = (),
    ) -> CallPage:
        """A page grouping the events, identities and links given by call."""
        page = cls(calls=list(calls))
        for event in audit:
            if event.call_id is None:
                continue
            page.audit.setdefault(event.call_id, []).append(event)
            change = transition_of(event)
            if change is not None:
                page.transitions.setdefault(change.call_id, []).append(change)
        for identity in identities:
            page.identities.setdefault(identity.call_id, []).append(identity)
        for linked in links:
            page.links[linked.link.supplier_call_id] = linked
        page.by_id = {call.id: call for call in related}
        page.by_id.update((stored.id, stored.call) for stored in calls)
        return page

    def events(self) -> Iterator[EventView]:
        """The audit events of the page's calls (each call's in the order appended)."""
        for events in self.audit.values():
            yield from events


class CallSource:
    """The calls of a store, read page by page (see the module docstring).

    Holds the store's engine, not an open connection: a context built in a ``with`` block of
    the store is read when the report is built, which may be after that block.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        units: Collection[str] | None = None,
        page_size: int = PAGE_SIZE,
        rows: bool | None = None,
    ) -> None:
        """:param rows: read the pass's calls from their rows' columns (:mod:`.call_rows`);
        ``False`` through the model, each call's facts validated (the reference). By default
        the rows, unless :data:`BY_MODEL_ENV` is set."""
        self._engine = engine
        self._units = None if units is None else sorted(set(units))
        self.page_size = page_size
        self.rows = not os.environ.get(BY_MODEL_ENV) if rows is None else rows

    def pages(self) -> Iterator[CallPage]:
        """Every call, oldest first, a page at a time, all from one snapshot."""
        if self.rows:
            yield from self._row_pages()
            return
        with self._snapshot() as conn:
            # In the order of the index ix_calls_created_at_id: read as it lies, never sorted.
            # Each call as its facts (what the checks judge), not its whole document.
            query = self._only(stored_facts_query()).order_by(*_PASS_ORDER)
            streamed = conn.execution_options(stream_results=True, yield_per=self.page_size)
            with closing(_RelatedStreams(conn, self._units, self.page_size, rows=False)) as related:
                for rows in streamed.execute(query).mappings().partitions(self.page_size):
                    audit, identities, links = related.of_page({row["id"] for row in rows})
                    yield self._assemble(conn, *read_stored_calls(rows), audit, identities, links)
                related.finish()

    def _row_pages(self) -> Iterator[CallPage]:
        """:meth:`pages` with each call read from its row's columns through a plain DB-API
        cursor (:mod:`.call_rows`); a row the reader doubts is read through the model."""
        with self._snapshot() as conn:
            plan = _PassPlan.of(conn)
            calls_by = plan.calls_index(self._units)
            if calls_by is not None:
                _read_in_file_order(conn, calls_by)
            with (
                closing(
                    _RelatedStreams(conn, self._units, self.page_size, rows=True, calls_by=calls_by)
                ) as related,
                closing(_raw_cursor(conn, "usm_bridge_report_pass")) as cursor,
            ):
                cursor.execute(plan.sql(self._only, conn))
                while rows := cursor.fetchmany(self.page_size):
                    missing = plan.without_facts(conn, [row[0] for row in rows])
                    calls = [None if row[0] in missing else call_row(row) for row in rows]
                    doubted = [row[0] for row, call in zip(rows, calls, strict=True) if not call]
                    read, unreadable = self._doubted(conn, doubted)
                    # In the pass's order; a call the model refuses is listed, not judged.
                    page: list[StoredCallView] = []
                    for row, call in zip(rows, calls, strict=True):
                        stored = call or read.get(row[0])
                        if stored is not None:
                            page.append(stored)
                    audit, identities, links = related.of_page({row[0] for row in rows})
                    yield self._assemble(
                        conn,
                        page,
                        unreadable,
                        audit,
                        identities,
                        links,
                    )
                related.finish()

    def _doubted(
        self, conn: Connection, ids: list[str]
    ) -> tuple[dict[str, StoredCall], list[UnreadableCall]]:
        """The calls ``ids`` read through the model, as the model pass reads them: those it
        reads by id, and those it refuses (in the pass's order)."""
        if not ids:
            return {}, []
        query = stored_facts_query().where(_calls.c.id.in_(ids)).order_by(*_PASS_ORDER)
        calls, unreadable = read_stored_calls(conn.execute(query).mappings())
        return {stored.id: stored for stored in calls}, unreadable

    def unit_page(self, unit: str) -> CallPage:
        """Every call of one unit, oldest first (for checks that ask for a unit's list)."""
        with self._snapshot() as conn:
            query = (
                self._only(stored_calls_query())
                .where(_calls.c.unit == unit)
                .order_by(_calls.c.created_at, _calls.c.id)
            )
            rows = list(conn.execute(query).mappings())
            keyed = _KeyedQueries.of((unit,), conn.dialect.name)
            return self._page(conn, keyed.parameters(rows), *read_stored_calls(rows), keyed=keyed)

    def call(self, call_id: str) -> Call | None:
        """One call by id (among the source's units), read on its own, whole."""
        with self._snapshot() as conn:
            found = self._calls(conn, [call_id], whole=True)
        return found[0] if found else None

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        # Read-only: on SQLite a plain BEGIN, never the write lock (the daemon keeps writing).
        with self._engine.connect().execution_options(**{_WRITE_OPTION: False}) as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    for setting in _WHOLE_READS:
                        conn.exec_driver_sql(setting)
                yield conn

    def _only(self, query: sa.Select[tuple[object, ...]]) -> sa.Select[tuple[object, ...]]:
        if self._units is None:
            return query
        return query.where(tables.calls.c.unit.in_(self._units))

    def _page(
        self,
        conn: Connection,
        keys: dict[str, Any] | None,
        calls: list[StoredCall],
        unreadable: list[UnreadableCall],
        *,
        keyed: _KeyedQueries,
    ) -> CallPage:
        """The unit's page of whole ``calls`` (and ``unreadable``), which ``keys`` name (the
        parameters of ``keyed``: ``None`` for no row), with every audit event of each."""
        audit: list[EventView] = []
        identities: list[IdentityView] = []
        links: list[LinkedBy] = []
        if keys is not None:
            audit = [_EVENTS.record(row) for row in _rows(conn, keyed.audit, keys)]
            identities = [_IDENTITIES.record(row) for row in _rows(conn, keyed.identities, keys)]
            links = [_LINKS.record(row) for row in _rows(conn, keyed.links, keys)]
        return self._assemble(conn, calls, unreadable, audit, identities, links, whole=True)

    def _assemble(
        self,
        conn: Connection,
        calls: Sequence[StoredCallView],
        unreadable: list[UnreadableCall],
        audit: list[EventView],
        identities: list[IdentityView],
        links: list[LinkedBy],
        *,
        whole: bool = False,
    ) -> CallPage:
        """The page of ``calls`` with its audit events, identities and chain links (each
        call's in the order of their ids), and the calls its links and forks name."""
        ids = {stored.id for stored in calls}
        named = {linked.link.upstream_call_id for linked in links}
        named.update(fork.call for stored in calls for fork in stored.call.chain.forks if fork.call)
        related = self._calls(conn, named - ids, whole=whole)
        page = CallPage.of(calls, audit, identities, links, related)
        page.unreadable = unreadable
        return page

    def _calls(self, conn: Connection, ids: Collection[str], *, whole: bool) -> list[Call]:
        if not ids:
            return []
        query = stored_calls_query() if whole else stored_facts_query()
        rows = conn.execute(self._only(query).where(tables.calls.c.id.in_(sorted(ids)))).mappings()
        # A named call the model refuses is listed where its own page is read; here it is
        # one the report cannot follow, as if it were not stored.
        return [stored.call for stored in read_stored_calls(rows)[0]]


#: A unit's page (:meth:`CallSource.unit_page`, the pass uses :class:`_RelatedStreams`) names
#: its calls in keyed queries without an ``IN`` list of all their ids: on PostgreSQL one array
#: parameter (``= ANY``); on SQLite the page's range in the pass's order (its first and last
#: call), read through ix_calls_created_at_id.
_calls = tables.calls
_log, _identities, _links = tables.audit_log, tables.identities, tables.chain_links
_FIRST_AT = sa.bindparam("first_at", type_=_calls.c.created_at.type)
_LAST_AT = sa.bindparam("last_at", type_=_calls.c.created_at.type)
_IN_RANGE = sa.and_(
    # The plain range first, which an index and the column's statistics serve.
    _calls.c.created_at.between(_FIRST_AT, _LAST_AT),
    sa.tuple_(_calls.c.created_at, _calls.c.id)
    >= sa.tuple_(_FIRST_AT, sa.bindparam("first_id", type_=_calls.c.id.type)),
    sa.tuple_(_calls.c.created_at, _calls.c.id)
    <= sa.tuple_(_LAST_AT, sa.bindparam("last_id", type_=_calls.c.id.type)),
)
_IDS = sa.bindparam("ids", type_=ARRAY(sa.String()))


@dataclass(frozen=True)
class _KeyedQueries:
    """The keyed queries of a unit's page of calls: every audit event, identities, and chain
    links (as supplier calls), and how a page's rows become their parameters. (The pass reads
    the change events only, through :class:`_RelatedStreams`.)"""

    audit: sa.Select[Any]
    identities: sa.Select[Any]
    links: sa.Select[Any]
    by_array: bool

    @classmethod
    @cache
    def of(cls, units: tuple[str, ...] | None, dialect: str) -> _KeyedQueries:
        """The queries for the calls of ``units`` (all when ``None``) on ``dialect``, built
        once for each (the store's query style)."""
        by_array = dialect == "postgresql"

        def of_page(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
            if by_array:
                return column == sa.any_(_IDS)
            in_range = _IN_RANGE if units is None else sa.and_(_IN_RANGE, _calls.c.unit.in_(units))
            return column.in_(sa.select(_calls.c.id).where(in_range))

        audit = sa.select(_log).where(of_page(_log.c.call_id)).order_by(_log.c.id)
        return cls(
            audit=audit,
            identities=sa.select(_identities)
            .where(of_page(_identities.c.call_id))
            .order_by(_identities.c.id),
            links=sa.select(_links).where(of_page(_links.c.supplier_call_id)).order_by(_links.c.id),
            by_array=by_array,
        )

    def parameters(self, rows: Sequence[Mapping[Any, Any]]) -> dict[str, Any] | None:
        """The parameters naming the calls of ``rows`` (of ``calls``, in the pass's order);
        ``None`` for no rows."""
        if not rows:
            return None
        if self.by_array:
            return {"ids": [row["id"] for row in rows]}
        first, last = rows[0], rows[-1]
        return {
            "first_at": first["created_at"],
            "first_id": first["id"],
            "last_at": last["created_at"],
            "last_id": last["id"],
        }


def _rows(
    conn: Connection, query: sa.Select[tuple[object, ...]], parameters: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    # Each row as a dict, the column names read once (a RowMapping builds its keys per row).
    result = conn.execute(query, parameters)
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))


#: The pass's rows as :mod:`.call_rows` reads them.
_ROWS_QUERY = sa.select(
    *(
        sa.case((_calls.c.facts.is_(None), 1), else_=0).label(name)
        if name == "facts_missing"
        else _calls.c[name]
        for name in ROW_COLUMNS
    )
)


def _compiled(query: sa.Select[Any], conn: Connection) -> str:
    """``query`` as its SQL text for the connection's driver (its few parameters, the units'
    names, written in as SQLAlchemy quotes them)."""
    return str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


#: The pass's rows read from SQLite's ``ix_calls_pass_rows`` (revision 0017), which holds
#: every column of :data:`_ROWS_QUERY` but whether the facts are missing (SQLite 3.40 reads no
#: indexed expression from a covering index): that is asked of ``ix_calls_without_facts``.
_INDEXED_ROWS_QUERY = sa.select(
    *(
        sa.literal_column("0").label(name) if name == "facts_missing" else _calls.c[name]
        for name in ROW_COLUMNS
    )
)
#: The calls of a page (``ids``) whose facts are missing, through ``ix_calls_without_facts``
#: (whose condition the text repeats, so that SQLite uses it).
_WITHOUT_FACTS = sa.select(_calls.c.id).where(
    sa.text("facts IS NULL"), _calls.c.id.in_(sa.bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class _PassPlan:
    """How the pass reads the calls' rows on the connection's back end.

    On SQLite a call's fact columns lie in its row beside its document and facts (a 4 KB page
    a call): walked through ``ix_calls_created_at_id`` each row is a random read, and read whole
    the table (some 4 GB at a million calls) is sorted in temporary files: 64 s of a cold
    report against issue #17's 60. Revision 0017's ``ix_calls_pass_rows`` holds the pass's
    columns in its order (some 420 MB at a million): read instead, with no table read and no
    sort (bench/README.md). A store without it (read as found, ``SchemaPolicy.INSPECT``) has its
    table read whole and sorted, as before. PostgreSQL plans its own (:data:`_WHOLE_READS`).
    """

    #: The hint on ``calls`` (SQLAlchemy's SQLite compiler writes none, hence the text).
    hint: str | None
    #: Whether the query's ``facts_missing`` is a stand-in, the missing facts asked per page.
    indexed: bool
    #: Whether any call's facts are missing (``indexed`` only; else not asked).
    any_missing: bool

    @classmethod
    def of(cls, conn: Connection) -> _PassPlan:
        if conn.dialect.name != "sqlite":
            return cls(hint=None, indexed=False, any_missing=False)
        indexes = conn.exec_driver_sql(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'calls'"
        )
        if not {"ix_calls_pass_rows", "ix_calls_without_facts"} <= set(indexes.scalars()):
            return cls(hint="NOT INDEXED", indexed=False, any_missing=False)
        # Nearly always none: then no page asks (in the pass's snapshot, so none appears).
        any_missing = conn.exec_driver_sql(
            "SELECT EXISTS (SELECT 1 FROM calls INDEXED BY ix_calls_without_facts"
            " WHERE facts IS NULL)"
        ).scalar_one()
        return cls("INDEXED BY ix_calls_pass_rows", indexed=True, any_missing=bool(any_missing))

    def sql(self, only: Callable[[sa.Select[Any]], sa.Select[Any]], conn: Connection) -> str:
        """The pass's query, with the calls of the source's units (``only``)."""
        query = _INDEXED_ROWS_QUERY if self.indexed else _ROWS_QUERY
        sql = _compiled(only(query).order_by(*_PASS_ORDER), conn)
        if self.hint is None:
            return sql
        hinted, found = re.subn(r"\nFROM calls\b", f"\nFROM calls {self.hint}", sql, count=1)
        if not found:
            raise RuntimeError(f"the pass's query reads no calls table: {sql!r}")
        return hinted

    def calls_index(self, units: Sequence[str] | None) -> str | None:
        """On SQLite, the index the related streams walk the calls by (:func:`_calls_first`):
        one holding ``created_at`` and ``id`` (and ``unit`` for some units' calls, else each
        call's unit is read from its row); ``None`` on PostgreSQL."""
        if self.hint is None:
            return None
        return (
            "ix_calls_pass_rows" if units is not None and self.indexed else "ix_calls_created_at_id"
        )

    def without_facts(self, conn: Connection, ids: list[str]) -> frozenset[str]:
        """Those of a page's calls (``ids``) whose facts are missing, when the query's column
        does not say so (the model reads them)."""
        if not self.any_missing:
            return frozenset()
        return frozenset(conn.execute(_WITHOUT_FACTS, {"ids": ids}).scalars())


def _calls_first(sql: str, index: str) -> str:
    """A related stream's query (``sql``, ``FROM calls JOIN`` its table) with SQLite told to
    walk the calls in the pass's order by ``index`` (holding ``created_at`` and ``id``, and the
    ``unit`` the query filters on) and look up each call's rows by their key, the order a
    ``CROSS JOIN`` keeps.

    Why: SQLite chose to read the smaller table (the chain links) and look up each row's call
    by id for its ``created_at``, a read of a random page of the calls' table per link, then
    sort: 14.4 s for the 114,502 links of a million calls with the OS's cache dropped, against
    4.1 s so (bench/README.md), once the pass no longer reads that table itself.
    """
    hinted, found = re.subn(
        r"\nFROM calls JOIN\b", f"\nFROM calls INDEXED BY {index} CROSS JOIN", sql, count=1
    )
    if not found:
        raise RuntimeError(f"the related stream's query joins no calls: {sql!r}")
    return hinted


#: What the related streams look up on SQLite, by the column naming each row's call.
_LOOKED_UP: Final = (("identities", "call_id"), ("chain_links", "supplier_call_id"))
#: A table's index whose first column is the given one (SQLite names a constraint's itself).
_INDEX_ON = (
    "SELECT l.name FROM pragma_index_list(?) AS l WHERE"
    " (SELECT i.name FROM pragma_index_info(l.name) AS i WHERE i.seqno = 0) = ?"
)


def _read_in_file_order(conn: Connection, calls_by: str) -> None:
    """On SQLite, read each B-tree the related streams look up (:data:`_LOOKED_UP`: the table
    and its index by call, and the calls' index ``calls_by``) once in the file's order, so that
    their lookups in the pass's order find the pages in the OS's cache.

    Why: a store's identities lie in the order they were written, not the calls' (created_at),
    so looking them up call by call reads a random page of the table and of its index each:
    with the OS's cache dropped, the identities' stream of a million calls took 18.5 s (1.9 GB
    read: the kernel's read-ahead on each miss) against 8 s with the pages cached; these reads
    take some 2 s cold and 0.2 s warm (``count(*)`` steps the pages without decoding a row), at
    no cost to the process's memory (bench/README.md).
    """
    # The names are constants but for the indexes', read from the store: quoted.
    quote = conn.dialect.identifier_preparer.quote_identifier
    counts = [f"{table} NOT INDEXED" for table, _ in _LOOKED_UP]
    for table, column in _LOOKED_UP:
        found = conn.exec_driver_sql(_INDEX_ON, (table, column)).scalars().all()
        counts += [f"{table} INDEXED BY {quote(index)}" for index in found]
    counts.append(f"calls INDEXED BY {quote(calls_by)}")
    for what in counts:
        conn.exec_driver_sql(f"SELECT count(*) FROM {what}").scalar_one()  # noqa: S608 - quoted


def _raw_cursor(conn: Connection, name: str) -> Any:
    """A DB-API cursor in the connection's transaction: on PostgreSQL a server-side one
    (``name``, unique among those open), so the rows come a page at a time (SQLite's own
    cursor steps row by row)."""
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        return driver.cursor(name=name)  # type: ignore[union-attr]
    return driver.cursor()  # type: ignore[union-attr]


#: The pass's order: oldest first, as the indexes ix_calls_created_at_id and, on SQLite,
#: ix_calls_pass_rows lie (:class:`_PassPlan`); unique, since ids are.
_PASS_ORDER = (_calls.c.created_at, _calls.c.id)


def _in_pass_order(
    table: sa.Table, call_id: sa.Column[Any], units: Sequence[str] | None
) -> sa.Select[Any]:
    """Every row of ``table`` whose call the pass reads, in the pass's order of their calls
    (then their own id), with their call's unit filter."""
    query = sa.select(table).select_from(_calls.join(table, _calls.c.id == call_id))
    if units is not None:
        query = query.where(_calls.c.unit.in_(units))
    return query.order_by(*_PASS_ORDER, table.c.id)


_T = TypeVar("_T")


@dataclass(frozen=True)
class _Related(Generic[_T]):
    """One related table as the pass reads it: as its rows (:mod:`.related_rows`) or as its
    validated records (the reference, a unit's page, and a row the reader doubts)."""

    table: sa.Table
    #: The column naming the row's call.
    call: str
    columns: tuple[str, ...]
    #: The row's object from a row of :attr:`columns`; ``None``: the record is to read it.
    read: Callable[[Sequence[Any], bool], _T | None]
    #: The validated record of a row (a dict of the columns, as SQLAlchemy reads them).
    record: Callable[[dict[str, Any]], _T]


def _linked(row: dict[str, Any]) -> LinkedBy:
    # The row's own id is the table's, not the link's: it orders the links.
    return LinkedBy(order=row.pop("id"), link=ChainLink.model_validate(row))


def _linked_row(row: Sequence[Any], sqlite: bool) -> LinkedBy | None:
    link = link_row(row)
    return None if link is None else LinkedBy(order=row[0], link=link)


_EVENTS: _Related[EventView] = _Related(
    _log, "call_id", EVENT_COLUMNS, lambda row, sqlite: event_row(row, sqlite=sqlite),
    AuditEvent.model_validate,
)  # fmt: skip
_IDENTITIES: _Related[IdentityView] = _Related(
    _identities, "call_id", IDENTITY_COLUMNS, lambda row, sqlite: identity_row(row),
    Identity.model_validate,
)  # fmt: skip
_LINKS: _Related[LinkedBy] = _Related(
    _links, "supplier_call_id", LINK_COLUMNS, _linked_row, _linked
)


class _RelatedStreams:
    """The change events, identities and chain links of the pass's calls, each read by one
    streamed query in the pass's order (:data:`_PASS_ORDER`) and cut along the pages.

    Why not keyed queries per page: on PostgreSQL a query naming a page's 2,000 calls (an
    ``= ANY`` array) was planned as a scan of the whole table, per page, and as 2,000 index
    probes at best: the server's time grew with the square of the calls (about 66 ms a page
    at 100,000 calls). Three ordered streams are one sort or index walk each, whatever the
    size. A page takes from each stream the rows of its calls, which come next in the stream
    since both follow the same order in the same snapshot.

    With ``rows``, each stream is a plain DB-API cursor (a server-side one on PostgreSQL) and
    its rows are read by :mod:`.related_rows`; else through SQLAlchemy, each row validated as
    its record (the reference).
    """

    def __init__(
        self,
        conn: Connection,
        units: Sequence[str] | None,
        page_size: int,
        *,
        rows: bool,
        calls_by: str | None = None,
    ) -> None:
        """:param calls_by: on SQLite, the index that the identities' and the links' streams
        walk the calls by (:func:`_calls_first`); else as the planner chooses."""
        self._conn, self._rows, self._calls_by = conn, rows, calls_by
        self._sqlite = conn.dialect.name == "sqlite"
        #: What :meth:`close` closes (a stream left unread keeps a cursor open on the server).
        self._cursors: list[Any] = []
        changes = _in_pass_order(_log, _log.c.call_id, units).where(_log.c.kind == "call_updated")
        identities = _in_pass_order(_identities, _identities.c.call_id, units)
        links = _in_pass_order(_links, _links.c.supplier_call_id, units)
        self._events = _Stream(self._stream(changes, _EVENTS, page_size), _EVENTS)
        self._identities = _Stream(
            self._stream(identities, _IDENTITIES, page_size, calls_first=True), _IDENTITIES
        )
        self._links = _Stream(self._stream(links, _LINKS, page_size, calls_first=True), _LINKS)

    def _stream(
        self,
        query: sa.Select[Any],
        related: _Related[Any],
        page_size: int,
        *,
        calls_first: bool = False,
    ) -> Iterator[Sequence[Any]]:
        """The rows of ``query`` (its table's columns, in the order of ``related.columns``);
        with ``calls_first`` (and an index to walk them by), the calls walked in the pass's
        order and the table's rows of each looked up (:func:`_calls_first`)."""
        if not self._rows:
            streamed = self._conn.execution_options(stream_results=True, yield_per=page_size)
            result = streamed.execute(query)
            self._cursors.append(result)
            return iter(result)
        cursor = _raw_cursor(self._conn, f"usm_bridge_report_{related.table.name}")
        self._cursors.append(cursor)
        sql = _compiled(query, self._conn)
        by = self._calls_by
        cursor.execute(_calls_first(sql, by) if calls_first and by is not None else sql)
        return _fetched(cursor, page_size)

    def of_page(
        self, ids: Collection[str]
    ) -> tuple[list[EventView], list[IdentityView], list[LinkedBy]]:
        """The events, identities and links of the page's calls (``ids``), each call's in the
        order of their ids."""
        return (
            self._built(self._events, ids),
            self._built(self._identities, ids),
            self._built(self._links, ids),
        )

    def _built(self, stream: _Stream[_T], ids: Collection[str]) -> list[_T]:
        related, rows = stream.related, stream.take(ids)
        if not self._rows:
            columns = related.columns
            return [related.record(dict(zip(columns, row, strict=True))) for row in rows]
        read = [related.read(row, self._sqlite) for row in rows]
        doubted = [row[0] for row, item in zip(rows, read, strict=True) if item is None]
        records: dict[int, _T] = {}
        if doubted:
            # Read as before, through SQLAlchemy and the record (which may refuse the row).
            table = related.table
            found = self._conn.execute(sa.select(table).where(table.c.id.in_(doubted)))
            records = {row["id"]: related.record(dict(row)) for row in found.mappings()}
        return [
            records[row[0]] if item is None else item for row, item in zip(rows, read, strict=True)
        ]

    def finish(self) -> None:
        """Check that every row was taken: a row left means the streams did not follow the
        calls' order, and the report would have judged calls without it."""
        self._events.finish()
        self._identities.finish()
        self._links.finish()

    def close(self) -> None:
        for cursor in self._cursors:
            cursor.close()


def _fetched(cursor: Any, size: int) -> Iterator[Sequence[Any]]:
    while rows := cursor.fetchmany(size):
        yield from rows


class _Stream(Generic[_T]):
    """One related table's rows in the pass's order, taken a page at a time."""

    def __init__(self, rows: Iterator[Sequence[Any]], related: _Related[_T]) -> None:
        self.related = related
        self._call = related.columns.index(related.call)
        self._rows = rows
        self._next: Any = next(self._rows, None)

    def take(self, ids: Collection[str]) -> list[Sequence[Any]]:
        """The rows next in the stream whose call is among ``ids``: the calls in the pass's
        order, each call's rows in the order of their ids (what a page promises)."""
        taken, row, call = [], self._next, self._call
        while row is not None and row[call] in ids:
            taken.append(row)
            row = next(self._rows, None)
        self._next = row
        return taken

    def finish(self) -> None:
        if self._next is not None:
            raise RuntimeError(
                f"the report's pass left rows of {self.related.table.name} unread (call "
                f"{self._next[self._call]!r}): they did not come in the calls' order"
            )
