"""The tables the simulator serves: their default fields, references and choice lists.

Codes are those of a default instance (``shared/design/API-FACTS.md``): incident states 1 New ..
8 Canceled with hold reasons, change states -5 New .. 4 Canceled, requested item states -5
Pending .. 7 Closed Skipped, problem states 101 New .. 107 Closed; impact, urgency and priority
are choices of ``task``, which the task tables extend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["CHOICES", "INTEGER_FIELDS", "PRIORITY_MATRIX", "TABLES", "TableSpec"]


@dataclass(frozen=True)
class TableSpec:
    """One table: number prefix, default values of a new record, references (field -> table)."""

    name: str
    prefix: str | None
    defaults: dict[str, str]
    references: dict[str, str] = field(default_factory=dict)
    task: bool = True
    #: The field whose value is the record's label in a reference's display value.
    display: str = "number"


_TASK_DEFAULTS: Final = {
    "number": "",
    "short_description": "",
    "description": "",
    "state": "1",
    "impact": "3",
    "urgency": "3",
    "priority": "5",
    "active": "true",
    "assigned_to": "",
    "assignment_group": "",
    "opened_by": "",
    "opened_at": "",
    "closed_at": "",
    "closed_by": "",
    "close_notes": "",
    "correlation_id": "",
    "correlation_display": "",
    "cmdb_ci": "",
    "business_service": "",
    "comments": "",
    "work_notes": "",
    "sys_class_name": "",
    "sys_created_by": "",
    "sys_created_on": "",
    "sys_updated_by": "",
    "sys_updated_on": "",
    "sys_mod_count": "0",
    "sys_id": "",
}
_TASK_REFERENCES: Final = {
    "assigned_to": "sys_user",
    "assignment_group": "sys_user_group",
    "opened_by": "sys_user",
    "closed_by": "sys_user",
    "cmdb_ci": "cmdb_ci",
    "business_service": "cmdb_ci_service",
}


def _task(name: str, prefix: str, extra: dict[str, str], refs: dict[str, str]) -> TableSpec:
    return TableSpec(
        name, prefix, {**_TASK_DEFAULTS, **extra}, {**_TASK_REFERENCES, **refs}, task=True
    )


#: The Attachment API's metadata (its ``GET /now/attachment/{sys_id}`` example): every value a
#: string; the record a file belongs to by ``table_name`` and ``table_sys_id``.
_ATTACHMENT_TEXT: Final = (
    "file_name", "content_type", "table_name", "table_sys_id", "hash", "image_height",
    "image_width", "average_image_color", "sys_tags", "sys_created_on", "sys_created_by",
    "sys_updated_on", "sys_updated_by",
)  # fmt: skip
_ATTACHMENT_FIELDS: Final = dict.fromkeys(_ATTACHMENT_TEXT, "") | {
    "size_bytes": "0", "size_compressed": "0", "compressed": "true", "state": "available",
    "sys_mod_count": "0",
}  # fmt: skip

TABLES: Final = {
    spec.name: spec
    for spec in (
        _task(
            "incident",
            "INC",
            {
                "caller_id": "",
                "category": "inquiry",
                "subcategory": "",
                "contact_type": "",
                "hold_reason": "",
                "close_code": "",
                "resolved_at": "",
                "resolved_by": "",
                "problem_id": "",
                "rfc": "",
                "location": "",
                "reassignment_count": "0",
                "reopen_count": "0",
                "made_sla": "true",
                "knowledge": "false",
                "notify": "1",
                "u_symptom": "",
                "u_priority_confirmation": "false",
                "vendor": "",
                "caused_by": "",
            },
            {
                "caller_id": "sys_user",
                "resolved_by": "sys_user",
                "problem_id": "problem",
                "rfc": "change_request",
                "location": "cmn_location",
                "caused_by": "change_request",
            },
        ),
        _task(
            "sc_request",
            "REQ",
            {"request_state": "requested", "requested_for": "", "due_date": "", "price": "0"},
            {"requested_for": "sys_user"},
        ),
        _task(
            "sc_req_item",
            "RITM",
            {
                "request": "",
                "cat_item": "",
                "quantity": "1",
                "stage": "request_approved",
                "requested_for": "",
                "due_date": "",
            },
            {"request": "sc_request", "cat_item": "sc_cat_item", "requested_for": "sys_user"},
        ),
        _task(
            "change_request",
            "CHG",
            {
                "state": "-5",
                "type": "normal",
                "risk": "3",
                "category": "Other",
                "start_date": "",
                "end_date": "",
                "requested_by": "",
                "close_code": "",
            },
            {"requested_by": "sys_user"},
        ),
        _task(
            "problem",
            "PRB",
            {
                "state": "101",
                "known_error": "false",
                "cause_notes": "",
                "fix_notes": "",
                "resolution_code": "",
                "resolved_at": "",
                "resolved_by": "",
                "rfc": "",
                "first_reported_by_task": "",
            },
            # first_reported_by_task references the task table: any task (an incident).
            {"resolved_by": "sys_user", "rfc": "change_request", "first_reported_by_task": "task"},
        ),
        TableSpec(
            "sys_user",
            None,
            {"user_name": "", "name": "", "email": "", "active": "true"},
            task=False,
            display="name",
        ),
        TableSpec(
            "sys_user_group", None, {"name": "", "active": "true"}, task=False, display="name"
        ),
        TableSpec("cmdb_ci", None, {"name": ""}, task=False, display="name"),
        TableSpec("cmdb_ci_service", None, {"name": ""}, task=False, display="name"),
        TableSpec("cmn_location", None, {"name": ""}, task=False, display="name"),
        TableSpec("sc_cat_item", None, {"name": ""}, task=False, display="name"),
        TableSpec(
            "sys_journal_field",
            None,
            # Who wrote an entry and when, as on a real instance: the bridge tells its own
            # entries from people's by sys_created_by.
            {
                "element": "",
                "element_id": "",
                "name": "",
                "value": "",
                "sys_created_on": "",
                "sys_created_by": "",
            },
            task=False,
            display="value",
        ),
        TableSpec("sys_attachment", None, _ATTACHMENT_FIELDS, task=False, display="file_name"),
        TableSpec(
            "sys_choice",
            None,
            {
                "name": "",
                "element": "",
                "value": "",
                "label": "",
                "sequence": "0",
                "inactive": "false",
                "language": "en",
            },
            task=False,
            display="label",
        ),
    )
}

_STATE_INCIDENT: Final = [
    ("1", "New"),
    ("2", "In Progress"),
    ("3", "On Hold"),
    ("6", "Resolved"),
    ("7", "Closed"),
    ("8", "Canceled"),
]
_CLOSE_INCIDENT: Final = [
    ("Solution provided", "Solution provided"),
    ("Workaround provided", "Workaround provided"),
    ("Duplicate", "Duplicate"),
    ("Resolved by caller", "Resolved by caller"),
    ("Resolved by change", "Resolved by change"),
    ("Resolved by problem", "Resolved by problem"),
    ("Known error", "Known error"),
    ("User error", "User error"),
    ("No resolution provided", "No resolution provided"),
]

#: (table, element) -> [(value, label)], in display order.
CHOICES: Final[dict[tuple[str, str], list[tuple[str, str]]]] = {
    ("task", "impact"): [("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")],
    ("task", "urgency"): [("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")],
    ("task", "priority"): [
        ("1", "1 - Critical"),
        ("2", "2 - High"),
        ("3", "3 - Moderate"),
        ("4", "4 - Low"),
        ("5", "5 - Planning"),
    ],
    ("task", "state"): [
        ("-5", "Pending"),
        ("1", "Open"),
        ("2", "Work in Progress"),
        ("3", "Closed Complete"),
        ("4", "Closed Incomplete"),
        ("7", "Closed Skipped"),
    ],
    ("incident", "state"): _STATE_INCIDENT,
    ("incident", "hold_reason"): [
        ("1", "Awaiting Caller"),
        ("5", "Awaiting Change"),
        ("3", "Awaiting Problem"),
        ("4", "Awaiting Vendor"),
    ],
    ("incident", "close_code"): _CLOSE_INCIDENT,
    ("incident", "category"): [
        ("inquiry", "Inquiry / Help"),
        ("software", "Software"),
        ("hardware", "Hardware"),
        ("network", "Network"),
        ("database", "Database"),
    ],
    ("sc_req_item", "state"): [
        ("-5", "Pending"),
        ("1", "Open"),
        ("2", "Work in Progress"),
        ("3", "Closed Complete"),
        ("4", "Closed Incomplete"),
        ("7", "Closed Skipped"),
    ],
    ("sc_request", "request_state"): [
        ("requested", "Pending Approval"),
        ("in_process", "Approved"),
        ("closed_complete", "Closed Complete"),
        ("closed_incomplete", "Closed Incomplete"),
        ("closed_cancelled", "Closed Cancelled"),
        ("closed_rejected", "Closed Rejected"),
        ("closed_skipped", "Closed Skipped"),
    ],
    ("change_request", "state"): [
        ("-5", "New"),
        ("-4", "Assess"),
        ("-3", "Authorize"),
        ("-2", "Scheduled"),
        ("-1", "Implement"),
        ("0", "Review"),
        ("3", "Closed"),
        ("4", "Canceled"),
    ],
    ("change_request", "close_code"): [
        ("successful", "Successful"),
        ("successful_issues", "Successful with issues"),
        ("unsuccessful", "Unsuccessful"),
    ],
    ("change_request", "type"): [
        ("standard", "Standard"),
        ("normal", "Normal"),
        ("emergency", "Emergency"),
    ],
    ("problem", "state"): [
        ("101", "New"),
        ("102", "Assess"),
        ("103", "Root Cause Analysis"),
        ("104", "Fix in Progress"),
        ("106", "Resolved"),
        ("107", "Closed"),
    ],
    ("problem", "resolution_code"): [
        ("fix_applied", "Fix Applied"),
        ("risk_accepted", "Risk Accepted"),
        ("duplicate", "Duplicate"),
        ("canceled", "Canceled"),
    ],
}

#: Fields of type Integer on the tables served (integer choices included): the platform ignores a
#: value such a field cannot hold instead of refusing the write.
INTEGER_FIELDS: Final = frozenset(
    {
        "state",
        "impact",
        "urgency",
        "priority",
        "hold_reason",
        "notify",
        "reassignment_count",
        "reopen_count",
        "quantity",
        "risk",
        "sequence",
    }
)

#: ServiceNow's default priority lookup: (impact, urgency) -> priority.
PRIORITY_MATRIX: Final = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("1", "3"): "3",
    ("2", "1"): "2",
    ("2", "2"): "3",
    ("2", "3"): "4",
    ("3", "1"): "3",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
