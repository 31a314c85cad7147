"""A re-edit is never skipped: the cursor skips an issue only when its content is unchanged.

Some Jira flavours and proxies show ``updated`` in whole seconds, so two edits within one second
carry the same ``updated``; a cursor that skipped by (id, updated) lost the second one. The
simulator's ``second_precision`` reproduces that.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jira import JIRA
from jira_harness import connected
from usm_bridge_jira.connector import JiraConnector
from usm_bridge_jira.simulator import JiraSimulator

from usm_bridge.connector import Checkpoint, RawRecord
from usm_bridge.errors import ConfigurationError


def _read(connector: JiraConnector, cursor: str | None) -> tuple[list[RawRecord], str]:
    items = list(connector.read_changes(cursor))
    assert isinstance(items[-1], Checkpoint)
    return [item for item in items if isinstance(item, RawRecord)], items[-1].cursor


def _summaries(records: list[RawRecord]) -> list[Any]:
    return [record.data["fields"]["summary"] for record in records]  # type: ignore[index]


def _updated(records: list[RawRecord]) -> list[Any]:
    return [record.data["fields"]["updated"] for record in records]  # type: ignore[index]


def test_a_second_edit_within_the_same_second_is_read(simulator: JiraSimulator) -> None:
    simulator.site.second_precision = True
    issue = simulator.site.add_issue("Printer jammed")
    with connected(simulator) as connector:
        first, cursor = _read(connector, None)
        simulator.site.touch(issue, "Printer jammed, floor 2")
        second, cursor = _read(connector, cursor)
        simulator.site.touch(issue, "Printer jammed, floor 3")
        third, cursor = _read(connector, cursor)
        quiet, _ = _read(connector, cursor)
    assert _summaries(first + second + third) == [
        "Printer jammed",
        "Printer jammed, floor 2",
        "Printer jammed, floor 3",
    ]
    # The real case: all three versions show the same `updated`, to the second.
    assert len(set(_updated(first + second + third))) == 1
    assert quiet == []  # unchanged content is still skipped: a quiet read yields nothing


def test_an_unchanged_issue_in_the_overlap_is_skipped_and_a_changed_one_read(
    simulator: JiraSimulator,
) -> None:
    simulator.site.second_precision = True
    issues = [simulator.site.add_issue(f"Desk {n}") for n in range(5)]
    with connected(simulator) as connector:  # page_size 3: the read spans pages
        first, cursor = _read(connector, None)
        simulator.site.touch(issues[1], "Desk 1, moved")
        simulator.site.add_comment(issues[3], "Still broken")
        again, _ = _read(connector, cursor)
    assert _summaries(first) == [f"Desk {n}" for n in range(5)]
    assert [r.remote_id for r in again] == [str(issues[1].id), str(issues[3].id)]
    assert _summaries(again) == ["Desk 1, moved", "Desk 3"]


def test_a_cursor_of_the_first_format_still_loads_and_reads_its_window_once(
    simulator: JiraSimulator,
) -> None:
    simulator.site.second_precision = True
    issue = simulator.site.add_issue("Printer jammed")
    with connected(simulator) as connector:
        (record,), _ = _read(connector, None)
        assert record.updated is not None
        stamp = int(record.updated.timestamp() * 1000)
        # What the connector saved before digests: the (id, updated) pairs of its window.
        old = json.dumps({"v": 1, "updated": stamp, "seen": [f"{issue.id}@{stamp}"]})
        # An old cursor remembers no content: the window is read once more, never skipped
        # (the engine recognises the unchanged record), and the new cursor has digests.
        again, cursor = _read(connector, old)
        quiet, _ = _read(connector, cursor)
    assert [r.remote_id for r in again] == [str(issue.id)]
    assert json.loads(cursor)["v"] == 2
    assert quiet == []


@pytest.mark.parametrize(
    "cursor",
    [
        '{"v": 3, "updated": 0, "seen": []}',
        '{"v": 2, "updated": 0, "seen": [["not a stamp", "1", "d"]]}',
        '{"v": 2, "updated": 0, "seen": [[1, "1"]]}',
        '{"v": 1, "updated": 0, "seen": ["no-stamp"]}',
        "[]",
    ],
)
def test_a_cursor_the_connector_did_not_write_is_refused_clearly(
    simulator: JiraSimulator, cursor: str
) -> None:
    with (
        connected(simulator) as connector,
        pytest.raises(ConfigurationError, match=r"not a Jira connector cursor.*reset"),
    ):
        list(connector.read_changes(cursor))


def _client(simulator: JiraSimulator) -> JIRA:
    credentials = simulator.credentials()
    if simulator.flavour == "cloud":
        auth = (credentials["email"], credentials["api_token"])
        return JIRA(server=simulator.base_url, basic_auth=auth, get_server_info=False)
    token = credentials["personal_access_token"]
    return JIRA(server=simulator.base_url, token_auth=token, get_server_info=False)


def test_two_edits_by_a_third_party_client_in_one_second_are_both_read(
    simulator: JiraSimulator,
) -> None:
    """pycontribs ``jira`` edits the issue as another integration would, over REST."""
    simulator.site.second_precision = True
    issue = simulator.site.add_issue("Printer jammed")
    client = _client(simulator)
    with connected(simulator) as connector:
        _, cursor = _read(connector, None)
        client.issue(issue.key).update(summary="Printer jammed, toner")
        first, cursor = _read(connector, cursor)
        client.issue(issue.key).update(summary="Printer jammed, toner and paper")
        second, cursor = _read(connector, cursor)
        quiet, _ = _read(connector, cursor)
    client.close()
    assert _summaries(first) == ["Printer jammed, toner"]
    assert _summaries(second) == ["Printer jammed, toner and paper"]
    assert _updated(first) == _updated(second)  # one second, as the site shows it
    assert quiet == []
