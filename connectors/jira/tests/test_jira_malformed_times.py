"""Jira's times read in their fixed shape without strptime; an unreadable one loses nothing.

An issue whose ``updated`` cannot be read cannot be placed in the read's order nor under the
cursor: the read stops before it with an error naming it, having yielded only the issues before
it and no checkpoint past them, so the next read takes it again (nothing is lost).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jira_harness import connected
from usm_bridge_jira.connector import JiraConnector, parse_jira_time
from usm_bridge_jira.simulator import JiraSimulator

from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import RetriableRemoteError


def _issue(number: int, updated: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"summary": f"Issue {number}"}
    if updated is not None:
        fields["updated"] = updated
    return {"id": str(10000 + number), "key": f"IT-{number}", "fields": fields}


def _reading(connector: JiraConnector, *pages: list[dict[str, Any]]) -> None:
    def search(_jql: str) -> Iterator[list[dict[str, Any]]]:
        yield from pages

    connector._search = search  # type: ignore[method-assign]


@pytest.mark.parametrize("updated", ["yesterday", "2026-13-45T10:00:00.000+0000", 17, None])
def test_an_issue_without_a_readable_updated_ends_the_read_naming_it(
    cloud: JiraSimulator, updated: Any
) -> None:
    good = "2026-12-06T09:30:00.000+0000"
    items: list[RawRecord | Checkpoint] = []
    with connected(cloud) as connector:
        _reading(connector, [_issue(1, good), _issue(2, updated), _issue(3, good)])
        with pytest.raises(RetriableRemoteError, match=r"issue IT-2 .*updated"):
            items.extend(connector.read_changes(None))

    # IT-1 came before it; nothing after it, and no checkpoint: the next read starts over.
    assert [item.remote_key for item in items if isinstance(item, RawRecord)] == ["IT-1"]
    assert not any(isinstance(item, Checkpoint) for item in items)


def test_the_fixed_shape_reads_as_strptime_and_other_iso_forms_still_read() -> None:
    text = "2021-01-17T12:34:05.123+0530"
    assert parse_jira_time(text) == datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert parse_jira_time(text).utcoffset() == timedelta(hours=5, minutes=30)
    assert parse_jira_time("2021-01-17T12:34:05+00:00") == datetime(
        2021, 1, 17, 12, 34, 5, tzinfo=UTC
    )
    # No zone: read as UTC, as before.
    assert parse_jira_time("2021-01-17T12:34:05") == datetime(2021, 1, 17, 12, 34, 5, tzinfo=UTC)
    assert parse_jira_time("2021-01-17T12:34:05.1-0100").tzinfo == timezone(-timedelta(hours=1))
    with pytest.raises(ValueError):
        parse_jira_time("2021-02-30T12:34:05.000+0000")
