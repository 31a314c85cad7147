"""A read takes the content digest (a JSON walk of the whole issue) only of the issues its
cursor goes on to remember: those within the overlap before a page's newest ``updated``. A
backfill whose pages span more than the overlap digests only their last minutes, and the read
after it still skips exactly the unchanged issues of its overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from jira_harness import connector_for, served, start_simulator
from usm_bridge_jira import connector as jira_connector

from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.content_digest import content_digest


def test_a_backfill_digests_only_what_its_cursors_remember(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digested: list[str] = []

    def counting(record: Any, **kwargs: Any) -> str:
        digested.append(str(record["id"]))
        return content_digest(record, **kwargs)

    monkeypatch.setattr(jira_connector, "content_digest", counting)
    simulator, _ = start_simulator("cloud")
    connector = connector_for(simulator, page_size=10, overlap_minutes=2)
    try:
        site = simulator.site
        start = site.clock.now() - timedelta(minutes=30)
        site.seed(30, start=start, step=timedelta(minutes=1))  # 10 minutes a page
        items = list(connector.read_changes(None))
        read = [item.remote_id for item in items if isinstance(item, RawRecord)]
        assert len(read) == 30
        # Per page, the issues within 2 minutes of its newest (3 of 10): the rest is forgotten
        # at once.
        assert len(digested) == 9
        cursor = [item for item in items if isinstance(item, Checkpoint)][-1].cursor
        assert set(digested[-3:]) <= set(cursor.split('"'))

        # The overlap of the next read is skipped by those digests: nothing again, one request.
        digested.clear()
        site.clock.advance(timedelta(minutes=1))
        with served(simulator) as requests:
            again = list(connector.read_changes(cursor))
        assert [item for item in again if isinstance(item, RawRecord)] == []
        assert len(requests) == 1
        assert len(digested) == 3  # compared, each against what the cursor remembers
    finally:
        connector.close()
        simulator.stop()
