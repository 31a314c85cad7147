"""When each waiting task was sent: what the age of a queue's oldest waiting task is read from.

Every task the bridge sends carries the header ``enqueued_at`` (Unix seconds). How the age of
the oldest waiting one is read depends on the broker:

- **Redis** keeps a queue as a list, oldest message at its tail: ``LINDEX queue -1`` reads it
  without taking it (:mod:`.inspection`), and its header says when it was sent.
- **RabbitMQ** tells a queue's length (a passive ``queue.declare``) but shows no message without
  taking it, and a message taken and handed back loses its place or, on a quorum queue, counts
  towards its delivery limit. So whoever sends a task to a RabbitMQ queue (the scheduler a
  cycle, a worker's cycle a push) records the send in the store (``queue_sends``: the queue,
  when, and when the task expires). A queue is first in, first out, and RabbitMQ drops an
  expired task when it reaches the head, so the oldest of the N tasks waiting in a queue is
  the N-th newest send recorded for it that has not expired. A task handed back to its queue
  because its worker died waits ahead of newer ones: until it is taken again the age shown is
  that of the N-th newest send, younger than it (docs/workers.md says so).

A send that cannot be recorded (the store is down) is logged and the task goes anyway: the age
shown is then too young, never a task lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import BridgeConfig
from ..errors import StoreError
from ..store import Store

__all__ = [
    "ENQUEUED_AT",
    "QueueAge",
    "SendRecorder",
    "oldest_recorded",
    "on_rabbitmq",
    "store_recorder",
]

log = logging.getLogger(__name__)

#: The header of every task the bridge sends: when it was sent (Unix seconds).
ENQUEUED_AT = "enqueued_at"

#: Records that a task was sent to a queue: (queue, sent at, expires after seconds).
SendRecorder = Callable[[str, float, float], None]

_AMQP_SCHEMES = ("amqp", "amqps", "pyamqp", "librabbitmq")


def on_rabbitmq(config: BridgeConfig) -> bool:
    """Whether the broker is RabbitMQ (whose sends are recorded in the store)."""
    scheme = config.workers.broker_url.split("://", 1)[0].lower()
    return scheme in _AMQP_SCHEMES


def store_recorder(store: Store) -> SendRecorder:
    """A recorder of sends into ``store`` (``queue_sends``); a failure is logged, not raised:
    the task is sent by then, and only the age ``status`` shows would suffer."""

    def record(queue: str, sent_at: float, expires: float) -> None:
        at = datetime.fromtimestamp(sent_at, UTC)
        try:
            with store.begin() as tx:
                tx.record_queue_send(queue, sent_at=at, expires_at=at + timedelta(seconds=expires))
        except StoreError as exc:
            log.warning("could not record a task sent to %s: %s", queue, exc,
                        extra={"event": "send_unrecorded", "queue": queue})  # fmt: skip

    return record


@dataclass(frozen=True)
class QueueAge:
    """The age of a queue's oldest waiting task, in seconds; ``exact`` False: at least that
    (fewer sends are recorded than tasks wait)."""

    seconds: float
    exact: bool = True


def oldest_recorded(store: Store, queue: str, waiting: int, *, now: float) -> QueueAge | None:
    """The age of the oldest of the ``waiting`` tasks of ``queue``, from the recorded sends
    (RabbitMQ); ``None`` when nothing waits or no send is recorded.

    :raises StoreError: the store cannot answer.
    """
    if waiting <= 0:
        return None
    moment = datetime.fromtimestamp(now, UTC)
    with store.begin(readonly=True) as tx:
        sent_at, found = tx.nth_newest_send(queue, waiting, now=moment)
    if sent_at is None:
        return None
    return QueueAge(max((moment - sent_at).total_seconds(), 0.0), exact=found >= waiting)
