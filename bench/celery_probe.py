"""``usm-bridge scheduler`` or ``usm-bridge worker``, unchanged, recording what ``bench_workers.py``
measures: ``python bench/celery_probe.py EVENTS.jsonl worker -c CONFIG -n 2``.

Each event is one JSON line appended to EVENTS (``O_APPEND``: the lines of several processes
never interleave):

- in the scheduler, ``{"e": "sent", "id", "instance", "t"}`` when a cycle task is published
  (Celery's ``before_task_publish``): the scheduler publishes a cycle the moment it is due, so
  ``t`` is its due time (a few milliseconds late at most, which only shortens the lag); and
  ``{"e": "held", "instance", "t"}`` for a turn not sent because a task still waited in the
  instance's queue (:mod:`usm_bridge.workers.backlog`);
- in a worker's pool process, ``{"e": "cycle", "id", "instance", "start", "end", "skipped",
  "failed", "requests"}`` around :func:`usm_bridge.workers.engine_calls.cycle` (the engine's
  cycle as the task runs it, lock taken or found held), with the HTTP requests it sent
  (counted in ``requests``' adapter, which every connector's session uses).

Times are ``time.time()``: every process runs on this one machine, on one clock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import requests.adapters
from celery import Celery, current_task
from celery.signals import before_task_publish

from usm_bridge.cli import main
from usm_bridge.config import BridgeConfig
from usm_bridge.sync.engine import SyncEngine
from usm_bridge.workers import backlog, engine_calls
from usm_bridge.workers.tasks import CYCLE_TASK


def _writer(path: str) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(event: dict[str, Any]) -> None:
        os.write(fd, (json.dumps(event) + "\n").encode())

    return write


def install(path: str) -> None:
    """Record the published cycles and the cycles run, into ``path``."""
    write = _writer(path)

    @before_task_publish.connect(weak=False)
    def _sent(sender: str | None = None, headers: Any = None, body: Any = None, **_: Any) -> None:
        if sender == CYCLE_TASK:
            args = body[0] if body else ()
            write({"e": "sent", "id": headers["id"], "instance": args[0], "t": time.time()})

    sent = 0
    plain_send = requests.adapters.HTTPAdapter.send

    def counted_send(self: requests.adapters.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        return plain_send(self, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = counted_send  # type: ignore[method-assign]
    plain_cycle = engine_calls.cycle

    def cycle(engine: SyncEngine, instance: str) -> engine_calls.CycleOutcome:
        before, start = sent, time.time()  # a pool process runs one task at a time
        outcome = plain_cycle(engine, instance)
        write(
            {
                "e": "cycle",
                "id": current_task.request.id,
                "instance": instance,
                "start": start,
                "end": time.time(),
                "skipped": outcome.summary.skipped is not None,
                "failed": outcome.summary.error is not None,
                "requests": sent - before,
            }
        )
        return outcome

    engine_calls.cycle = cycle  # type: ignore[assignment]
    plain_enqueue = backlog.enqueue_cycle_if_idle

    def enqueue(app: Celery, config: BridgeConfig, instance: str, **options: Any) -> bool:
        sent = plain_enqueue(app, config, instance, **options)
        if not sent:
            write({"e": "held", "instance": instance, "t": time.time()})
        return sent

    backlog.enqueue_cycle_if_idle = enqueue


if __name__ == "__main__":
    install(sys.argv[1])
    main(sys.argv[2:])
