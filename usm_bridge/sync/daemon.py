"""The sync daemon: a scheduler of sync cycles, one connector instance at a time per instance.

Scheduling, per enabled instance:

* the first cycle starts within the first 10 % of its interval (a random offset, so that
  instances configured alike do not all fire at start-up);
* after a successful cycle the next one is due ``interval`` after the last one *started*, give
  or take 10 % (jitter, so instances never fall in step); a cycle that overran its interval is
  followed at once;
* after a failure the instance backs off exponentially from the end of the failed cycle:
  ``interval * 2**failures``, capped at ``max(interval, min(10 * interval, 30 min))``, with the
  same jitter; one success resets it. The other instances are not held back: cycles run in a
  few threads (at most ``[daemon] max_workers`` cycles at once), and never two cycles of one
  instance at once;
* the first successful cycle that starts ``census_interval`` or more after the start of the
  cycle the last census followed ends with a census of the instance's remote ids (records
  that vanished from the tool are marked in the store); half an interval early counts, so that
  jitter never puts the census off by a whole cycle. When the last census ran comes from the
  store and goes back into it (``instance_states.last_census``): a daemon restarted more often
  than the census interval still runs it. An instance that never had one gets one after its
  first successful cycle. A census that fails counts as run: it is tried again an interval
  later, not after every cycle.

Pushes run apart from cycles (:mod:`.push_jobs`): a cycle reads and ingests its instance only
(:meth:`~.engine.SyncEngine.cycle`), and the writes it queued are pushed by a push job of each
target, on that target's own slot and thread. Every instance has its own threads (one for its
cycle, one for its pushes), so no job ever waits for a free thread. ``[daemon] max_workers``
bounds the cycles that run at once (pushes, one per target at most, each waiting on its own
tool, are not bounded by it), and a cycle past ``[daemon] time_limit`` is marked hung and no
longer counts (:mod:`.time_limits`): a tool that accepts connections and never answers delays
its own instance, never another one's interval.

One daemon per store: :func:`serve` takes the store's daemon lock first (:mod:`.exclusion`); a
second daemon on the same store exits naming the first, or waits for it with ``--wait``. A
cycle whose instance runs in another process (``sync --once``) is skipped: logged as such,
counted as ``outcome="skipped"``, and the instance is due again an interval later, with its
failures, last success and census as they were (a skip is neither).

Watching: an instance whose connector can watch its tool (IMAP IDLE, a Maildir's folders) and
whose config leaves ``watch`` on has a watcher thread (:mod:`.watchers`) that wakes its cycle
through :meth:`Daemon.hint` on every change; polling goes on beside it.

Stopping: :meth:`Daemon.stop` (SIGTERM or SIGINT, relayed by :func:`.signals.stop_on_signals`)
sets the engine's stop event; a cycle in flight finishes the write it is doing, commits, and
returns; no new cycle starts; then :meth:`Daemon.run` returns. A second signal exits the
process at once.

Time is injected (:class:`Clock`): tests drive the daemon with a fake clock and no real sleeps.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..config import BridgeConfig
from ..errors import ConfigurationError, UsmBridgeError
from .chain_hints import brought_news, event_driven, supplier_instances
from .metrics import BridgeMetrics, Health, PushCounts
from .push_jobs import PushJobs
from .signals import stop_on_signals
from .spool_sweep import sweep_spool
from .summary import CycleProgress, CycleSummary, PushSummary
from .time_limits import TimeLimits
from .watchers import Watch, Watchers

if TYPE_CHECKING:
    from .engine import SyncEngine

__all__ = [
    "BACKOFF_CEILING",
    "JITTER",
    "Clock",
    "Daemon",
    "Schedule",
    "SystemClock",
    "stop_on_signals",
]

log = logging.getLogger(__name__)

#: Relative jitter of every delay: ±10 %.
JITTER = 0.1
#: Backoff never exceeds this many seconds (nor ten intervals), unless the interval is longer.
BACKOFF_CEILING = 1800.0
#: Healthy while the last success (or, during a cycle, the last sign of progress) is at most
#: this many intervals old.
HEALTHY_INTERVALS = 3


# --- time ---------------------------------------------------------------------------------------


#: Longest a wait of the main thread lasts before it looks at the signals received (seconds).
SIGNAL_SLICE = 0.25


class Clock(Protocol):
    """The daemon's sense of time: real in production, simulated in tests."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for scheduling)."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, UTC (for what people read: logs, metrics, health)."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Sleep until ``event`` is set or ``timeout`` seconds passed (``None``: no limit);
        True if the event is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        # In slices: a signal the kernel hands to another thread only sets CPython's flag, and
        # the main thread runs the handler (a stop) once it is back in Python code; a wait
        # without end in a lock would never come back to it.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = (
                SIGNAL_SLICE if deadline is None else min(deadline - time.monotonic(), SIGNAL_SLICE)
            )
            if event.wait(max(left, 0.0)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


# --- the plan -----------------------------------------------------------------------------------


@dataclass
class _Slot:
    name: str
    interval: float
    next_due: float
    failures: int = 0
    running: bool = False
    started_at: float | None = None
    #: Monotonic start of the cycle the last census followed (``None``: no census known).
    last_census_mono: float | None = None
    #: Monotonic time of the last success, or of the last progress report of a running cycle.
    last_success_mono: float | None = None
    last_progress_mono: float | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    cycles: int = 0
    #: A hint (a webhook delivery) came during the running cycle: the cycle may have read
    #: before the change, so the next one is due this many seconds after it ends.
    hinted: float | None = None


class Schedule:
    """When each instance is due; pure bookkeeping on monotonic seconds, no threads, no I/O."""

    def __init__(
        self,
        intervals: Mapping[str, float],
        *,
        now: float,
        rng: random.Random,
        census_interval: float = 86400.0,
        jitter: float = JITTER,
        ceiling: float = BACKOFF_CEILING,
    ) -> None:
        self._rng = rng
        self.jitter = jitter
        self.ceiling = ceiling
        self.census_interval = census_interval
        self.slots = {
            name: _Slot(
                name=name,
                interval=interval,
                next_due=now + rng.uniform(0.0, jitter * interval),
            )
            for name, interval in intervals.items()
        }

    def jittered(self, delay: float) -> float:
        """``delay`` give or take the jitter."""
        return delay * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def backoff(self, interval: float, failures: int) -> float:
        """The delay, before jitter, after ``failures`` consecutive failures (0: ``interval``)."""
        if failures <= 0:
            return interval
        cap = max(interval, min(10.0 * interval, self.ceiling))
        # 2**failures grows without bound; stop multiplying once it passes the cap.
        return min(interval * 2.0 ** min(failures, 64), cap)

    def due(self, now: float) -> list[str]:
        """Instances due at ``now`` and not running, the most overdue first."""
        ready = [s for s in self.slots.values() if not s.running and s.next_due <= now]
        return [s.name for s in sorted(ready, key=lambda s: (s.next_due, s.name))]

    def next_due(self) -> float | None:
        """When the next idle instance is due (``None``: every instance is running)."""
        idle = [s.next_due for s in self.slots.values() if not s.running]
        return min(idle) if idle else None

    def start(self, name: str, now: float) -> None:
        slot = self.slots[name]
        if slot.running:
            raise RuntimeError(f"a cycle of {name!r} is already running")
        slot.running = True
        slot.started_at = now
        slot.last_progress_mono = now

    def skip(self, name: str, now: float) -> float:
        """Book a cycle of ``name`` that did not run (it runs elsewhere): due again an interval
        after it was to start; returns the delay until then."""
        slot = self.slots[name]
        started = slot.started_at if slot.started_at is not None else now
        slot.running = False
        slot.started_at = None
        slot.next_due = max(now, started + self.jittered(slot.interval))
        self._take_hint(slot, now)
        return slot.next_due - now

    @staticmethod
    def _take_hint(slot: _Slot, now: float) -> None:
        if slot.hinted is not None:
            slot.next_due = min(slot.next_due, now + slot.hinted)
            slot.hinted = None

    def hint(self, name: str, now: float, delay: float) -> bool:
        """A tool said ``name`` changed: its next cycle is due at most ``delay`` from ``now``
        (the debounce: a burst of hints is one cycle, plus one for the hints that came while
        it ran). A failing instance keeps its backoff: a hint must not hammer a tool that is
        down. Returns whether the hint moved or marked anything."""
        slot = self.slots.get(name)
        if slot is None:
            return False
        if slot.running:
            slot.hinted = delay if slot.hinted is None else min(slot.hinted, delay)
            return True
        if slot.failures or slot.next_due <= now + delay:
            return False
        slot.next_due = now + delay
        return True

    def census_due(self, name: str, now: float) -> bool:
        """Whether a successful cycle of ``name`` that starts at ``now`` should end with a
        census: none is known, or the last one followed a cycle that started at least
        ``census_interval`` ago. Half an interval early counts: cycles start an interval apart
        give or take 10 %, and a census that just missed its cycle would wait a whole one."""
        slot = self.slots[name]
        if slot.last_census_mono is None:
            return True
        return now - slot.last_census_mono >= self.census_interval - slot.interval / 2

    def census_done(self, name: str, at: float) -> None:
        """Book a census (successful or not) after the cycle of ``name`` that started at
        ``at``; a failed one is not retried before the census interval is over either."""
        self.slots[name].last_census_mono = at

    def finish(
        self, name: str, *, ok: bool, now: float, wall: datetime, error: str | None = None
    ) -> float:
        """Book the end of a cycle; returns the delay until the instance is due again."""
        slot = self.slots[name]
        started = slot.started_at if slot.started_at is not None else now
        slot.running = False
        slot.started_at = None
        slot.cycles += 1
        if ok:
            slot.failures = 0
            slot.last_success_mono = now
            slot.last_success = wall
            slot.last_error = None
            slot.next_due = max(now, started + self.jittered(slot.interval))
            self._take_hint(slot, now)
        else:
            slot.failures += 1
            slot.last_error = error
            slot.next_due = now + self.jittered(self.backoff(slot.interval, slot.failures))
            slot.hinted = None  # the backoff stands (see hint)
        return slot.next_due - now


# --- the daemon ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    name: str
    ok: bool
    error: str | None
    summary: CycleSummary | None
    duration: float
    census: bool | None  # None: no census ran; else whether it succeeded
    #: Monotonic time the cycle started (a census that followed it is booked at it).
    started: float


@dataclass(frozen=True)
class _PushOutcome:
    target: str
    #: ``None`` when the push raised (``error`` says what).
    summary: PushSummary | None
    error: str | None
    duration: float

    @property
    def failure(self) -> str | None:
        """Why the push backs off: it failed or stalled (``None``: it went through)."""
        if self.summary is None:
            return self.error
        return self.summary.error or self.summary.stalled


#: The two kinds of jobs, as the time limits and the logs name them.
CYCLE, PUSH = "cycle", "push"


class Daemon:
    """Runs sync cycles of the config's enabled instances until :meth:`stop` is called.

    :param engine: runs one cycle (:class:`~.engine.SyncEngine`); the daemon never closes it.
    :param stop: the engine's stop event, set by :meth:`stop`.
    :param store_counts: optional: backlog and open dead letters per instance, refreshed into
        the metrics after every cycle.
    :param last_success: when each instance last succeeded before this run (from the store),
        so /healthz and the metrics know it from the start.
    :param last_census: when each instance's last census ran (from the store), so the census
        schedule survives a restart; an instance missing here never had one, and gets one
        after its first successful cycle.
    :param record_census: called (in the worker thread) with the instance and the wall-clock
        time a census started, to keep it where ``last_census`` comes from next time.
    :param executor: runs the jobs; by default a thread pool with a thread for each cycle
        and each push slot, so that no job waits for a thread.
    :param time_limit: seconds a job may run before it is marked hung (``[daemon]
        time_limit`` by default).
    :param watches: the watch of each instance that has one (:func:`.watchers.watches_of`);
        those of instances this daemon does not run are left out.
    :param watch_backoff: the first and the longest pause before a failed watcher is started
        again (seconds).
    :param just_polled: every instance was polled just before (a caller's first cycles): the
        first polls are an interval away, instead of spread over the first tenth of one.
    """

    def __init__(
        self,
        config: BridgeConfig,
        engine: SyncEngine,
        *,
        stop: threading.Event | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: BridgeMetrics | None = None,
        instances: Iterable[str] | None = None,
        max_workers: int | None = None,
        census_interval: float | None = None,
        store_counts: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]] | None = None,
        last_success: Mapping[str, datetime] | None = None,
        last_census: Mapping[str, datetime] | None = None,
        record_census: Callable[[str, datetime], None] | None = None,
        executor: Executor | None = None,
        time_limit: float | None = None,
        watches: Mapping[str, Watch] | None = None,
        watch_backoff: tuple[float, float] = (1.0, 300.0),
        just_polled: bool = False,
    ) -> None:
        names = list(instances) if instances is not None else None
        chosen = {
            name: inst.interval
            for name, inst in config.instances.items()
            if (inst.enabled if names is None else name in names)
        }
        if names is not None and (unknown := sorted(set(names) - set(config.instances))):
            raise ConfigurationError(
                f"no instance named {', '.join(map(repr, unknown))} in the config",
                expected=f"one of {sorted(config.instances)}",
            )
        if not chosen:
            raise ConfigurationError(
                "no enabled connector instance to sync",
                where=str(config.path) if config.path else None,
                expected="an [instances.NAME] table with enabled = true",
            )
        self.config = config
        self.engine = engine
        self.stop_event = stop if stop is not None else threading.Event()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self.max_workers = min(max_workers or config.daemon.max_workers, len(chosen))
        self._store_counts = store_counts
        self._record_census = record_census
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done: queue.SimpleQueue[_Outcome | _PushOutcome] = queue.SimpleQueue()
        self._executor = executor
        self._started_mono = self.clock.monotonic()
        self._started_wall = self.clock.now()
        self.schedule = Schedule(
            chosen,
            now=self._started_mono,
            rng=rng if rng is not None else random.Random(),  # noqa: S311 - jitter, not crypto
            census_interval=census_interval or config.daemon.census_interval,
        )
        if just_polled:
            for polled in self.schedule.slots.values():
                polled.next_due = self._started_mono + self.schedule.jittered(polled.interval)
        # Every configured instance can be a target, also one this daemon does not read.
        self.pushes = PushJobs(
            {name: inst.interval for name, inst in config.instances.items()},
            backoff=self.schedule.backoff,
            jittered=self.schedule.jittered,
        )
        self.limits = TimeLimits(time_limit or config.daemon.time_limit)
        self.watchers = Watchers(
            {name: watch for name, watch in (watches or {}).items() if name in chosen},
            self._watch_wake,
            backoff_initial=watch_backoff[0],
            backoff_max=watch_backoff[1],
            failed=lambda name: self.metrics.watch_failures.labels(name).inc(),
        )
        for name in self.watchers.names:
            self.metrics.declare_watch(name)
        # The instances that run on events: each one's poll is far off, so a cycle whose news
        # concerns its calls (a customer's call changed) wakes it (chain_hints).
        self._suppliers = supplier_instances(
            config, chosen, event_driven(config, self.watchers.names)
        )
        for name in chosen:
            self.metrics.declare(name)
        for name, moment in (last_success or {}).items():
            slot = self.schedule.slots.get(name)
            if slot is not None and moment is not None:
                slot.last_success = moment
                age = max((self._started_wall - moment).total_seconds(), 0.0)
                slot.last_success_mono = self._started_mono - age
                self.metrics.set_last_success(name, moment.timestamp())
        for name, moment in (last_census or {}).items():
            slot = self.schedule.slots.get(name)
            if slot is not None and moment is not None:
                # Monotonic clocks do not survive the process: carry the wall-clock age over.
                age = max((self._started_wall - moment).total_seconds(), 0.0)
                slot.last_census_mono = self._started_mono - age

    @property
    def instances(self) -> list[str]:
        return list(self.schedule.slots)

    # -- control

    def stop(self) -> None:
        """Ask for a graceful stop: cycles in flight finish their write and commit; no new one
        starts; :meth:`run` returns once they are done. Safe from any thread; not from a signal
        handler (setting an event there can wait for ever on a lock the interrupted thread
        holds): signals reach it through :func:`.signals.stop_on_signals`' relay thread."""
        self.stop_event.set()
        self.watchers.stop()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def hint(self, name: str, delay: float | None = None) -> bool:
        """Wake ``name``'s cycle early: due within ``delay`` seconds (``[daemon]
        event_debounce`` by default). Thread-safe; for the webhook receivers. Whether
        ``name`` is one of this daemon's instances (an unknown name does nothing)."""
        debounce = self.config.daemon.event_debounce if delay is None else delay
        with self._lock:
            known = name in self.schedule.slots
            moved = self.schedule.hint(name, self.clock.monotonic(), debounce)
        if moved:
            self._wake.set()
        return known

    def _watch_wake(self, name: str) -> None:
        """A watcher saw a change of ``name``: counted, and its cycle woken (debounced)."""
        self.metrics.watch_wakes.labels(name).inc()
        self.hint(name)

    # -- the loop

    def run(self) -> None:
        """Schedule cycles until :meth:`stop`; returns when the last running cycle ended."""
        # A thread per cycle slot and per push slot: a hung job keeps its thread, and the
        # others never queue behind it (max_workers bounds the cycles that are not hung).
        executor = self._executor or ThreadPoolExecutor(
            max_workers=len(self.schedule.slots) + len(self.pushes.slots),
            thread_name_prefix="usm-sync",
        )
        running: set[Future[None]] = set()
        self._refresh_store_gauges()
        self._sweep_spool()
        log.info(
            "daemon started: %d instances (%s), %d workers",
            len(self.schedule.slots),
            ", ".join(self.schedule.slots),
            self.max_workers,
            extra={"event": "daemon_start", "instances": self.instances},
        )
        self.watchers.start()
        try:
            while not self.stopping:
                self._wake.clear()
                self._reap()
                now = self.clock.monotonic()
                with self._lock:
                    hung = self.limits.check(now)
                for job in hung:
                    self.metrics.time_limit_hit(job.instance, job=job.job, limit="hung")
                # Pushes first: they finish the work cycles already did. Not bounded by
                # max_workers: one per target at most, each waiting on its own tool.
                for target in self.pushes.due(now):
                    if self.stopping:
                        break
                    running.add(self._submit_push(executor, target, now))
                self._reap()  # an inline executor has finished already
                now = self.clock.monotonic()
                for name in self.schedule.due(now):
                    if self._full() or self.stopping:
                        break
                    running.add(self._submit(executor, name, now))
                running = {f for f in running if not f.done()}
                self._reap()
                if self.stopping:
                    break
                self.clock.wait(self._wake, self._sleep())
        finally:
            self.stop_event.set()
            self.watchers.stop()
            in_flight = [name for name, slot in self.schedule.slots.items() if slot.running]
            if in_flight:
                log.info(
                    "stopping: waiting for the cycles in flight (%s) to commit",
                    ", ".join(in_flight),
                    extra={"event": "daemon_stopping", "instances": in_flight},
                )
            # In slices, for a second signal's sake (see SystemClock.wait).
            while futures_wait(running, timeout=SIGNAL_SLICE).not_done:
                pass
            if self._executor is None:
                executor.shutdown(wait=True)
            else:
                for future in list(running):
                    future.result()
            self._reap()
            self.watchers.join()
            log.info("daemon stopped", extra={"event": "daemon_stop"})

    def _sweep_spool(self) -> None:
        """Remove the attachment spool files a killed process left (:mod:`.spool_sweep`)."""
        sweep_spool(self.config.attachments.spool, self.config.attachments.kept_files())

    def _full(self) -> bool:
        """Whether ``max_workers`` cycles that are not hung are running."""
        with self._lock:
            return self.limits.active(CYCLE) >= self.max_workers

    def _sleep(self) -> float | None:
        """How long the loop may wait (``None``: until a job ends): until the next cycle or
        push is due (unless no worker place is free), or the next job goes over its limit."""
        now = self.clock.monotonic()
        moments = [self.limits.next_deadline(), self.pushes.next_due()]
        if not self._full():
            moments.append(self.schedule.next_due())
        known = [moment for moment in moments if moment is not None]
        return max(min(known) - now, 0.0) if known else None

    def _submit_push(self, executor: Executor, target: str, now: float) -> Future[None]:
        with self._lock:
            self.pushes.start(target)
            self.limits.started(PUSH, target, now)
        future = executor.submit(self._push, target)
        future.add_done_callback(lambda _f: self._wake.set())
        return future

    def _push(self, target: str) -> None:
        """One push of ``target``, in a worker thread; the outcome goes back to the loop."""
        started = self.clock.monotonic()
        summary: PushSummary | None = None
        error: str | None = None
        try:
            summary = self.engine.push(target)
        except Exception as exc:  # the engine reports remote and store faults; this is a bug
            error = f"{type(exc).__name__}: {exc}"
            log.error("push to %s raised %s", target, error, exc_info=True,
                      extra={"event": "push_crash", "instance": target})  # fmt: skip
        self._done.put(_PushOutcome(target, summary, error, self.clock.monotonic() - started))
        self._wake.set()

    def _submit(self, executor: Executor, name: str, now: float) -> Future[None]:
        census = self.schedule.census_due(name, now)
        with self._lock:
            self.schedule.start(name, now)
            self.limits.started(CYCLE, name, now)
        self.metrics.cycle_started(name)
        future = executor.submit(self._cycle, name, census)
        future.add_done_callback(lambda _f: self._wake.set())
        return future

    def _cycle(self, name: str, census: bool) -> None:
        """One cycle of ``name``, in a worker thread; the outcome goes back to the loop."""
        started = self.clock.monotonic()
        summary: CycleSummary | None = None
        try:
            summary = self.engine.cycle(name, progress=self._progress)
            ok, error = summary.ok, summary.error
        except Exception as exc:  # the engine reports remote problems; this is anything else
            ok, error = False, f"{type(exc).__name__}: {exc}"
            log.error(
                "cycle %s raised %s",
                name,
                error,
                exc_info=True,
                extra={"event": "cycle_crash", "instance": name},
            )
        census_ok: bool | None = None
        ran = summary is None or summary.skipped is None  # a skipped cycle runs no census
        if ok and census and ran and not self.stopping:
            census_ok = self._census(name)
        duration = self.clock.monotonic() - started
        self._done.put(_Outcome(name, ok, error, summary, duration, census_ok, started))
        self._wake.set()

    def _census(self, name: str) -> bool:
        at = self.clock.now()
        ok = self._run_census(name)
        self._keep_census(name, at)
        return ok

    def _keep_census(self, name: str, at: datetime) -> None:
        if self._record_census is None:
            return
        try:
            self._record_census(name, at)
        except Exception as exc:  # the census is done; only a restart would repeat it early
            log.warning(
                "cannot record the census of %s in the store: %s: %s",
                name,
                type(exc).__name__,
                exc,
                extra={"event": "census_record", "instance": name, "ok": False},
            )

    def _run_census(self, name: str) -> bool:
        try:
            count = self.engine.census(name)
        except Exception as exc:
            log.warning(
                "census of %s failed: %s: %s",
                name,
                type(exc).__name__,
                exc,
                extra={"event": "census", "instance": name, "ok": False},
            )
            return False
        log.info(
            "census of %s: %d newly vanished",
            name,
            count,
            extra={"event": "census", "instance": name, "ok": True, "vanished": count},
        )
        return True

    def _progress(self, progress: CycleProgress) -> None:
        slot = self.schedule.slots.get(progress.instance)
        if slot is not None:
            slot.last_progress_mono = self.clock.monotonic()

    def _reap(self) -> None:
        """Book every finished cycle: schedule, metrics, one log line."""
        while True:
            try:
                outcome = self._done.get_nowait()
            except queue.Empty:
                return
            if isinstance(outcome, _PushOutcome):
                self._book_push(outcome)
            else:
                self._book(outcome)

    def _book_push(self, outcome: _PushOutcome) -> None:
        target, now = outcome.target, self.clock.monotonic()
        summary = outcome.summary
        with self._lock:
            self.limits.finished(PUSH, target, now)
            delay = self.pushes.finish(
                target,
                now=now,
                pushed=summary.pushed if summary is not None else 0,
                error=outcome.failure,
            )
            failures = self.pushes.slots[target].failures
        self.metrics.push_finished(
            target, PushCounts.of(summary, duration=outcome.duration, error=outcome.error)
        )
        extra: dict[str, Any] = {
            "event": "push",
            "instance": target,
            "ok": outcome.failure is None,
            "duration_s": round(outcome.duration, 3),
            "consecutive_failures": failures,
        }
        if outcome.failure is not None:
            extra.update(error=outcome.failure, next_in_s=round(delay, 1))
            log.warning("push to %s failed in %.2fs (%d in a row): %s; next not before %.0fs",
                        target, outcome.duration, failures, outcome.failure, delay,
                        extra=extra)  # fmt: skip
            return
        assert summary is not None
        counts = {
            "pushed": summary.pushed,
            "skipped": summary.skipped,
            "retried": summary.retried,
            "dead_letters": summary.dead_letters,
            "waiting": summary.waiting,
        }
        extra.update(counts)
        if summary.busy is not None:
            extra.update(busy=summary.busy)
        text = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        # A push with nothing to do follows nearly every cycle: not worth a line at INFO.
        level = logging.INFO if text else logging.DEBUG
        log.log(level, "push to %s ok in %.2fs: %s", target, outcome.duration,
                text or summary.busy or "-", extra=extra)  # fmt: skip

    def _book(self, outcome: _Outcome) -> None:
        name = outcome.name
        now, wall = self.clock.monotonic(), self.clock.now()
        with self._lock:
            self.limits.finished(CYCLE, name, now)
            if outcome.summary is not None:
                self.pushes.request(outcome.summary.targets)
        if outcome.summary is not None and outcome.summary.skipped is not None:
            with self._lock:
                delay = self.schedule.skip(name, now)
                failures = self.schedule.slots[name].failures
            self.metrics.cycle_skipped(name)
            self._log_cycle(outcome, failures, delay)
            return
        with self._lock:
            delay = self.schedule.finish(
                name, ok=outcome.ok, now=now, wall=wall, error=outcome.error
            )
            if outcome.census is not None:
                self.schedule.census_done(name, outcome.started)
            failures = self.schedule.slots[name].failures
        self.metrics.cycle_finished(
            name,
            ok=outcome.ok,
            duration=outcome.duration,
            failures=failures,
            summary=outcome.summary,
            finished_at=wall.timestamp(),
        )
        if outcome.census is not None:
            self.metrics.census_done(name, ok=outcome.census)
        self._refresh_store_gauges()
        self._log_cycle(outcome, failures, delay)
        if outcome.summary is not None and brought_news(outcome.summary):
            for supplier in sorted(self._suppliers.get(name, ())):
                self.hint(supplier)

    def _log_cycle(self, outcome: _Outcome, failures: int, delay: float) -> None:
        counters = outcome.summary.counters() if outcome.summary is not None else {}
        extra: dict[str, Any] = {
            "event": "cycle",
            "instance": outcome.name,
            "ok": outcome.ok,
            "duration_s": round(outcome.duration, 3),
            **counters,
            "consecutive_failures": failures,
            "next_in_s": round(delay, 1),
        }
        text = " ".join(f"{k}={v}" for k, v in counters.items())
        if outcome.summary is not None and outcome.summary.skipped:
            extra.update(event="cycle_skipped", skipped=outcome.summary.skipped)
            log.info("cycle %s skipped: %s; next in %.0fs", outcome.name,
                     outcome.summary.skipped, delay, extra=extra)  # fmt: skip
        elif outcome.ok:
            log.info(
                "cycle %s ok in %.2fs: %s; next in %.0fs",
                outcome.name,
                outcome.duration,
                text or "-",
                delay,
                extra=extra,
            )
        else:
            extra["error"] = outcome.error
            log.warning(
                "cycle %s failed in %.2fs (%d in a row): %s; %s; retry in %.0fs",
                outcome.name,
                outcome.duration,
                failures,
                outcome.error,
                text or "-",
                delay,
                extra=extra,
            )

    def _refresh_store_gauges(self) -> None:
        if self._store_counts is None:
            return
        try:
            backlog, letters = self._store_counts()
        except Exception as exc:  # metrics must never stop the daemon
            log.warning("cannot read backlog and dead letters from the store: %s", exc)
            return
        for name in self.schedule.slots:
            self.metrics.set_store_gauges(
                name, backlog=backlog.get(name, 0), open_dead_letters=letters.get(name, 0)
            )

    # -- health

    def health(self) -> Health:
        """Healthy when every instance succeeded within the last 3 intervals (or has just
        started, or is in a cycle that reported progress within 3 intervals)."""
        now = self.clock.monotonic()
        failing: list[str] = []
        rows: dict[str, dict[str, Any]] = {}
        with self._lock:
            for name, slot in self.schedule.slots.items():
                window = HEALTHY_INTERVALS * slot.interval
                recent = (
                    slot.last_success_mono is not None and now - slot.last_success_mono <= window
                )
                progressing = (
                    slot.running
                    and slot.last_progress_mono is not None
                    and now - slot.last_progress_mono <= window
                )
                starting = slot.last_success_mono is None and now - self._started_mono <= window
                hung_for = self.limits.hung_for(name, now)
                healthy = (recent or progressing or starting) and hung_for is None
                if not healthy:
                    failing.append(name)
                push = self.pushes.slots[name]
                rows[name] = {
                    "ok": healthy,
                    "running": slot.running,
                    "last_success": slot.last_success.isoformat() if slot.last_success else None,
                    "consecutive_failures": slot.failures,
                    "last_error": slot.last_error,
                    # A cycle or push of the instance over [daemon] time_limit (time_limits).
                    "hung_for_s": None if hung_for is None else round(hung_for, 1),
                    "push_failures": push.failures,
                    "push_error": push.last_error,
                }
        detail: dict[str, Any] = {
            "status": "ok" if not failing else "failing",
            "failing": failing,
            "stopping": self.stopping,
            "instances": rows,
        }
        return Health(ok=not failing, detail=detail)


# --- the command --------------------------------------------------------------------------------


def serve(
    config: BridgeConfig,
    *,
    listen: tuple[str, int] | None,
    on_listening: Callable[[str], None] | None = None,
    migrate: bool = False,
    wait: bool = False,
) -> None:
    """``usm-bridge daemon``: open the store (upgrading an older schema only when
    ``migrate``), the plugins and the engine, take the store's daemon lock (waiting for the
    daemon holding it to stop when ``wait``), serve /healthz and /metrics, schedule cycles
    until SIGTERM or SIGINT, then close everything.

    Logging is the caller's business (see :func:`usm_bridge.sync.logs.log_to_stream`).

    :raises LockHeldError: another daemon runs on the store, and not ``wait``.
    """
    from ..events.daemon_app import event_secrets, events_app
    from ..events.kinds import EVENT_KINDS
    from ..events.server import AppServer
    from ..runtime import open_runtime
    from .exclusion import take_daemon_lock
    from .status import read_states, store_counts
    from .watchers import watches_of

    stop = threading.Event()
    with open_runtime(config, stop=stop, migrate=migrate) as runtime:
        store, engine = runtime.store, runtime.engine
        with stop_on_signals(stop.set):
            # Held until the store is closed as the block ends, or the process dies.
            if not take_daemon_lock(store, wait=wait, stop=stop):
                log.info("stopped while waiting", extra={"event": "daemon_stop"})
                return
        with store.begin(readonly=True) as tx:
            states = read_states(tx) or {}
        last_success = {
            name: state.last_success
            for name, state in states.items()
            if state.last_success is not None
        }
        last_census = {
            name: state.last_census
            for name, state in states.items()
            if state.last_census is not None
        }

        def counts() -> tuple[Mapping[str, int], Mapping[str, int]]:
            with store.begin(readonly=True) as tx:
                found = store_counts(tx)
            return found.backlog, found.dead_letters

        def record_census(name: str, at: datetime) -> None:
            with store.begin() as tx:
                tx.record_census(name, at=at)

        daemon = Daemon(
            config,
            engine,
            stop=stop,
            store_counts=counts,
            last_success=last_success,
            last_census=last_census,
            record_census=record_census,
            watches=watches_of(
                config, runtime.instances, [n for n, i in config.instances.items() if i.enabled]
            ),
        )
        server = None
        if listen is None and event_secrets(config, daemon.instances):
            # Not an error: polling still syncs; but the admin set a secret for a reason.
            log.warning(
                "webhook secrets are set but the HTTP port is off ([daemon] listen): "
                "no events are taken, polling only",
                extra={"event": "webhooks_off"},
            )
        if listen is not None:
            try:
                server = AppServer(events_app(config, daemon), listen[0], listen[1])
            except OSError as exc:
                raise UsmBridgeError(
                    f"cannot serve /healthz and /metrics on {listen[0]}:{listen[1]}: "
                    f"{exc.strerror or exc}; choose another with --listen HOST:PORT or "
                    "[daemon] listen (or 'off')"
                ) from None
            server.start()
            log.info(
                "serving %s/healthz and %s/metrics",
                server.url,
                server.url,
                extra={"event": "listening", "url": server.url},
            )
            for kind, secrets in sorted(event_secrets(config, daemon.instances).items()):
                for name in sorted(secrets):
                    extra = {"event": "webhooks", "instance": name}
                    log.info("taking %s events for %s at %s/events/%s/%s", EVENT_KINDS[kind].tool,
                             name, server.url, kind, name, extra=extra)  # fmt: skip
            if on_listening is not None:
                on_listening(server.url)
        try:
            with stop_on_signals(daemon.stop):
                daemon.run()
        finally:
            if server is not None:
                server.close()
