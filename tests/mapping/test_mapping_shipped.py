"""Every shipped mapping loads, and raw -> canonical -> raw gives back the writable fields.

The round trip is property-based: hypothesis builds raw records from each mapping's own value
tables (and text and timestamps in the tool's formats), so a new value added to a file is
covered without writing a test for it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.mapping import (
    Mapping,
    MappingContext,
    apply_inbound,
    apply_outbound,
    apply_rules,
    check_mapping,
    field_specs,
    get_path,
    load_mapping,
    set_path,
)
from usm_bridge.mapping.classify import record_empties
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR, shipped_mappings
from usm_bridge.mapping.spec import NOT_FOUND, FieldSpec, StatusField, raw_text
from usm_bridge.mapping.status import read_status, write_status
from usm_bridge.model import CallType, Status

MAPPINGS_DIR = SHIPPED_MAPPINGS_DIR
SHIPPED = sorted(MAPPINGS_DIR.glob("*.yaml"))
EXPECTED = {
    "servicenow-incident",
    "servicenow-sc-req-item",
    "servicenow-change-request",
    "servicenow-problem",
    "jira-service-management",
    "jira-software",
    "email-service-desk",
    "servicenow-incident-event-log",
}
CONTEXT = MappingContext(unit="it", instance="tool-a", transforms=TRANSFORMS)
UPDATED = datetime(2031, 1, 1, tzinfo=UTC)
BASE = datetime(2016, 2, 29, 23, 59, tzinfo=UTC)
TIMESTAMPS = {"created", "updated", "fulfilled", "confirmed", "closed", "comments.created"}


def test_every_expected_flavour_is_shipped() -> None:
    assert {path.stem for path in SHIPPED} == EXPECTED
    assert [p.name for p in shipped_mappings()] == [p.name for p in SHIPPED]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_mapping_loads_and_checks(path: Path) -> None:
    mapping = load_mapping(path)
    assert mapping.name == path.stem
    assert mapping.path == path
    summary = check_mapping(path, TRANSFORMS, expected_tool=mapping.tool)
    assert summary.startswith(f"{path.stem} ({mapping.tool})")
    assert mapping.tool in {"servicenow", "jira", "email"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_mapping_starts_with_an_explaining_comment(path: Path) -> None:
    head = path.read_text(encoding="utf-8").splitlines()[:3]
    assert all(line.startswith("#") for line in head)


# -- generating raw records from a mapping -----------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N"), include_characters=" -_.,"),
    min_size=1,
    max_size=30,
).map(str.strip)


def _out(item: FieldSpec[Any], canonical: Any) -> Any:
    value = canonical
    for ref in item.transform_out:
        value = TRANSFORMS[ref.name](value, **ref.args)
    return value


def _strategy(mapping: Mapping, label: str, item: FieldSpec[Any]) -> st.SearchStrategy[Any] | None:
    """Raw values for one field, or None when the field cannot be generated without knowing
    the tool's data (read-only fields whose inbound transform has no outbound inverse)."""
    if item.path == "$":
        return None
    if item.values is not None:
        return st.sampled_from(list(item.values))
    if item.transform and not item.transform_out:
        return None
    empty = {raw_text(v) for v in mapping.spec.empty_values}
    if label in TIMESTAMPS:
        # Minute precision fits every format; created is the base, later ones follow it.
        later = st.just(0) if label == "created" else st.integers(0, 10 * 24 * 60)
        return later.map(lambda minutes: _out(item, BASE + timedelta(minutes=minutes)))
    texts = _TEXT.filter(lambda t: bool(t) and t not in empty)
    if label == "description":
        lines = st.lists(texts, min_size=1, max_size=3).map("\n".join)
        return lines.map(lambda t: _out(item, t))
    return texts.map(lambda t: _out(item, t))


@st.composite
def raw_records(draw: st.DrawFn, mapping: Mapping) -> dict[str, Any]:
    data: dict[str, Any] = {}
    taken: list[tuple[str, ...]] = []
    classify_paths = {
        path: sorted(
            {
                raw_text(v)
                for fields in mapping.spec.classify.write.values()
                for p, v in fields.items()
                if p == path
            }
        )
        for fields in mapping.spec.classify.write.values()
        for path in fields
    }
    for path, options in classify_paths.items():
        set_path(data, path, draw(st.sampled_from(options)))
        taken.append(tuple(path.split(".")))
    status = mapping.spec.fields.status
    for path, options in _status_field_values(status).items():
        # The fields a status spans (Jira's resolution): the values its rules test, and one
        # they do not, so that both sides of every rule are drawn.
        set_path(data, path, draw(st.sampled_from(options)))
        taken.append(tuple(path.split(".")))
    for _, label, item, _ in field_specs(mapping.spec):
        if label.startswith("comments."):
            continue
        segments = tuple(item.path.split("."))
        if any(segments[: len(t)] == t or t[: len(segments)] == segments for t in taken):
            continue  # two specs read one path (e.g. a mail's From): generate it once
        strategy = _strategy(mapping, label, item)
        if strategy is None:
            continue
        set_path(data, item.path, draw(strategy))
        taken.append(segments)
    return data


def _status_field_values(status: StatusField | None) -> dict[str, list[str]]:
    if status is None:
        return {}
    options: dict[str, set[str]] = {path: {"Done"} for path in status.field_paths.values()}
    for rule in status.rules:
        for condition in rule.when:
            found = options.setdefault(condition.path, {"Done"})
            found.update(raw_text(v) for v in [*(condition.in_ or ()), condition.equals] if v)
    for fields in status.status_fields.values():
        for name, value in fields.items():
            if name in status.field_paths and isinstance(value, str):
                options[status.field_paths[name]].add(value)
    return {path: sorted(values) for path, values in options.items()}


def _read_status(item: StatusField, data: Any) -> Any:
    raw = get_path(data, item.path)
    hit = read_status(item, raw, data, frozenset({""}))
    return item.lookup(raw) if hit is NOT_FOUND else hit


def _expected_raw(item: FieldSpec[Any], raw: Any) -> Any:
    """What outbound should write for a raw value: itself, or the table's preferred alias."""
    if item.values is None:
        return raw
    return item.raw_for(item.lookup(raw))


def _check_round_trip(mapping: Mapping, data: dict[str, Any]) -> None:
    record = RawRecord(remote_id="r-1", updated=UPDATED, data=data)
    call = apply_inbound(mapping, record, CONTEXT)
    draft = apply_outbound(mapping, call, CONTEXT)
    spec = mapping.spec
    status = spec.fields.status
    composite_waiting = False
    if status is not None and not status.read_only and get_path(data, status.path) is not None:
        read = _read_status(status, data)
        assert draft.status == raw_text(write_status(status, str(read))[0])
        composite_waiting = ":" in str(read)
    for _, label, item, writable in field_specs(spec):
        if not writable or label == "status":
            continue
        raw = get_path(data, item.path)
        written = get_path(draft.fields, item.path)
        if label == "waiting_on" and (call.status is not Status.WAITING or composite_waiting):
            continue  # whom a call waits on only counts while it waits
        if isinstance(raw, dict | list | str | int | float | bool):
            expected = _expected_raw(item, raw)
            process = spec.fields.waiting_process
            if label == "waiting_on" and process is not None and process.path == item.path:
                # One field says whom and which process (hold_reason): the process decides
                # the reason written, so Awaiting Problem goes back as itself, not as the
                # table's preferred secondary_process reason (Awaiting Change).
                expected = (
                    process.raw_for(call.waiting_process) if call.waiting_process else expected
                )
            assert written == expected, label
    for path, value in spec.classify.write.get(call.call_type, {}).items():
        assert get_path(draft.fields, path) == value
    # And the canonical side is stable: writing the draft back over the record changes nothing.
    merged = copy.deepcopy(data)
    for path in _paths(draft.fields):
        set_path(merged, path, get_path(draft.fields, path))
    moved = False
    if status is not None and draft.status is not None:
        moved = draft.status != raw_text(get_path(data, status.path))
        set_path(merged, status.path, draft.status)
        for name, value in draft.status_fields.items():
            if moved and name in status.field_paths:  # status fields ride on a move only
                set_path(merged, status.field_paths[name], value)
    again = apply_inbound(
        mapping, RawRecord(remote_id="r-1", updated=UPDATED, data=merged), CONTEXT
    )
    if status is not None and draft.status_fields and moved:
        # A move writes its status fields (a resolution): an attribute that shows one may
        # change with it, the status may not.
        assert again.status is call.status
        again = again.model_copy(update={"attributes": call.attributes})
    assert again.content_fingerprint() == call.content_fingerprint()


def _paths(tree: Any, prefix: str = "") -> list[str]:
    if isinstance(tree, dict) and tree and tree.get("type") != "doc":
        out: list[str] = []
        for key, value in tree.items():
            out.extend(_paths(value, f"{prefix}{key}."))
        return out
    return [prefix.rstrip(".")]


def _worked_on_unclassified(mapping: Mapping, data: dict[str, Any]) -> bool:
    """Whether the file's rules leave ``data`` unclassified while its status is work."""
    status = mapping.spec.fields.status
    if status is None or get_path(data, status.path) is None:
        return False
    if (
        apply_rules(mapping.spec.classify, data, record_empties(mapping))
        is not CallType.UNCLASSIFIED
    ):
        return False
    return str(_read_status(status, data)).partition(":")[0] in ("in_progress", "waiting")


def _round_trip_test(path: Path) -> Any:
    mapping = load_mapping(path)

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=raw_records(mapping))
    def run(data: dict[str, Any]) -> None:
        if _worked_on_unclassified(mapping, data):
            # USM does no work on an unclassified call: such a record is refused, naming it.
            with pytest.raises(MappingError, match=r"'r-1' is (in_progress|waiting) but uncl"):
                apply_inbound(mapping, RawRecord(remote_id="r-1", data=data), CONTEXT)
            return
        _check_round_trip(mapping, data)

    return run


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_raw_canonical_raw_gives_back_the_writable_fields(path: Path) -> None:
    _round_trip_test(path)()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_classify_write_reads_back_as_its_type(path: Path) -> None:
    mapping = load_mapping(path)
    for call_type, fields in mapping.spec.classify.write.items():
        data: dict[str, Any] = {}
        for field_path, value in fields.items():
            set_path(data, field_path, value)
        set_path(data, mapping.spec.fields.title.path, "A title")
        call = apply_inbound(mapping, RawRecord(remote_id="1", updated=UPDATED, data=data), CONTEXT)
        assert call.call_type is call_type


# -- realistic records, checked value by value -------------------------------------------------


def test_servicenow_incident_record(context: MappingContext) -> None:
    mapping = load_mapping(MAPPINGS_DIR / "servicenow-incident.yaml")
    data = {
        "sys_id": "9d385017c611228701d22104cc95c371",
        "number": "INC0010001",
        "short_description": "Mail server down",
        "description": "Nobody can send mail",
        "state": "3",
        "hold_reason": "4",
        "impact": "1",
        "urgency": "2",
        "priority": "2",
        "caller_id": {"link": "https://x/api/now/table/sys_user/abc", "value": "abc"},
        "assigned_to": "",
        "business_service": {"link": "https://x", "value": "svc1"},
        "category": "network",
        "opened_at": "2016-01-22 14:28:24",
        "sys_updated_on": "2016-01-22 15:00:00",
        "resolved_at": "",
        "closed_at": "",
        "journal": [
            {
                "sys_id": "j1",
                "element": "work_notes",
                "value": "Called the vendor",
                "sys_created_on": "2016-01-22 14:50:00",
                "sys_created_by": "admin",
            }
        ],
    }
    record = RawRecord(remote_id=data["sys_id"], remote_key="INC0010001", data=data)
    call = apply_inbound(mapping, record, context)
    assert call.call_type is CallType.INCIDENT
    assert (call.status.value, call.waiting_on and call.waiting_on.value) == ("waiting", "supplier")
    assert (call.impact, call.urgency, call.priority) == ("high", "medium", "high")
    assert call.requester is not None and call.requester.ref == "abc"
    assert call.assignee is None
    assert call.service == "svc1"
    assert call.created == datetime(2016, 1, 22, 14, 28, 24, tzinfo=UTC)
    assert call.fulfilled is None
    [comment] = call.comments
    assert (comment.body, comment.public, comment.remote_id) == ("Called the vendor", False, "j1")
    assert comment.origin == "tool-a"
    assert call.attributes == {"servicenow": {"category": "network"}}
    again = apply_inbound(mapping, record, context)
    assert again.content_fingerprint() == call.content_fingerprint()  # stable comment ids
    draft = apply_outbound(mapping, call, context)
    assert draft.status == "3"
    assert draft.fields == {
        "short_description": "Mail server down",
        "description": "Nobody can send mail",
        "hold_reason": "4",
        "impact": "1",
        "urgency": "2",
        "category": "network",
    }
    resolved = call.model_copy(update={"status": Status.FULFILLED, "waiting_on": None})
    draft = apply_outbound(mapping, resolved, context)
    assert draft.status == "6"
    assert draft.status_fields["close_code"] == "Solution provided"
    assert "hold_reason" not in draft.fields


def test_on_hold_without_reason_waits_on_the_file_default(context: MappingContext) -> None:
    mapping = load_mapping(MAPPINGS_DIR / "servicenow-incident.yaml")
    data = {"short_description": "x", "state": "3", "opened_at": "2016-01-22 14:28:24"}
    call = apply_inbound(mapping, RawRecord(remote_id="1", data=data), context)
    assert call.status is Status.WAITING and call.waiting_on == "customer"
    assert call.updated == call.created  # no sys_updated_on and none from the connector


def test_jira_service_management_issue(context: MappingContext) -> None:
    mapping = load_mapping(MAPPINGS_DIR / "jira-service-management.yaml")
    adf = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "VPN drops"}]}],
    }
    data = {
        "id": "10001",
        "key": "IT-7",
        "fields": {
            "summary": "VPN unstable",
            "description": adf,
            "status": {"name": "Waiting for customer", "statusCategory": {"key": "indeterminate"}},
            "issuetype": {"name": "[System] Incident"},
            "priority": {"name": "Highest"},
            "reporter": {"accountId": "5b10", "displayName": "Ann", "emailAddress": "ann@x.org"},
            "created": "2021-01-17T12:34:00.000+0000",
            "updated": "2021-01-17T13:00:00.000+0000",
            "labels": ["vpn"],
            "comment": {
                "comments": [
                    {
                        "id": "100",
                        "author": {"accountId": "5b11", "displayName": "Bob"},
                        "body": adf,
                        "created": "2021-01-17T12:40:00.000+0000",
                        "jsdPublic": False,
                    }
                ]
            },
        },
    }
    call = apply_inbound(
        mapping, RawRecord(remote_id="10001", remote_key="IT-7", data=data), context
    )
    assert call.call_type is CallType.INCIDENT
    assert call.status is Status.WAITING and call.waiting_on == "customer"
    assert call.description == "VPN drops" and call.priority == "critical"
    assert call.requester is not None and call.requester.email == "ann@x.org"
    assert call.comments[0].public is False and call.comments[0].author is not None
    assert call.attributes["jira"]["labels"] == ["vpn"]
    draft = apply_outbound(mapping, call, context)
    assert draft.status == "Waiting for customer"
    assert draft.fields["fields"]["description"] == adf
    assert draft.fields["fields"]["issuetype"] == {"name": "[System] Incident"}


def test_email_thread(context: MappingContext) -> None:
    mapping = load_mapping(MAPPINGS_DIR / "email-service-desk.yaml")
    data = {
        "message_id": "<a1@x.org>",
        "subject": "  [HR-42] Printer on floor 2 is broken  ",
        "from": '"Ann Smith" <Ann@X.ORG>',
        "date": "Tue, 01 Mar 2016 10:00:00 +0100",
        "body": "It jams.",
        "replies": [
            {
                "message_id": "<a2@x.org>",
                "from": "bob@x.org",
                "date": "Tue, 01 Mar 2016 11:00:00 +0100",
                "body": "On it.",
            }
        ],
    }
    call = apply_inbound(mapping, RawRecord(remote_id="<a1@x.org>", data=data), context)
    assert call.call_type is CallType.UNCLASSIFIED and call.status is Status.REGISTERED
    assert call.title == "[HR-42] Printer on floor 2 is broken"
    assert call.requester is not None
    assert (call.requester.name, call.requester.email) == ("Ann Smith", "Ann@x.org")
    assert call.created == datetime(2016, 3, 1, 9, 0, tzinfo=UTC)
    assert call.attributes["email"]["reference_token"] == "HR-42"
    assert call.attributes["email"]["sender_domain"] == "x.org"
    assert call.comments[0].author is not None and call.comments[0].author.email == "bob@x.org"
    tagged = {**data, "subject": "[Incident] Printer down"}
    assert (
        apply_inbound(mapping, RawRecord(remote_id="2", data=tagged), context).call_type
        == "incident"
    )
    untitled = {**data, "subject": "   "}
    assert (
        apply_inbound(mapping, RawRecord(remote_id="3", data=untitled), context).title
        == "(no subject)"
    )
