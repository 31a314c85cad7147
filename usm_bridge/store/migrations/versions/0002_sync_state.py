"""Sync state: the last run of each connector instance, and comment links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

``instance_states`` holds one row per connector instance (last start, last success, last
error, consecutive failures, the last cycle's counters) for ``usm-bridge status`` and for a
daemon that restarts. ``comment_links`` says which remote comment in which instance is the
bridge's copy of which canonical comment, so that reading the copy back is known as an echo
and a comment is never copied twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instance_states",
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("last_started", _TS, nullable=False),
        sa.Column("last_finished", _TS, nullable=False),
        sa.Column("last_success", _TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", _TS, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_counters", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_instance_states"),
        sa.CheckConstraint("consecutive_failures >= 0", name="ck_instance_states_failures"),
    )
    op.create_table(
        "comment_links",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(100), nullable=False),
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("comment_id", sa.String(100), nullable=False),
        sa.Column("source_comment_id", sa.String(100), nullable=False),
        sa.Column("remote_comment_id", sa.String(300), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comment_links"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], name="fk_comment_links_call_id_calls"),
        sa.UniqueConstraint(
            "call_id", "source_comment_id", name="uq_comment_links_call_id_source_comment_id"
        ),
        sa.UniqueConstraint("instance", "comment_id", name="uq_comment_links_instance_comment_id"),
        sa.UniqueConstraint(
            "instance", "remote_comment_id", name="uq_comment_links_instance_remote_comment_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("comment_links")
    op.drop_table("instance_states")
