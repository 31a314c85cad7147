"""The connector's HTTP edge cases, with ``responses`` standing in for Jira."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from pydantic import ValidationError
from usm_bridge_jira import JiraConnector

from usm_bridge.connector import Checkpoint, RawRecord, RemoteDraft
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.testing import FakeClock

BASE = "https://jira.test"
V3 = f"{BASE}/rest/api/3"
V2 = f"{BASE}/rest/api/2"
TOKEN = "cloud-api-token-secret-987"  # noqa: S105 - a test credential
PAT = "dc-personal-access-token-654"


def _issue(n: int, updated: str = "2024-03-31T03:05:00.000+0200") -> dict[str, Any]:
    return {
        "id": str(10000 + n),
        "key": f"IT-{n}",
        "fields": {"summary": f"Issue {n}", "updated": updated, "comment": {"comments": []}},
    }


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{V3}/field", json=[])
        mock.get(f"{V2}/field", json=[])
        mock.get(f"{V3}/myself", json={"timeZone": "Europe/Berlin"})
        mock.get(f"{V2}/myself", json={"timeZone": "Europe/Berlin"})
        yield mock


def _connector(clock: FakeClock, **settings: Any) -> JiraConnector:
    values: dict[str, Any] = {
        "base_url": BASE,
        "deployment": "cloud",
        "email": "bridge@example.org",
        "api_token": TOKEN,
        "projects": ["IT"],
        "page_size": 2,
        "max_attempts": 3,
        "backoff_initial": 0.5,
        **settings,
    }
    return JiraConnector(
        "jira",
        JiraConnector.settings_model.model_validate(values),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )


def _pages(rsps: responses.RequestsMock, pages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Serve ``pages`` in turn on /search/jql; returns the query parameters sent."""
    sent: list[dict[str, str]] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(dict(request.params))
        return 200, {}, json.dumps(pages[min(len(sent), len(pages)) - 1])

    rsps.add_callback(responses.GET, f"{V3}/search/jql", callback=answer)
    return sent


def test_token_pagination_follows_tokens_and_short_pages_are_not_the_end(
    rsps: responses.RequestsMock,
) -> None:
    sent = _pages(
        rsps,
        [
            {"issues": [_issue(1)], "nextPageToken": "t1", "isLast": False},  # short, mid-stream
            {"issues": [_issue(2), _issue(3)], "nextPageToken": "t2", "isLast": False},
            {"issues": [_issue(4)], "isLast": True},
        ],
    )
    items = list(_connector(FakeClock()).read_changes(None))
    assert [i.remote_key for i in items if isinstance(i, RawRecord)] == [
        "IT-1",
        "IT-2",
        "IT-3",
        "IT-4",
    ]
    assert sum(isinstance(i, Checkpoint) for i in items) == 3
    assert [p.get("nextPageToken") for p in sent] == [None, "t1", "t2"]
    assert sent[0]["jql"] == 'project in ("IT") ORDER BY updated ASC, key ASC'
    assert sent[0]["fields"] == "*all"


def test_a_repeated_token_stops_the_read_instead_of_looping(
    rsps: responses.RequestsMock,
) -> None:
    _pages(
        rsps,
        [
            {"issues": [_issue(1)], "nextPageToken": "same", "isLast": False},
            {"issues": [_issue(2)], "nextPageToken": "same", "isLast": False},
        ],
    )
    seen: list[Any] = []
    with pytest.raises(RetriableRemoteError, match="repeated a nextPageToken"):
        seen.extend(_connector(FakeClock()).read_changes(None))
    assert isinstance(seen[-1], Checkpoint)  # what was read is covered: resume from there


def test_an_empty_page_ends_the_read_even_with_a_token(rsps: responses.RequestsMock) -> None:
    sent = _pages(rsps, [{"issues": [], "nextPageToken": "more?", "isLast": False}])
    items = list(_connector(FakeClock()).read_changes(None))
    assert len(sent) == 1 and len(items) == 1 and isinstance(items[0], Checkpoint)


def test_a_runaway_page_count_is_capped_and_ends_on_a_checkpoint(
    rsps: responses.RequestsMock,
) -> None:
    pages = [
        {"issues": [_issue(n)], "nextPageToken": f"t{n}", "isLast": False} for n in range(1, 9)
    ]
    sent = _pages(rsps, pages)
    items = list(_connector(FakeClock(), max_pages=3).read_changes(None))
    assert len(sent) == 3 and isinstance(items[-1], Checkpoint)


def test_data_center_pages_by_start_at_with_bearer_auth(rsps: responses.RequestsMock) -> None:
    sent: list[dict[str, str]] = []
    issues = [_issue(n) for n in range(1, 6)]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(dict(request.params))
        assert request.headers["Authorization"] == f"Bearer {PAT}"
        start = int(request.params["startAt"])
        page = issues[start : start + 2] if start != 2 else issues[2:3]  # one short page
        return 200, {}, json.dumps({"startAt": start, "total": 5, "issues": page})

    rsps.add_callback(responses.GET, f"{V2}/search", callback=answer)
    rsps.get(f"{V2}/serverInfo", json={"deploymentType": "Server", "version": "9.12.0"})
    connector = _connector(
        FakeClock(),
        deployment="auto",
        email=None,
        api_token=None,
        personal_access_token=PAT,
    )
    records = [i for i in connector.read_changes(None) if isinstance(i, RawRecord)]
    assert len(records) == 5 and connector.deployment == "datacenter"
    assert [p["startAt"] for p in sent] == ["0", "2", "3"]


def test_auto_detects_cloud_and_signs_in_with_basic_auth(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{V2}/serverInfo", json={"deploymentType": "Cloud"})
    sent = _pages(rsps, [{"issues": [], "isLast": True}])
    connector = _connector(FakeClock(), deployment="auto")
    list(connector.read_changes(None))
    assert connector.api == "rest/api/3" and len(sent) == 1
    expected = base64.b64encode(f"bridge@example.org:{TOKEN}".encode()).decode()
    assert rsps.calls[-1].request.headers["Authorization"] == f"Basic {expected}"


def test_the_incremental_bound_is_epoch_milliseconds_with_the_overlap(
    rsps: responses.RequestsMock,
) -> None:
    sent = _pages(rsps, [{"issues": [], "isLast": True}])
    cursor = json.dumps({"v": 1, "updated": 1711847130000, "seen": []})  # 01:05:30 UTC
    list(_connector(FakeClock(), overlap_minutes=5).read_changes(cursor))
    # Five minutes earlier, unquoted: the same instant in the account's zone, whatever it is,
    # so the read asks nothing but the search (no /myself).
    assert "updated >= 1711846830000 " in sent[0]["jql"]
    assert [call.request.url.split("?")[0] for call in rsps.calls] == [
        f"{V3}/field",
        f"{V3}/search/jql",
    ]


def test_rate_limits_wait_as_long_as_jira_says(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{V3}/search/jql", status=429, headers={"Retry-After": "7"})
    rsps.get(
        f"{V3}/search/jql",
        status=503,
        headers={"X-RateLimit-Reset": "2024-01-01T00:00:19Z"},  # the clock is at 00:00:07
    )
    rsps.get(f"{V3}/search/jql", json={"issues": [], "isLast": True})
    clock = FakeClock()
    list(_connector(clock).read_changes(None))
    assert clock.sleeps == [7.0, 12.0]


def test_refusals_carry_jiras_messages_and_never_the_token(rsps: responses.RequestsMock) -> None:
    rsps.post(
        f"{V3}/search/jql",
        json={"issues": [], "isLast": True},
    )
    rsps.get(f"{V3}/search/jql", json={"issues": [], "isLast": True})
    rsps.post(
        f"{V3}/issue",
        status=400,
        json={
            "errorMessages": [f"Bad token {TOKEN}"],
            "errors": {"summary": "You must specify a summary of the issue."},
        },
    )
    with pytest.raises(PermanentRemoteError) as raised:
        _connector(FakeClock()).create(RemoteDraft(fields={"summary": ""}), "corr-1")
    text = str(raised.value)
    assert "summary: You must specify a summary of the issue." in text
    assert TOKEN not in text and "***" in text


def test_create_sends_the_correlation_property_and_adf(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{V3}/search/jql", json={"issues": [], "isLast": True})
    rsps.post(f"{V3}/issue", status=201, json={"id": "10100", "key": "IT-100", "self": "x"})
    ref = _connector(FakeClock(), correlation_property="bridge").create(
        RemoteDraft(fields={"summary": "Door stuck", "description": "Line 1\nLine 2"}), "c-9"
    )
    [lookup] = [c.request for c in rsps.calls if "/search/jql" in (c.request.url or "")]
    assert 'issue.property[bridge].correlation = "c-9"' in (lookup.params or {})["jql"]
    body = json.loads(rsps.calls[-1].request.body or b"{}")
    assert body["properties"] == [{"key": "bridge", "value": {"correlation": "c-9"}}]
    assert body["fields"]["description"]["type"] == "doc"
    assert body["fields"]["project"] == {"key": "IT"}
    assert ref.remote_key == "IT-100"


def test_jql_values_are_quoted() -> None:
    from usm_bridge_jira.jql import quote

    assert quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"'


def test_settings_refuse_unbounded_reads_and_missing_credentials() -> None:
    with pytest.raises(ValidationError, match="unbounded"):
        JiraConnector.settings_model.model_validate(
            {"base_url": BASE, "email": "a@b.c", "api_token": "t"}
        )
    with pytest.raises(ValidationError, match="personal_access_token"):
        JiraConnector.settings_model.model_validate(
            {"base_url": BASE, "deployment": "datacenter", "projects": ["IT"]}
        )
    settings = JiraConnector.settings_model.model_validate(
        {"base_url": BASE, "email": "a@b.c", "api_token": TOKEN, "projects": ["IT"]}
    )
    assert TOKEN not in repr(settings)
