"""Issue #18, "done when", in workers: a tool that accepts connections and never answers delays
no other instance beyond its interval plus 2 s; over PostgreSQL, on Redis and on RabbitMQ.

The real ``usm-bridge scheduler`` and two ``usm-bridge worker`` processes (one pool process
each, every queue) run the chain HR (mail) -> Facilities (Jira) -> IT, where IT's ServiceNow
is a :class:`~e2e.faulty_door.FaultyDoor` and its read timeout is far longer than the tasks'
soft time limit: only the time limit ends a task of IT, and it is longer than the 2 s of
slack, so a worker process held by IT while the others' cycles wait would fail the test.
Every instance's interval is 1 s.

Asserted on the start times the workers recorded in the store (``last_started``, sampled far
more often than a cycle can run), not on how long the test took: HR's and Facilities' cycles
keep their interval (each gap within the interval, its jitter and 2 s); IT's tasks end at the
soft time limit as failed cycles (no process killed), and the scheduler backs IT off, and
only IT (its log says so at each turn of a failing instance); the mail reaches Jira
meanwhile, IT's item waits in the outbox, and once IT answers it is made once.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from e2e.e2e_env import Tools, calls_by_unit, open_engine, settle
from e2e.faulty_door import FaultyDoor

from celery_workers.conftest import Processes, delete_queues, workers_config
from usm_bridge.model import utcnow
from usm_bridge.store import OutboxStatus, Store
from usm_bridge.workers.scheduler import JITTER

INTERVAL = 1.0
#: IT's tasks are told to stop after this long, and killed after ``HARD_LIMIT``.
SOFT_LIMIT = 4.0
HARD_LIMIT = 6.0
#: How long the healthy instances' cycles are watched at least, once both have started.
WINDOW = 8.0
HEALTHY = ("hr-mail", "facilities-jira")
#: The healthy instances' cycles before the window opens.
WARM = 2
#: How long IT's first failure is watched after it is recorded: the scheduler reads it at
#: IT's next turn (within an interval and its jitter) and backs IT off.
NOTICE = 2.0
#: IT behind the door: one request would wait 30 s for its answer, far past the time limit.
HUNG_SETTINGS = {"read_timeout": 30.0, "max_attempts": 3, "retry_budget": 60.0}


def _watch_starts(
    store_url: str, until: float, *, first: tuple[str, ...], failed: str
) -> dict[str, list[datetime]]:
    """Every cycle start the store records (each instance's ``last_started`` as it changes),
    sampled every 50 ms: from when every instance of ``first`` has run ``WARM`` times (each
    worker process opens its store and connectors at its first task: start-up, not the
    hung tool, which hangs from the first second on and all along), for ``until`` more
    seconds, and on until ``failed`` has had a failed cycle on record for ``NOTICE`` seconds
    (its first task may be a push that holds its tool until the time limit, and only then
    its first cycle runs, to the limit again). A cycle runs at least tens of milliseconds,
    so no start is missed."""
    starts: dict[str, list[datetime]] = defaultdict(list)
    deadline: float | None = None
    failed_at: float | None = None
    give_up = time.monotonic() + 45.0  # the workers' start-up, two time limits
    with Store.open(store_url) as store:
        while True:
            with store.begin(readonly=True) as tx:
                states = {state.instance: state for state in tx.list_instance_states()}
            for state in states.values():
                seen = starts[state.instance]
                if not seen or seen[-1] != state.last_started:
                    seen.append(state.last_started)
            if deadline is None and all(len(starts[name]) >= WARM for name in first):
                deadline = time.monotonic() + until
                for name in first:  # the window opens at their WARM-th start
                    del starts[name][:-1]
            hung = states.get(failed)
            if failed_at is None and hung is not None and hung.consecutive_failures:
                failed_at = time.monotonic()
            # Its failure stays in view a little longer than an interval: the scheduler's
            # next turn of it reads it, and backs it off.
            seen_long = failed_at is not None and time.monotonic() >= failed_at + NOTICE
            if deadline is not None and time.monotonic() >= deadline and seen_long:
                return starts
            assert time.monotonic() < give_up, dict(starts)
            time.sleep(0.05)


@pytest.mark.postgres
def test_a_hung_tool_delays_no_other_instance_in_workers_and_loses_nothing(
    tools: Tools,
    fresh_postgres_url: str,
    broker_url: str,
    processes: Processes,
    tmp_path: Path,
) -> None:
    store_url = fresh_postgres_url
    with FaultyDoor() as door:
        config = workers_config(
            tools,
            processes.config,
            store_url,
            broker_url,
            extra={"it-snow": {"instance_url": door.url, **HUNG_SETTINGS}},
            time_limits=(SOFT_LIMIT, HARD_LIMIT),
        )
        Store.open(store_url).close()  # migrated once, before the workers race to it
        tools.mail_to_hr()
        try:
            for _ in range(2):
                processes.worker()
            processes.start("scheduler")
            starts = _watch_starts(store_url, WINDOW, first=HEALTHY, failed="it-snow")
        finally:
            processes.stop_all()
            delete_queues(config)
        log = processes.log.read_text(errors="replace")
        assert door.accepted >= 1, log[-4000:]  # the bridge did try IT

    # HR and Facilities kept their interval all along.
    bound = INTERVAL * (1 + JITTER) + 2.0
    for name in HEALTHY:
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts[name])]
        assert len(gaps) >= WINDOW / (INTERVAL * (1 + JITTER)) - 2, (name, gaps, log[-4000:])
        assert max(gaps) <= bound, (name, [round(g, 2) for g in gaps], log[-4000:])

    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        it = tx.get_instance_state("it-snow")
        waiting = tx.list_outbox(status=OutboxStatus.PENDING, instance="it-snow")
        dead = tx.list_outbox(status=OutboxStatus.DEAD)
    # IT's tasks ended at the soft time limit (no process had to be killed), each a failed
    # cycle on record; the scheduler then sent IT's cycles after its backoff, and only IT's.
    assert it is not None and it.consecutive_failures >= 1, (it, log[-4000:])
    assert it.last_error is not None and "SoftTimeLimitExceeded" in it.last_error, it
    assert f"Soft time limit ({SOFT_LIMIT:.1f}s) exceeded for usm_bridge.cycle" in log
    assert "Hard time limit" not in log
    backed_off = re.findall(r"cycle of (\S+) backed off: the next in ([\d.]+) s", log)
    assert {name for name, _ in backed_off} == {"it-snow"}, log[-4000:]
    assert all(float(delay) >= 2 * INTERVAL * (1 - JITTER) for _, delay in backed_off)
    # Each of IT's cycles holds its tool to the limit, and then waits out its backoff.
    assert len(starts["it-snow"]) < len(starts["hr-mail"]) / 2, starts

    # Nothing lost: the mail reached Jira meanwhile; IT's item waits in the outbox.
    assert len(tools.jira_issues()) == 1
    with Store.open(store_url) as store:
        by_unit = calls_by_unit(store)
    assert len(by_unit["hr"]) == len(by_unit["facilities"]) == len(by_unit["it"]) == 1
    assert [item.operation.value for item in waiting] == ["create"] and dead == []

    # IT answers again (a later run, past the backoff): its item is made, exactly once.
    later = utcnow() + timedelta(hours=2)
    with open_engine(tools, tmp_path / "fixed.toml", store_url, clock=lambda: later) as fixed:
        settle(fixed, rounds=2)
        (item,) = tools.snow_items()
        (it_call,) = calls_by_unit(fixed.store)["it"]
        assert item["correlation_id"] == f"usm-bridge:{it_call.id}"
