"""Reading a report's calls a page at a time, with what the checks ask about each page.

A report over a million calls cannot hold them all: the calls are read with one streamed query
(a server-side cursor on PostgreSQL; SQLite's own cursor reads row by row), oldest first as
``Transaction.list_calls`` orders them, and cut into pages. For each page, keyed queries fetch
what the checks ask about its calls and nothing more: their audit events, identities, chain
links, and the other calls they name (a supplier call's upstream, a fork's target). The pass
runs in one read-only transaction (``REPEATABLE READ`` on PostgreSQL), so every page sees the
same snapshot even while the daemon keeps syncing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..model import Call, Status
from ..store import AuditEvent, ChainLink, Identity, StoredCall
from ..store import schema as tables
from ..store.connect import _WRITE_OPTION
from .stored_rows import UnreadableCall, read_stored_calls, stored_calls_query

__all__ = ["CallPage", "CallSource", "LinkedBy", "Transition", "transition_of"]

#: Calls per page: the keyed queries of a page name this many ids (well under SQLite's limit).
PAGE_SIZE = 2000


@dataclass(frozen=True)
class Transition:
    """A status change of a call seen in the audit log."""

    call_id: str
    event_id: int
    at: datetime
    before: Status
    after: Status


def transition_of(event: AuditEvent) -> Transition | None:
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
    link: ChainLink


@dataclass
class CallPage:
    """Some calls, oldest first, with everything the checks look up about them."""

    calls: list[StoredCall]
    #: Each call's audit events, in the order they were appended.
    audit: dict[str, list[AuditEvent]] = field(default_factory=dict)
    #: Each call's status changes, in the order they were recorded.
    transitions: dict[str, list[Transition]] = field(default_factory=dict)
    identities: dict[str, list[Identity]] = field(default_factory=dict)
    #: The chain link of each supplier call of the page.
    links: dict[str, LinkedBy] = field(default_factory=dict)
    #: The page's calls and the calls they name, by id.
    by_id: dict[str, Call] = field(default_factory=dict)
    #: The page's stored calls the model refuses (listed by the report, never read).
    unreadable: list[UnreadableCall] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        calls: list[StoredCall],
        audit: Iterable[AuditEvent],
        identities: Iterable[Identity],
        links: Iterable[LinkedBy],
        related: Iterable[Call] = (),
    ) -> CallPage:
        """A page grouping the events, identities and links given by call."""
        page = cls(calls=calls)
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

    def events(self) -> Iterator[AuditEvent]:
        """The audit events of the page's calls (each call's in the order appended)."""
        for events in self.audit.values():
            yield from events


class CallSource:
    """The calls of a store, read page by page (see the module docstring).

    Holds the store's engine, not an open connection: a context built in a ``with`` block of
    the store is read when the report is built, which may be after that block.
    """

    def __init__(
        self, engine: Engine, *, units: Collection[str] | None = None, page_size: int = PAGE_SIZE
    ) -> None:
        self._engine = engine
        self._units = None if units is None else sorted(set(units))
        self.page_size = page_size

    def pages(self) -> Iterator[CallPage]:
        """Every call, oldest first, a page at a time, all from one snapshot."""
        with self._snapshot() as conn:
            # In the order of the index ix_calls_created_at_id: read as it lies, never sorted.
            query = self._only(stored_calls_query()).order_by(
                tables.calls.c.created_at, tables.calls.c.id
            )
            streamed = conn.execution_options(stream_results=True, yield_per=self.page_size)
            for rows in streamed.execute(query).mappings().partitions(self.page_size):
                yield self._page(conn, *read_stored_calls(rows))

    def unit_page(self, unit: str) -> CallPage:
        """Every call of one unit, oldest first (for checks that ask for a unit's list)."""
        with self._snapshot() as conn:
            query = (
                self._only(stored_calls_query())
                .where(tables.calls.c.unit == unit)
                .order_by(tables.calls.c.created_at, tables.calls.c.id)
            )
            return self._page(conn, *read_stored_calls(conn.execute(query).mappings()))

    def call(self, call_id: str) -> Call | None:
        """One call by id (among the source's units), read on its own."""
        with self._snapshot() as conn:
            found = self._calls(conn, [call_id])
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
                yield conn

    def _only(self, query: sa.Select[tuple[object, ...]]) -> sa.Select[tuple[object, ...]]:
        if self._units is None:
            return query
        return query.where(tables.calls.c.unit.in_(self._units))

    def _page(
        self,
        conn: Connection,
        calls: list[StoredCall],
        unreadable: list[UnreadableCall] | None = None,
    ) -> CallPage:
        ids = [stored.id for stored in calls]
        log_, idents, chain = tables.audit_log, tables.identities, tables.chain_links
        audit = [
            AuditEvent.model_validate(row)
            for row in _rows(
                conn, sa.select(log_).where(log_.c.call_id.in_(ids)).order_by(log_.c.id)
            )
        ]
        identities = [
            Identity.model_validate(row)
            for row in _rows(
                conn, sa.select(idents).where(idents.c.call_id.in_(ids)).order_by(idents.c.id)
            )
        ]
        links = [
            LinkedBy(order=row.pop("id"), link=ChainLink.model_validate(row))
            for row in _rows(conn, sa.select(chain).where(chain.c.supplier_call_id.in_(ids)))
        ]
        named = {linked.link.upstream_call_id for linked in links}
        named.update(fork.call for stored in calls for fork in stored.call.chain.forks if fork.call)
        page = CallPage.of(calls, audit, identities, links, self._calls(conn, named - set(ids)))
        page.unreadable = unreadable or []
        return page

    def _calls(self, conn: Connection, ids: Collection[str]) -> list[Call]:
        if not ids:
            return []
        rows = conn.execute(
            self._only(stored_calls_query()).where(tables.calls.c.id.in_(sorted(ids)))
        ).mappings()
        # A named call the model refuses is listed where its own page is read; here it is
        # one the report cannot follow, as if it were not stored.
        return [stored.call for stored in read_stored_calls(rows)[0]]


def _rows(conn: Connection, query: sa.Select[tuple[object, ...]]) -> Iterator[dict[str, Any]]:
    # Each row as a dict, the column names read once (a RowMapping builds its keys per row).
    result = conn.execute(query)
    keys = list(result.keys())
    for row in result:
        yield dict(zip(keys, row, strict=True))
