"""Test doubles for the daemon: a fake clock, a fake engine, an executor that runs inline."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from usm_bridge.config import BridgeConfig, DaemonConfig, InstanceConfig
from usm_bridge.model import Unit
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.summary import CycleProgress, CycleSummary, PushSummary

START = 1_000.0
WALL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """Simulated time: ``wait`` with a timeout jumps forward instead of sleeping.

    ``horizon``: once simulated time reaches it, ``on_horizon`` is called (to stop a daemon).
    """

    def __init__(self, horizon: float | None = None) -> None:
        self.t = START
        self._lock = threading.Lock()
        self.horizon = horizon
        self.on_horizon: Callable[[], None] | None = None
        #: With real worker threads: while this says a worker is busy, time stands still and
        #: ``wait`` really waits for the worker (so simulated time never outruns real work).
        self.busy: Callable[[], bool] | None = None

    def monotonic(self) -> float:
        with self._lock:
            return self.t

    def now(self) -> datetime:
        return WALL + timedelta(seconds=self.monotonic() - START)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds
            reached = self.horizon is not None and self.t >= self.horizon
        if reached and self.on_horizon is not None:
            self.on_horizon()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is None or (self.busy is not None and self.busy()):
            # Waiting for a worker thread: real, but bounded so a bug cannot hang the suite.
            assert event.wait(10), "the daemon waited 10 s for a worker"
            return True
        if self.horizon is not None:
            timeout = min(timeout, max(self.horizon - self.monotonic(), 0.0))
        self.advance(timeout)
        return event.is_set()


class InlineExecutor(Executor):
    """Runs each submitted call at once, in the caller's thread: fully deterministic."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


# The engine's own summary and progress: the daemon's fakes never copy their fields.
Summary = CycleSummary
Progress = CycleProgress


@dataclass
class FakeEngine:
    """Answers ``run_cycle`` from a script: which instances fail, raise, block or take time."""

    clock: FakeClock
    failing: set[str] = field(default_factory=set)
    raising: set[str] = field(default_factory=set)
    #: Cycles of these are skipped (their instance runs in another process).
    skipping: set[str] = field(default_factory=set)
    #: Simulated seconds a cycle of the instance takes (inline executor only).
    durations: dict[str, float] = field(default_factory=dict)
    #: A cycle of the instance waits (really) for this event.
    gates: dict[str, threading.Event] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    calls: list[tuple[str, float]] = field(default_factory=list)
    censuses: list[tuple[str, float]] = field(default_factory=list)
    pushes: list[tuple[str, float]] = field(default_factory=list)
    #: The targets a cycle of the instance queued writes for (``summary.targets``).
    targets: dict[str, frozenset[str]] = field(default_factory=dict)
    #: A push to the target waits (really) for this event.
    push_gates: dict[str, threading.Event] = field(default_factory=dict)
    #: Pushes to these stall: their tool does not answer.
    stalling: set[str] = field(default_factory=set)
    #: Pushes that started while another push to the same target ran.
    push_overlaps: list[str] = field(default_factory=list)
    _pushing: set[str] = field(default_factory=set)
    census_fails: bool = False
    overlaps: list[str] = field(default_factory=list)
    _running: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def run_cycle(self, instance: str, *, progress: Callable[[Any], None] | None = None) -> Summary:
        with self._lock:
            if instance in self._running:
                self.overlaps.append(instance)
            self._running.add(instance)
            self.calls.append((instance, self.clock.monotonic()))
        try:
            started = self.clock.now()
            if progress is not None:
                progress(Progress(instance, 1, 1))
            if instance in self.gates:
                assert self.gates[instance].wait(10), "gate never opened"
            if instance in self.durations:
                self.clock.advance(self.durations[instance])
            if instance in self.raising:
                raise RuntimeError("the store went away")
            if instance in self.skipping:
                skipped = Summary(instance=instance, started=started, finished=started)
                skipped.skipped = f"a cycle of {instance} runs in pid 1 on elsewhere"
                return skipped
            error = "remote said 503" if instance in self.failing else None
            return Summary(
                instance=instance, started=started, finished=self.clock.now(), read=3, stored=2,
                unchanged=1,
                echoes=0, routed=1, pushed=1, dead_letters=1 if error else 0, error=error,
                targets=self.targets.get(instance, frozenset()),
            )  # fmt: skip
        finally:
            with self._lock:
                self._running.discard(instance)

    def cycle(self, instance: str, *, progress: Callable[[Any], None] | None = None) -> Summary:
        """The daemon's call: a cycle that pushes nothing (the script's cycle, by default)."""
        return self.run_cycle(instance, progress=progress)

    def push(self, target: str) -> PushSummary:
        with self._lock:
            if target in self._pushing:
                self.push_overlaps.append(target)
            self._pushing.add(target)
            self.pushes.append((target, self.clock.monotonic()))
        try:
            if target in self.push_gates:
                assert self.push_gates[target].wait(10), "push gate never opened"
            now = self.clock.now()
            summary = PushSummary(target=target, started=now, finished=now, pushed=1)
            if target in self.stalling:
                summary.pushed, summary.stalled = 0, "read timeout; gave up after 3 attempt(s)"
            return summary
        finally:
            with self._lock:
                self._pushing.discard(target)

    def push_times(self, target: str) -> list[float]:
        return [t for name, t in self.pushes if name == target]

    def census(self, instance: str) -> int:
        self.censuses.append((instance, self.clock.monotonic()))
        if self.census_fails:
            raise RuntimeError("census failed")
        return 42

    def close(self) -> None:
        self.closed = True

    def busy_except(self, *names: str) -> bool:
        """Whether a cycle of an instance other than ``names`` is running."""
        with self._lock:
            return bool(self._running - set(names))

    def times(self, instance: str) -> list[float]:
        return [t for name, t in self.calls if name == instance]


def make_config(intervals: dict[str, float], **daemon: Any) -> BridgeConfig:
    """A config with one unit and one instance per entry (interval in seconds)."""
    return BridgeConfig(
        units={"u": Unit(name="u")},
        instances={
            name: InstanceConfig(
                name=name, unit="u", kind="fake", mapping="m.yaml", interval=interval
            )
            for name, interval in intervals.items()
        },
        daemon=DaemonConfig(**daemon),
    )


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def make_daemon(
    config: BridgeConfig,
    engine: FakeEngine,
    *,
    seed: int = 7,
    executor: Executor | None = None,
    **kw: Any,
) -> Daemon:
    """A daemon of ``config`` on ``engine`` and its fake clock, its jitter drawn from ``seed``,
    its jobs run inline unless given an ``executor``."""
    return Daemon(
        config,
        engine,  # type: ignore[arg-type]
        clock=engine.clock,
        rng=random.Random(seed),
        executor=executor or InlineExecutor(),
        stop=engine.stop,
        **kw,
    )


def simulate(config: BridgeConfig, engine: FakeEngine, *, seed: int = 7, **kw: Any) -> Daemon:
    """A daemon of ``config`` on ``engine``, on its fake clock with its jobs run inline, run
    until the clock reaches its horizon (which the caller sets)."""
    daemon = make_daemon(config, engine, seed=seed, **kw)
    engine.clock.on_horizon = daemon.stop
    daemon.run()
    return daemon


def run_for(
    seconds: float, engine: FakeEngine, clock: FakeClock, intervals: dict[str, float], **kw: Any
) -> Daemon:
    """:func:`simulate` on a config of ``intervals`` for ``seconds`` after :data:`START`."""
    clock.horizon = START + seconds
    return simulate(make_config(intervals), engine, **kw)


def run_then_release(
    daemon: Daemon,
    clock: FakeClock,
    until: float,
    gate: threading.Event,
    *,
    busy: Callable[[], bool],
    at_stop: Callable[[], None] | None = None,
) -> None:
    """Run ``daemon`` (on real worker threads) until simulated ``until``, time standing still
    while ``busy``; then call ``at_stop``, stop it and open ``gate``, so that the job hung on
    it ends and the daemon's run returns."""
    clock.busy = busy
    clock.horizon = until

    def at_horizon() -> None:
        if at_stop is not None:
            at_stop()
        daemon.stop()
        gate.set()

    clock.on_horizon = at_horizon
    daemon.run()
