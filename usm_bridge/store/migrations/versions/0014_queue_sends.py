"""The tasks sent to the workers' RabbitMQ queues: ``queue_sends``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

``usm-bridge status`` shows the age of the oldest task waiting in each worker queue. Redis
shows the oldest message of a queue without taking it; RabbitMQ does not (a message looked at
is taken, and handed back out of order or, on a quorum queue, towards its delivery limit). So
whoever sends a task to a RabbitMQ queue (the scheduler, a worker's cycle) records when, and
until when the task may wait: a queue is first in, first out, so the oldest of the N tasks
waiting is the N-th newest recorded send (``usm_bridge.workers.send_log``). Only the new
table is created; nothing else changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "queue_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("sent_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_sends"),
    )
    op.create_index("ix_queue_sends_queue_sent_at", "queue_sends", ["queue", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_queue_sends_queue_sent_at", table_name="queue_sends")
    op.drop_table("queue_sends")
