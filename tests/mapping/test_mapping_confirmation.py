"""A mapping's ``confirmation`` section: how a tool shows the customer's acceptance.

Each rule of the shipped files is exercised on a record shaped as its tool gives it (the
simulators' tests drive the same rules through the vendors' own clients), and a file that
says something the format cannot mean is refused with its line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError, MappingFileError
from usm_bridge.mapping import MappingContext, apply_inbound, load_mapping, loads_mapping
from usm_bridge.mapping.confirmation import same_person
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.transforms import TRANSFORMS as CORE
from usm_bridge.model import Call, ConfirmationKind, Status

CONTEXT = MappingContext(unit="it", instance="tool", transforms=TRANSFORMS)
SNOW = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
JSM = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")
LOG = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml")
CALLER, AGENT = "a" * 32, "b" * 32


def _map(mapping: Any, data: dict[str, Any]) -> Call:
    return apply_inbound(mapping, RawRecord(remote_id="1", data=data), CONTEXT)


# -- ServiceNow (Table API) -----------------------------------------------------------------


def _incident(state: str, *, closed_by: str, updated_by: str) -> dict[str, Any]:
    return {
        "short_description": "VPN drops",
        "state": state,
        "caller_id": CALLER,
        "opened_at": "2024-05-01 09:00:00",
        "sys_updated_on": "2024-05-04 10:00:00",
        "resolved_at": "2024-05-01 10:00:00",
        "closed_at": "2024-05-04 10:00:00",
        "closed_by": closed_by,
        "sys_updated_by": updated_by,
    }


@pytest.mark.parametrize(
    ("closed_by", "updated_by", "kind"),
    [
        (CALLER, "abel.tuter", ConfirmationKind.EXPLICIT),  # the caller closed it
        (AGENT, "system", ConfirmationKind.IMPLICIT),  # the auto-close job
        (CALLER, "system", ConfirmationKind.IMPLICIT),  # the job, the caller had resolved it
        (AGENT, "beth.anglin", None),  # an agent closed it
    ],
    ids=["caller", "auto-close", "auto-close-of-callers-own", "agent"],
)
def test_servicenow_close_by_caller_job_or_agent(
    closed_by: str, updated_by: str, kind: ConfirmationKind | None
) -> None:
    call = _map(SNOW, _incident("7", closed_by=closed_by, updated_by=updated_by))
    assert call.status is Status.CLOSED
    if kind is None:
        assert call.confirmation is None
        return
    assert call.confirmation is not None and call.confirmation.kind is kind
    assert call.confirmation.at == datetime(2024, 5, 4, 10, tzinfo=UTC)  # the close
    if kind is ConfirmationKind.EXPLICIT:
        assert call.confirmation.by is not None and call.confirmation.by.ref == CALLER
    else:
        assert call.confirmation.by is None


def test_servicenow_reads_no_confirmation_before_the_close() -> None:
    # Resolved by the caller's own hand is still only resolved: the rules read closed calls.
    call = _map(SNOW, _incident("6", closed_by=CALLER, updated_by="system"))
    assert call.status is Status.FULFILLED and call.confirmation is None


# -- the event-log export -------------------------------------------------------------------


def _row(updated_by: str, caller: str = "Caller 7", state: str = "Closed") -> dict[str, str]:
    return {
        "number": "INC0000045",
        "incident_state": state,
        "category": "Category 55",
        "subcategory": "Subcategory 170",
        "impact": "2 - Medium",
        "urgency": "2 - Medium",
        "priority": "3 - Moderate",
        "opened_at": "29-02-2016 01:16",
        "sys_updated_at": "05-03-2016 12:00",
        "caller_id": caller,
        "sys_updated_by": updated_by,
    }


def test_event_log_rows_job_person_and_caller() -> None:
    job = _map(LOG, _row("Updated by 908")).confirmation
    assert job is not None and job.kind is ConfirmationKind.IMPLICIT
    assert job.at == datetime(2016, 3, 5, 12, tzinfo=UTC)
    assert _map(LOG, _row("Updated by 21")).confirmation is None
    # An export naming people alike in every column would show the caller's own close.
    own = _map(LOG, _row("Caller 7")).confirmation
    assert own is not None and own.kind is ConfirmationKind.EXPLICIT
    assert own.by is not None and own.by.name == "Caller 7"
    assert _map(LOG, _row("Updated by 908", state="Resolved")).confirmation is None


# -- Jira Service Management ----------------------------------------------------------------


def _history(author: dict[str, Any], created: str, to: str, hid: str) -> dict[str, Any]:
    return {
        "id": hid,
        "author": author,
        "created": created,
        "items": [{"field": "status", "fromString": "Resolved", "toString": to}],
    }


CASEY = {"accountId": "casey-1", "displayName": "Casey Customer", "emailAddress": "c@x.example"}
ROBOT = {"accountId": "app-1", "displayName": "Automation for Jira", "accountType": "app"}
AGENT_J = {"accountId": "agent-1", "displayName": "Sim Admin", "emailAddress": "a@x.example"}


def _request(*histories: dict[str, Any], status: str = "Closed") -> dict[str, Any]:
    return {
        "fields": {
            "summary": "Heating off",
            "status": {"name": status},
            "issuetype": {"name": "[System] Incident"},
            "created": "2031-01-01T09:00:00.000+0000",
            "updated": "2031-01-05T09:00:00.000+0000",
            "reporter": CASEY,
        },
        "changelog": {"histories": list(histories)},
    }


def test_jsm_the_latest_close_decides_whoever_listed_it_first() -> None:
    # Reopened after an automation closed it, then closed by Casey herself: hers is latest,
    # although this site lists the older history first.
    call = _map(
        JSM,
        _request(
            _history(ROBOT, "2031-01-03T09:00:00.000+0000", "Closed", "11"),
            _history(AGENT_J, "2031-01-03T10:00:00.000+0000", "Open", "12"),
            _history(CASEY, "2031-01-04T08:30:00.000+0000", "Closed", "13"),
        ),
    )
    assert call.confirmation is not None
    assert call.confirmation.kind is ConfirmationKind.EXPLICIT
    assert call.confirmation.by is not None and call.confirmation.by.ref == "casey-1"
    assert call.confirmation.at == datetime(2031, 1, 4, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("author", "kind"),
    [(ROBOT, ConfirmationKind.IMPLICIT), (AGENT_J, None), (CASEY, ConfirmationKind.EXPLICIT)],
    ids=["automation", "agent", "customer"],
)
def test_jsm_who_closed(author: dict[str, Any], kind: ConfirmationKind | None) -> None:
    call = _map(JSM, _request(_history(author, "2031-01-04T08:30:00.000+0000", "Closed", "9")))
    found = call.confirmation
    assert (found.kind if found else None) is kind


def test_jsm_a_changelog_that_is_not_a_list_is_refused_naming_the_field() -> None:
    data = _request()
    data["changelog"]["histories"] = {"id": "1"}
    with pytest.raises(
        MappingError, match=r"confirmation\.by\.name: transform 'jira_status_change'"
    ):
        _map(JSM, data)


# -- the format -----------------------------------------------------------------------------

_HEAD = """\
version: 1
tool: servicenow
fields:
  title: {path: t}
  updated: {path: updated, transform: parse_datetime}
  status: {path: s, values: {"7": closed, "6": fulfilled, "9": confirmed}}
people:
  requester: {email: {path: caller}}
"""


def _file(section: str) -> Any:
    return loads_mapping(_HEAD + section)


def test_by_requester_false_means_someone_else_and_by_matches_any_part() -> None:
    mapping = _file(
        """\
confirmation:
  statuses: [confirmed]
  by: {email: {path: who}, name: {path: who_name}}
  rules:
    - {kind: implicit, by_matches: '^Robot', how: robot}
    - {kind: explicit, by_requester: false, how: someone else}
"""
    )
    base = {"t": "x", "s": "9", "caller": "Ann@Example.org", "updated": "2024-01-01T00:00:00Z"}
    context = MappingContext(unit="u", instance="i", transforms=CORE)

    def read(**extra: str) -> Any:
        data = {**base, **extra}
        call = apply_inbound(mapping, RawRecord(remote_id="1", data=data), context)
        return (call.confirmation.kind, call.confirmation.how) if call.confirmation else None

    assert read(who="x@example.org", who_name="Robot 1") == (ConfirmationKind.IMPLICIT, "robot")
    assert read(who="bob@example.org") == (ConfirmationKind.EXPLICIT, "someone else")
    assert read(who="ann@example.org") is None  # the requester: by_requester false fails
    assert read() is None  # nobody known: neither rule can tell
    assert read(who="bob@example.org", s="7") is None  # closed is not among the statuses


def test_same_person_prefers_ref_then_email_then_name() -> None:
    assert same_person({"ref": "1", "name": "Ann"}, {"ref": "1", "name": "Bob"})
    assert not same_person({"ref": "1", "name": "Ann"}, {"ref": "2", "name": "Ann"})
    assert same_person({"email": "A@x.org"}, {"email": "a@X.org"})
    assert same_person({"name": "Ann"}, {"name": "Ann", "ref": "9"})
    assert not same_person({"name": "Ann"}, {"email": "ann@x.org"})
    assert not same_person({"name": "Ann"}, None)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("confirmation:\n  rules: []\n", "rules"),
        ("confirmation:\n  rules:\n    - {kind: maybe, how: x}\n", "kind"),
        ("confirmation:\n  rules:\n    - {kind: explicit}\n", "how"),
        ("confirmation:\n  rules:\n    - {kind: explicit, how: x, by_matches: '('}\n", "regular"),
        (
            "confirmation:\n  statuses: [done]\n  rules:\n    - {kind: explicit, how: x}\n",
            "statuses",
        ),
        ("confirmation:\n  rules:\n    - {kind: explicit, how: x, whom: y}\n", "whom"),
    ],
    ids=["no-rules", "bad-kind", "no-how", "bad-pattern", "bad-status", "unknown-key"],
)
def test_a_section_the_format_cannot_mean_is_refused_with_its_place(
    section: str, message: str
) -> None:
    with pytest.raises(MappingFileError) as refused:
        _file(section)
    assert message in str(refused.value)
    assert "confirmation" in str(refused.value)


def test_an_unknown_transform_in_the_section_is_refused_when_checked() -> None:
    from usm_bridge.mapping import validate_transforms

    mapping = _file(
        "confirmation:\n  at: {path: x, transform: no_such_one}\n"
        "  rules:\n    - {kind: explicit, how: x}\n"
    )
    with pytest.raises(MappingFileError, match="no_such_one"):
        validate_transforms(mapping, CORE)
