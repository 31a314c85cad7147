"""Confirmation in ServiceNow: the caller's own close against the instance's auto-close job.

Driven as people and the instance drive a real one: ServiceNow's own Python client (pysnc)
signed in as the agent who resolves and as the caller who closes; the auto-close job runs on
the simulator's clock, moved on instead of slept. Each record is then read as the Table API
gives it and mapped through the shipped ``servicenow-incident.yaml``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from pysnc import ServiceNowClient
from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, ConfirmationKind, Status

from usm_bridge_servicenow.simulator import ServiceNowSimulator, SimClock
from usm_bridge_servicenow.simulator.__main__ import build
from usm_bridge_servicenow.transforms import TRANSFORMS as SERVICENOW

FROZEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
CALLER, CALLER_PASSWORD = "abel.tuter", "abel-secret-1"
AGENT, AGENT_PASSWORD = "beth.anglin", "beth-secret-1"
MAPPING = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
CONTEXT = MappingContext(unit="it", instance="it-snow", transforms={**CORE, **SERVICENOW})


@pytest.fixture
def sim(tls_context: ssl.SSLContext) -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator(ssl_context=tls_context, clock=SimClock(frozen_at=FROZEN)) as s:
        s.add_user(CALLER, "Abel Tuter", CALLER_PASSWORD)
        s.add_user(AGENT, "Beth Anglin", AGENT_PASSWORD)
        yield s


def _user_id(sim: ServiceNowSimulator, user_name: str) -> str:
    client = ServiceNowClient(sim.base_url, (sim.username, sim.password))
    user = client.GlideRecord("sys_user")
    user.add_query("user_name", user_name)
    user.query()
    assert user.next()
    return str(user.get_value("sys_id"))


def _resolved_incident(sim: ServiceNowSimulator) -> str:
    """An incident the caller raised and the agent resolved; its sys_id."""
    caller = ServiceNowClient(sim.base_url, (CALLER, CALLER_PASSWORD))
    record = caller.GlideRecord("incident")
    record.initialize()
    record.short_description = "VPN drops every ten minutes"
    record.caller_id = _user_id(sim, CALLER)
    sys_id = str(record.insert())
    agent = ServiceNowClient(sim.base_url, (AGENT, AGENT_PASSWORD))
    work = agent.GlideRecord("incident")
    assert work.get(sys_id)
    work.state = "6"
    work.close_code = "Solution provided"
    work.close_notes = "VPN client updated"
    work.update()
    return sys_id


def _read(sim: ServiceNowSimulator, sys_id: str) -> dict[str, Any]:
    """The record as the connector asks for it (codes, no reference links)."""
    answer = requests.get(
        f"{sim.base_url}/api/now/table/incident/{sys_id}",
        params={"sysparm_display_value": "false", "sysparm_exclude_reference_link": "true"},
        auth=(sim.username, sim.password),
        headers={"Accept": "application/json"},
        timeout=5,
    )
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()["result"]
    return result


def _mapped(record: dict[str, Any]) -> Call:
    return apply_inbound(MAPPING, RawRecord(remote_id=record["sys_id"], data=record), CONTEXT)


def test_the_caller_closing_a_resolved_incident_is_an_explicit_confirmation(
    sim: ServiceNowSimulator,
) -> None:
    sys_id = _resolved_incident(sim)
    sim.clock.advance(3600)
    caller = ServiceNowClient(sim.base_url, (CALLER, CALLER_PASSWORD))
    mine = caller.GlideRecord("incident")
    assert mine.get(sys_id)
    mine.state = "7"
    mine.update()

    record = _read(sim, sys_id)
    caller_id = _user_id(sim, CALLER)
    assert (record["state"], record["closed_by"], record["sys_updated_by"]) == (
        "7",
        caller_id,
        CALLER,
    )
    call = _mapped(record)
    assert call.status is Status.CLOSED
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    assert call.confirmation.by is not None and call.confirmation.by.ref == caller_id
    assert call.confirmation.at == FROZEN + timedelta(hours=1)
    assert call.confirmation.how is not None
    assert call.confirmation.how.startswith("the caller closed the resolved incident")


def test_an_agent_closing_it_is_no_confirmation(sim: ServiceNowSimulator) -> None:
    sys_id = _resolved_incident(sim)
    agent = ServiceNowClient(sim.base_url, (AGENT, AGENT_PASSWORD))
    work = agent.GlideRecord("incident")
    assert work.get(sys_id)
    work.state = "7"
    work.update()
    call = _mapped(_read(sim, sys_id))
    assert call.status is Status.CLOSED and call.confirmation is None


def test_the_auto_close_job_closes_after_n_days_as_the_system_user(
    sim: ServiceNowSimulator,
) -> None:
    sim.autoclose.days = 3
    waiting = _resolved_incident(sim)
    touched = _resolved_incident(sim)
    agent = ServiceNowClient(sim.base_url, (AGENT, AGENT_PASSWORD))

    sim.clock.advance(timedelta(days=2).total_seconds())
    # An update resets the count (KB0552820): this one waits three days from now.
    note = agent.GlideRecord("incident")
    assert note.get(touched)
    note.work_notes = "Asked the caller to keep an eye on it"
    note.update()
    sim.clock.advance(timedelta(days=1, seconds=1).total_seconds())

    # Whoever asks next finds the job has run (no sleep: the simulator's clock moved).
    seen = agent.GlideRecord("incident")
    seen.add_query("sys_id", "IN", f"{waiting},{touched}")
    seen.query()
    states = {str(r.get_value("sys_id")): str(r.get_value("state")) for r in seen}
    assert states == {waiting: "7", touched: "6"}

    closed = _read(sim, waiting)
    assert closed["sys_updated_by"] == "system"
    assert closed["closed_by"] == closed["resolved_by"] == _user_id(sim, AGENT)
    journal = ServiceNowClient(sim.base_url, (sim.username, sim.password)).GlideRecord(
        "sys_journal_field"
    )
    journal.add_query("element_id", waiting)
    journal.add_query("element", "comments")
    journal.query()
    assert [str(e.get_value("value")) for e in journal] == [
        "Incident automatically closed after 3 days in the Resolved state."
    ]
    call = _mapped(closed)
    assert call.status is Status.CLOSED
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.IMPLICIT
    assert call.confirmation.by is None  # nobody confirmed
    assert call.confirmation.at == FROZEN + timedelta(days=3, seconds=1)
    # The incident still resolved maps to no confirmation at all.
    assert _mapped(_read(sim, touched)).confirmation is None


def test_auto_close_is_off_unless_asked_for(sim: ServiceNowSimulator) -> None:
    sys_id = _resolved_incident(sim)
    sim.clock.advance(timedelta(days=400).total_seconds())
    assert sim.autoclose.run(sim) == []
    assert _read(sim, sys_id)["state"] == "6"


def test_the_command_line_sets_the_auto_close_period() -> None:
    sim, _ = build(["--autoclose-days", "5"])
    assert sim.autoclose.days == 5
    assert build([])[0].autoclose.days is None
