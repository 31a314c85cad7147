"""Over real HTTP: the connector makes no write the workflow does not require.

The engine hands ``update`` only what the bridge changed; these tests count the write requests
the simulator serves for each kind of change (a status alone, fields alone, both, a status two
workflow hops away) and check what they carried, so that a write that crept back in (a PUT of
unchanged fields, a separate edit where the transition could carry the fields) shows up here
rather than in a benchmark. The simulator's own rules for transition screens are tested too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, NamedTuple

import pytest
from jira_harness import Refusal, connected, served
from usm_bridge_jira.simulator import JiraSimulator, Reply
from usm_bridge_jira.simulator.state import TRANSITIONS, Issue, Transition

from usm_bridge.connector import RemoteDraft
from usm_bridge.errors import PermanentRemoteError

OPEN, IN_PROGRESS, PENDING = "1", "3", "10002"
START_PROGRESS = "11"


class Write(NamedTuple):
    method: str
    path: str
    body: Any
    status: int


@contextmanager
def writes_to(simulator: JiraSimulator, refuse: Refusal | None = None) -> Iterator[list[Write]]:
    """The write requests the simulator serves meanwhile (GETs and searches are reads).

    ``refuse`` may answer a write in the site's place (a site whose validation is stricter
    than its screen metadata says). The list is filled when the block ends.
    """
    writes: list[Write] = []
    with served(simulator, refuse) as seen:
        try:
            yield writes
        finally:
            writes.extend(
                Write(r.method, r.path, r.body, r.status)
                for r in seen
                if r.method != "GET" and r.path not in ("search/jql", "search")
            )


def with_screen(simulator: JiraSimulator, transition_id: str, *fields: str) -> None:
    """Put ``fields`` on a transition's screen, as a site's admin may."""
    site = simulator.site
    site.transitions = [
        replace(t, screen=fields) if t.id == transition_id else t for t in site.transitions
    ]


def update_writes(
    simulator: JiraSimulator, issue: Issue, draft: RemoteDraft, refuse: Refusal | None = None
) -> list[Write]:
    """The writes of the connector's ``update`` of ``issue`` with ``draft`` (:func:`writes_to`)."""
    with connected(simulator) as connector, writes_to(simulator, refuse) as writes:
        connector.update(str(issue.id), draft)
    return writes


def one_issue(simulator: JiraSimulator, *on_screen: str) -> Issue:
    """The site's one issue; ``on_screen``, if any, the fields of Start Progress's screen."""
    if on_screen:
        with_screen(simulator, START_PROGRESS, *on_screen)
    [issue] = simulator.site.seed(1)
    return issue


def refusing_transitions(reply: Reply, *, with_fields_only: bool = False) -> Refusal:
    """A site answering ``reply`` to each transition (``with_fields_only``: to each that
    carries fields), whatever its screen metadata says."""

    def refuse(method: str, path: str, body: Any) -> Reply | None:
        transition = method == "POST" and path.endswith("/transitions")
        if transition and (not with_fields_only or "fields" in (body or {})):
            return reply
        return None

    return refuse


# -- the connector ---------------------------------------------------------------------------


def test_a_status_change_alone_is_one_transition_and_no_edit(simulator: JiraSimulator) -> None:
    issue = one_issue(simulator)
    summary = issue.summary
    writes = update_writes(simulator, issue, RemoteDraft(status="In Progress"))
    assert [(w.method, w.path) for w in writes] == [("POST", f"issue/{issue.id}/transitions")]
    assert writes[0].body == {"transition": {"id": START_PROGRESS}}
    assert issue.status_id == IN_PROGRESS and issue.summary == summary


def test_a_status_two_hops_away_takes_two_transitions_and_nothing_else(
    simulator: JiraSimulator,
) -> None:
    # The simulated workflow reaches Pending only from In Progress: the shortest path from
    # Open is two transitions, found through ``transition_via`` (the issue's transitions
    # list shows only the next step, never the workflow's graph).
    issue = one_issue(simulator)
    writes = update_writes(simulator, issue, RemoteDraft(status="Pending"))
    assert [(w.method, w.body["transition"]["id"]) for w in writes] == [
        ("POST", START_PROGRESS),
        ("POST", "31"),
    ]
    assert issue.status_id == PENDING


def test_a_direct_transition_is_taken_when_the_workflow_has_one(
    simulator: JiraSimulator,
) -> None:
    simulator.site.transitions = [*TRANSITIONS, Transition("32", "Pending", (OPEN,), PENDING)]
    issue = one_issue(simulator)
    writes = update_writes(simulator, issue, RemoteDraft(status="Pending"))
    assert [w.body for w in writes] == [{"transition": {"id": "32"}}]
    assert issue.status_id == PENDING


def test_without_a_detour_a_status_two_hops_away_is_refused_without_writing(
    simulator: JiraSimulator,
) -> None:
    issue = one_issue(simulator)
    with (
        connected(simulator, transition_via={}) as connector,
        writes_to(simulator) as writes,
        pytest.raises(PermanentRemoteError) as raised,
    ):
        connector.update(str(issue.id), RemoteDraft(status="Pending"))
    assert "no transition" in str(raised.value) and "'Pending'" in str(raised.value)
    assert writes == [] and issue.status_id == OPEN


def test_fields_alone_are_one_edit_of_exactly_the_drafts_fields(
    simulator: JiraSimulator,
) -> None:
    issue = one_issue(simulator)
    draft = RemoteDraft(fields={"fields": {"summary": "Chair for room 12"}})
    writes = update_writes(simulator, issue, draft)
    # Only what the draft holds: no summary, type or description added back.
    assert writes == [
        Write("PUT", f"issue/{issue.id}", {"fields": {"summary": "Chair for room 12"}}, 204)
    ]
    assert issue.summary == "Chair for room 12"


def test_an_empty_draft_writes_nothing(simulator: JiraSimulator) -> None:
    issue = one_issue(simulator)
    writes = update_writes(simulator, issue, RemoteDraft())
    assert writes == []


@pytest.mark.parametrize(
    ("status", "status_id", "transitions"),
    [
        pytest.param(
            "In Progress", IN_PROGRESS, [{"transition": {"id": START_PROGRESS}}], id="transition"
        ),
        pytest.param("Open", OPEN, [], id="already-in-the-status"),
    ],
)
def test_fields_and_a_status_without_a_screen_are_an_edit_then_the_transition_if_any(
    simulator: JiraSimulator, status: str, status_id: str, transitions: list[Any]
) -> None:
    issue = one_issue(simulator)
    draft = RemoteDraft(fields={"fields": {"summary": "Two chairs"}}, status=status)
    writes = update_writes(simulator, issue, draft)
    assert [(w.method, w.body) for w in writes] == [
        ("PUT", {"fields": {"summary": "Two chairs"}}),
        *(("POST", transition) for transition in transitions),
    ]
    assert issue.summary == "Two chairs" and issue.status_id == status_id


def test_fields_on_the_transition_screen_ride_on_the_transition(
    simulator: JiraSimulator,
) -> None:
    issue = one_issue(simulator, "summary", "customfield_10050")
    draft = RemoteDraft(
        fields={"fields": {"summary": "Two chairs", "customer_notes": "Blue, if any"}},
        status="In Progress",
    )
    writes = update_writes(simulator, issue, draft)
    [write] = writes
    assert write.path == f"issue/{issue.id}/transitions" and write.status == 204
    assert write.body["transition"] == {"id": START_PROGRESS}
    assert set(write.body["fields"]) == {"summary", "customfield_10050"}
    assert issue.summary == "Two chairs" and issue.status_id == IN_PROGRESS
    assert issue.custom["customfield_10050"]["type"] == "doc"


def test_fields_only_partly_on_the_screen_are_edited_first(simulator: JiraSimulator) -> None:
    issue = one_issue(simulator, "summary")
    draft = RemoteDraft(
        fields={"fields": {"summary": "Two chairs", "labels": ["furniture"]}},
        status="In Progress",
    )
    writes = update_writes(simulator, issue, draft)
    assert [w.method for w in writes] == ["PUT", "POST"]
    assert "fields" not in writes[1].body
    assert issue.labels == ["furniture"] and issue.status_id == IN_PROGRESS


def test_fields_ride_on_the_last_of_two_transitions(simulator: JiraSimulator) -> None:
    with_screen(simulator, "31", "summary")
    issue = one_issue(simulator)
    draft = RemoteDraft(fields={"fields": {"summary": "Waits for IT"}}, status="Pending")
    writes = update_writes(simulator, issue, draft)
    assert [w.body for w in writes] == [
        {"transition": {"id": START_PROGRESS}},
        {"transition": {"id": "31"}, "fields": {"summary": "Waits for IT"}},
    ]
    assert issue.summary == "Waits for IT" and issue.status_id == PENDING


def test_a_refused_combined_transition_falls_back_to_an_edit_then_the_transition(
    simulator: JiraSimulator,
) -> None:
    # The screen metadata lists the summary, yet the site refuses it with the transition (as
    # when a validator or another screen applies): the same change in two writes.
    issue = one_issue(simulator, "summary")
    message = "Field 'summary' cannot be set. It is not on the appropriate screen."
    refuse = refusing_transitions(
        Reply(400, {"errorMessages": [], "errors": {"summary": message}}), with_fields_only=True
    )
    draft = RemoteDraft(fields={"fields": {"summary": "Two chairs"}}, status="In Progress")
    writes = update_writes(simulator, issue, draft, refuse)
    assert [(w.method, w.status) for w in writes] == [("POST", 400), ("PUT", 204), ("POST", 204)]
    assert writes[2].body == {"transition": {"id": START_PROGRESS}}
    assert issue.summary == "Two chairs" and issue.status_id == IN_PROGRESS


def test_a_refused_transition_other_than_400_is_not_retried_as_an_edit(
    simulator: JiraSimulator,
) -> None:
    issue = one_issue(simulator, "summary")
    conflict = Reply(409, {"errorMessages": ["Conflicting update"], "errors": {}})
    refuse = refusing_transitions(conflict)
    draft = RemoteDraft(fields={"fields": {"summary": "Two chairs"}}, status="In Progress")
    with (
        connected(simulator) as connector,
        writes_to(simulator, refuse) as writes,
        pytest.raises(PermanentRemoteError) as raised,
    ):
        connector.update(str(issue.id), draft)
    assert raised.value.status == 409
    assert [w.method for w in writes] == ["POST"] and issue.status_id == OPEN


def test_a_create_waiting_on_a_supplier_is_the_create_and_the_workflows_hops(
    simulator: JiraSimulator,
) -> None:
    draft = RemoteDraft(fields={"fields": {"summary": "Desk lamp"}}, status="Pending")
    with connected(simulator) as connector, writes_to(simulator) as writes:
        ref = connector.create(draft, "corr-lamp")
    assert [(w.method, w.path) for w in writes] == [
        ("POST", "issue"),
        ("POST", f"issue/{ref.remote_id}/transitions"),
        ("POST", f"issue/{ref.remote_id}/transitions"),
    ]
    issue = simulator.site.issue(ref.remote_id)
    assert issue is not None and issue.status_id == PENDING


# -- the simulator's transition screens ------------------------------------------------------


def test_the_transitions_list_describes_each_screen(cloud: JiraSimulator) -> None:
    issue = one_issue(cloud, "summary", "priority", "customfield_10004")
    with connected(cloud) as connector:
        listed = connector.http.get(
            f"rest/api/3/issue/{issue.id}/transitions", params={"expand": "transitions.fields"}
        ).json()["transitions"]
    by_id = {t["id"]: t for t in listed}
    start = by_id[START_PROGRESS]
    assert start["hasScreen"] is True
    assert set(start["fields"]) == {"summary", "priority", "customfield_10004"}
    assert start["fields"]["customfield_10004"]["allowedValues"][0]["value"] == (
        "Extensive / Widespread"
    )
    assert by_id["21"]["hasScreen"] is False and by_id["21"]["fields"] == {}
    assert by_id["41"]["fields"]["resolution"]["required"] is True


def test_a_field_off_the_screen_is_refused_and_nothing_changes(cloud: JiraSimulator) -> None:
    issue = one_issue(cloud)
    summary = issue.summary
    with connected(cloud) as connector, pytest.raises(PermanentRemoteError) as raised:
        connector.http.post(
            f"rest/api/3/issue/{issue.id}/transitions",
            json={"transition": {"id": START_PROGRESS}, "fields": {"summary": "Sneaked in"}},
        )
    assert raised.value.status == 400
    assert "not on the appropriate screen" in (raised.value.remote_message or "")
    assert issue.summary == summary and issue.status_id == OPEN


def test_a_refused_value_on_the_screen_changes_nothing(cloud: JiraSimulator) -> None:
    issue = one_issue(cloud, "summary", "priority")
    summary, priority = issue.summary, issue.priority_id
    with connected(cloud) as connector, pytest.raises(PermanentRemoteError) as raised:
        connector.http.post(
            f"rest/api/3/issue/{issue.id}/transitions",
            json={
                "transition": {"id": START_PROGRESS},
                "fields": {"summary": "New", "priority": {"name": "Urgent!"}},
            },
        )
    assert "priority" in (raised.value.remote_message or "")
    assert (issue.summary, issue.priority_id, issue.status_id) == (summary, priority, OPEN)


def test_update_operations_and_a_field_given_twice(cloud: JiraSimulator) -> None:
    issue = one_issue(cloud, "summary")
    path = f"rest/api/3/issue/{issue.id}/transitions"
    with connected(cloud) as connector:
        with pytest.raises(PermanentRemoteError) as twice:
            connector.http.post(
                path,
                json={
                    "transition": {"id": START_PROGRESS},
                    "fields": {"summary": "A"},
                    "update": {"summary": [{"set": "B"}]},
                },
            )
        assert "both" in (twice.value.remote_message or "") and issue.status_id == OPEN
        connector.http.post(
            path,
            json={"transition": {"id": START_PROGRESS}, "update": {"summary": [{"set": "B"}]}},
        )
    assert issue.summary == "B" and issue.status_id == IN_PROGRESS


def test_an_edit_with_one_refused_field_changes_nothing(simulator: JiraSimulator) -> None:
    issue = one_issue(simulator)
    summary = issue.summary
    with connected(simulator) as connector, pytest.raises(PermanentRemoteError):
        connector.http.put(
            f"{connector.api}/issue/{issue.id}",
            json={"fields": {"summary": "Renamed", "priority": {"name": "Urgent!"}}},
        )
    assert issue.summary == summary
