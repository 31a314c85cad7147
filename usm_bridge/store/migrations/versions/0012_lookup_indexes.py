"""Identities found by remote key or remote id in any instance; four indexes no query used.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Each page the ingest stores looks up the identities its records' forks name, by key or id in
whichever instance holds them (``usm_bridge.store.page_state``: ``remote_key IN (...) OR
remote_id IN (...)``). No index started with either column (each started with ``instance``),
so every page read the whole identities table: measured on a 20,000-issue Jira backfill on
PostgreSQL, one sequential scan of it per page. ``ix_identities_remote_key`` and
``ix_identities_remote_id`` answer that query (the two ``IN`` lists, each from its index), and
the first also serves a lookup of a key in one instance, which the dropped
``ix_identities_instance_remote_key`` served (an instance's keys are a few among many).

Dropped because no query of the code reads them, so they only cost every insert (checked with
``pg_stat_user_indexes`` after a backfill and the store's test suite: never scanned):
``ix_calls_call_type``, ``ix_calls_updated_at``, ``ix_audit_log_at`` (two audit events are
inserted per new call) and ``ix_identities_instance_remote_key``.

Nothing is written to the rows; downgrading restores the indexes as they were.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: (name, table, columns) of the indexes this revision drops, as revision 0001 made them.
_UNUSED = (
    ("ix_calls_call_type", "calls", ["call_type"]),
    ("ix_calls_updated_at", "calls", ["updated_at"]),
    ("ix_audit_log_at", "audit_log", ["at"]),
    ("ix_identities_instance_remote_key", "identities", ["instance", "remote_key"]),
)


def upgrade() -> None:
    op.create_index("ix_identities_remote_key", "identities", ["remote_key"])
    op.create_index("ix_identities_remote_id", "identities", ["remote_id"])
    for name, table, _columns in _UNUSED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in _UNUSED:
        op.create_index(name, table, columns)
    op.drop_index("ix_identities_remote_id", table_name="identities")
    op.drop_index("ix_identities_remote_key", table_name="identities")
