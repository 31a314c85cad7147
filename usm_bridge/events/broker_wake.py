"""What an accepted event does under ``usm-bridge serve``: enqueue the instance's cycle on the
Celery broker for the workers, never run it here.

The debounce is the queue itself (:func:`~usm_bridge.workers.backlog.enqueue_cycle_if_idle`):
a cycle is sent only when none waits in the instance's queue, so a burst of deliveries while
one waits adds nothing, and the waiting cycle, once a worker takes it, reads every change the
burst announced. Within this process a lock per instance makes "look, then send" one step, so
concurrent deliveries cannot both find the queue empty; several ``serve`` replicas may each
send one at most.

When the broker does not answer, the delivery is refused with 503 (:class:`~.receiver.WakeFailed`)
so that the tool retries it later: an event accepted but never enqueued would be lost until
the next poll. The outage is logged once when it starts and once when it ends, not per
delivery (a tool retries every delivery, and a burst during an outage would flood the log),
and counted in ``usm_bridge_event_broker_failures_total``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from .receiver import WakeFailed

if TYPE_CHECKING:
    from celery import Celery

    from ..config import BridgeConfig

__all__ = ["BrokerWake", "serve_celery_app"]

log = logging.getLogger(__name__)

#: How long a connection to the broker may take, in seconds: a webhook sender waits for the
#: answer (Jira gives up after some seconds), and /healthz must answer a probe in time.
BROKER_TIMEOUT = 2


def serve_celery_app(config: BridgeConfig) -> Celery:
    """The workers' Celery app (:func:`~usm_bridge.workers.app.make_app`), failing fast: one
    retry of a connection or a send, not Celery's minutes of them, since a delivery waits."""
    from ..workers.app import make_app

    app = make_app(config)
    fast = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
    # RabbitMQ: publisher confirms, so that a send returns once the queue holds the cycle.
    # Without them basic.publish returns before the broker has routed it, and the next
    # delivery's look at the queue (a queue.declare on another channel) could still count 0
    # and send a second cycle; a 202 would also promise a cycle the broker may never have
    # taken. Redis's transport ignores the option: its LPUSH returns once the list holds it.
    confirmed = {"confirm_publish": True}
    app.conf.update(
        broker_connection_timeout=BROKER_TIMEOUT,
        broker_transport_options={**app.conf.broker_transport_options, **fast, **confirmed},
        task_publish_retry_policy=fast,
    )
    return app


class BrokerWake:
    """Enqueue an instance's cycle when none waits; :class:`~.receiver.WakeFailed` when the
    broker does not answer. Thread-safe (called on the server's thread pool)."""

    def __init__(
        self,
        app: Celery,
        config: BridgeConfig,
        registry: CollectorRegistry,
        instances: list[str],
    ) -> None:
        self.app = app
        self.config = config
        # Made up front: the receivers call in from many threads at once.
        self._locks = {name: threading.Lock() for name in instances}
        self._state = threading.Lock()
        self._down = False
        self.cycles = Counter(
            "usm_bridge_event_cycles",
            "Cycles enqueued for the workers by accepted events, and deliveries that found one "
            "already waiting (the debounce).",
            ["instance", "result"],
            registry=registry,
        )
        self.failures = Counter(
            "usm_bridge_event_broker_failures",
            "Accepted deliveries answered 503 because the broker did not answer.",
            registry=registry,
        )
        self.broker_up = Gauge(
            "usm_bridge_event_broker_up",
            "1 when the broker answered the last time it was asked, else 0.",
            registry=registry,
        )
        self.broker_up.set(1)
        for name in instances:
            for result in ("enqueued", "already_waiting"):
                self.cycles.labels(name, result)

    @property
    def down(self) -> bool:
        """Whether the broker failed the last time it was asked."""
        with self._state:
            return self._down

    def __call__(self, instance: str) -> bool:
        """Enqueue ``instance``'s cycle unless one waits; whether one was sent."""
        from ..workers.backlog import enqueue_cycle_if_idle

        with self._locks[instance]:
            try:
                sent = enqueue_cycle_if_idle(self.app, self.config, instance)
            except Exception as exc:  # whatever kombu's transport raises: the broker is gone
                self.failures.inc()
                self._went_down(exc)
                raise WakeFailed(str(exc)) from None
        self._came_back()
        self.cycles.labels(instance, "enqueued" if sent else "already_waiting").inc()
        return sent

    def check(self) -> tuple[bool, str]:
        """Whether the broker answers now (a connection, at most :data:`BROKER_TIMEOUT`), and
        why not; also ends or starts an outage as a delivery would."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
        except Exception as exc:
            self._went_down(exc)
            # The exception's type only: a transport's message may quote the broker URL.
            return False, type(exc).__name__
        self._came_back()
        return True, "ok"

    def _went_down(self, exc: BaseException) -> None:
        with self._state:
            first, self._down = not self._down, True
        self.broker_up.set(0)
        if first:
            from ..workers.app import safe_broker_url

            log.error(
                "the broker at %s does not answer (%s): events are refused with 503 until it "
                "does; the tools retry them",
                safe_broker_url(self.config), type(exc).__name__,
                extra={"event": "broker_down"},
            )  # fmt: skip

    def _came_back(self) -> None:
        with self._state:
            was, self._down = self._down, False
        self.broker_up.set(1)
        if was:
            log.info("the broker answers again: events are enqueued",
                     extra={"event": "broker_up"})  # fmt: skip
