"""``mapping.values`` judges the tool's types by the engine's own rule matching.

The report once read only ``equals`` and ``in`` values from the rules, so every type of the
shipped JSM and e-mail mappings (which classify by pattern, ``matches``) "matched no rule"
although the sync classified them. The record a type stands for is now built by
:func:`usm_bridge.mapping.type_value_rule` and judged by :func:`first_rule`, the function the
sync classifies with; here the verdict for each type is compared with the type the sync gives
a record of it.
"""

from __future__ import annotations

from typing import Any

import pytest

from usm_bridge.conformance.checks import MappingValuesCheck
from usm_bridge.connector import RawRecord, VocabularyValue
from usm_bridge.mapping import Mapping, classify_record, load_mapping, loads_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import CallType

JSM = load_mapping(SHIPPED_MAPPINGS_DIR / "jira-service-management.yaml")
EMAIL = load_mapping(SHIPPED_MAPPINGS_DIR / "email-service-desk.yaml")
REQUESTED_ITEMS = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-sc-req-item.yaml")


def _verdicts(mapping: Mapping, types: list[VocabularyValue]) -> tuple[set[str], str]:
    metrics: dict[str, float | int | str] = {}
    evidence = MappingValuesCheck._types(mapping, types, metrics)
    return {e.detail for e in evidence}, str(metrics["type_values"])


# What each connector's discover() gives: Jira the work type's name with its description as
# the label; the mailbox each subject tag with a subject that carries it as the label.
JIRA_TYPES = [
    ("[System] Incident", "For system outages or incidents."),
    ("[System] Service request", "Requests for help or information."),
    ("[System] Service request with approvals", "Requests that need approval."),
    ("[System] Problem", "Track underlying causes of incidents."),
    ("[System] Change", "Requests to change the infrastructure."),
    ("Incident", None),
    ("Task", "A small, distinct piece of work."),
    ("[System] Post-incident review", "Review an incident."),
]
MAIL_TAGS = ["incident", "request", "change", "wish"]


def _issue(name: str) -> RawRecord:
    return RawRecord(remote_id="1", data={"fields": {"issuetype": {"name": name}}})


def _mail(subject: str) -> RawRecord:
    return RawRecord(remote_id="<1@x>", data={"subject": subject, "status": "registered"})


def test_jira_work_types_fail_exactly_when_the_sync_leaves_them_unclassified() -> None:
    types = [VocabularyValue(value=n, label=d, scope="IT") for n, d in JIRA_TYPES]
    details, named = _verdicts(JSM, types)
    unclassified = {
        name
        for name, _ in JIRA_TYPES
        if classify_record(JSM, _issue(name)) is CallType.UNCLASSIFIED
    }
    assert unclassified == {"Task", "[System] Post-incident review"}
    labels = dict(JIRA_TYPES)
    assert details == {
        f"type {name!r} ({labels[name]}) in IT matches no classification rule (stays unclassified)"
        for name in unclassified
    }
    assert named == f"{len(types) - len(unclassified)}/{len(types)} named by a rule"


def test_mail_tags_pass_because_the_sync_classifies_mail_that_carries_them() -> None:
    types = [VocabularyValue(value=t, label=f"[{t}] in the subject") for t in MAIL_TAGS]
    details, named = _verdicts(EMAIL, types)
    assert details == set()
    assert named == "4/4 named by a rule"
    found = [classify_record(EMAIL, _mail(f"Re: [{tag}] Laptop for Hannah")) for tag in MAIL_TAGS]
    assert found == [CallType.INCIDENT, CallType.SERVICE_REQUEST, CallType.RFC, CallType.WISH]
    # Mail without a tag stays unclassified in the sync; a tag the rules do not know fails.
    assert classify_record(EMAIL, _mail("Laptop for Hannah")) is CallType.UNCLASSIFIED
    details, _ = _verdicts(EMAIL, [VocabularyValue(value="praise", label="[praise] subject")])
    assert details == {
        "type 'praise' ([praise] subject) matches no classification rule (stays unclassified)"
    }


# Labelled issues are changes, Bugs incidents; anything else stays unclassified.
_EXISTS = """\
{version: 1, tool: jira, fields: {title: {path: fields.summary}}, classify: {rules: [
  {type: rfc, when: {path: fields.labels, exists: true}},
  {type: incident, when: {path: fields.issuetype.name, equals: Bug}}]}}
"""


@pytest.mark.parametrize(
    ("name", "record", "expected"),
    [
        ("Bug", {"fields": {"issuetype": {"name": "Bug"}}}, CallType.INCIDENT),
        ("Task", {"fields": {"issuetype": {"name": "Task"}}}, CallType.UNCLASSIFIED),
    ],
)
def test_a_rule_that_tests_presence_does_not_classify_a_type(
    name: str, record: dict[str, Any], expected: CallType
) -> None:
    """A type put at the path of an ``exists`` rule matched it: every type looked classified
    (a false pass). Only paths a rule tests by value stand for the type."""
    mapping = loads_mapping(_EXISTS, source="labels.yaml")
    assert classify_record(mapping, RawRecord(remote_id="1", data=record)) is expected
    details, named = _verdicts(mapping, [VocabularyValue(value=name)])
    assert bool(details) is (expected is CallType.UNCLASSIFIED)
    assert named == ("0/1" if details else "1/1") + " named by a rule"


def test_requested_items_name_no_type_by_rule_but_fall_to_their_default() -> None:
    """The requested-item mapping's one rule tests whether a configuration item is named: a
    catalogue item is a service request by default, and no type is 'named by a rule'."""
    metrics: dict[str, float | int | str] = {}
    evidence = MappingValuesCheck._types(
        REQUESTED_ITEMS, [VocabularyValue(value="Laptop"), VocabularyValue(value="Phone")], metrics
    )
    assert evidence == []
    assert metrics == {
        "type_values": "0/2 named by a rule",
        "type_default": "2 fall to service_request",
    }
