"""The census schedule: by time since the last census, kept in the store across restarts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from daemon_fakes import (
    START,
    WALL,
    FakeClock,
    FakeEngine,
    Summary,
    gaps,
    make_config,
    simulate,
)

from usm_bridge.model import utcnow
from usm_bridge.store import Store
from usm_bridge.sync.daemon import Daemon
from usm_bridge.sync.status import read_states


def run_daemon(
    engine: FakeEngine, clock: FakeClock, until: float, *, seed: int = 7, **kw: object
) -> Daemon:
    """One daemon process on ``{"a": 60 s}`` with a 300 s census interval, until ``until``."""
    clock.horizon = until
    engine.stop.clear()
    return simulate(make_config({"a": 60.0}), engine, seed=seed, census_interval=300.0, **kw)


def census_times(engine: FakeEngine) -> list[float]:
    return [t for _name, t in engine.censuses]


def test_a_census_runs_every_census_interval_give_or_take_half_an_interval() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    run_daemon(engine, clock, START + 3000, last_census={"a": WALL})
    times = census_times(engine)
    assert times[0] >= START + 270  # not before the interval since the known census is over
    # Every fifth cycle: jitter never makes one wait a sixth.
    assert all(270 <= gap <= 330 for gap in gaps(times)), gaps(times)
    assert 9 <= len(times) <= 10


def test_an_instance_that_never_had_a_census_gets_one_after_its_first_good_cycle() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"a"})
    daemon = run_daemon(engine, clock, START + 200)
    assert engine.censuses == []  # never after a failed cycle
    assert daemon.schedule.slots["a"].last_census_mono is None
    engine.failing.clear()
    run_daemon(engine, clock, clock.t + 400)
    good = [t for t in engine.times("a") if t > START + 200]
    assert census_times(engine)[0] == good[0]


def test_the_census_schedule_survives_restarts_more_frequent_than_its_interval() -> None:
    """The reason the schedule is kept: restarted every 100 s, a 300 s census still runs."""
    clock = FakeClock()
    engine = FakeEngine(clock)
    kept: dict[str, datetime] = {}
    for restart in range(30):
        run_daemon(
            engine, clock, clock.t + 100, seed=restart,
            last_census=dict(kept), record_census=kept.__setitem__,
        )  # fmt: skip
    times = census_times(engine)
    assert 9 <= len(times) <= 11, times
    # A census every 300 s or a little more (the restart costs up to one first-cycle offset).
    assert all(270 <= gap <= 400 for gap in gaps(times)), gaps(times)
    assert kept["a"] == WALL + timedelta(seconds=times[-1] - START)


def test_without_the_kept_schedule_restarts_run_a_census_at_every_start() -> None:
    """What a daemon that keeps nothing does: each start looks like a first one."""
    clock = FakeClock()
    engine = FakeEngine(clock)
    for restart in range(5):
        run_daemon(engine, clock, clock.t + 100, seed=restart)
    assert len(engine.censuses) == 5


def test_a_census_that_cannot_be_recorded_is_logged_and_the_daemon_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)

    def broken(_name: str, _at: datetime) -> None:
        raise RuntimeError("the store went away")

    with caplog.at_level(logging.WARNING, logger="usm_bridge.sync.daemon"):
        daemon = run_daemon(engine, clock, START + 700, record_census=broken)
    assert len(census_times(engine)) == 3  # 0 s, ~300 s, ~600 s: the schedule in memory holds
    assert daemon.schedule.slots["a"].failures == 0
    assert "cannot record the census of a in the store" in caplog.text
    assert "the store went away" in caplog.text


class RecordingEngine(FakeEngine):
    """Records each cycle in the store, as the real engine does at the end of every cycle."""

    def __init__(self, clock: FakeClock, store: Store) -> None:
        super().__init__(clock)
        self.store = store

    def run_cycle(self, instance: str, *, progress: Callable[[Any], None] | None = None) -> Summary:
        summary = super().run_cycle(instance, progress=progress)
        with self.store.begin() as tx:
            tx.record_run(instance, started=utcnow(), finished=utcnow(), counters={})
        return summary


def test_a_restarted_daemon_schedules_the_census_from_the_store(store: Store) -> None:
    """The way ``serve`` wires it: ``last_census`` read from the instance states, each census
    written back with ``record_census``."""
    clock = FakeClock()
    engine = RecordingEngine(clock, store)

    def record_census(name: str, at: datetime) -> None:
        with store.begin() as tx:
            tx.record_census(name, at=at)

    for restart in range(12):
        with store.begin(readonly=True) as tx:
            states = read_states(tx) or {}
        last = {n: s.last_census for n, s in states.items() if s.last_census is not None}
        run_daemon(
            engine, clock, clock.t + 100, seed=restart,
            last_census=last, record_census=record_census,
        )  # fmt: skip
    times = census_times(engine)
    # The first after the first cycle (none known), then every 300 s across the restarts.
    assert len(times) == 4 and all(270 <= gap <= 400 for gap in gaps(times)), times
    with store.begin(readonly=True) as tx:
        state = tx.get_instance_state("a")
    assert state is not None
    assert state.last_census == WALL + timedelta(seconds=times[-1] - START)
