"""What a simulated tool sends on its own (Jira's webhooks, ServiceNow's business rule):
POSTs queued by the thread that made a change, and made in order from one background
thread, so that a slow or dead receiver never holds up the tool's API.

Each queued job is a callable that makes its delivery (usually with :func:`post`) and records
what became of it; the outbox only runs them. Nothing is retried.

Not under :mod:`usm_bridge.testing`: that package imports the connector suite (pytest), and
the simulators run in ``usm-bridge demo`` from installed wheels, where pytest is not.
"""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

__all__ = ["Outbox", "post"]


def post(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """POST ``body`` to ``url`` (http or https only): the answer's status, or ``None`` and
    why there was none (refused, timed out...)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a delivery URL is http:// or https://, not {url!r}")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status), None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"


class Outbox:
    """Jobs run in order on one daemon thread, started by :meth:`start` (again after
    :meth:`close`)."""

    def __init__(self, thread_name: str) -> None:
        self.thread_name = thread_name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=self.thread_name, daemon=True
                )
                self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._queue.put(job)

    def wait_sent(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job ran; whether they all did in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread once the jobs queued before ran."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            finally:
                self._queue.task_done()
