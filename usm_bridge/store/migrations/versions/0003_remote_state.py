"""Remote states: what each remote record is known to hold, the base of the three-way merge.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

``remote_states`` holds one row per (instance, remote record): the outbound draft the tool
held when the bridge last read it, updated with what the bridge wrote since. A read compares
with it to tell a person's change from a stale value; a push writes only what differs from it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "remote_states",
        sa.Column("instance", sa.String(63), nullable=False),
        sa.Column("remote_id", sa.String(300), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("instance", "remote_id", name="pk_remote_states"),
    )


def downgrade() -> None:
    op.drop_table("remote_states")
