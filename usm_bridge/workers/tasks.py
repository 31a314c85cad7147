"""The bridge's two tasks, their queues, and the runtime each worker process runs them on.

- ``usm_bridge.cycle(instance)``: one sync cycle of the instance (read, ingest, route).
- ``usm_bridge.push(target)``: one push batch of the target's outbox.

Both go to the queue of the tool they use, ``<queue_prefix><instance>`` (``tool.hr-mail``),
so a slow or hung tool only holds back its own tasks, and a worker can serve some tools only
(``usm-bridge worker -i NAME``). Both take the engine's locks (:mod:`..sync.exclusion`): at
most one cycle per instance and one push per target run at a time among every process on the
store; a task that finds its lock held does nothing, and logs who holds it. Neither is retried
by Celery: the scheduler enqueues the next cycle on the instance's interval, and a cycle pushes
what it touched. A task enqueued but not started within its expiry (the instance's interval)
is dropped, so queues do not pile up while the workers are down. Every task carries the
header ``enqueued_at``, and a send to RabbitMQ is recorded in the store: what ``usm-bridge
status`` reads the age of a queue's oldest waiting task from (:mod:`.send_log`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ..config import BridgeConfig
from ..runtime import Runtime, open_runtime
from ..sync.chain_hints import brought_news, event_driven, supplier_instances
from ..sync.metrics import PushCounts
from ..sync.spool_sweep import sweep_spool
from . import engine_calls
from .send_log import ENQUEUED_AT, SendRecorder, on_rabbitmq, store_recorder

if TYPE_CHECKING:
    from celery import Celery

    from .worker_metrics import WorkerMetrics

__all__ = [
    "CYCLE_TASK",
    "PUSH_EXPIRES",
    "PUSH_TASK",
    "WorkerRuntime",
    "bind_tasks",
    "enqueue_cycle",
    "enqueue_push",
    "queue_of",
]

log = logging.getLogger(__name__)

CYCLE_TASK = "usm_bridge.cycle"
PUSH_TASK = "usm_bridge.push"
#: A push batch not started within this many seconds is dropped: the next cycle of the target
#: pushes what is due anyway.
PUSH_EXPIRES = 300.0


def queue_of(config: BridgeConfig, instance: str) -> str:
    """The queue of the tasks that use ``instance``'s tool."""
    return f"{config.workers.queue_prefix}{instance}"


def enqueue_cycle(
    app: Celery, config: BridgeConfig, instance: str, *, record: SendRecorder | None = None
) -> None:
    """Send a cycle of ``instance``, to be dropped unless started within its interval.

    :param record: told of the send once it went (RabbitMQ: :func:`.send_log.store_recorder`).
    """
    _send(app, CYCLE_TASK, instance, queue_of(config, instance),
          config.instances[instance].interval, record)  # fmt: skip


def enqueue_push(
    app: Celery, config: BridgeConfig, target: str, *, record: SendRecorder | None = None
) -> None:
    """Send a push batch of ``target`` (``record``: as :func:`enqueue_cycle`)."""
    _send(app, PUSH_TASK, target, queue_of(config, target), PUSH_EXPIRES, record)


def _send(
    app: Celery, task: str, instance: str, queue: str, expires: float, record: SendRecorder | None
) -> None:
    sent_at = time.time()
    app.send_task(
        task, args=(instance,), queue=queue, expires=expires, headers={ENQUEUED_AT: sent_at}
    )
    if record is not None:
        record(queue, sent_at, expires)


class WorkerRuntime:
    """The runtime (store, plugins, connectors, engine) of one worker process, opened at its
    first task. A prefork pool forks its processes before any task: each opens its own, so no
    database connection or lock session is ever shared between two processes."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stack: ExitStack | None = None
        self._runtime: Runtime | None = None

    def get(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                # A copy inherited through fork is the parent's: left alone, never closed here.
                stack = ExitStack()
                self._runtime = stack.enter_context(open_runtime(self.config))
                # A new worker process: what the one it replaces left (killed by the hard
                # time limit mid-upload, say) is swept before its first task runs.
                sweep_spool(self.config.attachments.spool, self.config.attachments.kept_files())
                self._stack, self._pid = stack, os.getpid()
            return self._runtime

    def close(self) -> None:
        """Close this process's runtime (its connectors and store), if it opened one."""
        with self._lock:
            if self._stack is not None and self._pid == os.getpid():
                self._stack.close()
            self._stack = self._runtime = self._pid = None


def bind_tasks(app: Celery, runtime: WorkerRuntime, metrics: WorkerMetrics | None = None) -> None:
    """Register the two tasks on ``app``, running on ``runtime``; each reports what it did to
    ``metrics`` (the worker's ``/metrics``), whose main process also counts the time limits."""
    config = runtime.config
    # RabbitMQ shows no waiting task: each push a cycle sends is recorded (see .send_log).
    recorded = on_rabbitmq(config)
    # Celery's request class is where the main process learns of a time limit gone over.
    extra: dict[str, Any] = {} if metrics is None else {"Request": _timed_request(metrics)}

    # With events, a supplier's instance is polled minutes apart: a cycle with news enqueues
    # its cycle, as the daemon hints it (sync/chain_hints.py); one waits in the queue at most.
    suppliers = supplier_instances(config, list(config.instances), event_driven(config))

    def known(task: str, instance: str) -> bool:
        """Whether ``instance`` is in this worker's config; if not, the task is dropped with
        one line that says why (sent before the instance was removed, or by a scheduler that
        runs another config), instead of failing with a traceback on every delivery."""
        if instance in config.instances:
            return True
        log.error(
            "%s of %s dropped: %s is not an instance of this worker's config (it has %s); the "
            "scheduler and every worker must run the same config", task, instance, instance,
            ", ".join(sorted(config.instances)) or "none",
            extra={"event": "task_dropped", "instance": instance},
        )  # fmt: skip
        return False

    # Not shared: another app in this process (tests) must not get this runtime's task.
    @app.task(name=CYCLE_TASK, ignore_result=True, shared=False, **extra)
    def cycle(instance: str) -> None:
        if not known("cycle", instance):
            return
        if metrics is not None:
            metrics.cycle_started(instance)
        started = time.monotonic()
        try:
            outcome = engine_calls.cycle(runtime.get().engine, instance)
        except BaseException:  # the soft time limit, a bug: counted as a failed cycle
            if metrics is not None:
                metrics.cycle_finished(instance, ok=False, duration=time.monotonic() - started,
                                       counters=None, finished_at=time.time())  # fmt: skip
            raise
        summary = outcome.summary
        if summary.skipped:
            log.info("cycle of %s skipped: %s", instance, summary.skipped,
                     extra={"event": "cycle_skipped", "instance": instance})  # fmt: skip
        elif summary.error:
            log.warning("cycle of %s failed: %s %s", instance, summary.error, summary.counters(),
                        extra={"event": "cycle_failed", "instance": instance})  # fmt: skip
        else:
            log.info("cycle of %s: %s", instance, summary.counters(),
                     extra={"event": "cycle", "instance": instance})  # fmt: skip
        if metrics is not None:
            if summary.skipped:
                metrics.cycle_skipped(instance)
            else:
                metrics.cycle_finished(
                    instance,
                    ok=summary.ok,
                    duration=time.monotonic() - started,
                    counters=summary.counters(),
                    finished_at=time.time(),
                )
        record = store_recorder(runtime.get().store) if recorded else None
        for target in outcome.targets:
            try:
                enqueue_push(app, config, target, record=record)
            except Exception as exc:  # the broker's (kombu's OperationalError, a timeout)
                # The writes wait in the store, not in the broker: the target's own next cycle
                # enqueues its push again (a cycle always names its own instance). Failing the
                # task here would only print a traceback for a cycle that did its work.
                log.warning(
                    "could not enqueue the push to %s: %s (its next cycle will)", target, exc,
                    extra={"event": "push_enqueue_failed", "instance": target},
                )  # fmt: skip
        if brought_news(summary):
            wake_suppliers(app, config, sorted(suppliers.get(instance, ())))

    @app.task(name=PUSH_TASK, ignore_result=True, shared=False, **extra)
    def push(target: str) -> None:
        if not known("push", target):
            return
        started = time.monotonic()
        try:
            outcome = engine_calls.push(runtime.get().engine, target)
        except BaseException:
            if metrics is not None:
                metrics.push_finished(target, PushCounts("failed", time.monotonic() - started))
            raise
        if metrics is not None:
            duration = time.monotonic() - started
            metrics.push_finished(target, PushCounts.of(outcome.summary, duration=duration))
        if outcome.skipped:
            log.info("push to %s skipped: %s", target, outcome.skipped,
                     extra={"event": "push_skipped", "instance": target})  # fmt: skip
        elif outcome.stalled:
            log.warning("push to %s stalled after %d pushed: %s", target, outcome.pushed,
                        outcome.stalled,
                        extra={"event": "push_stalled", "instance": target})  # fmt: skip
        else:
            log.info("push to %s: %d pushed, %d dead letters, %d waiting", target,
                     outcome.pushed, outcome.dead_letters, outcome.waiting,
                     extra={"event": "push", "instance": target})  # fmt: skip


def wake_suppliers(app: Celery, config: BridgeConfig, suppliers: list[str]) -> None:
    """Enqueue a cycle of each of ``suppliers`` unless one waits; a broker that does not
    answer is logged, not raised: the supplier's poll comes anyway."""
    from .backlog import enqueue_cycle_if_idle

    for supplier in suppliers:
        try:
            enqueue_cycle_if_idle(app, config, supplier)
        except Exception as exc:  # the broker's (kombu's OperationalError, a timeout)
            log.warning(
                "could not enqueue the cycle of %s: %s (its poll will come)", supplier, exc,
                extra={"event": "wake_enqueue_failed", "instance": supplier},
            )  # fmt: skip


def _timed_request(metrics: WorkerMetrics) -> type:
    """Celery's request class, counting the time limits its tasks go over: the worker's main
    process enforces them, and calls ``on_timeout`` there for the soft and the hard one."""
    from celery.worker.request import Request

    class TimedRequest(Request):
        def on_timeout(self, soft: bool, timeout: float) -> None:
            super().on_timeout(soft, timeout)
            args = self.args
            instance = args[0] if isinstance(args, list | tuple) and args else "?"
            job = _JOBS.get(self.task_name, str(self.task_name))
            metrics.time_limit_hit(str(instance), job=job, limit="soft" if soft else "hard")

    return TimedRequest


_JOBS = {CYCLE_TASK: "cycle", PUSH_TASK: "push"}
