"""The simulator behaves like the Table API (what the connector relies on is checked here)."""

from __future__ import annotations

import base64
import re
import socket
import struct
import time
from collections.abc import Iterator

import pytest
import requests

from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimFault


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as sim:
        yield sim


@pytest.fixture
def http(sim: ServiceNowSimulator) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = (sim.username, sim.password)
        yield session


def test_records_hold_strings_ids_times_and_reference_links(
    sim: ServiceNowSimulator, http: requests.Session
) -> None:
    sys_id = sim.insert("incident", {"short_description": "x", "impact": 1, "urgency": "1"})
    body = http.get(f"{sim.base_url}/api/now/table/incident/{sys_id}", timeout=5).json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["sys_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["sys_updated_on"])
    assert body["impact"] == "1" and body["priority"] == "1"  # recomputed from impact x urgency
    assert body["opened_by"]["value"] == sim.user_id and body["opened_by"]["link"].startswith(
        "http"
    )
    assert body["comments"] == "" and body["number"].startswith("INC")
    plain = http.get(
        f"{sim.base_url}/api/now/table/incident/{sys_id}",
        params={"sysparm_exclude_reference_link": "true", "sysparm_display_value": "all"},
        timeout=5,
    ).json()["result"]
    assert plain["priority"] == {"display_value": "1 - Critical", "value": "1"}


def test_paging_headers_and_v1_versus_v2(sim: ServiceNowSimulator, http: requests.Session) -> None:
    for n in range(5):
        sim.insert("incident", {"short_description": f"r{n}"})
    url = f"{sim.base_url}/api/now/v2/table/incident"
    page = http.get(url, params={"sysparm_limit": 2, "sysparm_offset": 2}, timeout=5)
    assert page.headers["X-Total-Count"] == "5"
    assert set(page.links) == {"first", "prev", "next", "last"}
    last = http.get(url, params={"sysparm_limit": 2, "sysparm_offset": 4}, timeout=5)
    assert "next" not in last.links
    empty = {"sysparm_query": "number=NOPE"}
    assert http.get(url, params=empty, timeout=5).json() == {"result": []}
    v1 = http.get(f"{sim.base_url}/api/now/v1/table/incident", params=empty, timeout=5)
    assert v1.status_code == 404 and v1.json()["error"]["message"] == "No Record found"


def test_unknown_query_parts_are_silently_ignored(sim: ServiceNowSimulator) -> None:
    for n in range(3):
        sim.insert("incident", {"short_description": f"r{n}"})
    assert len(sim.select("incident", "no_such_field=1")) == 3
    assert len(sim.select("incident", "short_description=r1^bogus_term")) == 1
    assert [
        r["short_description"] for r in sim.select("incident", "ORDERBYDESCshort_description")
    ] == [
        "r2",
        "r1",
        "r0",
    ]
    assert len(sim.select("incident", "short_description=r0^ORshort_description=r2")) == 2
    assert len(sim.select("incident", "short_description=r0^NQshort_description=r1")) == 2


def test_resolving_needs_close_code_and_journal_lands_in_sys_journal_field(
    sim: ServiceNowSimulator, http: requests.Session
) -> None:
    sys_id = sim.insert("incident", {"short_description": "x"})
    url = f"{sim.base_url}/api/now/table/incident/{sys_id}"
    refused = http.patch(url, json={"state": "6"}, timeout=5)
    assert refused.status_code == 403 and "mandatory" in refused.json()["error"]["detail"]
    done = http.patch(
        url,
        json={
            "state": "6",
            "close_code": "Solution provided",
            "close_notes": "ok",
            "work_notes": "fixed the cable",
        },
        timeout=5,
    ).json()["result"]
    assert done["state"] == "6" and done["resolved_at"] and done["work_notes"] == ""
    [entry] = sim.journal(sys_id)
    assert entry["element"] == "work_notes" and entry["value"] == "fixed the cable"


def test_auth_oauth_and_faults(sim: ServiceNowSimulator) -> None:
    url = f"{sim.base_url}/api/now/v2/table/incident"
    with requests.Session() as http:
        assert http.get(url, timeout=5).status_code == 401
        token = http.post(
            f"{sim.base_url}/oauth_token.do",
            data={
                "grant_type": "password",
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
                "username": sim.username,
                "password": sim.password,
            },
            timeout=5,
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get(url, headers=headers, timeout=5).status_code == 200
        sim.inject(SimFault("429", retry_after=3))
        sim.inject(SimFault("429-bare"))
        first = http.get(url, headers=headers, timeout=5)
        assert first.status_code == 429 and first.headers["Retry-After"] == "3"
        second = http.get(url, headers=headers, timeout=5)
        assert second.status_code == 429 and "Retry-After" not in second.headers
        sim.inject(SimFault("drop"))
        with pytest.raises(requests.ConnectionError):
            http.get(url, headers=headers, timeout=5)


def test_discover_reads_choice_lists() -> None:
    from usm_bridge_servicenow.testing import IncidentHarness

    harness = IncidentHarness()
    try:
        connector = harness.make_connector()
        try:
            vocabulary = connector.discover()
        finally:
            connector.close()
    finally:
        harness.close()
    assert [v.value for v in vocabulary.statuses] == ["1", "2", "3", "6", "7", "8"]
    assert [v.value for v in vocabulary.priorities] == ["1", "2", "3", "4", "5"]
    assert {v.value for v in vocabulary.other["hold_reason"]} == {"1", "3", "4", "5"}
    assert "Solution provided" in {v.value for v in vocabulary.other["close_code"]}
    assert {"impact", "urgency"} <= set(vocabulary.other)


def test_a_client_gone_mid_request_leaves_no_traceback(
    sim: ServiceNowSimulator,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="usm_bridge_servicenow.simulator.server")
    sim.inject(SimFault("slow", delay=0.3))
    with socket.create_connection((sim.host, sim.port)) as client:
        client.sendall(b"GET /api/now/v2/table/incident HTTP/1.1\r\nHost: sim\r\n\r\n")
        time.sleep(0.1)  # the request is read; the answer is on its way
        # Killed: the connection ends with a reset, and the simulator's answer hits it.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 5
    while not any("went away" in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, "the simulator never got to it"
        time.sleep(0.02)
    assert "Traceback" not in capfd.readouterr().err


def test_half_a_request_is_never_acted_on(sim: ServiceNowSimulator) -> None:
    # A client killed between the headers and the body (urllib3 writes them separately): a
    # real instance waits for the rest and never creates an empty record, nor may the simulator.
    before = len(sim.tables["sc_req_item"].records)
    token = f"{sim.username}:{sim.password}".encode()
    head = (
        "POST /api/now/table/sc_req_item HTTP/1.1\r\nHost: sim\r\n"
        f"Authorization: Basic {base64.b64encode(token).decode()}\r\n"
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    )
    with socket.create_connection((sim.host, sim.port)) as client:
        client.sendall(head.encode())
        client.shutdown(socket.SHUT_WR)  # the body never comes
        assert client.recv(1024) == b""  # closed without an answer
    assert len(sim.tables["sc_req_item"].records) == before
