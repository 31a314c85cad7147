"""usm_bridge.http: what is retried, how long it waits, and when it gives up."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from connector_suite.conftest import API
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.http import HttpClient, RetryPolicy, Timeouts
from usm_bridge.testing import FakeClock

URL = f"{API}rest/api/3/myself"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def test_every_request_carries_connect_and_read_timeouts(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, json={})
    client.get("rest/api/3/myself")
    assert rsps.calls[0].request.req_kwargs["timeout"] == (2.0, 7.0)  # type: ignore[attr-defined]


def test_retry_after_in_seconds_is_honoured(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "5"})
    rsps.get(URL, json={"ok": True})
    assert client.get(URL).json() == {"ok": True}
    assert clock.sleeps == [5.0]


def test_retry_after_as_http_date_is_honoured(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    rsps.get(URL, status=503, headers={"Retry-After": when})
    rsps.get(URL, json={})
    client.get(URL)
    assert clock.sleeps == [30.0]


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        pytest.param("2024-01-01T00:00:20.000Z", 20.0, id="jira-iso-time"),
        pytest.param("2024-01-01T00:00:12.000+0000", 12.0, id="jira-iso-offset"),
        pytest.param(str(1704067200 + 45), 45.0, id="servicenow-unix-seconds"),
    ],
)
def test_x_ratelimit_reset_is_honoured(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock, reset: str, expected: float
) -> None:
    rsps.get(URL, status=429, headers={"X-RateLimit-Reset": reset})
    rsps.get(URL, json={})
    client.get(URL)
    assert clock.sleeps == [expected]


def test_429_without_retry_after_backs_off_exponentially_with_jitter(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    for _ in range(3):
        rsps.get(URL, status=429, body="Rate limit exceeded")
    rsps.get(URL, json={})
    client.get(URL)
    first, second, third = clock.sleeps
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0
    assert 2.0 <= third <= 4.0


def test_server_errors_are_retried_then_raise_retriable_error(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    for _ in range(4):
        rsps.get(URL, status=500, json={"errorMessages": ["Internal server error"]})
    with pytest.raises(RetriableRemoteError) as raised:
        client.get(URL)
    assert len(rsps.calls) == 4
    assert len(clock.sleeps) == 3
    assert raised.value.status == 500
    assert raised.value.remote_message == "Internal server error"
    assert "gave up after 4 attempt(s)" in str(raised.value)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_other_5xx_are_retried(
    client: HttpClient, rsps: responses.RequestsMock, status: int
) -> None:
    rsps.get(URL, status=status)
    rsps.get(URL, json={})
    assert client.get(URL).status_code == 200


def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "3600"}, body="Rate limit exceeded")
    with pytest.raises(RetriableRemoteError) as raised:
        client.get(URL)
    assert clock.sleeps == []
    assert raised.value.retry_after == 3600.0
    assert raised.value.remote_message == "Rate limit exceeded"


def test_the_budget_bounds_all_waits_together(
    session: requests.Session, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, status=503)  # answers every attempt
    policy = RetryPolicy(max_attempts=100, budget=10.0, backoff_initial=2.0, backoff_max=60.0)
    client = HttpClient(
        session=session, retry=policy, sleep=clock.sleep, clock=clock.monotonic, now=clock.now
    )
    with pytest.raises(RetriableRemoteError):
        client.get(URL)
    assert sum(clock.sleeps) == pytest.approx(10.0)
    assert len(rsps.calls) < 10


def test_a_connection_reset_is_retried(client: HttpClient, rsps: responses.RequestsMock) -> None:
    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    rsps.get(URL, body=requests.ConnectionError(reset))
    rsps.get(URL, json={"ok": True})
    assert client.get(URL).json() == {"ok": True}


def test_a_read_timeout_is_retried_for_a_get(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, body=requests.ReadTimeout("read timed out"))
    rsps.get(URL, json={})
    assert client.get(URL).status_code == 200


def test_a_timeout_that_persists_raises_retriable_error(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(RetriableRemoteError, match="read timeout") as raised:
        client.get(URL)
    assert raised.value.status is None
    assert len(rsps.calls) == 4


CREATE = f"{API}rest/api/3/issue"


def test_a_post_is_not_retried_after_a_read_timeout(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    # The issue may exist already: only the caller, through its correlation, can tell.
    rsps.post(CREATE, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(RetriableRemoteError, match="not retried") as raised:
        client.post(CREATE, json={"fields": {}})
    assert len(rsps.calls) == 1
    assert raised.value.method == "POST"


def test_a_post_is_not_retried_after_a_5xx(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(CREATE, status=503)
    with pytest.raises(RetriableRemoteError, match="not retried"):
        client.post(CREATE, json={})
    assert len(rsps.calls) == 1


def test_a_post_refused_by_the_rate_limiter_is_retried(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    # A 429 is answered before the request does any work: sending the create again is safe.
    rsps.post(CREATE, status=429, headers={"Retry-After": "1"})
    rsps.post(CREATE, status=201, json={"id": "10001"})
    assert client.post(CREATE, json={}).json() == {"id": "10001"}
    assert len(rsps.calls) == 2


def test_a_post_the_caller_marks_idempotent_is_retried(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(CREATE, body=requests.ReadTimeout("read timed out"))
    rsps.post(CREATE, status=201, json={"id": "10001"})
    assert client.post(CREATE, json={}, idempotent=True).json() == {"id": "10001"}


@pytest.mark.parametrize(
    "never_left",
    [
        pytest.param(requests.ConnectTimeout("connect timed out"), id="connect-timeout"),
        pytest.param(
            requests.ConnectionError(
                MaxRetryError(None, CREATE, NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
            ),
            id="connection-refused",
        ),
    ],
)
def test_a_post_that_never_left_is_retried(
    client: HttpClient, rsps: responses.RequestsMock, never_left: Exception
) -> None:
    rsps.post(CREATE, body=never_left)
    rsps.post(CREATE, status=201, json={"id": "10001"})
    assert client.post(CREATE, json={}).status_code == 201


def test_a_patch_is_not_retried_after_a_reset_unless_idempotent(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    url = f"{API}api/now/table/incident/abc"
    reset = requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError()))
    rsps.patch(url, body=reset)
    with pytest.raises(RetriableRemoteError, match="not retried"):
        client.patch(url, json={"state": "2"})
    rsps.patch(url, body=reset)
    rsps.patch(url, json={"result": {}})
    assert client.patch(url, json={"state": "2"}, idempotent=True).status_code == 200


def test_a_put_is_retried_like_a_get(client: HttpClient, rsps: responses.RequestsMock) -> None:
    url = f"{API}rest/api/3/issue/HR-1"
    rsps.put(url, status=503)
    rsps.put(url, status=204)
    assert client.put(url, json={"fields": {}}).status_code == 204


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(budget=-1)


def test_an_owned_session_is_closed_and_an_injected_one_is_not(
    session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[requests.Session] = []
    monkeypatch.setattr(requests.Session, "close", lambda self: closed.append(self))
    with HttpClient(API, session=session):
        pass
    assert closed == []
    with HttpClient(API):
        pass
    assert len(closed) == 1


def test_the_pytest_plugin_gives_connector_authors_a_fake_clock(
    usm_fake_clock: FakeClock, session: requests.Session, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, status=503, headers={"Retry-After": "12"})
    rsps.get(URL, json={})
    with HttpClient(
        session=session,
        sleep=usm_fake_clock.sleep,
        clock=usm_fake_clock.monotonic,
        now=usm_fake_clock.now,
    ) as client:
        client.get(URL)
    assert usm_fake_clock.sleeps == [12.0]
    assert usm_fake_clock.monotonic() == 12.0


def test_a_retry_never_waits_beyond_the_budget_for_a_remote_that_does_not_answer(
    session: requests.Session, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    """A tool that accepts and never answers: each attempt waits out its read timeout. The
    first has the whole configured one; a retry only what the budget has left (at least 1 s)."""
    given: list[tuple[float, float]] = []

    def hung(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        connect, read = request.req_kwargs["timeout"]  # type: ignore[attr-defined]
        given.append((connect, read))
        clock.advance(read)  # the read timeout runs out
        raise requests.ReadTimeout("read timed out")

    rsps.add_callback(responses.GET, URL, callback=hung)
    client = HttpClient(
        session=session,
        timeouts=Timeouts(connect=2.0, read=7.0),
        retry=RetryPolicy(max_attempts=10, budget=12.0, backoff_initial=1.0, backoff_max=1.0),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
        rng=random.Random(1),
    )
    began = clock.monotonic()
    with pytest.raises(RetriableRemoteError, match="read timeout"):
        client.get(URL)
    assert given[0] == (2.0, 7.0)
    assert all(read <= 7.0 for _, read in given[1:]) and given[1][1] < 7.0
    assert clock.monotonic() - began <= 12.0 + 1.0  # the budget, and one shortest retry


def test_a_body_of_chunks_read_once_is_not_sent_twice_even_after_a_429(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    rsps.post(URL, status=429, headers={"Retry-After": "1"})
    chunks = iter([b"first ", b"second"])
    with pytest.raises(RetriableRemoteError, match="could be read only once") as caught:
        client.post(URL, data=chunks)
    assert caught.value.status == 429 and caught.value.retry_after == 1.0
    assert len(rsps.calls) == 1 and clock.sleeps == []


def test_a_body_of_chunks_that_reads_anew_is_retried_after_a_429(
    client: HttpClient, clock: FakeClock, rsps: responses.RequestsMock
) -> None:
    rsps.post(URL, status=429, headers={"Retry-After": "1"})
    rsps.post(URL, status=201, json={})

    class FromTheStart:
        def __iter__(self) -> Iterator[bytes]:
            yield from (b"first ", b"second")

    sent = client.post(URL, data=FromTheStart())
    assert sent.status_code == 201 and clock.sleeps == [1.0]
    bodies = [b"".join(call.request.body) for call in rsps.calls]  # type: ignore[arg-type]
    assert bodies == [b"first second", b"first second"]


def test_a_streamed_answer_is_handed_back_unread_and_its_error_is_read(
    client: HttpClient, rsps: responses.RequestsMock
) -> None:
    rsps.get(URL, body=b"x" * 10)
    rsps.get(URL, status=403, json={"error": {"message": "ACL", "detail": "no"}})
    response = client.get(URL, stream=True)
    assert rsps.calls[0].request.req_kwargs["stream"] is True  # type: ignore[attr-defined]
    assert b"".join(response.iter_content(4)) == b"x" * 10
    with pytest.raises(PermanentRemoteError, match="the remote refused") as refused:
        client.get(URL, stream=True)
    assert refused.value.remote_message == "ACL: no"
