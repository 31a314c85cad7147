"""The tasks sent to the workers' RabbitMQ queues (``queue_sends``), for the age of the oldest
task waiting in each (:mod:`usm_bridge.workers.send_log` says why and how it is read)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from usm_bridge.store import schema as t
from usm_bridge.store.unit_of_work import UnitOfWork, guarded

__all__ = ["QueueSendRows"]

_sends = t.queue_sends
_b_queue: sa.BindParameter[str] = sa.bindparam("b_queue")
_DROP_EXPIRED = sa.delete(_sends).where(
    _sends.c.queue == _b_queue, _sends.c.expires_at <= sa.bindparam("b_sent_at")
)
_INSERT_SEND = sa.insert(_sends)
#: The sends of a queue not expired, newest first: :meth:`QueueSendRows.nth_newest_send`
#: limits them.
_LIVE_NEWEST_FIRST = (
    sa.select(_sends.c.sent_at)
    .where(_sends.c.queue == _b_queue, _sends.c.expires_at > sa.bindparam("b_now"))
    .order_by(_sends.c.sent_at.desc(), _sends.c.id.desc())
)


class QueueSendRows(UnitOfWork):
    """A unit of work's record of the tasks sent to queues."""

    @guarded
    def record_queue_send(self, queue: str, *, sent_at: datetime, expires_at: datetime) -> None:
        """Record a task sent to ``queue`` at ``sent_at``, which no worker starts after
        ``expires_at``; the queue's rows whose task has expired by ``sent_at`` go (so the table
        holds at most what may still wait)."""
        self._conn.execute(_DROP_EXPIRED, {"b_queue": queue, "b_sent_at": sent_at})
        self._conn.execute(
            _INSERT_SEND, {"queue": queue, "sent_at": sent_at, "expires_at": expires_at}
        )

    @guarded
    def nth_newest_send(self, queue: str, n: int, *, now: datetime) -> tuple[datetime | None, int]:
        """When the ``n``-th newest task sent to ``queue`` and not expired at ``now`` was sent
        (``n`` >= 1), or, when fewer are recorded, the oldest of them; and how many of the
        ``n`` are recorded (``n`` at most). ``(None, 0)``: none is."""
        newest = _LIVE_NEWEST_FIRST.limit(n).subquery()
        found, count = self._conn.execute(
            sa.select(sa.func.min(newest.c.sent_at), sa.func.count()),
            {"b_queue": queue, "b_now": now},
        ).one()
        # min() keeps the column's type: an aware UTC datetime on both back ends.
        return (found, int(count)) if count else (None, 0)
