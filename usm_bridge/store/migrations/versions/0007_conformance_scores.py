"""Conformance scores: each recorded report's scores, for trends over periods.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

``usm-bridge report conformance --record`` keeps the scores of the period it reports on: one
row for the enterprise, one per unit, and one per check and unit, with the exceptions found.
A later report compares its period with the previous one and draws the last periods from these
rows. Recording the same period with the same config again replaces its rows (the unique key),
so a re-run never counts twice. Only the new table is created; nothing else changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conformance_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("period_since", _TS, nullable=False),
        sa.Column("period_until", _TS, nullable=False),
        sa.Column("period_label", sa.String(100), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(63), nullable=False),
        sa.Column("check_id", sa.String(200), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("exceptions", sa.Integer(), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conformance_scores"),
        sa.UniqueConstraint(
            "period_since",
            "period_until",
            "config_digest",
            "unit",
            "check_id",
            name="uq_conformance_scores_period_scope",
        ),
        sa.CheckConstraint("exceptions >= 0", name="ck_conformance_scores_exceptions"),
    )
    op.create_index("ix_conformance_scores_period_until", "conformance_scores", ["period_until"])


def downgrade() -> None:
    op.drop_index("ix_conformance_scores_period_until", table_name="conformance_scores")
    op.drop_table("conformance_scores")
