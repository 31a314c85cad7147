"""What waits in a tool's queue, and the scheduler's rule built on it: a cycle is sent only to
an empty queue.

Why: a cycle not started within its interval expires, but a broker does not always drop it by
itself. RabbitMQ does (the message's ``expiration``); on Redis the expired message stays in
the list until a worker takes it and discards it. While the workers are down, or slower than
the schedule, a Redis queue then grows by one cycle every interval, and the workers, once
they read it, spend their time discarding stale cycles in the order they came, each older
than its interval by then: measured with 100 instances due every second
(``bench/bench_workers.py``), one worker of two pool processes ran 1 cycle a second and
discarded 95. A cycle sent only when nothing waits in its tool's queue keeps every queue at
one waiting task at most, so a worker that takes a task gets one that is due: the queue
cannot pile up, on any broker, and the missed turns are simply not sent (as the scheduler
already sends one cycle, not every turn it missed, after falling behind).

A push batch waiting in the queue also holds the cycle back: that tool's queue is behind,
and the cycle is sent at the instance's next turn once the queue has drained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import BridgeConfig
from .send_log import SendRecorder
from .tasks import enqueue_cycle, queue_of

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["enqueue_cycle_if_idle", "waiting"]


def waiting(app: Celery, config: BridgeConfig, instance: str) -> int:
    """The tasks waiting (sent, not yet taken by a worker) in the queue of ``instance``'s
    tool. A task a worker has taken and runs is not counted, even before it is acknowledged.

    The queue is declared as Celery declares it, so asking never fails for a queue that
    does not exist yet (it is then created empty, as the first task sent to it would).
    """
    queue = app.amqp.queues[queue_of(config, instance)]
    with app.connection_or_acquire() as conn:
        # kombu returns the channel's declare-ok (name, message_count, consumer_count) on
        # every transport; celery-types has it as the queue's name.
        declared: Any = queue.bind(conn.default_channel).queue_declare()
    return int(declared.message_count)


def enqueue_cycle_if_idle(
    app: Celery, config: BridgeConfig, instance: str, *, record: SendRecorder | None = None
) -> bool:
    """Send a cycle of ``instance`` unless a task already waits in its tool's queue; whether
    it was sent (``record``: as :func:`.tasks.enqueue_cycle`)."""
    if waiting(app, config, instance):
        return False
    enqueue_cycle(app, config, instance, record=record)
    return True
