"""Issue links in the Jira simulator as Jira Cloud serves them (checked against the official
OpenAPI description), and read as forks by the shipped Jira Service Management mapping."""

from __future__ import annotations

from typing import Any

import requests
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN, JiraSimulator
from usm_bridge_jira.transforms import TRANSFORMS as JIRA

from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import ForkRole, UsmProcess

JSM = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")


def _api(simulator: JiraSimulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{simulator.base_url}/rest/api/3/{path}",
                            auth=(CLOUD_EMAIL, CLOUD_TOKEN), timeout=10, **kwargs)  # fmt: skip


def _link(simulator: JiraSimulator, kind: str, inward: str, outward: str) -> requests.Response:
    body = {"type": {"name": kind}, "inwardIssue": {"key": inward},
            "outwardIssue": {"key": outward}}  # fmt: skip
    return _api(simulator, "POST", "issueLink", json=body)


def _links(simulator: JiraSimulator, key: str) -> list[dict[str, Any]]:
    reply = _api(simulator, "GET", f"issue/{key}", params={"fields": "issuelinks"})
    assert reply.status_code == 200, reply.text
    links: list[dict[str, Any]] = reply.json()["fields"]["issuelinks"]
    return links


def test_a_link_shows_on_both_issues_the_way_jira_words_it(cloud: JiraSimulator) -> None:
    problem, incident, other = (issue.key for issue in cloud.site.seed(3))
    # "problem causes incident": the request's inwardIssue is the one that "causes".
    reply = _link(cloud, "Problem/Incident", problem, incident)
    assert (reply.status_code, reply.text) == (201, "")
    assert _link(cloud, "Relates", incident, other).status_code == 201
    on_incident = _links(cloud, incident)
    assert [(link["type"]["name"], "inwardIssue" in link, "outwardIssue" in link)
            for link in on_incident] == [("Problem/Incident", True, False),
                                          ("Relates", False, True)]  # fmt: skip
    assert on_incident[0]["type"]["inward"] == "is caused by"
    assert on_incident[0]["inwardIssue"]["key"] == problem
    (on_problem,) = _links(cloud, problem)
    assert on_problem["outwardIssue"]["key"] == incident
    assert on_problem["type"]["outward"] == "causes"
    # Every v3 response above is validated against the OpenAPI description by the fixture.


def test_a_link_to_an_unknown_issue_or_of_an_unknown_type_is_a_404(cloud: JiraSimulator) -> None:
    first, second = (issue.key for issue in cloud.site.seed(2))
    assert _link(cloud, "Fixes", first, second).status_code == 404
    assert _link(cloud, "Relates", first, "IT-999").status_code == 404
    assert _links(cloud, first) == []


def test_the_jsm_mapping_reads_the_served_links_as_forks(cloud: JiraSimulator) -> None:
    problem, incident = (issue.key for issue in cloud.site.seed(2))
    assert _link(cloud, "Problem/Incident", problem, incident).status_code == 201
    context = MappingContext(unit="it", instance="it-jira", transforms={**CORE, **JIRA})
    calls = {}
    for key in (problem, incident):
        data = _api(cloud, "GET", f"issue/{key}").json()
        calls[key] = apply_inbound(JSM, RawRecord(remote_id=data["id"], data=data), context)
    assert [(f.role, f.process, f.ref, f.via) for f in calls[incident].chain.forks] == [
        (ForkRole.SECONDARY, UsmProcess.IMPROVE, problem, "jira:is caused by")
    ]
    assert [(f.role, f.process, f.ref, f.via) for f in calls[problem].chain.forks] == [
        (ForkRole.PRIMARY, UsmProcess.RECOVER, incident, "jira:causes")
    ]
