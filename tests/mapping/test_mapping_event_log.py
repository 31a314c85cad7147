"""The real ServiceNow event log (shared/data) maps through its mapping; what falls outside is
known and pinned here, so a change to the mapping or the data shows."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from shipped_transforms import TRANSFORMS

from usm_bridge.connector import RawRecord
from usm_bridge.errors import MappingError
from usm_bridge.mapping import (
    MappingContext,
    apply_inbound,
    apply_outbound,
    load_mapping,
    unmapped_values,
)
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import CallType, Status

ROOT = Path(__file__).resolve().parents[2]
# The project keeps its own copy of the log (with the ServiceNow connector, which replays it).
CSV = ROOT / "connectors/servicenow/usm_bridge_servicenow/data/servicenow-incident-event-log.csv"
MAPPING = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml")
GENERIC = load_mapping(SHIPPED_MAPPINGS_DIR / "servicenow-incident.yaml")
CONTEXT = MappingContext(unit="it", instance="sn-log", transforms=TRANSFORMS)


def rows(limit: int | None = None) -> list[dict[str, str]]:
    with CSV.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for index, row in zip(range(limit or 10**9), reader, strict=False)]


def record(row: dict[str, str]) -> RawRecord:
    return RawRecord(remote_id=row["number"], data=dict(row))


def test_first_200_rows_map() -> None:
    statuses: Counter[str] = Counter()
    for row in rows(200):
        call = apply_inbound(MAPPING, record(row), CONTEXT)
        assert call.call_type is CallType.INCIDENT
        assert call.title and call.created <= call.updated
        statuses[
            call.status.value if call.waiting_on is None else f"waiting:{call.waiting_on}"
        ] += 1
        assert unmapped_values(MAPPING, record(row), CONTEXT) == {}
        draft = apply_outbound(MAPPING, call, CONTEXT)
        assert draft.status == row["incident_state"]
        assert draft.fields == {"impact": row["impact"], "urgency": row["urgency"]}
    assert statuses == {
        "registered": 77,
        "in_progress": 41,
        "waiting:customer": 15,
        "waiting:secondary_process": 3,
        "fulfilled": 33,
        "closed": 31,
    }


def test_first_row_in_detail() -> None:
    call = apply_inbound(MAPPING, record(rows(1)[0]), CONTEXT)
    assert call.title == "Category 55 / Subcategory 170"
    assert (call.status, call.impact, call.urgency, call.priority) == (
        Status.REGISTERED,
        "medium",
        "medium",
        "moderate",
    )
    assert call.requester is not None and call.requester.name == "Caller 2403"
    assert call.assignee is None  # "?" is empty in this export
    assert call.created.isoformat() == "2016-02-29T01:16:00+00:00"
    assert call.attributes["servicenow"]["active"] is True
    assert call.attributes["servicenow"]["closed_at"] == "05-03-2016 12:00"
    assert "cmdb_ci" not in call.attributes["servicenow"]


def test_known_outliers_of_the_first_200_rows() -> None:
    """What the first 200 rows hold that a default mapping does not foresee.

    * the generic incident mapping (API codes) knows none of the export's display values, and
      finds neither its state column nor a short description;
    * the instance's priority matrix is not the default one: low x low is "4 - Low" there,
      "planning" in the default matrix (a conformance finding, not a mapping failure).
    """
    generic: Counter[tuple[str, str]] = Counter()
    contradictions: Counter[tuple[str, str, str | None]] = Counter()
    for row in rows(200):
        for label, value in unmapped_values(GENERIC, record(row), CONTEXT).items():
            generic[(label, value)] += 1
        call = apply_inbound(MAPPING, record(row), CONTEXT)
        if CONTEXT.priority_matrix.contradicts(call.impact, call.urgency, call.priority):
            assert call.impact and call.urgency
            contradictions[(call.impact.value, call.urgency.value, call.priority)] += 1
    # The export names the state column incident_state and has no short description at all.
    assert {label for label, _ in generic} == {"impact", "urgency", "priority"}
    assert {value for label, value in generic if label == "priority"} == {
        "2 - High",
        "3 - Moderate",
        "4 - Low",
    }
    with pytest.raises(MappingError, match="field title: required value is missing"):
        apply_inbound(GENERIC, record(rows(1)[0]), CONTEXT)
    assert generic[("impact", "2 - Medium")] == 177
    assert contradictions == {("low", "low", "low"): 16}


def test_the_whole_log_dead_letters_only_rows_whose_times_run_backwards() -> None:
    failures: list[tuple[str, str]] = []
    for row in rows():
        try:
            apply_inbound(MAPPING, record(row), CONTEXT)
        except MappingError as exc:
            failures.append((row["number"], str(exc)))
    assert len(failures) == 5
    assert all(
        "field updated:" in reason and "earlier than created" in reason for _, reason in failures
    )
