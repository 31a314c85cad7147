"""The Jira simulator driven by the client people's scripts use: pycontribs' ``jira``.

Both flavours, signed in as their admins do (Cloud: e-mail and API token; Data Center: a
personal access token), through the client's ordinary calls. On Cloud the client also speaks
REST v3 where plain-text bodies are not involved, so the ``cloud`` fixture checks what was
served against the official OpenAPI description.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from jira import JIRA
from jira.exceptions import JIRAError
from jira_openapi import spec_validator
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN, DC_TOKEN, JiraSimulator
from usm_bridge_jira.simulator.state import SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS, STATUSES

CASEY = "5b10ac8d82e05b22cc7d4ef5"  # Casey Customer, a person with an account of her own


@contextmanager
def client(
    simulator: JiraSimulator, *, version: str = "2", account: str | None = None
) -> Iterator[JIRA]:
    """pycontribs' client signed in as ``account`` (default: the integration account)."""
    site = simulator.site
    account = account or site.me
    options = {"rest_api_version": version}
    if simulator.flavour == "cloud":
        auth = (site.users[account][1], site.tokens[account])
        jira = JIRA(simulator.base_url, basic_auth=auth, options=options, get_server_info=False)
    else:
        token = site.tokens[account]
        jira = JIRA(simulator.base_url, token_auth=token, options=options, get_server_info=False)
    try:
        yield jira
    finally:
        jira.close()


def _refusal(error: JIRAError) -> dict[str, Any]:
    assert error.status_code == 400
    assert error.response is not None
    body: dict[str, Any] = error.response.json()
    assert set(body) == {"errorMessages", "errors"}
    return body


# -- 1. header names are case-insensitive --------------------------------------------------


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION", "Authorization"])
def test_a_personal_access_token_is_accepted_however_the_header_name_is_cased(
    datacenter: JiraSimulator, name: str
) -> None:
    url = f"{datacenter.base_url}/rest/api/2/myself"
    good = requests.get(
        url, headers={name: f"Bearer {DC_TOKEN}", "accept": "application/json"}, timeout=10
    )
    bad = requests.get(url, headers={name: "Bearer not-the-token"}, timeout=10)
    assert good.status_code == 200 and good.json()["name"] == "admin"
    assert bad.status_code == 401 and bad.json()["errorMessages"]


def test_a_write_with_every_header_name_in_lower_case(datacenter: JiraSimulator) -> None:
    # Over a raw socket: what ``requests`` would re-case, e.g. ``content-length``, stays lower.
    body = (
        b'{"fields": {"project": {"key": "IT"}, "summary": "Desk", "issuetype": {"id": "10014"}}}'
    )
    head = (
        "POST /rest/api/2/issue HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n"
        f"authorization: Bearer {DC_TOKEN}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    host, port = datacenter.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201")
    assert [i.summary for i in datacenter.site.issues.values()] == ["Desk"]


def test_pycontribs_signs_in_to_data_center_with_a_token(datacenter: JiraSimulator) -> None:
    # The client's session sends ``authorization: Bearer ...`` (its own casing).
    with client(datacenter) as jira:
        me = jira.myself()
        info = jira.server_info()
    assert me["name"] == "admin" and me["displayName"] == "Sim Admin"
    assert info["deploymentType"] == "Server" and info["versionNumbers"][0] >= 9


def test_pycontribs_signs_in_to_cloud_with_an_api_token(cloud: JiraSimulator) -> None:
    with client(cloud, version="3") as jira:
        me = jira.myself()
        info = jira.server_info()
    assert me["accountId"] == cloud.site.me and me["emailAddress"] == CLOUD_EMAIL
    assert info["deploymentType"] == "Cloud"
    # A token signs in only with its own account's e-mail: Casey's token is not the admin's.
    for secret in ("wrong", cloud.site.tokens[CASEY], CLOUD_TOKEN.upper()):
        wrong = JIRA(cloud.base_url, basic_auth=(CLOUD_EMAIL, secret), get_server_info=False)
        with pytest.raises(JIRAError) as refused:
            wrong.myself()
        wrong.close()
        assert refused.value.status_code == 401


# -- 2. the project list -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", "3"])
def test_projects_lists_every_project(cloud: JiraSimulator, version: str) -> None:
    with client(cloud, version=version) as jira:
        projects = jira.projects()
        one = jira.project("IT")
    assert [(p.key, p.name) for p in projects] == list(cloud.site.projects.items())
    assert {p.projectTypeKey for p in projects} == {"service_desk", "software"}
    assert one.id == projects[0].id


def test_projects_on_data_center(datacenter: JiraSimulator) -> None:
    with client(datacenter) as jira:
        assert [p.key for p in jira.projects()] == ["IT", "DEV"]


# -- 3. edits with fields, update operations, or both ------------------------------------------


def test_edits_with_fields_and_with_update_operations(simulator: JiraSimulator) -> None:
    issue = simulator.site.add_issue("Printer jammed", labels=["printer", "floor-2"])
    with client(simulator) as jira:
        theirs = jira.issue(issue.key)
        theirs.update(fields={"summary": "Printer jammed, toner"})
        theirs.update(update={"labels": [{"add": "needs-it"}, {"remove": "floor-2"}]})
        theirs.add_field_value("labels", "urgent")
        theirs.add_field_value("labels", "urgent")  # adding a label twice keeps one
        theirs.update(
            fields={"priority": {"name": "High"}},
            update={"summary": [{"set": "Printer jammed, toner and paper"}]},
        )
        read = jira.issue(issue.key)
    assert issue.summary == "Printer jammed, toner and paper"
    assert issue.labels == ["printer", "needs-it", "urgent"]
    assert read.fields.labels == ["printer", "needs-it", "urgent"]
    assert read.fields.priority.name == "High"


def test_labels_set_replaces_and_update_comment_add_comments(cloud: JiraSimulator) -> None:
    issue = cloud.site.add_issue("Desk 4.12", labels=["desk"])
    with client(cloud) as jira:
        jira.issue(issue.key).update(
            update={"labels": [{"set": ["badge"]}, {"add": "needs-it"}]}, comment="On my way"
        )
    assert issue.labels == ["badge", "needs-it"]
    assert [c.body["content"][0]["content"][0]["text"] for c in issue.comments] == ["On my way"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"fields": {"summary": "A"}, "update": {"summary": [{"set": "B"}]}}, "summary"),
        ({"update": {"summary": [{"add": "x"}]}}, "summary"),
        ({"update": {"labels": [{"copy": "x"}]}}, "labels"),
        ({"update": {"labels": [{"add": "two words"}]}}, "labels"),
        ({"update": {"labels": {"add": "x"}}}, "labels"),
        ({"update": {"watchers": [{"add": "x"}]}}, "watchers"),
        ({"fields": {"votes": 3}}, "votes"),
    ],
)
def test_an_edit_jira_refuses_is_a_400_in_its_error_shape_and_changes_nothing(
    simulator: JiraSimulator, payload: dict[str, Any], field: str
) -> None:
    issue = simulator.site.add_issue("Printer jammed", labels=["printer"])
    before = (issue.summary, list(issue.labels), issue.updated)
    with client(simulator) as jira, pytest.raises(JIRAError) as refused:
        jira.issue(issue.key).update(fields=payload.get("fields"), update=payload.get("update"))
    body = _refusal(refused.value)
    assert list(body["errors"]) == [field]
    assert (issue.summary, issue.labels, issue.updated) == before


def test_one_bad_operation_refuses_the_whole_edit(datacenter: JiraSimulator) -> None:
    issue = datacenter.site.add_issue("Printer jammed", labels=["printer"])
    with client(datacenter) as jira, pytest.raises(JIRAError) as refused:
        jira.issue(issue.key).update(
            fields={"summary": "Changed"}, update={"labels": [{"add": "ok"}, {"edit": "x"}]}
        )
    assert "does not support operation 'edit'" in _refusal(refused.value)["errors"]["labels"]
    assert (issue.summary, issue.labels) == ("Printer jammed", ["printer"])


# -- 4. transitions with a resolution, and resolutiondate --------------------------------------


def test_a_resolving_transition_sets_resolution_and_resolutiondate_and_reopen_clears_them(
    simulator: JiraSimulator,
) -> None:
    issue = simulator.site.add_issue("Printer jammed")
    with client(simulator) as jira:
        names = {t["name"]: t["id"] for t in jira.transitions(issue.key)}
        jira.transition_issue(issue.key, names["Resolve"], resolution={"name": "Won't Do"})
        resolved = jira.issue(issue.key)
        jira.transition_issue(issue.key, "Reopen")  # by name: the client looks the id up
        reopened = jira.issue(issue.key)
    assert resolved.fields.status.name == "Resolved"
    assert resolved.fields.resolution.name == "Won't Do"
    assert resolved.fields.resolutiondate == resolved.fields.updated
    assert reopened.fields.status.name == "Open"
    assert reopened.fields.resolution is None and reopened.fields.resolutiondate is None


def test_a_transition_with_a_screen_takes_a_comment_one_without_refuses_it(
    simulator: JiraSimulator,
) -> None:
    issue = simulator.site.add_issue("Printer jammed")
    with client(simulator, account=CASEY) as casey:
        with pytest.raises(JIRAError) as refused:  # Start progress: no screen
            casey.transition_issue(issue.key, "Start progress", comment="Looking at it")
        casey.transition_issue(
            issue.key, "Resolve", resolution={"name": "Done"}, comment="Fuser replaced"
        )
    assert list(_refusal(refused.value)["errors"]) == ["comment"]
    assert simulator.site.statuses[issue.status_id].name == "Resolved"
    (comment,) = issue.comments
    assert comment.author == CASEY and comment.created == issue.resolved == issue.updated


def test_a_resolving_transition_without_a_resolution_is_refused(cloud: JiraSimulator) -> None:
    issue = cloud.site.add_issue("Printer jammed")
    with client(cloud, version="3") as jira, pytest.raises(JIRAError) as refused:
        jira.transition_issue(issue.key, "41")
    assert "resolution" in _refusal(refused.value)["errors"]
    assert issue.resolved is None and cloud.site.statuses[issue.status_id].name == "Open"


# -- 5. who wrote a comment; server info; issue properties -------------------------------------


def test_a_comment_carries_the_account_that_posted_it(simulator: JiraSimulator) -> None:
    issue = simulator.site.add_issue("Printer jammed")
    with client(simulator) as integration, client(simulator, account=CASEY) as casey:
        mine = integration.add_comment(issue.key, "The bridge's copy")
        hers = casey.add_comment(issue.key, "Still jammed, please hurry")
        assert casey.myself()["displayName"] == "Casey Customer"
        read = {c.id: c for c in integration.comments(issue.key)}
    assert read[hers.id].author.displayName == "Casey Customer"
    assert read[mine.id].author.displayName == "Sim Admin"
    if simulator.flavour == "cloud":
        assert read[hers.id].author.accountId == CASEY
        assert read[mine.id].author.accountId == simulator.site.me
    else:
        assert (read[hers.id].author.name, read[hers.id].author.key) == ("casey", "casey")
        assert read[mine.id].author.name == "admin"
    assert [c.author for c in issue.comments] == [simulator.site.me, CASEY]


def test_an_issue_created_by_a_person_is_reported_by_them(datacenter: JiraSimulator) -> None:
    with client(datacenter, account=CASEY) as casey:
        made = casey.create_issue(
            project="IT", summary="Badge broken", issuetype={"name": "Task"}, description="x"
        )
        assert made.fields.reporter.name == "casey"


def test_issue_properties_through_the_client(simulator: JiraSimulator) -> None:
    issue = simulator.site.add_issue("Printer jammed")
    with client(simulator) as jira:
        jira.add_issue_property(issue.key, "usm.link", {"call": "HR-1"})
        jira.add_issue_property(issue.key, "usm.seen", {"n": 1})
        jira.add_issue_property(issue.key, "usm.seen", {"n": 2})
        listed = {p.key: p.raw["value"] for p in jira.issue_properties(issue.key)}
        one = jira.issue_property(issue.key, "usm.link")
        with pytest.raises(JIRAError) as missing:
            jira.issue_property(issue.key, "nope")
    assert listed == {"usm.link": {"call": "HR-1"}, "usm.seen": {"n": 2}}
    assert issue.properties == {"usm.link": {"call": "HR-1"}, "usm.seen": {"n": 2}}
    assert one.key == "usm.link" and one.value.call == "HR-1"
    assert missing.value.status_code == 404


# -- 6. statuses, priorities and resolutions, site-wide and per project ------------------------


def test_statuses_priorities_and_resolutions_as_the_client_reads_them(
    cloud: JiraSimulator,
) -> None:
    with client(cloud, version="3") as jira:
        statuses = {s.name for s in jira.statuses()}
        priorities = [p.name for p in jira.priorities()]
        resolutions = [r.name for r in jira.resolutions()]
        per_type = jira._get_json("project/IT/statuses")
    assert statuses == {s.name for s in cloud.site.statuses.values()}
    assert priorities == ["Highest", "High", "Medium", "Low", "Lowest"]
    assert "Won't Do" in resolutions
    assert {t["name"] for t in per_type} == {name for name, _ in cloud.site.types.values()}
    assert all({s["name"] for s in t["statuses"]} == statuses for t in per_type)


def test_a_project_with_its_own_issue_type_scheme_offers_and_takes_only_those(
    cloud: JiraSimulator,
) -> None:
    cloud.site.offer_types("IT", "[System] ")
    offered = {name for tid, (name, _) in cloud.site.types.items() if name.startswith("[System]")}
    assert offered and offered != {name for name, _ in cloud.site.types.values()}
    with client(cloud, version="3") as jira:
        in_project = {t.name for t in jira.project("IT").issueTypes}
        per_type = {t["name"] for t in jira._get_json("project/IT/statuses")}
        elsewhere = {t["name"] for t in jira._get_json("project/DEV/statuses")}
        site_wide = {t.name for t in jira.issue_types()}
        taken = jira.create_issue(
            project="IT", summary="Desk", issuetype={"name": "[System] Service request"}
        )
        with pytest.raises(JIRAError) as refused:
            jira.create_issue(project="IT", summary="Bug", issuetype={"name": "Bug"})
        with pytest.raises(JIRAError) as retyped:
            taken.update(fields={"issuetype": {"name": "Bug"}})
    assert in_project == per_type == offered
    assert elsewhere == site_wide == {name for name, _ in cloud.site.types.values()}
    assert _refusal(refused.value)["errors"] == {"issuetype": "Specify a valid issue type"}
    assert _refusal(retyped.value)["errors"] == {"issuetype": "Specify a valid issue type"}
    assert [i.summary for i in cloud.site.issues.values()] == ["Desk"]


# -- 7. a client that hangs up mid-response ----------------------------------------------------


def test_a_client_hanging_up_mid_response_leaves_one_log_line_and_no_traceback(
    cloud: JiraSimulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    cloud.site.seed(300, comments=2)  # a search page far larger than the socket buffers
    host, port = cloud.base_url.removeprefix("http://").split(":")
    auth = cloud.site.sign_in(cloud.site.me)["Authorization"]
    request = (
        "GET /rest/api/2/search/jql?jql=project%3DIT&fields=*all&maxResults=100 HTTP/1.1\r\n"
        f"host: sim\r\nauthorization: {auth}\r\n\r\n"
    )
    caplog.set_level(logging.DEBUG, logger="usm_bridge_jira.simulator.server")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(request.encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    # Hang up with a reset while the server is still writing the rest of the page.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.endswith("simulator.server")]

    deadline = time.monotonic() + 30  # waits for the server thread; not a timing assertion
    while not lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    with client(cloud) as jira:  # the server serves on
        assert jira.myself()["displayName"] == "Sim Admin"
    logged = lines()
    assert len(logged) == 1 and "went away" in logged[0]
    assert "Traceback" not in capfd.readouterr().err


def test_each_project_has_its_own_workflow_and_priorities(simulator: JiraSimulator) -> None:
    site = simulator.site
    site.use_workflow(SOFTWARE_STATUSES, SOFTWARE_TRANSITIONS, project="DEV")
    site.project_priorities["DEV"] = ["2", "3", "4"]
    software = {s.name for s in SOFTWARE_STATUSES}
    version = "3" if simulator.flavour == "cloud" else "2"  # v3: checked against the spec
    with client(simulator, version=version) as jira:
        it_statuses = {s.name for t in jira.issue_types_for_project("IT") for s in t.statuses}
        dev_statuses = {s.name for t in jira.issue_types_for_project("DEV") for s in t.statuses}
        story = jira.create_issue(project="DEV", summary="Login", issuetype={"name": "Story"})
        ticket = jira.create_issue(project="IT", summary="Badge", issuetype={"name": "Task"})
        story_moves = {t["name"] for t in jira.transitions(story.key)}
        ticket_moves = {t["name"] for t in jira.transitions(ticket.key)}
        with pytest.raises(JIRAError) as refused:
            jira.create_issue(
                project="DEV", summary="x", issuetype={"name": "Story"}, priority={"name": "Lowest"}
            )
        if simulator.flavour == "datacenter":
            scheme = jira.project_priority_scheme("DEV").raw
            assert (scheme["optionIds"], scheme["defaultOptionId"]) == (["2", "3", "4"], "3")
            assert jira.project_priority_scheme("IT").raw["defaultScheme"] is True
        else:
            page = jira._get_json("priority/search", params={"projectId": "10001"})
            assert [p["name"] for p in page["values"]] == ["High", "Medium", "Low"]
            assert page["total"] == 3 and page["isLast"] is True
            every = jira._get_json("resolution/search")
            assert [r["name"] for r in every["values"]] == [r.name for r in jira.resolutions()]
        all_statuses = {s.name for s in jira.statuses()}
    assert dev_statuses == software and it_statuses == {s.name for s in STATUSES}
    assert all_statuses == software | it_statuses  # GET /status: every status of the site
    assert story.fields.status.name == "To Do" and ticket.fields.status.name == "Open"
    assert story.fields.priority.name == "Medium"
    assert story_moves == {"In Progress", "Blocked", "Done"}
    assert "Resolve" in ticket_moves and "Done" not in ticket_moves
    assert list(_refusal(refused.value)["errors"]) == ["priority"]


# -- 8. request bodies are checked against the OpenAPI description -----------------------------


def test_what_pycontribs_sends_fits_the_documented_request_bodies(simulator: JiraSimulator) -> None:
    checker = spec_validator()
    before = checker.requests_checked
    with client(simulator) as jira:
        made = jira.create_issue(project="IT", summary="Badge", issuetype={"name": "Task"})
        made.update(fields={"summary": "Badge, broken"}, update={"labels": [{"add": "badge"}]})
        jira.add_comment(made.key, "On it")
        jira.transition_issue(made.key, "41", resolution={"name": "Done"})
    # create, edit, comment, transition: each body was checked (and fitted: no 400 above)
    assert checker.requests_checked - before == 4
    issue = simulator.site.issue(made.key)
    assert issue is not None and issue.labels == ["badge"] and issue.resolution_id == "10000"


def test_a_body_the_description_refuses_is_a_400_before_anything_is_done(
    simulator: JiraSimulator,
) -> None:
    issue = simulator.site.add_issue("Printer jammed")
    before = len(simulator.site.issues)
    url = f"{simulator.base_url}/rest/api/2/issue"
    auth = simulator.site.sign_in(simulator.site.me)
    fields = {"project": {"key": "IT"}, "summary": "x", "issuetype": {"name": "Task"}}
    # The simulator's own code ignores ``transition`` on create; the documented shape does not.
    create = requests.post(
        url, json={"fields": fields, "transition": "41"}, headers=auth, timeout=9
    )
    edit = requests.put(
        f"{url}/{issue.key}",
        json={"update": {"labels": [{"append": "x"}]}},
        headers=auth,
        timeout=9,
    )
    assert create.status_code == 400
    assert "transition" in create.json()["errorMessages"][0]
    assert edit.status_code == 400 and list(edit.json()["errors"]) == ["labels"]
    assert len(simulator.site.issues) == before and issue.labels == []


# -- 9. a site with the demo's Facilities service desk ----------------------------------------


def test_a_site_of_one_facilities_service_desk() -> None:
    desks = {"FAC": "Facilities Service Desk"}
    with JiraSimulator("cloud", projects=desks) as simulator, client(simulator) as jira:
        (desk,) = jira.projects()
        made = jira.create_issue(project="FAC", summary="Desk", issuetype={"name": "Task"})
        with pytest.raises(JIRAError) as unknown:
            jira.create_issue(project="IT", summary="Desk", issuetype={"name": "Task"})
        keys = [i.key for i in simulator.site.issues.values()]
    assert (desk.key, desk.name, desk.projectTypeKey) == (
        "FAC",
        "Facilities Service Desk",
        "service_desk",
    )
    assert made.key == "FAC-1"
    # The client looks the project up before it creates: Jira's 404 for an unknown key.
    assert unknown.value.status_code == 404 and "'IT'" in str(unknown.value.text)
    assert keys == ["FAC-1"]


def test_the_command_line_refuses_a_project_without_a_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from usm_bridge_jira.simulator.__main__ import main

    with pytest.raises(SystemExit) as refused:
        main(["--port", "0", "--project", "FAC"])
    assert refused.value.code == 2
    assert "--project takes KEY=NAME" in capsys.readouterr().err
