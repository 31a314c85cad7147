"""``/metrics`` of a Celery worker (``usm-bridge worker --metrics-port N``).

The same metrics as the daemon's, by the same names (:mod:`usm_bridge.sync.metrics`): cycles
and their durations and counters, push batches and what they pushed, held back and gave up,
time-limit hits; each sample also labelled ``hostname``, the worker's Celery node name
(``usm-bridge-PID@HOST``, as ``celery inspect`` and the Celery exporter name it), so that
the workers of a deployment add up in Prometheus without clashing.

A worker runs its tasks in pool processes (prefork) but serves ``/metrics`` from its main
process, which outlives them. Each task reports what it did to the main process as one
datagram over a Unix socket pair made before the pool forks: a datagram arrives whole or not
at all, so a pool process killed mid-send (SIGKILL, the hard time limit) can never corrupt or
block the channel, which a pipe or a queue with a lock could. A report the main process cannot
take at once (its buffer full) is dropped rather than made to wait: metrics never slow a task.
The time limits are seen by the main process itself, which enforces them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from ..sync.metrics import BridgeMetrics, PushCounts, exposition_of

__all__ = ["WorkerMetrics"]

log = logging.getLogger(__name__)

#: Largest report: an instance's name and a handful of counters fit many times over.
_MAX_REPORT = 8192


class _Labelled:
    """The samples of ``registry``, each with ``hostname`` added (a custom collector)."""

    def __init__(self, registry: CollectorRegistry, hostname: str) -> None:
        self._registry = registry
        self._hostname = hostname

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            for sample in metric.samples:
                labelled.add_sample(
                    sample.name,
                    {**sample.labels, "hostname": self._hostname},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
            yield labelled


class WorkerMetrics:
    """The metrics of one worker, kept in its main process and reported from any process of
    it (:meth:`report`: call it in the pool process that ran the task).

    :param instances: the instances whose queues the worker serves: their series exist (at 0)
        from the start.
    :param hostname: the worker's node name, the ``hostname`` label of every sample.
    """

    def __init__(self, instances: Iterable[str], hostname: str) -> None:
        self.metrics = BridgeMetrics()
        for name in instances:
            self.metrics.declare(name)
        # A worker sees some of an instance's cycles only: the consecutive failures are the
        # store's (status shows them), so it shows none rather than a 0 that is not known.
        self.metrics.failures.clear()
        self.hostname = hostname
        self._exposed = CollectorRegistry()
        self._exposed.register(_Labelled(self.metrics.registry, hostname))
        # Made before the pool forks: every pool process inherits the sending end.
        self._inbox, self._outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)
        self._thread: threading.Thread | None = None

    # -- in the pool processes

    def report(self, event: Mapping[str, Any]) -> None:
        """Send what a task did to the main process; dropped if it cannot take it now."""
        try:
            self._outbox.send(json.dumps(event).encode())
        except OSError as exc:  # full (the main process is behind) or closed (shutting down)
            log.debug("a metrics report was dropped: %s", exc)

    def cycle_started(self, instance: str) -> None:
        self.report({"event": "cycle_started", "instance": instance})

    def cycle_skipped(self, instance: str) -> None:
        self.report({"event": "cycle_skipped", "instance": instance})

    def cycle_finished(
        self,
        instance: str,
        *,
        ok: bool,
        duration: float,
        counters: Mapping[str, int] | None,
        finished_at: float,
    ) -> None:
        self.report({"event": "cycle", "instance": instance, "ok": ok, "duration": duration,
                     "counters": dict(counters) if counters is not None else None,
                     "finished_at": finished_at})  # fmt: skip

    def push_finished(self, instance: str, done: PushCounts) -> None:
        self.report({"event": "push", "instance": instance, "outcome": done.outcome,
                     "duration": done.duration, "pushed": done.pushed, "held": done.held,
                     "dead_letters": done.dead_letters})  # fmt: skip

    # -- in the main process

    def apply(self, event: Mapping[str, Any]) -> None:
        """Count one report into the metrics (a malformed one is logged and ignored)."""
        try:
            kind, instance = str(event["event"]), str(event["instance"])
            if kind == "cycle_started":
                self.metrics.cycle_started(instance)
            elif kind == "cycle_skipped":
                self.metrics.cycle_skipped(instance)
            elif kind == "cycle":
                self.metrics.cycle_finished(
                    instance,
                    ok=bool(event["ok"]),
                    duration=float(event["duration"]),
                    failures=None,  # the store keeps them (status shows them)
                    summary=event.get("counters"),
                    finished_at=float(event["finished_at"]),
                )
            elif kind == "push":
                self.metrics.push_finished(
                    instance,
                    PushCounts(
                        str(event["outcome"]),
                        float(event["duration"]),
                        pushed=int(event["pushed"]),
                        held=int(event["held"]),
                        dead_letters=int(event["dead_letters"]),
                    ),
                )
            else:
                raise ValueError(f"unknown event {kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("a metrics report was not understood: %s", exc)

    def time_limit_hit(self, instance: str, *, job: str, limit: str) -> None:
        """A task went over its soft or hard limit (seen by the main process itself)."""
        self.metrics.time_limit_hit(instance, job=job, limit=limit)

    def start(self) -> None:
        """Take the pool processes' reports, in a thread of the main process."""
        self._thread = threading.Thread(
            target=self._receive, name="usm-bridge-metrics", daemon=True
        )
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self._inbox.recv(_MAX_REPORT)
            except OSError:  # closed: the worker stops
                return
            if not data:
                return
            try:
                event = json.loads(data)
            except ValueError:
                log.warning("a metrics report was not JSON")
                continue
            if isinstance(event, dict):
                self.apply(event)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._outbox.send(b"")  # an empty report ends the receiving thread
        self._inbox.close()
        self._outbox.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics, each sample labelled with the worker's hostname."""
        return exposition_of(self._exposed, accept)
