"""usm_bridge.http: credentials never reach a log line or an error message."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
import requests
import responses

from connector_suite.conftest import API
from usm_bridge.errors import PermanentRemoteError, RemoteError, RetriableRemoteError
from usm_bridge.http import (
    BearerAuth,
    HttpClient,
    RetryPolicy,
    redact_headers,
    redact_text,
    redact_url,
)
from usm_bridge.testing import FakeClock

TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "hunter2-Secret"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def secret_client(session: requests.Session, clock: FakeClock) -> Iterator[HttpClient]:
    with HttpClient(
        API,
        session=session,
        auth=BearerAuth(TOKEN),
        retry=RetryPolicy(max_attempts=2, backoff_initial=0.1),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    ) as client:
        yield client


def _everything_about(error: BaseException) -> str:
    attributes = [str(getattr(error, name, "")) for name in ("url", "remote_message", "method")]
    return "\n".join([str(error), repr(error), *attributes, *traceback.format_exception(error)])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://jira.test/rest/api/3/search?jql=project%3DHR&token=abc123",
            "https://jira.test/rest/api/3/search?jql=project%3DHR&token=***",
        ),
        (
            f"https://bridge:{PASSWORD}@sn.test/api/now/table/incident",
            "https://bridge:***@sn.test/api/now/table/incident",
        ),
        (
            "https://sn.test/oauth_token.do?grant_type=password&username=u&password=p"
            "&client_secret=s&access_token=a&refresh_token=r&api_key=k",
            "https://sn.test/oauth_token.do?grant_type=password&username=u&password=***"
            "&client_secret=***&access_token=***&refresh_token=***&api_key=***",
        ),
        (
            "https://sn.test/api/now/table/incident?sysparm_query=active%3Dtrue%5EORDERBYnumber",
            "https://sn.test/api/now/table/incident?sysparm_query=active%3Dtrue%5EORDERBYnumber",
        ),
        ("https://user@sn.test/x", "https://user@sn.test/x"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_headers() -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Cookie": "JSESSIONID=1",
        "X-Api-Key": "k",
        "Accept": "application/json",
    }
    assert redact_headers(headers) == {
        "Authorization": "***",
        "Cookie": "***",
        "X-Api-Key": "***",
        "Accept": "application/json",
    }


def test_redact_text() -> None:
    text = (
        f"Authorization: Bearer {TOKEN}; url https://u:{PASSWORD}@h.test/?access_token=zz "
        '{"password": "pw-1", "client_secret":"cs-2"} and again ' + TOKEN
    )
    redacted = redact_text(text, secrets=[TOKEN])
    for secret in (TOKEN, PASSWORD, "zz", "pw-1", "cs-2"):
        assert secret not in redacted
    assert "https://u:***@h.test/" in redacted


def test_bearer_auth_and_client_reprs_hide_secrets() -> None:
    assert TOKEN not in repr(BearerAuth(TOKEN))
    with HttpClient(f"https://bridge:{PASSWORD}@sn.test/") as client:
        assert PASSWORD not in repr(client)


def test_a_refusal_of_a_url_with_a_token_does_not_show_it(
    secret_client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.get(f"{API}rest/api/3/myself", status=401, json={"errorMessages": ["Unauthorized"]})
    with pytest.raises(PermanentRemoteError) as raised:
        secret_client.get("rest/api/3/myself", params={"access_token": TOKEN, "x": "1"})
    assert raised.value.url == f"{API}rest/api/3/myself?access_token=***&x=1"
    assert TOKEN not in _everything_about(raised.value)


def test_a_remote_echoing_the_token_is_masked(
    secret_client: HttpClient, rsps: responses.RequestsMock
) -> None:
    echo = {"errorMessages": [f"Token {TOKEN} has expired"]}
    rsps.get(f"{API}x", status=403, json=echo)
    with pytest.raises(PermanentRemoteError) as raised:
        secret_client.get("x")
    assert raised.value.remote_message == "Token *** has expired"


def test_a_connection_failure_does_not_leak_the_url_or_the_cause(
    secret_client: HttpClient, rsps: responses.RequestsMock
) -> None:
    failure = requests.ConnectionError(
        f"HTTPSConnectionPool(host='tool.test', port=443): Max retries exceeded with url: "
        f"/oauth_token.do?password={PASSWORD}&client_secret=cs-123456"
    )
    rsps.get(f"{API}oauth_token.do", body=failure)
    with pytest.raises(RetriableRemoteError) as raised:
        secret_client.get("oauth_token.do", params={"password": PASSWORD})
    everything = _everything_about(raised.value)
    assert PASSWORD not in everything
    assert "cs-123456" not in everything
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_logs_name_method_redacted_url_status_and_elapsed_without_secrets(
    secret_client: HttpClient,
    rsps: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"{API}rest/api/3/search/jql"
    rsps.get(url, status=429, headers={"Retry-After": "2"})
    rsps.get(url, status=400, json={"errorMessages": [f"bad token {TOKEN}"]})
    caplog.set_level(logging.DEBUG, logger="usm_bridge.http")
    with pytest.raises(RemoteError):
        secret_client.get(url, params={"jql": "project = HR", "token": TOKEN})
    lines = [record.getMessage() for record in caplog.records]
    safe = f"{url}?jql=project+%3D+HR&token=***"
    assert lines[0].startswith(f"GET {safe} -> 429 in ")
    assert lines[0].endswith("s")
    assert "retrying in 2.00s (attempt 2 of 2)" in lines[1]
    assert lines[2].startswith(f"GET {safe} -> 400 in ")
    assert all(TOKEN not in line for line in lines)
    assert TOKEN not in caplog.text


def test_basic_auth_password_is_masked_when_echoed(
    session: requests.Session, rsps: responses.RequestsMock
) -> None:
    rsps.get(f"{API}x", status=400, body=f"bad credentials bridge/{PASSWORD}")
    with (
        HttpClient(API, session=session, auth=("bridge", PASSWORD)) as client,
        pytest.raises(PermanentRemoteError) as raised,
    ):
        client.get("x")
    assert PASSWORD not in _everything_about(raised.value)


def test_a_password_in_the_base_url_is_masked_when_echoed(
    session: requests.Session, rsps: responses.RequestsMock
) -> None:
    rsps.get(f"https://bridge:{PASSWORD}@sn.test/x", status=401, body=f"{PASSWORD} is wrong")
    with (
        HttpClient(f"https://bridge:{PASSWORD}@sn.test/", session=session) as client,
        pytest.raises(PermanentRemoteError) as raised,
    ):
        client.get("x")
    assert PASSWORD not in _everything_about(raised.value)


#: Signed storage URLs a file download may be redirected to (Jira Cloud's media, a Data Center
#: behind object storage): each one's credentials, and the URL as it may be shown.
SIGNED_URLS = [
    (
        "https://files.s3.amazonaws.com/f.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLEKEY1%2F20261208%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20261208T000000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE&X-Amz-Signature=5d672d79c15b13162d9279b0855",
        ["AKIAEXAMPLEKEY1", "FQoGZXIvYXdzEXAMPLE", "5d672d79c15b13162d9279b0855"],
        "https://files.s3.amazonaws.com/f.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=***&X-Amz-Date=20261208T000000Z&X-Amz-Expires=300"
        "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=***",
    ),
    (
        "https://acct.blob.core.windows.net/media/f.pdf?sv=2022-11-02&se=2026-12-08T01%3A00Z"
        "&sr=b&sp=r&sig=Zm9vYmFyYmF6cXV4%2BEXAMPLE%3D",
        ["Zm9vYmFyYmF6cXV4"],
        "https://acct.blob.core.windows.net/media/f.pdf?sv=2022-11-02&se=2026-12-08T01%3A00Z"
        "&sr=b&sp=r&sig=***",
    ),
    (
        "https://storage.googleapis.com/media/f.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=bridge-files%40proj.iam.gserviceaccount.com%2F20261208%2Fauto"
        "&X-Goog-Date=20261208T000000Z&X-Goog-Expires=600&X-Goog-SignedHeaders=host"
        "&X-Goog-Signature=8e3f9a0b7c6d5e4f3a2b1c0d",
        ["bridge-files", "8e3f9a0b7c6d5e4f3a2b1c0d"],
        "https://storage.googleapis.com/media/f.pdf?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Credential=***&X-Goog-Date=20261208T000000Z&X-Goog-Expires=600"
        "&X-Goog-SignedHeaders=host&X-Goog-Signature=***",
    ),
]


@pytest.mark.parametrize(("url", "secrets", "shown"), SIGNED_URLS)
def test_a_signed_storage_url_is_shown_without_its_signature_and_credential(
    url: str, secrets: list[str], shown: str
) -> None:
    assert redact_url(url) == shown
    in_text = redact_text(f"download of 10001 redirected to {url} failed")
    assert shown in in_text
    assert not any(secret in in_text for secret in secrets)
    assert redact_text("config=1 design=2 basig=3") == "config=1 design=2 basig=3"


@pytest.mark.parametrize(("url", "secrets", "shown"), SIGNED_URLS)
def test_a_refused_signed_download_names_no_signature_in_its_error_or_logs(
    secret_client: HttpClient,
    rsps: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    url: str,
    secrets: list[str],
    shown: str,
) -> None:
    rsps.get(url.split("?")[0], status=403, body="Request has expired")
    caplog.set_level(logging.DEBUG, logger="usm_bridge.http")
    with pytest.raises(PermanentRemoteError) as raised:
        secret_client.get(url, stream=True)
    assert raised.value.url == shown
    everything = _everything_about(raised.value) + caplog.text
    assert not any(secret in everything for secret in secrets)
    assert f"GET {shown} -> 403" in caplog.text
