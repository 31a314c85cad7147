"""Push jobs and time limits of the daemon (issue #18): a target's outbox is pushed on its own
slot, never inside another instance's cycle; a job over ``[daemon] time_limit`` is marked hung,
shown in /healthz, never started twice, and holds back no other instance."""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from daemon_fakes import (
    START,
    FakeClock,
    FakeEngine,
    gaps,
    make_config,
    make_daemon,
    run_for,
    run_then_release,
)

from usm_bridge.config import DaemonConfig
from usm_bridge.sync.daemon import JITTER, Daemon, Schedule
from usm_bridge.sync.push_jobs import PushJobs
from usm_bridge.sync.time_limits import DEFAULT_TIME_LIMIT, TimeLimits

BACKOFF = Schedule({}, now=0.0, rng=random.Random(1)).backoff


# --- the push plan alone ----------------------------------------------------------------------


def test_a_push_asked_for_many_times_runs_once_and_once_more_if_asked_while_it_runs() -> None:
    jobs = PushJobs({"a": 10.0, "b": 10.0}, backoff=BACKOFF)
    assert jobs.due(0.0) == [] and jobs.next_due() is None
    jobs.request(["a", "a", "nowhere"])  # a target not in the config is not ours: ignored
    assert jobs.due(0.0) == ["a"]
    jobs.start("a")
    with pytest.raises(RuntimeError, match="already running"):
        jobs.start("a")
    assert jobs.due(0.0) == []
    jobs.request(["a"])  # the cycle that asks may have queued what the running push missed
    assert jobs.due(1.0) == []  # never two at once
    assert jobs.finish("a", now=1.0, pushed=2, error=None) == 0.0
    assert jobs.due(1.0) == ["a"]
    jobs.start("a")
    jobs.finish("a", now=2.0, error=None)
    assert jobs.due(2.0) == [] and jobs.slots["a"].pushed == 2


def test_a_push_that_stalls_backs_its_target_off_and_one_that_goes_through_resets_it() -> None:
    jobs = PushJobs({"a": 10.0}, backoff=BACKOFF)
    delays = []
    for failures in (1, 2, 3):
        jobs.request(["a"])
        (target,) = jobs.due(1000.0 * failures)
        jobs.start(target)
        delays.append(jobs.finish("a", now=1000.0 * failures, error="read timeout"))
        assert jobs.slots["a"].failures == failures
    assert delays == [20.0, 40.0, 80.0]  # the interval doubled, as a failed cycle's
    jobs.request(["a"])
    assert jobs.due(3079.0) == [] and jobs.next_due() == 3080.0
    jobs.start(jobs.due(3080.0)[0])
    jobs.finish("a", now=3080.0, error=None)
    assert (jobs.slots["a"].failures, jobs.slots["a"].last_error) == (0, None)


# --- time limits alone ------------------------------------------------------------------------


def test_a_job_over_its_limit_is_marked_hung_once_logged_and_no_longer_active(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = TimeLimits(30.0)
    limits.started("cycle", "a", 0.0)
    limits.started("push", "b", 10.0)
    with pytest.raises(RuntimeError, match="already running"):
        limits.started("push", "b", 11.0)
    assert limits.next_deadline() == 30.0 and limits.active() == 2
    assert limits.check(29.0) == []
    with caplog.at_level(logging.WARNING):
        (hung,) = limits.check(31.0)
        assert limits.check(35.0) == []  # logged once
    assert (hung.job, hung.instance, hung.seconds) == ("cycle", "a", 31.0)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "job_hung"]
    assert (record.instance, record.job, record.seconds) == ("a", "cycle", 31.0)  # type: ignore[attr-defined]
    assert limits.active() == 1 and limits.next_deadline() == 40.0
    assert limits.hung_for("a", 45.0) == 45.0 and limits.hung_for("b", 45.0) is None
    with caplog.at_level(logging.WARNING):
        limits.finished("cycle", "a", 50.0)
    assert "the cycle of a ended after 50s" in caplog.text
    assert limits.hung_for("a", 51.0) is None
    limits.started("cycle", "a", 51.0)  # ended: it may start again


def test_the_time_limit_comes_from_the_config_and_defaults_to_ten_minutes() -> None:
    assert DaemonConfig().time_limit == DEFAULT_TIME_LIMIT == 600.0
    assert DaemonConfig(time_limit="2m").time_limit == 120.0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DaemonConfig(time_limit=0)
    config = make_config({"a": 60.0}, time_limit="90s")
    assert Daemon(config, FakeEngine(FakeClock())).limits.limit == 90.0  # type: ignore[arg-type]


# --- the daemon -------------------------------------------------------------------------------


def test_a_cycle_s_targets_are_pushed_after_it_on_their_own_slots() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, targets={"a": frozenset({"a", "b"})})
    daemon = run_for(35, engine, clock, {"a": 10.0, "b": 10.0})
    cycles_of_a = engine.times("a")
    assert len(cycles_of_a) >= 3
    # Each cycle of a is followed by one push of a and one of b (b's own cycles ask for none).
    assert len(engine.push_times("a")) == len(engine.push_times("b")) == len(cycles_of_a)
    for cycle_at, push_at in zip(cycles_of_a, engine.push_times("b"), strict=True):
        assert cycle_at <= push_at < cycle_at + 10.0
    assert daemon.pushes.slots["b"].pushed == len(cycles_of_a)
    # The metrics count each push batch and what it pushed (a cycle pushes nothing itself).
    value = daemon.metrics.registry.get_sample_value
    assert value("usm_bridge_pushes_total", {"instance": "b", "outcome": "ok"}) == len(cycles_of_a)
    # The fake's cycles claim a write each too (a real cycle pushes none): b's own cycles'.
    pushed = len(cycles_of_a) + len(engine.times("b"))
    assert value("usm_bridge_pushed_total", {"instance": "b"}) == pushed
    assert value("usm_bridge_push_duration_seconds_count", {"instance": "b"}) == len(cycles_of_a)
    assert value("usm_bridge_pushes_total", {"instance": "b", "outcome": "stalled"}) == 0


def test_a_stalled_target_backs_off_while_the_cycle_feeding_it_keeps_its_interval() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, targets={"a": frozenset({"b"})}, stalling={"b"})
    daemon = run_for(200, engine, clock, {"a": 10.0, "b": 10.0})
    assert max(gaps(engine.times("a"))) <= 10.0 * (1 + JITTER)
    pushes = engine.push_times("b")
    # 20 s, 40 s, 80 s, then capped at ten intervals: far fewer pushes than cycles asking.
    assert 3 <= len(pushes) <= 6 < len(engine.times("a"))
    assert all(later >= 0.9 * 20.0 for later in gaps(pushes))
    row = daemon.health().detail["instances"]["b"]
    assert row["push_failures"] == len(pushes) and "read timeout" in row["push_error"]
    value = daemon.metrics.registry.get_sample_value
    assert value("usm_bridge_pushes_total", {"instance": "b", "outcome": "stalled"}) == len(pushes)
    assert value("usm_bridge_pushes_total", {"instance": "b", "outcome": "ok"}) == 0
    # Only b's own (fake) cycles claim writes; its stalled pushes none.
    assert value("usm_bridge_pushed_total", {"instance": "b"}) == len(engine.times("b"))


def test_a_hung_push_holds_back_no_cycle_shows_in_healthz_and_never_runs_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real threads, simulated time: b's push hangs (its tool never answers) for longer than
    its time limit while a and c cycle on; with max_workers = 1 the hung job frees its place."""
    clock = FakeClock()
    gate = threading.Event()
    engine = FakeEngine(clock, targets={"a": frozenset({"b"})}, push_gates={"b": gate})
    config = make_config({"a": 10.0, "b": 10.0, "c": 10.0}, max_workers=1)
    seen: list[object] = []
    with ThreadPoolExecutor(max_workers=6) as pool:
        daemon = make_daemon(config, engine, seed=3, executor=pool, time_limit=30.0)
        with caplog.at_level(logging.WARNING):
            run_then_release(
                daemon,
                clock,
                START + 120,
                gate,
                # Time stands still while a job other than b's push runs or waits to be booked.
                busy=lambda: any(s.running for s in daemon.schedule.slots.values()),
                at_stop=lambda: seen.append(daemon.health().detail["instances"]["b"]),
            )
    assert len(engine.push_times("b")) == 1 and engine.push_overlaps == []
    for name in ("a", "c"):
        assert len(engine.times(name)) >= 10, name
        assert max(gaps(engine.times(name))) <= 10.0 * (1 + JITTER) + 2.0
    (row,) = seen
    assert row["hung_for_s"] is not None and row["hung_for_s"] >= 30.0  # type: ignore[index]
    assert row["ok"] is False  # type: ignore[index]
    hung = [r for r in caplog.records if getattr(r, "event", None) == "job_hung"]
    assert [(r.job, r.instance) for r in hung] == [("push", "b")]  # type: ignore[attr-defined]
    hits = {"instance": "b", "job": "push", "limit": "hung"}
    assert daemon.metrics.registry.get_sample_value("usm_bridge_time_limit_hits_total", hits) == 1


def test_a_hung_cycle_frees_its_worker_place_at_its_time_limit_and_never_runs_twice() -> None:
    """max_workers = 1 and a cycle that never ends: until its limit, a waits for the one place;
    after it, the hung cycle no longer counts and a keeps its interval."""
    clock = FakeClock()
    gate = threading.Event()
    engine = FakeEngine(clock, gates={"stuck": gate})
    config = make_config({"stuck": 10.0, "a": 10.0}, max_workers=1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        daemon = make_daemon(config, engine, seed=5, executor=pool, time_limit=30.0)
        run_then_release(
            daemon, clock, START + 200, gate, busy=lambda: daemon.schedule.slots["a"].running
        )
    assert len(engine.times("stuck")) == 1 and engine.overlaps == []
    after_limit = [t for t in engine.times("a") if t >= engine.times("stuck")[0] + 30.0]
    assert len(after_limit) >= 15
    assert max(gaps(after_limit)) <= 10.0 * (1 + JITTER)
