"""A canonical status read from and written to more than one tool field (status rules).

Jira ends work in one status and says how with the resolution: Done with Won't Do is
``cancelled``, Done with Done ``fulfilled``. The shipped Jira mappings say so with
``fields.status.rules``; what every shipped mapping writes reads back as the same status (a
property over every status), and a file whose writes read back as another status off the
lifecycle path is refused before runtime, naming file, line and key.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingFileError
from usm_bridge.mapping import (
    Mapping,
    MappingContext,
    apply_inbound,
    apply_outbound,
    check_mapping,
    load_mapping,
    loads_mapping,
    mapping_warnings,
    set_path,
)
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.mapping.status import record_as_written
from usm_bridge.mapping.workflow import writable_statuses
from usm_bridge.model import Call, Status, WaitingOn

MAPPINGS = SHIPPED_MAPPINGS_DIR
SHIPPED = sorted(MAPPINGS.glob("*.yaml"))
SOFTWARE = load_mapping(MAPPINGS / "jira-software.yaml")
JSM = load_mapping(MAPPINGS / "jira-service-management.yaml")
CONTEXT = MappingContext(unit="dev", instance="jira", transforms=TRANSFORMS)
WHEN = datetime(2031, 1, 2, tzinfo=UTC)
#: An issue type each Jira mapping classifies: nobody works on an unclassified call (USM).
ISSUE_TYPE = {SOFTWARE.name: "Bug", JSM.name: "[System] Incident"}
#: Raw fields that make a minimal record of each shipped mapping a classified call.
CLASSIFIED: dict[str, dict[str, str]] = {
    "email-service-desk": {"subject": "[incident] A title"},
    SOFTWARE.name: {"fields.issuetype.name": ISSUE_TYPE[SOFTWARE.name]},
    JSM.name: {"fields.issuetype.name": ISSUE_TYPE[JSM.name]},
}


def _issue(status: str, resolution: str | None, issue_type: str = "Bug") -> RawRecord:
    fields: dict[str, Any] = {
        "summary": "Export fails",
        "status": {"name": status},
        "issuetype": {"name": issue_type},
        "created": "2031-01-01T09:00:00.000+0000",
    }
    if resolution is not None:
        fields["resolution"] = {"name": resolution}
    return RawRecord(remote_id="10001", updated=WHEN, data={"fields": fields})


@pytest.mark.parametrize(
    ("mapping", "status", "resolution", "expected"),
    [
        (SOFTWARE, "Done", "Won't Do", Status.CANCELLED),
        (SOFTWARE, "Done", "Duplicate", Status.CANCELLED),
        (SOFTWARE, "Done", "Done", Status.FULFILLED),
        (SOFTWARE, "Done", None, Status.FULFILLED),
        (SOFTWARE, "In Progress", "Won't Do", Status.IN_PROGRESS),  # a rule needs both fields
        (JSM, "Resolved", "Won't Do", Status.CANCELLED),
        (JSM, "Resolved", "Done", Status.FULFILLED),
        (JSM, "Canceled", "Won't Do", Status.CANCELLED),
    ],
    ids=lambda v: v.name if isinstance(v, Mapping) else str(v),
)
def test_jira_status_and_resolution_read_as_one_status(
    mapping: Mapping, status: str, resolution: str | None, expected: Status
) -> None:
    call = apply_inbound(mapping, _issue(status, resolution), CONTEXT)
    assert call.status is expected


@pytest.mark.parametrize(
    ("mapping", "status", "jira_status", "fields"),
    [
        (SOFTWARE, Status.CANCELLED, "Done", {"resolution": "Won't Do"}),
        (SOFTWARE, Status.FULFILLED, "Done", {}),
        (JSM, Status.CANCELLED, "Canceled", {"resolution": "Won't Do"}),
        (JSM, Status.FULFILLED, "Resolved", {"resolution": "Done"}),
    ],
    ids=lambda v: v.name if isinstance(v, Mapping) else str(v),
)
def test_a_status_is_written_with_the_fields_it_spans(
    mapping: Mapping, status: Status, jira_status: str, fields: dict[str, str]
) -> None:
    call = apply_inbound(mapping, _issue("In Progress", None, ISSUE_TYPE[mapping.name]), CONTEXT)
    draft = apply_outbound(mapping, call.model_copy(update={"status": status}), CONTEXT)
    assert (draft.status, draft.status_fields) == (jira_status, fields)


# -- read(write(status)) == status, for every status of every shipped mapping -----------------


def _written_and_read(mapping: Mapping, key: str) -> Call:
    """Write a call in status ``key`` through the mapping, as the tool then holds it, and read
    that record back through the mapping."""
    status = mapping.spec.fields.status
    assert status is not None
    base = _minimal_record(mapping)
    call = apply_inbound(mapping, RawRecord(remote_id="1", updated=WHEN, data=base), CONTEXT)
    head, _, whom = key.partition(":")
    changes: dict[str, Any] = {"status": Status(head), "waiting_on": None}
    if head == Status.WAITING.value:
        changes["waiting_on"] = WaitingOn(whom) if whom else WaitingOn.SUPPLIER
    draft = apply_outbound(mapping, call.model_copy(update=changes), CONTEXT)
    data = _merge(base, record_as_written(status, draft.status, draft.status_fields))
    for path, value in _leaves(draft.fields):
        set_path(data, path, value)
    return apply_inbound(mapping, RawRecord(remote_id="1", updated=WHEN, data=data), CONTEXT)


def _minimal_record(mapping: Mapping) -> dict[str, Any]:
    data: dict[str, Any] = {}
    spec = mapping.spec
    if spec.fields.title.path != "$":  # a title composed from the whole record needs none
        set_path(data, spec.fields.title.path, "A title")
    created = spec.fields.created
    if created is not None and created.path != "$":
        stamp: Any = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
        for ref in created.transform_out:  # in the tool's own format
            stamp = TRANSFORMS[ref.name](stamp, **ref.args)
        set_path(data, created.path, stamp if isinstance(stamp, str) else stamp.isoformat())
    for path, value in CLASSIFIED.get(mapping.name, {}).items():
        set_path(data, path, value)
    return data


def _merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for path, value in _leaves(more):
        set_path(out, path, value)
    return out


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict) and tree and tree.get("type") != "doc":
        found: list[tuple[str, Any]] = []
        for key, value in tree.items():
            found.extend(_leaves(value, f"{prefix}{key}."))
        return found
    return [(prefix.rstrip("."), tree)]


def _cases() -> list[tuple[Path, str]]:
    cases = []
    for path in SHIPPED:
        status = load_mapping(path).spec.fields.status
        if status is not None and not status.read_only and not status.transform:
            cases.extend((path, key) for key in writable_statuses(status))
    return cases


CASES = _cases()


def test_the_cases_cover_the_jira_statuses_that_span_fields() -> None:
    keys = {(path.stem, key) for path, key in CASES}
    assert ("jira-software", "cancelled") in keys and (
        "jira-service-management",
        "cancelled",
    ) in keys
    assert len(CASES) >= 40


@pytest.mark.parametrize(("path", "key"), CASES, ids=[f"{p.stem}:{k}" for p, k in CASES])
def test_every_status_written_reads_back_the_same_or_is_a_named_loss(path: Path, key: str) -> None:
    mapping = load_mapping(path)
    back = _written_and_read(mapping, key)
    head, _, whom = key.partition(":")
    same = back.status.value == head and (not whom or back.waiting_on == whom)
    if not same:
        # Only a loss the check names (a neighbour on the same lifecycle path) is allowed.
        named = [w for w in mapping_warnings(mapping) if f"writing {key!r}" in w]
        assert named, f"{key} reads back as {back.status.value} and no warning says so"
        assert "detail lost" in named[0]


STATUS_NAMES = {
    mapping.name: sorted(str(raw) for raw in (mapping.spec.fields.status.values or {}))
    for mapping in (SOFTWARE, JSM)
    if mapping.spec.fields.status is not None
}


@pytest.mark.parametrize("mapping", [SOFTWARE, JSM], ids=lambda m: m.name)
def test_a_status_read_is_written_so_that_it_reads_back_the_same(mapping: Mapping) -> None:
    """Any Jira status with any resolution: read, written, read again gives the first read."""

    @settings(max_examples=60, deadline=None, database=None)
    @given(
        status=st.sampled_from(STATUS_NAMES[mapping.name]),
        resolution=st.sampled_from([None, "Done", "Won't Do", "Duplicate", "Cannot Reproduce"]),
    )
    def run(status: str, resolution: str | None) -> None:
        first = apply_inbound(
            mapping, _issue(status, resolution, ISSUE_TYPE[mapping.name]), CONTEXT
        )
        key = first.status.value
        if first.waiting_on is not None:
            key = f"{key}:{first.waiting_on.value}"
        again = _written_and_read(mapping, key)
        assert (again.status, again.waiting_on) == (first.status, first.waiting_on)

    run()


# -- refused before runtime ----------------------------------------------------------------------

# The case issue 11 reports: cancelled written as Done with resolution Won't Do, but nothing
# says how to read that back, so it reads as fulfilled and the report shows an illegal move.
WRITES_A_CANCEL_IT_CANNOT_READ = """\
version: 1
tool: jira
fields:
  title: {path: fields.summary}
  status:
    path: fields.status.name
    values: {"To Do": registered, "In Progress": in_progress, "Done": fulfilled}
    write:
      cancelled: "Done"
    status_fields:
      cancelled: {resolution: "Won't Do"}
"""


def test_a_cancel_that_reads_back_as_fulfilled_is_refused_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jira-broken.yaml"
    path.write_text(WRITES_A_CANCEL_IT_CANNOT_READ, encoding="utf-8")
    with pytest.raises(MappingFileError) as raised:
        check_mapping(path, TRANSFORMS)
    message = str(raised.value)
    assert "jira-broken.yaml:9: key fields.status.write.cancelled" in message
    assert "reads back as 'fulfilled'" in message
    assert "illegal move cancelled -> fulfilled" in message
    assert raised.value.expected is not None and "rules" in raised.value.expected


def test_mapping_check_exits_2_on_an_unreachable_workflow_and_lists_warnings(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jira-broken.yaml"
    path.write_text(WRITES_A_CANCEL_IT_CANNOT_READ, encoding="utf-8")
    broken = _cli("mapping", "check", str(path))
    assert broken.returncode == 2, broken.stderr
    assert "fields.status.write.cancelled" in broken.stderr and "Traceback" not in broken.stderr
    shipped = _cli("mapping", "check", str(MAPPINGS / "jira-software.yaml"))
    assert shipped.returncode == 0, shipped.stderr
    warnings = [line.strip() for line in shipped.stdout.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert "writing 'confirmed' ('Done') reads back as 'fulfilled'" in warnings[0]
    assert "writing 'closed' ('Done') reads back as 'fulfilled'" in warnings[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usm_bridge", *args], capture_output=True, text=True, check=False
    )


def test_check_mapping_collects_warnings_for_a_status_the_bridge_cannot_write() -> None:
    text = WRITES_A_CANCEL_IT_CANNOT_READ.replace(
        '    write:\n      cancelled: "Done"\n', ""
    ).replace('    status_fields:\n      cancelled: {resolution: "Won\'t Do"}\n', "")
    mapping = loads_mapping(text, source="m.yaml")
    warnings = mapping_warnings(mapping)
    assert len(warnings) == 2, warnings
    assert "moves calls to 'waiting:supplier'" in warnings[0]
    assert "moves calls to 'cancelled'" in warnings[1]


RULE = """
    rules:
      - status: cancelled
        tool: {tool}
        when: {{path: {path}, in: ["Won't Do"]}}
    field_paths: {{resolution: fields.resolution.name}}
"""


@pytest.mark.parametrize(
    ("tool", "path", "expected"),
    [
        ('"Finished"', "fields.resolution.name", "tool status 'Finished' is not a raw value"),
        ('"Done"', "fields.resolution.id", "which field_paths does not name"),
    ],
    ids=["unknown-tool-status", "path-never-written"],
)
def test_a_status_rule_must_name_a_tool_status_and_a_field_it_can_read(
    tool: str, path: str, expected: str
) -> None:
    # The status section ends the file: the rule lines go under it.
    text = WRITES_A_CANCEL_IT_CANNOT_READ.replace(
        '      cancelled: "Done"\n', '      in_progress: "In Progress"\n'
    ) + RULE.format(tool=tool, path=path)
    with pytest.raises(MappingFileError) as raised:
        loads_mapping(text, source="m.yaml")
    assert expected in str(raised.value) and "m.yaml:" in str(raised.value)


def test_status_rules_without_a_values_table_are_refused() -> None:
    text = """\
version: 1
tool: jira
fields:
  title: {path: fields.summary}
  status:
    path: fields.status.name
    rules:
      - {status: cancelled, tool: Done, when: {path: fields.resolution.name, exists: true}}
    field_paths: {resolution: fields.resolution.name}
"""
    with pytest.raises(MappingFileError) as raised:
        loads_mapping(text, source="m.yaml")
    assert "status rules need a values table" in str(raised.value)
