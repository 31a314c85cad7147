"""An outbox claim records its holder: ``outbox.claimed_by``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

A claimed item used to stay invisible for its whole lease (5 minutes) when the process that
claimed it died. Claims are now made under the target's push lock (a lock that dies with its
holder, :mod:`usm_bridge.store.locks`), and the item keeps who claimed it until it is settled:
the next holder of the lock hands the claims of a holder that is gone back at once. One
nullable column; existing rows are unclaimed. Downgrading drops it (claims then wait out their
lease again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("claimed_by", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "claimed_by")
