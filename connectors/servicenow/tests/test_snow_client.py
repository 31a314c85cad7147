"""Client edge cases against mocked responses: what a real instance may answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from usm_bridge.connector import CommentDraft, RawRecord, RemoteDraft
from usm_bridge.errors import PermanentRemoteError, RetriableRemoteError
from usm_bridge.testing import FakeClock

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings

BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/v2/table/incident"
JOURNAL = f"{BASE}/api/now/v2/table/sys_journal_field"
PASSWORD = "s3cret-Passw0rd"
SYS_ID = "a" * 32


def record(n: int, updated: str = "2024-05-01 09:30:00", **extra: Any) -> dict[str, Any]:
    return {
        "sys_id": f"{n:032x}",
        "number": f"INC{n:07d}",
        "sys_updated_on": updated,
        "sys_mod_count": "0",
        "short_description": f"rec {n}",
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def make(session: requests.Session, clock: FakeClock, **settings: Any) -> ServiceNowConnector:
    values = {
        "instance_url": BASE,
        "username": "integration",
        "password": PASSWORD,
        "page_size": 2,
        "max_attempts": 4,
        "backoff_initial": 0.5,
        # These pages mock the Table API alone; the Attachment API's part of a read is tested
        # against the simulator (test_snow_connector_files.py).
        "follow_attachments": False,
        "read_attachments": False,
        **settings,
    }
    return ServiceNowConnector(
        "sn",
        ServiceNowSettings.model_validate(values),
        session=session,
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )


@pytest.fixture
def connector(session: requests.Session, clock: FakeClock) -> Iterator[ServiceNowConnector]:
    connector = make(session, clock, read_journal=False)
    yield connector
    connector.close()


def records_of(connector: ServiceNowConnector, cursor: str | None = None) -> list[RawRecord]:
    return [i for i in connector.read_changes(cursor) if isinstance(i, RawRecord)]


@responses.activate
def test_values_are_normalised(connector: ServiceNowConnector) -> None:
    row = record(
        1,
        caller_id={"link": f"{BASE}/api/now/table/sys_user/{'b' * 32}", "value": "b" * 32},
        impact={"display_value": "2 - Medium", "value": "2"},
        reassignment_count=3,
        active=True,
        comments="",
    )
    responses.get(TABLE, json={"result": [row]}, headers={"X-Total-Count": "1"})
    [got] = records_of(connector)
    assert got.data["caller_id"] == "b" * 32
    assert got.data["impact"] == "2"
    assert got.data["reassignment_count"] == "3" and got.data["active"] == "true"
    assert "comments" not in got.data and got.data["journal"] == []
    assert got.remote_key == "INC0000001" and got.updated is not None


@responses.activate
def test_link_header_decides_the_end_not_a_short_page(connector: ServiceNowConnector) -> None:
    # The instance caps the page at one record although two were asked, and says so in Link.
    responses.get(
        TABLE,
        json={"result": [record(1)]},
        headers={"Link": f'<{TABLE}?sysparm_offset=1>;rel="next"', "X-Total-Count": "3"},
    )
    responses.get(
        TABLE,
        json={"result": [record(2, "2024-05-01 09:30:01"), record(3, "2024-05-01 09:30:02")]},
        headers={"Link": f'<{TABLE}?sysparm_offset=0>;rel="first"'},
    )
    assert [r.remote_key for r in records_of(connector)] == [
        "INC0000001",
        "INC0000002",
        "INC0000003",
    ]


@responses.activate
def test_announced_page_that_comes_empty_is_an_error(connector: ServiceNowConnector) -> None:
    responses.get(TABLE, json={"result": []}, headers={"Link": f'<{TABLE}?x=1>;rel="next"'})
    with pytest.raises(RetriableRemoteError):
        records_of(connector)


@responses.activate
def test_v1_404_on_an_empty_match_is_an_empty_result(
    session: requests.Session, clock: FakeClock
) -> None:
    responses.get(
        f"{BASE}/api/now/v1/table/incident",
        status=404,
        json={"error": {"message": "No Record found", "detail": "Records not found"}},
    )
    connector = make(session, clock, api_version="v1", read_journal=False)
    assert records_of(connector) == []


@responses.activate
def test_429_with_and_without_retry_after(connector: ServiceNowConnector, clock: FakeClock) -> None:
    responses.get(
        TABLE,
        status=429,
        json={"error": {"message": "Rate limit exceeded"}},
        headers={"Retry-After": "7"},
    )
    responses.get(TABLE, status=429, body="Rate limit exceeded")
    responses.get(TABLE, json={"result": [record(1)]}, headers={"X-Total-Count": "1"})
    assert len(records_of(connector)) == 1
    assert clock.sleeps[0] == 7
    assert 0.25 <= clock.sleeps[1] <= 1.0  # backoff of its own when none was given


@responses.activate
def test_error_message_surfaces_without_secrets(connector: ServiceNowConnector) -> None:
    responses.get(
        f"{TABLE}/{SYS_ID}",
        status=403,
        json={
            "error": {"message": "Operation Failed", "detail": f"ACL denied for {PASSWORD}"},
            "status": "failure",
        },
    )
    with pytest.raises(PermanentRemoteError) as caught:
        connector.update(SYS_ID, RemoteDraft(fields={"short_description": "x"}))
    assert "Operation Failed" in (caught.value.remote_message or "")
    assert PASSWORD not in str(caught.value)


@responses.activate
def test_patch_sends_only_what_changed(connector: ServiceNowConnector) -> None:
    current = {
        "sys_id": SYS_ID,
        "short_description": "same",
        "impact": "2",
        "state": "2",
        "close_code": "",
        "close_notes": "",
    }
    responses.get(f"{TABLE}/{SYS_ID}", json={"result": current})
    patch = responses.patch(f"{TABLE}/{SYS_ID}", json={"result": {"sys_id": SYS_ID}})
    draft = RemoteDraft(
        fields={"short_description": "same", "impact": "1"},
        status="6",
        status_fields={"close_code": "Solution provided", "close_notes": "done"},
    )
    connector.update(SYS_ID, draft)
    assert json.loads(patch.calls[0].request.body) == {
        "impact": "1",
        "state": "6",
        "close_code": "Solution provided",
        "close_notes": "done",
    }


@responses.activate
def test_no_patch_when_nothing_changed_and_no_status_fields_without_a_move(
    connector: ServiceNowConnector,
) -> None:
    current = {"sys_id": SYS_ID, "short_description": "same", "state": "6", "close_code": ""}
    responses.get(f"{TABLE}/{SYS_ID}", json={"result": current})
    patch = responses.patch(f"{TABLE}/{SYS_ID}", json={"result": {}})
    connector.update(
        SYS_ID,
        RemoteDraft(
            fields={"short_description": "same"},
            status="6",
            status_fields={"close_code": "Solution provided"},
        ),
    )
    assert patch.call_count == 0


@responses.activate
def test_lost_create_response_is_found_not_repeated(connector: ServiceNowConnector) -> None:
    lookups = iter([[], [{"sys_id": SYS_ID, "number": "INC1", "correlation_id": "c-1"}]])
    responses.add_callback(
        responses.GET,
        TABLE,
        callback=lambda _: (200, {}, json.dumps({"result": next(lookups)})),
    )
    post = responses.post(TABLE, status=502, body="Bad gateway")
    ref = connector.create(RemoteDraft(fields={"short_description": "x"}), "c-1")
    assert ref.remote_id == SYS_ID and post.call_count == 1
    body = json.loads(post.calls[0].request.body)
    assert body["correlation_id"] == "c-1" and body["correlation_display"] == "usm-bridge"


@responses.activate
def test_comment_and_work_note(connector: ServiceNowConnector) -> None:
    patch = responses.patch(f"{TABLE}/{SYS_ID}", json={"result": {"sys_id": SYS_ID}})
    mine = {"element": "work_notes", "sys_created_by": "integration"}
    earlier = {"sys_id": "d" * 32, "value": "hello", **mine}
    written = {"sys_id": "e" * 32, "value": "hello", **mine}
    # Listed although the query asked for the integration user's only (an instance ignores a
    # condition it cannot apply): a person's entry is never taken for the bridge's.
    persons = {"sys_id": "f" * 32, "value": "hello", "element": "work_notes",
               "sys_created_by": "beth.anglin"}  # fmt: skip
    # The integration user's entries before the write, then after it: the new one is the
    # bridge's, although an earlier entry holds the same words.
    before = responses.get(JOURNAL, json={"result": [earlier]})
    responses.get(JOURNAL, json={"result": [persons, written, earlier]})
    entry = connector.add_comment(SYS_ID, CommentDraft(body="hello", public=False))
    assert entry == "e" * 32
    assert json.loads(patch.calls[0].request.body) == {"work_notes": "hello"}
    query = parse_qs(urlsplit(before.calls[0].request.url).query)["sysparm_query"][0]
    assert "sys_created_by=" in query and "element_id=" + SYS_ID in query


@responses.activate
def test_oauth_password_grant_then_refresh_before_expiry(
    session: requests.Session, clock: FakeClock
) -> None:
    grants: list[dict[str, list[str]]] = []

    def token(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        from urllib.parse import parse_qs

        form = parse_qs(str(request.body))
        grants.append(form)
        n = len(grants)
        body = {
            "access_token": f"access-{n}-xxxxxxxx",
            "refresh_token": f"refresh-{n}",
            "expires_in": 300,
        }
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.POST, f"{BASE}/oauth_token.do", callback=token)
    seen: list[str] = []

    def table(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        seen.append(str(request.headers["Authorization"]))
        return 200, {"X-Total-Count": "0"}, json.dumps({"result": []})

    responses.add_callback(responses.GET, TABLE, callback=table)
    connector = make(
        session,
        clock,
        auth="oauth",
        client_id="cid",
        client_secret="client-secret-value",
        read_journal=False,
        token_margin=60,
    )
    records_of(connector)
    records_of(connector)
    clock.advance(250)  # within the margin of expiry: renewed before use
    records_of(connector)
    assert [g["grant_type"][0] for g in grants] == ["password", "refresh_token"]
    assert grants[1]["refresh_token"] == ["refresh-1"]
    assert seen == ["Bearer access-1-xxxxxxxx"] * 2 + ["Bearer access-2-xxxxxxxx"]
    assert "client-secret-value" not in repr(connector.http)


@responses.activate
def test_oauth_refused_password_is_a_permanent_error_without_secrets(
    session: requests.Session, clock: FakeClock
) -> None:
    responses.post(
        f"{BASE}/oauth_token.do",
        status=401,
        json={"error": "server_error", "error_description": "access_denied"},
    )
    connector = make(session, clock, auth="oauth", client_id="cid", client_secret="topsecret99")
    result = connector.check()
    assert not result.ok
    assert PASSWORD not in result.detail and "topsecret99" not in result.detail


def test_settings_refuse_bad_tables_and_incomplete_oauth() -> None:
    base = {"instance_url": BASE, "username": "u", "password": "p"}
    with pytest.raises(ValueError):
        ServiceNowSettings.model_validate({**base, "tables": ["incident^NQ"]})
    with pytest.raises(ValueError):
        ServiceNowSettings.model_validate({**base, "auth": "oauth"})
    with pytest.raises(ValueError):
        ServiceNowSettings.model_validate({**base, "create_table": "problem"})
