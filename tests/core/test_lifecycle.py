"""The lifecycle state machine, the workflow patterns and the priority matrix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from usm_bridge.lifecycle import (
    TRANSITIONS,
    WORKFLOW_PATTERNS,
    PriorityMatrix,
    allowed,
    is_terminal,
    pattern,
    reachable_from,
)
from usm_bridge.model import CallType, Impact, Status, Urgency, UsmProcess

S = Status


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (S.REGISTERED, S.CLASSIFIED),
        (S.CLASSIFIED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.WAITING),
        (S.WAITING, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.FULFILLED),
        (S.FULFILLED, S.CONFIRMED),
        (S.CONFIRMED, S.CLOSED),
        (S.FULFILLED, S.IN_PROGRESS),  # the customer says it is not resumed
    ],
)
def test_the_usm_cycle_is_allowed(start: Status, end: Status) -> None:
    assert allowed(start, end)


@pytest.mark.parametrize("start", [S.REGISTERED, S.CLASSIFIED, S.IN_PROGRESS, S.WAITING])
def test_cancel_is_possible_before_fulfilment(start: Status) -> None:
    assert allowed(start, S.CANCELLED)


@pytest.mark.parametrize("start", [S.FULFILLED, S.CONFIRMED, S.CLOSED])
def test_cancel_is_not_possible_after_fulfilment(start: Status) -> None:
    assert not allowed(start, S.CANCELLED)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (S.CLOSED, S.IN_PROGRESS),
        (S.CANCELLED, S.REGISTERED),
        (S.CONFIRMED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.REGISTERED),
        (S.WAITING, S.CLOSED),
    ],
)
def test_illegal_moves_are_refused(start: Status, end: Status) -> None:
    assert not allowed(start, end)


def test_incident_is_closed_only_after_confirmation() -> None:
    assert allowed(S.FULFILLED, S.CLOSED, CallType.SERVICE_REQUEST)
    assert not allowed(S.FULFILLED, S.CLOSED, CallType.INCIDENT)
    assert allowed(S.CONFIRMED, S.CLOSED, CallType.INCIDENT)


def test_staying_put_is_allowed() -> None:
    assert all(allowed(s, s) for s in Status)


def test_terminal_states_and_reachability() -> None:
    assert {s for s in Status if is_terminal(s)} == {S.CLOSED, S.CANCELLED}
    assert reachable_from(S.REGISTERED) == frozenset(Status)
    assert reachable_from(S.CONFIRMED) == {S.CONFIRMED, S.CLOSED}
    assert set(TRANSITIONS) == set(Status)


def test_eight_workflow_patterns_as_in_simple_usm() -> None:
    assert [p.id for p in WORKFLOW_PATTERNS] == [f"W{i}" for i in range(1, 9)]
    assert pattern("W3").processes == (UsmProcess.RECOVER, UsmProcess.CHANGE, UsmProcess.RECOVER)
    assert pattern("W5").trigger is CallType.SERVICE_REQUEST
    assert [p.proactive for p in WORKFLOW_PATTERNS] == [False] * 5 + [True] * 3
    assert all(p.trigger is CallType.RISK for p in WORKFLOW_PATTERNS if p.proactive)
    # every pattern starts in the process of its trigger type
    assert all(p.processes[0] in (p.trigger.process, UsmProcess.IMPROVE) for p in WORKFLOW_PATTERNS)
    with pytest.raises(KeyError):
        pattern("W9")


def test_default_priority_matrix() -> None:
    matrix = PriorityMatrix()
    assert matrix.derive(Impact.HIGH, Urgency.HIGH) == "critical"
    assert matrix.derive(Impact.MEDIUM, Urgency.MEDIUM) == "moderate"
    assert matrix.derive(Impact.LOW, Urgency.LOW) == "planning"
    assert matrix.derive(None, Urgency.LOW) is None
    assert matrix.contradicts(Impact.HIGH, Urgency.HIGH, "low")
    assert not matrix.contradicts(Impact.HIGH, Urgency.HIGH, "critical")
    assert not matrix.contradicts(None, Urgency.HIGH, "low")


def test_a_custom_matrix_must_be_complete_and_use_its_classes() -> None:
    table = {i.value: {u.value: "p1" for u in Urgency} for i in Impact}
    matrix = PriorityMatrix.model_validate({"classes": ["p1"], "table": table})
    assert matrix.derive(Impact.NIL, Urgency.LOW) == "p1"
    del table["nil"]
    with pytest.raises(ValidationError, match="no row for impact 'nil'"):
        PriorityMatrix.model_validate({"classes": ["p1"], "table": table})
    with pytest.raises(ValidationError, match="not one of the classes"):
        PriorityMatrix.model_validate(
            {
                "classes": ["p2"],
                "table": {i.value: {u.value: "p1" for u in Urgency} for i in Impact},
            }
        )
