"""A status that spans fields, over real HTTP: Jira Software's Done with a resolution.

The shipped jira-software mapping writes ``cancelled`` as Done with resolution Won't Do on the
transition, and reads it back as ``cancelled``; a workflow that cannot carry the resolution is
refused with the reason instead of moving the issue to a Done that reads back as fulfilled.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jira_harness import connected
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.simulator import JiraSimulator
from usm_bridge_jira.simulator.state import SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS, Transition
from usm_bridge_jira.transforms import TRANSFORMS as TOOL

from usm_bridge.connector import RawRecord
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.mapping import MappingContext, apply_inbound, apply_outbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, Status

MAPPING = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-software.yaml")
CONTEXT = MappingContext(unit="dev", instance="jira", transforms={**CORE, **TOOL})
NOW = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)


def _software(simulator: JiraSimulator) -> int:
    simulator.site.use_workflow(SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS)
    issue = simulator.site.add_issue("Export to CSV", type_name="Story")
    return issue.id


def _read(connector: JiraConnector, issue_id: int) -> Call:
    [record] = [
        r
        for r in connector.read_changes(None)
        if isinstance(r, RawRecord) and r.remote_id == str(issue_id)
    ]
    return apply_inbound(MAPPING, record, CONTEXT)


def _write(connector: JiraConnector, issue_id: int, call: Call, status: Status) -> None:
    draft = apply_outbound(MAPPING, call.model_copy(update={"status": status}), CONTEXT)
    connector.update(str(issue_id), draft.model_copy(update={"fields": {}}))


@pytest.mark.parametrize(
    ("status", "jira_status", "resolution"),
    [
        (Status.CANCELLED, "Done", "Won't Do"),
        (Status.FULFILLED, "Done", "Done"),
        (Status.IN_PROGRESS, "In Progress", None),
    ],
)
def test_a_written_status_reads_back_the_same(
    simulator: JiraSimulator, status: Status, jira_status: str, resolution: str | None
) -> None:
    issue_id = _software(simulator)
    with connected(simulator) as connector:
        call = _read(connector, issue_id)
        assert call.status is Status.REGISTERED  # To Do
        _write(connector, issue_id, call, status)
        issue = simulator.site.issues[issue_id]
        assert simulator.site.statuses[issue.status_id].name == jira_status
        assert simulator.site.resolution_name(issue) == resolution
        assert _read(connector, issue_id).status is status


def test_done_without_the_resolution_on_its_screen_is_refused_not_read_back_fulfilled(
    simulator: JiraSimulator,
) -> None:
    issue_id = _software(simulator)
    bare_done = Transition("131", "Done", ("10004", "3", "10005"), "10006")  # no screen
    simulator.site.transitions = [*SOFTWARE_TRANSITIONS[:3], bare_done]
    with connected(simulator) as connector:
        call = _read(connector, issue_id)
        with pytest.raises(PermanentRemoteError) as raised:
            _write(connector, issue_id, call, Status.CANCELLED)
        assert "has no resolution on its screen" in str(raised.value)
        issue = simulator.site.issues[issue_id]
        assert simulator.site.statuses[issue.status_id].name == "To Do"  # not moved
        assert _read(connector, issue_id).status is Status.REGISTERED


def test_an_issue_done_as_done_cannot_be_cancelled_in_place(simulator: JiraSimulator) -> None:
    issue_id = _software(simulator)
    with connected(simulator) as connector:
        call = _read(connector, issue_id)
        _write(connector, issue_id, call, Status.FULFILLED)
        with pytest.raises(PermanentRemoteError) as raised:
            _write(connector, issue_id, call, Status.CANCELLED)
        message = str(raised.value)
        assert (
            "already in 'Done'" in message and "resolution is 'Done', not \"Won't Do\"" in message
        )
        assert _read(connector, issue_id).status is Status.FULFILLED
