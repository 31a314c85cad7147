"""Issue #18: a tool that accepts connections and never answers holds back no other instance.

The real daemon (real threads, real time, intervals of 1 s) runs the chain HR (mail) ->
Facilities (Jira) -> IT, where IT's ServiceNow is a :class:`~e2e.faulty_door.FaultyDoor`: every
request to it waits out its read timeout. The onboarding mail still travels to Jira, HR's and
Facilities' cycles keep starting within their interval plus 2 s (asserted on the start times
the daemon's engine recorded, not on how long the test took), IT's jobs are marked hung in
/healthz, and nothing is lost: once IT answers again, its item is created exactly once.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from e2e.e2e_env import Tools, calls_by_unit, open_engine, settle
from e2e.faulty_door import FaultyDoor
from usm_bridge.model import utcnow
from usm_bridge.store import OutboxStatus
from usm_bridge.sync.daemon import JITTER, Daemon
from usm_bridge.sync.engine import CycleProgress, CycleSummary, PushSummary, SyncEngine

#: Every instance's interval in the e2e config (seconds).
INTERVAL = 1.0
#: How long the daemon runs against the hung tool.
RUN_FOR = 6.0
#: A job of IT lasts a few read timeouts: over this limit it is marked hung.
TIME_LIMIT = 1.5
#: IT behind the door: each request waits 1 s for an answer that never comes, three attempts
#: within a budget of 3 s, so one request to IT holds its job for about 3 to 4 s.
HUNG_SETTINGS = {"read_timeout": 1.0, "max_attempts": 3, "retry_budget": 3.0}


class RecordingEngine:
    """The real engine as the daemon sees it, recording when each cycle started."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.pushes: list[PushSummary] = []

    def cycle(
        self, instance: str, *, progress: Callable[[CycleProgress], None] | None = None
    ) -> CycleSummary:
        with self.lock:
            self.starts[instance].append(time.monotonic())
        return self.engine.cycle(instance, progress=progress)

    def push(self, target: str) -> PushSummary:
        summary = self.engine.push(target)
        with self.lock:
            self.pushes.append(summary)
        return summary

    def census(self, instance: str) -> int:
        return self.engine.census(instance)


def run_daemon(engine: SyncEngine) -> tuple[RecordingEngine, list[dict[str, Any]]]:
    """The daemon over ``engine`` for :data:`RUN_FOR` seconds; what it recorded, and the IT
    rows of /healthz sampled meanwhile."""
    recorder = RecordingEngine(engine)
    daemon = Daemon(
        engine.config,
        recorder,  # type: ignore[arg-type]
        stop=engine.stop,
        time_limit=TIME_LIMIT,
    )
    runner = threading.Thread(target=daemon.run, name="daemon")
    runner.start()
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + RUN_FOR
        while time.monotonic() < deadline:
            samples.append(daemon.health().detail["instances"]["it-snow"])
            time.sleep(0.2)
    finally:
        daemon.stop()
        runner.join(30)  # IT's job in flight ends at its read timeout
    assert not runner.is_alive()
    return recorder, samples


def test_a_hung_tool_delays_no_other_instance_and_loses_nothing(
    tools: Tools, store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tools.mail_to_hr()
    with (
        FaultyDoor() as door,
        open_engine(
            tools,
            tmp_path / "hung.toml",
            store_url,
            extra={"it-snow": {"instance_url": door.url, **HUNG_SETTINGS}},
        ) as engine,
    ):
        recorder, samples = run_daemon(engine)
        assert door.accepted >= 1  # the bridge did try IT

        # HR and Facilities kept their interval: never more than an interval (with its
        # jitter) plus 2 s between the starts of two of their cycles.
        bound = INTERVAL * (1 + JITTER) + 2.0
        for name in ("hr-mail", "facilities-jira"):
            starts = recorder.starts[name]
            assert len(starts) >= RUN_FOR / (INTERVAL * (1 + JITTER)) - 2, (name, starts)
            gaps = [b - a for a, b in itertools.pairwise(starts)]
            assert max(gaps) <= bound, (name, [round(g, 2) for g in gaps])

        # The mail travelled to Jira meanwhile; IT's item waits in the outbox, not given up.
        assert len(tools.jira_issues()) == 1
        by_unit = calls_by_unit(engine.store)
        assert len(by_unit["hr"]) == len(by_unit["facilities"]) == len(by_unit["it"]) == 1
        with engine.store.begin(readonly=True) as tx:
            waiting = tx.list_outbox(status=OutboxStatus.PENDING, instance="it-snow")
            dead = tx.list_outbox(status=OutboxStatus.DEAD)
        assert [item.operation.value for item in waiting] == ["create"] and dead == []

        # A push to IT stopped at its first unanswered request; IT's jobs showed as hung.
        stalled = [p for p in recorder.pushes if p.target == "it-snow" and p.stalled]
        assert stalled, recorder.pushes
        assert any(row["hung_for_s"] is not None and row["ok"] is False for row in samples)
        hung = [r for r in caplog.records if getattr(r, "event", None) == "job_hung"]
        assert {getattr(r, "instance", None) for r in hung} == {"it-snow"}

    # IT answers again (a later run, past the backoff): its item is made, exactly once.
    later = utcnow() + timedelta(hours=2)
    with open_engine(tools, tmp_path / "fixed.toml", store_url, clock=lambda: later) as fixed:
        settle(fixed, rounds=2)
        (item,) = tools.snow_items()
        (it,) = calls_by_unit(fixed.store)["it"]
        assert item["correlation_id"] == f"usm-bridge:{it.id}"
