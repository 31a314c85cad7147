"""``usm-bridge scheduler``: enqueue each enabled instance's cycle on its interval.

The instances' first cycles are spread evenly over their first interval (at most 10 s),
then each comes every interval give or take 10 % (jitter, so that instances never fall in
step, as in the daemon). Spread, because many instances started together would otherwise
come due in one burst every interval: 100 instances of 10 s, all due within the first second,
made the workers' queues wait up to 6 s at each turn while the workers could run twice the
cycles asked of them (``bench/bench_workers.py``; lag p95 6.0 s). An
instance whose last cycles failed (``consecutive_failures`` in the store, as ``status`` shows
it) is backed off as the daemon backs it off: ``interval * 2**failures``, at most ten
intervals or 30 minutes (whichever is less, but never less than the interval); the others keep
their interval. A scheduler that falls behind (a broker that was down) enqueues one cycle per
instance, not the ones it missed; and a cycle not started within its interval expires in its
queue.

One scheduler per store: it holds the store lock ``scheduler`` (a PostgreSQL advisory lock, a
file lock on SQLite) for as long as it runs, and the lock dies with it. A second one started by
mistake exits at once naming the first, or, with ``--wait``, stands by and takes over when the
first stops or dies: the schedule is never doubled.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

from ..errors import StoreError
from ..store import Store
from ..sync.daemon import BACKOFF_CEILING
from ..sync.exclusion import take_lock_for_good

__all__ = [
    "FIRST_SPREAD",
    "JITTER",
    "SCHEDULER_LOCK",
    "CycleSchedule",
    "backoff",
    "run_schedule",
    "stored_failures",
    "take_scheduler_lock",
]

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "scheduler"
#: Relative jitter of every interval: ±10 %.
JITTER = 0.1
#: The first cycles are spread over the first interval, or over this many seconds when the
#: interval is longer: no instance waits long for its first cycle after a start (the jitter
#: spreads longer intervals' cycles further at each turn).
FIRST_SPREAD = 10.0
#: How often a scheduler started with ``--wait`` looks whether the running one has stopped.
WAIT_POLL = 1.0


def backoff(interval: float, failures: int) -> float:
    """The delay before jitter after ``failures`` consecutive failures (0: ``interval``): the
    daemon's rule (:meth:`usm_bridge.sync.daemon.Schedule.backoff`)."""
    if failures <= 0:
        return interval
    cap = max(interval, min(10.0 * interval, BACKOFF_CEILING))
    return min(interval * 2.0 ** min(failures, 64), cap)


class CycleSchedule:
    """When each instance's next cycle is due, in seconds of a monotonic clock."""

    def __init__(
        self, intervals: Mapping[str, float], now: float, rng: random.Random | None = None
    ) -> None:
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self.intervals = dict(intervals)
        self.next_due = {
            name: now + self._rng.uniform(0.0, min(interval, FIRST_SPREAD))
            for name, interval in self.intervals.items()
        }

    def due(self, now: float, failures: Mapping[str, int] | None = None) -> list[str]:
        """The instances due at ``now``, each rescheduled one (jittered) interval on, or its
        backoff after its ``failures`` (consecutive failed cycles, by instance)."""
        failures = failures or {}
        ready = sorted(name for name, at in self.next_due.items() if at <= now)
        for name in ready:
            failed = failures.get(name, 0)
            delay = backoff(self.intervals[name], failed)
            step = delay * (1.0 + self._rng.uniform(-JITTER, JITTER))
            if failed:
                # Said once a turn of a failing instance: why its queue is quieter than usual.
                log.info("cycle of %s backed off: the next in %.1f s, after %d failed cycle(s)",
                         name, step, failed,
                         extra={"event": "cycle_backed_off", "instance": name})  # fmt: skip
            # From when it was due, to keep the cadence; from now when far behind.
            self.next_due[name] = max(self.next_due[name] + step, now + step / 2)
        return ready

    def wait_time(self, now: float) -> float:
        """Seconds until the next instance is due (0 when one is due now)."""
        return max(0.0, min(self.next_due.values(), default=now + 1.0) - now)


def take_scheduler_lock(
    store: Store, *, wait: bool, stop: threading.Event, poll: float = WAIT_POLL
) -> bool:
    """Take the store's scheduler lock until the store is closed or the process dies; False
    when ``stop`` was set while waiting for it.

    :param wait: stand by until the scheduler holding it stops, instead of raising.
    :raises LockHeldError: another scheduler holds it, and not ``wait``.
    """
    return take_lock_for_good(
        store,
        SCHEDULER_LOCK,
        role="scheduler",
        wait=wait,
        stop=stop,
        poll=poll,
        advice="one is enough (a second would double every cycle). Start this one with "
        "--wait to stand by and take over when it stops",
        waiting="another scheduler runs on the store %s (%s): standing by",
    )


def run_schedule(
    schedule: CycleSchedule,
    enqueue: Callable[[str], object],
    stop: threading.Event,
    *,
    failures: Callable[[], Mapping[str, int]] = dict,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Enqueue each instance's cycle when due, until ``stop`` is set. A cycle that cannot be
    sent (the broker is down) is logged and left to the instance's next turn.

    :param failures: the consecutive failures of each instance, asked when one is due.
    """
    while not stop.is_set():
        now = clock()
        if schedule.wait_time(now) > 0:
            stop.wait(schedule.wait_time(now))
            continue
        for name in schedule.due(now, failures()):
            try:
                enqueue(name)
            except Exception as exc:  # the broker's; the next turn tries again
                log.warning("could not enqueue a cycle of %s: %s", name, exc,
                            extra={"event": "enqueue_failed", "instance": name})  # fmt: skip


def stored_failures(store: Store) -> dict[str, int]:
    """Each instance's consecutive failed cycles as the store has them; none when the store
    cannot answer now (the intervals are kept, and the next turn asks again)."""
    try:
        with store.begin(readonly=True) as tx:
            return {s.instance: s.consecutive_failures for s in tx.list_instance_states()}
    except StoreError as exc:
        log.warning("could not read the instances' failures: %s", exc,
                    extra={"event": "failures_unread"})  # fmt: skip
        return {}
