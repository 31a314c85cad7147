"""The simulator holds an incident's rfc and problem_id, and a problem's rfc and
first_reported_by_task, as an instance does (reference fields: a sys_id, its record's number
as display value); the shipped mappings read them as forks with or without reference links."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from usm_bridge.connector import RawRecord
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import ForkRole, UsmProcess

from usm_bridge_servicenow.simulator import ServiceNowSimulator
from usm_bridge_servicenow.transforms import TRANSFORMS as SERVICENOW

CONTEXT = MappingContext(unit="it", instance="it-snow", transforms={**CORE, **SERVICENOW})


@pytest.fixture
def sim() -> Iterator[ServiceNowSimulator]:
    with ServiceNowSimulator() as sim:
        yield sim


def _get(sim: ServiceNowSimulator, table: str, sys_id: str, **params: str) -> dict[str, Any]:
    reply = requests.get(f"{sim.base_url}/api/now/table/{table}/{sys_id}", params=params,
                         auth=(sim.username, sim.password), timeout=5)  # fmt: skip
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()["result"]
    return result


def _number(sim: ServiceNowSimulator, table: str, sys_id: str) -> str:
    return str(_get(sim, table, sys_id)["number"])


def test_incident_references_are_served_and_read_as_forks(sim: ServiceNowSimulator) -> None:
    change = sim.insert("change_request", {"short_description": "Swap the mail gateway"})
    problem = sim.insert("problem", {"short_description": "Gateway disk fills up"})
    incident = sim.insert("incident", {"short_description": "Mail is down", "rfc": change,
                                       "problem_id": problem})  # fmt: skip
    linked = _get(sim, "incident", incident)
    assert linked["rfc"] == {"link": f"{sim.base_url}/api/now/table/change_request/{change}",
                             "value": change}  # fmt: skip
    assert linked["problem_id"]["value"] == problem
    shown = _get(sim, "incident", incident, sysparm_display_value="all")
    assert shown["rfc"]["display_value"] == _number(sim, "change_request", change)
    assert shown["problem_id"]["display_value"] == _number(sim, "problem", problem)
    bare = _get(sim, "incident", incident, sysparm_exclude_reference_link="true")
    assert bare["rfc"] == change
    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
    # The shipped mapping reads display_value=false records, with or without reference links.
    for data in (linked, bare):
        call = apply_inbound(mapping, RawRecord(remote_id=incident, data=data), CONTEXT)
        assert [(f.role, f.process, f.ref, f.via) for f in call.chain.forks] == [
            (ForkRole.SECONDARY, UsmProcess.CHANGE, change, "incident.rfc"),
            (ForkRole.SECONDARY, UsmProcess.IMPROVE, problem, "incident.problem_id"),
        ]


def test_a_problem_holds_its_change_and_the_task_that_reported_it(
    sim: ServiceNowSimulator,
) -> None:
    change = sim.insert("change_request", {"short_description": "Bigger disks"})
    incident = sim.insert("incident", {"short_description": "Mail is down"})
    problem = sim.insert("problem", {"short_description": "Gateway disk fills up", "rfc": change,
                                     "first_reported_by_task": incident})  # fmt: skip
    data = _get(sim, "problem", problem, sysparm_exclude_reference_link="true")
    assert (data["rfc"], data["first_reported_by_task"]) == (change, incident)
    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-problem.yaml")
    call = apply_inbound(mapping, RawRecord(remote_id=problem, data=data), CONTEXT)
    assert [(f.role, f.process, f.ref) for f in call.chain.forks] == [
        (ForkRole.SECONDARY, UsmProcess.CHANGE, change),
        (ForkRole.PRIMARY, None, incident),
    ]
