"""The calls in the order a conformance report reads them: ``ix_calls_created_at_id``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

A conformance report reads every call once, oldest first (``ORDER BY created_at, id``) and a
page at a time (``usm_bridge.conformance.call_stream``). Without an index in that order the
database sorts the whole table, documents included, before it hands back the first row: in a
store of a million calls gigabytes through a temporary sort, and nothing streamed until it
ends. Read through this index, the first page comes at once and the rest follows as it lies.
(The partial ``ix_calls_closure_due`` has the same columns but holds only the closure's rows.)
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calls_created_at_id", "calls", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_calls_created_at_id", table_name="calls")
