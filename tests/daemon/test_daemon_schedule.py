"""Scheduling: jitter, backoff, census, stop, health; on simulated time, no real sleeps."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from daemon_fakes import (
    START,
    FakeClock,
    FakeEngine,
    InlineExecutor,
    gaps,
    make_config,
    make_daemon,
    run_for,
    run_then_release,
)

from usm_bridge.errors import ConfigurationError
from usm_bridge.sync.daemon import Daemon, Schedule
from usm_bridge.sync.metrics import BridgeMetrics

# --- the plan alone ---------------------------------------------------------------------------


def test_first_cycles_start_within_a_tenth_of_the_interval_and_not_in_step() -> None:
    schedule = Schedule({f"i{n}": 60.0 for n in range(20)}, now=0.0, rng=random.Random(1))
    firsts = [slot.next_due for slot in schedule.slots.values()]
    assert all(0.0 <= t <= 6.0 for t in firsts)
    assert len(set(firsts)) == 20


def test_backoff_doubles_from_the_interval_and_is_capped() -> None:
    schedule = Schedule({"a": 60.0}, now=0.0, rng=random.Random(1))
    assert [schedule.backoff(60.0, k) for k in range(6)] == [60, 120, 240, 480, 600, 600]
    # 30 minutes caps a long interval's ten-fold; never shorter than the interval itself.
    assert schedule.backoff(300.0, 5) == 1800.0
    assert schedule.backoff(7200.0, 3) == 7200.0
    assert schedule.backoff(1.0, 10_000) == 10.0  # no overflow after days of failures


def test_never_two_cycles_of_one_instance_in_the_plan() -> None:
    schedule = Schedule({"a": 10.0}, now=0.0, rng=random.Random(1))
    schedule.start("a", 5.0)
    assert schedule.due(100.0) == []
    assert schedule.next_due() is None
    with pytest.raises(RuntimeError, match="already running"):
        schedule.start("a", 6.0)


# --- the daemon on simulated time ---------------------------------------------------------------


def test_intervals_are_kept_with_ten_percent_jitter() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    run_for(3600, engine, clock, {"a": 60.0, "b": 60.0})
    for name in ("a", "b"):
        times = engine.times(name)
        assert 55 <= len(times) <= 67
        assert all(54.0 <= gap <= 66.0 for gap in gaps(times)), gaps(times)
        assert len({round(gap, 3) for gap in gaps(times)}) > 10  # jittered, not constant
    # Configured alike, the two never fire in step.
    assert not set(engine.times("a")) & set(engine.times("b"))


def test_a_failing_instance_backs_off_without_delaying_the_others() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"bad"})
    daemon = run_for(3600, engine, clock, {"good": 60.0, "bad": 60.0})
    bad = gaps(engine.times("bad"))
    expected = [120, 240, 480, 600, 600]
    for gap, base in zip(bad, expected, strict=False):
        assert base * 0.9 <= gap <= base * 1.1, bad
    assert all(540 <= gap <= 660 for gap in bad[4:])
    assert all(54.0 <= gap <= 66.0 for gap in gaps(engine.times("good")))
    assert daemon.schedule.slots["bad"].failures == len(engine.times("bad"))
    assert daemon.schedule.slots["good"].failures == 0


def test_one_success_resets_the_backoff() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"a"})
    daemon = run_for(1000, engine, clock, {"a": 60.0})
    assert daemon.schedule.slots["a"].failures >= 3
    engine.failing.clear()
    engine.stop.clear()
    clock.horizon = clock.t + 2000
    daemon.run()
    after = [t for t in engine.times("a") if t > START + 1000]
    assert all(54.0 <= gap <= 66.0 for gap in gaps(after[1:]))
    assert daemon.schedule.slots["a"].failures == 0


def test_an_engine_that_raises_counts_as_a_failure_and_the_daemon_goes_on() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, raising={"a"})
    metrics = BridgeMetrics()
    daemon = run_for(600, engine, clock, {"a": 60.0, "b": 60.0}, metrics=metrics)
    assert daemon.schedule.slots["a"].failures >= 2
    assert "RuntimeError: the store went away" in (daemon.schedule.slots["a"].last_error or "")
    assert len(engine.times("b")) >= 9
    value = metrics.registry.get_sample_value
    assert value("usm_bridge_cycles_total", {"instance": "a", "outcome": "error"}) >= 2
    assert value("usm_bridge_records_read_total", {"instance": "a"}) == 0


def test_a_cycle_that_overruns_its_interval_is_followed_at_once() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, durations={"a": 90.0})
    run_for(900, engine, clock, {"a": 60.0})
    assert all(gap == pytest.approx(90.0) for gap in gaps(engine.times("a")))


def test_a_census_runs_every_n_successful_cycles() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock)
    metrics = BridgeMetrics()
    # The last census known at the start: the first one is due 300 s (5 cycles) later.
    run_for(
        3000, engine, clock, {"a": 60.0}, census_interval=300.0, metrics=metrics,
        last_census={"a": clock.now()},
    )  # fmt: skip
    cycles, censuses = len(engine.times("a")), len(engine.censuses)
    assert cycles // 5 - 1 <= censuses <= cycles // 5
    assert metrics.registry.get_sample_value(
        "usm_bridge_census_total", {"instance": "a", "outcome": "ok"}
    ) == float(censuses)


def test_no_census_after_a_failed_cycle_and_a_failed_census_does_not_fail_the_cycle() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"a"})
    run_for(3000, engine, clock, {"a": 60.0}, census_interval=60.0)
    assert engine.censuses == []
    clock2 = FakeClock()
    engine2 = FakeEngine(clock2, census_fails=True)
    daemon = run_for(600, engine2, clock2, {"a": 60.0}, census_interval=60.0)
    assert engine2.censuses and daemon.schedule.slots["a"].failures == 0


def test_disabled_instances_are_left_alone_and_none_enabled_is_a_config_error() -> None:
    config = make_config({"a": 60.0, "b": 60.0})
    config.instances["b"] = config.instances["b"].model_copy(update={"enabled": False})
    clock = FakeClock()
    daemon = Daemon(config, FakeEngine(clock), clock=clock)  # type: ignore[arg-type]
    assert daemon.instances == ["a"]
    config.instances["a"] = config.instances["a"].model_copy(update={"enabled": False})
    with pytest.raises(ConfigurationError, match="no enabled connector instance"):
        Daemon(config, FakeEngine(clock), clock=clock)  # type: ignore[arg-type]


# --- real threads -------------------------------------------------------------------------------


def test_a_stuck_instance_does_not_hold_back_the_others_and_never_runs_twice() -> None:
    clock = FakeClock()
    gate = threading.Event()
    engine = FakeEngine(clock, gates={"stuck": gate})
    config = make_config({"stuck": 60.0, "b": 60.0, "c": 60.0}, max_workers=3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        daemon = make_daemon(config, engine, seed=3, executor=pool)
        # Stop after b and c made progress for ten simulated minutes; then let "stuck" finish.
        # Time stands still while a cycle other than stuck's runs or waits to be booked: the
        # daemon wakes at stuck's time limit, and a cycle that just ended must not let the
        # clock leap there before the daemon saw it end.
        run_then_release(
            daemon,
            clock,
            START + 600,
            gate,
            busy=lambda: any(
                slot.running for name, slot in daemon.schedule.slots.items() if name != "stuck"
            ),
        )
    assert len(engine.times("stuck")) == 1
    assert len(engine.times("b")) >= 9 and len(engine.times("c")) >= 9
    assert engine.overlaps == []
    assert daemon.schedule.slots["stuck"].running is False  # booked after the stop


def test_max_workers_bounds_the_cycles_running_at_once() -> None:
    clock = FakeClock()
    gates = {name: threading.Event() for name in "abc"}
    engine = FakeEngine(clock, gates=gates)
    config = make_config({name: 60.0 for name in "abc"}, max_workers=2)
    daemon = Daemon(config, engine, clock=clock, stop=engine.stop)  # type: ignore[arg-type]
    # Time stands still while every worker is busy (else it would leap to their time limit).
    clock.busy = lambda: sum(s.running for s in daemon.schedule.slots.values()) >= 2
    assert daemon.max_workers == 2
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        for _ in range(200):
            if len(engine.calls) == 2:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.05)
        assert len(engine.calls) == 2  # the third waits for a free worker
        assert sum(slot.running for slot in daemon.schedule.slots.values()) == 2
    finally:
        daemon.stop()
        for gate in gates.values():
            gate.set()
        runner.join(10)
    assert not runner.is_alive()


def test_stop_lets_the_cycle_in_flight_finish_and_starts_no_new_one() -> None:
    clock = FakeClock()
    gate = threading.Event()
    engine = FakeEngine(clock, gates={"a": gate})
    daemon = Daemon(make_config({"a": 60.0}), engine, clock=clock, stop=engine.stop)  # type: ignore[arg-type]
    runner = threading.Thread(target=daemon.run)
    runner.start()
    for _ in range(500):
        if engine.calls:
            break
        threading.Event().wait(0.01)
    daemon.stop()
    assert engine.stop.is_set()  # the engine sees it and finishes the write in flight
    threading.Event().wait(0.05)
    assert runner.is_alive()  # run() waits for the cycle
    gate.set()
    runner.join(10)
    assert not runner.is_alive()
    assert len(engine.calls) == 1
    assert daemon.schedule.slots["a"].cycles == 1


# --- health -------------------------------------------------------------------------------------


def test_health_is_ok_while_starting_and_names_an_instance_without_recent_success() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"bad"})
    daemon = Daemon(
        make_config({"good": 60.0, "bad": 60.0}),
        engine,  # type: ignore[arg-type]
        clock=clock,
        executor=InlineExecutor(),
        stop=engine.stop,
    )
    assert daemon.health().ok
    clock.horizon = START + 170
    clock.on_horizon = daemon.stop
    daemon.run()
    assert daemon.health().ok  # still within 3 intervals of the start
    clock.advance(20)
    health = daemon.health()
    assert not health.ok
    assert health.detail["failing"] == ["bad"]
    assert health.detail["instances"]["bad"]["last_error"] == "remote said 503"
    assert health.detail["instances"]["good"]["ok"] is True


def test_a_long_cycle_that_makes_progress_stays_healthy() -> None:
    clock = FakeClock()
    daemon = Daemon(make_config({"a": 60.0}), FakeEngine(clock), clock=clock)  # type: ignore[arg-type]
    daemon.schedule.start("a", clock.monotonic())
    clock.advance(500)
    assert not daemon.health().ok
    daemon._progress(type("P", (), {"instance": "a", "read": 5, "stored": 5})())  # type: ignore[arg-type]
    assert daemon.health().ok


def test_last_success_from_the_store_counts_for_health_and_metrics() -> None:
    clock = FakeClock()
    metrics = BridgeMetrics()
    earlier = clock.now().replace(hour=11)  # an hour ago: late for a 60 s interval
    daemon = Daemon(
        make_config({"a": 60.0}),
        FakeEngine(clock),  # type: ignore[arg-type]
        clock=clock,
        metrics=metrics,
        last_success={"a": earlier},
    )
    assert not daemon.health().ok
    value = metrics.registry.get_sample_value
    assert value("usm_bridge_last_success_timestamp_seconds", {"instance": "a"}) == (
        earlier.timestamp()
    )


def test_metrics_follow_the_cycles() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, failing={"bad"})
    metrics = BridgeMetrics()
    counts = ({"good": 4, "bad": 0}, {"bad": 2})
    run_for(
        300, engine, clock, {"good": 60.0, "bad": 60.0}, metrics=metrics,
        store_counts=lambda: counts,
    )  # fmt: skip
    value = metrics.registry.get_sample_value
    good = len(engine.times("good"))
    bad = len(engine.times("bad"))
    assert value("usm_bridge_cycles_total", {"instance": "good", "outcome": "ok"}) == good
    assert value("usm_bridge_cycles_total", {"instance": "bad", "outcome": "error"}) == bad
    assert value("usm_bridge_records_read_total", {"instance": "good"}) == 3 * good
    assert value("usm_bridge_records_stored_total", {"instance": "good"}) == 2 * good
    assert value("usm_bridge_echoes_total", {"instance": "good"}) == 0
    assert value("usm_bridge_pushed_total", {"instance": "good"}) == good
    assert value("usm_bridge_dead_letters_total", {"instance": "bad"}) == bad
    assert value("usm_bridge_consecutive_failures", {"instance": "bad"}) == bad
    assert value("usm_bridge_consecutive_failures", {"instance": "good"}) == 0
    assert value("usm_bridge_cycle_duration_seconds_count", {"instance": "good"}) == good
    assert value("usm_bridge_outbox_backlog", {"instance": "good"}) == 4
    assert value("usm_bridge_dead_letters_open", {"instance": "bad"}) == 2
    assert value("usm_bridge_last_success_timestamp_seconds", {"instance": "good"}) > 0
    assert value("usm_bridge_last_success_timestamp_seconds", {"instance": "bad"}) is None
    assert value("usm_bridge_cycle_running", {"instance": "good"}) == 0
