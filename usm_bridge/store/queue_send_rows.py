"""The tasks sent to the workers' RabbitMQ queues (``queue_sends``), for the age of the oldest
task waiting in each (:mod:`usm_bridge.workers.send_log` says why and how it is read)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from usm_bridge.store import schema as t
from usm_bridge.store.unit_of_work import UnitOfWork, guarded

__all__ = ["QueueSendRows"]


class QueueSendRows(UnitOfWork):
    """A unit of work's record of the tasks sent to queues."""

    @guarded
    def record_queue_send(self, queue: str, *, sent_at: datetime, expires_at: datetime) -> None:
        """Record a task sent to ``queue`` at ``sent_at``, which no worker starts after
        ``expires_at``; the queue's rows whose task has expired by ``sent_at`` go (so the table
        holds at most what may still wait)."""
        sends = t.queue_sends
        self._conn.execute(
            sa.delete(sends).where(sends.c.queue == queue, sends.c.expires_at <= sent_at)
        )
        self._conn.execute(
            sa.insert(sends).values(queue=queue, sent_at=sent_at, expires_at=expires_at)
        )

    @guarded
    def nth_newest_send(self, queue: str, n: int, *, now: datetime) -> tuple[datetime | None, int]:
        """When the ``n``-th newest task sent to ``queue`` and not expired at ``now`` was sent
        (``n`` >= 1), or, when fewer are recorded, the oldest of them; and how many of the
        ``n`` are recorded (``n`` at most). ``(None, 0)``: none is."""
        sends = t.queue_sends
        live = sa.select(sends.c.sent_at).where(sends.c.queue == queue, sends.c.expires_at > now)
        newest = live.order_by(sends.c.sent_at.desc(), sends.c.id.desc()).limit(n).subquery()
        found, count = self._conn.execute(
            sa.select(sa.func.min(newest.c.sent_at), sa.func.count())
        ).one()
        # min() keeps the column's type: an aware UTC datetime on both back ends.
        return (found, int(count)) if count else (None, 0)
