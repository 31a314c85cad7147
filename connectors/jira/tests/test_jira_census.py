"""The census listing of the Jira connector: ``remote_ids()`` over the simulator (both
flavours) and against responses a misbehaving site may give."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from jira_harness import connector_for
from usm_bridge_jira import JiraConnector
from usm_bridge_jira.simulator import CLOUD_EMAIL, CLOUD_TOKEN, DC_TOKEN, JiraSimulator, SimFault

from usm_bridge.errors import RemoteError, RetriableRemoteError
from usm_bridge.testing import FakeClock

BASE = "https://jira.test"
V3 = f"{BASE}/rest/api/3"


def _ids(issues: list[Any]) -> list[str]:
    return sorted(str(issue.id) for issue in issues)


def test_lists_every_issue_in_scope_across_pages(simulator: JiraSimulator) -> None:
    site = simulator.site
    inside = site.seed(8, project="IT")  # page_size 3: three pages
    site.seed(2, project="DEV")  # out of scope
    connector = connector_for(simulator)
    listed = list(connector.remote_ids())
    assert sorted(listed) == _ids(inside)
    assert len(listed) == len(set(listed))


def test_only_the_id_is_asked_for_with_the_scope(simulator: JiraSimulator) -> None:
    simulator.site.seed(2)
    seen: list[tuple[str, dict[str, str]]] = []
    handle = simulator.site.handle

    def spy(method: str, path: str, query: Any, *rest: Any) -> Any:
        seen.append((path, dict(query)))
        return handle(method, path, query, *rest)

    simulator.site.handle = spy  # type: ignore[method-assign]
    list(connector_for(simulator).remote_ids())
    searches = [q for path, q in seen if "/search" in path]
    assert searches
    assert all(q["fields"] == "id" and q["jql"].startswith('project in ("IT")') for q in searches)


def test_the_filter_and_jql_bound_the_listing(cloud: JiraSimulator) -> None:
    site = cloud.site
    labelled = site.add_issue("Tagged", labels=["facilities"])
    site.add_issue("Untagged")
    site.add_issue("Elsewhere", project="DEV", labels=["facilities"])
    connector = connector_for(cloud, projects=[], filter_id=10000, jql="labels = facilities")
    assert list(connector.remote_ids()) == [str(labelled.id)]


def test_an_empty_scope_lists_nothing(simulator: JiraSimulator) -> None:
    assert list(connector_for(simulator).remote_ids()) == []


def test_a_deleted_issue_disappears_from_the_listing(simulator: JiraSimulator) -> None:
    issues = simulator.site.seed(7)
    connector = connector_for(simulator)
    assert sorted(connector.remote_ids()) == _ids(issues)
    gone = issues[4]
    if simulator.flavour == "cloud":
        auth = "Basic " + base64.b64encode(f"{CLOUD_EMAIL}:{CLOUD_TOKEN}".encode()).decode()
        path = f"rest/api/3/issue/{gone.key}"
    else:
        auth, path = f"Bearer {DC_TOKEN}", f"rest/api/2/issue/{gone.id}"
    response = requests.delete(
        f"{simulator.base_url}/{path}", headers={"Authorization": auth}, timeout=5
    )
    assert response.status_code == 204
    assert simulator.site.issue(gone.id) is None
    assert sorted(connector.remote_ids()) == _ids([i for i in issues if i is not gone])


def test_a_delete_during_the_listing_hides_no_other_issue(simulator: JiraSimulator) -> None:
    """Keyset pages: an issue deleted between two pages cannot shift another one out."""
    issues = simulator.site.seed(9)
    listing = connector_for(simulator).remote_ids()
    first = [next(listing) for _ in range(3)]
    assert first == [str(i.id) for i in issues[:3]]
    simulator.site.delete_issue(issues[0].id)  # a startAt read would now skip issues[3]
    assert first + list(listing) == [str(i.id) for i in issues]


def test_a_fault_mid_listing_raises(simulator: JiraSimulator) -> None:
    simulator.site.seed(8)
    listing = connector_for(simulator).remote_ids()
    assert len([next(listing) for _ in range(3)]) == 3
    simulator.fail_next(SimFault.UNAVAILABLE, times=10, retry_after="0")  # beyond max_attempts
    with pytest.raises(RemoteError):
        list(listing)


# -- a site that misbehaves -------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def _cloud(**settings: Any) -> JiraConnector:
    clock = FakeClock()
    values: dict[str, Any] = {
        "base_url": BASE,
        "deployment": "cloud",
        "email": "bridge@example.org",
        "api_token": "token",
        "projects": ["IT"],
        "page_size": 2,
        "max_attempts": 2,
        "backoff_initial": 0.1,
        **settings,
    }
    return JiraConnector(
        "jira",
        JiraConnector.settings_model.model_validate(values),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )


def test_an_announced_page_that_comes_empty_raises(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{V3}/search/jql", json={"issues": [{"id": "1"}, {"id": "2"}], "isLast": False})
    rsps.get(f"{V3}/search/jql", json={"issues": [], "isLast": False, "nextPageToken": "x"})
    with pytest.raises(RetriableRemoteError, match="empty page"):
        list(_cloud().remote_ids())


def test_a_site_ignoring_the_keyset_raises(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{V3}/search/jql", json={"issues": [{"id": "1"}, {"id": "2"}], "isLast": False})
    with pytest.raises(RetriableRemoteError, match="keyset"):
        list(_cloud().remote_ids())


def test_running_into_max_pages_raises_instead_of_truncating(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(f"{V3}/search/jql", json={"issues": [{"id": "1"}, {"id": "2"}], "isLast": False})
    rsps.get(f"{V3}/search/jql", json={"issues": [{"id": "3"}, {"id": "4"}], "isLast": False})
    with pytest.raises(RetriableRemoteError, match="max_pages"):
        list(_cloud(max_pages=2).remote_ids())


def test_data_center_without_a_total_reads_on_until_an_empty_page(
    rsps: responses.RequestsMock,
) -> None:
    v2 = f"{BASE}/rest/api/2/search"
    rsps.get(v2, json={"issues": [{"id": "1"}, {"id": "2"}]})
    rsps.get(v2, json={"issues": [{"id": "3"}]})
    rsps.get(v2, json={"issues": []})
    connector = _cloud(deployment="datacenter", personal_access_token="pat")  # noqa: S106 - a test credential
    assert list(connector.remote_ids()) == ["1", "2", "3"]
