"""Watchers: one thread per instance whose connector can watch its tool (:meth:`Connector.watch`:
IMAP IDLE, a Maildir's folders), each change it sees waking the instance's cycle through
:meth:`~.daemon.Daemon.hint`, as a webhook delivery does.

A watcher only hints: polling goes on at the instance's interval whatever the watcher does,
so a watcher that is down costs latency, never a change. A watcher that raises is logged and
started again after a backoff (doubling from ``backoff_initial`` up to ``backoff_max``, reset
once a run lasted ``steady`` seconds); one that returns before the stop said it cannot watch
(it logged why) and is not started again. None of it ever stops the daemon.

Stopping: :meth:`Watchers.stop` sets the event every watcher waits on; :meth:`Watchers.join`
waits a bounded time for the threads (daemon threads: one that overstays is named in the log,
and cannot hold the process).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..errors import UsmBridgeError

if TYPE_CHECKING:
    from ..config import BridgeConfig
    from .instances import InstanceRegistry

__all__ = ["Watch", "Watchers", "watches_of"]

log = logging.getLogger(__name__)

#: A connector's :meth:`~usm_bridge.connector.Connector.watch`: ``watch(wake, stop)``.
Watch = Callable[[Callable[[], None], threading.Event], None]


def watches_of(
    config: BridgeConfig, registry: InstanceRegistry, names: Iterable[str]
) -> dict[str, Watch]:
    """The watch of each of ``names`` whose config leaves ``watch`` on and whose connector
    offers one. A connector that cannot be built is left to its cycles, which report why."""
    found: dict[str, Watch] = {}
    for name in names:
        inst = config.instances.get(name)
        if inst is None or not inst.watch:
            continue
        try:
            connector = registry.connector(name)
        except UsmBridgeError:
            continue
        # By getattr: an embedding application's (or a test's) connector may predate watching.
        if getattr(type(connector), "watches", False) is True:
            found[name] = connector.watch
    return found


class Watchers:
    """The watcher threads of a daemon; see the module docstring.

    :param wake: called with the instance's name on every change a watcher sees.
    :param failed: called with the instance's name when its watcher failed (for the metrics).
    """

    def __init__(
        self,
        watches: Mapping[str, Watch],
        wake: Callable[[str], object],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        steady: float = 60.0,
        rng: random.Random | None = None,
        failed: Callable[[str], object] | None = None,
    ) -> None:
        self.watches = dict(watches)
        self._wake = wake
        self._failed = failed
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.steady = steady
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.stop_event = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        #: How many times each watcher was started (restarts after a crash included).
        self.starts: dict[str, int] = dict.fromkeys(self.watches, 0)
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self.watches)

    def start(self) -> None:
        """A thread per watcher (once)."""
        for name, watch in sorted(self.watches.items()):
            if name in self._threads:
                continue
            thread = threading.Thread(
                target=self._supervise, args=(name, watch), name=f"usm-watch-{name}", daemon=True
            )
            self._threads[name] = thread
            thread.start()

    def stop(self) -> None:
        """Tell every watcher to stop (returns at once; :meth:`join` waits)."""
        self.stop_event.set()

    def join(self, timeout: float = 5.0) -> list[str]:
        """Wait up to ``timeout`` seconds in all for the threads; the names of those still
        running (logged)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads.values():
            thread.join(max(deadline - time.monotonic(), 0.0))
        late = sorted(name for name, t in self._threads.items() if t.is_alive())
        if late:
            log.warning("the watcher of %s did not stop within %.0f s; left behind",
                        ", ".join(late), timeout,
                        extra={"event": "watch_late", "instances": late})  # fmt: skip
        return late

    def _supervise(self, name: str, watch: Watch) -> None:
        def wake() -> None:
            if not self.stop_event.is_set():
                self._wake(name)

        delay = self.backoff_initial
        while not self.stop_event.is_set():
            with self._lock:
                self.starts[name] += 1
            started = time.monotonic()
            log.info("watching %s for changes", name,
                     extra={"event": "watch_start", "instance": name})  # fmt: skip
            try:
                watch(wake, self.stop_event)
            except Exception as exc:
                if time.monotonic() - started >= self.steady:
                    delay = self.backoff_initial
                pause = delay * (1.0 + self._rng.uniform(-0.1, 0.1))
                error = _describe(exc)
                extra = {"event": "watch_crash", "instance": name, "error": error,
                         "next_in_s": round(pause, 1)}  # fmt: skip
                log.error("the watcher of %s failed: %s; polling goes on, watching again in "
                          "%.1f s", name, error, pause, extra=extra,
                          exc_info=not isinstance(exc, UsmBridgeError))  # fmt: skip
                if self._failed is not None:
                    self._failed(name)
                delay = min(delay * 2.0, self.backoff_max)
                self.stop_event.wait(pause)
                continue
            if not self.stop_event.is_set():
                log.info("the watcher of %s ended: polling only", name,
                         extra={"event": "watch_end", "instance": name})  # fmt: skip
            return


def _describe(exc: BaseException) -> str:
    from ..http import redact_text  # the http layer imports much; only needed on a failure

    return redact_text(f"{type(exc).__name__}: {exc}")
