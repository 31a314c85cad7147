"""On SQLite, the conformance pass's columns in an index of their own: ``ix_calls_pass_rows``.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

A conformance report reads every call's fact columns (revision 0016) oldest first. On SQLite
those columns lie in the call's row beside its document and facts (some 3 KB a row, a 4 KB page
a call), so a pass over a million calls read the whole table, some 4 GB, and sorted what it
selected in temporary files: with the OS's page cache cold, about 64 s, over the 60 s of issue
#17. An index on the pass's order (``created_at``, ``id``) holding those columns too (some
420 bytes a call) is read instead, in order, with no table read and no sort
(``usm_bridge.conformance.call_stream``).

Whether a row's facts are missing (the pass reads such a call through the model) is not a
column: SQLite 3.40 does not read an indexed expression from a covering index, so a partial
index ``ix_calls_without_facts`` holds those rows (normally none) for the pass to ask about.

SQLite only: PostgreSQL keeps the documents out of line (TOAST) and reads its narrow rows whole
in 9 s at a million calls, and its B-tree refuses an entry over a third of a page, which an
unbounded column (a fork list, a URL) could exceed. ``schema.SQLITE_ONLY`` names them.
Downgrading drops both.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: The pass's columns, frozen here as this revision indexes them (the pass's order first).
_PASS_ROWS = (
    "created_at", "id", "unit", "call_type", "status",
    "priority", "impact", "urgency", "service", "agreement", "customer_unit", "waiting_on",
    "waiting_process", "title", "source_instance", "source_remote_id", "source_remote_key",
    "source_url", "tool_created", "tool_updated", "tool_fulfilled", "tool_confirmed",
    "tool_closed", "upstream", "confirmation_kind", "confirmation_at", "confirmation_how",
    "forks",
)  # fmt: skip


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_index("ix_calls_pass_rows", "calls", list(_PASS_ROWS))
    op.execute("CREATE INDEX ix_calls_without_facts ON calls (id) WHERE facts IS NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_calls_without_facts", table_name="calls")
    op.drop_index("ix_calls_pass_rows", table_name="calls")
