"""The calls chained to some records (one recursive query, however long the chains), and the
locks a unit of work takes on them before it reads them (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.store import schema as t

__all__ = ["CHUNK", "chain_walk", "chained_call_ids", "chunked", "lock_page_chains"]

#: Values per ``IN`` list: far below SQLite's and PostgreSQL's limits on bound parameters.
CHUNK = 500


def chain_walk(start: sa.Select[tuple[str]]) -> sa.Select[tuple[str]]:
    """The call ids ``start`` selects (as a column ``id``) and those of every call chained to
    them, in either direction, transitively: one recursive query, however long the chains."""
    links = t.chain_links
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
    return sa.select(chain.union(step).c.id)


def chained_call_ids(instance: str, remote_ids: Collection[str]) -> sa.Select[tuple[str]]:
    """The ids of the calls of ``instance``'s records ``remote_ids`` and of every call chained
    to them, in either direction, transitively."""
    ids = t.identities
    return chain_walk(
        sa.select(ids.c.call_id.label("id")).where(
            ids.c.instance == instance, ids.c.remote_id.in_(list(remote_ids))
        )
    )


def chunked(values: Collection[str]) -> Iterator[list[str]]:
    """``values`` sorted, in lists of :data:`CHUNK` at most."""
    ordered = sorted(values)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def lock_page_chains(conn: Connection, instance: str, remote_ids: Collection[str]) -> list[str]:
    """On PostgreSQL, lock the calls of the page's records and every call chained to them, in
    id order, until the unit of work ends; their ids (``Transaction.lock_chain`` says why).
    SQLite runs one writer at a time: nothing to lock.

    A backfill's records have no calls yet: one query finds that, and nothing is locked (no
    other unit of work can chain a call to a record the store does not hold).
    """
    if conn.dialect.name != "postgresql" or not remote_ids:
        return []
    chains = [chained_call_ids(instance, part) for part in chunked(remote_ids)]

    def chained() -> set[str]:
        return {str(i) for chain in chains for i in conn.execute(chain).scalars()}

    calls = t.calls
    lock = sa.select(calls.c.id).order_by(calls.c.id).with_for_update(of=calls)
    locked: set[str] = set()
    # A chain that grew while this waited (a supplier opened meanwhile) is locked too, in a
    # second round; only that rare round takes locks out of order, and the database then
    # breaks a deadlock (StoreConflictError).
    while grown := chained() - locked:
        for part in chunked(grown):
            conn.execute(lock.where(calls.c.id.in_(part))).all()
        locked |= grown
    return sorted(locked)
