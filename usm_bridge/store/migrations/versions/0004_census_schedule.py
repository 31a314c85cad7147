"""The census schedule: when each connector instance's census last ran.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

``instance_states.last_census`` lets a daemon that restarts more often than the census
interval still run the census when it is due: without it the schedule lived in memory only and
started again from nothing at every restart. Empty for every instance until its first census.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A nullable column with no default: both back ends add it in place, without a table copy.
    op.add_column("instance_states", sa.Column("last_census", _TS, nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table (batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table("instance_states") as batch:
        batch.drop_column("last_census")
