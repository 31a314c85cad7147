"""The call lifecycle as a state machine, the eight USM workflow patterns, the priority matrix.

USM publishes no status list; the one here is derived from USM's rules (USM.md, "Call
lifecycle"): ``registered -> classified -> in_progress -> fulfilled -> confirmed -> closed``,
``in_progress <-> waiting``, and ``cancelled`` from any state before ``fulfilled``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The priority matrix lives with the model (agreements and units carry their own); it is
# re-exported here, where it always was.
from .model import CallType, PriorityMatrix, Status, UsmProcess

__all__ = [
    "TRANSITIONS",
    "WORKFLOW_PATTERNS",
    "PriorityMatrix",
    "WorkflowPattern",
    "allowed",
    "is_terminal",
    "pattern",
    "reachable_from",
]

_BEFORE_FULFILLED = (Status.REGISTERED, Status.CLASSIFIED, Status.IN_PROGRESS, Status.WAITING)

#: Every legal move. A tool may skip steps (e.g. straight from registered to in_progress when
#: classification happens at intake); skipping forward is legal, going back is only legal where
#: USM allows rework (a fulfilled call the customer rejects returns to in_progress).
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.REGISTERED: frozenset(
        {Status.CLASSIFIED, Status.IN_PROGRESS, Status.WAITING, Status.FULFILLED, Status.CANCELLED}
    ),
    Status.CLASSIFIED: frozenset(
        {Status.IN_PROGRESS, Status.WAITING, Status.FULFILLED, Status.CANCELLED}
    ),
    Status.IN_PROGRESS: frozenset({Status.WAITING, Status.FULFILLED, Status.CANCELLED}),
    Status.WAITING: frozenset({Status.IN_PROGRESS, Status.FULFILLED, Status.CANCELLED}),
    # The customer either confirms, or says the service is not resumed (back to work).
    Status.FULFILLED: frozenset({Status.CONFIRMED, Status.IN_PROGRESS, Status.CLOSED}),
    Status.CONFIRMED: frozenset({Status.CLOSED}),
    Status.CLOSED: frozenset(),
    Status.CANCELLED: frozenset(),
}
assert all(Status.CANCELLED in TRANSITIONS[s] for s in _BEFORE_FULFILLED)


def allowed(from_status: Status, to_status: Status, call_type: CallType | None = None) -> bool:
    """Whether a call may move from one status to another.

    Staying in the same status is always allowed (a waiting call may change whom it waits on).
    An incident may not go from fulfilled straight to closed: USM closes an incident only once
    the customer confirmed the service is resumed.

    :param call_type: when given, type-specific rules apply (the incident rule above).
    :returns: True when the move is legal.
    """
    if from_status is to_status:
        return True
    if (
        call_type is CallType.INCIDENT
        and from_status is Status.FULFILLED
        and to_status is Status.CLOSED
    ):
        return False
    return to_status in TRANSITIONS[from_status]


def is_terminal(status: Status) -> bool:
    """True for statuses no move leads out of."""
    return not TRANSITIONS[status]


def reachable_from(start: Status = Status.REGISTERED) -> frozenset[Status]:
    """Every status reachable from ``start`` (used to check a mapping reaches the whole cycle)."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


@dataclass(frozen=True)
class WorkflowPattern:
    """One of the eight USM workflow patterns: which processes a call passes through."""

    id: str
    name: str
    trigger: CallType
    processes: tuple[UsmProcess, ...]
    proactive: bool


#: The eight workflow patterns of Simple USM v6 (the ids are this project's).
WORKFLOW_PATTERNS: tuple[WorkflowPattern, ...] = (
    WorkflowPattern("W1", "wish", CallType.WISH, (UsmProcess.AGREE, UsmProcess.CHANGE), False),
    WorkflowPattern("W2", "rfc", CallType.RFC, (UsmProcess.CHANGE,), False),
    WorkflowPattern(
        "W3",
        "incident with change",
        CallType.INCIDENT,
        (UsmProcess.RECOVER, UsmProcess.CHANGE, UsmProcess.RECOVER),
        False,
    ),
    WorkflowPattern(
        "W4",
        "incident without change",
        CallType.INCIDENT,
        (UsmProcess.RECOVER, UsmProcess.OPERATE, UsmProcess.RECOVER),
        False,
    ),
    WorkflowPattern(
        "W5", "service request", CallType.SERVICE_REQUEST, (UsmProcess.OPERATE,), False
    ),
    WorkflowPattern(
        "W6", "risk to agreement", CallType.RISK, (UsmProcess.IMPROVE, UsmProcess.AGREE), True
    ),
    WorkflowPattern(
        "W7", "risk to change", CallType.RISK, (UsmProcess.IMPROVE, UsmProcess.CHANGE), True
    ),
    WorkflowPattern(
        "W8", "risk to operations", CallType.RISK, (UsmProcess.IMPROVE, UsmProcess.OPERATE), True
    ),
)


def pattern(pattern_id: str) -> WorkflowPattern:
    """The workflow pattern with this id (``"W1"`` .. ``"W8"``)."""
    for candidate in WORKFLOW_PATTERNS:
        if candidate.id == pattern_id:
            return candidate
    raise KeyError(pattern_id)
