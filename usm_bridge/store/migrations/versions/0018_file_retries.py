"""The files a tool would not let the bridge read for now (401, 403, a URL refused):
``file_retries``.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08

A file whose download the tool refused for a reason to fix (the account's permission, a URL
the connector will not request) is listed on its call as not read for now, with a dead
letter; its record is stored all the same. One row here per such file says when it is tried
again without a change of its record, and how often it was tried (the back-off doubles from
the instance's interval up to a day; :mod:`usm_bridge.sync.file_retry`). The row goes when
the file is read. Only the new table is created; nothing else changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "file_retries",
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("file_id", sa.String(500), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_try_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("instance", "file_id", name="pk_file_retries"),
        sa.CheckConstraint("attempts >= 1", name="ck_file_retries_attempts"),
    )
    op.create_index(
        "ix_file_retries_instance_next_try_at", "file_retries", ["instance", "next_try_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_file_retries_instance_next_try_at", table_name="file_retries")
    op.drop_table("file_retries")
