"""What the ingest of one page of records reads from the store: one query per table, not per record.

A page of a backfill is a hundred records of one instance. Read record by record, each asks for
its identity and call, its remote state, its chain links, the outbox items that may hold it
back and the comment links of its comments, and routing it reads the calls chained to it: a few
hundred round trips a page. Here each of
those is one query over the whole page (``IN`` lists of its remote ids and call ids, cut in
chunks of :data:`CHUNK`), done once the page's chains are locked (:func:`lock_page_chains`),
so what it reads is what the page's unit of work then writes over.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from usm_bridge.connector import RemoteDraft
from usm_bridge.store import schema as t
from usm_bridge.store.chain_query import CHUNK, chunked, lock_page_chains
from usm_bridge.store.page_chain import (
    add_links,
    load_chain,
    load_chain_copies,
    load_chain_identities,
    load_chain_outbox,
)
from usm_bridge.store.records import (
    AuditEvent,
    ChainLink,
    CommentLink,
    Identity,
    OutboxItem,
    OutboxStatus,
)

__all__ = ["CHUNK", "PageState", "chunked", "identities_in", "load_page_state", "lock_page_chains"]


_calls, _ids, _links = t.calls, t.identities, t.chain_links
_states, _log, _box, _copies = t.remote_states, t.audit_log, t.outbox, t.comment_links
#: The values of one chunk of an ``IN`` list, expanded when the statement runs.
_b_part: sa.BindParameter[list[str]] = sa.bindparam("b_part", expanding=True)
_b_instance: sa.BindParameter[str] = sa.bindparam("b_instance")
#: The identity's columns, labelled apart from the call's in the joined query.
_IDENTITY_COLUMNS = [column.label(f"identity_{column.name}") for column in _ids.c]
_RECORDS = (
    sa.select(*t.CALL_ROW, *_IDENTITY_COLUMNS)
    .select_from(_calls.join(_ids, _ids.c.call_id == _calls.c.id))
    .where(_ids.c.instance == _b_instance, _ids.c.remote_id.in_(_b_part))
)
_BASES = sa.select(_states.c.remote_id, _states.c.draft).where(
    _states.c.instance == _b_instance, _states.c.remote_id.in_(_b_part)
)
_AUDITS = (
    sa.select(_log)
    .where(
        _log.c.call_id.in_(_b_part),
        _log.c.kind.in_(sa.bindparam("b_kinds", expanding=True)),
    )
    .order_by(_log.c.id)
)
_LINKS = (
    sa.select(_links)
    .where(_links.c.upstream_call_id.in_(_b_part) | _links.c.supplier_call_id.in_(_b_part))
    .order_by(_links.c.id)
)
_PENDING = (
    sa.select(_box)
    .where(
        _box.c.status == OutboxStatus.PENDING.value,
        _box.c.target_instance == _b_instance,
        _box.c.call_id.in_(_b_part),
    )
    .order_by(_box.c.id)
)
_COMMENT_LINKS = sa.select(_copies).where(
    _copies.c.instance == _b_instance, _copies.c.remote_comment_id.in_(_b_part)
)
_BY_REFERENCE = (
    sa.select(_ids)
    .where(_ids.c.remote_key.in_(_b_part) | _ids.c.remote_id.in_(_b_part))
    .order_by(_ids.c.instance, _ids.c.id)
)
_IDENTITIES_IN = sa.select(_ids).where(_ids.c.instance == _b_instance, _ids.c.call_id.in_(_b_part))


@dataclass
class PageState:
    """The store's rows a page of ``instance`` needs, as read at the start of its unit of work.

    Rows are plain column dictionaries; the page's unit of work keeps them up to date with
    what it writes (:class:`usm_bridge.store.page_transaction.PageTransaction`).
    """

    instance: str
    #: The remote ids the page looked up: one missing from :attr:`identities` is not linked.
    remote_ids: set[str]
    #: The identities of the page's records in ``instance``, by remote id.
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Call rows by id: the page's calls and the calls chained to them.
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What each record of the page is known to hold, by remote id.
    bases: dict[str, RemoteDraft] = field(default_factory=dict)
    #: The calls whose chain links are in :attr:`suppliers` and :attr:`upstream`: the page's
    #: and :attr:`chain_calls`.
    linked: set[str] = field(default_factory=set)
    #: The calls chained to the page's calls (transitively), not the page's own; their rows
    #: are in :attr:`calls` (:mod:`usm_bridge.store.page_chain`). The supplier calls the page
    #: opens join them (``PageTransaction.open_call``).
    chain_calls: set[str] = field(default_factory=set)
    #: Every identity of :attr:`chain_calls` (as rows), by call id.
    chain_identities: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Every outbox item of :attr:`chain_calls` (and of the calls the page creates), by call
    #: id, in the order enqueued.
    outbox: dict[str, list[OutboxItem]] = field(default_factory=dict)
    #: The bridge's copies of comments on :attr:`chain_calls`: by call id, then by the id of
    #: the comment copied.
    copies: dict[str, dict[str, CommentLink]] = field(default_factory=dict)
    suppliers: dict[str, list[ChainLink]] = field(default_factory=dict)
    upstream: dict[str, ChainLink] = field(default_factory=dict)
    #: Pending outbox items of the page's calls whose target is ``instance``, by call id.
    pending: dict[str, list[OutboxItem]] = field(default_factory=dict)
    #: Comment links of ``instance`` by remote comment id, for the ids in
    #: :attr:`comment_ids` (one missing is no copy of the bridge's).
    comment_links: dict[str, CommentLink] = field(default_factory=dict)
    comment_ids: set[str] = field(default_factory=set)
    #: Identities by a reference (key or id) the page's forks name, for :attr:`references`.
    by_reference: dict[str, list[Identity]] = field(default_factory=dict)
    references: set[str] = field(default_factory=set)
    #: The audit events of :attr:`audit_kinds` naming the page's calls and
    #: :attr:`chain_calls`, by call id and kind.
    audits: dict[tuple[str, str], list[AuditEvent]] = field(default_factory=dict)
    audit_kinds: frozenset[str] = frozenset()


def load_page_state(
    conn: Connection,
    instance: str,
    remote_ids: Collection[str],
    *,
    comment_ids: Collection[str] = (),
    references: Collection[str] = (),
    audit_kinds: Collection[str] = (),
) -> PageState:
    """Read what the page needs: the records' identities with their calls, their remote
    states, the chain links of their calls and the calls chained to them (transitively) with
    their identities and outbox items, the pending outbox items of the page's calls in
    ``instance``, the comment links of ``comment_ids`` and the
    identities ``references`` name, and the audit events of ``audit_kinds`` naming the page's
    calls or the chained ones (those storing a record and routing it look at, to tell a
    finding once). A query is left out when
    there is nothing to ask (a backfill's calls have no links, outbox items or events)."""
    state = PageState(instance, set(remote_ids))
    for part in chunked(state.remote_ids):
        chunk = {"b_instance": instance, "b_part": part}
        rows = conn.execute(_RECORDS, chunk).mappings()
        for row in rows:
            state.calls[row["id"]] = {c.name: row[c.name] for c in t.CALL_ROW}
            state.identities[row["identity_remote_id"]] = {
                c.name: row[f"identity_{c.name}"] for c in _ids.c
            }
        for remote_id, draft in conn.execute(_BASES, chunk):
            state.bases[remote_id] = RemoteDraft.model_validate(draft)
    _load_links(conn, state)
    _load_pending(conn, state)
    _load_comment_links(conn, state, set(comment_ids))
    _load_references(conn, state, set(references))
    _load_audits(conn, state, frozenset(audit_kinds))
    return state


def _load_audits(conn: Connection, state: PageState, kinds: frozenset[str]) -> None:
    calls = {i["call_id"] for i in state.identities.values()} | state.chain_calls
    for part in chunked(calls if kinds else ()):
        rows = conn.execute(_AUDITS, {"b_part": part, "b_kinds": sorted(kinds)}).mappings()
        for row in rows:
            event = AuditEvent.model_validate(dict(row))
            state.audits.setdefault((row["call_id"], row["kind"]), []).append(event)
    state.audit_kinds = kinds


def _load_links(conn: Connection, state: PageState) -> None:
    page_calls = set(state.calls)
    seen: dict[int, ChainLink] = {}
    others: set[str] = set()
    for part in chunked(page_calls):
        rows = conn.execute(_LINKS, {"b_part": part}).mappings()
        others |= add_links(rows.all(), seen) - page_calls
    if others:
        # A backfill's calls (and a page of calls in no chain) have none: no query more.
        state.chain_calls = load_chain(conn, others, state.calls, seen) - page_calls
        state.chain_identities = load_chain_identities(conn, state.chain_calls)
        state.outbox = load_chain_outbox(conn, state.chain_calls)
        state.copies = load_chain_copies(conn, state.chain_calls)
    state.linked |= page_calls | state.chain_calls
    for _row_id, link in sorted(seen.items()):
        if link.upstream_call_id in state.linked:
            state.suppliers.setdefault(link.upstream_call_id, []).append(link)
        if link.supplier_call_id in state.linked:
            state.upstream[link.supplier_call_id] = link


def _load_pending(conn: Connection, state: PageState) -> None:
    page_calls = {i["call_id"] for i in state.identities.values()}
    for part in chunked(page_calls):
        rows = conn.execute(_PENDING, {"b_instance": state.instance, "b_part": part}).mappings()
        for row in rows:
            state.pending.setdefault(row["call_id"], []).append(
                OutboxItem.model_validate(dict(row))
            )
    for call_id in page_calls:
        state.pending.setdefault(call_id, [])


def _load_comment_links(conn: Connection, state: PageState, comment_ids: set[str]) -> None:
    for part in chunked(comment_ids):
        chunk = {"b_instance": state.instance, "b_part": part}
        rows = conn.execute(_COMMENT_LINKS, chunk).mappings()
        for row in rows:
            state.comment_links[row["remote_comment_id"]] = CommentLink.model_validate(dict(row))
    state.comment_ids |= comment_ids


def _load_references(conn: Connection, state: PageState, references: set[str]) -> None:
    for part in chunked(references):
        rows = conn.execute(_BY_REFERENCE, {"b_part": part}).mappings()
        for row in rows:
            identity = Identity.model_validate(dict(row))
            for ref in {identity.remote_key or identity.remote_id, identity.remote_id} & set(part):
                state.by_reference.setdefault(ref, []).append(identity)
    for ref in references:
        state.by_reference.setdefault(ref, [])
    state.references |= references


def identities_in(conn: Connection, instance: str, call_ids: Collection[str]) -> list[Identity]:
    """The identities in ``instance`` of ``call_ids``, one query per :data:`CHUNK` of them."""
    out: list[Identity] = []
    for part in chunked(call_ids):
        chunk = {"b_instance": instance, "b_part": part}
        rows = conn.execute(_IDENTITIES_IN, chunk).mappings()
        out.extend(Identity.model_validate(dict(row)) for row in rows)
    return out
