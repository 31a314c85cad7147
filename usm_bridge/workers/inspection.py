"""What ``usm-bridge status`` shows of the Celery workers: each live worker with its queues
and the tasks it runs, and each queue's length and the age of its oldest waiting task.

- **Workers** answer Celery's remote control (``inspect active_queues`` and ``active``) within
  a short timeout; only those consuming one of this config's queues are shown (other bridges
  may share the broker). None answering is said as such: "no worker of these queues answered
  within 2 s".
- **Queue lengths** come from a passive ``queue.declare`` (on Redis: the list's length); a
  queue nobody declared yet holds nothing.
- **The oldest waiting task's age**: on Redis its ``enqueued_at`` header, read at the tail of
  the list without taking it; on RabbitMQ the sends recorded in the store (:mod:`.send_log`).

A broker that does not answer is said in one line; the store's part of ``status`` is shown
all the same.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import BridgeConfig
from ..errors import StoreError
from ..store import Store
from .app import make_app, safe_broker_url
from .send_log import ENQUEUED_AT, QueueAge, oldest_recorded, on_rabbitmq
from .tasks import CYCLE_TASK, PUSH_TASK, queue_of

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

__all__ = [
    "DEFAULT_TIMEOUT",
    "ActiveTask",
    "QueueView",
    "WorkerView",
    "WorkersView",
    "collect_workers",
]

#: Seconds ``status`` waits for the broker and for the workers' answers.
DEFAULT_TIMEOUT = 2.0

_TASK_KINDS = {CYCLE_TASK: "cycle", PUSH_TASK: "push"}


@dataclass(frozen=True)
class ActiveTask:
    """A task a worker runs: ``cycle`` or ``push``, of which instance, for how long."""

    task: str
    instance: str | None
    running_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "instance": self.instance,
            "running_seconds": _rounded(self.running_seconds),
        }


@dataclass(frozen=True)
class WorkerView:
    name: str
    queues: tuple[str, ...]
    active: tuple[ActiveTask, ...] = ()
    #: False: the worker named its queues but did not say in time what it runs (a busy or
    #: loaded host); ``active`` is then empty without meaning idle.
    active_known: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queues": list(self.queues),
            "active": [task.as_json() for task in self.active] if self.active_known else None,
        }


@dataclass(frozen=True)
class QueueView:
    """One instance's queue: tasks waiting, and the oldest one's age (``None``: nothing
    waits, or its age is not known)."""

    queue: str
    instance: str
    waiting: int
    oldest: QueueAge | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "instance": self.instance,
            "waiting": self.waiting,
            "oldest_age_seconds": None if self.oldest is None else _rounded(self.oldest.seconds),
            # False: the oldest task is at least that old (fewer sends recorded than wait).
            "oldest_age_exact": None if self.oldest is None else self.oldest.exact,
        }


@dataclass(frozen=True)
class WorkersView:
    """The workers' part of ``status``; a ``*_problem`` says what could not be known."""

    broker: str
    timeout: float
    workers: tuple[WorkerView, ...] = ()
    queues: tuple[QueueView, ...] = ()
    broker_problem: str | None = None
    workers_problem: str | None = None
    #: Why an age could not be read (the store did not answer), if one could not.
    age_problem: str | None = field(default=None)

    def as_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "broker_problem": self.broker_problem,
            "workers_problem": self.workers_problem,
            "age_problem": self.age_problem,
            "workers": [worker.as_json() for worker in self.workers],
            "queues": [queue.as_json() for queue in self.queues],
        }


def collect_workers(
    config: BridgeConfig,
    *,
    instances: Iterable[str],
    store: Store | None,
    timeout: float = DEFAULT_TIMEOUT,
    now: float | None = None,
) -> WorkersView:
    """The workers consuming ``instances``' queues, and those queues.

    :param store: where RabbitMQ's sends are recorded (``None``: ages unknown there).
    :param now: Unix seconds (default: now).
    """
    moment = time.time() if now is None else now
    queues = {queue_of(config, name): name for name in instances}
    app = make_app(config)
    try:
        return _collect(app, config, queues, store, timeout, moment)
    finally:
        app.close()  # its pool of broker connections


def _collect(
    app: Celery,
    config: BridgeConfig,
    queues: Mapping[str, str],
    store: Store | None,
    timeout: float,
    moment: float,
) -> WorkersView:
    broker = safe_broker_url(config)
    try:
        with app.connection_for_read(connect_timeout=timeout) as conn:
            # One try and one retry at once: status waits for no backoff.
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=max(int(timeout), 1))
            lengths = {queue: _length(conn, queue) for queue in queues}
            tails = _redis_tails(conn, lengths) if _on_redis(conn) else {}
    except Exception as exc:  # whatever the transport raises: said, never a traceback
        return WorkersView(
            broker, timeout, broker_problem=f"the broker at {broker} did not answer: "
            f"{_without_password(config, exc)}",
        )  # fmt: skip
    ages, age_problem = _ages(config, store, lengths, tails, moment)
    views = tuple(
        QueueView(queue, name, lengths[queue], ages.get(queue)) for queue, name in queues.items()
    )
    workers, workers_problem = _workers(app, set(queues), timeout, moment)
    return WorkersView(broker, timeout, workers, views, None, workers_problem, age_problem)


def _length(conn: Connection, queue: str) -> int:
    """Tasks waiting in ``queue`` (0: nobody declared it yet). A channel of its own: AMQP
    closes a channel whose passive declare names a missing queue."""
    from amqp.exceptions import NotFound
    from kombu.exceptions import ChannelError

    channel: Any = conn.channel()  # a kombu or amqp channel: typed as neither
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except (NotFound, ChannelError):
        return 0
    finally:
        with contextlib.suppress(Exception):  # a channel the broker closed already
            channel.close()


def _on_redis(conn: Connection) -> bool:
    return str(conn.transport.driver_type) == "redis"


def _redis_tails(conn: Connection, lengths: Mapping[str, int]) -> dict[str, float]:
    """The ``enqueued_at`` of the oldest task of each non-empty queue, read at the tail of its
    lists (one per priority) without taking it."""
    channel: Any = conn.default_channel
    client = channel.client
    tails: dict[str, float] = {}
    for queue, waiting in lengths.items():
        if not waiting:
            continue
        stamps = []
        for priority in channel.priority_steps:
            raw = client.lindex(channel._q_for_pri(queue, priority), -1)
            stamp = _stamp(raw)
            if stamp is not None:
                stamps.append(stamp)
        if stamps:
            tails[queue] = min(stamps)
    return tails


def _stamp(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"][ENQUEUED_AT]
    except (ValueError, KeyError, TypeError):  # not ours, or sent before the header existed
        return None
    return float(value) if isinstance(value, int | float) else None


def _ages(
    config: BridgeConfig,
    store: Store | None,
    lengths: Mapping[str, int],
    tails: Mapping[str, float],
    now: float,
) -> tuple[dict[str, QueueAge], str | None]:
    if not on_rabbitmq(config):
        return {q: QueueAge(max(now - at, 0.0)) for q, at in tails.items()}, None
    if store is None:
        return {}, None
    ages: dict[str, QueueAge] = {}
    try:
        for queue, waiting in lengths.items():
            age = oldest_recorded(store, queue, waiting, now=now)
            if age is not None:
                ages[queue] = age
    except StoreError as exc:
        return ages, f"the store did not say when the waiting tasks were sent: {exc}"
    return ages, None


def _workers(
    app: Celery, queues: set[str], timeout: float, now: float
) -> tuple[tuple[WorkerView, ...], str | None]:
    """The workers consuming one of ``queues``, or why none is shown."""
    # Other bridges' workers may answer on a shared broker: only ours count.
    no_answer = f"no worker of these queues answered within {timeout:g} s"
    try:
        consumed = app.control.inspect(timeout=timeout).active_queues() or {}
        ours = {
            name: tuple(sorted(q["name"] for q in listed if q.get("name") in queues))
            for name, listed in consumed.items()
        }
        ours = {name: listed for name, listed in ours.items() if listed}
        if not ours:
            return (), no_answer
        # Only those: each answers at once, and the call returns when all have.
        running = (
            app.control.inspect(destination=sorted(ours), timeout=timeout, limit=len(ours)).active()
            or {}
        )
    except Exception as exc:  # the broker went away between the two questions
        return (), f"{no_answer}: {type(exc).__name__}: {exc}"
    return tuple(
        WorkerView(
            name, queues_of, tuple(_active(running.get(name) or [], now)),
            active_known=name in running,
        )
        for name, queues_of in sorted(ours.items())
    ), None  # fmt: skip


def _active(tasks: Iterable[Mapping[str, Any]], now: float) -> Iterable[ActiveTask]:
    for task in tasks:
        args = task.get("args")
        instance = args[0] if isinstance(args, list | tuple) and args else None
        started = task.get("time_start")
        yield ActiveTask(
            _TASK_KINDS.get(str(task.get("name")), str(task.get("name"))),
            instance if isinstance(instance, str) else None,
            max(now - started, 0.0) if isinstance(started, int | float) else None,
        )


def _without_password(config: BridgeConfig, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    from kombu.utils.url import url_to_parts

    password = url_to_parts(config.workers.broker_url).password
    return text.replace(password, "**") if password else text


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
