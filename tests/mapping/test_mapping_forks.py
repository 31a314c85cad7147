"""Forks and waits on a process read from the tools' own fields and links (the shipped
ServiceNow and Jira Service Management mappings, and the ``forks:`` format itself)."""

from __future__ import annotations

from typing import Any

import pytest
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError, MappingFileError
from usm_bridge.mapping import (
    MappingContext,
    apply_inbound,
    apply_outbound,
    load_mapping,
    loads_mapping,
)
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import ForkRole, ProcessLink, Status, UsmProcess, WaitingOn

CONTEXT = MappingContext(unit="it", instance="it-snow", transforms=TRANSFORMS)
INCIDENT = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
PROBLEM = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-problem.yaml")
JSM = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")
CHANGE_ID = "a" * 32
PROBLEM_ID = "b" * 32
INCIDENT_ID = "c" * 32


def _incident(**fields: Any) -> RawRecord:
    data = {
        "sys_id": INCIDENT_ID,
        "number": "INC0010001",
        "short_description": "Mail is down",
        "state": "2",
        "hold_reason": "",
        "impact": "2",
        "urgency": "2",
        "opened_at": "2026-01-05 08:00:00",
        "sys_updated_on": "2026-01-05 09:00:00",
        "rfc": "",
        "problem_id": "",
        **fields,
    }
    return RawRecord(remote_id=INCIDENT_ID, remote_key="INC0010001", data=data)


def _reference(table: str, sys_id: str) -> dict[str, str]:
    # How the Table API shows a reference field with links (sysparm_display_value=false).
    return {"link": f"https://x.service-now.com/api/now/table/{table}/{sys_id}", "value": sys_id}


# -- ServiceNow: rfc and problem_id ---------------------------------------------------------------


def test_incident_rfc_and_problem_id_are_forks_to_change_and_improve() -> None:
    record = _incident(
        rfc=_reference("change_request", CHANGE_ID), problem_id=_reference("problem", PROBLEM_ID)
    )
    call = apply_inbound(INCIDENT, record, CONTEXT)
    assert call.chain.forks == [
        ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.CHANGE, ref=CHANGE_ID,
                    via="incident.rfc"),
        ProcessLink(role=ForkRole.SECONDARY, process=UsmProcess.IMPROVE, ref=PROBLEM_ID,
                    via="incident.problem_id"),
    ]  # fmt: skip
    # Unresolved when mapped: the sync fills in the other call (usm_bridge.sync.forks).
    assert all(fork.call is None for fork in call.chain.forks)


def test_a_bare_sys_id_and_an_empty_reference_read_as_the_instance_sends_them() -> None:
    # sysparm_exclude_reference_link=true gives a bare sys_id; an empty reference is "".
    call = apply_inbound(INCIDENT, _incident(rfc=CHANGE_ID, problem_id=""), CONTEXT)
    assert [(fork.ref, fork.process) for fork in call.chain.forks] == [
        (CHANGE_ID, UsmProcess.CHANGE)
    ]
    assert apply_inbound(INCIDENT, _incident(), CONTEXT).chain.forks == []


def test_forks_are_never_written_back() -> None:
    call = apply_inbound(INCIDENT, _incident(rfc=CHANGE_ID), CONTEXT)
    draft = apply_outbound(INCIDENT, call, CONTEXT)
    assert "rfc" not in draft.fields and "problem_id" not in draft.fields


def test_problem_rfc_and_first_reported_by_task() -> None:
    record = RawRecord(
        remote_id=PROBLEM_ID,
        data={
            "short_description": "Mail server disk fills up",
            "state": "103",
            "opened_at": "2026-01-05 08:00:00",
            "sys_updated_on": "2026-01-05 09:00:00",
            "rfc": _reference("change_request", CHANGE_ID),
            "first_reported_by_task": _reference("task", INCIDENT_ID),
        },
    )
    call = apply_inbound(PROBLEM, record, CONTEXT)
    assert [(f.role, f.process, f.ref, f.via) for f in call.chain.forks] == [
        (ForkRole.SECONDARY, UsmProcess.CHANGE, CHANGE_ID, "problem.rfc"),
        (ForkRole.PRIMARY, None, INCIDENT_ID, "problem.first_reported_by_task"),
    ]


def test_a_reference_that_is_not_an_id_is_refused_naming_the_fork() -> None:
    with pytest.raises(MappingError, match=r"forks\[0\]: expected the other record's id"):
        apply_inbound(INCIDENT, _incident(rfc={"value": ["not", "an", "id"]}), CONTEXT)


# -- ServiceNow: On Hold reasons -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hold_reason", "waiting_on", "process"),
    [
        ("1", WaitingOn.CUSTOMER, None),  # Awaiting Caller
        ("4", WaitingOn.SUPPLIER, None),  # Awaiting Vendor
        ("5", WaitingOn.SECONDARY_PROCESS, UsmProcess.CHANGE),  # Awaiting Change: W3
        ("3", WaitingOn.SECONDARY_PROCESS, UsmProcess.IMPROVE),  # Awaiting Problem: no USM fork
    ],
)
def test_on_hold_reasons_say_whom_and_which_process(
    hold_reason: str, waiting_on: WaitingOn, process: UsmProcess | None
) -> None:
    call = apply_inbound(INCIDENT, _incident(state="3", hold_reason=hold_reason), CONTEXT)
    assert (call.status, call.waiting_on, call.waiting_process) == (
        Status.WAITING,
        waiting_on,
        process,
    )
    # Written back as the same reason: Awaiting Problem never becomes Awaiting Change.
    draft = apply_outbound(INCIDENT, call, CONTEXT)
    assert draft.status == "3"
    assert draft.fields["hold_reason"] == hold_reason


def test_waiting_process_is_read_only_while_the_call_waits_on_a_process() -> None:
    # A stale hold_reason on an incident in progress says nothing about a wait.
    call = apply_inbound(INCIDENT, _incident(state="2", hold_reason="3"), CONTEXT)
    assert (call.status, call.waiting_on, call.waiting_process) == (
        Status.IN_PROGRESS,
        None,
        None,
    )


# -- Jira: issue links by link type ---------------------------------------------------------------


def _link(link_id: str, name: str, side: str, key: str) -> dict[str, Any]:
    phrases = {
        "Problem/Incident": ("is caused by", "causes"),
        "Relates": ("relates to", "relates to"),
    }[name]
    return {
        "id": link_id,
        "type": {"id": "1", "name": name, "inward": phrases[0], "outward": phrases[1]},
        side: {"id": str(10000 + int(link_id)), "key": key, "fields": {"summary": "x"}},
    }


def _issue(links: Any) -> RawRecord:
    return RawRecord(
        remote_id="10001",
        remote_key="IT-1",
        data={
            "id": "10001",
            "key": "IT-1",
            "fields": {
                "summary": "VPN fails",
                "status": {"name": "In Progress"},
                "issuetype": {"name": "[System] Incident"},
                "created": "2026-01-05T08:00:00.000+0000",
                "updated": "2026-01-05T09:00:00.000+0000",
                "issuelinks": links,
            },
        },
    )


def test_jira_issue_links_are_forks_by_type_and_direction() -> None:
    links = [
        _link("1", "Problem/Incident", "inwardIssue", "IT-7"),  # IT-1 is caused by IT-7
        _link("2", "Problem/Incident", "outwardIssue", "IT-8"),  # IT-1 causes IT-8
        _link("3", "Relates", "outwardIssue", "IT-9"),  # not a fork
    ]
    call = apply_inbound(JSM, _issue(links), CONTEXT)
    assert [(f.role, f.process, f.ref, f.via) for f in call.chain.forks] == [
        (ForkRole.SECONDARY, UsmProcess.IMPROVE, "IT-7", "jira:is caused by"),
        (ForkRole.PRIMARY, UsmProcess.RECOVER, "IT-8", "jira:causes"),
    ]
    assert apply_inbound(JSM, _issue([]), CONTEXT).chain.forks == []


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ({"id": "1"}, r"forks\[0\]: path 'fields.issuelinks' holds .* not a list of links"),
        (["IT-7"], r"forks\[0\] link 0: 'IT-7' is not a link object"),
        (
            [{"type": {"name": "Problem/Incident"}, "inwardIssue": {"fields": {}}}],
            r"forks\[0\] link 0: the linked issue has neither key nor id",
        ),
    ],
)
def test_malformed_issue_links_are_refused_naming_where(links: Any, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        apply_inbound(JSM, _issue(links), CONTEXT)


# -- the format ------------------------------------------------------------------------------------

_BASE = "version: 1\ntool: memory\nfields:\n  title: {path: title}\n"


def test_the_forks_section_is_checked_like_every_other_section() -> None:
    with pytest.raises(MappingFileError, match="rol"):
        loads_mapping(_BASE + "forks:\n  - {path: fix, rol: secondary}\n")
    with pytest.raises(MappingFileError, match="direction"):
        loads_mapping(
            _BASE + "forks:\n  - {path: links, role: primary, "
            "link: {type: Blocks, direction: sideways}}\n"
        )
    with pytest.raises(MappingFileError, match="process"):
        loads_mapping(_BASE + "forks:\n  - {path: fix, role: secondary, process: repair}\n")


def test_a_fork_transform_must_be_installed() -> None:
    from usm_bridge.mapping import validate_transforms

    mapping = loads_mapping(
        _BASE + "forks:\n  - {path: fix, role: secondary, transform: no_such_transform}\n"
    )
    with pytest.raises(MappingFileError, match="unknown transform 'no_such_transform'"):
        validate_transforms(mapping, TRANSFORMS)
