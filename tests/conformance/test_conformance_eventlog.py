"""The report on the IT unit built from the real ServiceNow event log (the first rows of it):
each finding is recomputed here straight from the CSV, independently of the store."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import conformance_eventlog
import pytest
import yaml
from conformance_eventlog import DEFAULT_INSTANCE, INSTANCE, ROOT, build, csv_path, report, rows

from usm_bridge.conformance.report import ConformanceReport
from usm_bridge.lifecycle import allowed
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR
from usm_bridge.model import Status

LIMIT = 1200

pytestmark = pytest.mark.skipif(not csv_path().exists(), reason="the event log is not present")


@pytest.fixture(scope="module")
def it_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConformanceReport]:
    root = tmp_path_factory.mktemp("it")
    config = build(root, f"sqlite:///{root / 'it.db'}", LIMIT)
    yield report(config, LIMIT)


def _outcome(report: ConformanceReport, check: str, instance: str | None = None):  # type: ignore[no-untyped-def]
    return next(
        o
        for o in report.outcomes
        if o.check_id == check and (instance is None or o.instance == instance)
    )


def _histories() -> dict[str, list[dict[str, str]]]:
    """Rows per incident, minus the rows the mapping refuses (updated before opened)."""
    from datetime import datetime

    def moment(text: str) -> datetime:
        return datetime.strptime(text, "%d-%m-%Y %H:%M")

    found: dict[str, list[dict[str, str]]] = {}
    for row in rows(LIMIT):
        if moment(row["sys_updated_at"]) < moment(row["opened_at"]):
            continue
        found.setdefault(row["number"], []).append(row)
    return found


def test_dead_letters_are_the_rows_whose_times_run_backwards(it_report: ConformanceReport) -> None:
    refused = sum(1 for history in _histories().values() for _ in history)
    expected = sum(1 for _ in rows(LIMIT)) - refused
    outcome = _outcome(it_report, "data.dead-letters")
    assert outcome.count == expected
    assert (outcome.verdict == "fail") is (expected > 0)
    assert all("earlier than created" in e.detail for e in outcome.evidence)


def test_transitions_and_confirmations_match_the_log(it_report: ConformanceReport) -> None:
    spec = yaml.safe_load((SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml").read_text())
    table = {
        raw: Status(value.partition(":")[0])
        for raw, value in spec["fields"]["status"]["values"].items()
    }
    illegal: set[str] = set()
    closed: set[str] = set()
    for number, history in _histories().items():
        states = [table[row["incident_state"]] for row in history]
        for before, after in pairwise(states):
            if before is not after and not allowed(before, after):
                illegal.add(number)
        if states[-1] is Status.CLOSED:
            closed.add(number)
    transitions = _outcome(it_report, "data.transitions")
    assert {e.remote_key for e in transitions.evidence} == illegal
    confirmation = _outcome(it_report, "data.incident-confirmation")
    assert {e.remote_key for e in confirmation.evidence} == closed


def _closers() -> dict[str, str]:
    """Who made the update that closed each incident (its first Closed row)."""
    closers: dict[str, str] = {}
    for number, history in _histories().items():
        if history[-1]["incident_state"] == "Closed":
            closers[number] = next(
                row["sys_updated_by"] for row in history if row["incident_state"] == "Closed"
            )
    return closers


def test_confirmations_tell_the_auto_close_job_from_a_person(it_report: ConformanceReport) -> None:
    """The auto-close job is the account that closes most incidents, each only after days
    without an update; the report counts its closes as implicit and the rest as none (no
    agreement here allows implicit confirmation, and the export never names the caller as
    the closer: its anonymisation names people per column)."""
    closers = _closers()
    job, _ = Counter(closers.values()).most_common(1)[0]
    rule = _event_log_mapping()["confirmation"]["rules"][0]
    assert (rule["kind"], rule["when"]["equals"]) == ("implicit", job)
    automatic = {number for number, closer in closers.items() if closer == job}
    by_hand = set(closers) - automatic
    assert automatic and by_hand  # both kinds occur in these rows
    confirmation = _outcome(it_report, "data.incident-confirmation")
    assert confirmation.metrics == {
        "closed_incidents": len(closers),
        "explicit": 0,
        "implicit_allowed": 0,
        "implicit_not_allowed": len(automatic),
        "none": len(by_hand),
    }
    details = {e.remote_key: e.detail for e in confirmation.evidence}
    assert set(details) == set(closers)
    for number in automatic:
        assert details[number].startswith(
            "closed automatically where the agreement does not allow implicit confirmation "
            "(no agreement)"
        )
    assert {details[number] for number in by_hand} == {"closed without any confirmation"}


def _event_log_mapping() -> dict[str, Any]:
    text = (SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_priorities_the_default_matrix_does_not_foresee(it_report: ConformanceReport) -> None:
    final = {number: history[-1] for number, history in _histories().items()}
    expected = {
        number
        for number, row in final.items()
        if (row["impact"], row["urgency"], row["priority"]) == ("3 - Low", "3 - Low", "4 - Low")
    }
    outcome = _outcome(it_report, "data.priority")
    assert {e.remote_key for e in outcome.evidence} == expected
    assert set(outcome.metrics) == {"contradiction: low x low -> low"}


def test_the_default_mapping_foresees_none_of_the_exports_values(
    it_report: ConformanceReport,
) -> None:
    assert _outcome(it_report, "mapping.values", INSTANCE).verdict == "pass"
    default = _outcome(it_report, "mapping.values", DEFAULT_INSTANCE)
    states = {row["incident_state"] for row in rows(LIMIT)}
    assert default.verdict == "fail"
    assert {e.detail for e in default.evidence if e.detail.startswith("status ")} == {
        f"status {state!r} is not in the mapping's table" for state in states
    }
    lifecycle = _outcome(it_report, "mapping.lifecycle", INSTANCE)
    assert "cancelled" in lifecycle.summary  # the export's mapping has no Canceled state


def test_the_docs_example_is_what_the_code_writes_today(tmp_path: Path) -> None:
    """docs/conformance-example.md is regenerated whenever the report changes: the committed
    page equals a fresh run but for its generation time."""
    fresh = tmp_path / "example.md"
    conformance_eventlog.main(fresh)

    def without_time(path: Path) -> str:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"generated \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "generated <time>", text)
        # The log is replayed into a store today: the bridge records each status move, and
        # stamps fulfilment, when it stores it, so the process views' times measure the
        # replay's date, not the service desk. Only those durations (the rows of the times
        # table, three "median · p90" cells each) are masked.
        return "\n".join(
            re.sub(r"\d+(\.\d)? (min|h|d)\b", "<duration>", line)
            if line.startswith("| ") and line.count(" · ") == 3
            else line
            for line in text.split("\n")
        )

    committed = Path(ROOT) / "docs" / "conformance-example.md"
    assert without_time(committed) == without_time(fresh), (
        "docs/conformance-example.md is out of date: run "
        ".venv/bin/python tests/conformance/conformance_eventlog.py"
    )
    text = committed.read_text(encoding="utf-8")
    assert "IT service desk" in text and "contradiction: low x low" in text
    assert "## How to read it" in text and "Tested" in text


def _status_moves() -> list[tuple[Status, Status]]:
    """Every status change of the log, incident by incident, straight from the CSV."""
    spec = yaml.safe_load((SHIPPED_MAPPINGS_DIR / "servicenow-incident-event-log.yaml").read_text())
    table = {
        raw: Status(value.partition(":")[0])
        for raw, value in spec["fields"]["status"]["values"].items()
    }
    moves: list[tuple[Status, Status]] = []
    for history in _histories().values():
        states = [table[row["incident_state"]] for row in history]
        moves += [(a, b) for a, b in pairwise(states) if a is not b]
    return moves


def test_the_classification_and_transition_verdicts_on_the_log(
    it_report: ConformanceReport,
) -> None:
    """Checked by hand on the whole log (5,998 rows): every incident is classified (the
    mapping's default), and no status change is illegal: reopened incidents go back from
    resolved to active (fulfilled -> in_progress, USM's rework), none is closed before it
    was resolved. Pinned here on the first rows, each count recomputed from the CSV."""
    incidents = len(_histories())
    classified = _outcome(it_report, "data.classified")
    assert classified.verdict == "pass"
    assert classified.summary == f"every call is classified ({incidents} calls)"
    moves = _status_moves()
    transitions = _outcome(it_report, "data.transitions")
    assert transitions.verdict == "pass" and transitions.count == 0
    assert transitions.metrics == {"transitions_observed": len(moves)}
    assert (Status.FULFILLED, Status.IN_PROGRESS) in moves  # a reopened incident is rework
    assert not [
        move for move in moves if move[1] is Status.CLOSED and move[0] is not Status.FULFILLED
    ]
