"""usm_bridge.http: refusals surface at once, with the remote's own words."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import responses

from connector_suite.conftest import API
from usm_bridge.errors import PermanentRemoteError
from usm_bridge.http import HttpClient, remote_message, retry_after_seconds

SEARCH = f"{API}rest/api/3/search/jql"
TABLE = f"{API}api/now/table/incident"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def _refusal(
    client: HttpClient, rsps: responses.RequestsMock, **reply: object
) -> PermanentRemoteError:
    rsps.get(SEARCH, **reply)
    with pytest.raises(PermanentRemoteError) as raised:
        client.get(SEARCH)
    assert len(rsps.calls) == 1, "a 4xx must not be retried"
    return raised.value


def test_jira_error_messages_and_field_errors(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    body = {
        "errorMessages": ["Unbounded JQL queries are not allowed here."],
        "errors": {"summary": "You must specify a summary of the issue."},
    }
    error = _refusal(client, rsps, status=400, json=body)
    assert error.status == 400
    assert error.remote_message == (
        "Unbounded JQL queries are not allowed here.; "
        "summary: You must specify a summary of the issue."
    )
    assert error.method == "GET"
    assert error.url == SEARCH
    assert "remote said: Unbounded JQL" in str(error)


def test_servicenow_error_message_and_detail(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    body = {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth info"},
        "status": "failure",
    }
    error = _refusal(client, rsps, status=401, json=body)
    assert error.remote_message == "User Not Authenticated: Required to provide Auth info"


def test_a_non_json_body_is_reported_truncated(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    page = "<html><body><h1>Forbidden</h1>" + "x" * 2000 + "</body></html>"
    error = _refusal(client, rsps, status=403, body=page, content_type="text/html")
    assert error.remote_message is not None
    assert error.remote_message.startswith("<html><body><h1>Forbidden</h1>")
    assert len(error.remote_message) == 500
    assert error.remote_message.endswith("…")


def test_a_malformed_json_body_is_reported_as_text(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    error = _refusal(
        client, rsps, status=400, body='{"errorMessages": ["half', content_type="application/json"
    )
    assert error.remote_message == '{"errorMessages": ["half'


def test_an_empty_body_gives_no_remote_message(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    error = _refusal(client, rsps, status=404, body="")
    assert error.remote_message is None
    assert error.status == 404


def test_gone_is_permanent(client: HttpClient, rsps: responses.RequestsMock) -> None:
    old = {"errorMessages": ["The requested API has been removed. Please migrate."]}
    error = _refusal(client, rsps, status=410, json=old)
    assert error.remote_message == "The requested API has been removed. Please migrate."


def test_a_post_refusal_carries_the_field_errors(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(TABLE, status=400, json={"error": {"message": "Invalid value", "detail": None}})
    with pytest.raises(PermanentRemoteError) as raised:
        client.post(TABLE, json={"impact": "9"})
    assert raised.value.remote_message == "Invalid value"


def _response(status: int, body: str | bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.encoding = "utf-8"
    return response


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errorMessages": ["a", "b"]}, "a; b"),
        ({"errors": {"f": "bad"}}, "f: bad"),
        ({"errorMessages": [], "errors": {}, "message": "fallback"}, "fallback"),
        ({"error": {"message": "same", "detail": "same"}}, "same"),
        ({"error": "invalid_grant"}, "invalid_grant"),
        ({"error": "invalid_client", "error_description": "x"}, "invalid_client"),
        (["one", "two"], "one; two"),
        ({"unrelated": 1}, '{"unrelated": 1}'),
    ],
)
def test_remote_message_shapes(body: object, expected: str) -> None:
    assert remote_message(_response(400, json.dumps(body))) == expected


def test_remote_message_collapses_whitespace() -> None:
    assert remote_message(_response(500, "Service\n\n   Unavailable\n")) == "Service Unavailable"


NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "Mon, 01 Jan 2024 00:01:00 GMT"}, 60.0),
        ({"Retry-After": "Sun, 31 Dec 2023 23:00:00 GMT"}, 0.0),  # a date already past
        ({"Retry-After": "soon", "X-RateLimit-Reset": "1704067230"}, 30.0),
        ({"X-RateLimit-Reset": "2024-01-01T00:02:00Z"}, 120.0),
        ({"X-RateLimit-Reset": "2024-01-01T00:02:00"}, 120.0),  # no zone: UTC
        ({"X-RateLimit-Reset": "1704067230000"}, 30.0),  # epoch milliseconds
        ({"X-RateLimit-Reset": "15"}, 15.0),  # a delay, not an epoch time
        ({"X-RateLimit-Reset": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers, NOW) == expected
