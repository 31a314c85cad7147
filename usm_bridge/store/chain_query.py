"""The calls chained to some records (one recursive query, however long the chains), and the
locks a unit of work takes on them before it reads them (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.store import schema as t

__all__ = ["CHUNK", "chain_walk", "chunked", "lock_page_chains"]

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


_ids, _calls = t.identities, t.calls
#: The values of one chunk of an ``IN`` list, expanded when the statement runs.
_b_part: sa.BindParameter[list[str]] = sa.bindparam("b_part", expanding=True)
#: The ids of the calls of an instance's records (``b_instance``, ``b_part``) and of every call
#: chained to them, in either direction, transitively.
_CHAINED = chain_walk(
    sa.select(_ids.c.call_id.label("id")).where(
        _ids.c.instance == sa.bindparam("b_instance"), _ids.c.remote_id.in_(_b_part)
    )
)
#: Lock the chunk's calls, in id order, until the unit of work ends.
_LOCK = (
    sa.select(_calls.c.id)
    .where(_calls.c.id.in_(_b_part))
    .order_by(_calls.c.id)
    .with_for_update(of=_calls)
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
    parts = list(chunked(remote_ids))

    def chained() -> set[str]:
        return {
            str(i)
            for part in parts
            for i in conn.execute(_CHAINED, {"b_instance": instance, "b_part": part}).scalars()
        }

    locked: set[str] = set()
    # A chain that grew while this waited (a supplier opened meanwhile) is locked too, in a
    # second round; only that rare round takes locks out of order, and the database then
    # breaks a deadlock (StoreConflictError).
    while grown := chained() - locked:
        for part in chunked(grown):
            conn.execute(_LOCK, {"b_part": part}).all()
        locked |= grown
    return sorted(locked)
