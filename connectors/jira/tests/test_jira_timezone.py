"""Incremental reads across time-zone boundaries with many issues updated in one minute.

A quoted JQL date has minute precision and is read in the searching account's zone; the
connector's bound is unquoted epoch milliseconds instead, one instant in every zone, so no
``/myself`` is needed to learn the zone. These tests put the account in zones whose offset
changes (summer time starting and ending, with a repeated hour) or whose date differs from
UTC's, update far more issues in one minute than a page holds, and check that reads from saved
cursors, interrupted after every page, lose nothing and yield nothing twice, and that a read
with nothing new costs exactly one request.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from jira_harness import connector_for, served, start_simulator
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.jql import epoch_bound
from usm_bridge_jira.simulator import JiraSimulator
from usm_bridge_jira.simulator.jql import JqlError

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


_SEARCH = {"cloud": "search/jql", "datacenter": "search"}


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

        # A read with nothing new yields nothing, however often it is repeated, and asks only
        # the search (the overlap's pages: hundreds of changes lie within it here), no /myself.
        for _ in range(2):
            simulator.site.clock.advance(timedelta(seconds=20))
            with served(simulator) as requests:
                read, cursor = _drain(connector, cursor)
            assert read == []
            assert {(r.method, r.path) for r in requests} == {("GET", _SEARCH[flavour])}
            assert re.search(r"updated >= [0-9]+ ", requests[0].query["jql"])
    finally:
        connector.close()
        simulator.stop()
    recorder.validate()


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_an_idle_read_is_one_request_bounded_by_the_cursor_less_the_overlap(flavour: str) -> None:
    start = datetime(2024, 3, 31, 0, 58, 30, tzinfo=UTC)
    simulator, _ = start_simulator(flavour, start=start, time_zone="Pacific/Auckland")  # type: ignore[arg-type]
    connector = connector_for(simulator, page_size=25, overlap_minutes=2)
    try:
        simulator.site.seed(2)
        _, cursor = _drain(connector, None)
        newest = max(issue.updated for issue in simulator.site.issues.values())
        for _ in range(2):
            simulator.site.clock.advance(timedelta(minutes=5))
            with served(simulator) as requests:
                read, cursor = _drain(connector, cursor)
            assert read == []
            assert [(r.method, r.path) for r in requests] == [("GET", _SEARCH[flavour])]
            bound = int(newest.timestamp() * 1000) - 120_000
            assert f"AND updated >= {bound} ORDER BY" in requests[0].query["jql"]
    finally:
        connector.close()
        simulator.stop()


def test_a_bound_before_the_epoch_is_the_epoch() -> None:
    # A cursor that has seen nothing is at 0; its overlap would reach before 1970, and a
    # leading minus is JQL's syntax for a date relative to now.
    assert epoch_bound(-300_000) == "0"
    assert epoch_bound(1_711_846_830_000) == "1711846830000"


def test_the_simulator_reads_epoch_milliseconds_alike_in_every_zone() -> None:
    """As Jira does: an unquoted number is an instant; a quoted date is the account's wall time
    (the trap the epoch bound avoids); a quoted bare number is no date."""
    start = datetime(2024, 3, 31, 0, 58, 30, tzinfo=UTC)
    for time_zone in ("America/Los_Angeles", "Europe/Berlin", "Pacific/Auckland"):
        simulator, _ = start_simulator("cloud", start=start, time_zone=time_zone)
        try:
            site = simulator.site
            site.seed(3)
            stamp = int(start.timestamp() * 1000)
            with site.lock:
                assert len(site._sorted_ids(f"project = IT AND updated >= {stamp}")) == 3
                after = f"project = IT AND updated >= {stamp + 3_600_000}"
                assert site._sorted_ids(after) == []
                utc_text = start.strftime("%Y/%m/%d %H:%M")
                in_utc = site._sorted_ids(f'project = IT AND updated >= "{utc_text}"')
                assert len(in_utc) == (0 if time_zone == "America/Los_Angeles" else 3)
                with pytest.raises(JqlError, match="without quote-marks"):
                    site._sorted_ids(f'project = IT AND updated >= "{stamp}"')
        finally:
            simulator.stop()
