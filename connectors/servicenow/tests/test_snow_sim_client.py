"""The simulator as clients that did not come from this project see it.

ServiceNow's own Python client (pysnc) through its ordinary calls, and raw ``requests`` calls
for what pysnc never varies: header names in any case (RFC 9110), ``X-no-response-body``,
``Accept``, rate limiting per user, integer fields given a word, the empty result.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from pysnc import ServiceNowClient
from usm_bridge.connector import Checkpoint, RawRecord

from usm_bridge_servicenow.connector import ServiceNowConnector, ServiceNowSettings
from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimClock
from usm_bridge_servicenow.simulator.ratelimit import RateLimitRule

PERSON, PERSON_PASSWORD = "beth.anglin", "beth-secret-1"
FROZEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)  # on a minute: windows start here


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    """A plain-HTTP instance with a frozen clock and one person besides the integration user."""
    with ServiceNowSimulator(clock=SimClock(frozen_at=FROZEN)) as simulator:
        simulator.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
        yield simulator


@pytest.fixture
def tls_sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(ssl_context=tls_context) as simulator:
        simulator.add_user(PERSON, "Beth Anglin", PERSON_PASSWORD)
        yield simulator


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _url(sim: ServiceNowSimulator, path: str) -> str:
    return f"{sim.base_url}/api/now/table/{path}"


# -- 1. header names in any case -------------------------------------------------------------


def test_header_names_are_read_in_any_case(sim: ServiceNowSimulator) -> None:
    good = _basic(sim.username, sim.password)
    headers = {
        "authorization": good,
        "ACCEPT": "application/json",
        "content-TYPE": "Application/JSON",
    }
    created = requests.post(
        _url(sim, "incident"), json={"short_description": "lower"}, headers=headers, timeout=5
    )
    assert created.status_code == 201
    sys_id = created.json()["result"]["sys_id"]
    read = requests.get(_url(sim, f"incident/{sys_id}"), headers={"aUtHoRiZaTiOn": good}, timeout=5)
    assert read.status_code == 200
    assert read.json()["result"]["short_description"] == "lower"
    # The header is really read: a wrong password in a lower-case header is refused.
    wrong = requests.get(
        _url(sim, f"incident/{sys_id}"),
        headers={"authorization": _basic(sim.username, "not-it")},
        timeout=5,
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "User Not Authenticated"


def test_x_no_response_body_in_any_case_suppresses_the_record(sim: ServiceNowSimulator) -> None:
    auth = (sim.username, sim.password)
    created = requests.post(
        _url(sim, "incident"),
        json={"short_description": "quiet"},
        headers={"x-no-response-body": "true"},
        auth=auth,
        timeout=5,
    )
    assert created.status_code == 201
    assert created.content == b""
    (sys_id,) = [
        i for i in sim.ids("incident") if sim.get("incident", i)["short_description"] == "quiet"
    ]  # type: ignore[index]
    patched = requests.patch(
        _url(sim, f"incident/{sys_id}"),
        json={"description": "changed quietly"},
        headers={"X-No-Response-Body": "TRUE"},
        auth=auth,
        timeout=5,
    )
    assert patched.status_code == 200
    assert patched.content == b""
    assert sim.get("incident", sys_id)["description"] == "changed quietly"  # type: ignore[index]
    # Without the header (or with false) the record comes back.
    loud = requests.patch(
        _url(sim, f"incident/{sys_id}"),
        json={"description": "loud"},
        headers={"x-no-response-body": "false"},
        auth=auth,
        timeout=5,
    )
    assert loud.json()["result"]["description"] == "loud"


def test_media_types_are_checked_whatever_the_header_case(sim: ServiceNowSimulator) -> None:
    auth = (sim.username, sim.password)
    not_json = requests.post(
        _url(sim, "incident"),
        data=b"short_description=x",
        headers={"content-type": "text/plain"},
        auth=auth,
        timeout=5,
    )
    assert not_json.status_code == 415
    for accept in ("text/html", "application/json;q=0, text/html"):
        refused = requests.get(
            _url(sim, "incident"), headers={"accept": accept}, auth=auth, timeout=5
        )
        assert refused.status_code == 406, accept
    for accept in ("*/*", "text/html, application/*;q=0.5", "APPLICATION/JSON"):
        served = requests.get(
            _url(sim, "incident"), headers={"aCCept": accept}, auth=auth, timeout=5
        )
        assert served.status_code == 200, accept
    assert sim.ids("incident") == []  # the refused POST wrote nothing


# -- 2. who wrote what -------------------------------------------------------------------------


def test_records_and_journal_entries_carry_the_user_who_signed_in(
    tls_sim: ServiceNowSimulator,
) -> None:
    sim = tls_sim
    person = ServiceNowClient(sim.base_url, (PERSON, PERSON_PASSWORD))
    bridge = ServiceNowClient(sim.base_url, (sim.username, sim.password))
    record = person.GlideRecord("incident")
    record.initialize()
    record.short_description = "Badge does not open the door"
    record.comments = "Tried twice at the main entrance"
    sys_id = record.insert()
    assert sys_id is not None

    mine = bridge.GlideRecord("incident")
    assert mine.get(str(sys_id))
    mine.work_notes = "Checked the badge reader log"
    mine.update()

    check = bridge.GlideRecord("incident")
    assert check.get(str(sys_id))
    assert check.get_value("sys_created_by") == PERSON
    assert check.get_value("sys_updated_by") == sim.username
    (beth,) = [
        r["sys_id"]
        for r in [sim.get("sys_user", i) or {} for i in sim.ids("sys_user")]
        if r.get("user_name") == PERSON
    ]
    assert check.get_value("opened_by") == beth

    entries = bridge.GlideRecord("sys_journal_field")
    entries.add_query("element_id", str(sys_id))
    entries.order_by("sys_created_on")
    entries.query()
    authors = sorted(
        (entry.get_value("element"), entry.get_value("sys_created_by"), entry.get_value("value"))
        for entry in entries
    )
    assert authors == [
        ("comments", PERSON, "Tried twice at the main entrance"),
        ("work_notes", sim.username, "Checked the badge reader log"),
    ]
