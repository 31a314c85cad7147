"""The scheduler: each instance due on its interval with jitter; one scheduler per store, so a
second one started by mistake exits naming the first, or stands by with ``--wait`` and takes
over when the first dies, and the schedule is never doubled (counted in the broker's queues)."""

from __future__ import annotations

import logging
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e.e2e_env import Tools

from celery_workers.conftest import Processes, delete_queues, workers_config
from usm_bridge.config import BridgeConfig
from usm_bridge.store import Store
from usm_bridge.workers.app import make_app
from usm_bridge.workers.backlog import waiting
from usm_bridge.workers.scheduler import (
    FIRST_SPREAD,
    CycleSchedule,
    run_schedule,
    stored_failures,
)
from usm_bridge.workers.tasks import queue_of

# -- the schedule, on a clock of our own ----------------------------------------------------


def test_each_instance_is_due_first_within_its_interval_then_every_interval_give_or_take_10pc() -> (
    None
):
    schedule = CycleSchedule({"fast": 10.0, "slow": 100.0}, now=0.0, rng=random.Random(7))
    assert 0.0 <= schedule.next_due["fast"] <= 10.0
    assert 0.0 <= schedule.next_due["slow"] <= FIRST_SPREAD  # not a whole interval of 100 s
    fired: dict[str, list[float]] = {"fast": [], "slow": []}
    for tick in range(10_000):
        now = tick / 10
        for name in schedule.due(now):
            fired[name].append(now)
    gaps = [b - a for a, b in zip(fired["fast"], fired["fast"][1:], strict=False)]
    assert min(gaps) >= 9.0 - 0.1 and max(gaps) <= 11.0 + 0.1
    assert len(set(gaps)) > 10  # jittered, not in step
    assert 9 <= len(fired["slow"]) <= 11


def test_instances_started_together_are_spread_over_their_first_interval_not_one_burst() -> None:
    schedule = CycleSchedule({f"i{n:03d}": 10.0 for n in range(1000)}, now=0.0)
    per_second = [0] * 10
    for at in schedule.next_due.values():
        per_second[int(at)] += 1
    # 100 a second on average; all in the first second was the burst this replaced.
    assert all(60 <= count <= 140 for count in per_second), per_second


def test_a_scheduler_far_behind_enqueues_each_instance_once_not_every_missed_turn() -> None:
    schedule = CycleSchedule({"a": 1.0, "b": 2.0}, now=0.0, rng=random.Random(1))
    assert schedule.due(1000.0) == ["a", "b"]
    assert schedule.due(1000.0) == []
    assert all(at > 1000.0 for at in schedule.next_due.values())
    assert 0.0 < schedule.wait_time(1000.0) <= 2.2


def test_a_failing_instance_backs_off_as_in_the_daemon_while_the_others_keep_their_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedule = CycleSchedule({"failing": 10.0, "fine": 10.0}, now=0.0, rng=random.Random(3))
    schedule.next_due = {"failing": 0.0, "fine": 0.0}
    with caplog.at_level(logging.INFO, logger="usm_bridge.workers.scheduler"):
        assert schedule.due(0.0, {"failing": 3}) == ["failing", "fine"]
    (line,) = caplog.messages  # the failing one only, saying when it is due again
    assert line == (
        f"cycle of failing backed off: the next in {schedule.next_due['failing']:.1f} s, "
        "after 3 failed cycle(s)"
    )
    assert 80 * 0.9 <= schedule.next_due["failing"] <= 80 * 1.1  # 10 s * 2**3
    assert 9.0 <= schedule.next_due["fine"] <= 11.0
    schedule.next_due["failing"] = 0.0
    schedule.due(0.0, {"failing": 30})
    assert 100 * 0.9 <= schedule.next_due["failing"] <= 100 * 1.1  # at most ten intervals


def test_the_failures_come_from_the_store_as_status_shows_them(store: Store) -> None:
    now = datetime.now(UTC)
    with store.begin() as tx:
        for error in ("timed out", "timed out again"):
            tx.record_run("it-snow", started=now, finished=now, counters={}, error=error)
        tx.record_run("hr-mail", started=now, finished=now, counters={})
    assert stored_failures(store) == {"it-snow": 2, "hr-mail": 0}
    store.close()
    assert stored_failures(store) == {}  # a store that cannot answer keeps the intervals


def test_a_cycle_the_broker_refuses_is_logged_and_the_others_are_still_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedule = CycleSchedule({"down": 0.02, "up": 0.02}, now=time.monotonic())
    stop = threading.Event()
    sent: list[str] = []

    def enqueue(name: str) -> None:
        if name == "down":
            raise ConnectionError("broker refused the connection")
        sent.append(name)
        if len(sent) >= 3:
            stop.set()

    with caplog.at_level(logging.WARNING, logger="usm_bridge.workers.scheduler"):
        run_schedule(schedule, enqueue, stop)
    assert sent == ["up"] * 3
    assert "could not enqueue a cycle of down: broker refused the connection" in caplog.text


# -- one scheduler per store, with real processes on a real broker --------------------------


def _sent_within(config: BridgeConfig, window: float) -> dict[str, int]:
    """The cycles sent to each instance's queue during ``window`` seconds, taken off the
    queues as they come (a cycle expires in its queue after its interval: RabbitMQ drops it)."""
    app = make_app(config)
    counts = dict.fromkeys(config.instances, 0)
    with app.connection_for_write() as conn:
        channel = conn.default_channel

        def take(count: bool) -> None:
            for name in config.instances:
                while channel.basic_get(queue_of(config, name), no_ack=True) is not None:
                    counts[name] += count

        take(count=False)  # sent before the window
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            take(count=True)
            time.sleep(0.05)
    return counts


def _wait_for(log: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, (text, log.read_text()[-3000:])
        time.sleep(0.1)


@pytest.mark.postgres
def test_a_second_scheduler_never_doubles_the_schedule_and_takes_over_when_the_first_dies(
    tools: Tools,
    fresh_postgres_url: str,
    broker_url: str,
    processes: Processes,
    tmp_path: Path,
) -> None:
    config = workers_config(tools, processes.config, fresh_postgres_url, broker_url)
    Store.open(fresh_postgres_url).close()
    log = tmp_path / "processes.log"
    try:
        first = processes.start("scheduler")
        _wait_for(log, "scheduler of 3 instance(s) on ")
        assert "guest:guest@" not in log.read_text()  # the broker's password is never logged

        second = subprocess.run(
            [sys.executable, "-m", "usm_bridge", "scheduler", "-c", str(processes.config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        message = " ".join(second.stderr.split())
        assert "another usm-bridge scheduler is running on the store" in message
        assert f"pid {first.pid} on {socket.gethostname()}" in message
        assert "--wait" in message

        processes.start("scheduler", "--wait")
        _wait_for(log, "standing by")
        window = 4.0
        counts = _sent_within(config, window)
        # One scheduler sends each instance's cycle every 0.9-1.1 s: at most 5 in 4 s (the
        # window's edges included); a doubled schedule would send 8 or more.
        assert all(2 <= n <= window / 0.9 + 1 for n in counts.values()), counts

        processes.kill(first)
        _wait_for(log, "the other scheduler stopped: taking over")
        counts = _sent_within(config, window)
        assert all(2 <= n <= window / 0.9 + 1 for n in counts.values()), counts
    finally:
        processes.stop_all()
        delete_queues(config)


@pytest.mark.postgres
def test_a_queue_nobody_serves_holds_one_waiting_cycle_not_one_per_turn_missed(
    tools: Tools,
    fresh_postgres_url: str,
    broker_url: str,
    processes: Processes,
    tmp_path: Path,
) -> None:
    config = workers_config(tools, processes.config, fresh_postgres_url, broker_url)
    Store.open(fresh_postgres_url).close()
    app = make_app(config)
    try:
        assert [waiting(app, config, name) for name in config.instances] == [0, 0, 0]
        scheduler = processes.start("scheduler")
        _wait_for(tmp_path / "processes.log", "scheduler of 3 instance(s) on ")
        # No worker: every instance's turn comes about four times in 4 s; on Redis each turn
        # would stay in the list, expired or not, and RabbitMQ would hold up to two (it drops
        # a cycle once expired: the queue is then empty until the instance's next turn).
        seen: dict[str, list[int]] = {name: [] for name in config.instances}
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            for name in config.instances:
                seen[name].append(waiting(app, config, name))
            time.sleep(0.1)
        assert {name: max(counts) for name, counts in seen.items()} == dict.fromkeys(
            config.instances, 1
        ), seen
        scheduler.send_signal(signal.SIGTERM)  # a graceful stop, the relay's (sync/signals.py)
        assert scheduler.wait(15) == 0
    finally:
        processes.stop_all()
        delete_queues(config)
        app.pool.force_close_all()  # the connections waiting() took from the pool
