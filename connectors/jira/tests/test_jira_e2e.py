"""End to end over real HTTP: the connector against the simulator on loopback."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest
import requests
from jira_harness import connected
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.simulator import CLOUD_TOKEN, DC_TOKEN, JiraSimulator, SimFault
from usm_bridge_jira.transforms import TRANSFORMS as TOOL

from usm_bridge.connector import Checkpoint, CommentDraft, RawRecord, RemoteDraft
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import CallType

MAPPINGS = SHIPPED_MAPPINGS_DIR
CONTEXT = MappingContext(unit="facilities", instance="jira", transforms={**CORE, **TOOL})


def _records(connector: JiraConnector, cursor: str | None = None) -> list[RawRecord]:
    return [item for item in connector.read_changes(cursor) if isinstance(item, RawRecord)]


def test_the_plugin_is_registered_through_the_entry_point() -> None:
    [entry] = [e for e in entry_points(group="usm_bridge") if e.name == "jira"]
    assert entry.load().usm_bridge_connector_types() == [JiraConnector]


def test_check_detects_the_deployment_and_reports_the_time_zone(
    simulator: JiraSimulator,
) -> None:
    with connected(simulator, deployment="auto") as connector:
        result = connector.check()
        assert result.ok, result.detail
        assert result.facts["deployment"] == simulator.flavour
        assert result.facts["time_zone"] == "Europe/Berlin"
        assert connector.api.endswith("3" if simulator.flavour == "cloud" else "2")


def test_wrong_credentials_fail_the_check_without_showing_the_secret(
    simulator: JiraSimulator,
) -> None:
    secret = "wrong-secret-value-12345"  # noqa: S105 - a test credential
    key = "api_token" if simulator.flavour == "cloud" else "personal_access_token"
    with connected(simulator, **{key: secret}) as connector:
        result = connector.check()
    assert not result.ok
    assert "401" in result.detail and "not authenticated" in result.detail
    assert secret not in result.detail and secret not in repr(connector.settings)
    assert CLOUD_TOKEN not in result.detail and DC_TOKEN not in result.detail


def test_records_fit_the_shipped_mapping(simulator: JiraSimulator) -> None:
    simulator.site.seed(5, comments=2)
    with connected(simulator) as connector:
        records = _records(connector)
    assert len(records) == 5
    mapping = load_mapping(MAPPINGS / "jira-service-management.yaml")
    first = records[0]
    fields: Any = first.data["fields"]
    assert isinstance(fields["description"], dict if simulator.flavour == "cloud" else str)
    assert fields["impact"] == fields["customfield_10004"]  # custom field by name
    call = apply_inbound(mapping, first, CONTEXT)
    assert call.title.startswith("Printer 0")
    assert call.description == "Reported by phone.\nPaper tray 0 is stuck."
    assert call.impact == "high"
    assert call.call_type is CallType.INCIDENT
    assert [c.body for c in call.comments] == ["Comment 0 on IT-1", "Comment 1 on IT-1"]
    assert first.url == f"{simulator.base_url}/browse/IT-1"


def test_comments_beyond_what_the_search_returns_are_read_completely(
    simulator: JiraSimulator,
) -> None:
    [busy] = simulator.site.seed(1, comments=45)
    simulator.site.seed(2, comments=1)
    with connected(simulator, comment_page_size=10) as connector:
        records = {r.remote_id: r for r in _records(connector)}
    block: Any = records[str(busy.id)].data["fields"]["comment"]
    assert block["total"] == 45
    assert [c["id"] for c in block["comments"]] == [str(c.id) for c in busy.comments]


def test_a_status_change_takes_the_transition_and_fills_the_resolution(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    draft = RemoteDraft(status="Resolved", status_fields={"resolution": "Won't Do"})
    with connected(simulator) as connector:
        connector.update(str(issue.id), draft)
        assert simulator.site.statuses[issue.status_id].name == "Resolved"
        assert issue.resolution_id == "10001" and issue.resolved is not None
        connector.update(str(issue.id), draft)  # already there: nothing to do, no error


def test_a_missing_required_transition_field_is_a_clear_error(
    simulator: JiraSimulator,
) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as connector, pytest.raises(PermanentRemoteError) as raised:
        connector.update(str(issue.id), RemoteDraft(status="Resolved"))
    assert "requires Resolution" in str(raised.value)
    assert issue.status_id == "1"


def test_no_transition_leading_to_the_status_is_a_clear_error(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as connector, pytest.raises(PermanentRemoteError) as raised:
        connector.update(str(issue.id), RemoteDraft(status="Closed"))
    message = str(raised.value)
    assert "no transition" in message and "'Closed'" in message and "In Progress" in message


def test_a_create_whose_response_was_lost_is_found_not_repeated(
    simulator: JiraSimulator,
) -> None:
    draft = RemoteDraft(fields={"fields": {"summary": "Boiler room flooded"}})
    simulator.fail_next(SimFault.LOSE_CREATE_RESPONSE)
    with connected(simulator) as connector:
        with pytest.raises(RetriableRemoteError) as raised:
            connector.create(draft, "corr-lost-1")
        assert "not retried" in str(raised.value)
        again = connector.create(draft, "corr-lost-1")
    made = [i for i in simulator.site.issues.values() if i.summary == "Boiler room flooded"]
    assert [str(i.id) for i in made] == [again.remote_id]
    assert made[0].properties == {"usmBridge": {"correlation": "corr-lost-1"}}


def test_comments_are_adf_on_cloud_and_can_be_internal(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as connector:
        public_id = connector.add_comment(str(issue.id), CommentDraft(body="On our way"))
        note_id = connector.add_comment(
            str(issue.id), CommentDraft(body="Key is with the porter", public=False)
        )
        [record] = _records(connector)
    comments: Any = record.data["fields"]["comment"]["comments"]
    by_id = {c["id"]: c for c in comments}
    assert by_id[public_id]["jsdPublic"] is True and by_id[note_id]["jsdPublic"] is False
    body = by_id[note_id]["body"]
    if simulator.flavour == "cloud":
        assert body["type"] == "doc" and body["content"][0]["content"][0]["text"].startswith("Key")
    else:
        assert body == "Key is with the porter"


def test_a_remote_link_is_upserted_by_global_id(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    url = "https://it.example/nav_to.do?uri=incident.do?sys_id=abc"
    with connected(simulator) as connector:
        first = connector.add_remote_link(str(issue.id), url, "INC0010001", global_id="snow:abc")
        second = connector.add_remote_link(
            str(issue.id), url, "INC0010001 (resolved)", global_id="snow:abc"
        )
    assert first == second
    [link] = issue.remote_links
    assert link["object"]["title"] == "INC0010001 (resolved)"


def test_custom_fields_are_written_by_alias_or_name(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    draft = RemoteDraft(
        fields={
            "fields": {
                "urgency": {"value": "Critical"},
                "Story point estimate": 5,
                "customer_notes": "Line one\nLine two",
            }
        }
    )
    with connected(simulator) as connector:
        connector.update(str(issue.id), draft)
    assert issue.custom["customfield_10045"] == "Critical"
    assert issue.custom["customfield_10016"] == 5
    assert issue.custom["customfield_10050"]["type"] == "doc"  # textarea: ADF, as v3 wants


def test_a_refused_edit_carries_jiras_field_errors(simulator: JiraSimulator) -> None:
    [issue] = simulator.site.seed(1)
    with connected(simulator) as connector, pytest.raises(PermanentRemoteError) as raised:
        connector.update(str(issue.id), RemoteDraft(fields={"fields": {"summary": ""}}))
    assert raised.value.status == 400
    assert "summary: You must specify a summary of the issue." in (
        raised.value.remote_message or ""
    )


def test_cloud_refuses_old_search_unbounded_jql_and_plain_text(cloud: JiraSimulator) -> None:
    [issue] = cloud.site.seed(1)
    with connected(cloud) as connector:
        http = connector.http
        with pytest.raises(PermanentRemoteError) as gone:
            http.get("rest/api/3/search", params={"jql": "project = IT"})
        assert gone.value.status == 410 and "/rest/api/3/search/jql" in str(gone.value)
        with pytest.raises(PermanentRemoteError) as unbounded:
            http.get("rest/api/3/search/jql", params={"jql": "ORDER BY updated"})
        assert "Unbounded JQL" in (unbounded.value.remote_message or "")
        with pytest.raises(PermanentRemoteError) as plain:
            http.put(f"rest/api/3/issue/{issue.id}", json={"fields": {"description": "plain"}})
        assert "Atlassian Document" in (plain.value.remote_message or "")
        with pytest.raises(PermanentRemoteError) as bad_jql:
            http.get("rest/api/3/search/jql", params={"jql": "project = IT AND nosuch = 1"})
        assert "Field 'nosuch' does not exist" in (bad_jql.value.remote_message or "")


def test_filter_and_jql_settings_bound_the_read(simulator: JiraSimulator) -> None:
    simulator.site.seed(3)
    simulator.site.seed(2, project="DEV")
    with connected(simulator, projects=[], filter_id=10000) as connector:
        assert len(_records(connector)) == 3
    with connected(simulator, projects=[], jql="project = DEV") as connector:
        assert len(_records(connector)) == 2


def test_a_slow_answer_times_out_and_is_retried(simulator: JiraSimulator) -> None:
    simulator.site.seed(2)
    simulator.fail_next(SimFault.SLOW, delay=1.8)
    with connected(simulator, read_timeout=1, page_size=50) as connector:
        assert len(_records(connector)) == 2


def test_a_dropped_connection_is_retried_for_reads(simulator: JiraSimulator) -> None:
    simulator.site.seed(2)
    simulator.fail_next(SimFault.DROP, times=2)
    with connected(simulator) as connector:
        assert len(_records(connector)) == 2


def test_discover_lists_the_vocabulary_of_the_projects(simulator: JiraSimulator) -> None:
    with connected(simulator) as connector:
        vocabulary = connector.discover()
    assert {s.value for s in vocabulary.statuses} >= {"Open", "In Progress", "Resolved"}
    assert {s.scope for s in vocabulary.statuses} == {"IT"}
    assert [p.value for p in vocabulary.priorities][:2] == ["Highest", "High"]
    assert "[System] Incident" in {t.value for t in vocabulary.types}
    assert "Done" in {r.value for r in vocabulary.other["resolutions"]}
    assert ("customfield_10004", "Impact") in {(f.value, f.label) for f in vocabulary.fields}


def test_every_read_ends_with_a_checkpoint_even_when_empty(simulator: JiraSimulator) -> None:
    with connected(simulator) as connector:
        items = list(connector.read_changes(None))
    assert len(items) == 1 and isinstance(items[0], Checkpoint)


def test_the_simulator_runs_on_its_own() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "usm_bridge_jira.simulator", "--port", "0", "--seed-issues", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        head = process.stdout.readline().strip()
        lines = [process.stdout.readline().strip() for _ in range(2)]
        assert head.startswith("Jira simulator (cloud) at http://127.0.0.1:")
        base_url = head.rsplit(" ", 1)[1]
        email, token = (line.split(" = ", 1)[1] for line in lines)
        with requests.Session() as session:
            answer = session.get(
                f"{base_url}/rest/api/3/search/jql",
                params={"jql": "project = IT", "fields": "summary"},
                auth=(email, token),
                timeout=5,
            )
        assert answer.status_code == 200 and len(answer.json()["issues"]) == 3
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
