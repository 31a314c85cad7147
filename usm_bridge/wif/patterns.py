"""What the eight workflow patterns say by default, and how a list of steps fits one.

Shared by the exporter (which fills unconfigured values with these defaults) and the importer
(which leaves values equal to them out of the config it prints, so a round trip gives the same
config back).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from ..lifecycle import WORKFLOW_PATTERNS, WorkflowPattern
from ..model import CallType, UsmProcess

__all__ = [
    "PATTERN_IDS",
    "PROCESS_PURPOSE",
    "SLUG",
    "Dynamicity",
    "default_description",
    "default_dynamicity",
    "default_name",
    "default_slug",
    "default_step_name",
    "first_out_of_order",
    "patterns_fitting",
]

Dynamicity = Literal["static", "dynamic"]

#: The pattern ids, W1..W8, in order.
PATTERN_IDS: tuple[str, ...] = tuple(p.id for p in WORKFLOW_PATTERNS)

#: The draft's slug: alphanumerics and dashes, no dash first or last, no two in a row.
SLUG = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")

#: What each process is for (USM.md, "The five processes"), the description of a template step.
PROCESS_PURPOSE: dict[UsmProcess, str] = {
    UsmProcess.AGREE: "Make or adjust the agreement with the customer.",
    UsmProcess.CHANGE: "Modify the managed infrastructure through a change.",
    UsmProcess.RECOVER: "Restore the agreed service after a (threatening) failure.",
    UsmProcess.OPERATE: "Deliver within the agreed service, without modifying the infrastructure.",
    UsmProcess.IMPROVE: "Assess the threat or opportunity and decide what follows.",
}


#: How a call of each trigger type reads in a sentence.
_TRIGGER_WORDS: dict[CallType, str] = {
    CallType.WISH: "a wish",
    CallType.RFC: "an RFC (request for change)",
    CallType.INCIDENT: "an incident",
    CallType.SERVICE_REQUEST: "a service request",
    CallType.RISK: "a risk (threat or opportunity)",
}


def default_name(pattern: WorkflowPattern) -> str:
    """``"Incident with change"`` for W3: the pattern's name, capitalised (W2's abbreviation
    spelt out)."""
    if pattern.trigger is CallType.RFC:
        return "Request for change"
    return pattern.name[:1].upper() + pattern.name[1:]


def default_slug(pattern: WorkflowPattern) -> str:
    """``"incident-with-change"`` for W3: unique per unit because the pattern names are."""
    return re.sub(r"[^a-z0-9]+", "-", pattern.name.lower()).strip("-")


def default_description(pattern: WorkflowPattern) -> str:
    path = " -> ".join(process.value for process in pattern.processes)
    trigger = _TRIGGER_WORDS.get(pattern.trigger, pattern.trigger.value)
    return f"USM workflow pattern {pattern.id}: {trigger} passes through {path}."


def default_dynamicity(pattern: WorkflowPattern) -> Dynamicity:
    """``dynamic`` when another pattern starts from the same trigger, else ``static``.

    Patterns that share a trigger start in the same process and part at a fork: an incident
    (W3, W4) is recovered through a change or through operations, a risk (W6, W7, W8) leads to
    an agreement, a change or operations. Which way a call goes is decided during the call, at
    that fork step: the draft's "dynamic". A pattern alone on its trigger (W1 wish, W2 rfc, W5
    service request) follows a path fixed in advance: "static".
    """
    shared = any(p.trigger is pattern.trigger and p.id != pattern.id for p in WORKFLOW_PATTERNS)
    return "dynamic" if shared else "static"


def default_step_name(process: UsmProcess) -> str:
    return process.value.capitalize()


def first_out_of_order(steps: Sequence[UsmProcess], path: Sequence[UsmProcess]) -> int | None:
    """The index of the first step that does not follow ``path`` (a pattern's processes), or
    ``None`` when they all do.

    Steps follow the path when each stays in the current process or moves on along it: several
    steps may share a process, and a workflow may describe only part of the path.
    """
    position = 0
    for index, process in enumerate(steps):
        while position < len(path) and path[position] is not process:
            position += 1
        if position == len(path):
            return index
    return None


def patterns_fitting(
    process: UsmProcess | None, steps: Sequence[UsmProcess]
) -> list[WorkflowPattern]:
    """The patterns a workflow can describe: it starts where the pattern starts (``process``,
    when given) and its steps follow the pattern's path."""
    return [
        p
        for p in WORKFLOW_PATTERNS
        if (process is None or p.processes[0] is process)
        and first_out_of_order(steps, p.processes) is None
    ]
