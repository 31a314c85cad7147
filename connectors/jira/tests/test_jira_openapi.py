"""Every kind of response the Cloud simulator serves on v3 fits the official OpenAPI description.

Every test using a Cloud simulator validates what it served (see ``conftest.py``); this one tours
every operation the simulator implements, error answers included, so that none goes unchecked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import requests
from jira_harness import start_simulator
from jira_openapi import SpecValidator, spec_validator
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN
from usm_bridge_jira.simulator.state import text_adf


def test_every_v3_operation_answers_as_documented() -> None:
    simulator, recorder = start_simulator("cloud")
    site = simulator.site
    # Fields of every kind on a screen, so that their descriptions are checked too.
    screen = ("summary", "priority", "labels", "customfield_10004", "customfield_10050")
    site.transitions = [replace(t, screen=screen) if t.id == "11" else t for t in site.transitions]
    [issue] = site.seed(1, comments=2)
    comment = issue.comments[0]
    attachment = site.attachments.add(issue, "photo.jpg", b"\xff\xd8\xff jpeg")
    base = f"{simulator.base_url}/rest/api/3"
    calls: list[tuple[str, str, Any]] = [
        ("GET", "serverInfo", None),
        ("GET", "myself", None),
        ("GET", "field", None),
        ("GET", "priority", None),
        ("GET", "resolution", None),
        ("GET", "issuetype", None),
        ("GET", "project/IT", None),
        ("GET", "project/IT/statuses", None),
        ("GET", "project/NOPE", None),
        ("GET", "search/jql?jql=project%3DIT&fields=*all", None),
        ("GET", "search/jql?jql=project%3DIT&maxResults=1", None),
        ("POST", "search/jql", {"jql": "project = IT", "fields": ["summary", "status"]}),
        ("GET", "search/jql?jql=order+by+updated", None),
        ("GET", "search/jql?jql=project+%3D", None),
        ("GET", "search?jql=project%3DIT", None),
        ("GET", f"issue/{issue.key}", None),
        ("GET", "issue/IT-999", None),
        (
            "POST",
            "issue",
            {
                "fields": {
                    "project": {"key": "IT"},
                    "issuetype": {"name": "Task"},
                    "summary": "Projector broken",
                    "description": text_adf("Room 4"),
                },
                "properties": [{"key": "usmBridge", "value": {"correlation": "x"}}],
            },
        ),
        ("POST", "issue", {"fields": {"project": {"key": "IT"}, "issuetype": {"name": "Task"}}}),
        ("PUT", f"issue/{issue.id}", {"fields": {"summary": "Renamed"}}),
        ("PUT", f"issue/{issue.id}", {"fields": {"description": "not ADF"}}),
        ("GET", f"issue/{issue.id}/transitions?expand=transitions.fields", None),
        (
            "POST",
            f"issue/{issue.id}/transitions",
            {"transition": {"id": "21"}, "fields": {"summary": "Not on this screen"}},
        ),
        (
            "POST",
            f"issue/{issue.id}/transitions",
            {"transition": {"id": "11"}, "fields": {"summary": "Renamed on the way"}},
        ),
        ("POST", f"issue/{issue.id}/transitions", {"transition": {"id": "41"}}),
        (
            "POST",
            f"issue/{issue.id}/transitions",
            {"transition": {"id": "41"}, "fields": {"resolution": {"name": "Done"}}},
        ),
        ("GET", f"issue/{issue.id}/comment?startAt=1&maxResults=1", None),
        ("POST", f"issue/{issue.id}/comment", {"body": text_adf("Fixed")}),
        ("POST", f"issue/{issue.id}/comment", {"body": "plain"}),
        (
            "POST",
            f"issue/{issue.id}/comment",
            {
                "body": text_adf("On our way"),
                "properties": [{"key": "usmBridge", "value": {"correlation": "c"}}],
            },
        ),
        ("GET", f"comment/{comment.id}/properties/usmBridge", None),
        ("PUT", f"comment/{comment.id}/properties/usmBridge", {"correlation": "z"}),
        ("PUT", f"comment/{comment.id}/properties/usmBridge", {"correlation": "y"}),
        ("GET", f"comment/{comment.id}/properties/usmBridge", None),
        ("GET", f"comment/{comment.id}/properties", None),
        ("DELETE", f"comment/{comment.id}/properties/usmBridge", None),
        ("GET", "comment/1/properties/usmBridge", None),
        ("PUT", f"issue/{issue.id}/properties/usmBridge", {"correlation": "y"}),
        ("GET", f"issue/{issue.id}/properties/usmBridge", None),
        ("GET", f"issue/{issue.id}/properties/missing", None),
        ("POST", f"issue/{issue.id}/remotelink", {"object": {"url": "https://x", "title": "X"}}),
        ("POST", f"issue/{issue.id}/remotelink", {"globalId": "g", "object": {"url": "u"}}),
        ("GET", f"issue/{issue.id}/remotelink", None),
        ("GET", "attachment/meta", None),
        ("GET", f"attachment/{attachment.id}", None),
        ("GET", "attachment/424242", None),
        ("GET", f"attachment/content/{attachment.id}?redirect=false", None),
        ("GET", "search/jql?jql=project%3DIT&fields=attachment", None),
        ("DELETE", f"attachment/{attachment.id}", None),
        ("DELETE", f"attachment/{attachment.id}", None),
    ]
    statuses = []
    try:
        with requests.Session() as session:
            session.auth = (CLOUD_EMAIL, CLOUD_TOKEN)
            for method, path, body in calls:
                answer = session.request(method, f"{base}/{path}", json=body, timeout=5)
                statuses.append(answer.status_code)
            anonymous = requests.get(f"{base}/myself", timeout=5)
            statuses.append(anonymous.status_code)
            anonymous.close()
    finally:
        simulator.stop()
    assert {200, 201, 204, 400, 401, 404, 410} <= set(statuses)
    assert recorder.validate() == len(calls) + 1


def test_the_validator_rejects_what_the_spec_does_not_allow() -> None:
    validator = spec_validator()
    with pytest.raises(AssertionError, match="Additional properties"):
        validator.check("GET", "/rest/api/3/myself", 200, {"accountId": "a", "extra": 1})
    with pytest.raises(AssertionError, match="is not of type 'string'"):
        validator.check("GET", "/rest/api/3/search/jql", 200, {"issues": [{"id": 5}]})
    with pytest.raises(AssertionError, match="no operation"):
        validator.check("GET", "/rest/api/3/nowhere", 200, {})
    with pytest.raises(AssertionError, match="is not of type 'integer'"):
        validator.check("GET", "/rest/api/3/serverInfo", 200, {"buildNumber": "7"})


def test_openapi_nullable_is_understood() -> None:
    validator = SpecValidator()
    # A schema using OpenAPI's nullable accepts null once converted.
    nullable = [
        name
        for name, schema in validator.components["schemas"].items()
        if "null" in json.dumps(schema)
    ]
    assert nullable
