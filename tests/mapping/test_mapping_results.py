"""What the mapping engine gives, value for value: the shipped Jira and ServiceNow mappings'
whole canonical call and read draft for a record each, and each kind of field reader's value
and error on small records.

The compiled readers (:mod:`usm_bridge.mapping.field_readers`) take shortcuts by what a field
uses; every call and message here was produced by the interpreting engine before them, so a
shortcut that reads a value differently, or words an error differently, fails here. A changed
mapping result would change the content hashes of stored calls (every call pushed again).
"""

from __future__ import annotations

from typing import Any

import pytest
from shipped_transforms import CORE, TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.mapping import (
    MappingContext,
    apply_inbound,
    apply_outbound,
    load_mapping,
    loads_mapping,
)
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR

ADF = {
    "type": "doc",
    "version": 1,
    "content": [{"type": "paragraph", "content": [{"type": "text", "text": "VPN drops"}]}],
}
JIRA_ISSUE = {
    "id": "10001",
    "key": "IT-7",
    "fields": {
        "summary": "VPN unstable",
        "description": ADF,
        "status": {"name": "Resolved", "statusCategory": {"key": "done"}},
        "resolution": {"name": "Won't Do"},
        "issuetype": {"name": "[System] Incident"},
        "project": {"key": "IT"},
        "priority": {"name": "High"},
        "impact": {"value": "Significant / Large"},
        "urgency": {"value": "Critical"},
        "reporter": {"accountId": "5b10", "displayName": "Ann", "emailAddress": "ann@x.org"},
        "assignee": None,
        "created": "2021-01-17T12:34:00.000+0000",
        "updated": "2021-01-17T13:00:00.5-0130",
        "resolutiondate": "2021-01-17T13:00:00.123456+0100",
        "labels": ["vpn", "remote"],
        "issuelinks": [
            {
                "type": {"name": "Problem/Incident", "inward": "is caused by"},
                "inwardIssue": {"key": "IT-3"},
            }
        ],
        "comment": {
            "comments": [
                {
                    "id": "100",
                    "author": {"accountId": "5b11", "displayName": "Bob"},
                    "body": ADF,
                    "created": "2021-01-17T12:40:00.000+0000",
                    "jsdPublic": False,
                },
                {
                    "id": 101,
                    "author": {"emailAddress": "cy@x.org"},
                    "body": None,
                    "created": "2021-01-17T12:41:00.000+0000",
                },
            ]
        },
    },
}
SERVICENOW_INCIDENT = {
    "number": "INC0010042",
    "sys_id": "a1b2c3",
    "short_description": "E-mail drops out",
    "description": "Since 9:00",
    "state": "3",
    "hold_reason": "4",
    "impact": "1",
    "urgency": "2",
    "priority": "2",
    "caller_id": "",
    "assigned_to": "",
    "opened_at": "2016-01-22 14:28:24",
    "sys_updated_on": "2016-01-22 15:00:00",
    "resolved_at": "",
    "closed_at": "",
    "category": "network",
    "rfc": "CHG0001",
    "problem_id": "",
    "close_code": "",
    "journal": [
        {
            "element": "comments",
            "value": "Any news?",
            "sys_created_on": "2016-01-22 14:50:00",
            "sys_created_by": "ann",
        },
        {
            "element": "work_notes",
            "value": "Checking",
            "sys_created_on": "2016-01-22 14:55:00",
            "sys_created_by": "bob",
        },
    ],
}
JIRA_CALL = {
    "unit": "it",
    "source": {"instance": "it-tool", "remote_id": "r1", "remote_key": "K-1", "url": None},
    "call_type": "incident",
    "status": "cancelled",
    "waiting_on": None,
    "waiting_process": None,
    "title": "VPN unstable",
    "description": "VPN drops",
    "requester": {"name": "Ann", "email": "ann@x.org", "ref": "5b10"},
    "customer": None,
    "customer_unit": None,
    "assignee": None,
    "service": None,
    "agreement": None,
    "impact": "medium",
    "urgency": "high",
    "priority": "high",
    "created": "2021-01-17T12:34:00Z",
    "updated": "2021-01-17T13:00:00.500000-01:30",
    "fulfilled": "2021-01-17T13:00:00.123456+01:00",
    "confirmed": None,
    "closed": None,
    "confirmation": None,
    "comments": [
        {
            "id": "cmt_fe15764a6f9ff288bd78819cb0a01343",
            "author": {"name": "Bob", "email": None, "ref": "5b11"},
            "body": "VPN drops",
            "created": "2021-01-17T12:40:00Z",
            "public": False,
            "origin": "it-tool",
            "remote_id": "100",
        },
        {
            "id": "cmt_bfc270b4e1e2c5645bb0b3b3d059dd12",
            "author": {"name": None, "email": "cy@x.org", "ref": None},
            "body": "",
            "created": "2021-01-17T12:41:00Z",
            "public": True,
            "origin": "it-tool",
            "remote_id": "101",
        },
    ],
    "chain": {
        "upstream": None,
        "suppliers": [],
        "forks": [
            {
                "role": "secondary",
                "process": "improve",
                "ref": "IT-3",
                "instance": None,
                "call": None,
                "via": "jira:is caused by",
            }
        ],
    },
    "attributes": {
        "jira": {
            "labels": ["vpn", "remote"],
            "project": "IT",
            "issue_type": "[System] Incident",
            "status_category": "done",
            "resolution": "Won't Do",
        }
    },
    "process": "recover",
}
JIRA_DRAFT = {
    "fields": {
        "fields": {
            "summary": "VPN unstable",
            "description": ADF,
            "impact": {"value": "Significant / Large"},
            "urgency": {"value": "High"},
            "priority": {"name": "High"},
            "labels": ["vpn", "remote"],
            "issuetype": {"name": "[System] Incident"},
        }
    },
    "status": "Canceled",
    "status_fields": {"resolution": "Won't Do"},
}
SERVICENOW_CALL = {
    "unit": "it",
    "source": {"instance": "it-tool", "remote_id": "r1", "remote_key": "K-1", "url": None},
    "call_type": "incident",
    "status": "waiting",
    "waiting_on": "supplier",
    "waiting_process": None,
    "title": "E-mail drops out",
    "description": "Since 9:00",
    "requester": None,
    "customer": None,
    "customer_unit": None,
    "assignee": None,
    "service": None,
    "agreement": None,
    "impact": "high",
    "urgency": "medium",
    "priority": "high",
    "created": "2016-01-22T14:28:24Z",
    "updated": "2016-01-22T15:00:00Z",
    "fulfilled": None,
    "confirmed": None,
    "closed": None,
    "confirmation": None,
    "comments": [
        {
            "id": "cmt_8b5f768aebac3076e3459c1ff9dd2d2b",
            "author": {"name": None, "email": None, "ref": "ann"},
            "body": "Any news?",
            "created": "2016-01-22T14:50:00Z",
            "public": True,
            "origin": "it-tool",
            "remote_id": None,
        },
        {
            "id": "cmt_0d5a46be13a4242435873423932aa054",
            "author": {"name": None, "email": None, "ref": "bob"},
            "body": "Checking",
            "created": "2016-01-22T14:55:00Z",
            "public": False,
            "origin": "it-tool",
            "remote_id": None,
        },
    ],
    "chain": {
        "upstream": None,
        "suppliers": [],
        "forks": [
            {
                "role": "secondary",
                "process": "change",
                "ref": "CHG0001",
                "instance": None,
                "call": None,
                "via": "incident.rfc",
            }
        ],
    },
    "attributes": {"servicenow": {"category": "network"}},
    "process": "recover",
}
SERVICENOW_DRAFT = {
    "fields": {
        "short_description": "E-mail drops out",
        "description": "Since 9:00",
        "hold_reason": "4",
        "impact": "1",
        "urgency": "2",
        "category": "network",
    },
    "status": "3",
    "status_fields": {},
}


@pytest.mark.parametrize(
    ("name", "data", "call", "draft"),
    [
        ("jira-service-management", JIRA_ISSUE, JIRA_CALL, JIRA_DRAFT),
        ("servicenow-incident", SERVICENOW_INCIDENT, SERVICENOW_CALL, SERVICENOW_DRAFT),
    ],
    ids=["jira", "servicenow"],
)
def test_a_shipped_mapping_gives_the_whole_call_and_draft_it_always_gave(
    name: str, data: dict[str, Any], call: dict[str, Any], draft: dict[str, Any]
) -> None:
    context = MappingContext("it", "it-tool", TRANSFORMS)
    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / f"{name}.yaml")
    mapped = apply_inbound(mapping, RawRecord(remote_id="r1", remote_key="K-1", data=data), context)
    assert mapped.model_dump(mode="json", exclude={"id"}) == call
    assert apply_outbound(mapping, mapped, context).model_dump(mode="json") == draft


#: A field of each kind of reader: a fallback (title), one transform (description, created),
#: a transform and a table (status), a table with a default for unknown values (impact), a
#: chain naming a transform nobody installed (urgency), a chain with arguments (updated).
READERS = loads_mapping(
    """
version: 1
tool: acme
fields:
  title: {path: t.text, required: true, fallback: [t2]}
  description: {path: d, transform: strip, default: "(none)"}
  status: {path: s, transform: lower, values: {"o": registered, "w": in_progress}}
  impact: {path: i, values: {"1": high, "2": low}, on_unknown: default, default: medium}
  urgency: {path: g, transform: [strip, nothing], values: {"1": high}}
  created: {path: c, transform: to_int}
  updated: {path: u, transform: [strip, {name: parse_datetime, args: {format: "%d/%m/%Y %H:%M"}}]}
""",
    source="acme.yaml",
)
BASE = {"t": {"text": "Jam"}, "s": "O", "c": "1", "u": "22/01/2016 10:00"}
READ = {
    "title": "Jam",
    "description": "(none)",
    "status": "registered",
    "impact": "medium",
    "urgency": None,
    "created": "1970-01-01T00:00:01Z",
    "updated": "2016-01-22T10:00:00Z",
}


@pytest.mark.parametrize(
    ("change", "read"),
    [
        ({}, {}),
        ({"t": {"text": ""}, "t2": "From fallback"}, {"title": "From fallback"}),
        ({"t": {"text": " "}}, {"title": " "}),
        ({"d": "  Tray 2  "}, {"description": "Tray 2"}),
        ({"d": "   "}, {}),  # empty once stripped: the default
        ({"i": "2"}, {"impact": "low"}),
        ({"i": 9}, {}),  # unknown: the default
        ({"c": None}, {"created": "2016-01-22T10:00:00Z"}),  # none: the updated time
        ({"u": " 22/01/2016 10:00 "}, {}),
    ],
)
def test_each_kind_of_field_reads_as_it_always_did(
    change: dict[str, Any], read: dict[str, Any]
) -> None:
    record = RawRecord(remote_id="7", data={**BASE, **change})
    call = apply_inbound(READERS, record, MappingContext("lab", "lab-acme", CORE))
    assert call.model_dump(mode="json", include=set(READ)) == {**READ, **read}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"t": {}}, "field title: required value is missing (path 't.text')"),
        ({"t": {"text": ""}}, "field title: required value is missing (path 't.text', value '')"),
        ({"t": "flat"}, "field title: required value is missing (path 't.text')"),
        (
            {"s": "X"},
            "field status: value 'X' (as 'x') at path 's' is not in the mapping 'mapping' "
            "(known: 'o', 'w')",
        ),
        (
            {"s": "  "},
            "field status: value '  ' at path 's' is not in the mapping 'mapping' "
            "(known: 'o', 'w')",
        ),
        (
            {"s": 7},
            "field status: value 7 (as '7') at path 's' is not in the mapping 'mapping' "
            "(known: 'o', 'w')",
        ),
        ({"g": "1"}, "field urgency: transform 'nothing' is not installed (no plugin provides it)"),
        ({"c": "x"}, "field created: transform 'to_int' failed on 'x': 'x' is not a whole number"),
        (
            {"u": "2016-01-22"},
            "field updated: transform 'parse_datetime' failed on '2016-01-22': '2016-01-22' is "
            "not a timestamp in %d/%m/%Y %H:%M",
        ),
    ],
)
def test_each_kind_of_field_fails_with_the_message_it_always_had(
    change: dict[str, Any], message: str
) -> None:
    record = RawRecord(remote_id="7", data={**BASE, **change})
    with pytest.raises(MappingError) as raised:
        apply_inbound(READERS, record, MappingContext("lab", "lab-acme", CORE))
    assert str(raised.value) == message
