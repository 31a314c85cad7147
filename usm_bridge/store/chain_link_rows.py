"""Chain links: which supplier call was raised for which upstream call, and the locks and
look-ups that follow a chain (:mod:`usm_bridge.sync.router`, :mod:`usm_bridge.sync.closure`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from usm_bridge.errors import StoreError
from usm_bridge.model import utcnow
from usm_bridge.store import schema as t
from usm_bridge.store.audit_log import AuditLog
from usm_bridge.store.chain_query import lock_page_chains
from usm_bridge.store.records import ChainLink
from usm_bridge.store.unit_of_work import guarded

__all__ = ["ChainLinkRows", "chain_link"]

_links = t.chain_links
_SELECT_LINK_OF_SUPPLIER = sa.select(_links).where(
    _links.c.supplier_call_id == sa.bindparam("b_supplier_call_id")
)
_SELECT_LINKS_OF_UPSTREAM = (
    sa.select(_links)
    .where(_links.c.upstream_call_id == sa.bindparam("b_upstream_call_id"))
    .order_by(_links.c.id)
)
_INSERT_LINK = _links.insert()


class ChainLinkRows(AuditLog):
    """A unit of work's chain links."""

    @guarded
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

    @guarded
    def link_chain(self, upstream_call_id: str, supplier_call_id: str, route: str) -> ChainLink:
        """Record that the supplier call was raised for the upstream call through ``route``.

        Linking the same pair again returns the existing link.

        :raises StoreError: the supplier call already serves another upstream call.
        """
        existing = (
            self._conn.execute(_SELECT_LINK_OF_SUPPLIER, {"b_supplier_call_id": supplier_call_id})
            .mappings()
            .first()
        )
        if existing is not None:
            if existing["upstream_call_id"] != upstream_call_id:
                raise StoreError(
                    f"call {supplier_call_id!r} already supplies {existing['upstream_call_id']!r}"
                )
            return chain_link(existing)
        now = utcnow()
        self._conn.execute(
            _INSERT_LINK,
            {
                "upstream_call_id": upstream_call_id,
                "supplier_call_id": supplier_call_id,
                "route": route,
                "created_at": now,
            },
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

    @guarded
    def suppliers_of(self, call_id: str) -> list[ChainLink]:
        """The links from ``call_id`` to the supplier calls raised for it, oldest first."""
        rows = self._conn.execute(_SELECT_LINKS_OF_UPSTREAM, {"b_upstream_call_id": call_id})
        return [chain_link(row) for row in rows.mappings()]

    @guarded
    def upstream_of(self, call_id: str) -> ChainLink | None:
        """The link to the upstream call ``call_id`` was raised for, if any."""
        row = (
            self._conn.execute(_SELECT_LINK_OF_SUPPLIER, {"b_supplier_call_id": call_id})
            .mappings()
            .first()
        )
        return None if row is None else chain_link(row)


def chain_link(row: RowMapping) -> ChainLink:
    """The record of a ``chain_links`` row."""
    return ChainLink(
        upstream_call_id=row["upstream_call_id"],
        supplier_call_id=row["supplier_call_id"],
        route=row["route"],
        created_at=row["created_at"],
    )
