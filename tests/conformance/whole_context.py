"""The report's snapshot held whole, to compare with the same report read page by page."""

from __future__ import annotations

import dataclasses

from usm_bridge.conformance.context import ReportContext
from usm_bridge.store import ChainLink, Identity, Store
from usm_bridge.store import schema as tables


def whole_context(store: Store, streamed: ReportContext) -> ReportContext:
    """``streamed`` with every call, event, link and identity of ``store`` held in lists, every
    call through the store's own validated reading."""
    with store.begin(readonly=True) as tx:
        conn = tx.connection
        links = [
            ChainLink.model_validate({k: v for k, v in row.items() if k != "id"})
            for row in conn.execute(
                tables.chain_links.select().order_by(tables.chain_links.c.id)
            ).mappings()
        ]
        identities = [
            Identity.model_validate(dict(row))
            for row in conn.execute(
                tables.identities.select().order_by(tables.identities.c.id)
            ).mappings()
        ]
        return dataclasses.replace(
            streamed,
            source=None,
            calls=tx.list_calls(),
            audit=tx.list_audit(),
            chain_links=links,
            identities=identities,
        )
