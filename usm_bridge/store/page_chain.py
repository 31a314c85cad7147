"""The calls chained to a page's calls, read with the page: one query per table, not per record.

Storing a changed request routes it along its chain: the router reads the request's supplier
calls (and theirs, down the chain; or the upstream calls, up it), their identities, their
outbox items and some of their audit events, and rewrites them. Read call by call, that is a
dozen statements a record. Here the whole chain beyond the page's own calls is read when the
page begins, after it is locked (:func:`~usm_bridge.store.chain_query.lock_page_chains`), with
one recursive query for its calls and one for its links, then one per table for the rest.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.store import schema as t
from usm_bridge.store.chain_query import chain_walk, chunked
from usm_bridge.store.records import ChainLink, CommentLink, OutboxItem

__all__ = [
    "add_links",
    "load_chain",
    "load_chain_copies",
    "load_chain_identities",
    "load_chain_outbox",
]

_calls, _ids, _links = t.calls, t.identities, t.chain_links
_box, _copies = t.outbox, t.comment_links
#: The values of one chunk of an ``IN`` list, expanded when the statement runs.
_b_part: sa.BindParameter[list[str]] = sa.bindparam("b_part", expanding=True)
#: The ids of the chunk's calls and of every call chained to them, in either direction.
_CHAIN = chain_walk(
    sa.select(_calls.c.id.label("id")).where(_calls.c.id.in_(_b_part))
).scalar_subquery()
_CHAIN_CALLS = sa.select(*t.CALL_ROW).where(_calls.c.id.in_(_CHAIN))
_CHAIN_LINKS = (
    sa.select(_links)
    .where(_links.c.upstream_call_id.in_(_CHAIN) | _links.c.supplier_call_id.in_(_CHAIN))
    .order_by(_links.c.id)
)
_IDENTITIES = (
    sa.select(_ids).where(_ids.c.call_id.in_(_b_part)).order_by(_ids.c.instance, _ids.c.id)
)
_OUTBOX = sa.select(_box).where(_box.c.call_id.in_(_b_part)).order_by(_box.c.id)
_COPIES = sa.select(_copies).where(_copies.c.call_id.in_(_b_part))


def add_links(
    rows: Collection[Any],
    seen: dict[int, ChainLink],
) -> set[str]:
    """Keep the ``chain_links`` rows not in ``seen`` (by the row's id); the calls they name."""
    named: set[str] = set()
    for row in rows:
        if row["id"] not in seen:
            link = ChainLink.from_row(row)
            seen[row["id"]] = link
            named |= {link.upstream_call_id, link.supplier_call_id}
    return named


def load_chain(
    conn: Connection,
    start: Collection[str],
    calls: dict[str, dict[str, Any]],
    seen: dict[int, ChainLink],
) -> set[str]:
    """Read the calls chained to ``start`` (the calls next to the page's), transitively, into
    ``calls``, and their links into ``seen``; the ids of the chain's calls read."""
    found: set[str] = set()
    for part in chunked(start):
        for row in conn.execute(_CHAIN_CALLS, {"b_part": part}).mappings():
            found.add(row["id"])
            calls.setdefault(row["id"], dict(row))
        add_links(conn.execute(_CHAIN_LINKS, {"b_part": part}).mappings().all(), seen)
    return found


def load_chain_identities(
    conn: Connection, call_ids: Collection[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every identity of ``call_ids``, by call id, each call's ordered by instance (as
    ``Transaction.identities_of`` gives them)."""
    out: dict[str, list[dict[str, Any]]] = {call_id: [] for call_id in call_ids}
    for part in chunked(call_ids):
        rows = conn.execute(_IDENTITIES, {"b_part": part}).mappings()
        for row in rows:
            out[row["call_id"]].append(dict(row))
    return out


def load_chain_outbox(conn: Connection, call_ids: Collection[str]) -> dict[str, list[OutboxItem]]:
    """Every outbox item of ``call_ids`` (done ones too: the router looks for a call's create
    and its last write), by call id, in the order they were enqueued."""
    out: dict[str, list[OutboxItem]] = {call_id: [] for call_id in call_ids}
    for part in chunked(call_ids):
        for row in conn.execute(_OUTBOX, {"b_part": part}).mappings():
            out[row["call_id"]].append(OutboxItem.model_validate(dict(row)))
    return out


def load_chain_copies(
    conn: Connection, call_ids: Collection[str]
) -> dict[str, dict[str, CommentLink]]:
    """The bridge's copies of comments on ``call_ids``: by call id, then by the comment copied
    (a comment read again on the page's records is then known copied without a query)."""
    out: dict[str, dict[str, CommentLink]] = {call_id: {} for call_id in call_ids}
    for part in chunked(call_ids):
        for row in conn.execute(_COPIES, {"b_part": part}).mappings():
            out[row["call_id"]][row["source_comment_id"]] = CommentLink.model_validate(dict(row))
    return out
