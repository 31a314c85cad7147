"""Partial indexes for the queries of every cycle: ``ix_calls_closure_due``, ``ix_outbox_pending``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Every cycle of an instance runs the closure pass (``usm_bridge.sync.closure``), also when the
read brought nothing. It used to select every chained call delivered, confirmed or closed, and
then load each one to find it had nothing to do: in a store of a million calls that is tens of
thousands of calls read and validated per idle cycle, most of them supplier calls closed long
ago with their confirmation recorded. The index holds only the calls the pass can act on, as
their own row tells (the call's ``chain`` and ``confirmation`` in its JSON document), ordered
as the pass reads them (oldest first); the other calls are never read.

A partial index on expressions over the JSON column, spelled per back end: each reads JSON
with its own functions, and a query uses the index only when its WHERE clause repeats the
index's condition, which ``usm_bridge.store.schema.CLOSURE_DUE`` keeps for the queries. The
text is repeated here on purpose (a migration keeps describing the schema as it was).

Every cycle also looks for the tried creates of the instance it reads, and ``usm-bridge
status`` lists the oldest pending writes: both asked for the pending items of a target in the
order they were enqueued, and walked the whole outbox (done items included, two or more per
chain link ever made) to find the few still pending. ``ix_outbox_pending`` holds only those.

Nothing is written to the rows; downgrading drops the two indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_DUE = {
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


def upgrade() -> None:
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["target_instance", "id"],
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index(
        "ix_calls_closure_due",
        "calls",
        ["created_at", "id"],
        sqlite_where=sa.text(_DUE["sqlite"]),
        postgresql_where=sa.text(_DUE["postgresql"]),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_closure_due", table_name="calls")
    op.drop_index("ix_outbox_pending", table_name="outbox")
