"""Queries that cost the same in a store of a million calls as in a new one.

The sync engine runs some queries on every cycle, also when the read brought nothing. Each one
here reads only the rows it answers with, through an index made for it (migration 0010), never
a row per stored call. They work inside a unit of work (:class:`~usm_bridge.store.Transaction`).
"""

from __future__ import annotations

import sqlalchemy as sa

from usm_bridge.store.records import OutboxItem, OutboxOperation
from usm_bridge.store.schema import (
    CLOSURE_DUE,
    OUTBOX_PENDING,
    calls,
    chain_links,
    identities,
    outbox,
)
from usm_bridge.store.store import Transaction

__all__ = ["closure_candidates", "tried_outbox_items"]


def _closure_due(dialect: str) -> sa.Select[tuple[str, str]]:
    """:func:`closure_candidates`' query on ``dialect``, whose JSON functions the partial
    index's condition uses."""
    # Parenthesised: the text is an OR, and ANDed with the chain's test below.
    condition = sa.text(f"({CLOSURE_DUE[dialect]})")
    links = chain_links
    supplies = sa.exists().where(links.c.supplier_call_id == calls.c.id)
    upstream = sa.exists().where(links.c.upstream_call_id == calls.c.id)
    due = (
        sa.select(calls.c.id, calls.c.created_at)
        .where(condition)
        .where(
            (calls.c.status.in_(("fulfilled", "closed")) & supplies)
            | ((calls.c.status == "confirmed") & (supplies | upstream))
        )
        # Materialised: the few due calls first, then their identities. Merged into one
        # join, SQLite's planner would rather walk all the instance's identities instead.
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    return (
        sa.select(due.c.id, identities.c.remote_id)
        .join(
            identities,
            (identities.c.call_id == due.c.id)
            & (identities.c.instance == sa.bindparam("b_instance")),
        )
        .order_by(due.c.created_at, due.c.id)
    )


_CLOSURE_DUE = {dialect: _closure_due(dialect) for dialect in CLOSURE_DUE}
#: The pending items of a target tried at least once, in the order they were enqueued:
#: :func:`tried_outbox_items` adds its filter.
_TRIED = (
    sa.select(outbox)
    .where(
        OUTBOX_PENDING, outbox.c.target_instance == sa.bindparam("b_target"), outbox.c.attempts > 0
    )
    .order_by(outbox.c.id)
)


def closure_candidates(tx: Transaction, instance: str) -> list[tuple[str, str]]:
    """``(call id, remote id)`` of ``instance``'s records the closure pass
    (:mod:`usm_bridge.sync.closure`) may have to act on, oldest call first: supplier calls
    ``fulfilled`` or ``closed`` whose confirmation is not recorded yet (their customer may have
    accepted them), and chained calls ``confirmed`` (to be closed).

    Read through the partial index ``ix_calls_closure_due``, which holds exactly the calls
    whose own row says so (the query repeats its condition, or the database would not use it);
    the chain links then confirm each one, as the closure's decisions are made on them. A
    supplier whose confirmation is recorded is no candidate: the closure has nothing more to
    look up for it.
    """
    query = _CLOSURE_DUE[tx.connection.dialect.name]
    rows = tx.connection.execute(query, {"b_instance": instance})
    return [(str(row.id), str(row.remote_id)) for row in rows]


def tried_outbox_items(
    tx: Transaction, target: str, *operations: OutboxOperation
) -> list[OutboxItem]:
    """The pending items for ``target`` tried at least once (``attempts > 0``), of the given
    operations (all when none is given), in the order they were enqueued.

    Read through the partial index ``ix_outbox_pending`` (the status is written into the query
    as the index's condition is): the done items, however many, are not read.
    """
    query = _TRIED
    if operations:
        query = query.where(outbox.c.operation.in_([op.value for op in operations]))
    rows = tx.connection.execute(query, {"b_target": target}).mappings()
    return [OutboxItem.model_validate(dict(row)) for row in rows]
