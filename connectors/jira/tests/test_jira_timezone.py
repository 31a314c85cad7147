"""Incremental reads across time-zone boundaries with many issues updated in one minute.

JQL dates have minute precision and are read in the searching account's zone. These tests put
the account in zones whose offset changes (summer time starting and ending, with a repeated
hour) or whose date differs from UTC's, update far more issues in one minute than a page holds,
and check that reads from saved cursors, interrupted after every page, lose nothing and yield
nothing twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from jira_harness import connector_for, start_simulator
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.jql import jql_minute, zone
from usm_bridge_jira.simulator import JiraSimulator

from usm_bridge.connector import Checkpoint, RawRecord

CASES = {
    # Berlin, 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    "summer-time-starts": ("Europe/Berlin", datetime(2024, 3, 31, 0, 58, 30, tzinfo=UTC)),
    # Berlin, 03:00 CEST becomes 02:00 CET at 01:00 UTC: 02:00-02:59 happens twice.
    "summer-time-ends": ("Europe/Berlin", datetime(2024, 10, 27, 0, 58, 30, tzinfo=UTC)),
    # Auckland is a day ahead of UTC; its summer time ends on 2024-04-07 at 14:00 UTC.
    "date-line": ("Pacific/Auckland", datetime(2024, 4, 6, 13, 58, 30, tzinfo=UTC)),
    # Los Angeles is behind UTC: midnight UTC is the afternoon before.
    "behind-utc": ("America/Los_Angeles", datetime(2024, 3, 9, 23, 58, 30, tzinfo=UTC)),
}


def _drain(connector: JiraConnector, cursor: str | None) -> tuple[list[str], str]:
    """Read page by page, interrupting after every checkpoint and resuming from it."""
    seen: list[str] = []
    while True:
        stream = connector.read_changes(cursor)
        got_records = False
        for item in stream:
            if isinstance(item, RawRecord):
                assert item.updated is not None
                seen.append(f"{item.remote_id}@{item.updated.astimezone(UTC).isoformat()}")
                got_records = True
            elif isinstance(item, Checkpoint):
                cursor = item.cursor
                if got_records:
                    break  # the interruption: resume from this checkpoint
        stream.close()  # type: ignore[attr-defined]
        if not got_records:
            assert cursor is not None
            return seen, cursor


def _updates(simulator: JiraSimulator, count: int, *, touch_every: int = 0) -> list[str]:
    """Create ``count`` issues (and touch some old ones) 300 ms apart: ~200 per minute."""
    site = simulator.site
    changed: list[str] = []
    old = list(site.issues.values())
    for n in range(count):
        site.clock.advance(timedelta(milliseconds=299))
        if touch_every and n % touch_every == 0 and old:
            issue = old.pop(0)
            site.touch(issue)
        else:
            issue = site.add_issue(f"Light {n} flickers in corridor B")
        changed.append(f"{issue.id}@{issue.updated.astimezone(UTC).isoformat()}")
    return changed


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_reads_across_the_boundary_lose_and_repeat_nothing(flavour: str, case: str) -> None:
    time_zone, start = CASES[case]
    simulator, recorder = start_simulator(flavour, start=start, time_zone=time_zone)  # type: ignore[arg-type]
    connector = connector_for(simulator, page_size=25, overlap_minutes=2)
    try:
        first = _updates(simulator, 150)  # 45 s: the minute before the boundary and the next
        read, cursor = _drain(connector, None)
        assert Counter(read) == Counter(first)

        # Many more in the same minutes, across the boundary, some of them old issues touched.
        second = _updates(simulator, 400, touch_every=7)
        read, cursor = _drain(connector, cursor)
        assert len(read) == len(set(read)), "an issue change was yielded twice"
        assert Counter(read) == Counter(second), "lost or foreign changes"

        # A read with nothing new yields nothing, however often it is repeated.
        for _ in range(2):
            simulator.site.clock.advance(timedelta(seconds=20))
            read, cursor = _drain(connector, cursor)
            assert read == []
    finally:
        connector.close()
        simulator.stop()
    recorder.validate()


def test_the_jql_bound_is_written_in_the_accounts_zone() -> None:
    moment = datetime(2024, 3, 31, 1, 0, 59, tzinfo=UTC)
    assert jql_minute(moment, zone("Europe/Berlin")) == "2024/03/31 03:00"
    assert jql_minute(moment, zone("Pacific/Auckland")) == "2024/03/31 14:00"
    assert jql_minute(moment, zone("America/Los_Angeles")) == "2024/03/30 18:00"
    assert jql_minute(moment, zone(None)) == "2024/03/31 01:00"


def test_an_ambiguous_wall_time_steps_back_an_hour() -> None:
    # 00:30 UTC on 2024-10-27 is 02:30 CEST; 02:30 comes again at 01:30 UTC (CET).
    berlin = zone("Europe/Berlin")
    assert jql_minute(datetime(2024, 10, 27, 0, 30, 10, tzinfo=UTC), berlin) == "2024/10/27 01:30"
    assert jql_minute(datetime(2024, 10, 27, 1, 30, 10, tzinfo=UTC), berlin) == "2024/10/27 02:30"


def test_a_utc_bound_would_lose_changes() -> None:
    """The trap itself: the simulator reads JQL dates in the account's zone, as Jira does."""
    start = datetime(2024, 3, 31, 0, 58, 30, tzinfo=UTC)
    simulator, _ = start_simulator("cloud", start=start, time_zone="America/Los_Angeles")
    try:
        simulator.site.seed(3)
        site = simulator.site
        utc_text = start.strftime("%Y/%m/%d %H:%M")
        with site.lock:
            in_utc = site._sorted_ids(f'project = IT AND updated >= "{utc_text}"')
            local = jql_minute(start, zone("America/Los_Angeles"))
            in_zone = site._sorted_ids(f'project = IT AND updated >= "{local}"')
        assert in_utc == [] and len(in_zone) == 3
    finally:
        simulator.stop()
